// Ombre's shop-floor overview: one tile per machine (coloured by its ISO 22400
// category), its job and counts, the OEE of the current shift with its three factors
// and how much of the shift has data, and the open drift alerts. It reads the live stream, so it updates without a reload.
"use strict";

const machines = new Map();  // id -> last MachineOut
const alerts = new Map();    // id -> last AlertOut
let kpis = { machines: {} };

const t = Ombre.t;
const pct = Ombre.pct;

function tile(m) {
  let el = document.getElementById(`machine-${m.id}`);
  if (!el) {
    el = document.createElement("article");
    el.id = `machine-${m.id}`;
    el.className = "tile";
    document.getElementById("tiles").append(el);
  }
  const k = kpis.machines[m.id] || {};
  el.dataset.category = m.category || "none";
  el.classList.toggle("offline", !m.online);
  el.innerHTML = "";
  const add = (tag, cls, text) => {
    const node = document.createElement(tag);
    node.className = cls;
    node.textContent = text;
    el.append(node);
    return node;
  };
  const link = document.createElement("a");
  link.href = `/machine?id=${encodeURIComponent(m.id)}`;
  link.textContent = m.name || m.id;
  add("h3", "name", "").append(link);
  add("div", "state", `${Ombre.state(m.state)} · ${Ombre.category(m.category)}`
      + `${m.online ? "" : ` · ${t("offline")}`}`).title = Ombre.explain(m.category);
  add("div", "job", m.job ? `${t("job")} ${m.job}: ${m.counts.produced} ${t("parts")}, `
      + `${m.counts.good} ${t("good")}, ${m.counts.scrap} ${t("scrap")}` : t("no-job"));
  add("div", "oee", `${t("oee")} ${pct(k.oee)}`).dataset.value = k.oee ?? "";
  add("div", "factors", `${t("A")} ${pct(k.availability)} · ${t("P")} ${pct(k.effectiveness)}`
      + ` · ${t("Q")} ${pct(k.quality_ratio)}`);
  // Time with no data is not counted as a loss: say how much of the shift has data.
  const coverage = add("div", "coverage", `${t("coverage")} ${pct(k.coverage)} · ${t("no-data")} `
      + `${Ombre.minutes(k.no_data_s)} · ${t("unknown")} ${pct(k.unclassified_share)}`);
  coverage.dataset.value = k.coverage ?? "";
}

function renderAlerts() {
  const list = document.getElementById("alerts");
  const open = [...alerts.values()].filter((a) => a.status !== "closed");
  list.innerHTML = "";
  if (!open.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = t("no-alerts");
    list.append(li);
  }
  for (const a of open.sort((x, y) => y.detected_ns - x.detected_ns)) {
    const li = document.createElement("li");
    li.id = `alert-${a.id}`;
    const when = new Date(a.detected_ns / 1e6).toLocaleString(Ombre.lang);
    li.textContent = `${a.machine} / ${a.signal}: ${a.direction === "up" ? "↑" : "↓"} `
      + `${Math.abs(a.shift_value).toPrecision(3)} ${a.unit || ""} (${a.detector}, ${when})`;
    list.append(li);
  }
}

function renderAll() {
  for (const m of machines.values()) tile(m);
  renderAlerts();
  if (kpis.from_ns) {
    document.getElementById("shift").textContent =
      `${t("shift")} ${new Date(kpis.from_ns / 1e6).toLocaleTimeString(Ombre.lang)}`;
  }
}

function handle(kind, data) {
  if (kind === "machine") { machines.set(data.id, data); tile(data); }
  else if (kind === "alert") { alerts.set(data.id, data); renderAlerts(); }
  else if (kind === "kpis") { kpis = data; renderAll(); }
}

Ombre.onLanguage = renderAll;
Ombre.init(() => Ombre.stream(handle));
