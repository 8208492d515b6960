"""MQTT topic templates: which machine and signal a topic's payloads belong to.

A template such as `plant/{line}/{machine}/{signal}` has one placeholder per level
(`{site}`, `{area}`, `{line}`, `{machine}`, `{signal}`), literal levels, `+` for an
ignored level, and may end with `#`. Templates are checked against the plant when the
router is built, which raises ValueError naming the bad template; routing a topic
never raises."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from connectors.mqtt_config import SubscriptionConfig
from gateway.config import LineConfig, MachineConfig, Plant
from gateway.types import SignalRegistry

PLACEHOLDERS = ("site", "area", "line", "machine", "signal")
MAX_CACHED_TOPIC = 256  # longer topics are resolved every time, to bound the cache's bytes
_PLACE_WORD = {"site": "at site", "area": "in area", "line": "on line"}


@dataclass(frozen=True, slots=True)
class SignalRef:
    """A configured signal, with its registry id. String signals travel as events."""

    id: int
    machine: str
    name: str
    is_string: bool


@dataclass(frozen=True, slots=True)
class Route:
    """Where one topic's payloads go. `signal` is None for the `object` format, whose
    keys name signals of `machine`, looked up in `signals`."""

    sub: SubscriptionConfig
    machine: str
    signal: SignalRef | None
    signals: Mapping[str, SignalRef]


@dataclass(frozen=True, slots=True)
class _Machine:
    site: str
    area: str | None
    line: str
    signals: Mapping[str, SignalRef]


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """One parsed subscription template."""

    sub: SubscriptionConfig
    literals: tuple[tuple[int, str], ...]  # (level index, required text)
    captures: tuple[tuple[int, str], ...]  # (level index, placeholder name)
    n_levels: int  # levels before any trailing '#'
    tail: bool  # ends with '#'

    @classmethod
    def parse(cls, sub: SubscriptionConfig) -> TopicTemplate:
        """Parse `sub.topic`; raise ValueError naming the template and the bad level."""
        levels = sub.topic.split("/")
        tail = levels[-1] == "#"
        if tail:
            levels.pop()
        literals: list[tuple[int, str]] = []
        captures: list[tuple[int, str]] = []
        for i, level in enumerate(levels):
            if level.startswith("{") and level.endswith("}"):
                name = level[1:-1]
                if name not in PLACEHOLDERS:
                    raise _template_error(sub, f"unknown placeholder {level}; expected one of "
                                          + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
                if name in (c[1] for c in captures):
                    raise _template_error(sub, f"placeholder {level} appears twice")
                captures.append((i, name))
            elif any(ch in level for ch in "{}#") or ("+" in level and level != "+"):
                raise _template_error(sub, f"level {level!r} is neither text, '+', '#' at the "
                                      "end, nor a placeholder")
            elif level != "+":
                literals.append((i, level))
        return cls(sub, tuple(literals), tuple(captures), len(levels), tail)

    def filter(self) -> str:
        """The MQTT subscription filter: placeholders become '+'."""
        levels = ["+"] * self.n_levels
        for i, text in self.literals:
            levels[i] = text
        return "/".join([*levels, "#"] if self.tail else levels)

    def names(self) -> set[str]:
        return {name for _, name in self.captures}

    def match(self, levels: Sequence[str]) -> dict[str, str] | None:
        """The placeholder values of a topic split on '/', or None if it does not match."""
        if len(levels) != self.n_levels and not (self.tail and len(levels) >= self.n_levels):
            return None
        for i, text in self.literals:
            if levels[i] != text:
                return None
        return {name: levels[i] for i, name in self.captures}


class TopicRouter:
    """Maps topics to routes, caching each answer (a Route, or the reason string why the
    topic cannot be mapped) in a dict that is cleared when it holds `cache_size` topics;
    topics longer than MAX_CACHED_TOPIC characters are not cached. Built once at
    start-up, raising ValueError on a template that does not fit the plant; `route` is
    then called from one thread at a time."""

    def __init__(self, subscriptions: Sequence[SubscriptionConfig], config: Plant,
                 registry: SignalRegistry, *, cache_size: int = 50_000) -> None:
        self._machines = _plant_index(config, registry)
        self._templates = [TopicTemplate.parse(sub) for sub in subscriptions]
        for template in self._templates:
            self._check(template)
        self._cache: dict[str, Route | str] = {}
        self._cache_size = cache_size

    def filters(self) -> list[tuple[str, int]]:
        """Distinct subscription filters with the highest QoS asked for each."""
        qos: dict[str, int] = {}
        for template in self._templates:
            text = template.filter()
            qos[text] = max(qos.get(text, 0), template.sub.qos)
        return list(qos.items())

    def cached(self) -> int:
        return len(self._cache)

    def route(self, topic: str) -> Route | str:
        """The route of `topic`, or a reason it has none. One dict lookup when cached."""
        hit = self._cache.get(topic)
        if hit is None:
            hit = self._resolve(topic)
            if len(topic) <= MAX_CACHED_TOPIC:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[topic] = hit
        return hit

    def _resolve(self, topic: str) -> Route | str:
        levels = topic.split("/")
        first_reason: str | None = None
        for template in self._templates:
            fields = template.match(levels)
            if fields is None:
                continue
            route = self._map(template.sub, fields)
            if isinstance(route, Route):
                return route
            first_reason = first_reason or route
        return first_reason or f"topic matches none of the {len(self._templates)} " \
                               "subscription templates"

    def _map(self, sub: SubscriptionConfig, fields: Mapping[str, str]) -> Route | str:
        machine_id = fields.get("machine", sub.machine) or ""
        machine = self._machines.get(machine_id)
        if machine is None:
            return f"unknown machine {machine_id!r}"
        actual = {"site": machine.site, "area": machine.area, "line": machine.line}
        for key, word in _PLACE_WORD.items():
            if key in fields and fields[key] != actual[key]:
                where = f"{word} {actual[key]}" if actual[key] else f"in no {key}"
                return f"topic says {key} {fields[key]} but machine {machine_id} is {where}"
        if sub.format == "object":
            return Route(sub, machine_id, None, machine.signals)
        name = fields.get("signal", sub.signal) or ""
        signal = machine.signals.get(name)
        if signal is None:
            return f"machine {machine_id} has no signal {name!r}"
        return Route(sub, machine_id, signal, machine.signals)

    def _check(self, template: TopicTemplate) -> None:
        sub, names = template.sub, template.names()
        if ("machine" in names) == (sub.machine is not None):
            raise _template_error(sub, "needs exactly one of {machine} or a fixed `machine`")
        if sub.format == "object":
            if "signal" in names or sub.signal is not None:
                raise _template_error(sub, "format object takes signal names from the "
                                      "payload's keys; remove {signal} and `signal`")
        elif ("signal" in names) == (sub.signal is not None):
            raise _template_error(sub, "needs exactly one of {signal} or a fixed `signal`")
        if sub.machine is not None and sub.machine not in self._machines:
            raise _template_error(sub, f"unknown machine {sub.machine!r}")
        if (sub.machine is not None and sub.signal is not None
                and sub.signal not in self._machines[sub.machine].signals):
            raise _template_error(sub, f"machine {sub.machine} has no signal {sub.signal!r}")


def _plant_index(config: Plant, registry: SignalRegistry) -> dict[str, _Machine]:
    index: dict[str, _Machine] = {}
    for site in config.sites:
        located: list[tuple[str | None, LineConfig[MachineConfig]]] = [
            (None, line) for line in site.lines]
        located += [(area.id, line) for area in site.areas for line in area.lines]
        for area_id, line in located:
            for machine in line.machines:
                signals: dict[str, SignalRef] = {}
                for signal in machine.signals:
                    signal_id = registry.id_of(machine.id, signal.name)
                    if signal_id is None:
                        raise ValueError(f"signal {machine.id}/{signal.name} is configured "
                                         "but missing from the signal registry")
                    signals[signal.name] = SignalRef(signal_id, machine.id, signal.name,
                                                     signal.type == "string")
                index[machine.id] = _Machine(site.id, area_id, line.id, signals)
    return index


def _template_error(sub: SubscriptionConfig, problem: str) -> ValueError:
    return ValueError(f"subscription topic {sub.topic!r}: {problem}")
