"""The real `ombre run` process SIGKILLed 10 times at random moments (seeded) under a
QoS 1 flow, restarted each time: nothing the broker acknowledged to the publisher is
lost, at most one batch per kill is written twice (the broker's redelivery of the
last commit whose PUBACKs the kill lost), and the stored series, read back, hold each
reading exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.mosquitto import Mosquitto
from connectors.sqlite_ts import open_store
from tests.conftest import Publisher
from tests.faults.harness import SIGNALS, Flow
from tests.gateway.test_process import OmbreProcess, write_config

pytestmark = [pytest.mark.faults, pytest.mark.slow]

KILLS = 10
RATE = 1000  # readings/s
BATCH_MAX = 200  # runtime.batch_max_messages: the most one delivery holds
# The source's MQTT 5 receive maximum: the broker never has more messages than this
# delivered to Ombre and not yet acknowledged, so it cannot deliver more again after a
# kill. (One outbox commit may hold several deliveries when the writer runs late.)
IN_FLIGHT = 400
SEED = 8


def stored(data: Path) -> list[np.ndarray]:
    with open_store(data / "timeseries.sqlite") as store:
        return [store.read(m, s, 0, 2**62)[1] for m, s in SIGNALS]


def duplicates(data: Path) -> int:
    """Readings written twice so far: rows in the store less the distinct readings.
    Exact only while no process writes (a reader sees two moments otherwise)."""
    db = sqlite3.connect(data / "timeseries.sqlite")
    try:
        raw = int(db.execute("SELECT COALESCE(SUM(n), 0) FROM chunk").fetchone()[0])
    finally:
        db.close()
    return raw - sum(map(len, stored(data)))


@dataclass
class Load:
    """The flow at RATE readings/s from `start`, while a condition holds."""

    flow: Flow
    ombre: OmbreProcess
    data: Path
    start: float = 0.0

    def publish_while(self, condition: Callable[[], bool], what: str,
                      total: int = 2**62) -> None:
        """Go on with the flow (up to `total` readings) while `condition` holds; fails
        if the process dies or the condition still holds after 60 s."""
        deadline = time.monotonic() + 60
        while condition():
            assert time.monotonic() < deadline, (f"timed out waiting for {what}", self.flow,
                                                 list(map(len, stored(self.data))))
            assert self.ombre.process is not None
            assert self.ombre.process.poll() is None, self.ombre.log.read_text()
            next_poll = time.monotonic() + 0.1
            while time.monotonic() < next_poll:
                self.flow.publish_until(min(total, int((time.monotonic() - self.start)
                                                       * RATE)))
                time.sleep(0.005)


def test_ten_sigkills_under_load_lose_nothing_committed(broker: Mosquitto,
                                                         tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, broker.port, batch_max_messages=BATCH_MAX)
    plant = json.loads(config.read_text())
    plant["sources"][0]["receive_maximum"] = IN_FLIGHT
    config.write_text(json.dumps(plant))
    ombre = OmbreProcess(config, tmp_path / "ombre.log")
    flow = Flow(Publisher(broker.port, client_id="faults-publisher"))
    load = Load(flow, ombre, data)
    rng = random.Random(SEED)
    recovery_s: list[float] = []
    dead: list[int] = []  # duplicates at each kill, then after the last stop
    ombre.start()
    try:
        # Nothing is published before Ombre's first subscription: the broker keeps
        # messages only for a session that exists.
        ombre.wait_for_log("source broker is up")
        load.start = time.monotonic()
        for kill in range(KILLS):
            kill_at = time.monotonic() + rng.uniform(0.2, 1.5)
            load.publish_while(lambda: time.monotonic() < kill_at, "the kill")  # noqa: B023
            assert ombre.process is not None
            os.kill(ombre.process.pid, signal.SIGKILL)
            ombre.process.wait(10)
            dead.append(duplicates(data))
            ombre.start()
            restarted, published = time.monotonic(), flow.sent
            load.publish_while(lambda: ombre.log.read_text().count("source broker is up")
                               < kill + 2, "the restarted process to connect")  # noqa: B023
            recovery_s.append(time.monotonic() - restarted)
            # Caught up: everything published before the restart is stored; the broker
            # redelivers what was not acked first, so its duplicates are written by then.
            load.publish_while(lambda: sum(map(len, stored(data))) < published,  # noqa: B023
                               "the restarted process to catch up")
        total = flow.sent
        load.publish_while(lambda: flow.acked < total or sum(map(len, stored(data))) < total,
                           "every reading", total)
        assert ombre.signal(signal.SIGTERM) == 0
        dead.append(duplicates(data))
    finally:
        flow.publisher.close()
        if ombre.process is not None and ombre.process.poll() is None:
            ombre.process.kill()
            ombre.process.wait()
    values = stored(data)
    per_kill = np.diff(dead).tolist()  # each kill's duplicates are written after its restart
    lost = flow.lost(values)
    print(f"\n{KILLS} SIGKILLs at {RATE} readings/s: {total} published, {flow.acked} acked by "
          f"the broker, {lost} lost; written twice per kill {per_kill} (deduplicated on "
          f"read: none in the stored series); connected again after each restart in "
          f"{min(recovery_s):.1f}-{max(recovery_s):.1f} s")
    assert flow.acked == total
    flow.assert_each_stored_once(values)
    assert dead[0] == 0  # nothing written twice before the first kill
    # What a kill writes twice is what it had committed to the outbox but not yet
    # acknowledged (the last commit, or two when the paho thread ran late): the broker
    # delivers it again, at most IN_FLIGHT messages. The sink's own record of the outbox
    # seq it reached keeps its last write, whose cursor move the kill may have lost,
    # from being written again. Idempotent writes on (signal, ts) keep the redelivered
    # batch out of the stored series (checked above).
    assert max(per_kill) <= IN_FLIGHT
    assert "Traceback" not in ombre.log.read_text()
