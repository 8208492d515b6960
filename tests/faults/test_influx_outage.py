"""Fault: VictoriaMetrics (the InfluxDB sink's server) down for OUTAGE_S while data
flows, then back. Must hold: nothing lost, the backlog drains, and the outbox's size is
in the counters while the server is down. Prints lost, duplicated, recovery and drain."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from bench.victoria import BINARY, VictoriaMetrics
from connectors.replay import ReplaySource
from gateway.counters import Health
from ombre.app import build_gateway
from tests.conftest import require_binary, wait_until
from tests.connectors.test_influx import plant, rfc3339

OUTAGE_S = 120.0
BEFORE_S, AFTER_S = 10.0, 20.0  # data flows this long before the outage and after it
RATE_HZ = 250  # per signal; four signals: 1,000 readings/s
SIGNALS = [("m1", "temp"), ("m1", "speed"), ("m2", "temp"), ("m2", "speed")]


Stored = dict[tuple[str, str], dict[int, float]]  # (machine, signal) -> ms ts -> value


def paced_recording(path: Path, base_ns: int, seconds: float) -> Stored:
    """RATE_HZ readings per signal and second over `seconds`; returns what each signal
    must hold afterwards."""
    expected: Stored = {key: {} for key in SIGNALS}
    step_ns = 10**9 // RATE_HZ
    with path.open("w") as out:
        for i in range(int(seconds * RATE_HZ)):
            ts = base_ns + i * step_ns
            for k, (machine, signal) in enumerate(SIGNALS):
                value = i + k / 10
                out.write(json.dumps({"ts": rfc3339(ts), "machine": machine,
                                      "signal": signal, "value": value}) + "\n")
                expected[(machine, signal)][ts // 1_000_000] = value
    return expected


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE_S + 300)
async def test_victoria_down_while_data_flows_loses_nothing(tmp_path: Path) -> None:
    server = VictoriaMetrics(require_binary(BINARY), tmp_path)
    server.start()
    site = f"site-{uuid.uuid4().hex[:8]}"
    config = plant(tmp_path / "data", server.url, site)
    seconds = BEFORE_S + OUTAGE_S + AFTER_S
    base = (time.time_ns() - 3600 * 10**9) // 10**9 * 10**9
    expected = paced_recording(tmp_path / "rec.jsonl", base, seconds)
    total = sum(map(len, expected.values()))
    done = asyncio.Event()
    source = ReplaySource(tmp_path / "rec.jsonl", config, config.registry(), speed=1.0,
                          on_done=done.set)
    gateway, outbox = build_gateway(config, sources=[source])
    sink = gateway.counters.connector("tsdb", "sink")
    received = gateway.counters.connector("replay", "source")
    stop, force = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, force), name="test:gateway")
    try:
        await wait_until(lambda: sink.readings > 0, what="the first write")
        await asyncio.sleep(BEFORE_S)
        server.stop()
        down_at = time.monotonic()
        outbox_rows, outbox_bytes = [], []
        while time.monotonic() - down_at < OUTAGE_S:
            await asyncio.sleep(1.0)
            outbox_rows.append(gateway.counters.outbox_batches)
            outbox_bytes.append(gateway.counters.outbox_bytes)
        assert sink.health is Health.DOWN
        written_while_down = sink.readings
        server.start()
        up_at = time.monotonic()
        backlog = received.readings - written_while_down
        await wait_until(lambda: sink.health is Health.UP, timeout_s=60,
                         what="the sink to write again")
        recovery_s = time.monotonic() - up_at
        await wait_until(lambda: sink.readings >= written_while_down + backlog, timeout_s=60,
                         what="the backlog to drain")
        drain_s = time.monotonic() - up_at
        await wait_until(done.is_set, timeout_s=AFTER_S + 60, what="the flow to end")
        await wait_until(lambda: sink.readings == total, timeout_s=60,
                         what="every reading in VictoriaMetrics")
    finally:
        stop.set()
        await task
        outbox.close()
    unique, lost, duplicated = read_back(server, site, expected)
    print(f"\nVictoriaMetrics down {OUTAGE_S:.0f} s at {total / seconds:.0f} readings/s: "
          f"{total} readings, {lost} lost, {duplicated} duplicated; outbox at most "
          f"{max(outbox_rows)} rows / {max(outbox_bytes) / 1e6:.1f} MB while down; "
          f"{sink.retries} failed connects and writes retried; sink up {recovery_s:.1f} s "
          f"after the server, backlog of {backlog} readings drained in {drain_s:.1f} s "
          f"({backlog / drain_s:,.0f} readings/s)")
    assert (lost, duplicated) == (0, 0)
    assert unique == expected
    assert outbox_rows[-1] > 0  # visible while down...
    assert outbox_rows == sorted(outbox_rows)  # ...and never drained before the server is back
    assert sink.retries > 0


def read_back(server: VictoriaMetrics, site: str, expected: Stored) -> tuple[Stored, int, int]:
    """What the server holds of the site, how many expected readings it lacks, and how
    many samples it holds twice; stops the server."""
    exported = server.export(f'{{site="{site}"}}')
    server.stop()
    stored = {(dict(k)["machine"], dict(k)["signal"]): samples for k, samples in exported.items()}
    unique = {key: dict(samples) for key, samples in stored.items()}
    lost = sum(len(expected[key].keys() - unique.get(key, {}).keys()) for key in expected)
    duplicated = sum(map(len, stored.values())) - sum(map(len, unique.values()))
    return unique, lost, duplicated
