"""Stop reasons from the machine: a replayed shift whose PLC gives `stop_reason`,
through `ombre replay` into the tables, read back as `ombre kpi`, the API's timeline and
`ombre reasons unknown` print it, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from api.app import create_app
from api.tokens import Role, create_token
from ombre.config import load_config, validate_config
from shadow import tables as t
from shadow.schema import alembic_config, open_engine, upgrade
from shadow.states import State, evaluate
from shadow.timeline import Category
from tests.conftest import metric_samples
from tests.shadow.scenarios import REASON_CODES_CSV, reason_example_lines, reason_machine
from tests.shadow.test_replay import WORKED_STOP, Shop

SHIFT = ("2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")


def replayed(tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str],
             **reason: object) -> Shop:
    machine = reason_machine()
    if reason:
        machine["reason"] = reason
    shop = Shop(tmp_path, database, [WORKED_STOP], **machine)
    codes = shop.write("codes.csv", REASON_CODES_CSV)
    code, out, err = shop.ombre(capsys, "reasons import", str(codes))
    assert (code, out, err) == (0, f"2 reason codes imported from {codes}\n", "")
    code, _, err = shop.ombre(capsys, "replay", str(shop.write("shift.jsonl",
                                                               reason_example_lines())))
    assert code == 0, err
    return shop


def kpis(shop: Shop, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, float | None],
                                                                   dict[str, object]]:
    [result] = shop.kpis(capsys, *SHIFT)
    return {k: v["value"] for k, v in result["kpis"].items()}, result["quantities"]


def test_without_the_machines_reasons_no_stop_is_a_failure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = replayed(tmp_path, None, capsys)
    values, quantities = kpis(shop, capsys)
    assert quantities["FE"] == 0
    assert values["mttr"] is None
    assert values["mtbf"] == pytest.approx(413, abs=1e-9)


def test_the_reason_the_plc_gives_makes_the_stop_a_failure_and_an_operator_overrides_it(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = replayed(tmp_path, database, capsys, signal="stop_reason", grace_s=5)
    values, quantities = kpis(shop, capsys)
    assert quantities["FE"] == 1
    assert quantities["TTR_s"] == [15 * 60]
    assert values["mttr"] == pytest.approx(15, abs=1e-9)
    assert values["mtbf"] == pytest.approx(206.5, abs=1e-9)

    config = load_config(shop.config, {})
    engine = open_engine(shop.engine_url())
    try:
        operator = create_token(engine, "op", Role.OPERATOR)
    finally:
        engine.dispose()
    with TestClient(create_app(config)) as client:
        auth = {"Authorization": f"Bearer {operator}"}
        stops = [i for i in client.get("/api/v1/machines/press-1/timeline",
                                       params={"from": SHIFT[0], "to": SHIFT[1]},
                                       headers=auth).json() if i["raw_state"] == "STOPPED"]
        assert [(i["reason"], i["reason_source"], i["reason_raw"], i["category"]) for i in stops] \
            == [("SPINDLE_FAULT", "machine", "SPINDLE_FAULT", "ADET"), (None, None, "E917", "ADET")]
        # The unknown raw reason is kept, counted and listed, never dropped nor invented.
        downtime = client.get("/api/v1/downtime", params={"from": SHIFT[0], "to": SHIFT[1]},
                              headers=auth).json()
        assert [(d["state"], d["reason_raw"]) for d in downtime if d["category"] == "ADET"] == \
            [("STOPPED", "E917")]
        metrics = client.get("/metrics", headers=auth).text
        assert metric_samples(metrics, "ombre_unknown_stop_reasons") == [
            ({"machine": "press-1"}, 1)]
        code, out, err = shop.ombre(capsys, "reasons unknown")
        assert (code, err) == (0, "")
        line = next(n for n, text in enumerate(shop.config.read_text().splitlines(), 1)
                    if '"reason"' in text)  # the config is JSON on one line
        assert out == (f"{shop.config}:{line}: sites[0].lines[0].machines[0].reason: warning: "
                       "machine press-1 gave the stop reason 'E917', which is no reason code: "
                       "1 stop (7.0 min) since 2026-03-02T11:20:00Z; map it under reason.map "
                       "or declare it (shadow.reason_codes, ombre reasons import)\n")

        # An operator's reason overrides the machine's, and says so.
        done = client.post(f"/api/v1/downtime/{stops[0]['id']}/reason", json={"code": "MATERIAL"},
                           headers=auth)
        assert done.json() == {"reason": "MATERIAL", "reason_source": "operator"}
        assert client.post(f"/api/v1/downtime/{stops[1]['id']}/reason", json={"code": "tool"},
                           headers=auth).status_code == 200
        after = [i for i in client.get("/api/v1/machines/press-1/timeline",
                                       params={"from": SHIFT[0], "to": SHIFT[1]},
                                       headers=auth).json() if i["raw_state"] == "STOPPED"]
        assert [(i["reason"], i["reason_source"], i["reason_raw"]) for i in after] == \
            [("MATERIAL", "operator", "SPINDLE_FAULT"), ("tool", "operator", "E917")]
        assert metric_samples(client.get("/metrics", headers=auth).text,
                              "ombre_unknown_stop_reasons") == []
    values, quantities = kpis(shop, capsys)
    assert quantities["TTR_s"] == [7 * 60]  # MATERIAL is no failure; tool is
    assert values["mtbf"] == pytest.approx(413 / 2, abs=1e-9)
    assert shop.ombre(capsys, "reasons unknown")[1] == \
        "every stop reason the machines gave is a reason code\n"


def test_a_map_turns_the_plcs_fault_numbers_into_codes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = replayed(tmp_path, None, capsys, signal="stop_reason",
                    map={"SPINDLE_FAULT": "MATERIAL", "E917": "SPINDLE_FAULT"})
    values, quantities = kpis(shop, capsys)
    assert quantities["TTR_s"] == [7 * 60]
    assert values["mttr"] == pytest.approx(7, abs=1e-9)


def test_reason_import_reports_bad_rows_by_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [])
    bad = shop.write("codes.csv", "code,text,category,failure\nE1,overheat,ADET,true\n"
                                  "E2,jam,BROKEN,false\n")
    code, out, err = shop.ombre(capsys, "reasons import", str(bad))
    assert code == 1
    assert out == f"1 reason codes imported from {bad}; 1 rows rejected\n"
    assert err.startswith(f"{bad}:3: category: Input should be 'APT', 'ASUT'")


def readme_yaml(heading: str) -> list[dict[str, Any]]:
    """The YAML blocks of a section of the README."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text.split(f"\n### {heading}\n")[1].split("\n### ")[0]
    return [yaml.safe_load(block.split("\n```")[0]) for block in section.split("```yaml\n")[1:]]


def test_the_readmes_examples_are_valid_and_mean_what_it_says() -> None:
    table, rules = readme_yaml("States: tables, rules and the job")
    [reason] = readme_yaml("Stop reasons from the machine")
    signals = [{"name": n, "type": "string"} for n in ("status", "light", "stop_reason")]
    machines = [{"id": f"m{i}", "signals": signals, **block, "job_signal": None}
                for i, block in enumerate([{"state": table["state"]}, {"state": rules["state"]},
                                           {"reason": reason["reason"]}])]
    config = validate_config({"sites": [{"id": "s", "lines": [
        {"id": "l", "machines": machines}]}]})
    m0, m1, m2 = config.machines()
    assert evaluate(m0.state, {"status": "IDLE"}, job=True).category is Category.ADET
    assert evaluate(m0.state, {"status": "IDLE"}, job=False).category is Category.ADOT
    assert evaluate(m1.state, {"light": "YELLOW"}, job=True) == State("idle, job loaded",
                                                                      Category.ADET)
    assert m2.reason is not None
    assert m2.reason.map == {"12": "SPINDLE_FAULT", "E917": "COOLANT_LOW", "0": None}


def test_reasons_given_before_the_upgrade_were_given_by_operators(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = replayed(tmp_path, database, capsys)  # no reason key: the stops have no reason
    engine = open_engine(shop.engine_url())
    si = t.state_interval
    try:
        with engine.begin() as c:
            command.downgrade(alembic_config(c), "0004")
            stop = c.execute(text("SELECT min(id) FROM state_interval "
                                  "WHERE raw_state = 'STOPPED'")).scalar_one()
            c.execute(text("UPDATE state_interval SET reason_code = 'MATERIAL' WHERE id = :i"),
                      {"i": stop})
        upgrade(engine)
        with engine.connect() as c:
            rows = c.execute(select(si.c.reason_code, si.c.reason_source, si.c.reason_raw)
                             .where(si.c.reason_code.is_not(None))).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("MATERIAL", "operator", None)]
