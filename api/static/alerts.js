// Every drift alert, newest first; an operator acknowledges an open one, or closes it
// with a cause from the configured list and a note. Below, the latest notifications
// (e-mail, webhook) and whether they were delivered.
"use strict";

const t = Ombre.t;
const when = (ns) => (ns ? new Date(ns / 1e6).toLocaleString(Ombre.lang) : "");

async function act(alert, action, body) {
  const response = await Ombre.api(`/api/v1/alerts/${alert.id}/${action}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
  document.getElementById("alerts-error").textContent =
    response.status === 403 ? t("needs-operator-alert") : response.ok ? "" : (await response.json()).detail;
  if (response.ok) load();
}

async function load() {
  const [alerts, causes] = await Promise.all([
    Ombre.api("/api/v1/alerts?limit=200").then((r) => r.json()),
    Ombre.api("/api/v1/alert-causes").then((r) => r.json())]);
  const body = document.querySelector("#alert-table tbody");
  body.innerHTML = "";
  if (!alerts.length) body.innerHTML = `<tr><td class="muted">${t("no-alerts")}</td></tr>`;
  for (const a of alerts) {
    const tr = document.createElement("tr");
    tr.id = `alert-row-${a.id}`;
    tr.dataset.status = a.status;
    const cells = [`${a.machine} / ${a.signal}`, `${a.direction === "up" ? "↑" : "↓"} `
      + `${Math.abs(a.shift_value).toPrecision(3)} ${a.unit || ""} (${Math.abs(a.shift_sigma).toFixed(1)}σ)`,
      a.detector, when(a.detected_ns), t(`status-${a.status}`), a.acknowledged_by || "", a.cause || "", a.note || ""];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const actions = document.createElement("td");
    if (a.status === "open") {
      const ack = document.createElement("button");
      ack.className = "ack";
      ack.textContent = t("acknowledge");
      ack.addEventListener("click", () => act(a, "ack"));
      actions.append(ack);
    }
    if (a.status !== "closed") {
      const cause = document.createElement("select");
      for (const c of causes) cause.add(new Option(c, c));
      const note = document.createElement("input");
      note.placeholder = t("note");
      const close = document.createElement("button");
      close.className = "close";
      close.textContent = t("close");
      close.addEventListener("click", () => act(a, "close", { cause: cause.value, note: note.value || null }));
      actions.append(cause, note, close);
    }
    tr.append(actions);
    body.append(tr);
  }
}

async function loadNotifications() {
  const response = await Ombre.api("/api/v1/notifications?limit=20");
  const body = document.querySelector("#notification-table tbody");
  body.innerHTML = "";
  if (!response.ok) {  // 403 for a token scoped to a site: notifications are the plant's
    const tr = document.createElement("tr");
    Ombre.cell(tr, (await response.json()).detail, "muted");
    body.append(tr);
    return;
  }
  const notes = await response.json();
  if (!notes.length) body.innerHTML = `<tr><td class="muted">${t("no-notifications")}</td></tr>`;
  for (const n of notes) {
    const tr = document.createElement("tr");
    tr.dataset.status = n.status;
    const cells = [when(n.created_ns), t(`channel-${n.channel}`), n.subject,
      t(`notification-${n.status}`), `${n.attempts} ${t("attempts")}`, n.last_error || ""];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    tr.title = n.body;
    body.append(tr);
  }
}

const loadAll = () => { load(); loadNotifications(); };
Ombre.onLanguage = () => { if (Ombre.token) loadAll(); };
Ombre.init(() => { loadAll(); setInterval(loadAll, 15000); });
