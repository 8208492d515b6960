"""shadow.states.evaluate: a machine's raw state and ISO 22400 category from its last
good signal values, for the four ways a config declares it (table, rules, OPC 40001
Machinery, PackML); the mapping table of shared/reference/iso22400.md."""

from __future__ import annotations

from typing import Any

import pytest

from shadow.config import MachineryState, PackmlState, RulesState, TableState
from shadow.states import NO_STATE, SignalValue, State, as_text, evaluate
from shadow.timeline import Category

TABLE = TableState.model_validate({
    "type": "table", "signal": "status",
    "map": {"RUNNING": "APT", "SETUP": "ASUT",
            "BREAKDOWN": {"category": "ADET", "failure": True}, "3": "ADOT", "true": "APT",
            "false": "ADOT"},
})


@pytest.mark.parametrize(("value", "expected"), [
    ("RUNNING", State("RUNNING", Category.APT)),
    ("SETUP", State("SETUP", Category.ASUT)),
    ("BREAKDOWN", State("BREAKDOWN", Category.ADET, failure=True)),
    (3.0, State("3", Category.ADOT)),  # a number is looked up by its text: "3", not "3.0"
    (3, State("3", Category.ADOT)),
    (True, State("true", Category.APT)),
    (False, State("false", Category.ADOT)),
])
def test_table_maps_values(value: SignalValue, expected: State) -> None:
    assert evaluate(TABLE, {"status": value, "other": "SETUP"}, job=False) == expected


@pytest.mark.parametrize(("value", "raw"), [("running", "running"), ("PAUSED", "PAUSED"),
                                            (3.5, "3.5"), (4.0, "4")])
def test_table_unmapped_value_is_unclassified_and_flagged(value: SignalValue, raw: str) -> None:
    state = evaluate(TABLE, {"status": value}, job=True)
    assert state == State(raw, None, failure=False, mapped=False)
    assert state.category is None
    assert not state.mapped


def test_table_without_its_signal_has_no_state_yet() -> None:
    assert evaluate(TABLE, {"other": "RUNNING"}, job=True) is NO_STATE
    assert NO_STATE.category is None


def test_table_short_form_and_numeric_keys() -> None:
    table = TableState.model_validate({"type": "table", "signal": "s",
                                       "map": {1: "APT", 2: {"category": "ADET"}}})
    assert set(table.map) == {"1", "2"}
    assert evaluate(table, {"s": 1.0}, job=False) == State("1", Category.APT)
    assert evaluate(table, {"s": 2.0}, job=False) == State("2", Category.ADET)


@pytest.mark.parametrize(("value", "text"), [(3.0, "3"), (-2.0, "-2"), (2.5, "2.5"),
                                             (True, "true"), (False, "false"), ("X", "X"),
                                             (7, "7")])
def test_as_text(value: SignalValue, text: str) -> None:
    assert as_text(value) == text


RULES = RulesState.model_validate({
    "type": "rules",
    "rules": [
        {"when": [{"signal": "speed", "op": ">", "value": 100}], "job": True,
         "category": "APT"},
        {"when": [{"signal": "speed", "op": ">", "value": 0}], "category": "ASUT"},
        {"when": [{"signal": "alarm", "op": "==", "value": 1}], "category": "ADET",
         "failure": True},
        {"job": False, "category": "ADOT"},
    ],
    "default": "ADET",
})


@pytest.mark.parametrize(("values", "job", "expected"), [
    ({"speed": 150.0, "alarm": 1.0}, True, State("rule 1", Category.APT)),  # first match wins
    ({"speed": 150.0, "alarm": 1.0}, False, State("rule 2", Category.ASUT)),  # rule 1 needs a job
    ({"speed": 50.0}, True, State("rule 2", Category.ASUT)),
    ({"speed": 0.0, "alarm": 1.0}, True, State("rule 3", Category.ADET, failure=True)),
    ({"speed": 0.0, "alarm": 0.0}, False, State("rule 4", Category.ADOT)),
    ({"speed": 0.0, "alarm": 0.0}, True, State("no rule", Category.ADET)),  # the default
    ({"speed": 150, "alarm": 0}, True, State("rule 1", Category.APT)),  # ints are numbers
])
def test_rules(values: dict[str, SignalValue], job: bool, expected: State) -> None:
    assert evaluate(RULES, values, job) == expected


def test_rules_ignore_signals_that_are_absent() -> None:
    """The model passes only good values: a signal whose last reading was bad is absent,
    and a condition on it does not hold."""
    assert evaluate(RULES, {"alarm": 1.0}, job=True) == State("rule 3", Category.ADET,
                                                              failure=True)
    assert evaluate(RULES, {}, job=True) == State("no rule", Category.ADET)


@pytest.mark.parametrize("speed", ["150", True, None])
def test_rules_conditions_hold_only_on_numbers(speed: SignalValue) -> None:
    assert evaluate(RULES, {"speed": speed}, job=True) == State("no rule", Category.ADET)


def test_rules_without_default_leave_the_state_unclassified() -> None:
    rules = RulesState.model_validate({"type": "rules", "rules": [
        {"when": [{"signal": "speed", "op": ">=", "value": 10}], "category": "APT"}]})
    assert evaluate(rules, {"speed": 10.0}, job=False) == State("rule 1", Category.APT)
    state = evaluate(rules, {"speed": 9.99}, job=False)
    assert state == State("no rule", None)
    assert state.category is None


@pytest.mark.parametrize(("op", "holds"), [(">", [False, False, True]),
                                           (">=", [False, True, True]),
                                           ("<", [True, False, False]),
                                           ("<=", [True, True, False]),
                                           ("==", [False, True, False]),
                                           ("!=", [True, False, True])])
def test_rule_operators(op: str, holds: list[bool]) -> None:
    rules = RulesState.model_validate({"type": "rules", "rules": [
        {"when": [{"signal": "x", "op": op, "value": 5}], "category": "APT"}]})
    got = [evaluate(rules, {"x": x}, job=False).category == Category.APT
           for x in (4.0, 5.0, 6.0)]
    assert got == holds


def test_rule_with_several_conditions_needs_all() -> None:
    rules = RulesState.model_validate({"type": "rules", "rules": [
        {"when": [{"signal": "a", "op": ">", "value": 0}, {"signal": "b", "op": ">", "value": 0}],
         "category": "APT"}], "default": "ADOT"})
    assert evaluate(rules, {"a": 1.0, "b": 1.0}, job=False).category == Category.APT
    assert evaluate(rules, {"a": 1.0, "b": 0.0}, job=False).category == Category.ADOT
    assert evaluate(rules, {"a": 1.0}, job=False).category == Category.ADOT


MACHINERY = MachineryState.model_validate({"type": "machinery"})
ITEM, MODE = "MachineryItemState", "MachineryOperationMode"


@pytest.mark.parametrize(("item", "mode", "job", "expected"), [
    ("Executing", "Processing", True, State("Executing/Processing", Category.APT)),
    ("Executing", "Processing", False, State("Executing/Processing", Category.APT)),
    ("Executing", "Setup", True, State("Executing/Setup", Category.ASUT)),
    ("OutOfService", "Processing", True,
     State("OutOfService/Processing", Category.ADET, failure=True)),
    ("OutOfService", "None", False, State("OutOfService/None", Category.ADOT)),
    ("NotExecuting", "Processing", True, State("NotExecuting/Processing", Category.ADOT)),
    ("NotExecuting", "Setup", False, State("NotExecuting/Setup", Category.ADOT)),
    ("NotAvailable", "Processing", True, State("NotAvailable/Processing", None)),
    # by enumeration value: NotAvailable 0, OutOfService 1, Executing 2, NotExecuting 3;
    # None 0, Maintenance 1, Setup 2, Processing 3
    (2.0, 3.0, False, State("Executing/Processing", Category.APT)),
    (2.0, 2.0, True, State("Executing/Setup", Category.ASUT)),
    (1.0, 0.0, True, State("OutOfService/None", Category.ADET, failure=True)),
    (1.0, 0.0, False, State("OutOfService/None", Category.ADOT)),
    (3.0, 3.0, True, State("NotExecuting/Processing", Category.ADOT)),
    (0.0, 3.0, True, State("NotAvailable/Processing", None)),
    ("2", "3", True, State("Executing/Processing", Category.APT)),  # numbers as text
    ("executing", "setup", True, State("Executing/Setup", Category.ASUT)),  # any case
])
def test_machinery(item: SignalValue, mode: SignalValue, job: bool, expected: State) -> None:
    assert evaluate(MACHINERY, {ITEM: item, MODE: mode}, job) == expected


def test_machinery_not_available_is_mapped_but_unclassified() -> None:
    state = evaluate(MACHINERY, {ITEM: "NotAvailable", MODE: "None"}, job=False)
    assert (state.category, state.mapped) == (None, True)


def test_machinery_without_a_mode_takes_the_first_mode() -> None:
    assert evaluate(MACHINERY, {ITEM: "OutOfService"}, job=True) == State(
        "OutOfService/None", Category.ADET, failure=True)


@pytest.mark.parametrize("item", ["Exploding", 7.0, 2.5, -1.0])
def test_machinery_unknown_item_state_is_unmapped(item: SignalValue) -> None:
    state = evaluate(MACHINERY, {ITEM: item, MODE: "Processing"}, job=True)
    assert state == State(as_text(item), None, mapped=False)


def test_machinery_without_its_item_state_has_no_state_yet() -> None:
    assert evaluate(MACHINERY, {MODE: "Processing"}, job=True) is NO_STATE


def test_machinery_signal_names_come_from_the_config() -> None:
    config = MachineryState.model_validate({"type": "machinery", "item_state": "st",
                                            "operation_mode": "md"})
    assert evaluate(config, {"st": "Executing", "md": "Setup"}, job=True) == State(
        "Executing/Setup", Category.ASUT)
    assert evaluate(config, {ITEM: "Executing", MODE: "Setup"}, job=True) is NO_STATE


PACKML = PackmlState.model_validate({"type": "packml"})


@pytest.mark.parametrize(("state", "mode", "job", "expected"), [
    ("Execute", "Production", True, State("Execute/Production", Category.APT)),
    ("Held", "Production", True, State("Held/Production", Category.ADET, failure=True)),
    ("Held", "Production", False, State("Held/Production", Category.ADET, failure=True)),
    ("Aborted", "Production", True, State("Aborted/Production", Category.ADET, failure=True)),
    ("Suspended", "Production", True, State("Suspended/Production", Category.ADET)),
    ("Suspended", "Production", False, State("Suspended/Production", Category.ADOT)),
    ("Idle", "Production", False, State("Idle/Production", Category.ADOT)),
    ("Idle", "Production", True, State("Idle/Production", Category.ADET)),
    # numbers: Idle 4, Suspended 5, Execute 6, Held 11; Production 1
    (6.0, 1.0, True, State("Execute/Production", Category.APT)),
    (11.0, 1.0, True, State("Held/Production", Category.ADET, failure=True)),
    (5.0, 1.0, True, State("Suspended/Production", Category.ADET)),
    (4.0, 1.0, False, State("Idle/Production", Category.ADOT)),
    ("6", "1", True, State("Execute/Production", Category.APT)),
])
def test_packml(state: SignalValue, mode: SignalValue, job: bool, expected: State) -> None:
    got = evaluate(PACKML, {"PackMLState": state, "PackMLMode": mode}, job)
    assert got == expected
    assert got.mapped


def test_packml_suspended_with_a_job_is_a_delay_but_not_a_failure() -> None:
    state = evaluate(PACKML, {"PackMLState": "Suspended", "PackMLMode": "Production"}, job=True)
    assert (state.category, state.failure) == (Category.ADET, False)


@pytest.mark.parametrize(("values", "raw"), [
    ({"PackMLState": "Dancing", "PackMLMode": "Production"}, "Dancing"),
    ({"PackMLState": 18.0, "PackMLMode": 1.0}, "18"),
])
def test_packml_unknown_state_is_unmapped(values: dict[str, Any], raw: str) -> None:
    assert evaluate(PACKML, values, job=True) == State(raw, None, mapped=False)


def test_packml_without_its_state_has_no_state_yet() -> None:
    assert evaluate(PACKML, {"PackMLMode": 1.0}, job=True) is NO_STATE


def test_no_state_config_has_no_state() -> None:
    assert evaluate(None, {"status": "RUNNING"}, job=True) is NO_STATE


# Idle with a job loaded is ADET, idle without a job is ADOT (the README's example).
JOB_TABLE = TableState.model_validate({
    "type": "table", "signal": "status",
    "map": {"RUNNING": "APT", "IDLE": {"job": "ADET", "no_job": "ADOT"},
            "FAULT": {"job": {"category": "ADET", "failure": True}, "no_job": "ADOT"}}})


@pytest.mark.parametrize(("value", "job", "expected"), [
    ("IDLE", True, State("IDLE", Category.ADET)),
    ("IDLE", False, State("IDLE", Category.ADOT)),
    ("FAULT", True, State("FAULT", Category.ADET, failure=True)),
    ("FAULT", False, State("FAULT", Category.ADOT)),
    ("RUNNING", False, State("RUNNING", Category.APT)),
])
def test_a_table_entry_may_depend_on_whether_a_job_is_loaded(
        value: str, job: bool, expected: State) -> None:
    assert evaluate(JOB_TABLE, {"status": value}, job) == expected


NAMED = RulesState.model_validate({"type": "rules", "rules": [
    {"name": "mould change", "when": [{"signal": "mould_change", "op": "==", "value": 1}],
     "category": "ASUT"},
    {"name": "producing", "when": [{"signal": "light", "op": "==", "value": "GREEN"}],
     "category": "APT"},
    {"name": "idle, job loaded", "when": [{"signal": "light", "op": "==", "value": "YELLOW"}],
     "job": True, "category": "ADET"},
    {"name": "idle, no job", "when": [{"signal": "light", "op": "!=", "value": "RED"}],
     "job": False, "category": "ADOT"},
    {"when": [{"signal": "light", "op": "==", "value": 3}], "category": "ADET"},
]})


@pytest.mark.parametrize(("values", "job", "expected"), [
    ({"mould_change": 1.0, "light": "GREEN"}, True, State("mould change", Category.ASUT)),
    ({"mould_change": 0.0, "light": "GREEN"}, True, State("producing", Category.APT)),
    ({"light": "YELLOW"}, True, State("idle, job loaded", Category.ADET)),
    ({"light": "YELLOW"}, False, State("idle, no job", Category.ADOT)),
    ({"light": "RED"}, False, State("no rule", None)),
    ({"light": 3.0}, True, State("rule 5", Category.ADET)),  # unnamed: its position
    ({"light": "3"}, True, State("no rule", None)),  # a number compares only with numbers
])
def test_rules_have_names_and_compare_text(values: dict[str, SignalValue], job: bool,
                                           expected: State) -> None:
    assert evaluate(NAMED, values, job) == expected


def test_a_text_compares_only_for_equality() -> None:
    with pytest.raises(ValueError, match="expected == or != to compare with the text 'RED'"):
        RulesState.model_validate({"type": "rules", "rules": [
            {"when": [{"signal": "light", "op": ">", "value": "RED"}], "category": "APT"}]})


@pytest.mark.parametrize(("entry", "message"), [
    ({"job": "ADET"}, "expected both `job` and `no_job`, found only one"),
    ({"category": "ADOT", "job": "ADET", "no_job": "ADOT"},
     "expected either `category` or `job` and `no_job`, found both"),
    ({"failure": True}, "expected either `category` or `job` and `no_job`, found neither"),
])
def test_a_job_dependent_entry_needs_both_outcomes(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TableState.model_validate({"type": "table", "signal": "s", "map": {"IDLE": entry}})
