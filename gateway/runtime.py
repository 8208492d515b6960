"""The gateway runtime: one supervisor that owns every task.

Start order is sinks, then the outbox writer, then sources; on stop, sources stop
first, the queue drains into the outbox, the sinks catch up with the outbox within
the drain deadline, then the sinks close. Connectors that fail are reconnected with
exponential backoff and jitter; one connector's failure never stops another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import numpy as np

from gateway.clock import ClockWatch
from gateway.config import RuntimeConfig
from gateway.counters import ConnectorCounters, Counters, Health, describe
from gateway.outbox import GATEWAY_MACHINE, OVERFLOW_EVENT, Dropped, Outbox
from gateway.queue import DeliveryQueue
from gateway.types import (
    Batch,
    Delivery,
    Event,
    QuarantineRecord,
    Resumable,
    Sink,
    Source,
    Written,
)

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

WRITER_MAX_READINGS = 100_000  # readings merged into one outbox commit
SINK_MAX_READINGS = 100_000  # readings merged into one sink write
QUARANTINE_LOG_INTERVAL_S = 60.0  # at most one quarantine log line per source and interval
CLOSE_TIMEOUT_S = 5.0  # closing a source or a sink after the drain takes at most this
# The outbox is a local file: a retry costs one failed write, and free space comes back
# without notice (a file deleted), so its backoff stops growing here.
OUTBOX_BACKOFF_MAX_S = 2.0


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling."""

    initial_s: float
    max_s: float
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Gateway:
    """Runs sources and sinks around one outbox until `stop` is set.

    `run` is called once. A first `stop` triggers the ordered shutdown; `force`
    (a second signal) abandons the drain and logs what was left undelivered."""

    def __init__(self, config: RuntimeConfig, sources: Sequence[Source],
                 sinks: Sequence[Sink], outbox: Outbox, counters: Counters) -> None:
        self._config = config
        self._sources = list(sources)
        self._sinks = list(sinks)
        self._outbox = outbox
        self.counters = counters
        self._queue = DeliveryQueue(config.queue_max_deliveries, config.overflow, self._count_drop)
        self._appended = {sink.name: asyncio.Event() for sink in self._sinks}
        self._writer_done = asyncio.Event()
        self._quarantine_logged: dict[str, float] = {}
        self._overflow_start = 0  # outbox drops counted when the current episode began
        self._outbox_part = counters.connector("outbox", "store")
        self._outbox_part.health = Health.UP  # its file is open
        # Every part is listed from the start (connecting), so health never reads ready
        # before a configured source or sink has begun.
        for part, kind in [*((s.name, "source") for s in self._sources),
                           *((s.name, "sink") for s in self._sinks)]:
            counters.connector(part, kind)
        self._clock = ClockWatch(counters.connector("system", "clock"))
        self._outbox_calls: dict[object, float] = {}  # running call -> its start (monotonic)

    def outbox_busy_s(self) -> float:
        """How long the oldest outbox call running in a thread has taken (0 if none): a
        thread stuck in the file (a dying SD card, a hung mount) shows here, not in
        health, which changes only when a call ends."""
        return time.monotonic() - min(self._outbox_calls.values(), default=time.monotonic())

    async def run(self, stop: asyncio.Event, force: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                sink_tasks = [
                    tg.create_task(self._run_sink(sink), name=f"sink:{sink.name}")
                    for sink in self._sinks
                ]
                writer = tg.create_task(self._run_writer(), name="outbox:writer")
                watcher = tg.create_task(self._clock.run(), name="clock:watch")
                source_tasks = [
                    tg.create_task(self._run_source(source), name=f"source:{source.name}")
                    for source in self._sources
                ]
                await stop.wait()
                log.info("stopping: sources first, then draining for at most %.1f s",
                         self._config.drain_timeout_s)
                for task in await _cancel(source_tasks, CLOSE_TIMEOUT_S):
                    log.warning("%s did not end within %.0f s of its cancellation, waiting "
                                "in %s", task.get_name(), CLOSE_TIMEOUT_S, _waiting_in(task))
                await self._queue.close()
                drained = await self._wait_drained([writer, *sink_tasks], force)
                if not drained:
                    log.warning("exiting without draining: %s", self._undrained())
                for task in [writer, *sink_tasks, watcher]:
                    task.cancel()
        finally:
            # Closed only now, so that the writer could ack what it drained.
            for source in self._sources:
                await _close(source)

    async def _wait_drained(self, tasks: list[asyncio.Task[None]], force: asyncio.Event) -> bool:
        """Wait until `tasks` finish, the drain deadline passes, or `force` is set."""
        all_done = asyncio.create_task(asyncio.wait(tasks), name="shutdown:drain")
        forced = asyncio.create_task(force.wait(), name="shutdown:force")
        await asyncio.wait([all_done, forced], timeout=self._config.drain_timeout_s,
                           return_when=asyncio.FIRST_COMPLETED)
        for waiter in (all_done, forced):
            waiter.cancel()
        await asyncio.gather(all_done, forced, return_exceptions=True)
        return all(task.done() for task in tasks)

    def _undrained(self) -> str:
        backlog = self._outbox.backlog()
        parts = [f"{len(self._queue)} queued deliveries not acked (their source sends "
                 "them again)"]
        parts += [f"sink {name} {rows} outbox rows behind (kept for the next start)"
                  for name, rows in backlog.items()]
        return "; ".join(parts)

    # -- sources ------------------------------------------------------------------

    async def _run_source(self, source: Source) -> None:
        counters = self.counters.connector(source.name, "source")
        backoff = self._backoff()
        while True:
            await self._connect(source.connect, counters, backoff, mark_up=True)
            try:
                while True:
                    delivery = await source.read()
                    backoff.reset()
                    self._count_received(counters, delivery)
                    await self._queue.put(delivery)
                    self.counters.queue_depth = len(self._queue)
            except Exception as exc:  # noqa: BLE001 - any failure means reconnect
                counters.set_health(Health.DOWN, describe(exc))
                await asyncio.sleep(backoff.next_delay())

    def _count_received(self, counters: ConnectorCounters, delivery: Delivery) -> None:
        batch = delivery.batch
        counters.readings += len(batch)
        counters.events += len(delivery.events)
        counters.quarantined += len(delivery.quarantined)
        counters.deliveries += 1
        if len(batch):
            counters.last_seen_ns = max(counters.last_seen_ns, int(batch.ts_ns.max()))
        self.counters.count_received(batch, delivery.events)
        if delivery.quarantined:
            self.counters.count_signals(
                self.counters.signal_quarantined,
                np.array([r.signal_id for r in delivery.quarantined if r.signal_id is not None],
                         np.intp),
            )
            self._log_quarantine(counters, delivery.quarantined)

    def _log_quarantine(self, counters: ConnectorCounters,
                        records: Sequence[QuarantineRecord]) -> None:
        """One line per connector and interval, naming the latest reason: a burst of bad
        payloads is visible without flooding the log."""
        now = time.monotonic()
        if now - self._quarantine_logged.get(counters.name, -1e9) < QUARANTINE_LOG_INTERVAL_S:
            return
        self._quarantine_logged[counters.name] = now
        latest = records[-1]
        log.warning("%s %s: %d payload(s) quarantined so far (see the quarantine table); "
                    "latest from %s: %s", counters.kind, counters.name, counters.quarantined,
                    latest.topic, latest.reason)

    def _count_drop(self, batch: Batch) -> None:
        self.counters.count_signals(self.counters.signal_dropped, batch.signal_id)
        self.counters.connector("queue", "runtime").dropped += len(batch)

    # -- the outbox writer --------------------------------------------------------

    async def _run_writer(self) -> None:
        """Commit queued deliveries to the outbox, then ack their sources."""
        try:
            while deliveries := await self._queue.get_many(
                    WRITER_MAX_READINGS, self._outbox.profile.commit_interval_s):
                self.counters.queue_depth = len(self._queue)
                await self._commit(deliveries)
        finally:
            self._writer_done.set()
            self._notify_sinks()

    async def _commit(self, deliveries: list[Delivery]) -> None:
        batch = Batch.concat([d.batch for d in deliveries])
        events = [e for d in deliveries for e in d.events]
        quarantined = [q for d in deliveries for q in d.quarantined]
        dropped = await self._on_outbox(self._outbox.append, batch, events, quarantined)
        for delivery in deliveries:
            for ack in delivery.acks:
                ack()
        if dropped is not None and dropped.readings:
            await self._count_overflow(dropped)
        self._notify_sinks()

    async def _count_overflow(self, dropped: Dropped) -> None:
        """Count telemetry the byte cap removed; an episode raises one event when it
        starts and one when it ends, so a long outage cannot fill the outbox with them."""
        outbox = self._outbox_part
        if outbox.health is not Health.DEGRADED:
            outbox.set_health(Health.DEGRADED, "over its byte cap: dropping the oldest "
                              "telemetry; a sink is down or too slow")
            self._overflow_start = outbox.dropped
            await self._on_outbox(self._outbox.append_events, [Event(
                time.time_ns(), GATEWAY_MACHINE, OVERFLOW_EVENT, "started dropping telemetry")])
        outbox.dropped += dropped.readings
        self.counters.count_signals(self.counters.signal_dropped, dropped.signal_ids)

    async def _end_overflow(self) -> None:
        outbox = self._outbox_part
        if outbox.health is Health.DEGRADED and self._outbox.bytes < self._outbox.max_bytes / 2:
            episode = outbox.dropped - self._overflow_start
            await self._on_outbox(self._outbox.append_events, [Event(
                time.time_ns(), GATEWAY_MACHINE, OVERFLOW_EVENT,
                f"stopped dropping: {episode} readings dropped")])
            outbox.set_health(Health.UP)

    @contextlib.contextmanager
    def _outbox_call(self) -> Iterator[None]:
        """Times one outbox call for outbox_busy_s."""
        running = object()
        self._outbox_calls[running] = time.monotonic()
        try:
            yield
        finally:
            del self._outbox_calls[running]

    async def _on_outbox(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run an outbox call in a thread, retrying with backoff while the file fails
        (disk full, I/O error): the queue in front then blocks or drops by its policy.
        The outbox is down from a failure until a write commits again (a read proves
        nothing while the disk is full)."""
        counters = self._outbox_part
        backoff = Backoff(self._config.backoff_initial_s,
                          min(self._config.backoff_max_s, OUTBOX_BACKOFF_MAX_S))
        while True:
            try:
                with self._outbox_call():
                    result = await asyncio.to_thread(call, *args, **kwargs)
            except sqlite3.Error as exc:
                counters.set_health(Health.DOWN, describe(exc))
                await asyncio.sleep(backoff.next_delay())
                continue
            if counters.health is Health.DOWN and self._outbox.writable:
                counters.set_health(Health.UP)
            self.counters.outbox_bytes = self._outbox.bytes
            self.counters.outbox_batches = self._outbox.rows
            return result

    def _notify_sinks(self) -> None:
        for event in self._appended.values():
            event.set()

    # -- sinks --------------------------------------------------------------------

    async def _run_sink(self, sink: Sink) -> None:
        counters = self.counters.connector(sink.name, "sink")
        backoff = self._backoff()
        appended = self._appended[sink.name]
        connect, write = self._sink_calls(sink)
        try:
            await self._connect(connect, counters, backoff, mark_up=True)
            while True:
                appended.clear()
                pending = await self._on_outbox(self._outbox.pending, sink.name,
                                                SINK_MAX_READINGS)
                if pending.last_seq == pending.cursor:
                    if self._writer_done.is_set():
                        return
                    await appended.wait()
                    continue
                try:
                    written = await write(pending.batch, pending.events,
                                          pending.last_seq) or Written()
                except Exception as exc:  # noqa: BLE001 - any failure means retry
                    counters.retries += 1
                    counters.set_health(Health.DOWN, describe(exc))
                    self._outbox.release(sink.name)
                    await asyncio.sleep(backoff.next_delay())
                    await self._connect(connect, counters, backoff, mark_up=False)
                    continue
                await self._on_outbox(self._outbox.delivered, sink.name, pending.last_seq,
                                      written.refused)
                self._count_written(counters, pending.batch, pending.events, written)
                counters.set_health(Health.UP)  # only a write proves a sink works again
                backoff.reset()
                await self._end_overflow()
        finally:
            await _close(sink)

    def _sink_calls(self, sink: Sink) -> tuple[
            Callable[[], Awaitable[None]],
            Callable[[Batch, Sequence[Event], int], Awaitable[Written | None]]]:
        """How to connect and write to `sink`: a Resumable sink records each write's
        outbox seq, and on connect the cursor skips what it had stored before a crash."""
        if not isinstance(sink, Resumable):
            return sink.connect, lambda batch, events, _seq: sink.write(batch, events)
        resumable = sink

        async def connect() -> None:
            await sink.connect()
            applied = await resumable.applied(self._outbox.id)
            skipped = await self._on_outbox(self._outbox.resume, sink.name, applied)
            if skipped:
                log.info("sink %s had stored %d outbox rows whose delivery was not "
                         "recorded (the process stopped between the two): not written again",
                         sink.name, skipped)

        async def write(batch: Batch, events: Sequence[Event], seq: int) -> Written | None:
            return await resumable.write_upto(batch, events, self._outbox.id, seq)

        return connect, write

    def _count_written(self, counters: ConnectorCounters, batch: Batch,
                       events: Sequence[Event], written: Written) -> None:
        refused_ids = np.array([r.signal_id for r in written.refused
                                if r.signal_id is not None], np.intp)
        counters.readings += len(batch) - len(refused_ids)
        counters.events += len(events) - (len(written.refused) - len(refused_ids))
        counters.quarantined += len(written.refused)
        counters.valueless += written.valueless
        counters.deliveries += 1
        self.counters.count_written(batch, events)
        self.counters.count_refused(refused_ids)
        if written.refused:
            self._log_quarantine(counters, written.refused)

    async def _connect(self, connect: Callable[[], Awaitable[None]],
                       counters: ConnectorCounters, backoff: Backoff, *, mark_up: bool) -> None:
        while True:
            try:
                await connect()
            except Exception as exc:  # noqa: BLE001 - report, back off, retry
                counters.retries += 1
                counters.set_health(Health.DOWN, describe(exc))
                await asyncio.sleep(backoff.next_delay())
            else:
                if mark_up:
                    counters.set_health(Health.UP)
                return

    def _backoff(self) -> Backoff:
        return Backoff(self._config.backoff_initial_s, self._config.backoff_max_s)


async def _cancel(tasks: Sequence[asyncio.Task[None]], timeout_s: float
                  ) -> set[asyncio.Task[None]]:
    """Cancel `tasks` and wait for them, cancelling again every 0.1 s: a library call
    may swallow one cancellation (asyncio.wait_for does on Python 3.11 when what it waits
    for ends at that moment: python-snap7's reads then went on polling, and the stop
    never ended). Returns those still running after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    running = set(tasks)
    while running and (left := deadline - loop.time()) > 0:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=min(0.1, left))
    return running


def _waiting_in(task: asyncio.Task[None]) -> str:
    """Where a task is suspended: its innermost frame, as file:line in function."""
    frames = task.get_stack()
    if not frames:
        return "nothing (it has not started)"
    code = frames[-1].f_code
    return f"{code.co_filename}:{frames[-1].f_lineno} in {code.co_name}"


async def _close(connector: Source | Sink) -> None:
    """Close `connector`, giving up after CLOSE_TIMEOUT_S (a call stuck in a thread, a
    server that does not answer): the stop must end."""
    try:
        await asyncio.wait_for(connector.aclose(), CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("%s did not close within %.0f s; left behind", connector.name,
                    CLOSE_TIMEOUT_S)
