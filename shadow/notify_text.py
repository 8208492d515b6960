"""The words of a notification, in the plant's language (English or French; OEE is TRS
in French): one line per incident, a subject, and the JSON a webhook receives. The
texts are data: one entry per rule type and incident status."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from shadow.notify_config import Language
from shadow.notify_rules import Incident
from shadow.timeline import NS_PER_S

# (rule type, "open" or "cleared") -> language -> template over the incident's detail
LINES: dict[tuple[str, str], dict[Language, str]] = {
    ("machine_stopped", "open"): {
        "en": "{machine}: stopped ({category}) for {minutes} min, since {since}",
        "fr": "{machine} : à l'arrêt ({category}) depuis {minutes} min, soit depuis {since}"},
    ("machine_stopped", "cleared"): {
        "en": "{machine}: no longer stopped, after {minutes} min",
        "fr": "{machine} : n'est plus à l'arrêt, après {minutes} min"},
    ("drift_alert", "open"): {
        "en": "{machine}/{signal}: drift alert, {direction} by {sigma} sigma, since {since}",
        "fr": "{machine}/{signal} : alerte de dérive, {direction} de {sigma} sigma, "
              "depuis {since}"},
    ("drift_alert", "cleared"): {
        "en": "{machine}/{signal}: drift alert closed",
        "fr": "{machine}/{signal} : alerte de dérive close"},
    ("oee_below", "open"): {
        "en": "{machine}: OEE {oee} at mid-shift ({shift}), below the target of {target}",
        "fr": "{machine} : TRS de {oee} à mi-poste ({shift}), sous l'objectif de {target}"},
    ("oee_below", "cleared"): {
        "en": "{machine}: shift {shift} ended", "fr": "{machine} : fin du poste {shift}"},
    ("connector_down", "open"): {
        "en": "{kind} {connector}: down for {minutes} min ({error})",
        "fr": "{kind} {connector} : hors service depuis {minutes} min ({error})"},
    ("connector_down", "cleared"): {
        "en": "{kind} {connector}: up again, after {minutes} min",
        "fr": "{kind} {connector} : de nouveau en service, après {minutes} min"},
}
WORDS: dict[str, dict[Language, str]] = {
    "up": {"en": "upward", "fr": "à la hausse"},
    "down": {"en": "downward", "fr": "à la baisse"},
    "source": {"en": "source", "fr": "source"},
    "sink": {"en": "sink", "fr": "destination"},
    "store": {"en": "store", "fr": "stockage"},
    "clock": {"en": "clock", "fr": "horloge"},
    "unknown error": {"en": "unknown error", "fr": "erreur inconnue"},
    "times": {"en": " (opened {n} times)", "fr": " ({n} fois)"},
    "more": {"en": "and {n} more", "fr": "et {n} de plus"},
    "subject": {"en": "[Ombre] {first}", "fr": "[Ombre] {first}"},
    "subject_more": {"en": "[Ombre] {first} (+{n} more)",
                     "fr": "[Ombre] {first} (et {n} de plus)"},
}


@dataclass(frozen=True, slots=True)
class Message:
    """One notification: `id` is its idempotency key (the webhook's `id` and
    `Idempotency-Key`, the e-mail's Message-ID), the same on every retry."""

    id: str
    subject: str
    body: str
    payload: dict[str, Any]


def minutes_between(start_ns: int, end_ns: int) -> int:
    """Whole minutes from `start_ns` to `end_ns`."""
    return max(0, (end_ns - start_ns) // (60 * NS_PER_S))


def _decimal(value: float, language: Language) -> str:
    text = f"{value:.1f}"
    return text.replace(".", ",") if language == "fr" else text


def _percent(value: float, language: Language) -> str:
    return f"{value * 100:.0f} %" if language == "fr" else f"{value * 100:.0f}%"


def _time(ns: int, timezone: str) -> str:
    return datetime.fromtimestamp(ns / NS_PER_S, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def line(rule_type: str, incident: Incident, language: Language, timezone: str,
         now_ns: int) -> str:
    """One incident in words."""
    status = "open" if incident.cleared_ns is None else "cleared"
    d = incident.detail
    since = int(d.get("since_ns", incident.opened_ns))
    values = {**d, "since": _time(since, timezone),
              "minutes": minutes_between(since, incident.cleared_ns or now_ns),
              "direction": WORDS.get(str(d.get("direction")), {}).get(language, ""),
              "sigma": _decimal(abs(float(d.get("shift_sigma", 0))), language),
              "kind": WORDS.get(str(d.get("kind")), {}).get(language, d.get("kind")),
              "error": d.get("error") or WORDS["unknown error"][language],
              "oee": _percent(float(d.get("oee") or 0), language),
              "target": _percent(float(d.get("target") or 0), language)}
    text = LINES[rule_type, status][language].format(**values)
    if incident.openings > 1:
        text += WORDS["times"][language].format(n=incident.openings)
    return text


def compose(incidents: Sequence[tuple[str, Incident]], language: Language, timezone: str,
            now_ns: int, max_items: int) -> Message:
    """The message listing `incidents` ((rule type, incident) each), at most
    `max_items` of them, then how many more."""
    lines = [line(kind, i, language, timezone, now_ns) for kind, i in incidents]
    shown = lines[:max_items]
    if len(lines) > max_items:
        shown.append(WORDS["more"][language].format(n=len(lines) - max_items))
    subject = (WORDS["subject"][language].format(first=lines[0]) if len(lines) == 1 else
               WORDS["subject_more"][language].format(first=lines[0], n=len(lines) - 1))
    message_id = str(uuid.uuid4())
    payload = {
        "id": message_id, "language": language,
        "created": datetime.fromtimestamp(now_ns / NS_PER_S, UTC).isoformat(),
        "text": "\n".join(shown),
        "incidents": [{"rule": i.rule, "type": kind, "subject": i.subject,
                       "status": "open" if i.cleared_ns is None else "cleared",
                       "opened_ns": i.opened_ns, "cleared_ns": i.cleared_ns,
                       "openings": i.openings, "detail": i.detail, "text": text}
                      for (kind, i), text in zip(incidents[:max_items], lines, strict=False)],
        "more": max(0, len(lines) - max_items)}
    return Message(message_id, subject[:250], "\n".join(shown) + "\n", payload)
