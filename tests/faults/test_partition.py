"""A network partition between `ombre run` (in a network namespace of the test's own)
and Mosquitto, during a QoS 1 flow of 1,000 readings/s: every packet is dropped, none
refused, for 20 s. Ombre notices within 1.5 keep-alive periods, reconnects once the
link is back, and loses nothing."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import Publisher
from tests.faults.harness import Driven, Flow, end, rss_kb
from tests.faults.netlink import FaultyLink, link_broker, start_ombre
from tests.faults.test_sigkill import duplicates, stored

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RATE = 1000  # readings/s
KEEPALIVE_S = 5
PARTITION_S = 20.0


def test_partition_is_detected_within_one_and_a_half_keepalives_and_loses_nothing(
        tmp_path: Path) -> None:
    with FaultyLink() as link:
        broker = link_broker(link, tmp_path)
        ombre = start_ombre(link, broker, tmp_path, keepalive_s=KEEPALIVE_S)
        assert ombre.process is not None
        flow = Flow(Publisher(broker.port, client_id="partition-publisher", host=link.outer))
        driven = Driven(flow, ombre, RATE)
        try:
            driven.publish_for(5.0)
            rss_before = rss_kb(ombre.process.pid)
            since = driven.mark()
            link.faults.partitioned = True
            detected_s = driven.publish_for(PARTITION_S, until="source broker is down",
                                            since=since)
            driven.publish_for(PARTITION_S - detected_s)
            forwarded, dropped = link.counts()
            since = driven.mark()
            link.faults.partitioned = False
            recovered_s = driven.publish_for(60.0, until="source broker is up", since=since)
            driven.publish_for(5.0)
            driven.drain(lambda: sum(map(len, stored(tmp_path / "data"))))
            rss_after = rss_kb(ombre.process.pid)
            assert ombre.signal(signal.SIGTERM) == 0
        finally:
            end(flow, ombre)
            broker.stop()
    values = stored(tmp_path / "data")
    lost = flow.lost(values)
    print(f"\npartition of {PARTITION_S:.0f} s (packets dropped: {dropped} of "
          f"{forwarded + dropped} by then) at {RATE} readings/s, keep-alive {KEEPALIVE_S} s: "
          f"{flow.sent} published, {lost} lost, {duplicates(tmp_path / 'data')} written twice "
          f"(deduplicated on read); detected after {detected_s:.1f} s, connected again "
          f"{recovered_s:.1f} s after the link came back; RSS {rss_before / 1024:.1f} MB "
          f"before, {rss_after / 1024:.1f} MB after")
    flow.assert_each_stored_once(values)
    assert detected_s <= 1.5 * KEEPALIVE_S
    assert "Traceback" not in ombre.log.read_text()
