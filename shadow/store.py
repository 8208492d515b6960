"""Reading and writing the MES/ERP tables. Every write is an idempotent upsert on a
natural key, so writing the same changes twice leaves the same tables; the model's
snapshot is written in the same transaction as the rows it produced."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine, Table, and_, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from gateway.config import LineConfig
from shadow import tables as t
from shadow.band import Segment
from shadow.calendar import planned_stops, shifts
from shadow.config import CalendarConfig, ShadowedConfig, ShadowMachineConfig
from shadow.coverage import Coverage, Run
from shadow.drift import Alarm
from shadow.model import Changes, JobRecord
from shadow.monitor import Watch
from shadow.timeline import BUCKET_NS, Category, Count, Interval, OrderPlan, Window


@dataclass(frozen=True, slots=True)
class DriftUpdate:
    """The drift detectors' alarms of one write, their state after it when it is to be
    saved (None: not this time), and the data time each machine of the write reached:
    its alerts in control since long enough close. Each machine's own time, because
    one source may lag behind another (a backlog, a slower link)."""

    alarms: list[tuple[Watch, Alarm]]
    state: dict[str, Any] | None
    clocks: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Readings:
    """The readings and events of one write per (machine, signal, hour start in data
    time); each machine's live-model age at each new minute of data time; and
    the data time before which counts and ages are forgotten (None: not this time)."""

    counts: Mapping[tuple[str, str, int], int]
    ages: Mapping[tuple[str, int], float]  # (machine, minute) -> age in seconds
    prune_before_ns: int | None = None


@dataclass(frozen=True, slots=True)
class CommandDone:
    """A job command the shadow applied: when (data time), the job it started or the
    one it ended, and what it did in words."""

    id: int
    applied_ns: int
    job_key: str | None
    result: str


@dataclass(frozen=True, slots=True)
class CurrentJob:
    """What the live model says a machine runs, for `close_orphans`."""

    job: str | None
    since_ns: int | None
    clock_ns: int


@dataclass(frozen=True, slots=True)
class Timeline:
    """What the KPIs of a window are computed from."""

    intervals: list[Interval]
    counts: list[Count]
    orders: dict[str, OrderPlan]
    shifts: list[Window] | None  # None: the calendar has no shifts, all time is planned
    planned_stops: dict[str | None, list[Window]]
    coverage: Coverage


class ShadowStore:
    def __init__(self, engine: Engine, drift_key: str = "drift") -> None:
        """`drift_key`: the shadow_state row of the drift detectors' state."""
        self.engine = engine
        self._drift_key = drift_key
        self._dialect = postgresql if engine.dialect.name == "postgresql" else sqlite

    def _insert(self, table: Table) -> Any:  # the dialect's INSERT with ON CONFLICT
        return self._dialect.insert(table)

    def sync_plant(self, config: ShadowedConfig) -> None:
        """The equipment hierarchy and reason codes as the config declares them."""
        rows = list(_equipment(config))
        with self.engine.begin() as c:
            stmt = self._insert(t.equipment)
            c.execute(stmt.on_conflict_do_update(
                index_elements=["id"], set_={k: stmt.excluded[k] for k in
                                             ("parent_id", "level", "name", "type", "connection")}),
                rows)
            self._upsert_codes(c, [r.model_dump() for r in config.shadow.reason_codes])

    def ensure_calendar(self, calendar: CalendarConfig, window: Window) -> None:
        """Writes the shift instances and planned stops of the calendar that overlap
        `window` (already written ones are kept)."""
        shift_rows = [{"name": s.name, "day": s.day.isoformat(), "start_ns": s.window.start_ns,
                       "end_ns": s.window.end_ns} for s in shifts(calendar, window)]
        stop_rows = [{"machine_id": p.machine or t.ALL_MACHINES, "start_ns": p.window.start_ns,
                      "end_ns": p.window.end_ns, "reason": p.reason}
                     for p in planned_stops(calendar, window)]
        with self.engine.begin() as c:
            if shift_rows:
                c.execute(self._insert(t.shift).on_conflict_do_nothing(), shift_rows)
            if stop_rows:
                c.execute(self._insert(t.planned_stop).on_conflict_do_nothing(), stop_rows)

    def snapshots(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(t.machine_state.c.machine_id, t.machine_state.c.snapshot))
            return {m: json.loads(s) for m, s in rows}

    def write(self, changes: Changes, snapshots: Mapping[str, dict[str, Any]],
              drift: DriftUpdate | None = None,
              commands: Sequence[CommandDone] = (),
              *, run: Run | None = None,
              readings: Readings | None = None,
              fence: Callable[[Connection], None] | None = None) -> list[tuple[Watch, Alarm]]:
        """The model's changes, the new snapshots of the machines they touched, the
        drift detectors' alarms and state, the job commands applied, the data time
        the gateway's run has covered and the readings it received, in one transaction;
        returns the alarms that opened a drift alert. The readings count only when the
        run covers new data time (a file replayed again is not counted twice). `fence`
        is called first in the transaction, and refuses the write by raising (a fleet
        member that no longer holds the sites: shadow/fleet.py)."""
        opened: list[tuple[Watch, Alarm]] = []
        with self.engine.begin() as c:
            if fence is not None:
                fence(c)
            if run is not None and self._write_run(c, run) and readings is not None:
                self._write_readings(c, readings)
            self._write_commands(c, commands)
            if drift is not None:
                opened = self._write_drift(c, drift)
            self._write_intervals(c, changes.intervals)
            self._write_jobs(c, changes)
            if changes.counts:
                stmt = self._insert(t.production_count)
                c.execute(stmt.on_conflict_do_update(
                    index_elements=["machine_id", "bucket_ns", "job_key"],
                    set_={k: t.production_count.c[k] + stmt.excluded[k]
                          for k in ("pq", "gq", "sq", "rq")}),
                    [{"machine_id": m, "bucket_ns": b, "job_key": job or "", "pq": pq, "gq": gq,
                      "sq": sq, "rq": rq}
                     for (m, b, job), (pq, gq, sq, rq) in changes.counts.items()])
            if changes.rejected:
                c.execute(self._insert(t.quarantine).on_conflict_do_nothing(),
                          [{"ts_ns": r.ts_ns, "machine_id": r.machine, "signal": r.signal,
                            "value": r.value, "reason": r.reason} for r in changes.rejected])
            if snapshots:
                stmt = self._insert(t.machine_state)
                c.execute(stmt.on_conflict_do_update(
                    index_elements=["machine_id"], set_={"snapshot": stmt.excluded.snapshot}),
                    [{"machine_id": m, "snapshot": json.dumps(s)} for m, s in snapshots.items()])
        return opened

    def _write_readings(self, c: Connection, readings: Readings) -> None:
        rc, ma = t.reading_count, t.model_age
        if readings.prune_before_ns is not None:
            c.execute(delete(rc).where(rc.c.hour_ns < readings.prune_before_ns))
            c.execute(delete(ma).where(ma.c.minute_ns < readings.prune_before_ns))
        if readings.ages:
            stmt = self._insert(ma)
            c.execute(stmt.on_conflict_do_nothing(), [
                {"machine_id": m, "minute_ns": minute, "age_s": age}
                for (m, minute), age in readings.ages.items()])
        if readings.counts:
            stmt = self._insert(rc)
            c.execute(stmt.on_conflict_do_update(
                index_elements=["machine_id", "signal", "hour_ns"],
                set_={"readings": rc.c.readings + stmt.excluded.readings}),
                [{"machine_id": m, "signal": s, "hour_ns": h, "readings": n}
                 for (m, s, h), n in readings.counts.items()])

    def _write_run(self, c: Connection, run: Run) -> bool:
        """Widens the run's covered data time to take `run` in, and records the
        readings it lost; whether it covers new data time. A run that has only seen
        data some run already covered (a file replayed again, a redelivery) adds
        nothing, so it writes no row."""
        gr = t.gateway_run
        known = select(gr.c.started_ns).where(
            (gr.c.started_ns == run.started_ns)
            | ((gr.c.start_ns <= run.start_ns) & (gr.c.end_ns >= run.end_ns)))
        if c.execute(known.where(gr.c.started_ns != run.started_ns).limit(1)).first() \
                and not c.execute(known.where(gr.c.started_ns == run.started_ns)).first():
            return False
        stmt = self._insert(gr).values(started_ns=run.started_ns, start_ns=run.start_ns,
                                       end_ns=run.end_ns, readings_lost=run.lost)
        c.execute(stmt.on_conflict_do_update(index_elements=["started_ns"], set_={
            "readings_lost": stmt.excluded.readings_lost,
            "start_ns": case((stmt.excluded.start_ns < gr.c.start_ns, stmt.excluded.start_ns),
                             else_=gr.c.start_ns),
            "end_ns": case((stmt.excluded.end_ns > gr.c.end_ns, stmt.excluded.end_ns),
                           else_=gr.c.end_ns)}))
        return True

    def _write_drift(self, c: Connection, drift: DriftUpdate) -> list[tuple[Watch, Alarm]]:
        """Each alarm joins its detector's alert still open, or opens one: an alert is
        one episode, closed once its detector stayed in control for in_control_s."""
        da, opened = t.drift_alert, list[tuple[Watch, Alarm]]()
        for watch, alarm in sorted(drift.alarms, key=lambda wa: wa[1].ts_ns):
            key = and_(da.c.machine_id == watch.machine, da.c.signal == watch.signal,
                       da.c.detector == watch.config.detector, da.c.status != "closed")
            self._close_in_control(c, alarm.ts_ns, key)
            current = c.execute(select(da.c.id, da.c.last_alarm_ns).where(key)).first()
            if current is not None:
                c.execute(update(da).where(da.c.id == current.id).values(
                    last_alarm_ns=max(current.last_alarm_ns, alarm.ts_ns)))
                continue
            params = {**watch.config.model_dump(by_alias=True, exclude_none=True),
                      "baseline_mean": alarm.mean, "baseline_sigma": alarm.sigma}
            done = c.execute(self._insert(da).on_conflict_do_nothing().values(
                machine_id=watch.machine, signal=watch.signal, detector=watch.config.detector,
                params=json.dumps(params), start_ns=alarm.start_ns, detected_ns=alarm.ts_ns,
                last_alarm_ns=alarm.ts_ns, in_control_ns=int(watch.config.in_control_s * 1e9),
                direction="up" if alarm.direction > 0 else "down",
                shift_sigma=alarm.shift_sigma, shift_value=alarm.shift_sigma * alarm.sigma,
                unit=watch.unit, status="open").returning(da.c.id))
            if done.first() is not None:
                opened.append((watch, alarm))
        for machine, now_ns in drift.clocks.items():
            self._close_in_control(c, now_ns, t.drift_alert.c.machine_id == machine)
        if drift.state is not None:
            self.save_drift_state(c, drift.state)
        return opened

    def save_drift_state(self, c: Connection, state: dict[str, Any]) -> None:
        stmt = self._insert(t.shadow_state)
        c.execute(stmt.on_conflict_do_update(index_elements=["key"],
                                             set_={"value": stmt.excluded.value}),
                  [{"key": self._drift_key, "value": json.dumps(state)}])

    def _close_in_control(self, c: Connection, now_ns: int, key: Any = None) -> None:
        da = t.drift_alert
        back = and_(da.c.status != "closed", da.c.last_alarm_ns + da.c.in_control_ns <= now_ns)
        c.execute(update(da).where(back if key is None else and_(back, key))
                  .values(status="closed", closed_by="auto", end_ns=da.c.last_alarm_ns))

    def drift_state(self) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            value = c.execute(select(t.shadow_state.c.value)
                              .where(t.shadow_state.c.key == self._drift_key)).scalar()
        return None if value is None else dict(json.loads(value))

    def _write_intervals(self, c: Connection, intervals: Sequence[tuple[Interval, str]]) -> None:
        """The closed intervals; a machine's stop reason becomes the interval's reason
        code when it is a declared code, and is kept as raw text either way."""
        if not intervals:
            return
        wanted = {i.reason for i, _ in intervals if i.reason is not None}
        rc = t.reason_code
        known = set(c.execute(select(rc.c.code).where(rc.c.code.in_(wanted))).scalars()
                    ) if wanted else set()
        c.execute(self._insert(t.state_interval).on_conflict_do_nothing(
            index_elements=["machine_id", "start_ns"]),
            [{"machine_id": i.machine, "start_ns": i.start_ns, "end_ns": i.end_ns,
              "raw_state": raw[:200], "category": i.category, "failure": i.failure,
              "job_key": i.job, "reason_code": i.reason if i.reason in known else None,
              "reason_raw": None if i.reason_raw is None else i.reason_raw[:200],
              "reason_source": "machine" if i.reason in known else None}
             for i, raw in intervals])

    def _write_jobs(self, c: Connection, changes: Changes) -> None:
        """A job's start makes its order running (again, if it had ended); its end
        completes the order once no other machine runs it."""
        po = t.production_order
        for record in changes.jobs:
            ended = record.end_ns is not None
            stmt = self._insert(t.job).values(
                machine_id=record.machine, job_key=record.job, start_ns=record.start_ns,
                end_ns=record.end_ns, status="Completed" if ended else "Running",
                ended_by=record.ended_by, end_reason=_text(record.reason))
            if not ended:
                c.execute(stmt.on_conflict_do_nothing(index_elements=["machine_id", "start_ns"]))
                c.execute(update(po).where(po.c.job_key == record.job, po.c.status != "running")
                          .values(status="running", end_ns=None, ended_by=None, end_reason=None))
                continue
            c.execute(stmt.on_conflict_do_update(
                index_elements=["machine_id", "start_ns"],
                set_={"end_ns": record.end_ns, "status": "Completed",
                      "ended_by": record.ended_by, "end_reason": _text(record.reason)}))
            self._end_order(c, record, "completed")

    def _end_order(self, c: Connection, record: JobRecord, status: str) -> int:
        """The order of an ended job is `status` (completed, closed) with what ended it,
        unless another job of it still runs; returns 1 if it ended, else 0."""
        jb, po = t.job, t.production_order
        running = select(jb.c.id).where(jb.c.job_key == record.job, jb.c.end_ns.is_(None))
        return int(c.execute(
            update(po).where(po.c.job_key == record.job, po.c.status.in_(["planned", "running"]),
                             ~running.exists())
            .values(status=status, end_ns=record.end_ns, ended_by=record.ended_by,
                    end_reason=_text(f"{record.machine}: {record.reason}"))).rowcount)

    def close_orphans(self, current: Mapping[str, CurrentJob],
                      scope: Collection[str] | None = None) -> tuple[int, int]:
        """At start-up, ends what a previous run left open: a job row still running that
        is not its machine's current job in the live model (the machine reports another
        job, or none, or left the config) is aborted, and a running order that no job
        runs any more is closed, each with the reason. Returns (jobs, orders) closed.
        `scope`: only the jobs of these machines (a fleet member's: others' are theirs)."""
        jb, po = t.job, t.production_order
        running = [jb.c.end_ns.is_(None)]
        if scope is not None:
            running.append(jb.c.machine_id.in_(sorted(scope)))
        with self.engine.begin() as c:
            orphans = [
                JobRecord(machine, job, start, max(start, now.clock_ns) if now else start,
                          "restart", "restart: " + (
                              "machine no longer in the config" if now is None else
                              f"machine reports job {now.job}" if now.job else
                              "machine reports no job"))
                for id_, machine, job, start in c.execute(
                    select(jb.c.id, jb.c.machine_id, jb.c.job_key, jb.c.start_ns)
                    .where(*running).order_by(jb.c.id))
                if (now := current.get(machine)) is None or (now.job, now.since_ns) != (job, start)]
            for o in orphans:
                c.execute(update(jb).where(jb.c.machine_id == o.machine,
                                           jb.c.start_ns == o.start_ns)
                          .values(end_ns=o.end_ns, status="Aborted", ended_by=o.ended_by,
                                  end_reason=_text(o.reason)))
            closed = sum(self._end_order(c, o, "closed") for o in orphans)
            runs = select(jb.c.id).where(jb.c.job_key == po.c.job_key, jb.c.end_ns.is_(None))
            last_end = select(func.max(jb.c.end_ns)).where(jb.c.job_key == po.c.job_key)
            c.execute(update(po).where(po.c.status == "planned", runs.exists())
                      .values(status="running"))
            closed += c.execute(update(po).where(po.c.status == "running", ~runs.exists())
                                .values(status="closed", end_ns=last_end.scalar_subquery(),
                                        ended_by="restart",
                                        end_reason="restart: no machine runs it")).rowcount
        return len(orphans), closed

    def planned_qty(self, job_key: str) -> int | None:
        """The planned quantity of the order of `job_key` (None: no such order)."""
        po = t.production_order
        with self.engine.connect() as c:
            found = c.execute(select(po.c.planned_qty).where(po.c.job_key == job_key)).scalar()
        return None if found is None else int(found)

    def complete_order(self, job_key: str, now_ns: int, by: str) -> bool:
        """A person completes an order no machine runs (one that runs ends through its
        machine's job); False if it was not planned or running."""
        po = t.production_order
        with self.engine.begin() as c:
            return bool(c.execute(
                update(po).where(po.c.job_key == job_key, po.c.status.in_(["planned", "running"]))
                .values(status="completed", end_ns=now_ns, ended_by="command",
                        end_reason=_text(f"completed by {by}"))).rowcount)

    def running_jobs(self, job_key: str) -> list[str]:
        """The machines whose job rows say they run `job_key`."""
        jb = t.job
        with self.engine.connect() as c:
            return list(c.execute(select(jb.c.machine_id).where(
                jb.c.job_key == job_key, jb.c.end_ns.is_(None)).order_by(jb.c.machine_id))
                .scalars())

    def _write_commands(self, c: Connection, commands: Sequence[CommandDone]) -> None:
        jc = t.job_command
        for done in commands:
            c.execute(update(jc).where(jc.c.id == done.id).values(
                applied_ns=done.applied_ns, job_key=done.job_key, result=done.result[:200]))

    def request_job(self, machine: str, job_key: str | None, requested_ns: int,
                    by: str) -> int:
        """Records a person's job start (`job_key`) or completion (None) for the
        shadow to apply; returns its id."""
        with self.engine.begin() as c:
            return int(c.execute(t.job_command.insert().values(
                machine_id=machine, action="complete" if job_key is None else "start",
                job_key=job_key, requested_ns=requested_ns, requested_by=by)
                .returning(t.job_command.c.id)).scalar_one())

    def job_commands(self, *, pending: bool = False, command_id: int | None = None,
                     machine: str | None = None, limit: int = 100) -> list[Any]:
        """Job commands, oldest first: those not applied yet, one by id, or one
        machine's."""
        jc = t.job_command
        wanted = [col == value for col, value in ((jc.c.id, command_id),
                                                  (jc.c.machine_id, machine)) if value is not None]
        if pending:
            wanted.append(jc.c.applied_ns.is_(None))
        with self.engine.connect() as c:
            return list(c.execute(select(jc).where(*wanted).order_by(jc.c.id).limit(limit)))

    def timeline(self, window: Window, machines: Sequence[str]) -> Timeline:
        """The intervals, counts, orders, calendar windows and coverage of `machines` in
        `window`, as the data alone says: whoever asks, and whenever, gets the same.
        Each machine's open interval counts up to the end of its tolerated silence, and
        not past the shadow's own clock (the newest time any machine reached). With the
        window's intervals and counts come the earlier ones of each job counted in it
        (from its start on that machine), on which its parts' planned run time is laid."""
        si = t.state_interval
        with self.engine.connect() as c:
            intervals = self._intervals(c, machines, si.c.start_ns < window.end_ns,
                                        si.c.end_ns > window.start_ns)
            snaps = {m: json.loads(text) for m, text in c.execute(select(t.machine_state))}
            clock = max((int(snap["clock_ns"]) for snap in snaps.values()), default=0)
            intervals += self._with_codes(c, _open_intervals(snaps, machines, clock))
            pc = t.production_count
            counts = [Count(m, b, job or None, pq, gq, sq, rq) for m, b, job, pq, gq, sq, rq in
                      c.execute(select(pc).where(pc.c.machine_id.in_(machines),
                                                 pc.c.bucket_ns >= window.start_ns,
                                                 pc.c.bucket_ns < window.end_ns))]
            history = self._job_history(c, window, {(n.machine, n.job) for n in counts if n.job})
            intervals += history[0]
            counts += history[1]
            jobs = {i.job for i in intervals} | {n.job for n in counts}
            po = t.production_order
            orders = {key: OrderPlan(pru, qty, scrap) for key, pru, qty, scrap in c.execute(
                select(po.c.job_key, po.c.pru_s, po.c.planned_qty, po.c.planned_scrap_qty)
                .where(po.c.job_key.in_([j for j in jobs if j])))}
            found = c.execute(select(t.shift.c.start_ns, t.shift.c.end_ns)
                              .where(t.shift.c.start_ns < window.end_ns,
                                     t.shift.c.end_ns > window.start_ns)
                              .order_by(t.shift.c.start_ns)).all()
            ps = t.planned_stop
            stops: dict[str | None, list[Window]] = {}
            for m, start, end in c.execute(
                    select(ps.c.machine_id, ps.c.start_ns, ps.c.end_ns)
                    .where(ps.c.start_ns < window.end_ns, ps.c.end_ns > window.start_ns)):
                stops.setdefault(None if m == t.ALL_MACHINES else m, []).append(
                    Window(start, end))
            has_shifts = c.execute(select(func.count()).select_from(t.shift)).scalar_one() > 0
            coverage = self._coverage(c, machines, window, snaps)
        return Timeline(intervals, counts, orders,
                        [Window(s, e) for s, e in found] if has_shifts else None, stops,
                        coverage)

    def _intervals(self, c: Connection, machines: Sequence[str], *where: Any) -> list[Interval]:
        """Closed intervals of `machines`, with their reason code and raw reason, and
        the category and failure flag a reason code gives them."""
        si, rc = t.state_interval, t.reason_code
        rows = c.execute(
            select(si.c.machine_id, si.c.start_ns, si.c.end_ns, si.c.category, si.c.failure,
                   si.c.job_key, rc.c.category, rc.c.failure, si.c.reason_code,
                   si.c.reason_raw)
            .outerjoin(rc, rc.c.code == si.c.reason_code)
            .where(si.c.machine_id.in_(machines), *where))
        return [Interval(m, start, end, _category(r_cat or cat),
                         bool(r_fail) if r_cat is not None else bool(fail), job, code, raw)
                for m, start, end, cat, fail, job, r_cat, r_fail, code, raw in rows]

    def _job_history(self, c: Connection, window: Window,
                     jobs: set[tuple[str, str | None]]) -> tuple[list[Interval], list[Count]]:
        """Intervals and counts of each (machine, job) from the job's first start on that
        machine to the window's start."""
        si, pc, job = t.state_interval, t.production_count, t.job
        intervals: list[Interval] = []
        counts: list[Count] = []
        for machine, key in sorted(jobs, key=str):
            since = c.execute(select(func.min(job.c.start_ns)).where(
                job.c.machine_id == machine, job.c.job_key == key)).scalar()
            if since is None or since >= window.start_ns:
                continue
            intervals += self._intervals(c, [machine], si.c.job_key == key,
                                         si.c.start_ns >= since,
                                         si.c.end_ns <= window.start_ns)
            counts += [Count(m, b, k or None, pq, gq, sq, rq) for m, b, k, pq, gq, sq, rq in
                       c.execute(select(pc).where(pc.c.machine_id == machine,
                                                  pc.c.job_key == key,
                                                  pc.c.bucket_ns >= since - BUCKET_NS,
                                                  pc.c.bucket_ns < window.start_ns))]
        return intervals, counts

    def _coverage(self, c: Connection, machines: Sequence[str], window: Window,
                  snaps: Mapping[str, dict[str, Any]]) -> Coverage:
        """The data time the gateway's runs covered up to `window`'s end, and each
        machine's first reading (the start of its first interval)."""
        gr, si = t.gateway_run, t.state_interval
        runs = [Window(s, e) for s, e in c.execute(
            select(gr.c.start_ns, gr.c.end_ns).where(gr.c.start_ns < window.end_ns,
                                                     gr.c.end_ns > window.start_ns))]
        first = {m: since for m in machines
                 if (since := snaps.get(m, {}).get("since_ns")) is not None}
        for m, start in c.execute(select(si.c.machine_id, func.min(si.c.start_ns))
                                  .where(si.c.machine_id.in_(machines))
                                  .group_by(si.c.machine_id)):
            first[m] = min(start, first.get(m, start))
        return Coverage(runs, first)

    def _with_codes(self, c: Connection, found: list[Interval]) -> list[Interval]:
        """The reason code the machine gives an open stop sets its category and failure,
        as it will once the stop is closed and written."""
        rc = t.reason_code
        codes = {code: (category, failure) for code, category, failure in c.execute(
            select(rc.c.code, rc.c.category, rc.c.failure)
            .where(rc.c.code.in_({i.reason for i in found if i.reason})))}
        return [replace(i, category=Category(codes[i.reason][0]),
                        failure=bool(codes[i.reason][1]))
                if i.reason in codes else i for i in found]

    def upsert_shift_kpis(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as c:
                stmt = self._insert(t.shift_kpi)
                c.execute(stmt.on_conflict_do_update(
                    index_elements=["shift_id", "machine_id"],
                    set_={k: stmt.excluded[k] for k in rows[0]
                          if k not in ("shift_id", "machine_id")}), rows)

    def alerts(self, *, status: str | None, machines: Collection[str] | None,
               limit: int) -> list[Any]:
        """Drift alerts (of `machines`, or of every machine), newest first."""
        da = t.drift_alert
        query = select(da).where(*_of(da, machines)).order_by(da.c.detected_ns.desc()
                                                               ).limit(limit)
        if status is not None:
            query = query.where(da.c.status == status)
        with self.engine.connect() as c:
            return list(c.execute(query))

    def alert_status(self, alert_id: int, *,
                     machines: Collection[str] | None = None) -> str | None:
        """The alert's status, or None when there is no such alert (of `machines`)."""
        da = t.drift_alert
        with self.engine.connect() as c:
            found: str | None = c.execute(select(da.c.status).where(
                da.c.id == alert_id, *_of(da, machines))).scalar_one_or_none()
        return found

    def acknowledge_alert(self, alert_id: int, by: str, now_ns: int, *,
                          machines: Collection[str] | None = None) -> bool:
        da = t.drift_alert
        with self.engine.begin() as c:
            done = c.execute(update(da).where(da.c.id == alert_id, da.c.status == "open",
                                              *_of(da, machines))
                             .values(status="acknowledged", acknowledged_by=by,
                                     acknowledged_ns=now_ns))
            return done.rowcount == 1

    def close_alert(self, alert_id: int, by: str, cause: str, note: str | None,
                    now_ns: int, *, machines: Collection[str] | None = None) -> bool:
        """A person closes an alert with a cause; its episode ends now (or at its last
        alarm, if that is later: data time may be ahead of the clock in a replay)."""
        da = t.drift_alert
        with self.engine.begin() as c:
            done = c.execute(update(da).where(da.c.id == alert_id, da.c.status != "closed",
                                              *_of(da, machines))
                             .values(status="closed", closed_by=by, cause=cause, note=note,
                                     end_ns=case((da.c.last_alarm_ns > now_ns, da.c.last_alarm_ns),
                                                  else_=now_ns)))
            return done.rowcount == 1

    def orders(self, job_key: str | None = None) -> list[dict[str, Any]]:
        """Every production order (or the one of `job_key`) with the parts counted for
        its job key."""
        po, pc = t.production_order, t.production_count
        counted = (select(pc.c.job_key, func.sum(pc.c.pq).label("produced"),
                          func.sum(pc.c.gq).label("good"), func.sum(pc.c.sq).label("scrap"),
                          func.sum(pc.c.rq).label("rework"))
                   .group_by(pc.c.job_key).subquery())
        query = (select(po.c.job_key, po.c.order_no, po.c.operation, po.c.material,
                        po.c.planned_qty, po.c.pru_s, po.c.planned_scrap_qty,
                        po.c.machine_id.label("machine"), po.c.status, po.c.end_ns,
                        po.c.ended_by, po.c.end_reason,
                        *(func.coalesce(counted.c[k], 0).label(k)
                          for k in ("produced", "good", "scrap", "rework")))
                 .outerjoin(counted, counted.c.job_key == po.c.job_key)
                 .order_by(po.c.order_no, po.c.operation))
        if job_key is not None:
            query = query.where(po.c.job_key == job_key)
        with self.engine.connect() as c:
            return [dict(row._mapping) for row in c.execute(query)]

    def import_orders(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Creates or updates production orders by job key; returns how many."""
        rows = list(rows)
        if rows:
            with self.engine.begin() as c:
                stmt = self._insert(t.production_order)
                c.execute(stmt.on_conflict_do_update(
                    index_elements=["job_key"],
                    set_={k: stmt.excluded[k] for k in rows[0] if k != "job_key"}), rows)
                # An order imported once its job had started (an ERP a little late).
                jb, po = t.job, t.production_order
                c.execute(update(po).where(
                    po.c.status == "planned",
                    select(jb.c.id).where(jb.c.job_key == po.c.job_key,
                                          jb.c.end_ns.is_(None)).exists())
                    .values(status="running"))
        return len(rows)

    def intervals(self, machine: str, window: Window) -> list[dict[str, Any]]:
        """The machine's closed state intervals overlapping `window`, oldest first, with
        the category a reason code gives (else the machine's) and the reason."""
        si, rc = t.state_interval, t.reason_code
        query = (select(si.c.id, si.c.start_ns, si.c.end_ns, si.c.raw_state,
                        func.coalesce(rc.c.category, si.c.category).label("category"),
                        si.c.job_key.label("job"), si.c.reason_code.label("reason"),
                        si.c.reason_source, si.c.reason_raw)
                 .outerjoin(rc, rc.c.code == si.c.reason_code)
                 .where(si.c.machine_id == machine, si.c.start_ns < window.end_ns,
                        si.c.end_ns > window.start_ns)
                 .order_by(si.c.start_ns))
        with self.engine.connect() as c:
            return [dict(row._mapping) for row in c.execute(query)]

    def band_intervals(self, window: Window,
                       machines: Sequence[str]) -> tuple[dict[str, list[Segment]], Coverage]:
        """Each machine's state intervals overlapping `window`, oldest first, as band
        segments: the closed ones (as `intervals` gives them) and the open one, counted as
        the KPIs count it (`timeline`); with the coverage of the window."""
        found = {m: [Segment(row["start_ns"], row["end_ns"], "state",
                             _category(row["category"]), row["raw_state"], row["id"],
                             job=row["job"], reason=row["reason"],
                             reason_source=row["reason_source"], reason_raw=row["reason_raw"])
                     for row in self.intervals(m, window)] for m in machines}
        with self.engine.connect() as c:
            snaps = {m: json.loads(text) for m, text in c.execute(select(t.machine_state))}
            clock = max((int(snap["clock_ns"]) for snap in snaps.values()), default=0)
            for iv in self._with_codes(c, _open_intervals(snaps, machines, clock)):
                if iv.start_ns < window.end_ns and iv.end_ns > window.start_ns:
                    snap = snaps[iv.machine]
                    found[iv.machine].append(Segment(
                        iv.start_ns, iv.end_ns, "state", iv.category, snap["state"][0],
                        open=True, job=iv.job, reason=iv.reason,
                        reason_source="machine" if iv.reason else None,
                        reason_raw=snap.get("interval_reason")))
            coverage = self._coverage(c, machines, window, snaps)
        return found, coverage

    def reason_codes(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(row._mapping) for row in
                    c.execute(select(t.reason_code).order_by(t.reason_code.c.code))]

    def unexplained_downtime(self, window: Window | None, machines: Collection[str] | None,
                             limit: int) -> list[tuple[int, str, int, int, str, Category | None,
                                                       str | None]]:
        """Closed downtime intervals (ADET, ADOT or unclassified) with no reason code,
        oldest first: (id, machine, start_ns, end_ns, raw state, category, the raw reason
        the machine gave if any)."""
        si = t.state_interval
        query = (select(si.c.id, si.c.machine_id, si.c.start_ns, si.c.end_ns, si.c.raw_state,
                        si.c.category, si.c.reason_raw)
                 .where(si.c.reason_code.is_(None),
                        si.c.category.in_([Category.ADET, Category.ADOT])
                        | si.c.category.is_(None))
                 .where(*_of(si, machines)).order_by(si.c.start_ns).limit(limit))
        if window is not None:
            query = query.where(si.c.start_ns < window.end_ns, si.c.end_ns > window.start_ns)
        with self.engine.connect() as c:
            return [(i, m, s, e, raw, _category(cat), why)
                    for i, m, s, e, raw, cat, why in c.execute(query)]

    def assign_reason(self, interval_id: int, code: str, *,
                      machines: Collection[str] | None = None) -> bool:
        """Gives a downtime interval (ADET, ADOT or unclassified) a reason code; False if
        there is no such downtime interval (of `machines`)."""
        si = t.state_interval
        downtime = (si.c.category.in_([Category.ADET, Category.ADOT]) | si.c.category.is_(None))
        with self.engine.begin() as c:
            done = c.execute(update(si).where(and_(si.c.id == interval_id, downtime),
                                              *_of(si, machines))
                             .values(reason_code=code, reason_source="operator"))
            return done.rowcount == 1

    def unknown_reasons(self) -> list[tuple[str, str, int, int, int]]:
        """Raw stop reasons machines gave that are no reason code, on stops no person
        explained since: (machine, raw reason, stops, total ns, first start_ns)."""
        si = t.state_interval
        query = (select(si.c.machine_id, si.c.reason_raw, func.count(),
                        func.sum(si.c.end_ns - si.c.start_ns), func.min(si.c.start_ns))
                 .where(si.c.reason_raw.is_not(None), si.c.reason_code.is_(None))
                 .group_by(si.c.machine_id, si.c.reason_raw)
                 .order_by(si.c.machine_id, si.c.reason_raw))
        with self.engine.connect() as c:
            return [(m, raw, n, int(total), int(first)) for m, raw, n, total, first
                    in c.execute(query)]

    def import_reason_codes(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Creates or updates reason codes (code, text, category, failure); returns how
        many."""
        with self.engine.begin() as c:
            self._upsert_codes(c, rows)
        return len(rows)

    def _upsert_codes(self, c: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            stmt = self._insert(t.reason_code)
            c.execute(stmt.on_conflict_do_update(
                index_elements=["code"],
                set_={k: stmt.excluded[k] for k in ("text", "category", "failure")}),
                list(rows))


def _open_intervals(snaps: Mapping[str, dict[str, Any]], machines: Sequence[str],
                    clock_ns: int) -> list[Interval]:
    """Each machine's open interval, up to the end of its tolerated silence and not past
    `clock_ns`, the shadow's own clock (the newest time any machine reached)."""
    found = []
    for m in machines:
        snap = snaps.get(m)
        if snap is None or snap["since_ns"] is None or snap["last_seen_ns"] is None \
                or snap["silent"]:
            continue
        since = snap["since_ns"]
        end = min(snap["last_seen_ns"] + int(snap["silence_ns"]), clock_ns)
        if end > since:
            _, category, failure, _ = snap["state"]
            found.append(Interval(m, since, end, Category.PDOT if snap["planned"]
                                  else _category(category), failure, snap["interval_job"],
                                  snap.get("interval_reason_code"), snap.get("interval_reason")))
    return found


def _text(reason: str | None) -> str | None:
    return None if reason is None else reason[:200]


def _of(table: Table, machines: Collection[str] | None) -> list[ColumnElement[bool]]:
    """The WHERE clause keeping the rows of `machines` (none: every machine's)."""
    return [] if machines is None else [table.c.machine_id.in_(machines)]


def _category(value: str | None) -> Category | None:
    return None if value is None else Category(value)


def _row(eid: str, parent: str | None, level: str, name: str | None, *,
         kind: str | None = None, connection: str | None = None) -> dict[str, Any]:
    return {"id": eid, "parent_id": parent, "level": level, "name": name, "type": kind,
            "connection": connection}


def _equipment(config: ShadowedConfig) -> Iterable[dict[str, Any]]:
    """The ISA-95 hierarchy as equipment rows: sites, areas and lines by path, machines
    by their (plant-unique) id, with the sources that feed them."""
    feeds: dict[str, list[str]] = {}
    everything = [m.id for m in config.machines()]
    for source in config.sources:
        fed = source.fed_machines()
        for machine in sorted(everything if fed is None else fed):
            feeds.setdefault(machine, []).append(f"{source.type}:{source.name}")
    for site in config.sites:
        yield _row(site.id, None, "site", site.name)
        groups: list[tuple[str, list[LineConfig[ShadowMachineConfig]]]] = [
            (site.id, site.lines)]
        for area in site.areas:
            yield _row(f"{site.id}/{area.id}", site.id, "area", area.name)
            groups.append((f"{site.id}/{area.id}", area.lines))
        for parent, lines in groups:
            for line in lines:
                line_id = f"{parent}/{line.id}"
                yield _row(line_id, parent, "line", line.name)
                for m in line.machines:
                    yield _row(m.id, line_id, "machine", m.name, kind=m.type,
                               connection=", ".join(feeds.get(m.id, [])) or None)
