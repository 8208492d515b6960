// The maturity assessment (/api/v1/assessment): the stage per structural area as bars,
// the evidence behind each verdict, the next steps, the kept assessments over time, and
// the self-assessment an admin answers. Its words are in maturity_text.json, which the
// printed report shares.
"use strict";

const AREAS = ["resources", "information_systems", "organisational_structure", "culture"];
const COLOURS = { overall: "#f5f5f5", resources: "#1f6fd1", information_systems: "#1b8a3a",
                  organisational_structure: "#e0a000", culture: "#c62828" };
let WORDS = null;  // maturity_text.json
let questions = null;  // /api/v1/assessment/questions
let result = null;  // /api/v1/assessment
let kept = [];  // /api/v1/assessment/history
const charts = {};
// The window: the page's own ?from=&to= (RFC 3339), else the API's default, 30 days.
const range = new URLSearchParams([...new URLSearchParams(location.search)]
  .filter(([k]) => k === "from" || k === "to"));

const m = (key) => WORDS[Ombre.lang][key];
const pct = Ombre.pct;
const stageName = (s) => `${s} ${m("stages")[s]}`;
const width = () => Math.min(1100, window.innerWidth - 60);

async function json(path) {
  const response = await Ombre.api(path);
  if (!response.ok) {  // e.g. 403 for a token scoped to a site: the assessment is the plant's
    const detail = (await response.json().catch(() => ({}))).detail;
    throw new Error(detail || `${path}: ${response.status}`);
  }
  return response.json();
}

function criterionText(c) {
  const key = c.key.split(".")[1];
  if (c.declared) {
    const q = questions.questions.find((found) => found.key === key);
    return q ? q.text[Ombre.lang] : c.text;
  }
  return Ombre.lang === "en" ? c.text : m("measures")[key] || c.text;
}

function overall() {
  const el = document.getElementById("overall");
  el.dataset.stage = result.stage;
  el.textContent = `${m("overall")}${Ombre.t("colon")}${stageName(result.stage)}`;
  const assessed = AREAS.filter((a) => result.areas[a].stage !== null)
    .map((a) => m("areas")[a] + (result.areas[a].status === "declared" ? ` (${m("declared-series")})` : ""));
  document.getElementById("basis").textContent = `${m("window")}${Ombre.t("colon")}`
    + `${result.window.from} → ${result.window.to} · ${m("basis")}${Ombre.t("colon")}${assessed.join(", ")}`;
}

// One bar per area, 0 to 6; measured and declared areas are two series, so the legend
// says which is which.
function areaChart() {
  const x = AREAS.map((_, i) => i);
  const stage = (declared) => AREAS.map((a) => {
    const s = result.areas[a].stage;
    return s === null || (result.areas[a].status === "declared") !== declared ? null : s;
  });
  const bars = uPlot.paths.bars({ size: [0.6, 120] });
  charts.areas?.destroy();
  charts.areas = new uPlot({
    width: width(), height: 260, legend: { live: false }, scales: { x: { time: false, range: [-0.5, AREAS.length - 0.5] },
                                          y: { range: [0, 6] } },
    series: [{ label: "", value: (u, i) => (i === null ? "" : m("areas")[AREAS[i]]) },
             { label: m("measured-series"), fill: COLOURS.resources, stroke: COLOURS.resources, paths: bars, points: { show: false } },
             { label: m("declared-series"), fill: COLOURS.organisational_structure, stroke: COLOURS.organisational_structure, paths: bars, points: { show: false } }],
    axes: [{ stroke: "#ddd", splits: () => x, values: (u, splits) => splits.map((i) => m("areas")[AREAS[i]]) },
           { stroke: "#ddd", splits: () => [0, 1, 2, 3, 4, 5, 6], values: (u, splits) => splits.map((s) => stageName(s)), size: 170 }],
  }, [x, stage(false), stage(true)], document.getElementById("chart-areas"));
}

function evidence() {
  const box = document.getElementById("areas");
  box.replaceChildren();
  for (const area of AREAS) {
    const a = result.areas[area];
    const h = document.createElement("h3");
    h.id = `area-${area}`;
    h.dataset.stage = a.stage === null ? "" : a.stage;
    h.dataset.status = a.status;
    h.textContent = `${m("areas")[area]}${Ombre.t("colon")}`
      + (a.stage === null ? m("statuses")[a.status] : `${stageName(a.stage)} (${m("statuses")[a.status]})`);
    const table = document.createElement("table");
    table.className = "evidence";
    const head = document.createElement("tr");
    for (const k of ["stage", "criterion", "value", "threshold", "status", "source"]) {
      const th = document.createElement("th");
      th.textContent = m(k);
      head.append(th);
    }
    table.append(head);
    for (const c of a.criteria) {
      const tr = document.createElement("tr");
      tr.dataset.key = c.key;
      tr.dataset.status = c.status;
      Ombre.cell(tr, c.stage);
      Ombre.cell(tr, criterionText(c));
      if (c.declared) {
        tr.className = "declared";
        Ombre.cell(tr, c.answer ? m("answers")[c.answer] : "–");
        Ombre.cell(tr, m("answers").yes);
        Ombre.cell(tr, m("statuses")[c.status]);
        Ombre.cell(tr, `${m("statuses").declared}${c.answer ? `: ${c.answered_by}, ${c.answered_at.slice(0, 10)}` : ""}`, "source");
      } else {
        Ombre.cell(tr, pct(c.value), "value");
        Ombre.cell(tr, pct(c.threshold), "value");
        Ombre.cell(tr, m("statuses")[c.status]);
        Ombre.cell(tr, c.source, "source");
      }
      table.append(tr);
    }
    box.append(h, table);
  }
}

// The figures no criterion judges: per scope (the plant, then each machine) the data
// completeness, the live model's age and the signals declared; for the plant, the
// readings lost and the protocols. A dash has its reason in the cell's tooltip.
const FIGURES = ["data_completeness", "data_age_p95", "data_age", "signals_declared"];

function figureCell(tr, e) {
  const td = Ombre.cell(tr, "", "value");
  if (e) {
    td.dataset.key = e.key;
    td.textContent = e.value === null ? "–" : e.key === "data_completeness" ? pct(e.value)
      : e.unit === "s" ? `${Math.round(e.value)} s` : `${e.value}`;
    if (e.note) td.title = e.note;
  }
}

function figures() {
  const by = {};
  for (const e of result.evidence) (by[e.scope] ??= {})[e.key] = e;
  const names = m("figure-names");
  const table = document.getElementById("figures");
  table.replaceChildren();
  const head = document.createElement("tr");
  for (const k of ["scope", ...FIGURES]) {
    const th = document.createElement("th");
    th.textContent = names[k];
    head.append(th);
  }
  table.append(head);
  for (const scope of Object.keys(by).filter((s) => s === "plant" || s.startsWith("machine:"))) {
    const tr = document.createElement("tr");
    tr.dataset.scope = scope;
    Ombre.cell(tr, scope === "plant" ? m("the-plant") : scope.slice("machine:".length));
    for (const k of FIGURES) figureCell(tr, by[scope][k]);
    table.append(tr);
  }
  const lost = by.plant.readings_lost;
  document.getElementById("plant-figures").textContent = `${names.readings_lost}${Ombre.t("colon")}`
    + `${lost.value === null ? "–" : lost.value} · ${names.protocols}${Ombre.t("colon")}${by.plant.protocols.note}`;
}

function steps() {
  const list = document.getElementById("steps");
  list.replaceChildren();
  const texts = Object.fromEntries(AREAS.flatMap((a) => result.areas[a].criteria.map((c) => [c.key, criterionText(c)])));
  for (const s of result.next_steps) {
    const li = document.createElement("li");
    const action = Ombre.lang === "en" ? s.action : m("actions")[s.criterion] || s.action;
    const h = s.history;
    const known = h ? ` (${m("history-line").replace("{d}", h.downtime_min).replace("{s}", h.scrap).replace("{a}", h.drift_alerts)})`
      : s.machine ? ` (${m("no-data-yet")})` : "";
    li.textContent = `${s.machine || m("the-plant")}${known}${Ombre.t("colon")}${action}; ${m("for-stage")} `
      + `${stageName(s.stage)}, ${texts[s.criterion]} ${pct(s.value)}, ${m("needs")} ${pct(s.threshold)}`;
    list.append(li);
  }
  if (!result.next_steps.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = m("no-steps");
    list.append(li);
  }
}

// The kept assessments: the plant's stage and each area's, day by day.
function historyChart() {
  const box = document.getElementById("chart-history");
  charts.history?.destroy();
  if (!kept.length) { box.textContent = m("no-history"); return; }
  box.textContent = "";
  const x = kept.map((h) => Date.parse(`${h.day}T00:00:00Z`) / 1000);
  const series = [{}, { label: m("overall"), stroke: COLOURS.overall, width: 3 },
    ...AREAS.map((a) => ({ label: m("areas")[a], stroke: COLOURS[a], width: 2 }))];
  const data = [x, kept.map((h) => h.stage), ...AREAS.map((a) => kept.map((h) => h.areas[a]))];
  charts.history = new uPlot({
    width: width(), height: 240, series,
    // one kept day alone: a week around it, not uPlot's padding of years
    scales: { x: { range: x.length > 1 ? [x[0], x[x.length - 1]] : [x[0] - 3 * 86400, x[0] + 3 * 86400] },
              y: { range: [0, 6] } },
    axes: [{ stroke: "#ddd" }, { stroke: "#ddd", splits: () => [0, 1, 2, 3, 4, 5, 6] }],
  }, data, box);
}

// The questions grouped by area, each with yes / partly / no and who answered it last.
function form() {
  const box = document.getElementById("self-assessment");
  box.replaceChildren();
  for (const area of AREAS) {
    const mine = questions.questions.filter((q) => q.area === area);
    if (!mine.length) continue;
    const h = document.createElement("h3");
    h.textContent = m("areas")[area];
    box.append(h);
    for (const q of mine) {
      const row = document.createElement("div");
      row.className = "question";
      row.id = `question-${q.key}`;
      const text = document.createElement("p");
      text.textContent = `${stageName(q.stage)} · ${q.text[Ombre.lang]}`;
      row.append(text);
      for (const answer of questions.answers) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        Object.assign(input, { type: "radio", name: q.key, value: answer, checked: q.answer === answer });
        label.append(input, ` ${m("answers")[answer]} `);
        row.append(label);
      }
      if (q.answer) {
        const who = document.createElement("span");
        who.className = "muted";
        who.textContent = ` ${m("answered-by")} ${q.answered_by}, ${new Date(q.answered_ns / 1e6).toLocaleString(Ombre.lang)}`;
        row.append(who);
      }
      box.append(row);
    }
  }
  const save = document.createElement("button");
  save.type = "submit";
  save.id = "save-answers";
  save.textContent = m("save");
  const status = document.createElement("p");
  status.id = "answers-status";
  box.append(save, status);
}

async function submit(event) {
  event.preventDefault();
  const answers = Object.fromEntries([...new FormData(event.target).entries()]);
  const response = await Ombre.api("/api/v1/assessment/answers", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ answers }) });
  const status = () => document.getElementById("answers-status");
  if (!response.ok) {
    status().className = "error";
    status().textContent = response.status === 403 ? m("needs-admin-answers")
      : JSON.stringify((await response.json()).detail);
    return;
  }
  await load();
  status().textContent = m("saved");
}

// The report from the API (it needs the token, so no plain link): saved as a file.
async function download(format) {
  const error = document.getElementById("report-error");
  error.textContent = "";
  const response = await Ombre.api(`/api/v1/assessment/report?lang=${Ombre.lang}&format=${format}&${range}`);
  if (!response.ok) { error.textContent = (await response.json()).detail; return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `ombre-maturity-${result.window.to.slice(0, 10)}-${Ombre.lang}.${format}`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function draw() {
  for (const el of document.querySelectorAll("[data-m]")) el.textContent = m(el.dataset.m);
  if (!result) return;
  overall();
  areaChart();
  evidence();
  figures();
  steps();
  historyChart();
  form();
}

async function load() {
  [questions, result] = await Promise.all([json("/api/v1/assessment/questions"), json(`/api/v1/assessment?${range}`)]);
  kept = await json("/api/v1/assessment/history");  // after the assessment, which it keeps
  draw();
}

document.getElementById("self-assessment").addEventListener("submit", submit);
document.getElementById("report-html").addEventListener("click", () => download("html"));
document.getElementById("report-pdf").addEventListener("click", () => download("pdf"));
Ombre.onLanguage = () => { if (WORDS) draw(); };
fetch("/static/maturity_text.json").then((r) => r.json()).then((words) => {
  WORDS = words;
  Ombre.init(() => load().catch((error) => {
    document.getElementById("report-error").textContent = error.message;
  }));
});
