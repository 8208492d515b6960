// The shift reports the shadow writes at each shift's end (and `ombre report shift`),
// newest first, each opened as HTML or PDF; and a form where an operator adds a note
// on a line's running shift, which its report lists.
"use strict";

// This page's words (the shared ones are in common.js).
Object.assign(TEXT.en, {
  day: "day", "shift-name": "shift", line: "line", target: "target",
  language: "language", "no-reports": "no shift report yet", "in-progress": "in progress",
  "shift-note": "A note on this shift", "add-note": "Add", "note-added": "note added",
  "needs-operator-note": "adding a note needs an operator token" });
Object.assign(TEXT.fr, {
  day: "jour", "shift-name": "poste", line: "ligne", target: "objectif",
  language: "langue", "no-reports": "aucun rapport de poste pour l'instant", "in-progress": "en cours",
  "shift-note": "Une note sur ce poste", "add-note": "Ajouter", "note-added": "note ajoutée",
  "needs-operator-note": "ajouter une note demande un jeton opérateur" });

const t = Ombre.t;
let reports = [];

// The files need the token: fetched, then shown from memory in this tab (a tab opened
// after the fetch would be a pop-up the browser blocks); Back returns to the list.
async function open(url) {
  const response = await Ombre.api(url);
  if (!response.ok) {
    document.getElementById("reports-error").textContent = (await response.json()).detail;
    return;
  }
  location.assign(URL.createObjectURL(await response.blob()));
}

function link(td, label, url) {
  const a = document.createElement("a");
  a.href = url;
  a.textContent = label;
  a.className = label.toLowerCase();
  a.addEventListener("click", (event) => { event.preventDefault(); open(url); });
  td.append(a, " ");
}

function render() {
  const body = document.querySelector("#report-table tbody");
  body.replaceChildren(...reports.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.name = r.name;
    Ombre.cell(tr, r.day);
    Ombre.cell(tr, r.shift + (r.complete ? "" : ` (${t("in-progress")})`));
    Ombre.cell(tr, r.line_name);
    Ombre.cell(tr, Ombre.pct(r.oee), r.oee !== null && r.oee >= r.oee_target ? "met" : "below");
    Ombre.cell(tr, Ombre.pct(r.oee_target));
    Ombre.cell(tr, r.lang.toUpperCase());
    const files = Ombre.cell(tr, "");
    link(files, "HTML", r.html);
    if (r.pdf) link(files, "PDF", r.pdf);
    return tr;
  }));
  document.getElementById("no-reports").hidden = reports.length > 0;
}

async function load() {
  const response = await Ombre.api("/api/v1/reports");
  reports = await response.json();
  render();
}

async function lines() {
  const machines = await (await Ombre.api("/api/v1/machines")).json();
  const select = document.getElementById("note-line");
  select.replaceChildren(...[...new Set(machines.map((m) => m.line))].map((l) => new Option(l, l)));
}

async function addNote(event) {
  event.preventDefault();
  const text = document.getElementById("note-text");
  const line = document.getElementById("note-line").value;
  const response = await Ombre.api(`/api/v1/lines/${encodeURIComponent(line)}/notes`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text: text.value }) });
  const result = document.getElementById("note-result");
  if (response.ok) {
    text.value = "";
    result.textContent = t("note-added");
  } else {
    result.textContent = response.status === 403 ? t("needs-operator-note") : (await response.json()).detail;
  }
}

Ombre.onLanguage = render;
document.getElementById("note").addEventListener("submit", addNote);
Ombre.init(() => { load(); lines(); });
