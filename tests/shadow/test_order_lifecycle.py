"""An order's lifecycle ends: its job ends by the job signal, a person or its planned
quantity, and a restart closes what a previous run left open, with the reason. On
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench.mosquitto import Mosquitto
from ombre.cli import main
from ombre.config import OmbreConfig, validate_config
from shadow import tables as t
from shadow.model import Changes, JobRecord
from shadow.schema import database_url, open_engine, upgrade
from shadow.store import CurrentJob, ShadowStore
from tests.conftest import Publisher
from tests.gateway.test_process import OmbreProcess
from tests.shadow.scenarios import plant

S = 10**9


def order(order_no: str, qty: int = 10, machine: str = "press-1") -> dict[str, Any]:
    return {"job_key": order_no, "order_no": order_no, "operation": "", "material": None,
            "planned_qty": qty, "pru_s": 30.0, "planned_scrap_qty": 0, "machine_id": machine}


def open_store(config: OmbreConfig) -> ShadowStore:
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    upgrade(engine)
    return ShadowStore(engine)


def orders(store: ShadowStore) -> dict[str, tuple[Any, ...]]:
    return {o["job_key"]: (o["status"], o["end_ns"], o["ended_by"], o["end_reason"])
            for o in store.orders()}


def jobs(store: ShadowStore) -> list[tuple[Any, ...]]:
    jb = t.job
    with store.engine.connect() as c:
        return [tuple(r) for r in c.execute(
            select(jb.c.machine_id, jb.c.job_key, jb.c.start_ns, jb.c.end_ns, jb.c.status,
                   jb.c.ended_by, jb.c.end_reason).order_by(jb.c.id))]


def write_jobs(store: ShadowStore, *records: JobRecord) -> None:
    store.write(Changes(jobs=list(records)), {})


def test_a_job_end_completes_its_order_once_no_machine_runs_it(
        tmp_path: Path, database: str | None) -> None:
    config = validate_config(plant(tmp_path / "data", database))
    store = open_store(config)
    try:
        # An order imported after its job started (the ERP a little late) runs.
        write_jobs(store, JobRecord("press-1", "A", 10 * S, None),
                   JobRecord("press-2", "A", 12 * S, None))
        store.import_orders([order("A"), order("B")])
        assert orders(store)["A"] == ("running", None, None, None)
        write_jobs(store, JobRecord("press-1", "A", 10 * S, 20 * S, "signal",
                                    "job signal changed to B"),
                   JobRecord("press-1", "B", 20 * S, None))
        assert orders(store)["A"] == ("running", None, None, None)  # press-2 runs it
        write_jobs(store, JobRecord("press-2", "A", 12 * S, 25 * S, "quantity",
                                    "planned quantity 10 produced"))
        assert orders(store) == {
            "A": ("completed", 25 * S, "quantity", "press-2: planned quantity 10 produced"),
            "B": ("running", None, None, None)}
        # Started again (a machine reports it anew), it runs again.
        write_jobs(store, JobRecord("press-2", "A", 30 * S, None))
        assert orders(store)["A"] == ("running", None, None, None)
        assert jobs(store)[:2] == [
            ("press-1", "A", 10 * S, 20 * S, "Completed", "signal", "job signal changed to B"),
            ("press-2", "A", 12 * S, 25 * S, "Completed", "quantity",
             "planned quantity 10 produced")]
        assert store.planned_qty("A") == 10
        assert store.planned_qty("nope") is None
    finally:
        store.engine.dispose()


def test_a_restart_closes_the_jobs_and_orders_a_previous_run_left_open(
        tmp_path: Path, database: str | None) -> None:
    """Each job row still open must be its machine's current job in the restored model;
    any other is aborted, and a running order no job runs is closed, with the reason."""
    config = validate_config(plant(tmp_path / "data", database))
    store = open_store(config)
    try:
        store.import_orders([order(k) for k in ("A", "B", "C", "D", "E")])
        write_jobs(store, JobRecord("press-1", "A", 10 * S, None),  # still current
                   JobRecord("press-2", "B", 10 * S, None),  # press-2 moved on to C
                   JobRecord("press-3", "D", 10 * S, None),  # press-3 left the config
                   JobRecord("press-4", "E", 5 * S, None),
                   JobRecord("press-4", "E", 5 * S, 8 * S, "signal", "job signal cleared"))
        # As an older Ombre left it: the job ended, the order ran on.
        with store.engine.begin() as c:
            c.execute(t.production_order.update().where(t.production_order.c.job_key == "E")
                      .values(status="running", end_ns=None, ended_by=None, end_reason=None))
        current = {"press-1": CurrentJob("A", 10 * S, 50 * S),
                   "press-2": CurrentJob("C", 40 * S, 60 * S),
                   "press-4": CurrentJob(None, None, 70 * S)}
        assert store.close_orphans(current) == (2, 3)
        assert orders(store) == {
            "A": ("running", None, None, None),
            "B": ("closed", 60 * S, "restart", "press-2: restart: machine reports job C"),
            "C": ("planned", None, None, None),
            "D": ("closed", 10 * S, "restart",
                  "press-3: restart: machine no longer in the config"),
            "E": ("closed", 8 * S, "restart", "restart: no machine runs it")}
        assert [j for j in jobs(store) if j[4] == "Aborted"] == [
            ("press-2", "B", 10 * S, 60 * S, "Aborted", "restart",
             "restart: machine reports job C"),
            ("press-3", "D", 10 * S, 10 * S, "Aborted", "restart",
             "restart: machine no longer in the config")]
        assert store.close_orphans(current) == (0, 0)  # nothing left to close
    finally:
        store.engine.dispose()


def test_orders_complete_from_the_command_line(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    """`ombre orders complete`: an order no machine runs completes at once; one a
    machine without a job signal runs ends through a job command; one a job signal
    runs is refused."""
    data = plant(tmp_path / "data", database)
    press = data["sites"][0]["lines"][0]["machines"][0]
    data["sites"][0]["lines"][0]["machines"].append(
        {**press, "id": "press-2", "job_signal": None})
    path = tmp_path / "plant.yaml"
    path.write_text(validate_config(data).model_dump_json())
    store = open_store(validate_config(data))
    try:
        store.import_orders([order("A"), order("B"), order("C", machine="press-2")])
        write_jobs(store, JobRecord("press-1", "B", 10 * S, None),
                   JobRecord("press-2", "C", 10 * S, None))

        def complete(*args: str) -> tuple[int, str, str]:
            code = main(["orders", "complete", *args, "-c", str(path), "--by", "ana"])
            out, err = capsys.readouterr()
            return code, out, err

        assert complete("A")[:2] == (0, "A: completed\n")
        assert orders(store)["A"][0] == "completed"
        assert orders(store)["A"][2:] == ("command", "completed by ana")
        assert complete("A")[:2] == (0, "A: already completed\n")
        code, _, err = complete("B")
        assert code == 1
        assert "B runs on press-1, whose job signal ends it" in err
        code, out, _ = complete("C")
        assert code == 0
        assert "completes it on press-2" in out
        [command] = store.job_commands(pending=True)
        assert (command.machine_id, command.action, command.requested_by) == \
            ("press-2", "complete", "ana")
        code, _, err = complete("Z", "--operation", "10")
        assert code == 1
        assert "no order with job key 'Z/10'" in err
    finally:
        store.engine.dispose()


def poll(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_orders_finish_across_real_restarts_of_ombre_run(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher, database: str | None) -> None:
    """`ombre run` as a process: an order completes at its planned quantity, another when
    the job signal moves on; a restart keeps the running job and closes the order an
    older Ombre left running; a restart without the machine aborts its job."""
    data = plant(tmp_path / "data", database, complete_at_planned_qty=True)
    data["shadow"]["calendar"] = {}
    data["sources"] = [{"type": "mqtt", "name": "broker", "port": broker.port,
                        "client_id": "ombre-orders-test",
                        "subscriptions": [{"topic": "plant/{machine}/{signal}"}]}]
    data["runtime"] = {"flush_interval_ms": 20, "backoff_initial_s": 0.05,
                       "backoff_max_s": 0.2}
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(data))
    ombre = OmbreProcess(path, tmp_path / "ombre.log")
    store = open_store(validate_config(data))
    base = time.time_ns() // 10**6 - 600_000

    def publish(at_s: float, name: str, value: object) -> None:
        publisher.publish(f"plant/press-1/{name}",
                          json.dumps({"value": value, "ts": base + int(at_s * 1000)}))

    def run(log_line: str = "source broker is up") -> None:
        ombre.start()
        ombre.wait_for_log(log_line)

    try:
        store.import_orders([order("A", qty=3), order("B"), order("C")])
        run()
        publish(0, "state", "RUNNING")
        publish(0, "total", 0)
        publish(1, "order", "A")
        for i in range(1, 5):
            publish(1 + i, "total", i)
        publish(6, "order", "A")  # still A, made: no new job
        publish(7, "order", "B")
        publish(8, "order", "C")
        poll(lambda: orders(store)["B"][0] == "completed", "B to complete")
        assert ombre.signal(signal.SIGTERM) == 0
        ms = 10**6
        assert orders(store) == {
            "A": ("completed", (base + 4000) * ms, "quantity",
                  "press-1: planned quantity 3 produced"),
            "B": ("completed", (base + 8000) * ms, "signal", "press-1: job signal changed to C"),
            "C": ("running", None, None, None)}
        assert [j[1:] for j in jobs(store)] == [
            ("A", (base + 1000) * ms, (base + 4000) * ms, "Completed", "quantity",
             "planned quantity 3 produced"),
            ("B", (base + 7000) * ms, (base + 8000) * ms, "Completed", "signal",
             "job signal changed to C"),
            ("C", (base + 8000) * ms, None, "Running", None, None)]

        # As an older Ombre left it: B's job ended, B ran on. A restart closes it and
        # keeps C, the machine's current job.
        with store.engine.begin() as c:
            c.execute(t.production_order.update().where(t.production_order.c.job_key == "B")
                      .values(status="running", end_ns=None, ended_by=None, end_reason=None))
        run("closed 0 jobs and 1 orders a previous run left open")
        assert ombre.signal(signal.SIGTERM) == 0
        assert orders(store)["B"] == ("closed", (base + 8000) * ms, "restart",
                                      "restart: no machine runs it")
        assert orders(store)["C"] == ("running", None, None, None)

        # press-1 replaced by press-2 in the config: its job is aborted at the restart.
        data["sites"][0]["lines"][0]["machines"][0]["id"] = "press-2"
        path.write_text(json.dumps(data))
        run("closed 1 jobs and 1 orders a previous run left open")
        assert ombre.signal(signal.SIGTERM) == 0
        assert orders(store)["C"] == ("closed", (base + 8000) * ms, "restart",
                                      "press-1: restart: machine no longer in the config")
        assert jobs(store)[-1][4:] == ("Aborted", "restart",
                                       "restart: machine no longer in the config")
        assert "Traceback" not in ombre.log.read_text()
    finally:
        ombre.kill()
        store.engine.dispose()
