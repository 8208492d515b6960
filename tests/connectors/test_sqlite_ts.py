"""The SQLite time-series store and sink, against real SQLite files."""

from __future__ import annotations

import math
import sqlite3
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import sqlite_ts
from connectors.sqlite_ts import (
    BLOCK_NS,
    StoreError,
    TimeSeriesStore,
    open_store,
)
from gateway.types import Event, Quality

H = BLOCK_NS
T0 = 1_750_000_000 * 10**9 // H * H  # start of an hour block
ALL = (-(2**63), 2**63 - 1)


def _store(path: Path, names: list[str]) -> tuple[TimeSeriesStore, dict[str, int]]:
    store = TimeSeriesStore(path)
    ids = store.series_ids(("press", n, "bar") for n in names)
    return store, dict(zip(names, ids.tolist(), strict=True))


def _write(store: TimeSeriesStore, sid: list[int], ts: list[int], value: list[float],
           quality: list[int] | None = None) -> None:
    store.write(np.array(sid, np.int64), np.array(ts, np.int64), np.array(value, np.float64),
                np.array(quality or [0] * len(ts), np.uint8))


def _chunk_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM chunk").fetchone()[0])


def _snapshot(store: TimeSeriesStore) -> dict[str, tuple[bytes, bytes, bytes]]:
    out = {}
    for s in store.series():
        ts, value, quality = store.read(s.machine, s.signal, *ALL)
        out[s.signal] = (ts.tobytes(), value.tobytes(), quality.tobytes())
    return out


def test_round_trip_is_exact_per_series(tmp_path: Path) -> None:
    store, ids = _store(tmp_path / "ts.sqlite", ["a", "b", "c"])
    rng = np.random.default_rng(7)
    n = 5_000
    sid = rng.choice(list(ids.values()), n)
    ts = T0 + rng.permutation(n).astype(np.int64) * 1_000_003  # distinct, shuffled
    value = rng.normal(size=n)
    value[:4] = [math.nan, math.inf, -0.0, 5e-324]
    quality = rng.choice([0, Quality.BAD, Quality.UNCERTAIN | Quality.TS_RECEIVED], n)
    store.write(sid, ts, value, quality.astype(np.uint8))
    for name, i in ids.items():
        mask = sid == i
        order = np.argsort(ts[mask])
        got_ts, got_v, got_q = store.read("press", name, *ALL)
        assert got_ts.tobytes() == ts[mask][order].tobytes()
        assert got_v.tobytes() == value[mask][order].tobytes()  # NaN, -0.0 bit for bit
        assert got_q.tobytes() == quality[mask][order].astype(np.uint8).tobytes()
    store.close()


def test_reads_are_half_open_and_cross_blocks(tmp_path: Path) -> None:
    store, ids = _store(tmp_path / "ts.sqlite", ["a", "b"])
    ts = [T0 + H - 2, T0 + H - 1, T0 + H, T0 + H + 1, T0 + 3 * H]
    _write(store, [ids["a"]] * 5 + [ids["b"]], [*ts, T0 + H], [0, 1, 2, 3, 4, 99])
    got = store.read("press", "a", T0 + H - 1, T0 + H + 1)
    assert got[0].tolist() == [T0 + H - 1, T0 + H]
    assert got[1].tolist() == [1.0, 2.0]
    assert store.count("press", "a", T0 + H + 1, T0 + 3 * H) == 1
    assert store.count("press", "a", T0 + 3 * H, T0 + 3 * H) == 0
    assert store.read("press", "a", T0 + 3 * H, T0 + 4 * H)[1].tolist() == [4.0]
    with pytest.raises(KeyError, match="press/nope"):
        store.read("press", "nope", *ALL)
    store.close()


def test_replayed_and_duplicate_readings_read_once_last_written_wins(tmp_path: Path) -> None:
    store, ids = _store(tmp_path / "ts.sqlite", ["a"])
    a = ids["a"]
    _write(store, [a, a, a], [T0 + 1, T0 + 2, T0 + 1], [1.0, 2.0, 3.0])  # dup in a batch
    _write(store, [a, a, a], [T0 + 1, T0 + 2, T0 + 1], [1.0, 2.0, 3.0])  # replay
    assert store.read("press", "a", *ALL)[1].tolist() == [3.0, 2.0]
    _write(store, [a], [T0 + 2], [20.0], [Quality.BAD])
    _, value, quality = store.read("press", "a", *ALL)
    assert value.tolist() == [3.0, 20.0]
    assert quality.tolist() == [0, Quality.BAD]
    store.close()


def test_out_of_order_writes_read_sorted(tmp_path: Path) -> None:
    store, ids = _store(tmp_path / "ts.sqlite", ["a"])
    a = ids["a"]
    _write(store, [a, a], [T0 + 5 * H, T0 + 7], [3.0, 2.0])
    _write(store, [a, a], [T0 + 1, T0 + 2 * H], [1.0, 2.5])
    ts, value, _ = store.read("press", "a", *ALL)
    assert ts.tolist() == [T0 + 1, T0 + 7, T0 + 2 * H, T0 + 5 * H]
    assert value.tolist() == [1.0, 2.0, 2.5, 3.0]
    store.close()


def test_compaction_keeps_content_and_reduces_rows(tmp_path: Path) -> None:
    path = tmp_path / "ts.sqlite"
    store, ids = _store(path, ["a", "b", "c"])
    rng = np.random.default_rng(3)
    for _ in range(60):  # small writes over three blocks, with replays and overrides
        n = 90
        sid = rng.choice(list(ids.values()), n)
        ts = T0 + rng.integers(0, 3 * H // 10**9, n) * 10**9
        store.write(sid, ts, rng.normal(size=n), rng.integers(0, 2, n).astype(np.uint8))
    before, rows_before = _snapshot(store), _chunk_rows(path)
    assert not store.compact(T0 + H - 1)  # no block has closed
    assert _chunk_rows(path) == rows_before
    while store.compact(T0 + 3 * H):
        pass
    assert _snapshot(store) == before
    assert _chunk_rows(path) == 9  # one piece per series and block
    assert not store.compact(T0 + 3 * H)  # idempotent
    assert _snapshot(store) == before
    # a late reading in a compacted block wins, before and after compacting again
    _write(store, [ids["a"]], [int(store.read("press", "a", *ALL)[0][0])], [42.0])
    assert store.read("press", "a", *ALL)[1][0] == 42.0
    while store.compact(T0 + 3 * H):
        pass
    assert store.read("press", "a", *ALL)[1][0] == 42.0
    assert _chunk_rows(path) == 9
    store.close()


def test_compaction_is_bounded_and_splits_large_blocks(tmp_path: Path) -> None:
    path = tmp_path / "ts.sqlite"
    store, ids = _store(path, ["a", "b"])
    for k in range(10):
        _write(store, [ids["a"]] * 10 + [ids["b"]],
               [T0 + k * 10 + i for i in range(10)] + [T0 + H + k * 2**33], [float(k)] * 11)
    before = _snapshot(store)
    with mock.patch.object(sqlite_ts, "MAX_CHUNK", 32):
        assert store.compact(T0 + 2 * H, budget_s=0)  # only (block 0, a)
        assert _chunk_rows(path) == 4 + 10 + 10  # a's merged writes go with their block
        assert store.compact(T0 + 2 * H, budget_s=0)  # drops them, then does (block 1, b)
        assert _chunk_rows(path) == 4 + 1 + 10
        assert not store.compact(T0 + 2 * H, budget_s=0)
    assert _snapshot(store) == before
    assert _chunk_rows(path) == 4 + 1  # a: 100 readings in 4 pieces; b: steps > 2**32 ns
    store.close()


def test_compaction_leaves_a_block_being_written_until_it_is_quiet(tmp_path: Path) -> None:
    """Late data into a block closed long ago (a replayed backlog, a source's clock
    behind) is not compacted after every write, which would merge the whole block
    again each time; once no write touched it for quiet_s, it is."""
    path = tmp_path / "ts.sqlite"
    store, ids = _store(path, ["a", "b"])
    for k in range(30):
        _write(store, [ids["a"], ids["b"]], [T0 + k, T0 + k], [float(k), -float(k)])
        assert not store.compact(T0 + 3 * H, quiet_s=3600)  # nothing to do meanwhile
    assert _chunk_rows(path) == 60  # every write as written, no piece
    before = _snapshot(store)
    while store.compact(T0 + 3 * H, quiet_s=0):
        pass
    assert _chunk_rows(path) == 2  # one piece per series
    assert _snapshot(store) == before
    store.close()


def test_retention_drops_old_writes_and_events(tmp_path: Path) -> None:
    store, ids = _store(tmp_path / "ts.sqlite", ["a"])
    a = ids["a"]
    _write(store, [a, a], [T0, T0 + 1], [1.0, 2.0])
    _write(store, [a], [T0 + 2], [2.5])
    _write(store, [a, a], [T0 + H + 5, T0 + H + 20], [3.0, 4.0])
    _write(store, [a], [T0 + 2 * H], [5.0])
    store.write(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.uint8),
                [Event(T0, "press", "state", "run"), Event(T0 + H, "press", "state", "stop")])
    with mock.patch.object(sqlite_ts, "_DROP_GROUP", 1):
        assert store.delete_before(T0 + H, budget_s=0)  # bounded: one write per call
        assert store.delete_before(T0 + H, budget_s=0)
        assert not store.delete_before(T0 + H, budget_s=0)
    assert store.read("press", "a", *ALL)[1].tolist() == [3.0, 4.0, 5.0]
    assert [e.value for e in store.read_events("press", *ALL)] == ["stop"]
    while store.compact(T0 + 3 * H):
        pass
    assert not store.delete_before(T0 + H + 10)  # a compacted block straddling it stays whole
    assert store.read("press", "a", *ALL)[1].tolist() == [3.0, 4.0, 5.0]
    assert not store.delete_before(T0 + 2 * H)
    assert store.read("press", "a", *ALL)[1].tolist() == [5.0]
    store.close()


def test_events_are_idempotent_and_typed(tmp_path: Path) -> None:
    store, _ = _store(tmp_path / "ts.sqlite", [])
    events = [Event(T0 + 2, "press", "order", "PO-1"), Event(T0 + 1, "press", "count", 7),
              Event(T0 + 1, "press", "ratio", 0.5), Event(T0 + 1, "press", "alarm", True),
              Event(T0 + 3, "press", "reason", None, Quality.UNCERTAIN),
              Event(T0 + 1, "oven", "state", "idle")]
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.uint8))
    store.write(*empty, events)
    store.write(*empty, events)
    got = store.read_events("press", *ALL)
    assert got == sorted(events[:5], key=lambda e: (e.ts_ns, e.name))
    assert [type(e.value) for e in got] == [bool, int, float, str, type(None)]
    store.write(*empty, [Event(T0 + 2, "press", "order", "PO-2")])
    assert [e.value for e in store.read_events("press", T0 + 2, T0 + 3)] == ["PO-2"]
    store.close()


def test_series_ids_are_stable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ts.sqlite"
    with TimeSeriesStore(path) as store:
        first = store.series_ids([("m1", "a", "bar"), ("m1", "b", None), ("m2", "a", None)])
        _write(store, [int(first[1])], [T0], [1.5])
    with TimeSeriesStore(path) as store:
        again = store.series_ids([("m2", "a", None), ("m0", "z", None), ("m1", "b", "°C")])
        assert again[0] == first[2]
        assert again[2] == first[1]
        assert again[1] not in first.tolist()
        assert store.read("m1", "b", *ALL)[1].tolist() == [1.5]
        assert [(s.machine, s.signal, s.unit) for s in store.series()] == [
            ("m0", "z", None), ("m1", "a", "bar"), ("m1", "b", "°C"), ("m2", "a", None)]


def test_schema_checks_and_read_only_open(tmp_path: Path) -> None:
    path = tmp_path / "ts.sqlite"
    with pytest.raises(StoreError, match="no such"):
        open_store(path)
    writer, ids = _store(path, ["a"])
    _write(writer, [ids["a"]], [T0], [1.0])
    with open_store(path) as reader:  # alongside the writer
        assert reader.read("press", "a", *ALL)[1].tolist() == [1.0]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            _write(reader, [ids["a"]], [T0], [2.0])
    writer.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="version 99"):
        TimeSeriesStore(path)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t(x)")
    db.close()
    with pytest.raises(StoreError, match="not an Ombre time-series store"):
        TimeSeriesStore(other)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 999), st.integers(-5, 5)),
             max_size=30),
    st.integers(0, 1200)), max_size=12))
def test_matches_a_last_writer_wins_model(ops: list[list[tuple[int, int, int]] | int]) -> None:
    """Writes and compactions in any order read back as a dict of the last writes."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(sqlite_ts, "BLOCK_NS", 100):
        store, ids = _store(Path(tmp) / "ts.sqlite", ["a", "b", "c"])
        model: dict[tuple[int, int], float] = {}
        for op in ops:
            if isinstance(op, int):
                while store.compact(op, budget_s=0):
                    pass
                continue
            _write(store, [s + 1 for s, _, _ in op], [t for _, t, _ in op],
                   [float(v) for _, _, v in op])
            model.update(((s + 1, t), float(v)) for s, t, v in op)
        for name, i in ids.items():
            expected = sorted((t, v) for (s, t), v in model.items() if s == i)
            ts, value, _ = store.read("press", name, 0, 1000)
            assert list(zip(ts.tolist(), value.tolist(), strict=True)) == expected
        store.close()
