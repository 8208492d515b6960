"""`ombre run CONFIG --test` as an integrator runs it: a real child process against a
real Mosquitto, beside a running `ombre run` with the same config, which it must not
disturb; and against a broker that is not there."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.mosquitto import Mosquitto, free_port
from connectors.sqlite_ts import open_store
from tests.conftest import Publisher, plant_dict
from tests.gateway.test_process import OmbreProcess
from tests.shadow.test_order_lifecycle import poll


def written(data: Path) -> int:
    """How many m1/temp readings the running gateway stored."""
    with open_store(data / "timeseries.sqlite", readonly=True) as store:
        return store.count("m1", "temp", 0, 2**62)


def commission(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ombre", "run", str(config), "--test",
                           *args], capture_output=True, text=True, timeout=60, check=False)


def assert_printed(out: str) -> None:
    """What the trial of the first test printed: readings, a quarantine, m1's state."""
    for expected in ("broker: connected", "broker: m1/temp = ", " degC at ",
                     "broker: m1/state = 'RUNNING'", "quarantined plant/l1/m1/speed: ",
                     "m1: state 'RUNNING' (APT) since "):
        assert expected in out, expected
    assert "m2: state" not in out  # no state table: nothing to read
    summary = out[out.index("summary after 3 s (nothing was written):"):]
    assert "broker: connected; " in summary
    assert "1 quarantined" in summary
    assert "2 of 9 declared signals seen; never seen: m1/speed, m2/temp" in summary


def test_commissioning_prints_what_arrives_and_leaves_the_running_gateway_alone(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher) -> None:
    running = tmp_path / "running.yaml"
    running.write_text(json.dumps(plant_dict(broker.port, tmp_path / "data")))
    trial = plant_dict(broker.port, tmp_path / "test-data")  # the same client id
    trial["sites"][0]["lines"][0]["machines"][0]["state"] = {
        "type": "table", "signal": "state", "map": {"RUNNING": "APT"}}
    (tmp_path / "trial.yaml").write_text(json.dumps(trial))
    ombre = OmbreProcess(running, tmp_path / "ombre.log")
    stop = threading.Event()
    sent = {"temp": 0}

    def flow() -> None:  # m1 reports every 50 ms, as a machine does
        while not stop.is_set():
            sent["temp"] += 1
            ms = time.time_ns() // 10**6
            publisher.publish("plant/l1/m1/temp", json.dumps({"value": sent["temp"], "ts": ms}))
            if sent["temp"] % 20 == 1:
                publisher.publish("plant/l1/m1/state", json.dumps({"value": "RUNNING", "ts": ms}))
            if sent["temp"] == 30:
                publisher.publish("plant/l1/m1/speed", b'{"value": "fast"}')  # not a number
            time.sleep(0.05)

    thread = threading.Thread(target=flow)
    try:
        ombre.start()
        ombre.wait_for_log("source broker is up")
        # The machine starts reporting once the trial is connected: on a loaded machine
        # its start (imports, connect) can take a good part of its 3 s.
        trial_run = subprocess.Popen(
            [sys.executable, "-m", "ombre", "run", str(tmp_path / "trial.yaml"), "--test",
             "--seconds", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert trial_run.stdout is not None
        first = trial_run.stdout.readline()
        thread.start()
        out, err = trial_run.communicate(timeout=60)
        out = first + out
        time.sleep(1)  # the running gateway goes on receiving
        stop.set()
        thread.join()
        publisher.publish("plant/l1/m1/temp", json.dumps({"value": -1.0}), qos=1).wait_for_publish()
        poll(lambda: written(tmp_path / "data") == sent["temp"] + 1,
             "the running gateway to write every reading")
        assert ombre.signal(2) == 0
    finally:
        stop.set()
        ombre.kill()
    assert first == "broker: connected\n", first + err
    assert trial_run.returncode == 0, err + out
    assert_printed(out)
    assert not (tmp_path / "test-data").exists()  # wrote nothing
    # The running gateway kept its session: everything sent, once, no reconnection.
    log = (tmp_path / "ombre.log").read_text()
    assert log.count("source broker is up") == 1, log
    assert written(tmp_path / "data") == sent["temp"] + 1


def test_a_source_that_never_connects_is_named_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "plant.yaml"
    config.write_text(json.dumps(plant_dict(free_port(), tmp_path / "data")))
    result = commission(config, "--seconds", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "broker: never connected (" in result.stdout
    assert "0 of 9 declared signals seen" in result.stdout
    assert "Traceback" not in result.stderr
