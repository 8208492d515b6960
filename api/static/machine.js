// A machine's page: the state band of the current shift, where its time went (the
// OEE losses in minutes), and the downtime without a reason, where an operator
// assigns one.
"use strict";

const machineId = new URLSearchParams(location.search).get("id");
document.getElementById("lost-time").href = `/losses?${new URLSearchParams({ machine: machineId || "" })}`;
const t = Ombre.t;
let shift = null;  // the current shift's KPI report

const iso = (ns) => new Date(ns / 1e6).toISOString();
// On the plant's clock (its calendar's time zone), once the timeline said which it is.
const clock = (ns) => Band.format(ns, timeline?.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone);

async function json(path) {
  const response = await Ombre.api(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

let timeline = null;  // the last GET /api/v1/timeline of this machine

// The band of the shift running now, to scale on the plant's clock, with the open
// interval up to where the data reaches, its axis and its legend.
async function band() {
  timeline = await json(`/api/v1/timeline?machine=${encodeURIComponent(machineId)}`);
  const [m] = timeline.machines;
  const tz = timeline.timezone;
  Band.draw(document.getElementById("band"), m, timeline);
  Band.axis(document.getElementById("band-axis"), timeline);
  Band.legend(document.getElementById("band-legend"), [m]);
  const shiftName = timeline.shifts.find((s) => s.start_ns === timeline.from_ns)?.name;
  document.getElementById("band-window").textContent = `${shiftName ? `${shiftName} ` : ""}`
    + `${Band.format(timeline.from_ns, tz)}–${Band.format(timeline.to_ns, tz)} (${tz})`;
  const link = document.getElementById("line-link");
  link.href = `/line?id=${encodeURIComponent(m.line)}`;
  link.textContent = `${t("line-of")} ${m.line_name || m.line}`;
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

const charts = new Map();  // signal -> { plot: uPlot, series: what the chart drew }

// One chart per number signal over the shift (its axis the band's): the mean of each
// bucket, its min and max, and the baseline its drift detector watches against, with
// ±3 sigma. The legend reads the values under the cursor, else the last ones; the
// chart downloads as PNG or CSV.
async function chart(signal) {
  const to = Math.min(timeline.to_ns, timeline.now_ns);
  const s = await json(`/api/v1/machines/${encodeURIComponent(machineId)}/signals/`
    + `${encodeURIComponent(signal)}?from=${iso(timeline.from_ns)}&to=${iso(to)}&points=300`);
  const tz = timeline.timezone;
  const x = s.ts_ns.map((ns) => ns / 1e9);
  const data = [x, s.mean, s.min, s.max];
  const unit = s.unit ? ` (${s.unit})` : "";
  const number = (u, v) => (v === null || v === undefined ? "–" : Number(v.toPrecision(6)).toString());
  const series = [{ label: t("time"), value: (u, v) => (v === null ? "–" : Band.format(v * 1e9, tz, true)) },
                  { label: `${signal}${unit}`, stroke: "#90caf9", width: 2, spanGaps: true, value: number },
                  { label: "min", stroke: "#546e7a", spanGaps: true, value: number },
                  { label: "max", stroke: "#546e7a", spanGaps: true, value: number }];
  for (const b of s.baselines) {
    for (const [label, value, dash] of [[t("baseline"), b.mean, []], ["+3σ", b.mean + 3 * b.sigma, [6, 6]],
                                         ["−3σ", b.mean - 3 * b.sigma, [6, 6]]]) {
      data.push(x.map(() => value));
      series.push({ label: `${b.detector} ${label}`, stroke: "#ffb74d", dash, width: 1, value: number });
    }
  }
  let box = document.getElementById(`chart-${signal}`);
  if (!box) {
    box = document.createElement("div");
    box.id = `chart-${signal}`;
    box.className = "chart";
    const tools = document.createElement("div");
    tools.className = "chart-tools";
    for (const format of ["png", "csv"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = `export-${format}`;
      button.addEventListener("click", () => exportChart(signal, format));
      tools.append(button);
    }
    box.append(tools);
    document.getElementById("charts").append(box);
  }
  for (const format of ["png", "csv"]) {
    const button = box.querySelector(`.export-${format}`);
    button.textContent = `⤓ ${t(`export-${format}`)}`;
    button.title = t("export-title");
  }
  notes(signal, s.baselines, box);
  charts.get(signal)?.plot.destroy();
  const last = s.mean.findLastIndex((v) => v !== null);
  // Away from the cursor, the legend shows the last bucket with data, not "--".
  const idle = (u) => { if (u.cursor.idx === null && last >= 0) u.setLegend({ idx: last }); };
  const plot = new uPlot({
    title: `${signal}${unit}`, width: Math.max(300, document.getElementById("band").clientWidth), height: 220, series,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), tz),
    scales: { x: { time: true, range: [timeline.from_ns / 1e9, timeline.to_ns / 1e9] } },
    axes: [{ stroke: "#ddd", grid: { stroke: "#333" }, values: (u, splits) => splits.map((v) => Band.format(v * 1e9, tz)) },
           { stroke: "#ddd", grid: { stroke: "#333" } }],
    hooks: { ready: [idle], setCursor: [idle] },
  }, data, box);
  charts.set(signal, { plot, series, data, unit: s.unit });
}

// Downloads a chart: as PNG, its canvas on the page's background with its title and
// legend; as CSV, one row per bucket (time in UTC, then each line's value).
function exportChart(signal, format) {
  const { plot, series, data, unit } = charts.get(signal);
  const name = `${machineId}-${signal}-${iso(timeline.from_ns).slice(0, 16).replace(":", "")}`;
  const save = (blob, ext) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${name}.${ext}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  };
  if (format === "csv") {
    const cell = (v) => (v === null || v === undefined ? "" : String(v));
    const head = ["time_utc", ...series.slice(1).map((s, i) => (i === 0 ? `${signal}_mean` : s.label)
      .replace(/[",\n]/g, " "))];
    const rows = data[0].map((ts, r) => [new Date(ts * 1e3).toISOString(), ...data.slice(1).map((col) => cell(col[r]))]);
    const text = [`# ${machineId} ${signal}${unit ? ` (${unit})` : ""}`, head.join(","), ...rows.map((r) => r.join(","))];
    save(new Blob([`${text.join("\n")}\n`], { type: "text/csv" }), "csv");
    return;
  }
  const source = plot.ctx.canvas;
  const ratio = source.width / plot.width;
  const out = document.createElement("canvas");
  out.width = source.width;
  out.height = source.height + 70 * ratio;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.font = `${16 * ratio}px system-ui, sans-serif`;
  ctx.fillStyle = "#f5f5f5";
  ctx.fillText(`${machineId} · ${signal}${unit ? ` (${unit})` : ""}`, 10 * ratio, 22 * ratio);
  ctx.drawImage(source, 0, 32 * ratio);
  let left = 10 * ratio;
  ctx.font = `${12 * ratio}px system-ui, sans-serif`;
  for (const s of series.slice(1)) {
    ctx.fillStyle = s.stroke;
    ctx.fillRect(left, source.height + 46 * ratio, 14 * ratio, 4 * ratio);
    ctx.fillStyle = "#ddd";
    ctx.fillText(s.label, left + 18 * ratio, source.height + 52 * ratio);
    left += (ctx.measureText(s.label).width + 40 * ratio);
  }
  out.toBlob((blob) => save(blob, "png"), "image/png");
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
  header(machine);
  const reports = await json(`/api/v1/kpis?machine=${encodeURIComponent(machineId)}&by=shift`);
  if (!reports.length) return;
  shift = reports[reports.length - 1];
  await band();
  losses();
  const numbers = Object.entries(machine.signals).filter(([, v]) => typeof v.value === "number");
  for (const [signal] of numbers.slice(0, 6)) await chart(signal);
  await downtime(await json("/api/v1/reason-codes"));
}

function header(machine) {
  document.getElementById("machine-name").textContent = machine.name || machine.id;
  const state = document.getElementById("state");
  state.textContent = `${Ombre.state(machine.state)} · ${Ombre.category(machine.category)}`;
  state.title = Ombre.explain(machine.category);
}

// Live: the stream's KPI refresh (every 10 s) redraws the band, its open interval
// grown, and the losses; a change of this machine's state, the header and the band.
let lastState = null;  // this machine's state, category and job, as the stream last said
async function live(kind, data) {
  if (!shift) return;
  if (kind === "machine" && data.id === machineId) {
    const now = `${data.state}|${data.category}|${data.job}`;
    if (now === lastState) return;
    lastState = now;
    header(data);
    await band();
  } else if (kind === "kpis") {
    const reports = await json(`/api/v1/kpis?machine=${encodeURIComponent(machineId)}&by=shift`);
    if (reports.length) shift = reports[reports.length - 1];
    await band();
    losses();
  }
}

Ombre.onLanguage = () => { if (shift) refresh(); };
// A failed refresh (the server away for a moment) waits for the next one.
const refresh = () => load().catch((error) => console.warn("machine page", error));
Ombre.init(() => {
  refresh();
  setInterval(refresh, 30000);
  Ombre.stream((kind, data) => live(kind, data).catch((error) => console.warn("machine page", error)));
});
