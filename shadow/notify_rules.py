"""Which incidents are open, and when a message about them is due: pure code, no I/O.

shadow/notifier.py builds a PlantView from the database and the gateway's counters
every check, calls `Incidents.update`, then `Incidents.due` for what the next message
holds. An incident is one rule about one subject (a machine, an alert, a connector);
it sends once when it opens and, if its rule says so, once when it ends. A subject that
flaps opens again the same incident, counted in `openings`, until a message told it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shadow.notify_config import (
    ConnectorDownRule,
    DriftAlertRule,
    MachineStoppedRule,
    NotificationsConfig,
    OeeBelowRule,
    Rule,
    rule_key,
)
from shadow.timeline import NS_PER_S, Category

log = logging.getLogger(__name__)

MAX_INCIDENTS = 10_000  # open or unsent incidents kept; beyond, the newest are not opened


@dataclass(frozen=True, slots=True)
class MachineView:
    """`silent`: no reading for its `silence_s`, state unknown: its incidents stay as
    they are until it speaks again."""

    category: Category | None
    since_ns: int | None
    planned: bool
    silent: bool = False


@dataclass(frozen=True, slots=True)
class AlertView:
    id: int
    machine: str
    signal: str
    direction: str  # up, down
    shift_sigma: float
    detected_ns: int


@dataclass(frozen=True, slots=True)
class OeeView:
    """A machine's OEE over the first half of the shift that runs until `end_ns`."""

    shift: str
    end_ns: int
    oee: float | None


@dataclass(frozen=True, slots=True)
class ConnectorView:
    name: str
    kind: str
    down_since_ns: int | None  # None: up
    error: str | None


@dataclass(frozen=True, slots=True)
class PlantView:
    """What the rules look at, at `now_ns` (wall clock, UTC)."""

    now_ns: int
    machines: Mapping[str, MachineView] = field(default_factory=dict)
    alerts: Sequence[AlertView] = ()
    oee: Mapping[str, OeeView] = field(default_factory=dict)  # at mid-shift, by machine
    connectors: Sequence[ConnectorView] = ()


@dataclass(slots=True)
class Incident:
    """`notified`: what the last message said of it ("open", "cleared") or None;
    `changed_ns`: when it first changed since, None when there is nothing new to say."""

    rule: str
    subject: str
    opened_ns: int
    cleared_ns: int | None = None
    openings: int = 1
    detail: dict[str, Any] = field(default_factory=dict)
    notified: str | None = None
    changed_ns: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, self.subject


def _watched(names: Sequence[str], name: str) -> bool:
    return not names or name in names


def _stopped(rule: MachineStoppedRule, view: PlantView) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, m in view.machines.items():
        if (_watched(rule.machines, name) and not m.planned and m.category in rule.categories
                and m.since_ns is not None
                and view.now_ns - m.since_ns >= rule.minutes * 60 * NS_PER_S):
            yield name, {"machine": name, "category": m.category.value,
                         "since_ns": m.since_ns}


def _drift(rule: DriftAlertRule, view: PlantView) -> Iterator[tuple[str, dict[str, Any]]]:
    for a in view.alerts:
        if _watched(rule.machines, a.machine):
            yield str(a.id), {"alert": a.id, "machine": a.machine, "signal": a.signal,
                              "direction": a.direction, "shift_sigma": a.shift_sigma,
                              "since_ns": a.detected_ns}


def _oee(rule: OeeBelowRule, view: PlantView) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, o in view.oee.items():
        if (_watched(rule.machines, name) and o.oee is not None and o.oee < rule.target
                and view.now_ns < o.end_ns):
            yield name, {"machine": name, "shift": o.shift, "oee": o.oee,
                         "target": rule.target}


def _down(rule: ConnectorDownRule, view: PlantView) -> Iterator[tuple[str, dict[str, Any]]]:
    for c in view.connectors:
        if (_watched(rule.connectors, c.name) and c.down_since_ns is not None
                and view.now_ns - c.down_since_ns >= rule.minutes * 60 * NS_PER_S):
            yield c.name, {"connector": c.name, "kind": c.kind, "error": c.error,
                           "since_ns": c.down_since_ns}


def held(rule: Rule, view: PlantView) -> set[str]:
    """The subjects whose state `view` does not know: their incidents neither open nor
    end (a silent machine)."""
    if isinstance(rule, MachineStoppedRule):
        return {name for name, m in view.machines.items() if m.silent}
    return set()


def active(rule: Rule, view: PlantView) -> dict[str, dict[str, Any]]:
    """Subject -> detail of each incident `rule` sees in `view`."""
    match rule:
        case MachineStoppedRule():
            found = _stopped(rule, view)
        case DriftAlertRule():
            found = _drift(rule, view)
        case OeeBelowRule():
            found = _oee(rule, view)
        case ConnectorDownRule():
            found = _down(rule, view)
    return dict(found)


class Incidents:
    """The open incidents and those with news not yet sent, keyed by (rule, subject).
    Owned by one Notifier; not thread-safe."""

    def __init__(self, config: NotificationsConfig, known: Iterable[Incident] = ()) -> None:
        self._config = config
        self._rules = {rule_key(r): r for r in config.rules}
        self.items: dict[tuple[str, str], Incident] = {
            i.key: i for i in known if i.rule in self._rules}
        self.last_sent: dict[str, int] = {}  # rule -> when its last message was queued
        self.refused = 0  # incidents not opened: MAX_INCIDENTS reached (logged once)

    def update(self, view: PlantView) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """Opens, reopens and clears incidents after `view`; returns the keys changed
        (to save) and those forgotten (to delete)."""
        now = view.now_ns
        changed: set[tuple[str, str]] = set()
        seen: set[tuple[str, str]] = set()
        for name, rule in self._rules.items():
            seen |= {(name, subject) for subject in held(rule, view)}
            for subject, detail in active(rule, view).items():
                key = (name, subject)
                seen.add(key)
                changed |= self._open(key, detail, now)
        gone: set[tuple[str, str]] = set()
        for key, incident in list(self.items.items()):
            if key in seen or incident.cleared_ns is not None:
                continue
            incident.cleared_ns = now
            if self._rules[incident.rule].notify_clear or incident.notified != "open":
                incident.changed_ns = incident.changed_ns or now
                changed.add(key)
            else:  # its end is not sent: nothing more to say about it
                del self.items[key]
                gone.add(key)
        return changed - gone, gone

    def _open(self, key: tuple[str, str], detail: dict[str, Any], now: int
              ) -> set[tuple[str, str]]:
        incident = self.items.get(key)
        if incident is None:
            if len(self.items) >= MAX_INCIDENTS:
                if not self.refused:
                    log.warning("notifications: %d incidents open or not yet sent, the "
                                "bound: newer ones are not opened until some end",
                                MAX_INCIDENTS)
                self.refused += 1
                return set()
            self.items[key] = Incident(*key, opened_ns=now, detail=detail, changed_ns=now)
            return {key}
        if incident.cleared_ns is None:
            if incident.detail == detail:
                return set()
            incident.detail = detail
            return {key}
        # It flaps: opened again before its end was sent.
        incident.cleared_ns = None
        incident.openings += 1
        incident.detail = detail
        incident.changed_ns = incident.changed_ns or now
        return {key}

    def due(self, now_ns: int) -> list[Incident]:
        """The incidents the message to send now lists, oldest change first, or none:
        a change waits `group_window_s` for others, and a rule's `min_interval_s`
        after its last message."""
        ready = [i for i in self.items.values() if i.changed_ns is not None
                 and now_ns >= self.last_sent.get(i.rule, -1 << 62) + int(
                     self._config.rule_interval_s(self._rules[i.rule]) * NS_PER_S)]
        if not ready:
            return []
        first = min(i.changed_ns or 0 for i in ready)
        if now_ns - first < self._config.group_window_s * NS_PER_S:
            return []
        return sorted(ready, key=lambda i: (i.changed_ns or 0, i.rule, i.subject))

    def sent(self, incidents: Sequence[Incident], now_ns: int) -> tuple[
            set[tuple[str, str]], set[tuple[str, str]]]:
        """Marks `incidents` as told (their message is queued); returns the keys
        changed and those forgotten (ended and told)."""
        changed: set[tuple[str, str]] = set()
        gone: set[tuple[str, str]] = set()
        for incident in incidents:
            self.last_sent[incident.rule] = now_ns
            incident.notified = "open" if incident.cleared_ns is None else "cleared"
            incident.openings = 0 if incident.cleared_ns is None else incident.openings
            incident.changed_ns = None
            if incident.cleared_ns is not None:
                del self.items[incident.key]
                gone.add(incident.key)
            else:
                changed.add(incident.key)
        return changed, gone

    def rule(self, name: str) -> Rule:
        return self._rules[name]

