"""A slow, lossy link between `ombre run` (in a network namespace of the test's own) and
Mosquitto: every packet delayed 300 ± 100 ms, so they arrive out of order, and 5 % of
them dropped, both ways, for the whole of a QoS 1 flow. TCP and the session carry it
through: nothing is lost and nothing is stored twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Publisher
from tests.faults.harness import Driven, Flow, end, rss_kb
from tests.faults.netlink import (
    FaultyLink,
    link_broker,
    start_ombre,
    stored_values,
    wait_subscribed,
)
from tests.faults.test_sigkill import duplicates, stored

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RATE = 100  # readings/s: about what TCP carries at a 600 ms round trip and 5 % loss
FLOW_S = 30.0


def test_latency_loss_and_reordering_lose_nothing_and_store_nothing_twice(
        tmp_path: Path) -> None:
    with FaultyLink() as link:
        broker = link_broker(link, tmp_path)
        link.faults.delay_s, link.faults.jitter_s, link.faults.loss = 0.3, 0.1, 0.05
        ombre = start_ombre(link, broker, tmp_path)
        assert ombre.process is not None
        flow = Flow(Publisher(broker.port, client_id="latency-publisher", host=link.outer))
        wait_subscribed(flow.publisher, tmp_path / "data")
        driven = Driven(flow, ombre, RATE)
        try:
            rss_before = rss_kb(ombre.process.pid)
            driven.publish_for(FLOW_S)
            driven.drain(lambda: sum(map(len, stored(tmp_path / "data"))))
            drained_s = time.monotonic() - driven.start
            rss_after = rss_kb(ombre.process.pid)
            forwarded, dropped = link.counts()
            assert ombre.signal(signal.SIGTERM) == 0
        finally:
            end(flow, ombre)
            broker.stop()
    values = stored(tmp_path / "data")
    lost = flow.lost(values)
    # Rows beyond the distinct readings, less the subscription probes on m3/temp.
    twice = duplicates(tmp_path / "data") - len(stored_values(tmp_path / "data", "m3", "temp"))
    log = ombre.log.read_text()
    print(f"\n300 ± 100 ms, 5 % loss: {flow.sent} readings published at {RATE}/s over "
          f"{FLOW_S:.0f} s, {dropped} of {forwarded + dropped} packets dropped on the link; "
          f"{lost} lost, {twice} stored twice, {log.count('source broker is up')} "
          f"connection(s); all stored {drained_s:.1f} s after the first publish; RSS "
          f"{rss_before / 1024:.1f} MB before, {rss_after / 1024:.1f} MB after")
    flow.assert_each_stored_once(values)
    assert twice == 0
    assert "Traceback" not in log
