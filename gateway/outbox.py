"""The durable outbox: every delivery is committed here before its source is acked,
and each sink reads from here at its own pace, so a sink whose upstream is down
loses nothing that was accepted.

One SQLite file in WAL mode (`<data_dir>/gateway.sqlite`) holds the outbox, each
sink's cursor and the quarantine. Its storage profile (gateway/storage.py) says which
commits are synced. Methods are synchronous and thread-safe (one lock);
the runtime calls them through `asyncio.to_thread`. After `close` nothing may be called.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from gateway.storage import PROFILES, StorageProfile, limit_writes
from gateway.types import Batch, Event, QuarantineRecord

log = logging.getLogger(__name__)

TELEMETRY, EVENTS = 0, 1
OVERFLOW_EVENT = "outbox_overflow"  # Event.name raised when telemetry is dropped
GATEWAY_MACHINE = "_gateway"  # Event.machine of the gateway's own facts

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    n INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_cursor (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signal (id INTEGER PRIMARY KEY, machine TEXT NOT NULL,
    signal TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    head BLOB NOT NULL,
    reason TEXT NOT NULL,
    signal_id INTEGER
);
"""


@dataclass(frozen=True, slots=True)
class Dropped:
    """Telemetry the cap removed in one append: how many readings, of which signals."""

    readings: int
    signal_ids: np.ndarray  # int32, one entry per dropped reading


@dataclass(frozen=True, slots=True)
class Pending:
    """What a sink has not yet received: everything after `cursor`, up to `last_seq`."""

    cursor: int
    batch: Batch
    events: list[Event]
    last_seq: int


def encode_batch(batch: Batch) -> bytes:
    return b"".join(
        (batch.ts_ns.tobytes(), batch.signal_id.tobytes(), batch.value.tobytes(),
         batch.quality.tobytes())
    )


def decode_batch(blob: bytes, n: int) -> Batch:
    ts = np.frombuffer(blob, np.int64, n, 0)
    sid = np.frombuffer(blob, np.int32, n, 8 * n)
    value = np.frombuffer(blob, np.float64, n, 12 * n)
    quality = np.frombuffer(blob, np.uint8, n, 20 * n)
    return Batch(ts, sid, value, quality)


def _encode_events(events: Sequence[Event]) -> bytes:
    return orjson.dumps([[e.ts_ns, e.machine, e.name, e.value, e.quality] for e in events])


def _decode_events(blob: bytes) -> list[Event]:
    return [Event(ts, m, name, value, q) for ts, m, name, value, q in orjson.loads(blob)]


class Outbox:
    def __init__(self, path: Path, sinks: Sequence[str], signals: Sequence[tuple[str, str]],
                 max_bytes: int, quarantine_max_rows: int,
                 *, profile: StorageProfile = PROFILES["default"]) -> None:
        """`signals[i]` is the (machine, signal) of signal id i in the batches appended
        from now on; rows kept from an earlier run with other ids are renumbered."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        limit_writes(self._db)
        self._synced = True
        self._db.execute("PRAGMA synchronous=FULL")  # the ack to the source relies on it
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.max_bytes = max_bytes
        self._quarantine_max = quarantine_max_rows
        self._sinks = list(sinks)
        self.bytes = self.rows = self._quarantine_rows = 0
        self._count()
        self.writable = True  # False from a failed write (disk full) until one commits
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('id', ?)", (str(uuid.uuid4()),))
            # Names this file for sinks that record how far they got (Resumable): seq
            # numbers start again in a new file.
            self.id: str = self._db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()[0]
            names = ",".join("?" * len(self._sinks))
            self._db.execute(f"DELETE FROM outbox_cursor WHERE sink NOT IN ({names})", self._sinks)
            first = self._scalar("SELECT COALESCE(MIN(seq) - 1, 0) FROM outbox")
            self._db.executemany(
                "INSERT OR IGNORE INTO outbox_cursor VALUES (?, ?)",
                [(s, first) for s in self._sinks],
            )
            self._collect()
            self._renumber(list(signals))
        self._in_flight: dict[str, tuple[int, int]] = {}  # sink -> (cursor, last) of `pending`

    def append(self, batch: Batch, events: Sequence[Event],
               quarantined: Sequence[QuarantineRecord]) -> Dropped | None:
        """Commit one delivery's content in one transaction. Over the byte cap, the
        oldest telemetry is deleted (never events) and returned as Dropped."""
        with self._lock, self._tx():
            if len(batch):
                self._insert(TELEMETRY, len(batch), encode_batch(batch))
            if events:
                self._insert(EVENTS, len(events), _encode_events(events))
            if quarantined:
                self._quarantine(quarantined)
            if not self._sinks:
                self._collect()
            return self._enforce_cap() if self.bytes > self.max_bytes else None

    def append_events(self, events: Sequence[Event]) -> None:
        with self._lock, self._tx():
            self._insert(EVENTS, len(events), _encode_events(events))

    def pending(self, sink: str, max_readings: int) -> Pending:
        """Rows after the sink's cursor, merged, stopping once max_readings is passed."""
        batches: list[Batch] = []
        events: list[Event] = []
        with self._lock:
            cursor = self._scalar("SELECT seq FROM outbox_cursor WHERE sink = ?", sink)
            last, readings = cursor, 0
            for seq, kind, n, payload in self._db.execute(
                    "SELECT seq, kind, n, payload FROM outbox WHERE seq > ? ORDER BY seq",
                    (cursor,)):
                if kind == TELEMETRY:
                    batches.append(decode_batch(payload, n))
                    readings += n
                else:
                    events.extend(_decode_events(payload))
                last = seq
                if readings >= max_readings:
                    break
            self._in_flight[sink] = (cursor, last)  # the byte cap spares what is being written
        return Pending(cursor, Batch.concat(batches), events, last)

    def delivered(self, sink: str, seq: int,
                  refused: Sequence[QuarantineRecord] = ()) -> None:
        """Move the sink's cursor to seq and delete what every sink has received; what
        the sink's upstream `refused` goes to the quarantine in the same transaction."""
        with self._lock, self._tx(synced=self.profile.sync_cursor_moves):
            if refused:
                self._quarantine(refused)
            self._move_cursor(sink, seq)
            self._in_flight.pop(sink, None)

    def resume(self, sink: str, applied: int) -> int:
        """The sink itself recorded storing everything up to seq `applied`: move its
        cursor there if it is behind (a crash came between the two commits). Returns
        the rows skipped."""
        with self._lock, self._tx(synced=self.profile.sync_cursor_moves):
            cursor = self._scalar("SELECT seq FROM outbox_cursor WHERE sink = ?", sink)
            if applied <= cursor:
                return 0
            issued = self._issued()
            if applied > issued:  # this file is older than the sink's record of it
                log.warning("sink %s recorded outbox seq %d, but this outbox has issued "
                            "only up to %d (restored from a backup?): its cursor stays at %d",
                            sink, applied, issued, cursor)
                return 0
            skipped = self._scalar("SELECT COUNT(*) FROM outbox WHERE seq > ? AND seq <= ?",
                                   cursor, applied)
            self._move_cursor(sink, applied)
            return skipped

    def release(self, sink: str) -> None:
        """The sink failed to write what `pending` gave it: the cap may drop it again."""
        with self._lock:
            self._in_flight.pop(sink, None)

    def last_seq(self) -> int:
        """The seq of the last row appended (0: none yet in this file)."""
        with self._lock:
            return self._issued()

    def _issued(self) -> int:
        return self._scalar("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence "
                            "WHERE name = 'outbox'")

    def received(self, sink: str, seq: int) -> bool:
        """Whether the sink has received every row up to `seq`."""
        with self._lock:
            return self._scalar("SELECT seq FROM outbox_cursor WHERE sink = ?", sink) >= seq

    def backlog(self) -> dict[str, int]:
        """Rows each sink has not received yet."""
        with self._lock:
            return {
                sink: self._scalar("SELECT COUNT(*) FROM outbox WHERE seq > ?", cursor)
                for sink, cursor in self._db.execute("SELECT sink, seq FROM outbox_cursor")
            }

    def quarantine(self, limit: int = 100) -> list[QuarantineRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts_ns, source, topic, head, reason, signal_id FROM quarantine "
                "ORDER BY id DESC LIMIT ?", (limit,),
            ).fetchall()
        return [QuarantineRecord(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals; the caller holds the lock and a transaction -----------------------

    @contextmanager
    def _tx(self, *, synced: bool = True) -> Iterator[None]:
        """One write transaction, whose commit is synced to the disk before it returns
        unless not `synced` (then the next synced commit, which writes the WAL after it,
        carries it). When it fails (disk full, I/O error) it is rolled back, the counts
        are read again from the file (they were moved for rows that were not committed)
        and the outbox is not `writable` until a write commits."""
        if synced != self._synced:
            self._db.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
            self._synced = synced
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self.writable = False
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._count()
            raise
        self.writable = True

    def _count(self) -> None:
        self.bytes, self.rows = self._db.execute(
            "SELECT COALESCE(SUM(nbytes), 0), COUNT(*) FROM outbox").fetchone()
        self._quarantine_rows = self._scalar("SELECT COUNT(*) FROM quarantine")

    def _insert(self, kind: int, n: int, payload: bytes) -> None:
        self._db.execute(
            "INSERT INTO outbox (kind, n, nbytes, payload) VALUES (?, ?, ?, ?)",
            (kind, n, len(payload), payload),
        )
        self.bytes += len(payload)
        self.rows += 1

    def _quarantine(self, records: Sequence[QuarantineRecord]) -> None:
        self._db.executemany(
            "INSERT INTO quarantine (ts_ns, source, topic, head, reason, signal_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(r.ts_ns, r.source, r.topic, r.head, r.reason, r.signal_id) for r in records],
        )
        self._quarantine_rows += len(records)
        excess = self._quarantine_rows - self._quarantine_max
        if excess > 0:
            self._db.execute(
                "DELETE FROM quarantine WHERE id IN "
                "(SELECT id FROM quarantine ORDER BY id LIMIT ?)", (excess,),
            )
            self._quarantine_rows -= excess

    def _move_cursor(self, sink: str, seq: int) -> None:
        self._db.execute("UPDATE outbox_cursor SET seq = ? WHERE sink = ?", (seq, sink))
        self._collect()

    def _collect(self) -> None:
        """Delete rows that every sink has received (all rows when there is no sink)."""
        upto = self._scalar(
            "SELECT COALESCE(MIN(seq), (SELECT MAX(seq) FROM outbox), 0) FROM outbox_cursor"
            if self._sinks else "SELECT COALESCE(MAX(seq), 0) FROM outbox"
        )
        freed, count = self._db.execute(
            "SELECT COALESCE(SUM(nbytes), 0), COUNT(*) FROM outbox WHERE seq <= ?", (upto,)
        ).fetchone()
        if count:
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
            self.bytes -= freed
            self.rows -= count

    def _enforce_cap(self) -> Dropped:
        """Delete the oldest telemetry until the outbox is under its cap, sparing only
        the rows a sink is writing now (delivered, so not lost: they go once written).
        Sparing everything up to the newest row in flight would drop the newest
        telemetry instead, which a healthy sink has not read yet, whenever it is
        writing while another sink is down."""
        ids: list[np.ndarray] = []
        writing = "".join(" AND seq NOT BETWEEN ? AND ?" for _ in self._in_flight)
        spared = [seq for cursor, last in self._in_flight.values() for seq in (cursor + 1, last)]
        while self.bytes > self.max_bytes:
            row = self._db.execute(
                f"SELECT seq, n, nbytes, payload FROM outbox WHERE kind = ?{writing} "
                "ORDER BY seq LIMIT 1", (TELEMETRY, *spared),
            ).fetchone()
            if row is None:
                break  # only events, or rows a sink is writing: never dropped
            seq, n, nbytes, payload = row
            ids.append(decode_batch(payload, n).signal_id.copy())
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self.bytes -= nbytes
            self.rows -= 1
        signal_ids = np.concatenate(ids) if ids else np.empty(0, np.int32)
        return Dropped(len(signal_ids), signal_ids)

    def _renumber(self, signals: list[tuple[str, str]]) -> None:
        """Map kept telemetry to this run's signal ids; readings of signals that are no
        longer configured cannot be stored anywhere and are dropped, with a warning."""
        stored = dict(self._db.execute("SELECT id, machine || '/' || signal FROM signal"))
        current = {f"{m}/{s}": i for i, (m, s) in enumerate(signals)}
        if stored != {i: key for key, i in current.items()}:
            mapping = np.array([current.get(stored.get(i, ""), -1)
                                for i in range(max(stored, default=-1) + 1)], np.int64)
            lost = 0
            rows = self._db.execute("SELECT seq, n, payload FROM outbox WHERE kind = ?",
                                    (TELEMETRY,)).fetchall()
            for seq, n, payload in rows:
                batch = decode_batch(payload, n)
                new_ids = mapping[batch.signal_id] if len(mapping) else np.full(n, -1)
                keep = new_ids >= 0
                lost += n - int(keep.sum())
                kept = Batch(batch.ts_ns[keep], new_ids[keep].astype(np.int32),
                             batch.value[keep], batch.quality[keep])
                blob = encode_batch(kept)
                self._db.execute("UPDATE outbox SET n = ?, nbytes = ?, payload = ? WHERE seq = ?",
                                 (len(kept), len(blob), blob, seq))
                self.bytes += len(blob) - len(payload)
            if lost:
                log.warning("outbox: %d kept readings belong to signals no longer in the "
                            "config; they are dropped", lost)
            self._db.execute("DELETE FROM signal")
            self._db.executemany("INSERT INTO signal VALUES (?, ?, ?)",
                                 [(i, m, s) for i, (m, s) in enumerate(signals)])

    def _scalar(self, sql: str, *args: object) -> int:
        return int(self._db.execute(sql, args).fetchone()[0])
