"""The self-assessment in the verdict: declared areas take their stage from the answers,
a stage counts only when all its questions are answered "yes" (no averaging), answers
count as they stood at the window's end, and a measured area goes past the stages its
data can reach only on declared answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shadow import self_assessment
from shadow.calendar import to_ns
from shadow.schema import open_engine
from shadow.self_assessment import Answer
from shadow.self_assessment_questions import QUESTIONS
from shadow.store import ShadowStore
from tests.shadow.scenarios import at
from tests.shadow.test_maturity import WATCHED, assess, give_reasons, shop_of, stages
from tests.shadow.test_replay import Shop


def answer(shop: Shop, when: str, **answers: Answer) -> None:
    """Answers given at `when` (HH:MM on the worked shift's day) by an admin."""
    engine = open_engine(shop.engine_url())
    try:
        self_assessment.save(ShadowStore(engine), answers, "token:1:admin", to_ns(at(when)))
    finally:
        engine.dispose()


def criteria(result: dict[str, Any], area: str) -> dict[str, dict[str, Any]]:
    return {c["key"].split(".")[1]: c for c in result["areas"][area]["criteria"]}


def test_every_area_has_3_to_5_questions_in_both_languages() -> None:
    per_area = {q.area: 0 for q in QUESTIONS}
    for q in QUESTIONS:
        per_area[q.area] += 1
        assert q.en.endswith("."), q.key
        assert q.fr.endswith("."), q.key
        assert 1 <= q.stage <= 6
    assert per_area == {"organisational_structure": 5, "culture": 5, "resources": 3,
                        "information_systems": 3}
    assert len({q.key for q in QUESTIONS}) == len(QUESTIONS)


def test_culture_takes_the_stage_whose_answers_all_hold_and_is_marked_declared(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = shop_of(tmp_path, None, orders=True, capsys=capsys, **WATCHED)
    give_reasons(shop, capsys, ["06:00", "08:35", "11:20", "13:30"])
    before = assess(shop, capsys)
    assert stages(before) == (4, 4, 4)
    assert before["areas"]["culture"]["status"] == "not assessed"
    # Stage 3 has two questions, one only partly true: culture stops at 2, and the "yes"
    # of stage 4 does not lift it (no averaging).
    answer(shop, "10:00", why_explained="yes", trained="yes", shown_on_floor="yes",
           operators_chose="partly", operators_explain="yes")
    result = assess(shop, capsys)
    culture = result["areas"]["culture"]
    assert (culture["stage"], culture["status"]) == (2, "declared")
    assert culture["note"] == "declared in the self-assessment, not measured"
    found = criteria(result, "culture")
    assert {k: c["status"] for k, c in found.items()} == {
        "why_explained": "met", "trained": "met", "shown_on_floor": "met",
        "operators_chose": "not met", "operators_explain": "met"}
    assert found["trained"]["declared"] is True
    assert (found["trained"]["answered_by"], found["trained"]["answered_at"]) == \
        ("token:1:admin", "2026-03-02T10:00:00Z")
    assert result["stage"] == 2  # the lowest assessed area
    assert "culture (declared)" in result["basis"]
    assert result["areas"]["organisational_structure"]["status"] == "not assessed"
    # An answer given after the window's end does not change that window's assessment.
    answer(shop, "15:00", operators_chose="yes")
    assert assess(shop, capsys) == result
    later = assess(shop, capsys, "--to", "2026-03-02T16:00:00Z")
    assert later["areas"]["culture"]["stage"] == 4
    # In words, the declared answers say so.
    code, out, _ = shop.ombre(capsys, "assess", "--from", "2026-03-02T06:00:00Z", "--to",
                              "2026-03-02T14:00:00Z")
    assert code == 0
    assert "Culture: stage 2 computerisation" not in out
    assert "Culture: stage 2 connectivity" in out
    assert "(declared: partly)" in out


def test_resources_reach_stage_5_only_on_declared_answers_over_measured_stage_4(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = shop_of(tmp_path, None, orders=True, capsys=capsys, **WATCHED)
    answer(shop, "10:00", maintenance_reads_alerts="yes", condition_based="yes",
           self_adjusting="no")
    result = assess(shop, capsys)
    assert result["areas"]["resources"]["stage"] == 5
    assert result["areas"]["resources"]["status"] == "measured"
    # Information systems are measured at 3 (downtime without reasons): their declared
    # stage-6 questions, unanswered, change nothing.
    assert result["areas"]["information_systems"]["stage"] == 3
    assert criteria(result, "information_systems")["erp_replans"]["status"] == "not answered"
    assert result["stage"] == 3
