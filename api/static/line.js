// The lines' Gantt: each machine's state band on one time axis per line, the shift
// running now by default (live), or an earlier or later window of the same length.
// `/line?id=LINE` shows one line; without it, every line.
"use strict";

const t = Ombre.t;
const params = new URLSearchParams(location.search);
let lineId = params.get("id") || "";
let range = null;  // null: the shift running now; else [from_ns, to_ns]
let shown = null;  // the last GET /api/v1/timeline
const states = new Map();  // machine id -> its last state, category and job from the stream

const iso = (ns) => new Date(ns / 1e6).toISOString();

async function json(path) {
  const response = await Ombre.api(path);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${(await response.json()).detail}`);
  return response.json();
}

async function load() {
  const query = new URLSearchParams();
  if (lineId) query.set("line", lineId);
  if (range) { query.set("from", iso(range[0])); query.set("to", iso(range[1])); }
  try {
    shown = await json(`/api/v1/timeline?${query}`);
    document.getElementById("error").textContent = "";
  } catch (error) {
    document.getElementById("error").textContent = error.message;
    return;
  }
  render();
}

function render() {
  const tl = shown;
  const box = document.getElementById("lines");
  box.replaceChildren();
  const byLine = new Map();
  for (const m of tl.machines) (byLine.get(m.line) || byLine.set(m.line, []).get(m.line)).push(m);
  for (const [line, machines] of byLine) {
    const section = document.createElement("section");
    section.id = `line-${line}`;
    const h2 = document.createElement("h2");
    h2.textContent = machines[0].line_name || line;
    const gantt = document.createElement("div");
    gantt.className = "gantt";
    section.append(h2, gantt);
    box.append(section);
    for (const m of machines) {
      const row = document.createElement("div");
      row.className = "row";
      row.id = `row-${m.id}`;
      const name = document.createElement("a");
      name.className = "name";
      name.href = `/machine?id=${encodeURIComponent(m.id)}`;
      name.textContent = m.name || m.id;
      const band = document.createElement("div");
      band.className = "band";
      band.dataset.machine = m.id;
      row.append(name, band);
      gantt.append(row);
      Band.draw(band, m, tl);
    }
    const row = document.createElement("div");
    row.className = "row";
    const spacer = document.createElement("span");
    spacer.className = "name";
    const axis = document.createElement("div");
    axis.className = "axis";
    row.append(spacer, axis);
    gantt.append(row);
    Band.axis(axis, tl);
  }
  Band.legend(document.getElementById("band-legend"), tl.machines);
  const names = tl.shifts.filter((s) => s.start_ns < tl.to_ns && s.end_ns > tl.from_ns).map((s) => s.name);
  document.getElementById("window").textContent = `${Band.format(tl.from_ns, tl.timezone, true)} – `
    + `${Band.format(tl.to_ns, tl.timezone, true)} (${tl.timezone})${names.length ? ` · ${names.join(", ")}` : ""}`;
}

async function lines() {
  const machines = await json("/api/v1/machines");
  const choice = document.getElementById("line-choice");
  const ids = [...new Set(machines.map((m) => m.line))];
  choice.replaceChildren(new Option(t("lines"), ""), ...ids.map((id) => new Option(`${t("line-of")} ${id}`, id)));
  choice.value = lineId;
  choice.onchange = () => {
    lineId = choice.value;
    history.replaceState(null, "", lineId ? `/line?id=${encodeURIComponent(lineId)}` : "/line");
    load();
  };
}

function move(direction) {
  if (!shown) return;
  const length = shown.to_ns - shown.from_ns;
  range = [shown.from_ns + direction * length, shown.to_ns + direction * length];
  load();
}

// Live while showing the shift running now: redrawn on each KPI refresh of the stream
// (every 10 s), and when a machine's state changes; at most one redraw in flight.
let pending = null;
function live(kind, data) {
  if (kind === "machine") {
    const now = `${data.state}|${data.category}|${data.job}`;
    const changed = states.has(data.id) && states.get(data.id) !== now;
    states.set(data.id, now);
    if (!changed) return;
  } else if (kind !== "kpis") return;
  if (range || pending) return;
  pending = load().finally(() => { pending = null; });
}

document.getElementById("earlier").addEventListener("click", () => move(-1));
document.getElementById("later").addEventListener("click", () => move(1));
document.getElementById("current").addEventListener("click", () => { range = null; load(); });
Ombre.onLanguage = () => { if (shown) { render(); lines().catch(() => {}); } };
Ombre.init(() => {
  lines().then(load).catch((error) => console.warn("line page", error));
  Ombre.stream(live);
});
