"""From a machine's last signal values to its state: the raw state text, its ISO 22400
category, and whether it counts as a failure. The four ways a config can declare it
(a table, rules, OPC 40001 Machinery, PackML) are tables of data here."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shadow.config import (
    Condition,
    MachineryState,
    PackmlState,
    RulesState,
    StateConfig,
    StateOutcome,
    TableState,
)
from shadow.timeline import Category

SignalValue = float | str | bool | None


@dataclass(frozen=True, slots=True)
class State:
    raw: str  # what the machine said, as text: "RUNNING", "Executing/Processing", a rule's name
    category: Category | None  # None: unclassified
    failure: bool = False
    mapped: bool = True  # False when the raw state is not in the declared table


UNKNOWN = State("unknown", None)  # the machine has been silent longer than silence_s
NO_STATE = State("no state yet", None)  # no state signal has been received


def as_text(value: SignalValue) -> str:
    """A signal value as the key of a state table: 3.0 -> "3", True -> "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}

# OPC 40001-1: MachineryItemState and MachineryOperationMode, by name and by value.
MACHINERY_ITEM_STATES = ("NotAvailable", "OutOfService", "Executing", "NotExecuting")
MACHINERY_MODES = ("None", "Maintenance", "Setup", "Processing")
# (item state, operation mode or "*", job loaded or None for either) -> category, failure;
# the first matching row wins. shared/reference/iso22400.md has the table.
MACHINERY_TABLE: tuple[tuple[str, str, bool | None, StateOutcome | None], ...] = (
    ("Executing", "Processing", None, StateOutcome(category=Category.APT)),
    ("Executing", "Setup", None, StateOutcome(category=Category.ASUT)),
    ("Executing", "Maintenance", True, StateOutcome(category=Category.ADET)),
    ("Executing", "Maintenance", False, StateOutcome(category=Category.ADOT)),
    ("Executing", "*", None, StateOutcome(category=Category.APT)),
    ("OutOfService", "*", True, StateOutcome(category=Category.ADET, failure=True)),
    ("OutOfService", "*", False, StateOutcome(category=Category.ADOT)),
    ("NotExecuting", "*", None, StateOutcome(category=Category.ADOT)),
    ("NotAvailable", "*", None, None),
)

# PackML (OPC 30050 / ISA-TR88.00.02): state and unit mode numbers.
PACKML_STATES = ("Undefined", "Clearing", "Stopped", "Starting", "Idle", "Suspended", "Execute",
                 "Stopping", "Aborting", "Aborted", "Holding", "Held", "Unholding",
                 "Suspending", "Unsuspending", "Resetting", "Completing", "Complete")
PACKML_MODES = ("Undefined", "Production", "Maintenance", "Manual")
_WAITING = ("Clearing", "Stopped", "Starting", "Idle", "Suspended", "Stopping", "Unholding",
            "Suspending", "Unsuspending", "Resetting", "Completing", "Complete")
PACKML_TABLE: tuple[tuple[str, str, bool | None, StateOutcome | None], ...] = (
    ("*", "Maintenance", True, StateOutcome(category=Category.ADET)),
    ("*", "Maintenance", False, StateOutcome(category=Category.ADOT)),
    ("Execute", "Production", None, StateOutcome(category=Category.APT)),
    ("Execute", "Manual", None, StateOutcome(category=Category.ASUT)),
    *((s, "*", None, StateOutcome(category=Category.ADET, failure=True))
      for s in ("Aborting", "Aborted", "Holding", "Held")),
    *((s, "*", True, StateOutcome(category=Category.ADET)) for s in _WAITING),
    *((s, "*", False, StateOutcome(category=Category.ADOT)) for s in _WAITING),
)


def _holds(condition: Condition, value: SignalValue) -> bool:
    """A rule's condition on a signal's last good value: numbers compare as numbers,
    a text with the value as text; a missing value never matches."""
    if value is None:
        return False
    if isinstance(condition.value, str):
        return (as_text(value) == condition.value) == (condition.op == "==")
    return (isinstance(value, float | int) and not isinstance(value, bool)
            and _OPS[condition.op](float(value), condition.value))


def _enum_name(value: SignalValue, names: tuple[str, ...]) -> str | None:
    """The enumeration name for a number or a (case-insensitive) name; None if neither."""
    if isinstance(value, float) and value.is_integer() and 0 <= value < len(names):
        return names[int(value)]
    text = as_text(value)
    if text.isdigit() and int(text) < len(names):
        return names[int(text)]
    return next((n for n in names if n.lower() == text.lower()), None)


def _lookup(table: tuple[tuple[str, str, bool | None, StateOutcome | None], ...],
            state: str, mode: str, job: bool) -> State:
    raw = f"{state}/{mode}"
    for row_state, row_mode, row_job, outcome in table:
        if row_state in (state, "*") and row_mode in (mode, "*") and row_job in (job, None):
            return State(raw, None) if outcome is None else State(
                raw, outcome.category, outcome.failure)
    return State(raw, None, mapped=False)


@dataclass(frozen=True, slots=True)
class Companion:
    """A companion specification's state machine: its state and mode names (their
    position is their number) and the table from (state, mode, job) to outcome."""

    states: tuple[str, ...]
    modes: tuple[str, ...]
    table: tuple[tuple[str, str, bool | None, StateOutcome | None], ...]

    def evaluate(self, values: Mapping[str, SignalValue], job: bool, state_signal: str,
                 mode_signal: str) -> State:
        if state_signal not in values:
            return NO_STATE
        state = _enum_name(values[state_signal], self.states)
        mode = _enum_name(values.get(mode_signal), self.modes) or self.modes[0]
        if state is None:
            return State(as_text(values[state_signal]), None, mapped=False)
        return _lookup(self.table, state, mode, job)


MACHINERY = Companion(MACHINERY_ITEM_STATES, MACHINERY_MODES, MACHINERY_TABLE)
PACKML = Companion(PACKML_STATES, PACKML_MODES, PACKML_TABLE)


def evaluate(config: StateConfig | None, values: Mapping[str, SignalValue], job: bool) -> State:
    """The state that `config` reads from the last good `values` and whether a job is
    loaded."""
    if isinstance(config, TableState):
        if config.signal not in values:
            return NO_STATE
        raw = as_text(values[config.signal])
        entry = config.map.get(raw)
        if entry is None:
            return State(raw, None, mapped=False)
        return State(raw, *entry.pick(job))
    if isinstance(config, RulesState):
        for i, rule in enumerate(config.rules, 1):
            if rule.job in (None, job) and all(_holds(c, values.get(c.signal))
                                                for c in rule.when):
                return State(rule.name or f"rule {i}", rule.category, rule.failure)
        return State("no rule", config.default)
    if isinstance(config, MachineryState):
        return MACHINERY.evaluate(values, job, config.item_state, config.operation_mode)
    if isinstance(config, PackmlState):
        return PACKML.evaluate(values, job, config.state, config.mode)
    return NO_STATE
