"""The demo's shop floor on the maturity index, as docs/training/maturity.*.md walks a
learner through it: the demo's plant (sim/plant.yaml) and its four simulated machines
(sim/machines.py, stepped as `ombre demo` steps them) replayed through the real
pipeline, with the broker outage of sim/scenarios.py at --speed 120. A shift of the demo
is at stage 3; giving its stops reasons takes information systems to transparency; the
outage makes the MQTT machines unknown while it lasts (resources fall back to stage 2),
and once their backlog has arrived the timeline has no hole and the stage is back."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ombre.cli import main
from ombre.config import load_config
from ombre.demo import PLANT, modbus_env
from shadow.calendar import PlannedSchedule, to_ns
from shadow.orders import OrderIn
from shadow.schema import database_url, open_engine
from shadow.store import ShadowStore
from sim.machines import MACHINES, NS, MachineSim
from sim.scenarios import SCENARIOS

SPEED = 120  # the exercise's --speed
START = datetime(2026, 3, 2, 5, tzinfo=UTC)  # a Monday, 06:00 in Paris (the demo's calendar)
# The outage of the late shift, 16:00 in Paris: 60 wall-clock seconds, 2 simulated hours.
OUTAGE = (START + timedelta(hours=10),
          START + timedelta(hours=10, seconds=SCENARIOS["broker-outage"].amount * SPEED))
MQTT = {m.id for m in MACHINES if m.protocol.startswith("mqtt")}  # press-1, pack-1
# What a machine's state is read from, sent on every change, and the signals a drift
# detector watches, sent every step as the demo does; the other signals (counters,
# temperatures, speeds) are sampled once a simulated minute, well inside silence_s.
STATE_SIGNALS = {"MachineryItemState", "MachineryOperationMode", "running", "fault",
                 "stack_light", "mould_change", "PackMLState", "PackMLMode", "order"}
SAMPLE_NS = 60 * NS
REASON = {"ADET": "jam", "ADOT": "no-operator"}  # the demo's reason codes


def stamp(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).isoformat().replace("+00:00", "Z")


class DemoFloor:
    """The demo's machines stepped in simulated time, as `ombre demo` steps them, and the
    `ombre` commands on a copy of its config."""

    def __init__(self, tmp_path: Path) -> None:
        env = {"DEMO_MQTT_PORT": "1883", "DEMO_BROKER_HOST": "127.0.0.1",
               "DEMO_BROKER_PORT": "1883", "DEMO_API_PORT": "8080", "DEMO_MODBUS_PORT": "502",
               "DEMO_OPCUA_ENDPOINT": "opc.tcp://127.0.0.1:4840", "DEMO_CLIENT_ID": "demo",
               "DEMO_TOPIC": "ombre-demo/test", **modbus_env(SPEED)}
        text = PLANT.read_text()
        for key, value in env.items():
            text = text.replace(f"${{{key}}}", value)
        self.dir = tmp_path
        self.config = tmp_path / "plant.yaml"
        self.config.write_text(f"data_dir: {tmp_path / 'data'}\n{text}")
        config = load_config(self.config, {})
        self.schedule = PlannedSchedule(config.shadow.calendar)
        self.watched = {(m.id, d.signal) for m in config.machines() for d in m.drift}
        now = to_ns(START)
        self.machines = [MachineSim(model, now, seed=i + 1) for i, model in enumerate(MACHINES)]
        self.orders: list[dict[str, Any]] = []
        self.sent: dict[tuple[str, str], tuple[object, int]] = {}
        self.files = 0

    def ombre(self, capsys: pytest.CaptureFixture[str], *args: str) -> str:
        code = main([*args, "-c", str(self.config)])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    def readings(self, until: datetime) -> list[tuple[int, str, str, object]]:
        """Steps every machine up to `until`: (ts_ns, machine, signal, value) sent."""
        out = []
        for sim in self.machines:
            m = sim.model
            while sim.t_ns < to_ns(until):
                t = sim.t_ns
                sim.step(self.schedule.inside(m.id, t), lambda s: self.orders.append(OrderIn(
                    order_no=s.order, planned_qty=s.order_qty, pru_s=s.model.pru_s,
                    planned_scrap_qty=round(s.order_qty * s.model.scrap_rate),
                    machine=s.model.id).row()))
                for name, value in m.render(sim).items():
                    last = self.sent.get((m.id, name))
                    if last is None or (value != last[0] and name in STATE_SIGNALS) \
                            or t - last[1] >= SAMPLE_NS or (m.id, name) in self.watched:
                        self.sent[m.id, name] = value, t
                        out.append((t, m.id, name, value))
        return sorted(out, key=lambda r: r[0])

    def replay(self, capsys: pytest.CaptureFixture[str],
               readings: list[tuple[int, str, str, object]]) -> None:
        """Imports the orders started so far (the demo imports each as it starts), then
        replays `readings` in time order."""
        self.files += 1
        orders = self.dir / f"orders-{self.files}.csv"
        with orders.open("w", newline="") as f:
            writer = csv.DictWriter(f, ["order_no", "planned_qty", "pru_s",
                                        "planned_scrap_qty", "machine"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.orders)
        self.ombre(capsys, "orders", "import", str(orders))
        path = self.dir / f"part-{self.files}.jsonl"
        path.write_text("".join(json.dumps({"ts": stamp(t), "machine": m, "signal": s,
                                            "value": v}) + "\n" for t, m, s, v in readings))
        self.ombre(capsys, "replay", str(path))

    def assess(self, capsys: pytest.CaptureFixture[str], start: datetime,
               end: datetime) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.ombre(
            capsys, "assess", "--from", stamp(to_ns(start)), "--to", stamp(to_ns(end)),
            "--json"))
        return result


def stages(result: dict[str, Any]) -> tuple[int, int | None, int | None]:
    areas = result["areas"]
    return result["stage"], areas["resources"]["stage"], areas["information_systems"]["stage"]


def figure(result: dict[str, Any], key: str) -> tuple[str, float | None]:
    area, _ = key.split(".")
    found = next(c for c in result["areas"][area]["criteria"] if c["key"] == key)
    return found["status"], found["value"]


def give_reasons(floor: DemoFloor, before: datetime) -> int:
    """Gives every stop that ended by `before` a reason, as an operator does on the
    dashboard's downtime list (the same store call as `ombre downtime assign`)."""
    engine = open_engine(database_url(None, floor.dir / "data"))
    try:
        store = ShadowStore(engine)
        stops = [(i, category) for i, _, _, end, _, category, _ in
                 store.unexplained_downtime(None, None, 1000) if end <= to_ns(before)]
        for interval, category in stops:
            assert store.assign_reason(interval, REASON[str(category)])
    finally:
        engine.dispose()
    return len(stops)


def test_the_demo_floor_moves_with_reasons_and_the_broker_outage(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    floor = DemoFloor(tmp_path)
    early = (START, START + timedelta(hours=8))  # 06:00-14:00 in Paris
    floor.replay(capsys, floor.readings(early[1] + timedelta(minutes=5)))
    result = floor.assess(capsys, *early)
    # Everything connected, classified, with orders and shift KPIs: visibility. Drift is
    # watched on cnc-1 only (1 machine in 4), and no stop has a reason yet.
    assert stages(result) == (3, 3, 3)
    assert figure(result, "resources.classified_share") == ("met", 1.0)
    assert figure(result, "resources.drift_watched_share") == ("not met", 0.25)
    assert figure(result, "information_systems.shift_kpis_share") == ("met", 1.0)
    assert figure(result, "information_systems.orders_linked_share") == ("met", 1.0)
    assert figure(result, "information_systems.downtime_reason_share") == ("not met", 0.0)
    assert {s["criterion"] for s in result["next_steps"]} == {
        "resources.drift_watched_share", "information_systems.downtime_reason_share"}

    # An operator gives every stop of the shift a reason (the dashboard's downtime list
    # or `ombre downtime assign`): information systems reach transparency, and the
    # plant stays at visibility, the lowest area's stage, until drift is watched wider.
    assert give_reasons(floor, early[1]) > 10
    result = floor.assess(capsys, *early)
    assert stages(result) == (3, 3, 4)
    status, share = figure(result, "information_systems.downtime_reason_share")
    assert status == "met"
    assert share is not None
    assert share > 0.95  # the stop still open at 14:00 has no reason yet
    assert {s["criterion"] for s in result["next_steps"]} == {
        "resources.drift_watched_share", "information_systems.failures_anticipated_share"}

    # The broker outage: the MQTT machines' readings are held back while the link is
    # down; the machines are unknown from the end of their tolerated silence (10 min).
    held = floor.readings(OUTAGE[1])
    floor.replay(capsys, [r for r in held if r[1] not in MQTT or r[0] < to_ns(OUTAGE[0])])
    during = (early[1], OUTAGE[1])  # 14:00-18:00 in Paris
    result = floor.assess(capsys, *during)
    status, classified = figure(result, "resources.classified_share")
    unknown_min = len(MQTT) * ((OUTAGE[1] - OUTAGE[0]).total_seconds() / 60 - 10)
    assert status == "not met"
    assert classified == pytest.approx(1 - unknown_min / (4 * 240), abs=0.01)
    # The plant cannot see half its floor. (Information systems are at 2 in this window
    # too: no shift ended in it, so there are no shift KPIs to count.)
    assert stages(result)[:2] == (2, 2)
    evidence = {(e["key"], e["scope"]): e["value"] for e in result["evidence"]}
    assert evidence[("classified_share", "machine:press-1")] < 0.6
    assert evidence[("classified_share", "machine:cnc-1")] == pytest.approx(1, abs=1e-3)

    # The link is back: the backlog arrives, and the machines go on. No hole: the outage
    # left no trace in the timeline, and resources are back at visibility.
    backlog = [r for r in held if r[1] in MQTT and r[0] >= to_ns(OUTAGE[0])]
    floor.replay(capsys, backlog + floor.readings(OUTAGE[1] + timedelta(minutes=5)))
    result = floor.assess(capsys, *during)
    # (cnc-1 and lathe-1 step every 2 s: their last reading is 2 s before the window ends)
    assert figure(result, "resources.classified_share") == ("met", pytest.approx(1, abs=1e-3))
    assert stages(result)[1] == 3
