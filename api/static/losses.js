// Lost time (/api/v1/losses): for a shift, day or week, Pareto charts of the lost
// minutes by cause and by machine, the ISO 22400 loss families and the six big losses;
// a click on a bar (or its row) lists the intervals behind it. Downtime nobody gave a
// reason yet is a bar of its own. Its words are in losses_text.json.
"use strict";

const FAMILIES = ["availability", "performance", "quality"];
const COLOURS = { availability: "#c62828", performance: "#1f6fd1", quality: "#8e24aa",
                  unexplained: "#ffab00", cumulative: "#f5f5f5" };
const BIG_LOSSES = { breakdowns: "availability", setup_adjustments: "availability",
                     idling_minor_stops: "availability", unknown_state: "availability",
                     reduced_speed: "performance", process_defects: "quality",
                     startup_rejects: "quality" };
let WORDS = null;  // losses_text.json
let data = null;  // the last /api/v1/losses answer
let selected = null;  // ["cause" | "machine", bar index]
const charts = {};
const query = new URLSearchParams(location.search);

const w = (key) => WORDS[Ombre.lang][key];
const min = (s) => (s / 60).toFixed(1);
const pct = (v) => `${(100 * v).toFixed(0)} %`;
const when = (ns) => new Date(ns / 1e6).toLocaleString(Ombre.lang, { dateStyle: "short", timeStyle: "short" });
const short = (text) => (text.length > 16 ? `${text.slice(0, 15)}…` : text);
const width = () => {  // half the grid, or all of it on a narrow screen (one column)
  const grid = document.querySelector(".pareto");
  const columns = getComputedStyle(grid).gridTemplateColumns.split(" ").length;
  return Math.max(300, Math.floor(grid.clientWidth / columns - 50));
};

function causeLabel(bar) {
  if (bar.cause !== "reason") return w("causes")[bar.cause] || bar.key;
  const text = data.reason_texts[bar.key];
  return text ? `${bar.key} · ${text}` : bar.key;
}
const barsOf = (chart) => (chart === "cause" ? data.by_reason : data.by_machine);
const labelOf = (chart, bar) => (chart === "cause" ? causeLabel(bar) : bar.key);
const familyOf = (bar) => FAMILIES.reduce((a, b) => ((bar.by_family[b] || 0) > (bar.by_family[a] || 0) ? b : a));

function cumulative(bars) {
  const total = bars.reduce((sum, b) => sum + b.lost_s, 0);
  let running = 0;
  return bars.map((b) => { running += b.lost_s; return total ? (100 * running) / total : null; });
}

// One bar per cause, coloured by its loss family (unexplained downtime apart), or one
// stacked bar per machine; the cumulative share as a line on its own axis.
function chart(kind) {
  const bars = barsOf(kind);
  const x = bars.map((_, i) => i);
  const paths = uPlot.paths.bars({ size: [0.7, 90] });
  const bar = (label, colour, values) => ({ label, fill: colour, stroke: colour, paths, points: { show: false },
                                            value: (u, v) => (v === null || v === undefined ? "–" : v.toFixed(1)), values });
  let series;
  if (kind === "cause") {
    series = [bar(w("causes").unexplained, COLOURS.unexplained, bars.map((b) => (b.cause === "unexplained" ? b.lost_s / 60 : null))),
              ...FAMILIES.map((f) => bar(w("families-names")[f], COLOURS[f],
                                         bars.map((b) => (b.cause !== "unexplained" && familyOf(b) === f ? b.lost_s / 60 : null))))];
  } else {  // stacked: the tallest first, so each shorter one is drawn over it
    const upTo = (n) => bars.map((b) => FAMILIES.slice(0, n).reduce((s, f) => s + (b.by_family[f] || 0), 0) / 60);
    series = [3, 2, 1].map((n) => bar(w("families-names")[FAMILIES[n - 1]], COLOURS[FAMILIES[n - 1]], upTo(n)));
  }
  const line = { label: w("cumulative"), scale: "%", stroke: COLOURS.cumulative, width: 2,
                 value: (u, v) => (v === null || v === undefined ? "–" : `${v.toFixed(0)} %`), values: cumulative(bars) };
  charts[kind]?.destroy();
  const el = document.getElementById(`chart-${kind}`);
  el.replaceChildren();
  const top = Math.max(1, ...bars.map((b) => b.lost_s / 60));
  const crowded = width() / Math.max(bars.length, 1) < 115;  // labels slanted, or they overlap
  charts[kind] = new uPlot({
    width: width(), height: 300, legend: { live: false },
    cursor: { points: { show: false }, drag: { x: false, y: false } },
    scales: { x: { time: false, range: [-0.5, Math.max(bars.length, 1) - 0.5] },
              y: { range: [0, top * 1.08] }, "%": { range: [0, 100] } },
    series: [{ label: "", value: (u, i) => (i === null ? "" : labelOf(kind, bars[i])) },
             ...series.map(({ values, ...s }) => s), (({ values, ...s }) => s)(line)],
    axes: [{ stroke: "#ddd", grid: { show: false }, splits: () => x, ...(crowded ? { rotate: -30, size: 90 } : { size: 40 }),
             values: (u, splits) => splits.map((i) => (bars[i] ? short(bars[i].cause === "reason" ? bars[i].key : labelOf(kind, bars[i])) : "")) },
           { stroke: "#ddd", label: w("minutes"), size: 60 },
           { stroke: "#ddd", scale: "%", side: 1, grid: { show: false }, size: 60, splits: () => [0, 25, 50, 75, 100],
             values: (u, splits) => splits.map((v) => `${v} %`) }],
  }, [x, ...series.map((s) => s.values), line.values], el);
  charts[kind].over.addEventListener("click", () => {
    const i = charts[kind].cursor.idx;
    if (i !== null && i !== undefined && bars[i]) select(kind, i);
  });
}

function barTable(kind) {
  const bars = barsOf(kind);
  const table = document.getElementById(`bars-${kind}`);
  const shares = cumulative(bars);
  const total = data.lost_s;
  table.replaceChildren(...bars.map((b, i) => {
    const tr = document.createElement("tr");
    tr.id = `bar-${kind}-${i}`;
    tr.dataset.key = b.key;
    tr.dataset.cause = b.cause || "";
    tr.dataset.lostS = b.lost_s;
    tr.className = selected && selected[0] === kind && selected[1] === i ? "selected" : "";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = kind === "cause" && b.cause === "unexplained" ? COLOURS.unexplained : COLOURS[familyOf(b)];
    const cells = [`${i + 1}`, null, `${min(b.lost_s)} ${w("minutes")}`, total ? pct(b.lost_s / total) : "–",
                   shares[i] === null ? "–" : `${shares[i].toFixed(0)} %`];
    for (const text of cells) {
      const td = document.createElement("td");
      if (text === null) td.append(...(kind === "cause" ? [swatch] : []), labelOf(kind, b));
      else td.textContent = text;
      tr.append(td);
    }
    tr.addEventListener("click", () => select(kind, i));
    return tr;
  }));
}

function hbars(id, rows) {  // [key, label, seconds, colour]
  const scale = Math.max(1, ...rows.map((r) => Math.abs(r[2])));
  document.getElementById(id).replaceChildren(...rows.map(([key, label, seconds, colour]) => {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.key = key;
    bar.dataset.lostS = seconds;
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(10 * Math.abs(seconds)) / scale}rem`;
    fill.style.background = colour;
    const text = document.createElement("span");
    text.textContent = `${label}${w("colon")}${min(seconds)} ${w("minutes")}`;
    bar.append(fill, text);
    return bar;
  }));
}

function summary() {
  const kpi = Object.values(data.kpi_losses_s);
  const known = kpi.every((v) => v !== null);
  const parts = [`${min(data.lost_s)} ${w("minutes")} ${w("total")}`
    + (known ? ` (${w("kpi-check")}${w("colon")}${min(kpi.reduce((s, v) => s + v, 0))} ${w("minutes")})` : ""),
  `${w("unexplained-total")}${w("colon")}${min(data.unexplained_s)} ${w("minutes")}`];
  for (const [machine, why] of Object.entries(data.unpriced)) parts.push(`${machine}${w("colon")}${w("unpriced")} (${why})`);
  const el = document.getElementById("summary");
  el.textContent = `${when(data.window.start_ns)} → ${when(data.window.end_ns)} · ${parts.join(" · ")}`;
  el.dataset.lostS = data.lost_s;
}

function pieces() {
  const table = document.getElementById("pieces");
  const title = document.getElementById("pieces-title");
  document.getElementById("pieces-hint").hidden = selected !== null;
  if (selected === null) { table.replaceChildren(); title.textContent = w("pieces"); return; }
  const [kind, i] = selected;
  const bar = barsOf(kind)[i];
  title.textContent = `${w("pieces")}${w("colon")}${labelOf(kind, bar)} (${min(bar.lost_s)} ${w("minutes")})`;
  const head = document.createElement("tr");
  for (const key of ["machine", "from", "to", "lost", "category", "reason", "raw", "job", "big-loss", "bad-parts"]) {
    const th = document.createElement("th");
    th.textContent = w(key);
    head.append(th);
  }
  const rows = bar.pieces.map((p) => {
    const tr = document.createElement("tr");
    tr.className = "piece";
    tr.dataset.start = p.start_ns;
    tr.dataset.lostS = p.lost_s;
    const reason = p.reason ? (data.reason_texts[p.reason] ? `${p.reason} · ${data.reason_texts[p.reason]}` : p.reason) : "–";
    for (const text of [p.machine, when(p.start_ns), when(p.end_ns), `${min(p.lost_s)} ${w("minutes")}`,
                        Ombre.category(p.category), reason, p.reason_raw || "–", p.job || "–",
                        w("big-loss-names")[p.big_loss], p.bad_parts ? `${p.bad_parts}` : ""]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    if (p.category) tr.title = Ombre.explain(p.category);
    return tr;
  });
  const more = [];
  if (bar.pieces_total > bar.pieces.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 10;
    td.className = "muted";
    td.textContent = w("more-pieces").replace("{n}", bar.pieces_total - bar.pieces.length);
    tr.append(td);
    more.push(tr);
  }
  table.replaceChildren(head, ...rows, ...more);
}

function select(kind, i) {
  selected = [kind, i];
  barTable("cause");
  barTable("machine");
  pieces();
  document.getElementById("pieces-title").scrollIntoView({ block: "nearest" });
}

function render() {
  if (!WORDS) return;
  for (const el of document.querySelectorAll("[data-l]")) el.textContent = w(el.dataset.l);
  if (!data) return;
  summary();
  for (const kind of ["cause", "machine"]) { chart(kind); barTable(kind); }
  hbars("families", FAMILIES.map((f) => [f, w("families-names")[f], data.by_family[f] || 0, COLOURS[f]]));
  hbars("big-losses", Object.keys(BIG_LOSSES).filter((k) => k in data.by_big_loss || k !== "unknown_state")
    .map((k) => [k, w("big-loss-names")[k], data.by_big_loss[k] || 0, COLOURS[BIG_LOSSES[k]]]));
  pieces();
  document.getElementById("page").dataset.loaded = `${data.kind}:${data.window.start_ns}`;
}

const localInput = (ns) => {
  const d = new Date(ns / 1e6);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

async function load(at) {
  const kind = document.getElementById("kind").value;
  const machine = document.getElementById("machine").value;
  const params = new URLSearchParams({ window: kind });
  if (at) params.set("at", at);
  if (machine) params.set("machine", machine);
  history.replaceState(null, "", `${location.pathname}?${params}`);
  const response = await Ombre.api(`/api/v1/losses?${params}`);
  const error = document.getElementById("losses-error");
  if (!response.ok) {
    const detail = (await response.json()).detail;
    error.textContent = response.status === 404 && kind === "shift" && !machine ? `${w("no-shift")} (${detail})` : `${detail}`;
    return;
  }
  error.textContent = "";
  data = await response.json();
  selected = null;
  document.getElementById("at").value = localInput(data.window.start_ns);
  render();
}

async function start() {
  const kind = document.getElementById("kind");
  kind.value = ["shift", "day", "week"].includes(query.get("window")) ? query.get("window") : "shift";
  const machines = document.getElementById("machine");
  const found = await Ombre.api("/api/v1/machines");
  if (found.ok) {
    for (const m of await found.json()) {
      const option = document.createElement("option");
      option.value = m.id;
      option.textContent = m.name ? `${m.name} (${m.id})` : m.id;
      machines.append(option);
    }
  }
  machines.value = query.get("machine") || "";
  const atValue = () => {  // the chosen time, or the shown window's start
    const chosen = new Date(document.getElementById("at").value);
    return Number.isNaN(chosen.getTime()) ? (data ? new Date(data.window.start_ns / 1e6).toISOString() : null)
      : chosen.toISOString();
  };
  kind.addEventListener("change", () => load(atValue()));
  machines.addEventListener("change", () => load(atValue()));
  document.getElementById("at").addEventListener("change", () => load(atValue()));
  document.getElementById("earlier").addEventListener("click", () => load(new Date(data.window.start_ns / 1e6 - 1).toISOString()));
  document.getElementById("later").addEventListener("click", () => load(new Date(data.window.end_ns / 1e6).toISOString()));
  window.addEventListener("resize", () => { if (data) { chart("cause"); chart("machine"); } });
  await load(query.get("at"));
}

Ombre.onLanguage = render;
fetch("/static/losses_text.json").then((r) => r.json()).then((words) => {
  WORDS = words;
  Ombre.init(start);
});
