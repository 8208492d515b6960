// State bands on a time axis, from GET /api/v1/timeline: the machine page draws one,
// the line page (the Gantt) one per machine on a shared axis. Each segment sits at its
// own times (left and width in % of the window), so a gap in the data stays a gap; the
// open interval reaches where the data reaches; time after now is left empty. Times
// are shown in the plant's time zone (the calendar's), whatever the browser's.
"use strict";

const Band = {
  KINDS: ["planned_stop", "unknown", "no_data", "off"],

  // "07:00" (or "03/02 07:00" over more than a day) in the plant's zone.
  format(ns, tz, long = false) {
    return new Intl.DateTimeFormat(Ombre.lang, { timeZone: tz, hour: "2-digit", minute: "2-digit",
      hourCycle: "h23", ...(long ? { day: "2-digit", month: "2-digit" } : {}) }).format(new Date(ns / 1e6));
  },

  // Milliseconds the zone `tz` is ahead of UTC at `ms`.
  offset(ms, tz) {
    const p = Object.fromEntries(new Intl.DateTimeFormat("en-US", { timeZone: tz, hourCycle: "h23",
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" })
      .formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
  },

  // Round times of the plant's clock in [from, to] (ns), at most one per `px` pixels.
  ticks(from, to, tz, width, px = 90) {
    const steps = [15, 30, 60, 120, 180, 240, 360, 720, 1440].map((m) => m * 60000);
    const span = (to - from) / 1e6;
    const step = steps.find((s) => span / s <= Math.max(1, width / px)) || steps[steps.length - 1];
    const out = [];
    for (let local = Math.ceil((from / 1e6 + Band.offset(from / 1e6, tz)) / step) * step; ; local += step) {
      const ms = local - Band.offset(local, tz);
      if (ms > to / 1e6) break;
      if (ms >= from / 1e6) out.push(ms * 1e6);
    }
    return out;
  },

  pos(el, start, end, t) {
    el.style.left = `${(100 * (start - t.from_ns)) / (t.to_ns - t.from_ns)}%`;
    el.style.width = `${(100 * (end - start)) / (t.to_ns - t.from_ns)}%`;
  },

  // What a segment's tooltip says: its times, the machine's state and category, job
  // and reason; the open interval says it is still going on.
  describe(s, tz) {
    const t = Ombre.t;
    const minutes = Math.round((s.end_ns - s.start_ns) / 6e10);
    const when = `${Band.format(s.start_ns, tz)}–${s.open ? `${Band.format(s.end_ns, tz)} (${t("still-going")})`
      : Band.format(s.end_ns, tz)}, ${minutes} min`;
    if (s.kind !== "state") return `${when}\n${t(`kind-${s.kind}`)}: ${t(`kind-${s.kind}-text`)}`;
    const reason = s.reason ? `\n${s.reason}${s.reason_source ? ` (${t(`source-${s.reason_source}`)})` : ""}`
      : s.reason_raw ? `\n${t("machine-said")} ${s.reason_raw}` : "";
    const job = s.job ? `\n${t("job")} ${s.job}` : "";
    const planned = s.planned ? ` · ${Ombre.category("PDOT")}` : "";
    return `${when}\n${Ombre.state(s.state)} · ${Ombre.category(s.category)}${planned}${job}${reason}\n${Ombre.explain(s.category)}`;
  },

  // One machine's band into `el` (emptied): its segments, the calendar's planned stops
  // still to come, and a "now" line.
  draw(el, machine, t) {
    el.replaceChildren();
    const width = el.clientWidth || 1000;
    for (const s of machine.segments) {
      const part = document.createElement("div");
      part.className = "seg";
      Object.assign(part.dataset, { kind: s.kind, category: s.category || "none", start: s.start_ns, end: s.end_ns });
      if (s.state) part.dataset.state = s.state;
      if (s.id !== null) part.dataset.id = s.id;
      if (s.open) part.dataset.open = "true";
      if (s.planned) part.dataset.planned = "true";
      Band.pos(part, s.start_ns, s.end_ns, t);
      part.title = Band.describe(s, t.timezone);
      const label = s.kind === "state" ? Ombre.state(s.state) : Ombre.t(`kind-${s.kind}`);
      if ((width * (s.end_ns - s.start_ns)) / (t.to_ns - t.from_ns) > 8 * label.length + 12) part.textContent = label;
      el.append(part);
    }
    for (const p of machine.planned_stops.filter((x) => x.end_ns > t.now_ns && x.start_ns < t.to_ns)) {
      const plan = document.createElement("div");
      plan.className = "plan";
      plan.dataset.kind = "planned-later";
      const start = Math.max(p.start_ns, t.now_ns, t.from_ns);
      const end = Math.min(p.end_ns, t.to_ns);
      Band.pos(plan, start, end, t);
      plan.title = `${Band.format(p.start_ns, t.timezone)}–${Band.format(p.end_ns, t.timezone)} ${Ombre.category("PDOT")}: ${p.name}`;
      el.append(plan);
    }
    if (t.now_ns > t.from_ns && t.now_ns < t.to_ns) {
      const now = document.createElement("div");
      now.className = "now";
      now.style.left = `${(100 * (t.now_ns - t.from_ns)) / (t.to_ns - t.from_ns)}%`;
      now.title = `${Ombre.t("now")} ${Band.format(t.now_ns, t.timezone)}`;
      el.append(now);
    }
  },

  // The time axis into `el` (emptied): a tick and its label at each round time.
  axis(el, t) {
    el.replaceChildren();
    const long = t.to_ns - t.from_ns > 24 * 3600e9;
    for (const ns of Band.ticks(t.from_ns, t.to_ns, t.timezone, el.clientWidth || 1000)) {
      const tick = document.createElement("span");
      tick.className = "tick";
      tick.dataset.ns = ns;
      tick.style.left = `${(100 * (ns - t.from_ns)) / (t.to_ns - t.from_ns)}%`;
      tick.textContent = Band.format(ns, t.timezone, long);
      el.append(tick);
    }
  },

  // The legend into `el`: each ISO category with the plant's own state names seen in
  // it, then the time with no state (planned stop, unknown, no data, off shift).
  legend(el, machines) {
    const names = {};
    const kinds = new Set();
    for (const m of machines) {
      for (const s of m.segments) {
        if (s.kind === "state") (names[s.category || "none"] ||= new Set()).add(Ombre.state(s.state));
        else kinds.add(s.kind);
      }
    }
    const item = (key, category, text, detail) => {
      const li = document.createElement("li");
      li.dataset.legend = key;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.dataset.category = category;
      swatch.dataset.kind = key;
      const label = document.createElement("span");
      label.textContent = text;
      li.append(swatch, label);
      if (detail) {
        const states = document.createElement("span");
        states.className = "states";
        states.textContent = ` — ${detail}`;
        li.append(states);
      }
      return li;
    };
    el.replaceChildren(
      ...["APT", "ASUT", "ADET", "ADOT", "PDOT"].map((c) => item(c, c, Ombre.category(c), [...(names[c] || [])].join(", "))),
      ...(names.none ? [item("none", "none", Ombre.t("unclassified"), [...names.none].join(", "))] : []),
      ...Band.KINDS.filter((k) => k !== "off" || kinds.has(k))
        .map((k) => item(k, "none", Ombre.t(`kind-${k}`), Ombre.t(`kind-${k}-text`))));
  },
};
