// Ombre's shop-floor overview: one tile per machine (coloured by its ISO 22400
// category), its job and counts, the OEE of the current shift with its three factors,
// and the open drift alerts. It reads the live stream (/api/v1/stream) with fetch, so
// the token travels in the Authorization header, and updates without a reload.
"use strict";

const TEXT = {
  en: { title: "Shop floor", connecting: "connecting…", live: "live", lost: "reconnecting…",
        token: "API token", open: "Open", alerts: "Open drift alerts", "no-alerts": "none",
        job: "job", "no-job": "no job", parts: "parts", good: "good", scrap: "scrap",
        offline: "offline", shift: "shift since", bad: "this token is not accepted",
        A: "availability", P: "performance", Q: "quality" },
  fr: { title: "Atelier", connecting: "connexion…", live: "en direct", lost: "reconnexion…",
        token: "Jeton d'API", open: "Ouvrir", alerts: "Alertes de dérive ouvertes",
        "no-alerts": "aucune", job: "OF", "no-job": "pas d'OF", parts: "pièces",
        good: "bonnes", scrap: "rebut", offline: "hors ligne", shift: "poste depuis",
        bad: "ce jeton n'est pas accepté", A: "disponibilité", P: "performance",
        Q: "qualité" },
};
let lang = localStorage.getItem("ombre-lang") || (navigator.language.startsWith("fr") ? "fr" : "en");
const machines = new Map();  // id -> last MachineOut
const alerts = new Map();    // id -> last AlertOut
let kpis = { machines: {} };

const t = (key) => TEXT[lang][key] || key;
const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`);

function translate() {
  document.documentElement.lang = lang;
  document.getElementById("lang").textContent = lang === "en" ? "FR" : "EN";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  renderAll();
}

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
  add("h3", "name", m.name || m.id);
  add("div", "state", `${m.state}${m.category ? ` · ${m.category}` : ""}${m.online ? "" : ` · ${t("offline")}`}`);
  add("div", "job", m.job ? `${t("job")} ${m.job}: ${m.counts.produced} ${t("parts")}, `
      + `${m.counts.good} ${t("good")}, ${m.counts.scrap} ${t("scrap")}` : t("no-job"));
  add("div", "oee", `OEE ${pct(k.oee)}`).dataset.value = k.oee ?? "";
  add("div", "factors", `${t("A")} ${pct(k.availability)} · ${t("P")} ${pct(k.effectiveness)}`
      + ` · ${t("Q")} ${pct(k.quality_ratio)}`);
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
    const when = new Date(a.detected_ns / 1e6).toLocaleString(lang);
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
      `${t("shift")} ${new Date(kpis.from_ns / 1e6).toLocaleTimeString(lang)}`;
  }
}

function handle(kind, data) {
  if (kind === "machine") { machines.set(data.id, data); tile(data); }
  else if (kind === "alert") { alerts.set(data.id, data); renderAlerts(); }
  else if (kind === "kpis") { kpis = data; renderAll(); }
}

async function stream(token) {
  const status = document.getElementById("status");
  for (;;) {
    try {
      const response = await fetch("/api/v1/stream", { headers: { Authorization: `Bearer ${token}` } });
      if (response.status === 401 || response.status === 403) {
        localStorage.removeItem("ombre-token");
        showLogin(t("bad"));
        return;
      }
      status.textContent = t("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const kind = /^event: (.*)$/m.exec(block);
          const data = /^data: (.*)$/m.exec(block);
          if (kind && data) handle(kind[1], JSON.parse(data[1]));
        }
      }
    } catch (error) {
      console.warn("stream lost", error);
    }
    status.textContent = t("lost");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function showLogin(message) {
  document.getElementById("overview").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

function start(token) {
  localStorage.setItem("ombre-token", token);
  document.getElementById("login").hidden = true;
  document.getElementById("overview").hidden = false;
  stream(token);
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "en" ? "fr" : "en";
  localStorage.setItem("ombre-lang", lang);
  translate();
});
document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  start(document.getElementById("token").value.trim());
});
translate();
// A token in the address (#token=...) is taken once and removed from it.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) history.replaceState(null, "", location.pathname);
const saved = fromHash || localStorage.getItem("ombre-token");
if (saved) start(saved); else showLogin();
