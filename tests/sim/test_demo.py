"""`ombre demo` as a user runs it: a real child process with its OPC UA server, the
MQTT broker at 127.0.0.1:1883 (through the demo's own relays), the gateway, the shadow
and the API, at --speed 120 for a bounded time. Checked through the API while it runs,
and through its stores once it has stopped."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from api.tokens import check_token
from bench.mosquitto import free_port
from connectors.sparkplug_b_pb2 import Payload
from connectors.sqlite_ts import open_store
from ombre.demo import KIOSK_FILE
from shadow.schema import database_url, open_engine
from sim.scenarios import SCENARIOS
from tests.api.conftest import chromium
from tests.conftest import metric

pytestmark = pytest.mark.slow

SPEED = 120
# Long enough for the drift scenario (it starts after 2 simulated hours, once the
# detector has learned its baseline) and for the 60 s broker outage and its recovery.
DURATION_S = 100
STARTED = re.compile(r"dashboard at (http://127\.0\.0\.1:\d+)/#token=(\S+)")
UNS_COMMAND = re.compile(r"live plant \(UNS\): mosquitto_sub -h (\S+) -p (\d+) -t 'ombre/#'")
SPARKPLUG_COMMAND = re.compile(r"Sparkplug B: mosquitto_sub .* -t 'spBv1\.0/ombre/\+/([^/]+)/#'")
MACHINES = {"cnc-1", "press-1", "pack-1", "lathe-1"}


class Northbound:
    """A subscriber to the demo's broker, as `mosquitto_sub -t 'ombre/#' -t 'spBv1.0/#'`:
    the UNS topics it saw, and each Sparkplug B message type per (node, device), with the
    metric names of the births and the count of metrics in the data."""

    def __init__(self, host: str, port: int) -> None:
        self.uns: dict[str, int] = {}
        self.births: dict[tuple[str, str], list[str]] = {}  # (node, device) -> metrics
        self.data: dict[tuple[str, str], int] = {}  # (node, device) -> DDATA metrics
        self.nbirths: list[str] = []
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe(
            [("ombre/demo/#", 0), ("spBv1.0/ombre/#", 0)])
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        levels = message.topic.split("/")
        if levels[0] == "ombre":
            self.uns[message.topic] = self.uns.get(message.topic, 0) + 1
            return
        kind, node, device = levels[2], levels[3], "/".join(levels[4:])
        payload = Payload.FromString(bytes(message.payload))
        if kind == "NBIRTH":
            self.nbirths.append(node)
        elif kind == "DBIRTH":
            self.births[node, device] = [m.name for m in payload.metrics]
        elif kind == "DDATA":
            self.data[node, device] = self.data.get((node, device), 0) + len(payload.metrics)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@dataclass
class Run:
    data_dir: Path
    returncode: int
    log: str
    machines: list[list[dict[str, Any]]] = field(default_factory=list)  # each poll's list
    demo: dict[str, Any] = field(default_factory=dict)
    kpis: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    assessment: dict[str, Any] = field(default_factory=dict)
    ready: dict[str, Any] = field(default_factory=dict)
    banner: str = ""
    metrics: str = ""
    client: str = ""  # the demo's client id: its Sparkplug B node
    northbound: Northbound | None = None


def _get(url: str, token: str, *, text: bool = False) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode() if text else json.load(response)
    except urllib.error.HTTPError as exc:  # say what the server answered
        raise AssertionError(f"GET {url}: {exc.code} {exc.read().decode()[:2000]}") from None


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def _start(data_dir: Path, port: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ombre", "demo", "--data-dir", str(data_dir), "--port",
         str(port), "--log-level", "warning", *args],
        stderr=subprocess.PIPE, text=True)


def _wait_started(child: subprocess.Popen[str], pattern: re.Pattern[str] = STARTED,
                  lines: list[str] | None = None) -> re.Match[str]:
    """Reads the demo's stderr into `lines` up to the first line `pattern` finds."""
    assert child.stderr is not None
    lines = [] if lines is None else lines
    for line in child.stderr:
        lines.append(line)
        found = pattern.search(line)
        if found:
            return found
    raise AssertionError("ombre demo ended before serving:\n" + "".join(lines))


def _banner(url: str, token: str) -> str:
    """The dashboard's demo banner, as Chromium shows it."""
    browser = chromium(1280, 800)
    try:
        browser.get(f"{url}/#token={token}")
        WebDriverWait(browser, 20).until(
            lambda b: "drift" in b.find_element(By.ID, "demo").text)
        return str(browser.find_element(By.ID, "demo").text)
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One demo with the drift, broker-outage and bad-payloads scenarios."""
    data_dir = tmp_path_factory.mktemp("demo")
    child = _start(data_dir, free_port(), "--speed", str(SPEED), "--duration",
                   str(DURATION_S), "--scenario", "drift", "--scenario", "broker-outage",
                   "--scenario", "bad-payloads")
    result = Run(data_dir, -1, "")
    try:
        lines: list[str] = []
        url, token = _wait_started(child, STARTED, lines).groups()
        uns = _wait_started(child, UNS_COMMAND, lines)
        result.northbound = Northbound(uns[1], int(uns[2]))
        result.client = _wait_started(child, SPARKPLUG_COMMAND, lines)[1]
        deadline = time.monotonic() + DURATION_S - 8
        while time.monotonic() < deadline:
            result.machines.append(_get(f"{url}/api/v1/machines", token))
            time.sleep(2)
        # Health first: the demo stops at --duration, and the browser below can take
        # seconds on a loaded machine (a stopping gateway is not ready).
        result.ready = _get(f"{url}/readyz", token)
        result.metrics = _get(f"{url}/metrics", token, text=True)
        result.banner = _banner(url, token)
        result.demo = _get(f"{url}/api/v1/demo", token)
        started = min(s["starts_ns"] - int(SCENARIOS[s["name"]].at_s * 1e9)
                      for s in result.demo["scenarios"])
        window = f"from={_iso(started)}&to={_iso(result.demo['sim_ns'])}"
        result.kpis = _get(f"{url}/api/v1/kpis?{window}", token)
        result.alerts = _get(f"{url}/api/v1/alerts", token)
        result.assessment = _get(f"{url}/api/v1/assessment", token)
        _, rest = child.communicate(timeout=120)
        result.returncode, result.log = child.returncode, "".join(lines) + rest
        yield result
    finally:
        if result.northbound is not None:
            result.northbound.close()
        if child.poll() is None:
            child.kill()
            child.wait()


def test_machines_are_visible_with_plausible_states(run: Run) -> None:
    assert run.returncode == 0, run.log
    last = {m["id"]: m for m in run.machines[-1]}
    assert set(last) == {"cnc-1", "press-1", "pack-1", "lathe-1"}
    seen = {(m["id"], m["category"]) for poll in run.machines for m in poll}
    # Every machine was seen producing at some point, and nothing else than the ISO
    # 22400 categories (or unknown while silent) appeared.
    for machine in last:
        assert (machine, "APT") in seen, sorted(seen, key=str)
    assert {c for _, c in seen} <= {"APT", "ASUT", "ADET", "ADOT", "PDOT", None}
    assert all(m["job"] for m in last.values() if m["category"] in ("APT", "ASUT"))
    # The press's states are its rules' names, and idle depends on its job.
    press = {(m["state"], m["category"]) for poll in run.machines for m in poll
             if m["id"] == "press-1" and m["state"] not in ("no data yet", "unknown")}
    assert ("producing", "APT") in press, sorted(press)
    assert press <= {("mould change", "ASUT"), ("producing", "APT"), ("fault", "ADET"),
                     ("idle, job loaded", "ADET"), ("idle, no job", "ADOT"),
                     ("mould change", "PDOT"), ("producing", "PDOT"), ("fault", "PDOT"),
                     ("idle, job loaded", "PDOT"), ("idle, no job", "PDOT")}, sorted(press)


def test_the_dashboard_says_what_runs_and_what_to_look_for(run: Run) -> None:
    assert f"Demo \u00d7{SPEED}" in run.banner
    for name in ("drift", "broker-outage", "bad-payloads"):
        assert f"scenario {name}" in run.banner
        assert SCENARIOS[name].look_for[0][:40] in run.banner


def test_oee_is_realistic(run: Run) -> None:
    (plant,) = run.kpis
    oee = plant["kpis"]["oee"]["value"]
    assert oee is not None, plant["kpis"]
    print(f"demo OEE over {plant['time_s']['POT'] / 3600:.1f} simulated hours: {oee:.3f}; "
          + ", ".join(f"{k} {plant['kpis'][k]['value']:.3f}"
                      for k in ("availability", "effectiveness", "quality_ratio")))
    assert 0.4 <= oee <= 0.95, plant["kpis"]["oee"]
    # Above 1, parts were counted against too little run time: the broker outage's
    # backlog folded into the moment it arrived once made 1.40 of it.
    assert plant["kpis"]["effectiveness"]["value"] <= 1.0, plant["kpis"]["effectiveness"]
    assert plant["quantities"]["PQ"] > 0


def test_the_assessment_measures_completeness_through_the_outage(run: Run) -> None:
    """The lathe is polled, the MQTT machines declare their period; their backlog has
    arrived, so the outage lowers their completeness no more. OPC UA subscriptions have
    no rate to expect: not measured, and said so. (A loaded machine lags: not 100 %.)"""
    completeness = {e["scope"]: e for e in run.assessment["evidence"]
                    if e["key"] == "data_completeness"}
    print("demo data completeness: " + ", ".join(
        f"{scope} {e['value'] if e['value'] is None else round(e['value'], 3)}"
        for scope, e in completeness.items()))
    for machine in ("lathe-1", "press-1", "pack-1"):
        value = completeness[f"machine:{machine}"]["value"]
        assert value is not None, completeness
        # Slightly above 1 at the run's edges (measured: 1.0005 for press-1).
        assert 0.8 <= value <= 1.01, (machine, completeness)
    assert completeness["machine:cnc-1"]["value"] is None
    assert "MachineryItemState" in completeness["machine:cnc-1"]["note"]


def test_drift_raises_exactly_one_alert_on_the_spindle_temperature(run: Run) -> None:
    assert [(a["machine"], a["signal"], a["direction"]) for a in run.alerts] == [
        ("cnc-1", "spindle_temp", "up")], run.alerts


def test_broker_outage_loses_no_reading(run: Run) -> None:
    assert "broker reachable again" in run.log
    published = json.loads((run.data_dir / "demo.json").read_text())["published"]
    assert published, "the demo recorded no MQTT reading"
    with open_store(run.data_dir / "timeseries.sqlite") as store:
        stored = {key: store.count(*key.split("/"), 0, 2**62) for key in published}
    assert stored == published


def test_bad_payloads_are_quarantined_and_counted(run: Run) -> None:
    state = json.loads((run.data_dir / "demo.json").read_text())
    with sqlite3.connect(run.data_dir / "gateway.sqlite") as db:
        (quarantined,) = db.execute(
            "SELECT COUNT(*) FROM quarantine WHERE source = 'demo-broker'").fetchone()
    assert state["bad_payloads_sent"] == SCENARIOS["bad-payloads"].amount
    assert quarantined == state["bad_payloads_sent"]


def test_the_plant_is_published_as_uns_and_sparkplug_b(run: Run) -> None:
    """What `mosquitto_sub -t 'ombre/#' -v` and `-t 'spBv1.0/#'` show while the demo
    runs: each machine's readings under its ISA-95 path and its live model, and the
    demo's Sparkplug B edge node with a birth and data for each machine."""
    seen = run.northbound
    assert seen is not None
    uns = {tuple(t.split("/")[1:]) for t in seen.uns}
    for machine in MACHINES:
        signals = {path[4] for path in uns if path[3] == machine}
        assert "_shadow" in signals, (machine, sorted(uns))
        assert len(signals) > 1, (machine, sorted(uns))
    assert ("demo", "moulding", "press-1", "_shadow", "state") in {
        (p[0], p[2], p[3], p[4], p[5]) for p in uns if len(p) == 6}, sorted(uns)
    assert run.client in seen.nbirths, seen.nbirths
    for machine in MACHINES:
        assert seen.births.get((run.client, machine)), (machine, sorted(seen.births))
        assert seen.data.get((run.client, machine), 0) > 0, (machine, seen.data)
    assert "cycle_counter" in seen.births[run.client, "press-1"]


def test_readyz_and_metrics_show_the_gateway_in_the_same_process(run: Run) -> None:
    assert run.ready["status"] == "ready"
    assert {name: c["health"] for name, c in run.ready["parts"].items()} == {
        "cnc-1-opcua": "up", "lathe-1-modbus": "up", "demo-broker": "up", "timeseries": "up",
        "uns": "up", "sparkplug": "up", "shadow": "up",
        "outbox": "up", "shadow database": "up", "system": "up"}
    received = metric(run.metrics, "ombre_signal_received_total", machine="cnc-1",
                      signal="spindle_temp")
    assert received is not None, run.metrics[:2000]
    assert received > 0
    assert metric(run.metrics, "ombre_connector_quarantined_total", connector="demo-broker",
                  kind="source") == 40


def _run_to_end(data_dir: Path, *args: str, interrupt_after_s: float | None = None) -> str:
    """Runs a demo to its end: its --duration, or Ctrl-C (SIGINT) after a while."""
    child = _start(data_dir, free_port(), "--speed", str(SPEED), *args)
    lines: list[str] = []
    try:
        _wait_started(child, STARTED, lines)
        if interrupt_after_s is not None:
            time.sleep(interrupt_after_s)
            child.send_signal(signal.SIGINT)
        _, rest = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    log = "".join(lines) + rest
    assert child.returncode == 0, log
    return log


def _tokens_across(data_dir: Path, first: str, second: str) -> tuple[bool, bool]:
    """After a second run: whether the first run's admin token is revoked and the
    second's accepted, and whether the wall display's kiosk token (kept in the data
    directory) is still the first run's (token 2: its admin token was 1) and accepted."""
    engine = open_engine(database_url(None, data_dir))
    try:
        admin, admin_2 = (found[2] for found in map(STARTED.search, (first, second)) if found)
        kiosk = (data_dir / KIOSK_FILE).read_text().strip()
        return (check_token(engine, admin) is None and check_token(engine, admin_2) is not None,
                kiosk.startswith("ombre_2_") and check_token(engine, kiosk) is not None)
    finally:
        engine.dispose()


def test_a_second_demo_goes_on_and_reset_starts_afresh(tmp_path: Path) -> None:
    """With no broker at --broker, the demo starts its own mosquitto. The OPC UA server
    restarts, pack-1's counters reset and cnc-1 breaks down; a second run goes on from
    the first one's clock, orders and counters; --reset forgets them."""
    data_dir = tmp_path / "demo"
    log = _run_to_end(data_dir, "--broker", f"127.0.0.1:{free_port()}", "--duration", "35",
                      "--scenario", "opcua-restart", "--scenario", "counter-reset",
                      "--scenario", "breakdown", "--log-level", "info")
    assert "starting mosquitto" in log
    first = json.loads((data_dir / "demo.json").read_text())
    with open_store(data_dir / "timeseries.sqlite") as store:
        gaps = store.read_events("_gateway", 0, 2**62)
    assert [e.name for e in gaps] == ["opcua_gap"], gaps
    with sqlite3.connect(data_dir / "ombre.sqlite") as db:
        implausible = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        negative = db.execute("SELECT COUNT(*) FROM production_count WHERE pq < 0").fetchone()[0]
        intervals = db.execute(
            "SELECT start_ns, end_ns, raw_state FROM state_interval WHERE machine_id = "
            "'cnc-1' ORDER BY start_ns").fetchall()
    assert (implausible, negative) == (0, 0)
    # The scripted 20-minute breakdown (OutOfService), to a step of the machine (2 s),
    # whatever shift or planned-stop edges split its intervals. At --speed 120 the OPC UA
    # restart (10 s of wall clock, 20 simulated minutes, plus the server's start) can
    # still be under way when it begins: the shadow then learns of it at the reconnect,
    # and the time before is unknown, not running.
    spans: list[list[int]] = []
    before: dict[int, tuple[int, str]] = {}  # interval end -> (its start, its state)
    for start, stop, state in intervals:
        if state.startswith("OutOfService"):
            if spans and start == spans[-1][1]:
                spans[-1][1] = stop
            else:
                spans.append([start, stop])
        before[stop] = (start, state)
    assert len(spans) == 1, spans
    start, stop = spans[0]
    begun = stop - 1200 * 10**9  # when the simulator broke it down
    assert begun - 10 * 10**9 <= start, (start, stop)
    if start > begun + 10 * 10**9:  # unknown from before it began (shift edges split it)
        link_down_since, state = before[start]
        while state == "unknown" and link_down_since in before \
                and before[link_down_since][1] == "unknown":
            link_down_since = before[link_down_since][0]
        assert (state, link_down_since <= begun) == ("unknown", True), (before[start], begun)

    again = _run_to_end(data_dir, interrupt_after_s=5)
    # It stops cleanly; its admin token is its own, the wall display's goes on.
    assert ("Ombre demo stopped" in again, *_tokens_across(data_dir, log, again)) \
        == (True, True, True)
    second = json.loads((data_dir / "demo.json").read_text())
    assert second["client"] == first["client"]
    assert second["sim_ns"] > first["sim_ns"] + 5 * SPEED * 10**9 * 0.9
    for machine, saved in first["machines"].items():
        assert second["machines"][machine]["seq"] >= saved["seq"]
        assert second["machines"][machine]["total"] >= saved["total"] or machine == "pack-1"
    # No orphan: the open jobs are the machines' current ones, an order runs only while a
    # job of it does, and every ended order says how.
    with sqlite3.connect(data_dir / "ombre.sqlite") as db:
        current = {(m, json.loads(snap)["job"]) for m, snap in
                   db.execute("SELECT machine_id, snapshot FROM machine_state")}
        open_jobs = set(db.execute("SELECT machine_id, job_key FROM job WHERE end_ns IS NULL"))
        orders = dict(db.execute("SELECT job_key, status FROM production_order"))
        unexplained = db.execute("SELECT COUNT(*) FROM production_order WHERE status IN "
                                 "('completed', 'closed') AND end_reason IS NULL").fetchone()[0]
    assert open_jobs == {(m, job) for m, job in current if job}
    assert {k for k, status in orders.items() if status == "running"} \
        == {job for _, job in open_jobs}
    assert {orders[f"{p}00001"] for p in "MPK"} == {"completed"}  # the first run's
    assert unexplained == 0

    _run_to_end(data_dir, "--duration", "3", "--reset")
    third = json.loads((data_dir / "demo.json").read_text())
    assert third["client"] != first["client"]
    assert all(m["seq"] == 1 for m in third["machines"].values())
