"""The `ombre run` process itself: SIGTERM drains, SIGKILL loses nothing committed."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import cast

import numpy as np
import orjson
import pytest

from bench.mosquitto import Mosquitto, free_port
from connectors.sqlite_ts import open_store
from gateway.config import RuntimeConfig
from ombre.app import EXIT_FORCED, stop_timeout_s
from tests.conftest import Publisher, metric, metric_samples, plant_dict

pytestmark = pytest.mark.slow


class OmbreProcess:
    """`python -m ombre run CONFIG` as a child process, its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen[bytes] | None = None
        self._started_at = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._started_at = log.tell()  # where this run's lines begin
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ombre", "run", str(self.config)],
                stdout=log, stderr=log)

    def wait_for_log(self, text: str, timeout_s: float = 20) -> None:
        """Wait until the current run (not an earlier one) has logged `text`."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_bytes()[self._started_at:].decode():
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the log:\n{self.log.read_text()}")
            time.sleep(0.05)

    def signal(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(30)

    def kill(self) -> None:
        """Kills the process if it still runs: a test's cleanup, passed or failed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def write_config(tmp_path: Path, port: int, **runtime: object) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(plant_dict(port, tmp_path / "data", **runtime), default=str))
    return path


def stored(data: Path) -> tuple[np.ndarray, int]:
    """The values of m1/temp as read (deduplicated), and how many rows were written."""
    with open_store(data / "timeseries.sqlite") as store:
        values = store.read("m1", "temp", 0, 2**62)[1]
    db = sqlite3.connect(data / "timeseries.sqlite")
    raw = db.execute("SELECT COALESCE(SUM(n), 0) FROM chunk").fetchone()[0]
    db.close()
    return values, int(raw)


def test_sigterm_drains_everything_received_and_exits_cleanly(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    ombre = OmbreProcess(write_config(tmp_path, broker.port), tmp_path / "ombre.log")
    ombre.start()
    ombre.wait_for_log("source broker is up")
    base = time.time_ns() // 1_000_000 - 60_000
    infos = [publisher.publish("plant/l1/m1/temp", orjson.dumps({"value": i, "ts": base + i}))
             for i in range(2000)]
    for info in infos:
        info.wait_for_publish(10)
    assert ombre.signal(signal.SIGTERM) == 0
    log = ombre.log.read_text()
    assert "stopping: sources first" in log
    assert "stopped" in log
    assert "Traceback" not in log
    db = sqlite3.connect(tmp_path / "data" / "gateway.sqlite")
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0  # all drained
    db.close()
    received = len(stored(tmp_path / "data")[0])
    ombre.start()  # what was not acked before the stop is still at the broker
    # A SIGTERM before the process set its handlers would kill it, not stop it.
    ombre.wait_for_log("source broker is up")
    deadline = time.monotonic() + 20
    while len(stored(tmp_path / "data")[0]) < 2000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ombre.signal(signal.SIGTERM) == 0
    np.testing.assert_array_equal(stored(tmp_path / "data")[0], np.arange(2000))
    assert received > 0


def test_sigkill_at_random_moments_loses_nothing_committed(
        broker: Mosquitto, tmp_path: Path) -> None:
    batch_max = 200
    ombre = OmbreProcess(write_config(tmp_path, broker.port, batch_max_messages=batch_max),
                         tmp_path / "ombre.log")
    publisher = Publisher(broker.port)
    rng = random.Random(7)
    total, kills = 6000, 5
    base = time.time_ns() // 1_000_000 - 60_000
    kill_at = sorted(rng.sample(range(500, total - 500), kills))
    ombre.start()
    ombre.wait_for_log("source broker is up")
    try:
        for i in range(total):
            publisher.publish("plant/l1/m1/temp", orjson.dumps({"value": i, "ts": base + i}))
            if i in kill_at:
                time.sleep(rng.uniform(0, 0.1))
                assert ombre.process is not None
                os.kill(ombre.process.pid, signal.SIGKILL)
                ombre.process.wait(10)
                ombre.start()
            if i % 50 == 0:
                time.sleep(0.01)  # about 5,000 readings/s
        deadline = time.monotonic() + 60
        while len(stored(tmp_path / "data")[0]) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ombre.signal(signal.SIGTERM) == 0
    finally:
        publisher.close()
    values, raw = stored(tmp_path / "data")
    duplicates = raw - len(values)
    print(f"\n{kills} SIGKILLs: {total} published, {len(values)} stored, "
          f"{duplicates} duplicate rows written (deduplicated on read)")
    np.testing.assert_array_equal(values, np.arange(total))  # zero loss, in order
    assert duplicates <= kills * batch_max  # at most one batch per kill


def test_run_with_api_serves_connector_health_and_runtime_counters(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    """`ombre run --api`: one process, the API knows the gateway's connectors and
    counters; when the broker goes, /readyz says so and names it."""
    api_port = free_port()
    config = plant_dict(broker.port, tmp_path / "data")
    config["api"] = {"port": api_port}
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(config, default=str))
    log = tmp_path / "ombre.log"
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "ombre", "run", str(path),
                                    "--api"], stdout=out, stderr=out)
    ombre = OmbreProcess(path, log)
    ombre.process = process
    try:
        ombre.wait_for_log("source broker is up")
        ombre.wait_for_log("Ombre API and dashboard on")
        token = (tmp_path / "data" / "first-admin-token").read_text().strip()
        assert token not in log.read_text()  # a file of its own, never the output

        def get(route: str) -> tuple[int, bytes]:
            request = urllib.request.Request(f"http://127.0.0.1:{api_port}{route}",
                                             headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()

        base = time.time_ns() // 1_000_000 - 60_000
        infos = [publisher.publish("plant/l1/m2/speed",
                                   orjson.dumps({"value": i, "ts": base + i}))
                 for i in range(500)]
        for info in infos:
            info.wait_for_publish(10)
        deadline = time.monotonic() + 20
        # Written once by each of the two sinks (time series and shadow).
        speed = {"machine": "m2", "signal": "speed"}
        while metric(get("/metrics")[1].decode(), "ombre_signal_written_total", **speed) != 1000:
            assert time.monotonic() < deadline, get("/metrics")[1].decode()[-3000:]
            time.sleep(0.1)
        assert metric(get("/metrics")[1].decode(), "ombre_signal_received_total", **speed) == 500
        status, body = get("/readyz")
        assert status == 200, body
        assert {k: v["health"] for k, v in json.loads(body)["parts"].items()} == {
            "broker": "up", "timeseries": "up", "shadow": "up", "outbox": "up",
            "shadow database": "up", "system": "up"}

        broker.stop()
        deadline = time.monotonic() + 20
        while (status := get("/readyz")[0]) != 503:
            assert time.monotonic() < deadline, "/readyz stayed ready without the broker"
            time.sleep(0.1)
        ready = json.loads(get("/readyz")[1])
        assert ready["parts"]["broker"]["health"] == "down"
        assert ready["parts"]["broker"]["last_error"]
        assert ombre.signal(signal.SIGTERM) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_run_without_the_api_serves_its_own_metrics(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    """runtime.metrics.port: `ombre run` without the API serves the gateway's counters
    and the health of its parts in the Prometheus format, with no token; a port that is
    taken stops a second gateway at its start, named, with the config's exit code."""
    port = free_port()
    ombre = OmbreProcess(write_config(tmp_path, broker.port, metrics={"port": port}),
                         tmp_path / "ombre.log")
    ombre.start()
    try:
        ombre.wait_for_log("source broker is up")
        ombre.wait_for_log(f"gateway metrics on http://127.0.0.1:{port}/metrics")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                assert r.headers["Content-Type"].startswith("text/plain; version=")
                return cast(bytes, r.read()).decode()

        base = time.time_ns() // 1_000_000 - 60_000
        for info in [publisher.publish("plant/l1/m2/speed",
                                       orjson.dumps({"value": i, "ts": base + i}))
                     for i in range(100)]:
            info.wait_for_publish(10)
        speed = {"machine": "m2", "signal": "speed"}
        deadline = time.monotonic() + 20
        while metric(scrape(), "ombre_signal_written_total", **speed) != 200:  # two sinks
            assert time.monotonic() < deadline, scrape()[-3000:]
            time.sleep(0.1)
        text = scrape()
        assert metric(text, "ombre_signal_received_total", **speed) == 100
        assert metric(text, "ombre_connector_readings_total", connector="broker",
                      kind="source") == 100
        assert {(labels["connector"], labels["kind"]): up for labels, up
                in metric_samples(text, "ombre_connector_up")} == {
            ("broker", "source"): 1, ("timeseries", "sink"): 1, ("shadow", "sink"): 1,
            ("outbox", "store"): 1, ("system", "clock"): 1}

        (tmp_path / "second").mkdir()
        second = write_config(tmp_path / "second", broker.port, metrics={"port": port})
        refused = subprocess.run([sys.executable, "-m", "ombre", "run", str(second)],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2, refused.stderr
        assert (f"ombre run: cannot serve the metrics on 127.0.0.1:{port}: Address already "
                f"in use; change it in {second}") in refused.stderr
        assert ombre.signal(signal.SIGTERM) == 0
    finally:
        ombre.kill()


HELD_BACK = 2000  # messages published while the source is held back


def start_held_back(broker: Mosquitto, publisher: Publisher, tmp_path: Path,
                    drain_timeout_s: float) -> tuple[OmbreProcess, sqlite3.Connection]:
    """`ombre run` whose MQTT source is held back: the test holds the outbox's write
    lock, so the writer cannot commit, the queue fills and paho's thread waits for room
    with QoS 1 messages unacked. Returns the process and the connection holding the lock."""
    ombre = OmbreProcess(write_config(tmp_path, broker.port, drain_timeout_s=drain_timeout_s,
                                      batch_max_messages=10, queue_max_deliveries=1),
                         tmp_path / "ombre.log")
    ombre.start()
    ombre.wait_for_log("source broker is up")
    lock = sqlite3.connect(tmp_path / "data" / "gateway.sqlite", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    base = time.time_ns() // 1_000_000 - 60_000
    infos = [publisher.publish("plant/l1/m1/temp", orjson.dumps({"value": i, "ts": base + i}))
             for i in range(HELD_BACK)]
    for info in infos:
        info.wait_for_publish(10)
    ombre.wait_for_log("store outbox is down")  # its writer gave up waiting for the lock
    return ombre, lock


def test_a_stop_while_the_source_is_held_back_ends_and_loses_nothing(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    ombre, lock = start_held_back(broker, publisher, tmp_path, drain_timeout_s=2)
    assert ombre.process is not None
    ombre.process.send_signal(signal.SIGTERM)
    try:
        code = ombre.process.wait(stop_timeout_s(RuntimeConfig(drain_timeout_s=2)) + 10)
    except subprocess.TimeoutExpired:
        ombre.process.kill()
        pytest.fail(f"the process did not stop:\n{ombre.log.read_text()}")
    finally:
        lock.close()
    assert code == 0, ombre.log.read_text()
    assert "exiting without draining" in ombre.log.read_text()
    ombre.start()  # nothing was acked: the broker sends it all again
    ombre.wait_for_log("source broker is up")
    deadline = time.monotonic() + 30
    while len(stored(tmp_path / "data")[0]) < HELD_BACK and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ombre.signal(signal.SIGTERM) == 0
    np.testing.assert_array_equal(stored(tmp_path / "data")[0], np.arange(HELD_BACK))


def test_a_second_sigterm_exits_at_once_while_the_source_is_held_back(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    ombre, lock = start_held_back(broker, publisher, tmp_path, drain_timeout_s=600)
    try:
        assert ombre.process is not None
        ombre.process.send_signal(signal.SIGTERM)
        ombre.wait_for_log("stopping: sources first")
        assert ombre.signal(signal.SIGTERM) == EXIT_FORCED
    finally:
        lock.close()
        ombre.kill()
    assert "second SIGTERM: exiting at once" in ombre.log.read_text()
    db = sqlite3.connect(tmp_path / "data" / "gateway.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
