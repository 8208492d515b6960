"""The shadow's part of the YAML config, loaded as a user writes it: what loads, and
every problem with its key path, line and a message naming what was wrong."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from gateway.config_load import ConfigProblem
from ombre.config import OmbreConfig, load_config
from shadow.config import CountersConfig, MachineryState, RulesState, TableState
from shadow.timeline import Category
from tests.gateway.test_config import line_of, only_problem, write

MACHINE = "sites[0].lines[0].machines[0]"
BASE = """\
sites:
  - id: plant
    lines:
      - id: line-1
        machines:
          - id: press-1
            signals:
              - name: state
                type: string
              - name: order
                type: string
              - name: total
              - name: scrap
"""


def load(tmp_path: Path, text: str) -> OmbreConfig:
    return load_config(write(tmp_path, text), {})


def machine(extra: str) -> str:
    """BASE with `extra` (keys of the machine, indented 12) added to press-1."""
    return BASE + extra


def test_shadow_settings_load(tmp_path: Path) -> None:
    text = machine("""\
            state:
              type: table
              signal: state
              map:
                RUNNING: APT
                BREAKDOWN: {category: ADET, failure: true}
                3: ADOT
                true: ASUT
            counters:
              total: total
              scrap: scrap
              max_step: 100
            job_signal: order
            silence_s: 30
            exclude_idle: true
shadow:
  calendar:
    timezone: Europe/Paris
    shifts:
      - name: early
        start: "06:00"
        end: "14:00"
        days: [mon, tue]
    planned_stops:
      - reason: maintenance
        from: 2026-03-02T10:00:00+01:00
        to: 2026-03-02T11:00:00+01:00
        machines: [press-1]
  reason_codes:
    - code: tool
      text: tool broke
      category: ADET
      failure: true
""")
    config = load(tmp_path, text)
    [press] = config.machines()
    assert isinstance(press.state, TableState)
    assert press.state.map["RUNNING"].category == Category.APT
    assert press.state.map["BREAKDOWN"].failure
    # Keys are looked up as text: a number or a boolean key stays as written.
    assert press.state.map["3"].category == Category.ADOT
    assert press.state.map["true"].category == Category.ASUT
    assert press.counters == CountersConfig(total="total", scrap="scrap", max_step=100)
    assert (press.job_signal, press.silence_s, press.exclude_idle) == ("order", 30, True)
    calendar = config.shadow.calendar
    assert calendar.timezone == "Europe/Paris"
    assert (calendar.shifts[0].start, calendar.shifts[0].end) == (time(6), time(14))
    assert calendar.shifts[0].days == ["mon", "tue"]
    stop = calendar.planned_stops[0]
    assert stop.from_ == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert stop.to is not None
    assert stop.to.utcoffset() == timedelta(hours=1)
    assert stop.days == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert config.shadow.reason_codes[0].category == Category.ADET


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    [press] = config.machines()
    assert (press.state, press.counters, press.job_signal) == (None, None, None)
    assert (press.silence_s, press.exclude_idle) == (120, False)
    assert config.shadow.enabled
    assert config.shadow.database is None
    assert config.shadow.calendar.timezone == "UTC"
    assert config.shadow.calendar.shifts == []


def test_shift_times_written_without_quotes_are_times_of_day(tmp_path: Path) -> None:
    """`end: 14:00` is how a person writes a shift; YAML 1.1 reads 14:00 as the
    base-60 integer 840. It must still mean 14:00, not 00:14."""
    text = BASE + """\
shadow:
  calendar:
    shifts:
      - name: early
        start: 06:00
        end: 14:00
      - name: late
        start: 14:00
        end: 22:00
    planned_stops:
      - reason: lunch
        start: 12:00
        end: 12:30
"""
    calendar = load(tmp_path, text).shadow.calendar
    assert [(s.start, s.end) for s in calendar.shifts] == [(time(6), time(14)),
                                                            (time(14), time(22))]
    stop = calendar.planned_stops[0]
    assert (stop.start, stop.end) == (time(12), time(12, 30))


SIGNALS = "expected one of this machine's signals (state, order, total, scrap), found "

# Machine settings that cannot be used: the machine's keys, the key path below the
# machine, text on the line the problem points at, and the message.
MACHINE_PROBLEMS = [
    pytest.param("state: {type: table, signal: status, map: {RUNNING: APT}}", "state.signal",
                 "state:", SIGNALS + "'status'", id="state-signal-the-machine-lacks"),
    pytest.param("state: {type: machinery}", "state.item_state", "state:",
                 SIGNALS + "'MachineryItemState'", id="machinery-default-signal-names"),
    pytest.param("state:\n  type: rules\n  rules:\n"
                 "    - when: [{signal: state, op: '==', value: 1}]\n      category: APT",
                 "state.rules[0].when[0].signal", "- when:",
                 "expected a number signal, found 'state' of type string",
                 id="rule-on-a-string-signal"),
    pytest.param("counters:\n  total: total\n  good: scrap", "counters.total", "total: total",
                 "expected exactly one of `total` and `good`, found both",
                 id="counters-total-and-good"),
    pytest.param("counters:\n  scrap: scrap", "counters.total", "counters:",
                 "expected exactly one of `total` and `good`, found neither",
                 id="counters-neither-total-nor-good"),
    pytest.param("counters:\n  total: total\n  scrap: order", "counters.scrap", "scrap: order",
                 "expected a number signal, found 'order' of type string",
                 id="counter-on-a-string-signal"),
    pytest.param("counters:\n  total: parts", "counters.total", "total: parts",
                 SIGNALS + "'parts'", id="counter-on-an-unknown-signal"),
    pytest.param("counters:\n  total: total\n  max_step: 0", "counters.max_step", "max_step:",
                 "expected an integer of at least 1, found 0", id="max-step-not-positive"),
    pytest.param("job_signal: total", "job_signal", "job_signal:",
                 "expected a string signal, found 'total' of type number",
                 id="job-signal-is-a-number-signal"),
    pytest.param("silence_s: 0", "silence_s", "silence_s:",
                 "expected a number greater than 0, found 0", id="silence-not-positive"),
]


@pytest.mark.parametrize(("keys", "path", "needle", "message"), MACHINE_PROBLEMS)
def test_machine_settings_problem(tmp_path: Path, keys: str, path: str, needle: str,
                                  message: str) -> None:
    text = machine(textwrap.indent(keys + "\n", " " * 12))
    assert only_problem(tmp_path, text) == ConfigProblem(f"{MACHINE}.{path}",
                                                        line_of(text, needle), message)


def test_machinery_and_rules_load(tmp_path: Path) -> None:
    text = BASE.replace("""\
              - name: total
""", """\
              - name: total
              - name: speed
              - name: item
              - name: mode
""") + """\
          - id: press-2
            signals:
              - name: item
                type: string
              - name: mode
            state:
              type: machinery
              item_state: item
              operation_mode: mode
"""
    text = text.replace("""\
              - name: scrap
""", """\
              - name: scrap
            state:
              type: rules
              rules:
                - when: [{signal: speed, op: ">", value: 0}]
                  job: true
                  category: APT
                - category: ADOT
              default: ADET
""", 1)
    press1, press2 = load(tmp_path, text).machines()
    assert isinstance(press1.state, RulesState)
    assert press1.state.rules[0].when[0].value == 0.0
    assert press1.state.rules[0].job is True
    assert press1.state.default == Category.ADET
    assert isinstance(press2.state, MachineryState)
    assert (press2.state.item_state, press2.state.operation_mode) == ("item", "mode")


def test_unknown_state_category_names_the_categories(tmp_path: Path) -> None:
    """Like every other closed set of values in the config (source types, weekdays),
    a wrong category is reported with the values allowed."""
    text = machine("""\
            state:
              type: table
              signal: state
              map:
                RUNNING: OEE
""")
    problem = only_problem(tmp_path, text)
    assert (problem.path, problem.line) == (f"{MACHINE}.state.map.RUNNING.category",
                                            line_of(text, "RUNNING: OEE"))
    assert problem.message.endswith("found 'OEE'")
    assert [c.value for c in Category if repr(c.value) not in problem.message] == []




@pytest.mark.parametrize("keys", [
    "        start: '10:00'\n",
    "        from: 2026-03-02T10:00:00Z\n",
    "        end: '10:00'\n        to: 2026-03-02T11:00:00Z\n",
])
def test_planned_stop_with_neither_start_end_nor_from_to(tmp_path: Path, keys: str) -> None:
    text = BASE + """\
shadow:
  calendar:
    planned_stops:
      - reason: maintenance
""" + keys
    problem = only_problem(tmp_path, text)
    assert problem.path == "shadow.calendar.planned_stops[0].start"
    assert problem.line is not None
    assert problem.line >= line_of(text, "- reason: maintenance")
    assert problem.message == ("expected either `start` and `end` (recurring) or `from` and "
                               "`to` (dated), found neither complete")


def test_planned_stop_with_both_recurring_and_dated(tmp_path: Path) -> None:
    text = BASE + """\
shadow:
  calendar:
    planned_stops:
      - reason: maintenance
        start: '10:00'
        end: '11:00'
        from: 2026-03-02T10:00:00Z
        to: 2026-03-02T11:00:00Z
"""
    problem = only_problem(tmp_path, text)
    assert problem.path == "shadow.calendar.planned_stops[0].start"
    assert problem.message.endswith("found both")




def test_dated_planned_stop_must_end_after_it_starts(tmp_path: Path) -> None:
    text = BASE + """\
shadow:
  calendar:
    planned_stops:
      - reason: maintenance
        from: 2026-03-02T11:00:00Z
        to: 2026-03-02T10:00:00Z
"""
    problem = only_problem(tmp_path, text)
    assert (problem.path, problem.line) == ("shadow.calendar.planned_stops[0].to",
                                            line_of(text, "to:"))
    assert problem.message == "expected a time after `from`, found 2026-03-02 10:00:00+00:00"






def test_duplicate_shift_name(tmp_path: Path) -> None:
    text = BASE + """\
shadow:
  calendar:
    shifts:
      - name: early
        start: "06:00"
        end: "14:00"
      - name: early
        start: "14:00"
        end: "22:00"
"""
    first, second = [i for i, row in enumerate(text.splitlines(), 1) if "name: early" in row]
    assert only_problem(tmp_path, text) == ConfigProblem(
        "shadow.calendar.shifts[1].name", second,
        f"expected a unique shift name, found 'early' again (first at line {first})")


# Plant settings that cannot be used: keys added to BASE at the top level, the key path,
# text on the line the problem points at, and the message.
PLANT_PROBLEMS = [
    pytest.param("shadow:\n  calendar:\n    planned_stops:\n      - reason: maintenance\n"
                 "        from: 2026-03-02T10:00:00Z\n        to: 2026-03-02T11:00:00Z\n"
                 "        machines: [press-1,\n          press-9]",
                 "shadow.calendar.planned_stops[0].machines[1]", "press-9]",
                 "expected a machine id of the plant, found 'press-9'", id="stop-unknown-machine"),
    pytest.param("shadow:\n  calendar:\n    planned_stops:\n      - reason: maintenance\n"
                 "        from: 2026-03-02T10:00:00\n        to: 2026-03-02T11:00:00Z",
                 "shadow.calendar.planned_stops[0].from", "from:",
                 "expected a time with a zone such as 2026-11-23T13:30:00+01:00, found "
                 "2026-03-02T10:00:00", id="dated-stop-without-zone"),
    pytest.param("shadow:\n  calendar:\n    timezone: Europe/Atlantis",
                 "shadow.calendar.timezone", "timezone:",
                 "expected an IANA time zone such as Europe/Paris, found 'Europe/Atlantis'",
                 id="unknown-time-zone"),
    pytest.param("shadow:\n  calendar:\n    shifts:\n      - name: early\n"
                 "        start: '06:00'\n        end: '14:00'\n        days: [mon, funday]",
                 "shadow.calendar.shifts[0].days[1]", "days:",
                 "expected one of 'mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun', "
                 "found 'funday'", id="unknown-weekday"),
    pytest.param("sinks:\n  - type: sqlite\n    name: shadow", "sinks[0].name", "name: shadow",
                 "expected a name other than 'shadow', which the shadow uses, found it",
                 id="sink-named-shadow"),
]


@pytest.mark.parametrize(("keys", "path", "needle", "message"), PLANT_PROBLEMS)
def test_plant_settings_problem(tmp_path: Path, keys: str, path: str, needle: str,
                                message: str) -> None:
    text = BASE + keys + "\n"
    assert only_problem(tmp_path, text) == ConfigProblem(path, line_of(text, needle), message)


def test_a_reason_signal_must_be_one_of_the_machines(tmp_path: Path) -> None:
    text = machine("""\
            reason:
              signal: fault_code
              map: {12: SPINDLE_FAULT, 0: null}
""")
    problem = only_problem(tmp_path, text)
    assert (problem.path, problem.line) == (f"{MACHINE}.reason.signal",
                                            line_of(text, "signal: fault_code"))
    assert problem.message == ("expected one of this machine's signals (state, order, total, "
                               "scrap), found 'fault_code'")


def test_a_reason_map_takes_numbers_and_texts_to_codes_or_to_no_reason(tmp_path: Path) -> None:
    config = load(tmp_path, machine("""\
            reason:
              signal: state
              map: {12: SPINDLE_FAULT, E917: COOLANT, 0: null}
"""))
    reason = config.machines()[0].reason
    assert reason is not None
    assert (reason.map, reason.grace_s) == ({"12": "SPINDLE_FAULT", "E917": "COOLANT",
                                             "0": None}, 5.0)
