"""Embedded time-series store on SQLite (its sink is connectors/sqlite_sink.py).

A write appends one `write_log` row per 10-minute block it touches and, per series, one
`chunk` row of packed arrays with rowid `w << 24 | series id`: both tables grow at
their end and no per-series index is touched. A read looks the series up in every
write overlapping the range, sorts by time and keeps the last written reading of each
timestamp, so a replayed write is harmless. `compact` merges the chunks of closed
blocks into sorted, deduplicated pieces, found through a few `write_log` rows shared by
all series of a block, once the block is also quiet (not written for a while: a block
still being written, by late data or a replayed backlog, would be merged whole again
after every write); `delete_before` enforces retention."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import orjson

from gateway.storage import limit_writes
from gateway.types import Event, Float64Array, Int64Array, UInt8Array

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BLOCK_NS = 600 * 10**9  # no chunk crosses a block; compaction works per (series, block)
MAX_CHUNK = 1 << 16  # readings per compacted piece (~1.1 MB)
MAINTENANCE_BUDGET_S = 0.05  # per retention or compaction step
_DROP_GROUP = 16  # writes deleted per statement batch
_BITS = 24  # series ids per write
_MAX_RECENT = 100_000  # blocks remembered as recently written; more: forgotten, all quiet
_INT64_MAX = 2**63 - 1

Columns = tuple[Int64Array, Float64Array, UInt8Array]
_Chunk = tuple[int, int, bytes, bytes, bytes | None]  # w, n, ts, value, quality

_SCHEMA = """
CREATE TABLE series(id INTEGER PRIMARY KEY, machine TEXT NOT NULL, signal TEXT NOT NULL,
    unit TEXT, UNIQUE(machine, signal));
CREATE TABLE write_log(w INTEGER PRIMARY KEY, t_min_ns INTEGER NOT NULL,
    t_max_ns INTEGER NOT NULL, piece INTEGER);  -- piece: NULL for a write
CREATE INDEX write_log_t ON write_log(t_max_ns);
CREATE TABLE chunk(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, ts BLOB NOT NULL,
    value BLOB NOT NULL, quality BLOB);  -- id = w << 24 | series id; quality NULL: all 0
CREATE TABLE dirty(block INTEGER NOT NULL, series_id INTEGER NOT NULL,
    PRIMARY KEY(block, series_id)) WITHOUT ROWID;  -- written since last compacted
CREATE TABLE events(ts_ns INTEGER NOT NULL, machine TEXT NOT NULL, name TEXT NOT NULL,
    value_json TEXT NOT NULL, quality INTEGER NOT NULL, UNIQUE(machine, ts_ns, name));
CREATE INDEX events_ts ON events(ts_ns);
"""
# How far into a writer's outbox the store got, committed with each write (see Resumable).
_APPLIED = ("CREATE TABLE IF NOT EXISTS applied(outbox TEXT PRIMARY KEY, "
            "seq INTEGER NOT NULL)")


class StoreError(Exception):
    """The file is not a time-series store this version of Ombre can use."""


@dataclass(frozen=True, slots=True)
class Series:
    id: int  # stable in the file, unrelated to SignalRegistry ids
    machine: str
    signal: str
    unit: str | None


def _encode_ts(ts: Int64Array) -> bytes:
    """Sorted, distinct timestamps: the first, then uint32 steps when they all fit."""
    steps = np.diff(ts)
    if len(ts) < 2 or int(steps.max()) >= 2**32:
        return ts.tobytes()
    return ts[:1].tobytes() + steps.astype(np.uint32).tobytes()


def _raw_ts(blob: bytes, n: int) -> bytes:
    if len(blob) == 8 * n:
        return blob
    out = np.zeros(n, np.int64)
    np.cumsum(np.frombuffer(blob, np.uint32, offset=8), dtype=np.int64, out=out[1:])
    return (out + np.frombuffer(blob, np.int64, 1)).tobytes()


def _merge(rows: Sequence[_Chunk]) -> Columns:
    """Chunks in write order -> sorted columns, the last written reading per timestamp."""
    ts = np.frombuffer(bytearray().join(_raw_ts(t, n) for _, n, t, _, _ in rows), np.int64)
    value = np.frombuffer(bytearray().join(v for _, _, _, v, _ in rows), np.float64)
    quality = np.frombuffer(bytearray().join(bytes(n) if q is None else q
                                             for _, n, _, _, q in rows), np.uint8)
    if not np.all(ts[1:] > ts[:-1]):
        order = np.argsort(ts, kind="stable")
        ts, value, quality = ts[order], value[order], quality[order]
        keep = np.append(ts[1:] != ts[:-1], True)
        ts, value, quality = ts[keep], value[keep], quality[keep]
    return ts, value, quality


class TimeSeriesStore:
    """One SQLite file (WAL bounded by gateway/storage.py, synchronous=FULL) of readings
    and events.

    Synchronous: use it from one thread at a time (any thread; the sink uses worker
    threads). Other processes may read meanwhile through `open_store`; on such a
    read-only store, write/compact/delete_before raise sqlite3.OperationalError. After
    `close`, every method raises sqlite3.ProgrammingError. Opening a file with a newer
    schema, or a non-empty SQLite file that is not a store, raises StoreError."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        path = Path(path)
        if readonly and not path.exists():
            raise StoreError(f"{path}: no such time-series store")
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        target = f"{path.resolve().as_uri()}?mode=ro" if readonly else str(path)
        self._db = sqlite3.connect(target, uri=readonly, isolation_level=None,
                                   check_same_thread=False)
        self._dirty: set[tuple[int, int]] = set()  # (block, series) known to be in `dirty`
        self._written: dict[int, float] = {}  # block -> time.monotonic() of its last write
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            if not readonly:
                self._db.execute("PRAGMA journal_mode = WAL")
                limit_writes(self._db)
                self._db.execute("PRAGMA synchronous = FULL")  # survives a power cut
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path} has time-series schema version {version}, but this"
                                 f" Ombre knows only up to {SCHEMA_VERSION}: upgrade Ombre")
            if version == 0:
                if readonly or self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise StoreError(f"{path} is not an Ombre time-series store")
                self._db.executescript(
                    f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            if not readonly:  # added within version 1: older readers ignore it
                self._db.execute(_APPLIED)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def series_ids(self, keys: Iterable[tuple[str, str, str | None]]) -> Int64Array:
        """Stable ids of (machine, signal, unit) series, in order; creates missing
        series and records changed units."""
        keys = list(keys)
        with self._tx():
            self._db.executemany(
                "INSERT INTO series(machine, signal, unit) VALUES (?, ?, ?) ON CONFLICT"
                "(machine, signal) DO UPDATE SET unit = excluded.unit "
                "WHERE unit IS NOT excluded.unit", keys)
        ids = {(m, s): i for i, m, s in self._db.execute("SELECT id, machine, signal FROM series")}
        if ids and max(ids.values()) >= 1 << _BITS:
            raise StoreError(f"more than {(1 << _BITS) - 1} series")
        return np.array([ids[m, s] for m, s, _ in keys], np.int64)

    def series(self) -> list[Series]:
        """Every series ever written or declared, by machine and signal."""
        return [Series(*row) for row in self._db.execute(
            "SELECT id, machine, signal, unit FROM series ORDER BY machine, signal")]

    def write(self, series_id: Int64Array, ts_ns: Int64Array, value: Float64Array,
              quality: UInt8Array, events: Sequence[Event] = (), *,
              applied: tuple[str, int] | None = None) -> None:
        """Store readings (equal-length columns, ids from `series_ids`) and events in one
        transaction, with `applied` (outbox, seq) if given. Writing the same data again
        is harmless."""
        ts = np.asarray(ts_ns, np.int64)
        block = ts // BLOCK_NS
        b0 = int(block.min()) if len(block) else 0
        key = ((block - b0) << _BITS) | series_id
        order = np.argsort(key, kind="stable")  # by block, then series, then arrival
        ts, key = ts[order], key[order]
        edges = np.append(np.flatnonzero(np.diff(key, prepend=-1)), len(ts))  # one group each
        g_block, g_sid = (key[edges[:-1]] >> _BITS) + b0, key[edges[:-1]] & ((1 << _BITS) - 1)
        flagged = (np.maximum.reduceat(quality[order], edges[:-1]) > 0).tolist()
        tsb, vb = ts.tobytes(), np.asarray(value, np.float64)[order].tobytes()
        qb = np.asarray(quality, np.uint8)[order].tobytes()
        marks = [m for m in zip(g_block.tolist(), g_sid.tolist(), strict=True)
                 if m not in self._dirty]
        ids = g_sid.copy()  # becomes w << 24 | series id
        with self._tx():
            for lo, hi in itertools.pairwise([*np.searchsorted(g_block, np.unique(g_block)),
                                              len(g_block)]):
                t = ts[edges[lo]:edges[hi]]
                w = self._db.execute("INSERT INTO write_log(t_min_ns, t_max_ns) VALUES (?, ?)",
                                     (int(t.min()), int(t.max()))).lastrowid
                ids[lo:hi] |= int(w or 0) << _BITS
            self._db.executemany("INSERT INTO chunk VALUES (?, ?, ?, ?, ?)", [
                (i, e - s, tsb[8 * s:8 * e], vb[8 * s:8 * e], qb[s:e] if f else None)
                for i, s, e, f in zip(ids.tolist(), edges[:-1].tolist(), edges[1:].tolist(),
                                      flagged, strict=True)])
            self._db.executemany("INSERT OR IGNORE INTO dirty VALUES (?, ?)", marks)
            self._db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?)", [
                (e.ts_ns, e.machine, e.name, orjson.dumps(e.value).decode(), int(e.quality))
                for e in events])
            if applied is not None:
                self._db.execute("INSERT OR REPLACE INTO applied VALUES (?, ?)", applied)
        self._dirty.update(marks)
        if len(self._dirty) > 100_000:  # only a cache of what `dirty` holds
            self._dirty.clear()
        if len(self._written) > _MAX_RECENT:  # forgotten blocks may be compacted early
            self._written.clear()
        self._written.update(dict.fromkeys(np.unique(g_block).tolist(), time.monotonic()))

    def applied(self, outbox: str) -> int:
        """The seq last recorded by `write` for `outbox` (0: none)."""
        row = self._db.execute("SELECT seq FROM applied WHERE outbox = ?", (outbox,)).fetchone()
        return 0 if row is None else int(row[0])

    def _chunks(self, sid: int, from_ns: int, to_ns: int) -> list[_Chunk]:
        """The series' chunks in writes that may hold readings in [from_ns, to_ns)."""
        return self._db.execute(
            f"SELECT w.w, c.n, c.ts, c.value, c.quality FROM write_log AS w JOIN chunk AS c "
            f"ON c.id = (w.w << {_BITS}) | ? WHERE w.t_max_ns >= ? AND w.t_max_ns < ? "
            "AND w.t_min_ns < ? ORDER BY w.w",
            (sid, from_ns, min(to_ns + BLOCK_NS, _INT64_MAX), to_ns)).fetchall()

    def read(self, machine: str, signal: str, from_ns: int, to_ns: int) -> Columns:
        """Readings with from_ns <= ts < to_ns as (ts_ns, value, quality), sorted by ts,
        one per timestamp (the last written). KeyError for an unknown series."""
        row = self._db.execute("SELECT id FROM series WHERE machine = ? AND signal = ?",
                               (machine, signal)).fetchone()
        if row is None:
            raise KeyError(f"no series {machine}/{signal}")
        ts, value, quality = _merge(self._chunks(row[0], from_ns, to_ns))
        lo, hi = np.searchsorted(ts, [from_ns, to_ns])
        return ts[lo:hi], value[lo:hi], quality[lo:hi]

    def count(self, machine: str, signal: str, from_ns: int, to_ns: int) -> int:
        """How many readings `read` would return."""
        return len(self.read(machine, signal, from_ns, to_ns)[0])

    def read_events(self, machine: str, from_ns: int, to_ns: int,
                    name: str | None = None) -> list[Event]:
        """Events of a machine (of one `name`, if given) with from_ns <= ts < to_ns, by
        ts then name."""
        named = "" if name is None else " AND name = ?"
        return [Event(ts, machine, found, orjson.loads(v), q) for ts, found, v, q in
                self._db.execute(
                    "SELECT ts_ns, name, value_json, quality FROM events WHERE machine = ? "
                    f"AND ts_ns >= ? AND ts_ns < ?{named} ORDER BY ts_ns, name",
                    (machine, from_ns, to_ns, *(() if name is None else (name,))))]

    def compact(self, older_than_ns: int, *, quiet_s: float = 0.0,
                budget_s: float = MAINTENANCE_BUDGET_S) -> bool:
        """Compaction step of about budget_s, in one transaction, oldest first: drop the
        writes of blocks whose every series is compacted (half the budget), then merge
        the chunks of each (series, block) written since its last compaction, for blocks
        ending at or before older_than_ns and older than any block this store wrote to
        in the last quiet_s seconds, into sorted, deduplicated pieces of at most
        MAX_CHUNK readings. Does at least one unit of each. True when work remains.

        A block still being written is left alone: compacting it would merge all its
        writes and pieces again after each write (its writes stay until it is clean),
        work and memory growing with the block, and it would never be done."""
        now = time.monotonic()
        self._written = {b: t for b, t in self._written.items() if now - t < quiet_s}
        deadline = now + budget_s
        horizon = min([older_than_ns // BLOCK_NS, *self._written])
        done: list[tuple[int, int]] = []
        with self._tx():
            first_dirty = self._db.execute("SELECT min(block) FROM dirty").fetchone()[0]
            clean = horizon if first_dirty is None else min(horizon, first_dirty)
            more = self._drop_writes("piece IS NULL AND t_max_ns < ?", clean * BLOCK_NS,
                                     deadline - budget_s / 2)
            todo = self._db.execute("SELECT block, series_id FROM dirty WHERE block < ? "
                                    "ORDER BY block, series_id LIMIT 1000", (horizon,)).fetchall()
            for block, sid in todo:
                if done and time.monotonic() >= deadline:
                    break
                self._compact_block(block, sid)
                done.append((block, sid))
        self._dirty.difference_update(done)
        return more or bool(todo)  # the writes of blocks just compacted may now go

    def _compact_block(self, block: int, sid: int) -> None:
        """Merge the series' pieces and writes in the block into new pieces. The merged
        writes stay (duplicates, harmless to reads) until `compact` drops them whole once
        every series of the block is compacted: deleting one series' rows at a time would
        rewrite every page of the block once per series."""
        lo, hi = block * BLOCK_NS, (block + 1) * BLOCK_NS
        ts, value, quality = _merge(self._chunks(sid, lo, hi))
        ws = [w for (w,) in self._db.execute(
            "SELECT w FROM write_log WHERE t_max_ns = ? AND piece IS NOT NULL ORDER BY piece",
            (hi - 1,))]
        self._db.executemany("DELETE FROM chunk WHERE id = ?", [(w << _BITS | sid,) for w in ws])
        for piece in range(len(ws), -(-len(ts) // MAX_CHUNK)):
            ws.append(int(self._db.execute("INSERT INTO write_log VALUES (NULL, ?, ?, ?)",
                                           (lo, hi - 1, piece)).lastrowid or 0))
        self._db.executemany("INSERT INTO chunk VALUES (?, ?, ?, ?, ?)", [
            (w << _BITS | sid, len(t), _encode_ts(t), value[i:i + MAX_CHUNK].tobytes(),
             q.tobytes() if q.any() else None)
            for w, i in zip(ws, range(0, len(ts), MAX_CHUNK), strict=False)
            for t, q in [(ts[i:i + MAX_CHUNK], quality[i:i + MAX_CHUNK])]])
        self._db.execute("DELETE FROM dirty WHERE block = ? AND series_id = ?", (block, sid))

    def _drop_writes(self, where: str, bound: int, deadline: float) -> bool:
        """Delete write_log rows matching `where`, with their chunks, oldest first,
        _DROP_GROUP at a time until the deadline; True if more match."""
        while True:
            ws = self._db.execute(f"SELECT w FROM write_log WHERE {where} ORDER BY t_max_ns "
                                  "LIMIT ?", (bound, _DROP_GROUP)).fetchall()
            self._db.executemany("DELETE FROM chunk WHERE id >= ? AND id < ?",
                                 [(w << _BITS, (w + 1) << _BITS) for (w,) in ws])
            self._db.executemany("DELETE FROM write_log WHERE w = ?", ws)
            if len(ws) < _DROP_GROUP:
                return False
            if time.monotonic() >= deadline:
                return True

    def delete_before(self, cutoff_ns: int, *, budget_s: float = MAINTENANCE_BUDGET_S) -> bool:
        """Retention step of about budget_s, in one transaction: drop older events, and
        writes whose readings are all older than cutoff_ns (at least one group), oldest
        first. A compacted block goes whole once it ends before the cutoff, so up to one
        block of older readings may remain. True when more is to drop (call again)."""
        with self._tx():
            self._db.execute("DELETE FROM dirty WHERE block < ?", (cutoff_ns // BLOCK_NS,))
            self._db.execute("DELETE FROM events WHERE ts_ns < ?", (cutoff_ns,))
            more = self._drop_writes("t_max_ns < ?", cutoff_ns, time.monotonic() + budget_s)
        self._dirty = {m for m in self._dirty if m[0] >= cutoff_ns // BLOCK_NS}
        return more


def open_store(path: str | Path, *, readonly: bool = True) -> TimeSeriesStore:
    """Open an existing store, by default read-only (e.g. for `ombre query`), even while
    a gateway writes to it. StoreError if the file is missing, not a store, or newer."""
    return TimeSeriesStore(path, readonly=readonly)
