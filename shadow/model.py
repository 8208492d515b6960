"""The live model of every machine: state and ISO 22400 category, current job, part
counts and last signal values. Pure code: it takes the gateway's batches and events,
changes itself, and returns what the tables must record. It never does I/O.

Time is each machine's own: readings are taken in timestamp order per machine, a
reading not newer than the last one of its signal is a duplicate (a redelivered batch,
a QoS 1 message sent twice) and is skipped and not counted, and a state change never
goes back before the open interval's start. So applying the same input twice changes
nothing the second time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.types import (
    OFFLINE_EVENT,
    Batch,
    Event,
    EventValue,
    Int64Array,
    Quality,
    SignalRegistry,
)
from shadow.config import CYCLE_TIME, ShadowMachineConfig, signal_references
from shadow.counting import CounterTrack
from shadow.states import NO_STATE, UNKNOWN, SignalValue, State, as_text, evaluate
from shadow.timeline import BUCKET_NS, HOUR_NS, NS_PER_S, Category, Interval

BAD = int(Quality.BAD)  # an int: testing an IntFlag member costs an enum call per reading
PlannedCheck = Callable[[str, int], bool]  # (machine, t) -> inside a planned stop
Boundaries = Callable[[str, int, int], list[int]]  # planned-stop edges in (a, b]
PlannedQty = Callable[[str], int | None]  # job key -> its order's planned quantity
Held = tuple[int, str, EventValue, int, bool]  # ts, signal, value, quality, is a number
MAX_HELD = 20_000  # readings one machine may have set aside (reorder_s); more: none


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job's start (end_ns None) or end, with what ended it: the job "signal", a
    person's "command" or the planned "quantity", and why in words."""

    machine: str
    job: str
    start_ns: int
    end_ns: int | None  # None: still running
    ended_by: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    machine: str
    signal: str
    ts_ns: int
    value: float
    reason: str


@dataclass(frozen=True, slots=True)
class Derived:
    """A reading the model computes, such as the cycle time, with the quality of the
    reading it came from."""

    machine: str
    signal: str
    ts_ns: int
    value: float
    quality: int


@dataclass(slots=True)
class Changes:
    """What one call changed, for the tables: closed intervals with their raw state,
    count increments per (machine, minute, job) as [pq, gq, sq, rq], job starts and
    ends, rejected counter readings, derived readings (cycle times), the machines
    whose snapshot changed, and the readings taken per (machine, signal, hour start),
    duplicates left out."""

    intervals: list[tuple[Interval, str]] = field(default_factory=list)
    counts: dict[tuple[str, int, str | None], list[int]] = field(default_factory=dict)
    jobs: list[JobRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    derived: list[Derived] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    readings: Counter[tuple[str, str, int]] = field(default_factory=Counter)


@dataclass(slots=True)
class Machine:
    """One machine's live state; `snapshot` and `restore` carry it across restarts."""

    config: ShadowMachineConfig
    state: State = NO_STATE
    planned: bool = False
    job: str | None = None
    since_ns: int | None = None  # start of the open interval
    interval_job: str | None = None  # the job of the open interval
    job_since_ns: int | None = None
    job_input: str | None = None  # the job signal's last good value
    clock_ns: int = 0  # the latest time this machine's timeline has reached
    last_seen_ns: int | None = None
    # The plant's clock when its backlog last came (its readings more than silence_s
    # behind it), 0 once current: a machine sending a backlog is not silent.
    heard_ns: int = 0
    silent: bool = False
    cycle_from_ns: int | None = None  # the last part counted in the current production
    counters: dict[str, CounterTrack] = field(default_factory=dict)
    job_counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # pq, gq, sq, rq
    values: dict[str, tuple[int, SignalValue, int]] = field(default_factory=dict)
    inputs: dict[str, SignalValue] = field(default_factory=dict)  # last good state inputs
    reason: str | None = None  # the raw stop reason the machine gives now
    interval_reason: str | None = None  # the raw stop reason of the open interval
    held: list[Held] = field(default_factory=list)  # set aside for its backlog (reorder_s)
    # While readings are held: the newest reading before its return (the backlog's
    # front), and the plant's clock when that front last moved (0: not since the return).
    held_front_ns: int = 0
    held_moved_ns: int = 0

    @property
    def category(self) -> Category | None:
        return Category.PDOT if self.planned else self.state.category


    def online(self, now_ns: int) -> bool:
        return (self.last_seen_ns is not None and not self.silent
                and now_ns - self.last_seen_ns <= self.config.silence_s * NS_PER_S)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": [self.state.raw, self.state.category, self.state.failure,
                      self.state.mapped],
            "planned": self.planned, "job": self.job, "since_ns": self.since_ns,
            "interval_job": self.interval_job, "job_since_ns": self.job_since_ns,
            "job_input": self.job_input, "clock_ns": self.clock_ns,
            "last_seen_ns": self.last_seen_ns, "heard_ns": self.heard_ns,
            "silent": self.silent, "job_counts": self.job_counts,
            "cycle_from_ns": self.cycle_from_ns,
            "silence_ns": int(self.config.silence_s * NS_PER_S),  # read by shadow.store
            "counters": {k: [c.last, c.pending] for k, c in self.counters.items()},
            "values": {k: list(v) for k, v in self.values.items()}, "inputs": self.inputs,
            "reason": self.reason, "interval_reason": self.interval_reason,
            "interval_reason_code": self.reason_code(self.interval_reason),  # read by the store
            "held": [list(h) for h in self.held], "held_front_ns": self.held_front_ns,
            "held_moved_ns": self.held_moved_ns,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        raw, category, failure, mapped = snap["state"]
        self.state = State(raw, None if category is None else Category(category), failure,
                           mapped)
        self.planned, self.job, self.since_ns = snap["planned"], snap["job"], snap["since_ns"]
        self.interval_job, self.job_since_ns = snap["interval_job"], snap["job_since_ns"]
        self.job_input = snap.get("job_input", self.job)  # older snapshots have none
        self.clock_ns, self.last_seen_ns = snap["clock_ns"], snap["last_seen_ns"]
        self.heard_ns = snap.get("heard_ns", 0)  # absent from older snapshots
        self.silent, self.job_counts = snap["silent"], list(snap["job_counts"])
        self.cycle_from_ns = snap["cycle_from_ns"]
        self.counters = {k: CounterTrack(last, pending)
                         for k, (last, pending) in snap["counters"].items()}
        self.values = {k: (ts, v, q) for k, (ts, v, q) in snap["values"].items()}
        self.inputs = dict(snap["inputs"])
        self.reason = snap.get("reason")  # absent from snapshots before machine reasons
        self.interval_reason = snap.get("interval_reason")
        self.held = [(ts, sig, v, q, num) for ts, sig, v, q, num in snap.get("held", [])]
        self.held_front_ns = snap.get("held_front_ns", 0)  # absent from older snapshots
        self.held_moved_ns = snap.get("held_moved_ns", 0)

    def reason_code(self, raw: str | None) -> str | None:
        """The reason code a raw stop reason stands for: its map's, or the raw text."""
        config = self.config.reason
        if raw is None or config is None:
            return None
        return config.map.get(raw, raw)

    @property
    def stopped(self) -> bool:
        """In a stop a reason may explain: ADET or ADOT."""
        return self.category in (Category.ADET, Category.ADOT)

    def take_reason(self, value: SignalValue, t: int) -> None:
        """The machine's reason signal changed at t: it is the reason in force, and the
        open stop's if it arrived within grace_s of the stop's start. An empty text or
        a raw value mapped to null is no reason."""
        assert self.config.reason is not None  # a reason role exists only with its config
        mapping = self.config.reason.map
        raw = None if value is None or value == "" else as_text(value)
        if raw in mapping and mapping[raw] is None:
            raw = None
        self.reason = raw
        grace_ns = int(self.config.reason.grace_s * NS_PER_S)
        if (raw is not None and self.since_ns is not None and self.stopped
                and t - self.since_ns <= grace_ns):
            self.interval_reason = raw


class ShadowModel:
    """Every machine of the plant. `apply` takes what the gateway delivered, `advance`
    moves the clock (silence, planned-stop edges) when nothing arrives."""

    def __init__(self, machines: Sequence[ShadowMachineConfig], registry: SignalRegistry,
                 planned: PlannedCheck, boundaries: Boundaries,
                 planned_qty: PlannedQty = lambda _job: None) -> None:
        """`planned_qty` is asked, for a machine with `complete_at_planned_qty`, at each
        part it counts for a job."""
        self.machines = {m.id: Machine(m) for m in machines}
        self._registry = registry
        self._planned = planned
        self._boundaries = boundaries
        self._planned_qty = planned_qty
        names = [m.id for m in machines]
        index = {name: i for i, name in enumerate(names)}
        self._names, self._index = names, index
        self._machine_of = np.array([index.get(info.machine, -1) for info in registry],
                                    np.int64)
        self._silence_ns = np.array([int(m.silence_s * NS_PER_S) for m in machines], np.int64)
        self._reorder_ns = np.array([int(m.reorder_s * NS_PER_S) for m in machines], np.int64)
        self._roles: list[dict[str, tuple[str, ...]]] = [_roles(m) for m in machines]
        relevant = [info.signal in self._roles[index[info.machine]]
                    if info.machine in index else False for info in registry]
        self._relevant = np.array(relevant, bool)

    def clock_ns(self) -> int:
        """The latest time any machine's timeline has reached (0 before any reading)."""
        return max((m.clock_ns for m in self.machines.values()), default=0)

    def apply(self, batch: Batch, events: Sequence[Event]) -> Changes:
        """Takes readings and events in time order per machine. A source's OFFLINE_EVENT
        makes its machine unknown from its time, as a silence does: what came before it
        is applied first, then it, then the rest."""
        changes = Changes()
        if self._reorder_ns.any():
            batch, events = self._hold(batch, events, changes)
        deaths = sorted((e for e in events if e.name == OFFLINE_EVENT
                         and e.machine in self.machines), key=lambda e: e.ts_ns)
        for death in deaths:
            before = batch.ts_ns <= death.ts_ns
            self._apply(batch.rows(before), [e for e in events if e.ts_ns <= death.ts_ns
                                               and e.name != OFFLINE_EVENT], changes)
            batch, events = batch.rows(~before), [e for e in events if e.ts_ns > death.ts_ns]
            self._go_offline(self.machines[death.machine], death.ts_ns, changes)
        self._apply(batch, [e for e in events if e.name != OFFLINE_EVENT], changes)
        return changes

    def _apply(self, batch: Batch, events: Sequence[Event], changes: Changes) -> None:
        ev_ids = [self._registry.id_of(e.machine, e.name) for e in events]
        known = [i for i, sid in enumerate(ev_ids) if sid is not None]
        ts = np.concatenate([batch.ts_ns, np.array([events[i].ts_ns for i in known], np.int64)])
        sid = np.concatenate([batch.signal_id.astype(np.int64),
                              np.array([ev_ids[i] for i in known], np.int64)])
        machine = self._machine_of[sid] if len(sid) else np.empty(0, np.int64)
        keep = machine >= 0
        rows = np.flatnonzero(keep)[np.lexsort((ts[keep], machine[keep]))]
        if not len(rows):
            return
        m_sorted, ts_sorted = machine[rows], ts[rows]
        first = np.r_[True, m_sorted[1:] != m_sorted[:-1]]
        last = np.r_[m_sorted[1:] != m_sorted[:-1], True]
        prev, gap = self._gaps(m_sorted, ts_sorted, first)
        # Heard: a machine whose new readings (not a redelivery) are behind the plant's
        # clock before this batch by more than its silence_s, a backlog catching up, at
        # that clock; 0 once it is current (a batch of a replay may span hours).
        plant = self.clock_ns()
        for j in np.flatnonzero(last).tolist():
            mid = int(m_sorted[j])
            m, newest = self.machines[self._names[mid]], int(ts_sorted[j])
            if m.last_seen_ns is None or newest > m.last_seen_ns:
                m.heard_ns = plant if plant - newest > self._silence_ns[mid] else 0
        # Each machine's first and last reading move its clock (first ever: its first
        # interval starts there), whatever signal they are of.
        selected = self._relevant[sid[rows]] | gap | first | last
        by_signal = rows[np.lexsort((ts[rows], sid[rows]))]  # (signal, ts) order
        self._count_new(ts, sid, by_signal, changes)
        self._update_values(batch, events, known, ts=ts, sid=sid, by_signal=by_signal)
        n = len(batch)
        for j in np.flatnonzero(selected).tolist():
            r = int(rows[j])
            mid = int(m_sorted[j])
            m = self.machines[self._names[mid]]
            changes.touched.add(m.config.id)
            if gap[j]:
                self._go_silent(m, int(prev[j]) + int(self._silence_ns[mid]), changes)
            t = max(int(ts_sorted[j]), m.clock_ns)
            self._cross_planned(m, t, changes)
            m.clock_ns = t
            dirty = m.silent or m.since_ns is None  # back from silence, or the first reading
            m.silent = False
            signal = self._registry.info(int(sid[r])).signal
            roles = self._roles[mid].get(signal)
            if roles is not None:
                if r < n:
                    value: SignalValue = float(batch.value[r])
                    quality = int(batch.quality[r])
                else:
                    event = events[known[r - n]]
                    value, quality = event.value, event.quality
                reading = (signal, int(ts_sorted[j]), value, quality)
                dirty = self._take(m, roles, reading, t, changes) or dirty
            if dirty:
                self._reevaluate(m, t, changes)
            if last[j]:
                m.last_seen_ns = max(m.last_seen_ns or 0, int(ts_sorted[j]))
        if len(ts):
            self.advance(int(ts.max()), changes)

    def advance(self, now_ns: int, changes: Changes | None = None) -> Changes:
        """Marks machines silent longer than their `silence_s` as unknown (from the end
        of the tolerated silence) and applies planned-stop edges up to `now_ns`. A machine
        is silent when nothing came from it for `silence_s` of the plant's time: its
        backlog, coming behind the plant's clock, keeps it heard while it catches up.

        A silent machine's clock stays where its silence began: its readings may only
        be late (a link down, their backlog to come), and when they come they are
        applied at their own times, the planned-stop edges in between too. Moving its
        clock with the rest of the plant would fold that backlog into the moment it
        arrives and count the whole outage as unknown."""
        changes = changes if changes is not None else Changes()
        for m in self.machines.values():
            if m.last_seen_ns is None:
                continue
            silence_ns = int(m.config.silence_s * NS_PER_S)
            silence_end = m.last_seen_ns + silence_ns
            if not m.silent and now_ns > max(silence_end, m.heard_ns + silence_ns):
                self._go_silent(m, silence_end, changes)
            if not m.silent and self._cross_planned(m, now_ns, changes):
                changes.touched.add(m.config.id)
        return changes

    def command_job(self, machine: str, job: str | None, requested_ns: int,
                    changes: Changes) -> str | None:
        """A person starts `job` on `machine`, or completes its job (None), as a job
        signal would; returns the job that ended (if any). It takes effect at
        `requested_ns` held between the machine's clock (its timeline never goes back)
        and the newest reading of the plant (a wall clock never runs a replay ahead)."""
        m = self.machines[machine]
        ended = m.job
        plant = self.clock_ns() or requested_ns
        t = max(m.clock_ns, min(requested_ns, plant))
        self._cross_planned(m, t, changes)
        m.clock_ns = t
        changes.touched.add(machine)
        self._set_job(m, t, job, changes, ended_by="command",
                      reason=f"{job} started by hand" if job else "completed by hand")
        if m.since_ns is not None:
            self._reevaluate(m, t, changes)
        return ended if ended != job else None

    def _seen(self, name: str) -> int:
        seen = self.machines[name].last_seen_ns
        return np.iinfo(np.int64).min if seen is None else seen

    def _gaps(self, m_sorted: Int64Array, ts_sorted: Int64Array, first: npt.NDArray[np.bool_]
              ) -> tuple[Int64Array, npt.NDArray[np.bool_]]:
        """Of rows sorted by (machine, ts), with `first` marking each machine's first: the
        previous reading of each row's machine, and whether a gap longer than the machine's
        silence_s lies before the row (from that previous reading, or the machine's last
        one before: readings not newer than it were seen before, a redelivery, and make no
        gap)."""
        seen = np.array([self._seen(self._names[i]) for i in m_sorted[first]], np.int64)
        seen_row = np.repeat(seen, np.diff(np.r_[np.flatnonzero(first), len(m_sorted)]))
        prev = np.maximum(np.r_[0, ts_sorted[:-1]], seen_row)
        prev[first] = seen
        gap = (prev != np.iinfo(np.int64).min) & (ts_sorted - prev > self._silence_ns[m_sorted])
        return prev, gap

    def _held_row(self, batch: Batch, events: Sequence[Event], i: int) -> Held:
        """Row `i` of the batch then the events, as it is set aside."""
        if i < len(batch):
            return (int(batch.ts_ns[i]), self._registry.info(int(batch.signal_id[i])).signal,
                    float(batch.value[i]), int(batch.quality[i]), True)
        e = events[i - len(batch)]
        return e.ts_ns, e.name, e.value, e.quality, False

    def _hold(self, batch: Batch, events: Sequence[Event], changes: Changes
              ) -> tuple[Batch, list[Event]]:
        """What a machine with a `reorder_s` sent since it came back from a silence is set
        aside, and taken again with each later batch, until the readings it sent before
        (its backlog) fill the silence, or the plant's data time is reorder_s past its
        return and past the last time its backlog moved on. A device can send its backlog
        after newer readings: paho, reconnecting, sends what it is given before its
        connection is acknowledged, and its backlog after. Applied as it came, that
        backlog would fold into the moment the machine came back, with its parts and
        none of its running time. The wait goes on while the backlog comes, however slowly
        (a long outage, a loaded broker), and ends reorder_s after it stopped coming."""
        again = [(name, h) for name, m in self.machines.items() for h in m.held]
        if again:
            for m in self.machines.values():
                m.held = []
            numbers = [(ts, sid, float(v), q) for name, (ts, sig, v, q, number) in again
                       if number and isinstance(v, float | int)
                       and (sid := self._registry.id_of(name, sig)) is not None]
            batch = Batch(
                np.r_[batch.ts_ns, np.array([r[0] for r in numbers], np.int64)],
                np.r_[batch.signal_id, np.array([r[1] for r in numbers], np.int32)],
                np.r_[batch.value, np.array([r[2] for r in numbers], np.float64)],
                np.r_[batch.quality, np.array([r[3] for r in numbers], np.uint8)])
            events = [*events, *(Event(ts, name, sig, v, q)
                                 for name, (ts, sig, v, q, number) in again if not number)]
        n = len(batch)
        machine = np.r_[self._machine_of[batch.signal_id],
                        np.array([self._index.get(e.machine, -1) for e in events], np.int64)]
        ts = np.r_[batch.ts_ns, np.array([e.ts_ns for e in events], np.int64)]
        waits = (machine >= 0) & (self._reorder_ns[machine] > 0)
        keep = np.ones(len(ts), bool)
        if waits.any():
            now = max(self.clock_ns(), int(ts.max()))
            rows = np.flatnonzero(waits)[np.lexsort((ts[waits], machine[waits]))]
            m_sorted, ts_sorted = machine[rows], ts[rows]
            prev, gap = self._gaps(m_sorted, ts_sorted,
                                   np.r_[True, m_sorted[1:] != m_sorted[:-1]])
            for mid in np.unique(m_sorted[gap]).tolist():
                first = np.flatnonzero(gap & (m_sorted == mid))[0]
                back, front = int(ts_sorted[first]), int(prev[first])  # return, backlog's front
                m = self.machines[self._names[mid]]
                if m.held_front_ns and front > m.held_front_ns:
                    m.held_moved_ns = now
                m.held_front_ns = front
                aside = (machine == mid) & (ts >= back)
                if (now < max(back, m.held_moved_ns) + int(self._reorder_ns[mid])
                        and aside.sum() <= MAX_HELD):
                    keep &= ~aside
                    m.held = [self._held_row(batch, events, i)
                              for i in np.flatnonzero(aside).tolist()]
                    changes.touched.add(m.config.id)
        for m in self.machines.values():
            if not m.held:
                m.held_front_ns = m.held_moved_ns = 0
        if keep.all():
            return batch, list(events)
        return batch.rows(keep[:n]), [e for e, k in zip(events, keep[n:], strict=True) if k]

    def _count_new(self, ts: Int64Array, sid: Int64Array, by_signal: Int64Array,
                   changes: Changes) -> None:
        """Counts the rows `by_signal` (in (signal, ts) order) per (machine, signal, hour
        start), each reading once: one not newer than its signal's last value, or the
        same twice in this batch, is a redelivery and is left out (as _take and
        _update_values leave it)."""
        s, x = sid[by_signal], ts[by_signal]
        first = np.r_[True, s[1:] != s[:-1]]
        lasts = []
        for signal_id in s[first].tolist():
            info = self._registry.info(signal_id)
            old = self.machines[info.machine].values.get(info.signal)
            lasts.append(np.iinfo(np.int64).min if old is None else old[0])
        floor = np.repeat(np.array(lasts, np.int64),
                          np.diff(np.r_[np.flatnonzero(first), len(s)]))
        new = (x > floor) & (first | (x != np.r_[0, x[:-1]]))
        if not new.any():
            return
        hours = x[new] // HOUR_NS
        start, width = int(hours.min()), len(self._registry)
        keys, n = np.unique((hours - start) * width + s[new], return_counts=True)
        for key, k in zip(keys.tolist(), n.tolist(), strict=True):
            hour, signal_id = divmod(key, width)
            info = self._registry.info(signal_id)
            changes.readings[info.machine, info.signal, (start + hour) * HOUR_NS] += k

    def _update_values(self, batch: Batch, events: Sequence[Event], known: list[int], *,
                       ts: Int64Array, sid: Int64Array, by_signal: Int64Array) -> None:
        """Last value of every signal the state does not depend on, in bulk: the last
        row per signal of `by_signal` (the rows in (signal, ts) order)."""
        order = by_signal[~self._relevant[sid[by_signal]]]
        if not len(order):
            return
        ends = np.r_[sid[order][1:] != sid[order][:-1], True]
        n = len(batch)
        for r in order[ends].tolist():
            info = self._registry.info(int(sid[r]))
            m = self.machines[info.machine]
            old = m.values.get(info.signal)
            if old is not None and old[0] >= ts[r]:
                continue
            if r < n:
                m.values[info.signal] = (int(ts[r]), float(batch.value[r]), int(batch.quality[r]))
            else:
                e = events[known[r - n]]
                m.values[info.signal] = (e.ts_ns, e.value, e.quality)

    def _take(self, m: Machine, roles: tuple[str, ...],
              reading: tuple[str, int, SignalValue, int], t: int, changes: Changes) -> bool:
        """One reading of a signal the state, job or counts depend on, taken at time t;
        True if the state may have changed. A bad reading is kept as the signal's last
        value but used for nothing: the state goes on from the last good one."""
        signal, ts, value, quality = reading
        old = m.values.get(signal)
        if old is not None and old[0] >= ts:
            return False
        m.values[signal] = (ts, value, quality)
        if quality & BAD:
            return False
        dirty = False
        for role in roles:
            if role == "state":
                dirty = dirty or signal not in m.inputs or m.inputs[signal] != value
                m.inputs[signal] = value
            elif role == "reason":
                m.take_reason(value, t)
            elif role == "job":
                # Only a change of the signal starts or ends a job: a job ended by its
                # planned quantity stays ended while the signal still names it.
                job = None if value in (None, "") else str(value)
                if job != m.job_input:
                    m.job_input = job
                    dirty = dirty or job != m.job
                    self._set_job(m, t, job, changes, ended_by="signal", reason=(
                        f"job signal changed to {job}" if job else "job signal cleared"))
            elif isinstance(value, float | int):
                dirty = self._count(m, role.removeprefix("counter:"),
                                    (signal, float(value), quality), t, changes) or dirty
        return dirty

    def _set_job(self, m: Machine, t: int, job: str | None, changes: Changes, *,
                 ended_by: str, reason: str) -> None:
        """Ends the machine's job (if any, with what ended it and why) and starts `job`."""
        if job == m.job:
            return
        if m.job is not None and m.job_since_ns is not None:
            changes.jobs.append(JobRecord(m.config.id, m.job, m.job_since_ns, t, ended_by,
                                          reason))
        m.job, m.job_since_ns, m.job_counts = job, t if job else None, [0, 0, 0, 0]
        if job is not None:
            changes.jobs.append(JobRecord(m.config.id, job, t, None))

    def _count(self, m: Machine, kind: str, reading: tuple[str, float, int], t: int,
               changes: Changes) -> bool:
        """Counts a counter reading's parts; True if they completed the job (its order's
        planned quantity produced, on a machine with `complete_at_planned_qty`)."""
        signal, value, quality = reading
        counters = m.config.counters
        assert counters is not None  # a counter role exists only with a counters config
        delta, reason = m.counters.setdefault(kind, CounterTrack()).step(value,
                                                                          counters.max_step)
        if reason is not None:
            changes.rejected.append(Rejected(m.config.id, signal, t, value, reason))
        if not delta:
            return False
        # [pq, gq, sq, rq]: scrap and rework add to the parts produced when counted
        # beside a good counter, and take from the good ones when counted in a total.
        add = {"total": [delta, delta, 0, 0], "good": [delta, delta, 0, 0],
               "scrap": [0, -delta, delta, 0], "rework": [0, -delta, 0, delta]}[kind]
        if counters.good is not None and kind in ("scrap", "rework"):
            add[0], add[1] = delta, 0
        key = (m.config.id, t - t % BUCKET_NS, m.job)
        bucket = changes.counts.setdefault(key, [0, 0, 0, 0])
        for i, x in enumerate(add):
            bucket[i] += x
            m.job_counts[i] += x
        if kind in ("total", "good"):
            self._cycle(m, t, delta, quality, changes)
        if not m.config.complete_at_planned_qty or m.job is None:
            return False
        planned = self._planned_qty(m.job)
        if not planned or m.job_counts[0] < planned:  # no order, or none to make
            return False
        self._set_job(m, t, None, changes, ended_by="quantity",
                      reason=f"planned quantity {planned} produced")
        return True

    def _cycle(self, m: Machine, t: int, parts: int, quality: int, changes: Changes) -> None:
        """The derived cycle time: seconds per part between two increments of the part
        counter within one stretch of production (APT), so no stop counts as a cycle."""
        if m.category is Category.APT and m.cycle_from_ns is not None and t > m.cycle_from_ns:
            changes.derived.append(Derived(m.config.id, CYCLE_TIME, t,
                                           (t - m.cycle_from_ns) / NS_PER_S / parts, quality))
        m.cycle_from_ns = t if m.category is Category.APT else None

    def _cross_planned(self, m: Machine, t: int, changes: Changes) -> bool:
        """Applies every planned-stop edge in (clock, t]; True if there was one."""
        edges = self._boundaries(m.config.id, m.clock_ns, t) if m.since_ns is not None else []
        for edge in edges:
            m.clock_ns = edge
            self._reevaluate(m, edge, changes)
        return bool(edges)

    def _go_offline(self, m: Machine, at: int, changes: Changes) -> None:
        """A source said the machine went offline at `at`; a reading seen since (the
        word redelivered) or a machine already silent changes nothing."""
        if m.last_seen_ns is None or m.silent or at < m.last_seen_ns:
            return
        self._go_silent(m, at, changes)

    def _go_silent(self, m: Machine, at: int, changes: Changes) -> None:
        at = max(at, m.clock_ns)
        self._cross_planned(m, at, changes)
        m.clock_ns, m.silent = at, True
        changes.touched.add(m.config.id)
        self._reevaluate(m, at, changes)

    def _reevaluate(self, m: Machine, t: int, changes: Changes) -> None:
        state = UNKNOWN if m.silent else evaluate(m.config.state, m.inputs,
                                                  m.job is not None)
        planned = self._planned(m.config.id, t)
        same = (state, planned, m.job) == (m.state, m.planned, m.interval_job)
        if same and m.since_ns is not None:
            return
        if m.since_ns is not None and t > m.since_ns:
            interval = Interval(m.config.id, m.since_ns, t, m.category, m.state.failure,
                                m.interval_job, m.reason_code(m.interval_reason),
                                m.interval_reason)
            changes.intervals.append((interval, m.state.raw))
        if m.since_ns is None or t > m.since_ns:
            m.since_ns = t
        m.state, m.planned, m.interval_job = state, planned, m.job
        m.interval_reason = m.reason if m.stopped else None
        m.cycle_from_ns = None  # a cycle never spans a change of state


def _roles(machine: ShadowMachineConfig) -> dict[str, tuple[str, ...]]:
    """Signal name -> its roles for the shadow: "state", "job", "reason",
    "counter:<kind>"."""
    roles: dict[str, list[str]] = {}
    for _, name, _ in signal_references(machine.state, None, None):
        roles.setdefault(name, []).append("state")
    if machine.counters is not None:
        for kind, name in machine.counters.signals().items():
            roles.setdefault(name, []).append(f"counter:{kind}")
    if machine.job_signal is not None:
        roles.setdefault(machine.job_signal, []).append("job")
    if machine.reason is not None:
        roles.setdefault(machine.reason.signal, []).append("reason")
    return {name: tuple(found) for name, found in roles.items()}
