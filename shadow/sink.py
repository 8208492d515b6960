"""The shadow as a sink of the gateway: it reads the outbox like any other sink, so it
gets every reading and event exactly in order, and again after a failure. Each write
applies them to the model and writes the resulting rows and snapshots in one
transaction; after a failure, `connect` reloads the model from the last snapshots, so
the retried write changes the tables exactly once.

It also applies the job commands the API records (a person starting or completing a
job on a machine without a job signal), looking for them every COMMAND_POLL_S: the
model stays the only writer of job and interval rows, in whatever process the API
runs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from gateway.counters import ConnectorCounters, Health, describe
from gateway.types import Batch, Event, SignalRegistry
from shadow.calendar import DAY_NS, PlannedSchedule
from shadow.config import SHADOW_SINK, ShadowedConfig
from shadow.coverage import Run
from shadow.model import Changes, ShadowModel
from shadow.monitor import DriftMonitor
from shadow.report import record_shift_kpis
from shadow.schema import database_url, open_engine, upgrade
from shadow.store import CommandDone, CurrentJob, DriftUpdate, ShadowStore
from shadow.timeline import Window

log = logging.getLogger(__name__)

# The drift detectors' state (a few hundred bytes per detector) is saved with the rows
# at most this often, and on every alarm and at shutdown: after a crash, detectors go on
# from a state at most this old, missing the readings in between (alerts raised are
# never lost or repeated: they commit with the rows).
DRIFT_STATE_INTERVAL_S = 10.0
MAX_LOGGED = 1000  # distinct unmapped states logged once each, then no more
COMMAND_POLL_S = 1.0  # how often job commands made through the API are looked for
MAX_COMMANDS = 100  # job commands applied in one transaction
MAX_DAYS = 1000  # days remembered as having their calendar rows; then forgotten, rewritten
MAX_PLANS = 10_000  # planned quantities remembered between two COMMAND_POLL_S


class ShadowSink:
    """Feeds the live model and the MES/ERP tables from the outbox."""

    name = SHADOW_SINK

    def __init__(self, config: ShadowedConfig, registry: SignalRegistry) -> None:
        self._config = config
        self._registry = registry
        self.url = database_url(config.shadow.database, config.data_dir)
        self._lock = threading.Lock()  # a cancelled call's thread may still be running
        self.store: ShadowStore | None = None
        self.model: ShadowModel | None = None
        self.monitor: DriftMonitor | None = None
        self._days: set[int] = set()  # UTC days whose calendar rows are written
        self._logged: set[tuple[str, str]] = set()
        self._watermark = 0  # the latest time any machine's timeline reached
        self._next_drift_save = 0.0
        self._poller: asyncio.Task[None] | None = None
        self._started_ns = time.time_ns()  # this run's key in the gateway_run table
        # Planned quantities of the jobs of machines that complete at it, read once and
        # forgotten every COMMAND_POLL_S, so that a new import counts within a second.
        self._plans: dict[str, int | None] = {}
        # Whether the job commands can be applied: a database outage is logged once
        # when it starts and once when it ends (the sink's own health is the runtime's).
        self.commands = ConnectorCounters("job commands", "shadow", Health.UP)

    async def connect(self) -> None:
        await asyncio.to_thread(self._connect)
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_commands(), name="shadow:jobs")

    def _connect(self) -> None:
        with self._lock:
            self._dispose()
            engine = open_engine(self.url)
            try:
                upgrade(engine)
                store = ShadowStore(engine)
                store.sync_plant(self._config)
                schedule = PlannedSchedule(self._config.shadow.calendar)
                model = ShadowModel(self._config.machines(), self._registry, schedule.inside,
                                    schedule.boundaries, self._planned_qty)
                for machine, snapshot in store.snapshots().items():
                    if machine in model.machines:
                        model.machines[machine].restore(snapshot)
                jobs, orders = store.close_orphans({
                    name: CurrentJob(m.job, m.job_since_ns, m.clock_ns)
                    for name, m in model.machines.items()})
                if jobs or orders:
                    log.warning("shadow: closed %d jobs and %d orders a previous run left "
                                "open; the job and production_order rows say why", jobs, orders)
                monitor = DriftMonitor(self._config.machines(), self._registry)
                saved = store.drift_state()
                if saved is not None and not monitor.restore(saved):
                    log.warning("shadow: the drift detectors changed in the config (or their "
                                "saved state's format); they start again (learning their "
                                "baselines where not given)")
            except BaseException:
                engine.dispose()
                raise
            self.store, self.model, self.monitor = store, model, monitor
            self._days.clear()
            self._watermark = model.clock_ns()

    def _planned_qty(self, job: str) -> int | None:
        """The model's lookup, in the thread that holds the lock (a write)."""
        if job not in self._plans:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            assert self.store is not None
            self._plans[job] = self.store.planned_qty(job)
        return self._plans[job]

    async def write(self, batch: Batch, events: Sequence[Event]) -> None:
        await asyncio.to_thread(self._write, batch, events)

    def _write(self, batch: Batch, events: Sequence[Event]) -> None:
        with self._lock:
            if self.store is None or self.model is None or self.monitor is None:
                raise RuntimeError(f"sink {self.name} is not connected")
            store, model, monitor = self.store, self.model, self.monitor
            with self._model_ahead_on_failure(store):
                changes = model.apply(batch, events)
                self._ensure_calendar(store, changes)
                alarms = monitor.apply(batch, changes.derived)
                save = bool(alarms) or time.monotonic() >= self._next_drift_save
                watermark = model.clock_ns()
                drift = DriftUpdate(alarms, monitor.state() if save else None,
                                    {m: model.machines[m].clock_ns for m in changes.touched})
                opened = store.write(changes, {m: model.machines[m].snapshot()
                                               for m in changes.touched}, drift,
                                     run=self._run(batch, events))
            if save:
                self._next_drift_save = time.monotonic() + DRIFT_STATE_INTERVAL_S
            self._report(changes)
            for watch, alarm in opened:
                log.warning("shadow: drift alert on %s/%s: %s by %.2f sigma (%+g %s), "
                            "detected by %s", watch.machine, watch.signal,
                            "up" if alarm.direction > 0 else "down", abs(alarm.shift_sigma),
                            alarm.shift_sigma * alarm.sigma, watch.unit or "",
                            watch.config.detector)
            # The first write of a fresh database starts from its own first reading.
            firsts = [int(batch.ts_ns.min())] if len(batch) else []
            start = self._watermark or min([*firsts, *(e.ts_ns for e in events)],
                                           default=watermark)
            if watermark > start:
                record_shift_kpis(store, self._config, Window(start, watermark))
                self._watermark = watermark

    def _run(self, batch: Batch, events: Sequence[Event]) -> Run | None:
        """The data time this write adds to the run: its oldest to its newest reading."""
        times = [*(e.ts_ns for e in events)]
        if len(batch):
            times += [int(batch.ts_ns.min()), int(batch.ts_ns.max())]
        return Run(self._started_ns, min(times), max(times)) if times else None

    @contextmanager
    def _model_ahead_on_failure(self, store: ShadowStore) -> Iterator[None]:
        """On a failure the model is ahead of the tables: the sink disconnects, the
        runtime reconnects it, which reloads the model from the snapshots, and the
        same data is written again."""
        try:
            yield
        except BaseException:
            self.store = self.model = self.monitor = None
            store.engine.dispose()
            raise

    async def _poll_commands(self) -> None:
        """Applies the job commands the API records (a person starting or completing a
        job), in the order they were made, every COMMAND_POLL_S."""
        while True:
            await asyncio.sleep(COMMAND_POLL_S)
            try:
                await asyncio.to_thread(self._apply_commands)
            except Exception as exc:  # noqa: BLE001 - the database is down: retried
                self.commands.set_health(Health.DOWN, describe(exc))
            else:
                self.commands.set_health(Health.UP)

    def _apply_commands(self) -> None:
        with self._lock:
            if self.store is None or self.model is None:  # a write failed: reconnecting
                raise RuntimeError(f"sink {self.name} is not connected")
            store, model = self.store, self.model
            self._plans.clear()
            pending = store.job_commands(pending=True, limit=MAX_COMMANDS)
            if not pending:
                return
            with self._model_ahead_on_failure(store):
                changes = Changes()
                done = [self._apply_command(model, command, changes) for command in pending]
                self._ensure_calendar(store, changes)
                store.write(changes, {m: model.machines[m].snapshot()
                                      for m in changes.touched}, commands=done)
        for d in done:
            log.info("shadow: job command %d: %s", d.id, d.result)

    def _apply_command(self, model: ShadowModel, command: Any, changes: Changes) -> CommandDone:
        """One job command; one the config no longer allows is recorded as refused."""
        machine = next((m for m in self._config.machines() if m.id == command.machine_id), None)
        if machine is None or machine.job_signal is not None:
            why = ("no such machine in the config" if machine is None else
                   f"refused: the machine takes its job from signal {machine.job_signal!r}")
            return CommandDone(command.id, command.requested_ns, command.job_key, why)
        ended = model.command_job(machine.id, command.job_key, command.requested_ns, changes)
        at = model.machines[machine.id].clock_ns
        if command.action == "start":
            result = f"started {command.job_key}" + (f", ended {ended}" if ended else "")
            return CommandDone(command.id, at, command.job_key, result)
        if ended is None:
            return CommandDone(command.id, at, None, "no job was running")
        return CommandDone(command.id, at, ended, f"completed {ended}")

    def _ensure_calendar(self, store: ShadowStore, changes: Changes) -> None:
        """Writes the shift and planned-stop rows of every day the data reached."""
        days = {i.start_ns // DAY_NS for i, _ in changes.intervals}
        days |= {key[1] // DAY_NS for key in changes.counts}
        assert self.model is not None
        days |= {m.clock_ns // DAY_NS for m in self.model.machines.values() if m.clock_ns}
        for day in sorted(days - self._days):
            store.ensure_calendar(self._config.shadow.calendar,
                                  Window(day * DAY_NS, (day + 1) * DAY_NS))
            if len(self._days) > MAX_DAYS:
                self._days.clear()
            self._days.add(day)

    def _report(self, changes: Changes) -> None:
        for r in changes.rejected:
            log.warning("shadow: %s/%s: %s; reading kept in the quarantine table",
                        r.machine, r.signal, r.reason)
        assert self.model is not None
        for name in changes.touched:
            state = self.model.machines[name].state
            key = (name, state.raw)
            if not state.mapped and key not in self._logged and len(self._logged) < MAX_LOGGED:
                self._logged.add(key)
                log.warning("shadow: machine %s reports state %r, which its state table does "
                            "not map; its time counts as unclassified", name, state.raw)

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self.store is not None and self.monitor is not None and self.monitor.watches:
                try:
                    with self.store.engine.begin() as c:
                        self.store.save_drift_state(c, self.monitor.state())
                except Exception:
                    log.exception("shadow: could not save the drift detectors' state; they "
                                  "go on from the last one saved")
            self._dispose()

    def _dispose(self) -> None:
        if self.store is not None:
            self.store.engine.dispose()
        self.store = self.model = self.monitor = None
