// Ombre's shop-floor overview, and its wall (andon) mode at /wall. The plant's and each
// line's OEE for the current shift with its three factors and how much of the shift has
// data; one tile per machine (coloured by its ISO 22400 category) with its state, how
// long it has been in it, its job and counts; the open drift alerts; the OEE per shift
// over the last 7 days. It reads the live stream, so it updates without a reload, and
// reconnects by itself when the server goes away and comes back.
// Wall mode: no controls, large type, and when the lines do not fit one screen it shows
// them a page at a time (/wall?lines=N lines a page, every=S seconds a page).
// ?site=ID or ?line=ID (the filters in the header) shows one site or one line: its
// tiles, its alerts, and its KPIs in the summary. A token scoped to a site sees that
// site only.
"use strict";

const machines = new Map();  // id -> last MachineOut
const alerts = new Map();    // id -> last AlertOut
let kpis = { machines: {}, lines: {}, plant: null };
let now = 0;  // the server's time (ns), from the stream's clock events
const wall = location.pathname === "/wall";
const options = new URLSearchParams(location.search);
const TREND_DAYS = 7;
const TREND_EVERY_MS = 5 * 60 * 1000;  // the finished shifts change only at a shift's end
const SERIES_COLOURS = ["#4dd0e1", "#ff80ab", "#ffb74d", "#b2ff59", "#b39ddb", "#fff176"];
let trend = { loadedAt: 0, series: [] };  // [{id, name, points: [{start_ns, oee}]}]
let page = 0;
let sites = [];  // /api/v1/sites: the sites the token sees, with their lines
// The one filter of the address, as the stream and /kpis take it: ["site", id] or
// ["line", id], or null for everything the token sees.
const filter = ["site", "line"].filter((k) => options.get(k)).map((k) => [k, options.get(k)])[0] || null;
const filterQuery = filter ? `${filter[0]}=${encodeURIComponent(filter[1])}` : "";

const t = Ombre.t;
const pct = Ombre.pct;

function node(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

// "12 min", "3 h 05": how long a machine has been in its state, at the stream's clock.
function duration(ns) {
  if (ns === null || ns === undefined || ns < 0) return "–";
  const minutes = Math.floor(ns / 6e10);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")}`;
}

// The OEE in large type, its three factors and the coverage, for the plant, a line or a
// machine: each number carries its value in data-value.
function kpiParts(k) {
  const oee = node("div", "oee", `${t("oee")} ${pct(k.oee)}`);
  oee.dataset.value = k.oee ?? "";
  const factors = node("div", "factors", `${t("A")} ${pct(k.availability)} · ${t("P")} `
    + `${pct(k.effectiveness)} · ${t("Q")} ${pct(k.quality_ratio)}`);
  // Time with no data is not counted as a loss: say how much of the shift has data.
  const coverage = node("div", "coverage", `${t("coverage")} ${pct(k.coverage)} · ${t("no-data")} `
    + `${Ombre.minutes(k.no_data_s)} · ${t("unknown")} ${pct(k.unclassified_share)}`);
  coverage.dataset.value = k.coverage ?? "";
  return [oee, factors, coverage];
}

// What the summary is of: the plant, or the site or line of the filter.
function shownName() {
  if (!filter) return sites.length === 1 && sites[0].lines.length ? siteName(sites[0]) : t("plant");
  const [kind, id] = filter;
  const site = sites.find((s) => s.id === id);
  if (kind === "site") return site ? siteName(site) : id;
  const line = sites.flatMap((s) => s.lines).find((l) => l.id === id);
  return line ? line.name || line.id : id;
}

function siteName(site) { return site.name || site.id; }

function renderPlant() {
  const el = document.getElementById("plant");
  el.replaceChildren(node("h2", "name", shownName()), ...kpiParts(kpis.plant || {}));
}

// The site and line filters: a site's list when the token sees more than one site, a
// line's list when the sites shown have more than one line. Choosing reloads the page
// with ?site= or ?line=.
function renderFilters() {
  const siteBox = document.getElementById("site-filter");
  const lineBox = document.getElementById("line-filter");
  const siteOf = (lineId) => sites.find((s) => s.lines.some((l) => l.id === lineId));
  const chosenSite = filter && (filter[0] === "site" ? filter[1] : siteOf(filter[1])?.id);
  siteBox.replaceChildren(new Option(t("all-sites"), ""),
    ...sites.map((s) => new Option(siteName(s), s.id, false, s.id === chosenSite)));
  siteBox.hidden = wall || sites.length < 2;
  const lines = sites.filter((s) => !chosenSite || s.id === chosenSite).flatMap((s) => s.lines);
  const chosenLine = filter && filter[0] === "line" ? filter[1] : "";
  lineBox.replaceChildren(new Option(t("all-lines"), ""),
    ...lines.map((l) => new Option(l.name || l.id, l.id, false, l.id === chosenLine)));
  lineBox.hidden = wall || lines.length < 2;
  siteBox.onchange = () => go(siteBox.value ? { site: siteBox.value } : {});
  lineBox.onchange = () => go(lineBox.value ? { line: lineBox.value }
    : chosenSite && sites.length > 1 ? { site: chosenSite } : {});
}

function go(params) {
  const next = new URLSearchParams(options);
  next.delete("site");
  next.delete("line");
  for (const [k, v] of Object.entries(params)) next.set(k, v);
  location.search = next.toString();
}

function lineBox(lineId) {
  let box = document.getElementById(`line-${lineId}`);
  if (!box) {
    box = node("section", "line");
    box.id = `line-${lineId}`;
    box.dataset.line = lineId;
    box.append(node("div", "line-head"), node("div", "line-tiles"));
    document.getElementById("tiles").append(box);
    renderLine(lineId);
  }
  return box;
}

function renderLine(lineId) {
  const k = kpis.lines[lineId] || {};
  const head = document.querySelector(`#line-${CSS.escape(lineId)} .line-head`);
  if (!head) return;
  const name = node("h2", "name", k.name || lineId);
  const site = sites.length > 1 && sites.find((s) => s.lines.some((l) => l.id === lineId));
  if (site) name.prepend(node("span", "site", `${siteName(site)} · `));
  head.replaceChildren(name, ...kpiParts(k));
}

function inState(m) {
  return m.since_ns && now ? `${t("for")} ${duration(now - m.since_ns)}` : "";
}

function tile(m) {
  let el = document.getElementById(`machine-${m.id}`);
  if (!el) {
    el = node("article", "tile");
    el.id = `machine-${m.id}`;
    lineBox(m.line).querySelector(".line-tiles").append(el);
    paginate(false);
  }
  const k = kpis.machines[m.id] || {};
  el.dataset.category = m.category || "none";
  el.classList.toggle("offline", !m.online);
  const link = node("a", "", m.name || m.id);
  link.href = `/machine?id=${encodeURIComponent(m.id)}`;
  const name = node("h3", "name");
  name.append(link);
  const state = node("div", "state", `${Ombre.state(m.state)} · ${Ombre.category(m.category)}`
    + `${m.online ? "" : ` · ${t("offline")}`}`);
  state.title = Ombre.explain(m.category);
  const since = node("div", "since", inState(m));
  const job = node("div", "job", m.job ? `${t("job")} ${m.job}: ${m.counts.produced} ${t("parts")}, `
    + `${m.counts.good} ${t("good")}, ${m.counts.scrap} ${t("scrap")}` : t("no-job"));
  el.replaceChildren(name, state, since, job, ...kpiParts(k));
}

function renderAlerts() {
  const list = document.getElementById("alerts");
  const open = [...alerts.values()].filter((a) => a.status !== "closed");
  list.innerHTML = "";
  if (!open.length) list.append(node("li", "muted", t("no-alerts")));
  for (const a of open.sort((x, y) => y.detected_ns - x.detected_ns)) {
    const when = new Date(a.detected_ns / 1e6).toLocaleString(Ombre.lang,
      { dateStyle: "short", timeStyle: "short" });
    const li = node("li", "", `${a.machine} / ${a.signal}: ${a.direction === "up" ? "↑" : "↓"} `
      + `${Math.abs(a.shift_value).toPrecision(3)} ${a.unit || ""} (${a.detector}, ${when})`);
    li.id = `alert-${a.id}`;
    list.append(li);
  }
}

// The OEE per shift of the plant and of each line over the last 7 days, from
// /api/v1/kpis?by=shift (the numbers of `ombre kpi --by shift`), at most every 5 minutes.
async function loadTrend() {
  if (!kpis.to_ns || Date.now() - trend.loadedAt < TREND_EVERY_MS) return;
  trend.loadedAt = Date.now();
  const to = new Date(kpis.to_ns / 1e6);
  const from = new Date(to.getTime() - TREND_DAYS * 864e5);
  const range = `by=shift&from=${from.toISOString()}&to=${to.toISOString()}`;
  const shown = filterQuery ? `&${filterQuery}` : "";
  const wanted = [{ id: "plant", name: shownName(), query: range + shown },
                  ...Object.entries(kpis.lines).map(([id, k]) => (
                    { id, name: k.name || id, query: `${range}&line=${encodeURIComponent(id)}` }))];
  try {
    const series = [];
    for (const s of wanted) {
      const response = await Ombre.api(`/api/v1/kpis?${s.query}`);
      if (!response.ok) throw new Error(`${response.status}`);
      const reports = await response.json();
      series.push({ id: s.id, name: s.name, from_ns: from.getTime() * 1e6, to_ns: kpis.to_ns,
                    points: reports.map((r) => ({ start_ns: r.window.start_ns, label: r.label,
                                                  oee: r.kpis.oee.value })) });
    }
    trend.series = series;
  } catch (error) {  // the server is away for a moment: the next KPI refresh tries again
    console.warn("trend", error);
    trend.loadedAt = 0;
  }
  drawTrend();
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawTrend() {
  const chart = document.getElementById("trend");
  const box = chart.getBoundingClientRect();
  const w = Math.max(box.width, 100);
  const h = Math.max(box.height, 60);
  chart.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize);
  const left = 3.4 * rem; const right = 8; const top = rem / 2; const bottom = 1.6 * rem;
  chart.replaceChildren();
  if (!trend.series.length) return;
  const { from_ns: start, to_ns: end } = trend.series[0];
  const x = (ns) => left + (w - left - right) * (ns - start) / (end - start);
  const y = (v) => top + (h - top - bottom) * (1 - v);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: left - 6, y: y(v) + rem / 3, class: "axis",
                                "text-anchor": "end" });
    label.textContent = `${100 * v} %`;
    chart.append(label);
  }
  const day = new Date(start / 1e6);
  day.setHours(24, 0, 0, 0);
  for (; day.getTime() * 1e6 < end; day.setDate(day.getDate() + 1)) {
    const at = x(day.getTime() * 1e6);
    chart.append(svg("line", { x1: at, x2: at, y1: top, y2: h - bottom, class: "grid" }));
    const label = svg("text", { x: at + 4, y: h - rem / 3, class: "axis" });
    const roomy = (w - left) / TREND_DAYS > 5 * rem;  // else the day of the month alone
    label.textContent = day.toLocaleDateString(Ombre.lang, roomy
      ? { weekday: "short", day: "numeric" } : { day: "numeric" });
    chart.append(label);
  }
  const legend = document.getElementById("trend-legend");
  legend.replaceChildren();
  trend.series.forEach((s, i) => {
    const colour = s.id === "plant" ? "#ffffff" : SERIES_COLOURS[(i - 1) % SERIES_COLOURS.length];
    let path = "";
    let gap = true;
    for (const p of s.points) {  // a shift without an OEE (no data, no time) breaks the line
      if (p.oee === null) { gap = true; continue; }
      path += `${gap ? "M" : "L"}${x(p.start_ns).toFixed(1)},${y(p.oee).toFixed(1)} `;
      gap = false;
    }
    const group = svg("g", { "data-series": s.id, class: s.id === "plant" ? "plant" : "" });
    group.append(svg("path", { d: path, stroke: colour, fill: "none" }));
    for (const p of s.points.filter((q) => q.oee !== null)) {
      const dot = svg("circle", { cx: x(p.start_ns), cy: y(p.oee), r: s.id === "plant" ? 7 : 4,
                                  fill: colour,
                                  "data-oee": p.oee });
      const title = svg("title", {});
      title.textContent = `${s.name} · ${p.label} · ${t("oee")} ${pct(p.oee)}`;
      dot.append(title);
      group.append(dot);
    }
    chart.append(group);
    const item = node("li", "", s.name);
    item.style.setProperty("--colour", colour);
    legend.append(item);
  });
}

// Wall mode: the lines a page at a time when they do not all fit (or ?lines=N a page).
function paginate(advance) {
  if (!wall) return;
  const all = [...document.querySelectorAll("#tiles > .line")];
  if (!all.length) return;
  const asked = parseInt(options.get("lines") || "", 10);
  let size = asked > 0 ? asked : all.length;
  if (!(asked > 0)) {  // every line, if they fit; else one a page
    for (const line of all) line.hidden = false;
    const box = document.getElementById("tiles");
    if (box.scrollHeight > box.clientHeight + 1) size = 1;
  }
  const pages = Math.ceil(all.length / size);
  page = advance ? (page + 1) % pages : page % pages;
  all.forEach((line, i) => { line.hidden = Math.floor(i / size) !== page; });
  document.getElementById("tiles").dataset.page = `${page + 1}/${pages}`;
  document.getElementById("shift").dataset.page = pages > 1 ? ` · ${page + 1}/${pages}` : "";
  renderShift();
}

function renderShift() {
  const el = document.getElementById("shift");
  el.textContent = kpis.from_ns ? `${t("shift")} ${new Date(kpis.from_ns / 1e6)
    .toLocaleTimeString(Ombre.lang, { timeStyle: "short" })}${el.dataset.page || ""}` : "";
}

function renderAll() {
  renderPlant();
  for (const m of machines.values()) tile(m);
  for (const id of Object.keys(kpis.lines)) renderLine(id);
  renderAlerts();
  renderShift();
  paginate(false);
  drawTrend();
}

function handle(kind, data) {
  if (kind === "clock") {
    now = data.now_ns;
    for (const m of machines.values()) {
      const since = document.querySelector(`#machine-${CSS.escape(m.id)} .since`);
      if (since) since.textContent = inState(m);
    }
  } else if (kind === "machine") { machines.set(data.id, data); tile(data); }
  else if (kind === "alert") { alerts.set(data.id, data); renderAlerts(); }
  else if (kind === "kpis") { kpis = data; renderAll(); loadTrend(); }
}

if (wall) {
  document.documentElement.classList.add("wall");
  document.body.classList.add("wall");
  const every = Math.max(2, parseFloat(options.get("every") || "15")) * 1000;
  setInterval(() => paginate(true), every);
}
window.addEventListener("resize", drawTrend);
// The filters are drawn once and on a change of language, never on a refresh: a list
// a person has open stays open.
Ombre.onLanguage = () => { trend.loadedAt = 0; renderFilters(); renderAll(); loadTrend(); };
Ombre.init(async () => {
  const [found, token] = await Promise.all(
    ["/api/v1/sites", "/api/v1/token"].map((path) => Ombre.api(path)));
  if (found.ok) sites = await found.json();
  // The assessment covers the whole plant: a site's token may not open it.
  if (token.ok && (await token.json()).site) {
    document.querySelector('nav a[href="/maturity"]').hidden = true;
  }
  renderFilters();
  renderPlant();
  Ombre.stream(handle, filterQuery ? `?${filterQuery}` : "");
});
