"""Recorded shifts replayed through the whole pipeline (`ombre replay`) into the MES/ERP
tables, on SQLite and on the real PostgreSQL, then read back as `ombre kpi`, the ERP
exports and the SQL views print them."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from api.tokens import Role, create_token
from ombre.cli import main
from ombre.config import load_config
from shadow import tables as t
from shadow.schema import alembic_config, database_url, open_engine, upgrade
from tests.shadow.scenarios import (
    B_DAY,
    B_ORDERS_CSV,
    B_STOP,
    C_DAY,
    WORKED_KPIS,
    WORKED_ORDERS_CSV,
    WORKED_TIMES_MIN,
    at,
    line_plant,
    plant,
    scenario_b_lines,
    scenario_c_lines,
    stamp,
    worked_example_lines,
)

WORKED_STOP = {"reason": "maintenance", "from": "2026-03-02T13:30:00Z",
               "to": "2026-03-02T14:00:00Z"}


class Shop:
    """A directory with a config, its data, and the `ombre` commands run on it."""

    def __init__(self, tmp_path: Path, database: str | None, stops: list[dict[str, str]],
                 **machine: Any) -> None:
        self.dir = tmp_path
        data = plant(tmp_path / "data", database, **machine)
        data["shadow"]["calendar"]["planned_stops"] = stops
        self.config = tmp_path / "plant.yaml"
        self.config.write_text(json.dumps(data))

    def write(self, name: str, content: str | Iterable[str]) -> Path:
        path = self.dir / name
        path.write_text(content if isinstance(content, str) else "\n".join(content) + "\n")
        return path

    def ombre(self, capsys: pytest.CaptureFixture[str], command: str,
              *args: str) -> tuple[int, str, str]:
        """`ombre COMMAND -c CONFIG ARGS...`: exit code, stdout, stderr."""
        code = main([*command.split(), "-c", str(self.config), *args])
        out, err = capsys.readouterr()
        return code, out, err

    def kpis(self, capsys: pytest.CaptureFixture[str], start: str, end: str,
             by: str = "window") -> list[dict[str, Any]]:
        code, out, err = self.ombre(capsys, "kpi", "--from", start, "--to", end, "--by", by,
                                    "--json")
        assert code == 0, err
        result: list[dict[str, Any]] = json.loads(out)
        return result

    def engine_url(self) -> Any:
        config = load_config(self.config, {})
        return database_url(config.shadow.database, config.data_dir)

    def viewer_headers(self) -> dict[str, str]:
        """The Authorization header of a new viewer token for the API on this shop."""
        engine = open_engine(self.engine_url())
        try:
            return {"Authorization": f"Bearer {create_token(engine, 'test', Role.VIEWER)}"}
        finally:
            engine.dispose()

    def dump(self, leave_out: frozenset[str] = frozenset()) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every shadow table, sorted, to compare two states; without the
        columns named "table.column" in `leave_out`, nor the wall clock each of the
        gateway's runs began at (the data time they covered stays)."""
        engine = open_engine(self.engine_url())
        left_out = leave_out | {"gateway_run.started_ns"}
        try:
            with engine.connect() as c:
                return {name: sorted(tuple(r) for r in c.execute(select(
                            *(col for col in table.c if f"{name}.{col.name}" not in left_out))))
                        for name, table in t.metadata.tables.items()}
        finally:
            engine.dispose()


def replay_worked_example(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    orders = shop.write("orders.csv", WORKED_ORDERS_CSV)
    assert shop.ombre(capsys, "orders import", str(orders))[0] == 0
    code, _, err = shop.ombre(capsys, "replay", str(shop.write("shift.jsonl",
                                                               worked_example_lines())))
    assert code == 0, err
    assert "0 quarantined" in err


def test_the_worked_example_gives_every_kpi_of_the_reference(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, database, [WORKED_STOP])
    replay_worked_example(shop, capsys)
    [result] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")
    assert {k: v / 60 for k, v in result["time_s"].items()} == pytest.approx(WORKED_TIMES_MIN,
                                                                             abs=1e-9)
    quantities = result["quantities"]
    assert [quantities[k] for k in ("PQ", "GQ", "SQ", "RQ", "PSQ", "IP", "GP", "FE")] == \
        [480, 460, 12, 8, 10, 480, 460, 2]
    assert quantities["TTR_s"] == [15 * 60, 10 * 60]
    got = {name: kpi["value"] for name, kpi in result["kpis"].items()}
    assert got == pytest.approx(WORKED_KPIS, abs=1e-6)
    assert result["unclassified_share"]["value"] == 0


def test_replaying_the_same_file_again_changes_no_table(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, database, [WORKED_STOP])
    replay_worked_example(shop, capsys)
    first = shop.dump()
    assert len(first["state_interval"]) == 8
    replay_worked_example(shop, capsys)
    again = shop.dump()
    # The orders were imported twice, and each import is an action of the audit log.
    assert [len(d.pop("audit_log")) for d in (first, again)] == [1, 2]
    assert again == first


def test_a_shift_change_a_counter_reset_a_stop_over_a_breakdown_two_prus_and_silence(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, database, [B_STOP])
    assert shop.ombre(capsys, "orders import", str(shop.write("o.csv", B_ORDERS_CSV)))[0] == 0
    code, _, err = shop.ombre(capsys, "replay", str(shop.write("b.jsonl", scenario_b_lines())))
    assert code == 0, err
    early, late = shop.kpis(capsys, stamp(at("06:00", B_DAY)), stamp(at("22:00", B_DAY)),
                            by="shift")
    assert early["label"] == "2026-03-03 early"
    assert late["label"] == "2026-03-03 late"
    minutes = {k: v / 60 for k, v in early["time_s"].items()}
    # 06:00-10:00 idle; A100 runs 10:00-11:50 and 12:40-13:30; its breakdown 11:50-12:40
    # is cut by the planned stop 12:00-12:30; B200 sets up 13:30-13:45, then runs.
    assert minutes == pytest.approx({"POT": 480, "PDOT": 30, "NODATA": 0, "PBT": 450,
                                     "APT": 175, "ASUT": 15, "ADET": 20, "ADOT": 240, "UNCL": 0,
                                     "AUPT": 190, "AUBT": 210, "AOET": 240}, abs=1e-9)
    quantities = early["quantities"]
    # The counter reset at 13:00:30 loses and doubles nothing: 160 A100 parts, 15 B200.
    assert [quantities[k] for k in ("PQ", "SQ", "GQ", "FE")] == [175, 4, 171, 1]
    assert quantities["TTR_s"] == [20 * 60]  # one breakdown, restored in 20 min of PBT
    jobs = {j["job"]: (j["pru_s"], j["PQ"]) for j in early["jobs"]}
    assert jobs == {"A100": (30, 160), "B200": (60, 15)}
    kpis = {name: kpi["value"] for name, kpi in early["kpis"].items()}
    assert kpis["effectiveness"] == pytest.approx((30 * 160 + 60 * 15) / (175 * 60), abs=1e-9)
    assert kpis["availability"] == pytest.approx(175 / 450, abs=1e-9)
    assert kpis["mttr"] == pytest.approx(20, abs=1e-9)
    assert kpis["mtbf"] == pytest.approx(190 / 2, abs=1e-9)
    # Late shift: B200 runs until the last reading at 15:00 and the 2 min of tolerated
    # silence, then the machine is unknown until 15:30 while the gateway runs, idle until
    # the last reading of the file (16:00), and there is no data after that: neither
    # unknown nor a loss, out of PBT.
    minutes = {k: v / 60 for k, v in late["time_s"].items()}
    no_data = 6 * 60
    assert minutes == pytest.approx({"POT": 480, "PDOT": 0, "NODATA": no_data,
                                     "PBT": 480 - no_data, "APT": 62, "ASUT": 0, "ADET": 0,
                                     "ADOT": 30, "UNCL": 28, "AUPT": 62, "AUBT": 62,
                                     "AOET": 90}, abs=1e-9)
    assert late["quantities"]["PQ"] == 60
    assert late["unclassified_share"]["value"] == pytest.approx(28 / (480 - no_data), abs=1e-9)
    assert late["coverage"]["value"] == pytest.approx((480 - no_data) / 480, abs=1e-9)
    assert late["coverage"]["no_data_s"] == pytest.approx(no_data * 60, abs=1e-9)
    code, out, _ = shop.ombre(capsys, "kpi", "--from", stamp(at("14:00", B_DAY)), "--to",
                              stamp(at("22:00", B_DAY)))
    assert code == 0
    assert "(unknown 28.00 min)" in out
    assert "coverage                       0.250000  (no data 360.00 min, out of PBT)" in out
    assert late["kpis"]["mttr"] == {"value": None, "reason": "FE is 0", "unit": "min",
                                    "formula": late["kpis"]["mttr"]["formula"]}
    # The ERP's view of the two orders.
    code, out, _ = shop.ombre(capsys, "export", "confirmations", "--from",
                              stamp(at("00:00", B_DAY)), "--to", stamp(at("23:59", B_DAY)))
    assert code == 0
    rows = {r["order_no"]: r for r in csv.DictReader(io.StringIO(out))}
    assert (rows["A100"]["good"], rows["A100"]["scrap"]) == ("156", "4")
    assert float(rows["A100"]["run_min"]) == 160
    assert float(rows["A100"]["delay_min"]) == 20  # the planned part of the breakdown is not
    assert (rows["B200"]["good"], float(rows["B200"]["setup_min"])) == ("75", 15.0)
    assert float(rows["B200"]["run_min"]) == 77


def test_the_shift_kpis_view_and_the_export_print_what_ombre_kpi_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [WORKED_STOP])
    replay_worked_example(shop, capsys)
    [result] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z", by="shift")
    with sqlite3.connect(tmp_path / "data" / "ombre.sqlite") as db:
        view = db.execute("SELECT shift, day, machine_id, oee, availability, pq, gq "
                          "FROM shift_kpis WHERE shift = 'early'").fetchall()
    assert view == [("early", "2026-03-02", "press-1", result["kpis"]["oee"]["value"],
                     result["kpis"]["availability"]["value"], 480, 460)]
    code, out, _ = shop.ombre(capsys, "export", "kpis", "--from", "2026-03-02T06:00:00Z",
                              "--to", "2026-03-02T14:00:00Z")
    assert code == 0
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert (row["shift"], row["machine"], row["PBT_min"]) == ("2026-03-02 early", "press-1",
                                                              "450.0")
    assert float(row["oee"]) == pytest.approx(WORKED_KPIS["oee"], abs=1e-6)
    assert float(row["coverage"]) == 1


def test_assigning_a_reason_code_reclassifies_the_downtime(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [WORKED_STOP])
    replay_worked_example(shop, capsys)
    code, out, _ = shop.ombre(capsys, "downtime", "list")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out), delimiter="\t"))
    idle = next(r for r in rows if r["state"] == "IDLE" and r["category"] == "ADOT")
    assert float(idle["minutes"]) == 15
    assert shop.ombre(capsys, "downtime", "assign", idle["id"], "nope")[0] == 1
    assert shop.ombre(capsys, "downtime", "assign", idle["id"], "tool")[0] == 0
    [result] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")
    assert result["time_s"]["ADOT"] == 0
    assert result["time_s"]["ADET"] == 40 * 60  # 25 min of breakdowns + 15 re-coded
    assert result["quantities"]["FE"] == 3  # the reason counts as a failure


def test_a_replay_quarantines_bad_lines_and_keeps_the_rest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [])
    good = list(worked_example_lines())
    bad = ['{"ts": "2026-03-02T06:00:00Z", "machine": "press-1"',  # not JSON
           '{"ts": "yesterday", "machine": "press-1", "signal": "temp", "value": 1}',
           '{"ts": "2026-03-02T06:00:00Z", "machine": "press-9", "signal": "temp", "value": 1}',
           '{"ts": "2026-03-02T06:00:00Z", "machine": "press-1", "signal": "temp", "value": "hot"}',
           '[1, 2]']
    code, _, err = shop.ombre(capsys, "replay", str(shop.write("mixed.jsonl",
                                                               [*good[:5], *bad, *good[5:]])))
    assert code == 1
    assert f"replayed {len(good) + len(bad)} lines" in err
    assert "5 quarantined" in err
    with sqlite3.connect(tmp_path / "data" / "replay-outbox.sqlite") as db:
        reasons = [r for (r,) in db.execute("SELECT reason FROM quarantine ORDER BY rowid")]
    assert [r.split(":")[0] for r in reasons] == [f"line {n}" for n in range(6, 11)]
    assert "not JSON" in reasons[0]
    assert "RFC 3339" in reasons[1]
    assert "'press-9'" in reasons[2]
    assert "expected a number" in reasons[3]
    assert "expected an object" in reasons[4]
    [result] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")
    assert result["quantities"]["PQ"] == 480  # every good line went through


def test_orders_import_reports_each_bad_row_and_imports_the_others(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [])
    path = shop.write("orders.csv", "order_no,operation,planned_qty,pru_s,pru_min\n"
                                    "4711,10,100,30,\n"
                                    "4712,,many,30,\n"
                                    "4713,,100,,\n"
                                    "4714,,50,,1.5\n")
    code, out, err = shop.ombre(capsys, "orders import", str(path))
    assert code == 1
    assert "2 orders imported" in out
    assert f"{path}:3: planned_qty: " in err
    assert "'many'" in err
    assert f"{path}:4: row: " in err or f"{path}:4: " in err
    assert "pru_s and pru_min" in err
    engine = open_engine(shop.engine_url())
    try:
        with engine.connect() as c:
            rows = c.execute(text("SELECT job_key, pru_s FROM production_order "
                                  "ORDER BY job_key")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("4711/10", 30.0), ("4714", 90.0)]


def test_the_migrations_build_exactly_the_declared_schema_from_an_empty_database(
        tmp_path: Path, database: str | None) -> None:
    engine = open_engine(database_url(database, tmp_path))
    try:
        upgrade(engine)
        upgrade(engine)  # a second upgrade finds nothing to do
        with engine.connect() as c:
            diff = compare_metadata(MigrationContext.configure(c), t.metadata)
            views = set(inspect(c).get_view_names())
        assert diff == []
        assert {"order_confirmation", "shift_kpis"} <= views
    finally:
        engine.dispose()


def test_a_line_read_through_machinery_and_packml_sums_its_machines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [])
    shop.config.write_text(json.dumps(line_plant(tmp_path / "data")))
    shop.write("o.csv", "order_no,planned_qty,pru_s\nJ1,100,60\n")
    assert shop.ombre(capsys, "orders import", str(tmp_path / "o.csv"))[0] == 0
    assert shop.ombre(capsys, "replay", str(shop.write("c.jsonl", scenario_c_lines())))[0] == 0
    start, end = stamp(at("06:00", C_DAY)), stamp(at("08:00", C_DAY))
    code, out, err = shop.ombre(capsys, "kpi", "--line", "line-2", "--from", start,
                                "--to", end, "--json")
    assert code == 0, err
    [line] = json.loads(out)
    assert line["machines"] == ["cnc-1", "pack-1"]
    # cnc-1: setup 20, processing 60 + 30, out of service 10 (a failure: a job is loaded).
    # pack-1: idle 30 + suspended 15 (no job: ADOT), execute 30 + 40, held 5 (a failure).
    minutes = {k: v / 60 for k, v in line["time_s"].items()}
    assert minutes == pytest.approx({"POT": 240, "PDOT": 0, "NODATA": 0, "PBT": 240,
                                     "APT": 160, "ASUT": 20, "ADET": 15, "ADOT": 45, "UNCL": 0,
                                     "AUPT": 180, "AUBT": 195, "AOET": 120}, abs=1e-9)
    assert line["quantities"]["FE"] == 2
    assert line["kpis"]["mttr"]["value"] == pytest.approx(7.5, abs=1e-9)
    assert line["kpis"]["effectiveness"]["value"] == pytest.approx(60 * 90 / (160 * 60),
                                                                   abs=1e-9)
    machines = [json.loads(shop.ombre(capsys, "kpi", "--machine", m, "--from", start,
                                      "--to", end, "--json")[1])[0]
                for m in ("cnc-1", "pack-1")]
    for element in ("POT", "APT", "ASUT", "ADET", "ADOT"):
        assert line["time_s"][element] == sum(m["time_s"][element] for m in machines)


def test_replay_at_a_speed_paces_the_lines_by_their_timestamps(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Data paced to take half a second cannot finish sooner (a lower bound set by the
    pacing itself, not a speed requirement), and gives the same tables as --max."""
    lines = list(worked_example_lines())[:40]
    stamps = [datetime.fromisoformat(json.loads(line)["ts"]) for line in lines]
    speed = (stamps[-1] - stamps[0]).total_seconds() / 0.5
    (tmp_path / "paced").mkdir()
    (tmp_path / "fast").mkdir()
    paced, fast = Shop(tmp_path / "paced", None, []), Shop(tmp_path / "fast", None, [])
    started = time.monotonic()
    assert paced.ombre(capsys, "replay", str(paced.write("a.jsonl", lines)), "--speed",
                       str(speed))[0] == 0
    assert time.monotonic() - started >= 0.45
    assert fast.ombre(capsys, "replay", str(fast.write("a.jsonl", lines)), "--max")[0] == 0
    assert paced.dump() == fast.dump()


def test_an_upgrade_keeps_the_data(tmp_path: Path, database: str | None,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A database at the first schema version, holding a shift, upgraded to the current
    one: every row is still there and the KPIs read from it are unchanged."""
    shop = Shop(tmp_path, database, [WORKED_STOP])
    replay_worked_example(shop, capsys)
    [before_kpis] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")
    # What an older Ombre did not record, and a downgrade to it drops (0007).
    later = frozenset({"job.ended_by", "job.end_reason", "production_order.end_ns",
                       "production_order.ended_by", "production_order.end_reason"})
    first = shop.dump(later)
    engine = open_engine(shop.engine_url())
    try:
        with engine.begin() as c:  # back to version 0001, as an installed older Ombre had it
            command.downgrade(alembic_config(c), "0001")
        with engine.connect() as c:
            assert "drift_alert" not in inspect(c).get_table_names()
        upgrade(engine)
    finally:
        engine.dispose()
    after = shop.dump(later)
    # Rebuilt on upgrade, or (the audit log, 0008; the reading counts and ages, 0011)
    # dropped by the downgrade.
    rebuilt = ("shadow_state", "gateway_run", "audit_log", "reading_count", "model_age")
    assert {k: v for k, v in after.items() if k not in rebuilt} == \
        {k: v for k, v in first.items() if k not in rebuilt}
    # The runs before 0005 recorded them: one, over the state intervals written then,
    # whose dropped readings nobody recorded.
    intervals = first["state_interval"]
    assert after["gateway_run"] == [
        (min(r[2] for r in intervals), max(r[3] for r in intervals), None)]
    [after_kpis] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")
    assert after_kpis["kpis"] == before_kpis["kpis"]


def test_time_when_the_gateway_was_not_running_is_no_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The worked example in two runs of the gateway, with an hour between them where it
    did not run: that hour is no data, out of PBT, not unknown and not lost
    availability."""
    shop = Shop(tmp_path, None, [WORKED_STOP])
    assert shop.ombre(capsys, "orders import", str(shop.write("o.csv", WORKED_ORDERS_CSV)))[0] == 0
    lines = list(worked_example_lines())
    before = [line for line in lines if json.loads(line)["ts"] < "2026-03-02T09:00:00Z"]
    after = [line for line in lines if json.loads(line)["ts"] >= "2026-03-02T10:00:00Z"]
    for name, part in (("a.jsonl", before), ("b.jsonl", after)):
        assert shop.ombre(capsys, "replay", str(shop.write(name, part)))[0] == 0
    stopped = datetime.fromisoformat(json.loads(before[-1])["ts"])
    restarted = datetime.fromisoformat(json.loads(after[0])["ts"])
    gap = (restarted - stopped).total_seconds()
    assert 3600 < gap < 3610
    [result] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")
    times = result["time_s"]
    assert times["NODATA"] == gap
    assert times["PBT"] == 450 * 60 - gap
    assert times["APT"] == 390 * 60 - gap  # the press ran all through the gap
    assert times["UNCL"] == 0
    assert result["kpis"]["availability"]["value"] == pytest.approx(
        (390 * 60 - gap) / (450 * 60 - gap), abs=1e-12)
    assert result["coverage"]["value"] == pytest.approx((450 * 60 - gap) / (450 * 60),
                                                        abs=1e-12)
