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
        close: "Close", note: "note", "needs-operator-alert": "this needs an operator token" },
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
        "none-left": "aucun", signals: "Signaux", baseline: "référence", limits: "±3σ" },
};

const Ombre = {
  lang: localStorage.getItem("ombre-lang") || (navigator.language.startsWith("fr") ? "fr" : "en"),
  token: null,
  onLanguage: () => {},
  t(key) { return TEXT[Ombre.lang][key] || key; },
  pct(v) { return v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`; },
  translate() {
    document.documentElement.lang = Ombre.lang;
    document.getElementById("lang").textContent = Ombre.lang === "en" ? "FR" : "EN";
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = Ombre.t(el.dataset.i18n);
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
