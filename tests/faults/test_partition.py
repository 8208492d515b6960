"""A network partition between `ombre run` (in a network namespace of the test's own)
and Mosquitto, during a QoS 1 flow of 1,000 readings/s: every packet is dropped, none
refused, for 20 s. Ombre notices within 1.5 × its keep-alive, reconnects once the link
is back, and loses nothing."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from bench.mosquitto import Mosquitto
from tests.conftest import Publisher, plant_dict, require_binary
from tests.faults.harness import Flow, rss_kb
from tests.faults.netlink import FaultyLink, OmbreInNamespace
from tests.faults.test_sigkill import duplicates, stored

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RATE = 1000  # readings/s
KEEPALIVE_S = 5
PARTITION_S = 20.0


def start_ombre(link: FaultyLink, broker: Mosquitto, tmp_path: Path,
                **source: object) -> OmbreInNamespace:
    """`ombre run` in the link's namespace, subscribed to `broker` across the link."""
    config = plant_dict(broker.port, tmp_path / "data")
    config["sources"][0].update(host=link.outer, **source)
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(config))
    ombre = OmbreInNamespace(link, path, tmp_path / "ombre.log")
    ombre.start()
    ombre.wait_for_log("source broker is up")
    return ombre


def publish_for(flow: Flow, ombre: OmbreInNamespace, start: float, seconds: float,
                until: str | None = None) -> float:
    """Go on with the flow at RATE for `seconds`, or until the log has `until` once more
    than now (then the time it took); fails if the process dies."""
    assert ombre.process is not None
    seen = ombre.log.read_text().count(until) if until else 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        flow.publish_until(int((time.monotonic() - start) * RATE))
        if until and ombre.log.read_text().count(until) > seen:
            return time.monotonic() - began
        assert ombre.process.poll() is None, ombre.log.read_text()[-3000:]
        time.sleep(0.01)
    assert until is None, f"no {until!r} in {seconds} s:\n{ombre.log.read_text()[-3000:]}"
    return seconds


def test_partition_is_detected_within_one_and_a_half_keepalives_and_loses_nothing(
        tmp_path: Path) -> None:
    with FaultyLink() as link:
        workdir = tmp_path / "mosquitto"
        workdir.mkdir()
        broker = Mosquitto(require_binary("mosquitto"), workdir, host=link.outer)
        broker.start()
        ombre = start_ombre(link, broker, tmp_path, keepalive_s=KEEPALIVE_S)
        assert ombre.process is not None
        flow = Flow(Publisher(broker.port, client_id="partition-publisher", host=link.outer))
        try:
            start = time.monotonic()
            publish_for(flow, ombre, start, 5.0)
            rss_before = rss_kb(ombre.process.pid)
            link.faults.partitioned = True
            detected_s = publish_for(flow, ombre, start, PARTITION_S, until="source broker is down")
            publish_for(flow, ombre, start, PARTITION_S - detected_s)
            forwarded, dropped = link.counts()
            link.faults.partitioned = False
            recovered_s = publish_for(flow, ombre, start, 60.0, until="source broker is up")
            publish_for(flow, ombre, start, 5.0)
            total = flow.sent
            deadline = time.monotonic() + 60
            while flow.acked < total or sum(map(len, stored(tmp_path / "data"))) < total:
                assert time.monotonic() < deadline, "the backlog never drained"
                flow.publish_until(total)
                time.sleep(0.1)
            rss_after = rss_kb(ombre.process.pid)
            assert ombre.signal(signal.SIGTERM) == 0
        finally:
            flow.publisher.close()
            if ombre.process.poll() is None:
                ombre.process.kill()
                ombre.process.wait()
            broker.stop()
    values = stored(tmp_path / "data")
    lost = sum(len(np.setdiff1d(flow.expected(k), v)) for k, v in enumerate(values))
    print(f"\npartition of {PARTITION_S:.0f} s (packets dropped: {dropped} of "
          f"{forwarded + dropped} by then) at {RATE} readings/s, keep-alive {KEEPALIVE_S} s: "
          f"{total} published, {lost} lost, {duplicates(tmp_path / 'data')} written twice "
          f"(deduplicated on read); detected after {detected_s:.1f} s, connected again "
          f"{recovered_s:.1f} s after the link came back; RSS {rss_before / 1024:.1f} MB "
          f"before, {rss_after / 1024:.1f} MB after")
    for k, v in enumerate(values):
        np.testing.assert_array_equal(v, flow.expected(k))  # none lost, each once
    assert detected_s <= 1.5 * KEEPALIVE_S
    assert "Traceback" not in ombre.log.read_text()
