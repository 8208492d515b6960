// A machine's page: the state band of the current shift, where its time went (the
// OEE losses in minutes), and the downtime without a reason, where an operator
// assigns one.
"use strict";

const machineId = new URLSearchParams(location.search).get("id");
const t = Ombre.t;
let shift = null;  // the current shift's KPI report

const iso = (ns) => new Date(ns / 1e6).toISOString();
const clock = (ns) => new Date(ns / 1e6).toLocaleTimeString(Ombre.lang, { hour: "2-digit", minute: "2-digit" });

async function json(path) {
  const response = await Ombre.api(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function band(intervals) {
  const el = document.getElementById("band");
  el.innerHTML = "";
  const { start_ns: from, end_ns: to } = shift.window;
  for (const i of intervals) {
    const part = document.createElement("div");
    part.dataset.category = i.category || "none";
    part.dataset.id = i.id;
    part.style.width = `${(100 * (Math.min(i.end_ns, to) - Math.max(i.start_ns, from))) / (to - from)}%`;
    const reason = i.reason ? ` · ${i.reason} (${t(`source-${i.reason_source}`)})`
      : i.reason_raw ? ` · ${t("machine-said")} ${i.reason_raw}` : "";
    part.title = `${clock(i.start_ns)}–${clock(i.end_ns)} ${Ombre.state(i.raw_state)}${reason}\n${Ombre.explain(i.category)}`;
    el.append(part);
  }
}

function losses() {
  const el = document.getElementById("losses");
  el.innerHTML = "";
  const l = shift.losses;
  const rows = [["loss-availability", l.availability_s], ["loss-performance", l.performance_s],
                ["loss-quality", l.quality_s], ["fully-productive", l.fully_productive_s]];
  const scale = Math.max(1, ...rows.map(([, s]) => s || 0));
  for (const [key, seconds] of rows) {
    const bar = document.createElement("div");
    bar.className = `bar${key === "fully-productive" ? " good" : ""}`;
    bar.dataset.key = key;
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(40 * (seconds || 0)) / scale}rem`;
    const label = document.createElement("span");
    label.textContent = `${t(key)}: ${seconds === null ? "–" : (seconds / 60).toFixed(1)}`;
    bar.append(fill, label);
    el.append(bar);
  }
  const c = shift.coverage;
  const line = document.getElementById("coverage");
  line.dataset.value = c.value ?? "";
  line.textContent = t("coverage-line").replace("{c}", Ombre.pct(c.value))
    .replace("{n}", Ombre.minutes(c.no_data_s)).replace("{u}", Ombre.minutes(c.unknown_s));
}

async function downtime(codes) {
  const rows = await json(`/api/v1/downtime?machine=${encodeURIComponent(machineId)}`
    + `&from=${iso(shift.window.start_ns)}&to=${iso(shift.window.end_ns)}`);
  const body = document.querySelector("#downtime tbody");
  body.innerHTML = "";
  if (!rows.length) body.innerHTML = `<tr><td class="muted">${t("none-left")}</td></tr>`;
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.id = `downtime-${row.id}`;
    const minutes = ((row.end_ns - row.start_ns) / 6e10).toFixed(1);
    const said = row.reason_raw ? ` (${t("machine-said")} ${row.reason_raw})` : "";
    for (const text of [`${clock(row.start_ns)}–${clock(row.end_ns)}`, `${minutes} min`,
                        `${Ombre.state(row.state)}${said}`, Ombre.category(row.category)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const select = document.createElement("select");
    for (const c of codes) select.add(new Option(`${c.code}: ${c.text} (${c.category})`, c.code));
    const button = document.createElement("button");
    button.textContent = t("assign");
    button.addEventListener("click", async () => {
      const response = await Ombre.api(`/api/v1/downtime/${row.id}/reason`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ code: select.value }) });
      document.getElementById("downtime-error").textContent =
        response.status === 403 ? t("needs-operator") : response.ok ? "" : (await response.json()).detail;
      if (response.ok) load();
    });
    for (const node of [select, button]) { const td = document.createElement("td"); td.append(node); tr.append(td); }
    body.append(tr);
  }
}

const charts = new Map();  // signal -> uPlot

// One chart per number signal: the mean of each bucket, its min and max, and the
// baseline its drift detector watches against, with ±3 sigma.
async function chart(signal) {
  const s = await json(`/api/v1/machines/${encodeURIComponent(machineId)}/signals/`
    + `${encodeURIComponent(signal)}?from=${iso(shift.window.start_ns)}&to=${iso(shift.window.end_ns)}&points=300`);
  const x = s.ts_ns.map((ns) => ns / 1e9);
  const data = [x, s.mean, s.min, s.max];
  const series = [{}, { label: signal, stroke: "#90caf9", width: 2, spanGaps: true },
                  { label: "min", stroke: "#546e7a", spanGaps: true },
                  { label: "max", stroke: "#546e7a", spanGaps: true }];
  for (const b of s.baselines) {
    for (const [label, value, dash] of [[t("baseline"), b.mean, []], [`${t("limits")}`, b.mean + 3 * b.sigma, [6, 6]],
                                         [`${t("limits")}`, b.mean - 3 * b.sigma, [6, 6]]]) {
      data.push(x.map(() => value));
      series.push({ label: `${b.detector} ${label}`, stroke: "#ffb74d", dash, width: 1 });
    }
  }
  let box = document.getElementById(`chart-${signal}`);
  if (!box) {
    box = document.createElement("div");
    box.id = `chart-${signal}`;
    box.className = "chart";
    document.getElementById("charts").append(box);
  }
  notes(signal, s.baselines, box);
  charts.get(signal)?.destroy();
  const title = `${signal}${s.unit ? ` (${s.unit})` : ""}`;
  charts.set(signal, new uPlot({ title, width: Math.min(1200, window.innerWidth - 60), height: 220,
                                 series, axes: [{ stroke: "#ddd" }, { stroke: "#ddd" }] }, data, box));
}

// A detector whose baseline readings are autocorrelated says so above its chart.
function notes(signal, baselines, box) {
  const id = `drift-note-${signal}`;
  document.getElementById(id)?.remove();
  const found = baselines.filter((b) => b.autocorrelated);
  if (!found.length) return;
  const note = document.createElement("p");
  note.id = id;
  note.className = "warning";
  note.textContent = found.map((b) => `⚠ ${signal} · ${b.detector}: ${t("autocorrelated")} `
    + `(φ = ${b.phi.toFixed(2)} ± ${b.phi_se.toFixed(2)}, n = ${b.points}): `
    + t(b.mode === "ar1_residuals" ? "watching-residuals" : "watching-anyway")).join("\n");
  box.before(note);
}

async function load() {
  const machine = await json(`/api/v1/machines/${encodeURIComponent(machineId)}`);
  document.getElementById("machine-name").textContent = machine.name || machine.id;
  const state = document.getElementById("state");
  state.textContent = `${Ombre.state(machine.state)} · ${Ombre.category(machine.category)}`;
  state.title = Ombre.explain(machine.category);
  const reports = await json(`/api/v1/kpis?machine=${encodeURIComponent(machineId)}&by=shift`);
  if (!reports.length) return;
  shift = reports[reports.length - 1];
  band(await json(`/api/v1/machines/${encodeURIComponent(machineId)}/timeline`
    + `?from=${iso(shift.window.start_ns)}&to=${iso(shift.window.end_ns)}`));
  losses();
  const numbers = Object.entries(machine.signals).filter(([, v]) => typeof v.value === "number");
  for (const [signal] of numbers.slice(0, 6)) await chart(signal);
  await downtime(await json("/api/v1/reason-codes"));
}

Ombre.onLanguage = () => { if (shift) refresh(); };
// A failed refresh (the server away for a moment) waits for the next one.
const refresh = () => load().catch((error) => console.warn("machine page", error));
Ombre.init(() => { refresh(); setInterval(refresh, 30000); });
