"""`ombre run CONFIG --test`: what an integrator runs first on a new machine, as
Telegraf's `--test`. It connects to every source, prints what they decode as it arrives
(readings, events, payloads quarantined and why) and the state each machine's state
table reads from them, writes nothing (no outbox, no sink, no shadow database), and
ends after `--seconds` with a summary per source: connected or not (and why), what it
delivered, and the declared signals it never delivered.

An MQTT source (or Sparkplug B) connects as `<client_id>-test` with a session that
ends with it: the running gateway keeps its own session and its messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from connectors.mqtt_config import MqttBrokerConfig
from gateway.config import SourceConfig
from gateway.types import Delivery, Quality, SignalRegistry, Source
from ombre.app import build_context, build_source
from ombre.config import OmbreConfig
from shadow.calendar import PlannedSchedule, rfc3339
from shadow.model import ShadowModel

PRINT_EVERY_S = 1.0  # at most one line per signal this often (a 1 kHz signal is counted)
RETRY_S = 1.0  # between two connection attempts


@dataclass
class Tally:
    """What one source did in the test."""

    connected: bool = False
    error: str | None = None
    readings: int = 0
    events: int = 0
    quarantined: int = 0
    seen: set[int] = field(default_factory=set)  # signal ids delivered


def apart(config: SourceConfig) -> SourceConfig:
    """The source's config for a test beside a running gateway: an MQTT client id of its
    own, and a session that ends at disconnect."""
    if not isinstance(config, MqttBrokerConfig):
        return config
    update = {"client_id": f"{config.client_id}-test", "session_expiry_s": 0}
    return config.model_copy(update=update)


class Printer:
    """The lines of the test, rate-limited per signal."""

    def __init__(self, registry: SignalRegistry, out: TextIO) -> None:
        self.registry, self.out = registry, out
        self._printed: dict[int, float] = {}  # signal id -> when its last line was
        self.skipped: Counter[int] = Counter()  # readings counted but not printed

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def reading(self, source: str, signal_id: int, ts_ns: int, value: object,
                quality: int) -> None:
        now = time.monotonic()
        if now - self._printed.get(signal_id, -PRINT_EVERY_S) < PRINT_EVERY_S:
            self.skipped[signal_id] += 1
            return
        self._printed[signal_id] = now
        info = self.registry.info(signal_id)
        more = self.skipped.pop(signal_id, 0)
        flags = "" if quality == Quality.GOOD else f" [{Quality(quality).name}]"
        at = rfc3339(ts_ns, "milliseconds")
        self.line(f"{source}: {info.machine}/{info.signal} = {value!r}"
                  f"{' ' + info.unit if info.unit else ''}{flags} at {at}"
                  + (f" (+{more} not printed)" if more else ""))


class Commissioning:
    """The sources of `config`, watched for `seconds`, and the machines' states."""

    def __init__(self, config: OmbreConfig, out: TextIO) -> None:
        self.config = config
        self.registry = config.registry()
        context = build_context(config, self.registry)
        self.sources: list[Source] = [build_source(apart(c), context) for c in config.sources]
        self.tallies = {s.name: Tally() for s in self.sources}
        schedule = PlannedSchedule(config.shadow.calendar)
        self.model = ShadowModel(config.machines(), self.registry, schedule.inside,
                                 schedule.boundaries)
        self.printer = Printer(self.registry, out)
        self._states: dict[str, tuple[str, str | None, str | None]] = {}

    async def run(self, seconds: float) -> int:
        """Watches every source for `seconds`, prints the summary; 0 if every source
        connected, 1 if one never did."""
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            await asyncio.gather(*(self._watch(s, deadline) for s in self.sources))
        finally:
            for source in self.sources:
                with contextlib.suppress(Exception):
                    await source.aclose()
        return self._summary(seconds)

    async def _watch(self, source: Source, deadline: float) -> None:
        loop, tally = asyncio.get_running_loop(), self.tallies[source.name]
        while (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    await source.connect()
                    if not tally.connected:
                        self.printer.line(f"{source.name}: connected")
                    tally.connected = True
                    while True:
                        self._take(source.name, await source.read())
            except TimeoutError:
                return
            except (ConnectionError, OSError) as exc:
                if str(exc) != tally.error:
                    self.printer.line(f"{source.name}: {type(exc).__name__}: {exc}")
                tally.error = str(exc)
            await asyncio.sleep(min(RETRY_S, max(0.0, deadline - loop.time())))

    def _take(self, name: str, delivery: Delivery) -> None:
        tally, batch = self.tallies[name], delivery.batch
        for ack in delivery.acks:  # its own session: acknowledged so that more comes
            ack()
        tally.readings += len(batch)
        tally.events += len(delivery.events)
        tally.quarantined += len(delivery.quarantined)
        tally.seen.update(batch.signal_id.tolist())
        for i in range(len(batch)):
            self.printer.reading(name, int(batch.signal_id[i]), int(batch.ts_ns[i]),
                                 float(batch.value[i]), int(batch.quality[i]))
        for e in delivery.events:
            sid = self.registry.id_of(e.machine, e.name)
            if sid is not None:
                tally.seen.add(sid)
                self.printer.reading(name, sid, e.ts_ns, e.value, e.quality)
        for q in delivery.quarantined:
            self.printer.line(f"{name}: quarantined {q.topic}: {q.reason} "
                              f"({q.head[:60]!r})")
        changes = self.model.apply(batch, delivery.events)
        for machine in sorted(changes.touched):
            m = self.model.machines[machine]
            if m.config.state is None:
                continue
            now = (m.state.raw, None if m.category is None else m.category.value, m.job)
            if self._states.get(machine) != now and m.since_ns is not None:
                self._states[machine] = now
                self.printer.line(f"{machine}: state {now[0]!r} ({now[1] or 'no category'})"
                                  f"{f', job {now[2]}' if now[2] else ''} since "
                                  f"{rfc3339(m.since_ns, 'milliseconds')}")

    def _summary(self, seconds: float) -> int:
        line = self.printer.line
        line(f"\nsummary after {seconds:g} s (nothing was written):")
        for name, tally in self.tallies.items():
            status = "connected" if tally.connected else f"never connected ({tally.error})"
            line(f"  {name}: {status}; {tally.readings} readings, {tally.events} events, "
                 f"{tally.quarantined} quarantined, {len(tally.seen)} signals")
        seen = set().union(*(t.seen for t in self.tallies.values()))
        missing = [f"{s.machine}/{s.signal}" for s in self.registry if s.id not in seen]
        line(f"  {len(self.registry) - len(missing)} of {len(self.registry)} declared signals "
             "seen" + (f"; never seen: {', '.join(missing)}" if missing else ""))
        return 0 if all(t.connected for t in self.tallies.values()) else 1


def commission(config: OmbreConfig, seconds: float, out: TextIO) -> int:
    return asyncio.run(Commissioning(config, out).run(seconds))

