"""The outbox on its own: commits, cursors, the byte cap, quarantine bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.outbox import Outbox, decode_batch, encode_batch
from gateway.types import Batch, Event, QuarantineRecord

SIGNALS = [("m", f"s{i}") for i in range(10)]


def batch(n: int, start: int = 0, signal: int = 0) -> Batch:
    ts = np.arange(start, start + n, dtype=np.int64)
    return Batch(ts, np.full(n, signal, np.int32), ts.astype(np.float64), np.zeros(n, np.uint8))


def test_batch_encoding_round_trips() -> None:
    b = batch(7, 100, 3)
    back = decode_batch(encode_batch(b), 7)
    for a, c in zip((b.ts_ns, b.signal_id, b.value, b.quality),
                    (back.ts_ns, back.signal_id, back.value, back.quality), strict=True):
        np.testing.assert_array_equal(a, c)


def test_each_sink_reads_at_its_own_pace_and_rows_go_when_all_have_them(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "g.sqlite", ["a", "b"], SIGNALS, 10**9, 100)
    box.append(batch(10), [Event(5, "m", "state", "RUN")], [])
    box.append(batch(5, 10), [], [])
    got = box.pending("a", 1_000)
    assert len(got.batch) == 15
    assert [e.value for e in got.events] == ["RUN"]
    box.delivered("a", got.last_seq)
    assert box.rows == 3  # b has not read them
    assert len(box.pending("a", 1_000).batch) == 0
    box.delivered("b", box.pending("b", 1_000).last_seq)
    assert box.rows == 0
    assert box.bytes == 0
    box.close()


def test_pending_stops_after_max_readings(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "g.sqlite", ["a"], SIGNALS, 10**9, 100)
    for i in range(4):
        box.append(batch(10, 10 * i), [], [])
    first = box.pending("a", 15)
    assert len(first.batch) == 20  # whole rows: stops once 15 is passed
    box.delivered("a", first.last_seq)
    assert box.pending("a", 15).batch.ts_ns[0] == 20
    box.close()


def test_cursor_survives_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "g.sqlite", ["a"], SIGNALS, 10**9, 100)
    box.append(batch(3), [], [])
    box.append(batch(3, 3), [], [])
    box.delivered("a", box.pending("a", 3).last_seq)
    box.close()
    again = Outbox(tmp_path / "g.sqlite", ["a"], SIGNALS, 10**9, 100)
    np.testing.assert_array_equal(again.pending("a", 100).batch.ts_ns, [3, 4, 5])
    again.close()


def test_resume_skips_what_the_sink_recorded_and_nothing_else(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "g.sqlite", ["a"], SIGNALS, 10**9, 100)
    for i in range(3):
        box.append(batch(3, 3 * i), [], [])
    seq = box.pending("a", 3).last_seq  # the sink stored the first row; the cursor is behind
    assert box.resume("a", 0) == 0  # a sink with no record
    assert box.resume("a", seq) == 1
    assert box.resume("a", seq) == 0  # the cursor never goes back
    np.testing.assert_array_equal(box.pending("a", 100).batch.ts_ns, np.arange(3, 9))
    box.close()


def test_resume_ignores_a_record_this_file_never_issued(tmp_path: Path) -> None:
    """An outbox older than the sink's record of it (a restored backup): skipping to
    the record would skip rows it issues from now on."""
    box = Outbox(tmp_path / "g.sqlite", ["a"], SIGNALS, 10**9, 100)
    box.append(batch(3), [], [])
    assert box.resume("a", 50) == 0
    np.testing.assert_array_equal(box.pending("a", 100).batch.ts_ns, [0, 1, 2])
    box.close()


def test_over_the_cap_the_oldest_telemetry_is_dropped_and_events_are_kept(
    tmp_path: Path,
) -> None:
    row_bytes = len(encode_batch(batch(100)))
    box = Outbox(tmp_path / "g.sqlite", ["down"], SIGNALS, 3 * row_bytes, 100)
    dropped_total = 0
    for i in range(10):
        dropped = box.append(batch(100, 100 * i, signal=i), [Event(i, "m", "state", i)], [])
        dropped_total += dropped.readings if dropped else 0
    left = box.pending("down", 10**6)
    assert box.bytes <= 3 * row_bytes
    assert dropped_total > 0
    assert dropped_total + len(left.batch) == 1000  # exactly the counted ones are gone
    kept = np.unique(left.batch.signal_id)
    np.testing.assert_array_equal(kept, np.arange(10 - len(kept), 10))  # the newest
    assert [e.value for e in left.events] == list(range(10))
    box.close()


def test_dropped_reports_which_signals(tmp_path: Path) -> None:
    row_bytes = len(encode_batch(batch(10)))
    box = Outbox(tmp_path / "g.sqlite", ["down"], SIGNALS, row_bytes, 100)
    box.append(batch(10, signal=4), [], [])
    dropped = box.append(batch(10, 10, signal=5), [], [])
    assert dropped is not None
    np.testing.assert_array_equal(dropped.signal_ids, np.full(10, 4))
    box.close()


def test_quarantine_is_bounded_newest_kept(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "g.sqlite", [], SIGNALS, 10**9, 5)
    records = [QuarantineRecord(i, "mqtt", f"t/{i}", b"x", "bad", None) for i in range(12)]
    box.append(Batch.empty(), [], records)
    kept = box.quarantine(100)
    assert [r.topic for r in kept] == [f"t/{i}" for i in range(11, 6, -1)]
    box.close()


def test_without_sinks_nothing_piles_up(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "g.sqlite", [], SIGNALS, 10**9, 5)
    box.append(batch(10), [Event(1, "m", "s", 1)], [])
    assert box.rows == 0
    box.close()


def test_a_removed_sink_no_longer_holds_rows(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "g.sqlite", ["a", "gone"], SIGNALS, 10**9, 5)
    box.append(batch(10), [], [])
    box.delivered("a", box.pending("a", 100).last_seq)
    box.close()
    again = Outbox(tmp_path / "g.sqlite", ["a"], SIGNALS, 10**9, 5)
    assert again.rows == 0
    again.close()


def test_kept_rows_follow_their_signals_when_the_config_changes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "g.sqlite", ["down"], [("m", "a"), ("m", "b"), ("m", "c")],
                 10**9, 5)
    box.append(Batch(np.arange(3, dtype=np.int64), np.array([0, 1, 2], np.int32),
                     np.array([10.0, 11.0, 12.0]), np.zeros(3, np.uint8)), [], [])
    box.close()
    # "a" removed, "c" and "b" swapped, a new signal first
    again = Outbox(tmp_path / "g.sqlite", ["down"], [("m", "new"), ("m", "c"), ("m", "b")],
                   10**9, 5)
    kept = again.pending("down", 100).batch
    np.testing.assert_array_equal(kept.signal_id, [2, 1])  # b is now 2, c is now 1
    np.testing.assert_array_equal(kept.value, [11.0, 12.0])
    again.close()


def test_the_cap_never_drops_what_a_sink_is_writing(tmp_path: Path) -> None:
    row_bytes = len(encode_batch(batch(100)))
    box = Outbox(tmp_path / "g.sqlite", ["slow"], SIGNALS, 2 * row_bytes, 5)
    box.append(batch(100, 0, 1), [], [])
    writing = box.pending("slow", 10**6)  # the sink now writes these 100 readings
    dropped = 0
    for i in range(1, 4):
        d = box.append(batch(100, 100 * i, 2), [], [])
        dropped += d.readings if d else 0
    box.delivered("slow", writing.last_seq)
    rest = box.pending("slow", 10**6).batch
    assert len(writing.batch) == 100
    assert 1 not in rest.signal_id  # written, not counted as dropped
    assert dropped + len(rest) == 300
    box.close()


def test_a_sink_writing_does_not_make_the_cap_drop_the_newest(tmp_path: Path) -> None:
    """One sink keeps up, writing the last row while the next is appended; the other is
    down: the cap drops the oldest rows (only the sink that is down misses them), not
    the new rows the healthy sink has yet to read."""
    row_bytes = len(encode_batch(batch(100)))
    box = Outbox(tmp_path / "g.sqlite", ["up", "down"], SIGNALS, 3 * row_bytes, 5)
    dropped: list[int] = []
    written: list[int] = []
    writing = None
    for i in range(6):
        d = box.append(batch(100, 100 * i, signal=i), [], [])
        dropped += np.unique(d.signal_ids).tolist() if d else []
        if writing is not None:
            box.delivered("up", writing.last_seq)
        writing = box.pending("up", 10**6)
        written += np.unique(writing.batch.signal_id).tolist()
    assert written == [0, 1, 2, 3, 4, 5]  # the healthy sink lost nothing
    assert dropped == [0, 1, 2]  # the oldest went
    np.testing.assert_array_equal(np.unique(box.pending("down", 10**6).batch.signal_id),
                                  [3, 4, 5])
    box.close()
