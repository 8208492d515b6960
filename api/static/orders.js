// The production orders with their progress against plan, and the machine running
// each. An admin imports an ERP's CSV; an operator starts an order's job on a machine
// without a job signal, or completes it. Machine events of the live stream (a job
// started or ended, parts counted) reload the list, so it follows without a reload.
"use strict";

const t = Ombre.t;
const machines = new Map();  // id -> last MachineOut
let orders = [];
let reloading = null;

function message(id, text) { document.getElementById(id).textContent = text; }

async function command(path, body) {
  const response = await Ombre.api(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
  message("orders-error", response.status === 403 ? t("needs-operator-job")
    : response.ok ? "" : (await response.json()).detail);
  if (response.ok) message("import-result", t("requested"));
}

function progress(tr, o) {
  const td = Ombre.cell(tr, "", "progress");
  const share = o.planned_qty ? Math.min(o.produced / o.planned_qty, 1) : 0;
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${(100 * share).toFixed(1)}%`;
  bar.append(fill);
  const label = document.createElement("span");
  label.textContent = `${o.produced} / ${o.planned_qty}`;
  td.append(bar, label);
}

function actions(tr, o, runningOn) {
  const td = Ombre.cell(tr, "");
  const byHand = [...machines.values()].filter((m) => m.job_by_hand);
  if (runningOn.length) {
    for (const m of runningOn.filter((id) => machines.get(id).job_by_hand)) {
      const done = document.createElement("button");
      done.className = "complete";
      done.textContent = `${t("complete")} (${m})`;
      done.addEventListener("click", () => command(`/api/v1/machines/${encodeURIComponent(m)}/job/complete`));
      td.append(done);
    }
  } else if (o.status !== "completed" && byHand.length) {
    const select = document.createElement("select");
    for (const m of byHand) select.add(new Option(m.name || m.id, m.id, false, m.id === o.machine));
    const start = document.createElement("button");
    start.className = "start";
    start.textContent = t("start");
    start.addEventListener("click", () => command(
      `/api/v1/machines/${encodeURIComponent(select.value)}/job`, { order: o.order_no, operation: o.operation }));
    td.append(select, start);
  }
}

function render() {
  const body = document.querySelector("#order-table tbody");
  body.innerHTML = "";
  if (!orders.length) Ombre.cell(body.insertRow(), t("no-orders"), "muted");
  for (const o of orders) {
    const tr = document.createElement("tr");
    tr.dataset.job = o.job_key;
    tr.dataset.status = o.status;
    const runningOn = [...machines.values()].filter((m) => m.job === o.job_key).map((m) => m.id);
    Ombre.cell(tr, o.order_no);
    Ombre.cell(tr, o.operation);
    Ombre.cell(tr, o.material || "");
    progress(tr, o);
    Ombre.cell(tr, o.good);
    Ombre.cell(tr, o.scrap);
    const status = o.status === "closed" ? "order-closed" : `status-${o.status}`;  // masculine in French
    Ombre.cell(tr, t(status), "status").title = o.end_reason || "";
    Ombre.cell(tr, runningOn.join(", "), "machine");
    actions(tr, o, runningOn);
    body.append(tr);
  }
}

async function load() {
  const response = await Ombre.api("/api/v1/orders");
  if (response.ok) { orders = await response.json(); render(); }
}

// Reloads once after a burst of machine events (at most one request per second).
function reloadSoon() { if (!reloading) reloading = setTimeout(() => { reloading = null; load(); }, 1000); }

function handle(kind, data) {
  if (kind !== "machine") return;
  const before = machines.get(data.id);
  machines.set(data.id, data);
  if (!before || before.job !== data.job || before.counts.produced !== data.counts.produced) reloadSoon();
}

document.getElementById("csv").addEventListener("change", async (event) => {
  const [file] = event.target.files;
  if (!file) return;
  const response = await Ombre.api("/api/v1/orders/import", {
    method: "POST", headers: { "Content-Type": "text/csv" }, body: await file.text() });
  event.target.value = "";
  const result = response.status === 403 ? { detail: t("needs-admin") } : await response.json();
  message("orders-error", response.ok ? result.problems.join("\n") : result.detail);
  message("import-result", response.ok ? `${result.imported} ${t("imported")}` : "");
  if (response.ok) load();
});

Ombre.onLanguage = () => { if (Ombre.token) render(); };
Ombre.init(() => { load(); Ombre.stream(handle); });
