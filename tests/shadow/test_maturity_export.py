"""The maturity assessment as a shared tool: `ombre assess --export` writes an anonymised
file valid against the published docs/maturity.schema.json, and `--compare` places the
plant among other plants' exports, naming each bad file and the field, comparing the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from shadow.maturity import AREAS, CRITERIA
from shadow.maturity_export import EXPORT_SCHEMA, SCHEMA_FILE, Areas, json_schema
from shadow.self_assessment_questions import QUESTIONS
from tests.shadow.test_maturity import SHIFT, WATCHED, shop_of
from tests.shadow.test_replay import Shop

ROOT = Path(__file__).parents[2]


def test_the_published_schema_is_the_export_model() -> None:
    published = json.loads((ROOT / SCHEMA_FILE).read_text())
    assert published == json_schema(), (
        f"regenerate {SCHEMA_FILE}: python -c 'import json; from shadow.maturity_export "
        f"import json_schema; print(json.dumps(json_schema(), indent=2))' > {SCHEMA_FILE}")
    assert tuple(Areas.model_fields) == AREAS
    assert published["properties"]["schema"]["const"] == EXPORT_SCHEMA


def exported(shop: Shop, capsys: pytest.CaptureFixture[str], name: str) -> dict[str, Any]:
    path = shop.dir / name
    code, out, err = shop.ombre(capsys, "assess", *SHIFT, "--export", str(path))
    assert code == 0, err
    assert "Overall stage" in out  # the assessment is printed as without --export
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_the_export_is_anonymised_and_valid_against_the_published_schema(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = shop_of(tmp_path, None, orders=True, capsys=capsys, **WATCHED)
    doc = exported(shop, capsys, "export.json")
    validator = jsonschema_rs.validator_for(json.loads((ROOT / SCHEMA_FILE).read_text()))
    assert list(validator.iter_errors(doc)) == []
    text = json.dumps(doc)
    for name in ("press-1", "line-1", "plant/", "2026", "4711", "temp"):
        assert name not in text  # no machine, line, site, date, order or signal
    assert doc["schema"] == EXPORT_SCHEMA
    assert (doc["stage"], doc["machines"], doc["window_days"]) == (3, 1, pytest.approx(1 / 3))
    assert doc["areas"] == {"resources": 4, "information_systems": 3,
                            "organisational_structure": None, "culture": None}
    assert sorted(doc["criteria"]) == sorted([f"{c.area}.{c.measure}" for c in CRITERIA]
                                             + [f"{q.area}.{q.key}" for q in QUESTIONS])
    assert doc["criteria"]["information_systems.downtime_reason_share"] == {
        "stage": 4, "declared": False, "value": 0.0, "threshold": 0.8, "answer": None,
        "status": "not met"}
    declared = doc["criteria"][f"{QUESTIONS[0].area}.{QUESTIONS[0].key}"]
    assert declared == {"stage": QUESTIONS[0].stage, "declared": True, "value": None,
                        "threshold": None, "answer": None, "status": "not answered"}
    assert doc["criteria"]["information_systems.alerts_cause_share"]["status"] == \
        "nothing to judge"
    # What the schema refuses: a field too many, a value out of range, another version.
    for bad in ({**doc, "site": "Lyon"}, {**doc, "stage": 7}, {**doc, "schema": "x/2"},
                {**doc, "criteria": {"Press 1": doc["criteria"]["resources.controller_share"]}}):
        assert not validator.is_valid(bad)


def other(doc: dict[str, Any], stage: int, values: dict[str, float | None]) -> dict[str, Any]:
    """Another plant's export: `doc` with another stage and some criteria's values."""
    criteria = {k: {**c, "value": values.get(k, c["value"])} for k, c in doc["criteria"].items()}
    return {**doc, "stage": stage, "areas": {**doc["areas"], "resources": stage},
            "criteria": criteria}


def test_compare_places_the_plant_among_the_others_and_names_each_bad_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = shop_of(tmp_path, None, orders=True, capsys=capsys, **WATCHED)
    doc = exported(shop, capsys, "mine.json")  # orders linked 100 %, no downtime reason
    reasons, orders = "information_systems.downtime_reason_share", \
        "information_systems.orders_linked_share"
    plants: list[tuple[int, dict[str, float | None]]] = [
        (1, {reasons: 0.0, orders: 0.2}), (2, {reasons: 0.5, orders: 1.0}),
        (2, {reasons: 0.9, orders: None}), (4, {reasons: 0.95, orders: 0.9})]
    good = [shop.write(f"plant-{i}.json", json.dumps(other(doc, stage, values)))
            for i, (stage, values) in enumerate(plants)]
    missing = {k: v for k, v in doc.items() if k != "window_days"}
    missing_value = other(doc, 2, {})
    del missing_value["criteria"][reasons]["value"]
    bad = {"not-json.json": "{\"schema\": ", "version.json": json.dumps({**doc, "schema":
                                                                          "ombre.maturity-export/9"}),
           "missing.json": json.dumps(missing), "missing-value.json": json.dumps(missing_value),
           "list.json": "[]"}
    paths = [*good, *(shop.write(name, text) for name, text in bad.items()),
             shop.dir / "absent.json"]
    code, out, err = shop.ombre(capsys, "assess", *SHIFT, "--json", "--compare",
                                *map(str, paths))
    assert code == 1
    problems = err.splitlines()
    assert len(problems) == 6
    for name, words in (("not-json.json", "not JSON (line 1, column 12"),
                        ("version.json", "schema: expected 'ombre.maturity-export/1', found "
                                         "'ombre.maturity-export/9'"),
                        ("missing.json", "window_days: Field required"),
                        ("missing-value.json", f"criteria.{reasons}.value: Field required"),
                        ("list.json", "not an export"), ("absent.json", "cannot be read")):
        assert any(f"--compare {shop.dir / name}: {words}" in p for p in problems), (name, err)
    found = json.loads(out)  # the four good files are compared all the same
    assert found["plants"] == 4
    assert (found["stage"], found["stages"]) == (3, {"1": 1, "2": 2, "4": 1})
    assert found["areas"]["resources"] == {"stage": 4, "stages": {"1": 1, "2": 2, "4": 1}}
    assert found["areas"]["culture"] == {"stage": None, "stages": {"not assessed": 4}}
    # Reasons: 0 % here; one other plant at 0 % (a tie counts half), three above.
    assert found["criteria"][reasons] == {
        "stage": 4, "declared": False, "answer": None, "value": 0.0, "threshold": 0.8,
        "status": "not met", "plants": 4, "percentile": 12.5, "median": pytest.approx(0.7)}
    # Orders: 100 % here; one plant did not measure it; of three, two below and one tie.
    assert found["criteria"][orders]["plants"] == 3
    assert found["criteria"][orders]["percentile"] == pytest.approx(100 * 2.5 / 3, abs=0.1)
    assert found["criteria"]["information_systems.alerts_cause_share"]["percentile"] is None
    again = shop.dir / "again.json"  # both flags at once: the file, and the comparison
    code, out, err = shop.ombre(capsys, "assess", *SHIFT, "--export", str(again),
                                "--compare", *map(str, good))
    assert (code, err) == (0, "")
    assert json.loads(again.read_text()) == doc
    assert "This plant among 4 other plants" in out
    assert "Overall stage: 3 visibility; the others: 1 at stage 1, 2 at stage 2, 1 at " \
           "stage 4" in out
    assert f"  {reasons:<46} 4 transparency" in out
    code, _, err = shop.ombre(capsys, "assess", *SHIFT, "--compare", str(paths[-1]))
    assert code == 1
    assert "no export could be read" in err
