"""A device that sends its backlog after newer readings, through Mosquitto into `ombre
run` as a process, with a restart while the shadow waits for that backlog. On SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench.mosquitto import Mosquitto
from ombre.config import validate_config
from shadow import tables as t
from shadow.store import ShadowStore
from shadow.timeline import Window
from tests.conftest import Publisher
from tests.gateway.test_process import OmbreProcess
from tests.shadow.scenarios import plant
from tests.shadow.test_order_lifecycle import open_store, poll

pytestmark = pytest.mark.slow

MIN_MS = 60_000


def two_presses(data_dir: Path, port: int, database: str | None) -> dict[str, Any]:
    """press-1 with reorder_s, press-2 without, both with a silence_s of 10 minutes; an
    MQTT source on `port`, no calendar."""
    data = plant(data_dir, database, silence_s=600, reorder_s=600)
    press_2 = {**data["sites"][0]["lines"][0]["machines"][0], "id": "press-2"}
    del press_2["reorder_s"]
    data["sites"][0]["lines"][0]["machines"].append(press_2)
    data["shadow"]["calendar"] = {}
    data["sources"] = [{"type": "mqtt", "name": "broker", "port": port,
                        "client_id": "ombre-reorder-test",
                        "subscriptions": [{"topic": "plant/{machine}/{signal}"}]}]
    data["runtime"] = {"flush_interval_ms": 20, "backoff_initial_s": 0.05,
                       "backoff_max_s": 0.2}
    return data


def press_1(store: ShadowStore, base: int) -> tuple[list[tuple[float, float, str, str]],
                                                     dict[int, int]]:
    """press-1's closed intervals (start and end in minutes after `base`, raw state,
    category) and its parts per minute."""
    window = Window(base * 10**6, (base + 200 * MIN_MS) * 10**6)
    minutes = [((i["start_ns"] // 10**6 - base) / MIN_MS,
                (i["end_ns"] // 10**6 - base) / MIN_MS, i["raw_state"], i["category"])
               for i in store.intervals("press-1", window)]
    pc = t.production_count
    with store.engine.connect() as c:
        parts = {(b // 10**6 - base) // MIN_MS: pq for b, pq in c.execute(
            select(pc.c.bucket_ns, pc.c.pq).where(pc.c.machine_id == "press-1"))}
    return minutes, parts


def test_a_backlog_sent_after_newer_readings_lands_at_its_own_times(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher, database: str | None) -> None:
    """press-1's link is down from minute 5 to 120 while press-2's data flows. Back, its
    device sends two new readings first, then (after a restart of `ombre run`) the
    backlog with a breakdown in it, then new readings. The breakdown, the running time
    and every part land at their own times."""
    data = two_presses(tmp_path / "data", broker.port, database)
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(data))
    ombre = OmbreProcess(path, tmp_path / "ombre.log")
    store = open_store(validate_config(data))
    base = (time.time_ns() // 10**6 - 200 * MIN_MS) // MIN_MS * MIN_MS  # on a minute

    def publish(machine: str, minute: int, name: str, value: object) -> None:
        publisher.publish(f"plant/{machine}/{name}",
                          json.dumps({"value": value, "ts": base + minute * MIN_MS}))

    def snapshot(machine: str) -> dict[str, object]:
        return store.snapshots().get(machine, {})

    try:
        ombre.start()
        ombre.wait_for_log("source broker is up")
        publish("press-1", 0, "state", "RUNNING")
        publish("press-1", 0, "order", "A")
        for minute in range(6):
            publish("press-1", minute, "total", minute)
        publish("press-2", 0, "state", "RUNNING")
        for minute in range(121):
            publish("press-2", minute, "temp", 20.0)
        poll(lambda: snapshot("press-1").get("silent") is True, "press-1 to go silent")
        for minute in (121, 122):  # sent while its device reconnects
            publish("press-1", minute, "total", minute)
        poll(lambda: len(snapshot("press-1").get("held", [])) == 2,  # type: ignore[arg-type]
             "press-1's two new readings to wait for its backlog")
        assert ombre.signal(signal.SIGTERM) == 0
        ombre.start()
        ombre.wait_for_log("source broker is up")
        for minute in range(6, 121):
            if minute == 60:
                publish("press-1", minute, "state", "BREAKDOWN")
            if minute == 70:
                publish("press-1", minute, "state", "RUNNING")
            publish("press-1", minute, "total", minute)
        for minute in (123, 124):
            publish("press-1", minute, "total", minute)
        poll(lambda: snapshot("press-1").get("last_seen_ns") == (base + 124 * MIN_MS) * 10**6,
             "press-1's last reading")
        assert ombre.signal(signal.SIGTERM) == 0
        assert snapshot("press-1")["held"] == []
        minutes, parts = press_1(store, base)
        # The tolerated silence (10 minutes after minute 5) splits the running time, and
        # what the backlog sent inside it folds into its end, as for any late backlog.
        assert minutes == [(0, 15, "RUNNING", "APT"), (15, 60, "RUNNING", "APT"),
                           (60, 70, "BREAKDOWN", "ADET")]
        assert parts == {**{m: 1 for m in range(1, 6)}, 15: 10,
                         **{m: 1 for m in range(16, 125)}}
        assert "Traceback" not in ombre.log.read_text()
    finally:
        ombre.kill()
        store.engine.dispose()
