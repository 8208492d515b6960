// What the dashboard pages share: labels in English and French, the token (taken once
// from the address, then kept in the browser), and requests that carry it.
"use strict";

const TEXT = {
  en: { title: "Shop floor", connecting: "connecting…", live: "live", lost: "reconnecting…",
        token: "API token", open: "Open", alerts: "Open drift alerts", "no-alerts": "none",
        job: "job", "no-job": "no job", parts: "parts", good: "good", scrap: "scrap",
        offline: "offline", shift: "shift since", bad: "this token is not accepted",
        A: "availability", P: "performance", Q: "quality", back: "← shop floor",
        timeline: "This shift", losses: "Where the time went (min)", downtime: "Downtime without a reason",
        assign: "Assign", "needs-operator": "assigning a reason needs an operator token",
        "loss-availability": "availability loss", "loss-performance": "performance loss",
        "loss-quality": "quality loss", "fully-productive": "fully productive", "none-left": "none", signals: "Signals",
        baseline: "baseline", limits: "±3σ", "all-alerts": "Drift alerts", "status-open": "open",
        "status-acknowledged": "acknowledged", "status-closed": "closed", acknowledge: "Acknowledge",
        close: "Close", note: "note", "needs-operator-alert": "this needs an operator token",
        orders: "Production orders", order: "order", operation: "operation", material: "material",
        progress: "progress", "order-status": "status", "running-on": "running on", "status-planned": "planned",
        "status-running": "running", "status-completed": "completed", "order-closed": "closed", start: "Start",
        complete: "Complete", "import-csv": "Import a CSV", imported: "orders imported",
        "needs-admin": "importing orders needs an admin token",
        "needs-operator-job": "starting or completing a job needs an operator token",
        requested: "requested; the shadow applies it in a moment", "no-orders": "no orders",
        demo: "Demo", "sim-time": "simulated time", scenario: "scenario", starts: "starts at",
        coverage: "data", "no-data": "no data", unknown: "unknown",
        "coverage-line": "time with data: {c} of the planned time; no data (not counted as a loss): {n}; unknown (gateway running, machine silent): {u}",
        autocorrelated: "readings autocorrelated", "watching-residuals": "the detector watches the AR(1) residuals (a slow drift shows later)",
        "watching-anyway": "the detector watches the readings anyway: expect more false alarms",
        oee: "OEE", colon: ": ", legend: "Time categories (ISO 22400)", unclassified: "unclassified",
        "unclassified-text": "no state known (the machine is silent, or its state is not mapped)",
        "source-machine": "from the machine", "source-operator": "from an operator",
        "machine-said": "the machine said", maturity: "Maturity", "lost-time": "Lost time",
        notifications: "Notifications sent", "no-notifications": "none yet",
        "notification-pending": "waiting (retried)", "notification-sent": "sent",
        "notification-failed": "given up", "notification-dropped": "dropped (queue full)",
        "channel-email": "e-mail", "channel-webhook": "webhook", attempts: "attempts",
        plant: "Plant", "all-sites": "All sites", "all-lines": "All lines",
        trend: "OEE per shift, last 7 days", for: "for", wall: "Wall display",
        lines: "Lines", "line-title": "Lines: state of every machine", "this-shift": "Current shift",
        earlier: "◀ earlier", later: "later ▶", now: "now", "still-going": "still going on",
        "band-legend": "Colours and the machine's own states",
        "kind-planned_stop": "planned stop, no state", "kind-planned_stop-text": "a planned stop of the calendar (PDOT) when the machine's state is not known",
        "kind-unknown": "unknown", "kind-unknown-text": "the gateway ran, the machine was silent (counted as unclassified)",
        "kind-no_data": "no data", "kind-no_data-text": "the gateway was not running, or before the machine's first reading (no loss)",
        "kind-off": "off shift", "kind-off-text": "outside every shift: not planned to operate",
        "export-png": "PNG", "export-csv": "CSV", "export-title": "download this chart",
        "cursor-last": "last values; point at the chart to read a time", time: "time",
        "line-of": "line" },
  fr: { title: "Atelier", connecting: "connexion…", live: "en direct", lost: "reconnexion…",
        token: "Jeton d'API", open: "Ouvrir", alerts: "Alertes de dérive ouvertes",
        "no-alerts": "aucune", job: "OF", "no-job": "pas d'OF", parts: "pièces",
        good: "bonnes", scrap: "rebut", offline: "hors ligne", shift: "poste depuis",
        bad: "ce jeton n'est pas accepté", A: "disponibilité", P: "performance",
        Q: "qualité", back: "← atelier", timeline: "Ce poste",
        losses: "Où le temps est passé (min)", downtime: "Arrêts sans motif", assign: "Affecter",
        "needs-operator": "affecter un motif demande un jeton opérateur",
        "loss-availability": "perte de disponibilité", "loss-performance": "perte de performance",
        "loss-quality": "perte de qualité", "fully-productive": "pleinement productif",
        "none-left": "aucun", signals: "Signaux", baseline: "référence", limits: "±3σ",
        "all-alerts": "Alertes de dérive", "status-open": "ouverte",
        "status-acknowledged": "prise en compte", "status-closed": "clôturée", acknowledge: "Prendre en compte",
        close: "Clôturer", note: "note", "needs-operator-alert": "cela demande un jeton opérateur",
        orders: "Ordres de fabrication", order: "OF", operation: "opération", material: "article",
        progress: "avancement", "order-status": "statut", "running-on": "en cours sur", "status-planned": "planifié",
        "status-running": "en cours", "status-completed": "terminé", "order-closed": "clôturé", start: "Démarrer",
        complete: "Terminer", "import-csv": "Importer un CSV", imported: "ordres importés",
        "needs-admin": "importer des ordres demande un jeton administrateur",
        "needs-operator-job": "démarrer ou terminer un OF demande un jeton opérateur",
        requested: "demandé ; le jumeau l'applique dans un instant", "no-orders": "aucun ordre",
        demo: "Démo", "sim-time": "heure simulée", scenario: "scénario", starts: "commence à",
        coverage: "données", "no-data": "sans données", unknown: "inconnu",
        "coverage-line": "temps avec données : {c} du temps planifié ; sans données (pas compté comme perte) : {n} ; inconnu (passerelle en marche, machine muette) : {u}",
        autocorrelated: "mesures autocorrélées", "watching-residuals": "le détecteur surveille les résidus AR(1) (une dérive lente se voit plus tard)",
        "watching-anyway": "le détecteur surveille quand même les mesures : fausses alertes plus fréquentes",
        oee: "TRS", colon: " : ", legend: "Catégories de temps (ISO 22400)", unclassified: "non classé",
        "unclassified-text": "état inconnu (la machine se tait, ou son état n'est pas associé)",
        "source-machine": "donné par la machine", "source-operator": "donné par un opérateur",
        "machine-said": "la machine a dit", maturity: "Maturité", "lost-time": "Temps perdu",
        notifications: "Notifications envoyées", "no-notifications": "aucune pour l'instant",
        "notification-pending": "en attente (réessayée)", "notification-sent": "envoyée",
        "notification-failed": "abandonnée", "notification-dropped": "écartée (file pleine)",
        "channel-email": "e-mail", "channel-webhook": "webhook", attempts: "tentatives",
        plant: "Usine", "all-sites": "Tous les sites", "all-lines": "Toutes les lignes",
        trend: "TRS par poste, 7 derniers jours", for: "depuis", wall: "Affichage mural",
        lines: "Lignes", "line-title": "Lignes : état de chaque machine", "this-shift": "Poste en cours",
        earlier: "◀ avant", later: "après ▶", now: "maintenant", "still-going": "en cours",
        "band-legend": "Couleurs et états propres à la machine",
        "kind-planned_stop": "arrêt planifié, état inconnu", "kind-planned_stop-text": "un arrêt planifié du calendrier (PDOT) quand l'état de la machine n'est pas connu",
        "kind-unknown": "inconnu", "kind-unknown-text": "la passerelle tournait, la machine se taisait (compté non classé)",
        "kind-no_data": "sans données", "kind-no_data-text": "la passerelle ne tournait pas, ou avant la première mesure de la machine (pas une perte)",
        "kind-off": "hors poste", "kind-off-text": "en dehors de tout poste : pas prévu de produire",
        "export-png": "PNG", "export-csv": "CSV", "export-title": "télécharger ce graphique",
        "cursor-last": "dernières valeurs ; pointer le graphique pour lire un instant", time: "heure",
        "line-of": "ligne" },
};

TEXT.en.reports = "Shift reports";  // the overview's link to /reports
TEXT.fr.reports = "Rapports de poste";

// The ISO 22400 time categories: a short name and what counts in each, per language.
const CATEGORIES = {
  en: { APT: ["production", "actual production time: running and producing for a job"],
        ASUT: ["setup", "actual setup time: setup or changeover for a job"],
        ADET: ["unplanned stop", "actual unit delay time: an unplanned stop while a job is on the machine (breakdown, minor stop, waiting)"],
        ADOT: ["idle, no job", "actual unit down time: available but idle, no job loaded"],
        PDOT: ["planned stop", "planned down time: maintenance, breaks, meetings in the calendar"] },
  fr: { APT: ["production", "temps de production effectif : la machine produit pour un OF"],
        ASUT: ["réglage", "temps de réglage effectif : réglage ou changement de série pour un OF"],
        ADET: ["arrêt non planifié", "temps d'arrêt non planifié avec un OF chargé (panne, micro-arrêt, attente)"],
        ADOT: ["arrêt sans OF", "temps d'arrêt machine : disponible mais sans OF chargé"],
        PDOT: ["arrêt planifié", "temps d'arrêt planifié : maintenance, pauses, réunions du calendrier"] },
};

// OPC 40001 Machinery and PackML (OPC 30050) state and mode names in French; a state a
// table or a rule names is shown as the config names it.
const STATE_NAMES_FR = {
  NotAvailable: "indisponible", OutOfService: "hors service", Executing: "en exécution",
  NotExecuting: "à l'arrêt", None: "aucun", Maintenance: "maintenance", Setup: "réglage",
  Processing: "production", Undefined: "indéfini", Clearing: "acquittement",
  Stopped: "arrêté", Starting: "démarrage", Idle: "au repos", Suspended: "suspendu",
  Execute: "exécution", Stopping: "arrêt en cours", Aborting: "abandon en cours",
  Aborted: "abandonné", Holding: "mise en attente", Held: "en attente",
  Unholding: "reprise", Suspending: "suspension en cours", Unsuspending: "fin de suspension",
  Resetting: "réinitialisation", Completing: "achèvement en cours", Complete: "achevé",
  Production: "production", Manual: "manuel",
};

const Ombre = {
  lang: localStorage.getItem("ombre-lang") || (navigator.language.startsWith("fr") ? "fr" : "en"),
  token: null,
  onLanguage: () => {},
  t(key) { return TEXT[Ombre.lang][key] || key; },
  // "production (APT)"; the explanation goes in a tooltip and the legend.
  category(c) { return c ? `${CATEGORIES[Ombre.lang][c][0]} (${c})` : Ombre.t("unclassified"); },
  explain(c) { return c ? `${c}: ${CATEGORIES[Ombre.lang][c][1]}` : Ombre.t("unclassified-text"); },
  // A companion specification's state ("Executing/Processing") in the page's language.
  state(raw) {
    const parts = raw.split("/");
    if (Ombre.lang !== "fr" || !parts.every((p) => p in STATE_NAMES_FR)) return raw;
    return parts.map((p) => STATE_NAMES_FR[p]).join(" / ");
  },
  // Fills the #legend element: each category's colour, name and what counts in it.
  legend() {
    const el = document.getElementById("legend");
    if (!el) return;
    el.replaceChildren(...Object.keys(CATEGORIES.en).map((c) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.dataset.category = c;
      const text = document.createElement("span");
      text.textContent = `${Ombre.category(c)}${Ombre.t("colon")}${CATEGORIES[Ombre.lang][c][1]}`;
      item.dataset.category = c;
      item.append(swatch, text);
      return item;
    }));
  },
  pct(v) { return v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`; },
  // A table cell with `text` (and a class) added to row `tr`; returns the cell.
  cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.append(td);
    return td;
  },
  minutes(s) { return s === null || s === undefined ? "–" : `${Math.round(s / 60)} min`; },
  translate() {
    document.documentElement.lang = Ombre.lang;
    document.getElementById("lang").textContent = Ombre.lang === "en" ? "FR" : "EN";
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = Ombre.t(el.dataset.i18n);
    Ombre.legend();
    Ombre.onLanguage();
  },
  async api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${Ombre.token}` } });
    if (response.status === 401) { Ombre.logout(Ombre.t("bad")); throw new Error("401"); }
    return response;
  },
  logout(message) {
    localStorage.removeItem("ombre-token");
    document.getElementById("page").hidden = true;
    document.getElementById("login").hidden = false;
    document.getElementById("login-error").textContent = message || "";
  },
  // Reads the live stream (/api/v1/stream, with `query` such as "?site=lyon") with
  // fetch, so the token travels in the Authorization header, and calls
  // handle(kind, data) for each event; reconnects.
  // The stream is closed as the page is left: Chromium may otherwise keep its
  // connection open, and six such to one server leave no room for a new page's requests.
  async stream(handle, query = "") {
    const status = document.getElementById("status");
    const leaving = new AbortController();
    window.addEventListener("pagehide", () => leaving.abort());
    for (;;) {
      if (leaving.signal.aborted) return;
      try {
        const response = await fetch(`/api/v1/stream${query}`, {
          headers: { Authorization: `Bearer ${Ombre.token}` }, signal: leaving.signal });
        if (response.status === 401 || response.status === 403) {
          Ombre.logout(Ombre.t("bad"));
          return;
        }
        if (response.status >= 400 && response.status < 500) {  // e.g. ?site= unknown
          status.textContent = (await response.json()).detail;
          status.className = "error";
          return;
        }
        status.textContent = Ombre.t("live");
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
      status.textContent = Ombre.t("lost");
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  },
  // Under `ombre demo`: a banner with the speed, the simulated time, and for each
  // scenario what to look for; refreshed every 5 s. Elsewhere /api/v1/demo is a 404.
  async demo() {
    let d;
    try {
      const response = await fetch("/api/v1/demo", { headers: { Authorization: `Bearer ${Ombre.token}` } });
      if (!response.ok) return;  // not a demo
      d = await response.json();
    } catch (error) {  // the server is away for a moment: try again later
      console.warn("demo banner", error);
      setTimeout(Ombre.demo, 5000);
      return;
    }
    let banner = document.getElementById("demo");
    if (!banner) {
      banner = document.createElement("aside");
      banner.id = "demo";
      document.body.insertBefore(banner, document.getElementById("page"));
    }
    const when = (ns) => new Date(ns / 1e6).toLocaleString(Ombre.lang, { dateStyle: "short", timeStyle: "short" });
    const line = (text) => { const p = document.createElement("p"); p.textContent = text; return p; };
    banner.replaceChildren(
      line(`${Ombre.t("demo")} ×${d.speed} · ${Ombre.t("sim-time")} ${when(d.sim_ns)}`),
      ...d.scenarios.map((s) => line(`${Ombre.t("scenario")} ${s.name}`
        + (s.started ? "" : ` (${Ombre.t("starts")} ${when(s.starts_ns)})`) + ` — ${s.look_for[Ombre.lang]}`)));
    setTimeout(Ombre.demo, 5000);
  },
  // Calls `start` once a token is known: from #token=..., the browser, or the form.
  init(start) {
    const form = document.createElement("form");  // the same on every page
    form.id = "login";
    form.hidden = true;
    form.innerHTML = '<label><span data-i18n="token">API token</span> '
      + '<input id="token" type="password" autocomplete="off" size="60"></label> '
      + '<button type="submit" data-i18n="open">Open</button><p id="login-error" class="error"></p>';
    document.body.insertBefore(form, document.getElementById("page"));
    document.getElementById("lang").addEventListener("click", () => {
      Ombre.lang = Ombre.lang === "en" ? "fr" : "en";
      localStorage.setItem("ombre-lang", Ombre.lang);
      Ombre.translate();
    });
    const go = (token) => {
      Ombre.token = token;
      localStorage.setItem("ombre-token", token);
      document.getElementById("login").hidden = true;
      document.getElementById("page").hidden = false;
      start();
      Ombre.demo();
    };
    document.getElementById("login").addEventListener("submit", (event) => {
      event.preventDefault();
      go(document.getElementById("token").value.trim());
    });
    Ombre.translate();
    const hash = new URLSearchParams(location.hash.slice(1)).get("token");
    if (hash) history.replaceState(null, "", location.pathname + location.search);
    const saved = hash || localStorage.getItem("ombre-token");
    if (saved) go(saved); else Ombre.logout();
  },
};
