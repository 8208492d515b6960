"""The shadow as a sink of the gateway: it reads the outbox like any other sink, so it
gets every reading and event exactly in order, and again after a failure. Each write
applies them to the model and writes the resulting rows and snapshots in one
transaction; after a failure, `connect` reloads the model from the last snapshots, so
the retried write changes the tables exactly once.

At each shift's end (in data time: a replay's shifts end as it goes), once the
shift_kpi rows are written, it hands the shift to `shift_ended` (the composition root
writes the shift reports there) in a task of its own, so that a slow report never holds
the data path.

It also applies the job commands the API records (a person starting or completing a
job on a machine without a job signal), looking for them every COMMAND_POLL_S: the
model stays the only writer of job and interval rows, in whatever process the API
runs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection

from gateway.counters import ConnectorCounters, Health, describe
from gateway.types import Batch, Event, SignalRegistry
from shadow import tables as t
from shadow.calendar import DAY_NS, PlannedSchedule, Shift
from shadow.config import SHADOW_SINK, ShadowedConfig
from shadow.coverage import Run
from shadow.fleet import Fleet, Held, LeaseLostError
from shadow.live import LiveFeed, LiveObserver
from shadow.model import Changes, ShadowModel
from shadow.monitor import DriftMonitor
from shadow.report import record_shift_kpis
from shadow.schema import database_url, open_engine, upgrade
from shadow.store import CommandDone, CurrentJob, DriftUpdate, Readings, ShadowStore
from shadow.timeline import HOUR_NS, NS_PER_S, Window

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
MINUTE_NS = 60 * NS_PER_S
MAX_AGE_MINUTES = 24 * 60  # ages sampled in one write: a day of backlog at most
MAX_ENDED = 32  # ended shifts waiting for `shift_ended`; then the oldest is dropped, logged
ENDED_CLOSE_S = 4.0  # at close, how long the shifts still waiting may take (CLOSE_TIMEOUT_S 5)

# Called in a worker thread with the shadow's store and a shift that just ended.
ShiftEnded = Callable[[ShadowStore, Shift], None]


class ShadowSink:
    """Feeds the live model and the MES/ERP tables from the outbox."""

    name = SHADOW_SINK

    def __init__(self, config: ShadowedConfig, registry: SignalRegistry,
                 observers: Sequence[LiveObserver] = (),
                 lost: Callable[[], int] | None = None,
                 shift_ended: ShiftEnded | None = None, *, fleet: Fleet | None = None) -> None:
        """`observers` get the live model of each machine that changed (shadow/live.py),
        at most every their `model_interval_s`. `lost`: the readings the gateway's queue
        and outbox dropped in this process, recorded with its run (None: not known, e.g.
        a test without a runtime). `shift_ended`: called once per shift that ended, one
        call at a time, in a thread; the shifts waiting at close get ENDED_CLOSE_S.
        `fleet`: in a central process of a fleet (shadow/fleet.py), only the machines of
        the sites it holds are kept, each write fenced by their leases."""
        self._config = config
        self._shift_ended = shift_ended
        self._ended: asyncio.Queue[Shift] = asyncio.Queue(MAX_ENDED)
        self._reporter: asyncio.Task[None] | None = None
        self._live = LiveFeed(config, observers)
        self._lost = lost
        self._pruned_hour = 0  # the newest hour of data time counts and ages were pruned at
        self._sampled_minute = 0  # the newest minute of data time the ages were sampled at
        self._machines = sorted({info.machine for info in registry})
        index = {name: i for i, name in enumerate(self._machines)}
        self._machine_of = np.array([index[info.machine] for info in registry], np.int64)
        self._registry = registry
        self._fleet = fleet
        self._held: Held = {}  # with a fleet: the sites (and epochs) the model was loaded at
        self._site_of = {m: place.site for m, place in config.places().items()}
        self._kept = np.ones(len(registry), bool)  # the signals of the machines kept
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
        self._leasing: asyncio.Task[None] | None = None  # the fleet's leases, if any
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
        if self._reporter is None and self._shift_ended is not None:
            self._reporter = asyncio.create_task(self._report_shifts(),
                                                 name="shadow:shift-reports")
        if self._leasing is None and self._fleet is not None:  # once the tables exist
            # Take the sites before the first write: a restarted member's outbox replays
            # what it received for its sites before it stopped, and a write before the
            # first take would find none held and leave those readings out of the model.
            await self._fleet.tick()
            await asyncio.to_thread(self._connect)  # loads the sites taken
            self._leasing = asyncio.create_task(self._fleet.run(), name="shadow:fleet")

    def _connect(self) -> None:
        with self._lock:
            self._load()

    def _load(self) -> None:
        """(Re)loads the model from the snapshots: every machine's, or with a fleet those
        of the sites it holds now."""
        self._save_drift_state()
        self._dispose()
        machines = self._config.machines()
        if self._fleet is not None:
            self._held = dict(self._fleet.held)
            machines = [m for m in machines if self._site_of[m.id] in self._held]
            kept = {m.id for m in machines}
            self._kept = np.array([info.machine in kept for info in self._registry], bool)
        engine = open_engine(self.url)
        try:
            upgrade(engine)
            store = ShadowStore(engine, drift_key=self._drift_key())
            store.sync_plant(self._config)
            schedule = PlannedSchedule(self._config.shadow.calendar)
            model = ShadowModel(machines, self._registry, schedule.inside,
                                schedule.boundaries, self._planned_qty)
            for machine, snapshot in store.snapshots().items():
                if machine in model.machines:
                    model.machines[machine].restore(snapshot)
            jobs, orders = store.close_orphans({
                name: CurrentJob(m.job, m.job_since_ns, m.clock_ns)
                for name, m in model.machines.items()},
                None if self._fleet is None else set(model.machines))
            if jobs or orders:
                log.warning("shadow: closed %d jobs and %d orders a previous run left "
                            "open; the job and production_order rows say why", jobs, orders)
            monitor = DriftMonitor(machines, self._registry)
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
        self._live.everything(model)

    def _drift_key(self) -> str:
        """Where the drift detectors' state is saved: with a fleet, per set of sites
        held (the detectors are those of its machines)."""
        return "drift" if self._fleet is None else "drift@" + ",".join(sorted(self._held))

    def _planned_qty(self, job: str) -> int | None:
        """The model's lookup, in the thread that holds the lock (a write)."""
        if job not in self._plans:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            assert self.store is not None
            self._plans[job] = self.store.planned_qty(job)
        return self._plans[job]

    async def write(self, batch: Batch, events: Sequence[Event]) -> None:
        lost = None if self._lost is None else self._lost()  # read in the event loop
        ended = await asyncio.to_thread(self._write, batch, events, lost)
        if self._shift_ended is None:
            return
        for shift in ended:
            if self._ended.full():
                dropped = self._ended.get_nowait()
                self._ended.task_done()
                log.warning("shadow: %d ended shifts wait for their reports: the %s shift of "
                            "%s gets none (`ombre report shift` makes it)", MAX_ENDED,
                            dropped.name, dropped.day)
            self._ended.put_nowait(shift)

    async def _report_shifts(self) -> None:
        """Hands each ended shift to `shift_ended`, one at a time, in a thread."""
        assert self._shift_ended is not None
        while True:
            shift = await self._ended.get()
            try:
                store = self.store
                if store is not None:
                    await asyncio.to_thread(self._shift_ended, store, shift)
            except Exception:
                log.exception("shadow: the reports of the %s shift of %s failed",
                              shift.name, shift.day)
            finally:
                self._ended.task_done()

    def _write(self, batch: Batch, events: Sequence[Event], lost: int | None) -> list[Shift]:
        with self._lock:
            if self._fleet is not None:
                self._follow_fleet()
                batch = batch.rows(self._kept[batch.signal_id])
                events = [e for e in events if self._site_of.get(e.machine) in self._held]
            if self.store is None or self.model is None or self.monitor is None:
                raise RuntimeError(f"sink {self.name} is not connected")
            store, model, monitor = self.store, self.model, self.monitor
            with self._model_ahead_on_failure(store):
                seen = {name: m.last_seen_ns for name, m in model.machines.items()}
                changes = model.apply(batch, events)
                self._ensure_calendar(store, changes)
                alarms = monitor.apply(batch, changes.derived)
                save = bool(alarms) or time.monotonic() >= self._next_drift_save
                watermark = model.clock_ns()
                drift = DriftUpdate(alarms, monitor.state() if save else None,
                                    {m: model.machines[m].clock_ns for m in changes.touched})
                opened = store.write(changes, {m: model.machines[m].snapshot()
                                               for m in changes.touched}, drift,
                                     run=self._run(batch, events, lost),
                                     readings=self._readings(
                                         batch, events, changes.readings, seen, watermark),
                                     fence=self._fence)
            if save:
                self._next_drift_save = time.monotonic() + DRIFT_STATE_INTERVAL_S
            self._report(changes)
            self._live.publish(store, model, changes.touched)
            for watch, alarm in opened:
                log.warning("shadow: drift alert on %s/%s: %s by %.2f sigma (%+g %s), "
                            "detected by %s", watch.machine, watch.signal,
                            "up" if alarm.direction > 0 else "down", abs(alarm.shift_sigma),
                            alarm.shift_sigma * alarm.sigma, watch.unit or "",
                            watch.config.detector)
            # The first write of a fresh database starts from its own first reading. The
            # watermark moves on even when a write adds no time (a single reading): else
            # live data arriving one reading per write would never end a shift.
            firsts = [int(batch.ts_ns.min())] if len(batch) else []
            start = self._watermark or min([*firsts, *(e.ts_ns for e in events)],
                                           default=watermark)
            if watermark <= start:
                self._watermark = max(self._watermark, watermark)
                return []
            ended = record_shift_kpis(store, self._config, Window(start, watermark),
                                      [m.config for m in model.machines.values()])
            self._watermark = watermark
            return ended

    def _follow_fleet(self) -> None:
        """With a fleet: reloads if sites were taken or given back since the last load."""
        if self._fleet is not None and self._fleet.held != self._held and self.store is not None:
            self._load()

    def _fence(self, c: Connection) -> None:
        """With a fleet: refuses the write unless the sites loaded are still held."""
        if self._fleet is not None:
            self._fleet.leases.fence(c, self._held)

    def _run(self, batch: Batch, events: Sequence[Event], lost: int | None) -> Run | None:
        """The data time this write adds to the run: its oldest to its newest reading,
        and the readings the run lost so far."""
        times = [*(e.ts_ns for e in events)]
        if len(batch):
            times += [int(batch.ts_ns.min()), int(batch.ts_ns.max())]
        return Run(self._started_ns, min(times), max(times), lost) if times else None

    def _readings(self, batch: Batch, events: Sequence[Event],
                  counts: Counter[tuple[str, str, int]], seen: Mapping[str, int | None],
                  clock_ns: int) -> Readings:
        """This write's readings and events per signal and hour (`counts`: those the model
        took, a redelivery once); each machine's age at each minute of data time the
        model's clock passed (`seen`: each machine's last reading before the write); once
        per new hour of data time, the counts and ages older than tables.EVIDENCE_DAYS
        pruned."""
        ages = self._ages(batch, events, seen, clock_ns)
        newest = max((h for _, _, h in counts), default=0)
        if newest <= self._pruned_hour:
            return Readings(counts, ages)
        self._pruned_hour = newest
        return Readings(counts, ages, newest - t.EVIDENCE_DAYS * 24 * HOUR_NS)

    def _ages(self, batch: Batch, events: Sequence[Event], seen: Mapping[str, int | None],
              clock_ns: int) -> dict[tuple[str, int], float]:
        """(machine, minute) -> its age in seconds at that minute of data time: the
        minute minus its newest reading at or before it, for the minutes the model's
        clock passed in this write (at most MAX_AGE_MINUTES, the newest)."""
        oldest = min([*(e.ts_ns for e in events),
                      *([int(batch.ts_ns.min())] if len(batch) else [])], default=clock_ns)
        first = self._sampled_minute + MINUTE_NS if self._sampled_minute else oldest
        first = -(-first // MINUTE_NS) * MINUTE_NS
        minutes = np.arange(first, clock_ns + 1, MINUTE_NS, dtype=np.int64)[-MAX_AGE_MINUTES:]
        if not len(minutes):
            return {}
        self._sampled_minute = int(minutes[-1])
        machines = self._machine_of[batch.signal_id]
        ages: dict[tuple[str, int], float] = {}
        for index, name in enumerate(self._machines):
            before = seen.get(name)
            ts = np.sort(np.concatenate([
                np.array([-1 if before is None else before], np.int64),
                batch.ts_ns[machines == index],
                np.array([e.ts_ns for e in events if e.machine == name], np.int64)]))
            last = ts[np.searchsorted(ts, minutes, side="right") - 1]
            known = last >= 0
            ages |= {(name, m): age for m, age in zip(
                minutes[known].tolist(), ((minutes[known] - last[known]) / NS_PER_S).tolist(),
                strict=True)}
        return ages

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
            self._follow_fleet()
            if self.store is None or self.model is None:  # a write failed: reconnecting
                raise RuntimeError(f"sink {self.name} is not connected")
            store, model = self.store, self.model
            self._plans.clear()
            pending = [c for c in store.job_commands(pending=True, limit=MAX_COMMANDS)
                       if self._fleet is None or c.machine_id in model.machines]
            if not pending:
                self._live.publish(store, model, set())  # what waited for its interval
                return
            with self._model_ahead_on_failure(store):
                changes = Changes()
                done = [self._apply_command(model, command, changes) for command in pending]
                self._ensure_calendar(store, changes)
                store.write(changes, {m: model.machines[m].snapshot()
                                      for m in changes.touched}, commands=done,
                            fence=self._fence)
            self._live.publish(store, model, changes.touched)
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
        if self._leasing is not None and self._fleet is not None:
            self._leasing.cancel()
            with suppress(asyncio.CancelledError):
                await self._leasing
            self._leasing = None
            try:
                await self._fleet.close()  # the others take its sites at once
            except Exception:
                log.exception("fleet: could not give the sites back; they lapse by "
                              "themselves")
        if self._reporter is not None:
            try:
                await asyncio.wait_for(self._ended.join(), ENDED_CLOSE_S)
            except TimeoutError:
                log.warning("shadow: closing with %d ended shifts still without their "
                            "reports (`ombre report shift` makes them)", self._ended.qsize())
            self._reporter.cancel()
            with suppress(asyncio.CancelledError):
                await self._reporter
            self._reporter = None
        if self._poller is not None:
            self._poller.cancel()
            with suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._save_drift_state()
            self._dispose()

    def _save_drift_state(self) -> None:
        if self.store is not None and self.monitor is not None and self.monitor.watches:
            try:
                with self.store.engine.begin() as c:
                    self._fence(c)
                    self.store.save_drift_state(c, self.monitor.state())
            except LeaseLostError as exc:  # its sites moved on: their state is not its
                log.info("shadow: the drift detectors' state is not saved: %s", exc)
            except Exception:
                log.exception("shadow: could not save the drift detectors' state; they "
                              "go on from the last one saved")

    def _dispose(self) -> None:
        if self.store is not None:
            self.store.engine.dispose()
        self.store = self.model = self.monitor = None
