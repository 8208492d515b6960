"""The shadow's part of the config file: per machine, where its state, job and part
counts come from (ShadowMachineConfig extends the plant's machine); for the plant, the
database, the shift calendar and the reason codes (`shadow:`). All of it is data: the
model in shadow/model.py interprets it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from gateway.config import GatewayConfig, MachineConfig
from gateway.config_base import ConfigModel, InvalidKeyError, Name, require_unique
from shadow.drift import DEFAULT_BASELINE_POINTS, MIN_BASELINE_POINTS
from shadow.notify_config import NotificationsConfig
from shadow.timeline import Category

SHADOW_SINK = "shadow"  # the shadow's outbox cursor; no configured sink may use the name
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class StateOutcome(ConfigModel):
    """What one raw state means: its ISO 22400 category, and whether a stop in it
    counts as a failure (for MTBF and MTTR)."""

    category: Category
    failure: bool = False


def _outcome(value: object) -> object:
    """`RUNNING: APT` is short for `RUNNING: {category: APT}`."""
    return {"category": value} if isinstance(value, str) else value


class TableEntry(ConfigModel):
    """What one value of a table state means: a category (and whether a stop in it is a
    failure), or, when that depends on whether a job is loaded, an outcome for `job` and
    one for `no_job`: `IDLE: {job: ADET, no_job: ADOT}`."""

    category: Category | None = None
    failure: bool = False
    job: StateOutcome | None = None
    no_job: StateOutcome | None = None

    @field_validator("job", "no_job", mode="before")
    @classmethod
    def _short(cls, value: object) -> object:
        return _outcome(value)

    @model_validator(mode="after")
    def _category_or_job(self) -> TableEntry:
        by_job = self.job is not None or self.no_job is not None
        if by_job and (self.job is None or self.no_job is None):
            raise InvalidKeyError(("job" if self.job is None else "no_job",),
                                  "expected both `job` and `no_job`, found only one")
        if by_job == (self.category is not None):
            raise InvalidKeyError(("category",), "expected either `category` or `job` and "
                                  f"`no_job`, found {'both' if by_job else 'neither'}")
        return self

    def pick(self, job: bool) -> tuple[Category | None, bool]:
        """The category and failure flag with or without a job loaded."""
        outcome = self.job if job else self.no_job
        if outcome is None:
            return self.category, self.failure
        return outcome.category, outcome.failure


class TableState(ConfigModel):
    """A state signal whose values map to categories through a table. Values that are
    numbers in the signal are looked up by their text (`3`, not `3.0`)."""

    type: Literal["table"]
    signal: Name
    map: dict[str, TableEntry] = Field(min_length=1)

    @field_validator("map", mode="before")
    @classmethod
    def _short_outcomes(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(k): _outcome(v) for k, v in value.items()}
        return value


class Condition(ConfigModel):
    """`signal op value`: a number compares as a number; a text (`value: IDLE`) compares
    with the signal's value as text, with `==` or `!=` only."""

    signal: Name
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float | str

    @model_validator(mode="after")
    def _text_equality(self) -> Condition:
        if isinstance(self.value, str) and self.op not in ("==", "!="):
            raise InvalidKeyError(("op",), f"expected == or != to compare with the text "
                                  f"{self.value!r}, found {self.op!r}")
        return self


class StateRule(ConfigModel):
    """Matches when every condition holds on the signals' last good values and, if
    `job` is set, a job is (true) or is not (false) loaded. `name` is the state it
    gives (what the dashboard shows); without one, `rule N` after its position."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    when: list[Condition] = Field(default_factory=list)
    job: bool | None = None
    category: Category
    failure: bool = False


class RulesState(ConfigModel):
    """Rules tried in order; the first that matches gives the state: its `name`, or
    `rule N` after its position. No match gives `default`, or unclassified."""

    type: Literal["rules"]
    rules: list[StateRule] = Field(min_length=1)
    default: Category | None = None


class MachineryState(ConfigModel):
    """OPC 40001 Machinery: MachineryItemState and MachineryOperationMode, by name or
    by enumeration value; shadow/companion.py holds the mapping table."""

    type: Literal["machinery"]
    item_state: Name = "MachineryItemState"
    operation_mode: Name = "MachineryOperationMode"


class PackmlState(ConfigModel):
    """PackML (OPC 30050): the state and unit mode, by name or by number."""

    type: Literal["packml"]
    state: Name = "PackMLState"
    mode: Name = "PackMLMode"


StateConfig = Annotated[TableState | RulesState | MachineryState | PackmlState,
                        Field(discriminator="type")]


class CountersConfig(ConfigModel):
    """Part counters, each a signal that only grows until it is reset. Either a total
    (good = total - scrap - rework) or a good counter (total = good + scrap + rework).
    A step larger than `max_step` is implausible: quarantined, not counted."""

    total: Name | None = None
    good: Name | None = None
    scrap: Name | None = None
    rework: Name | None = None
    max_step: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _total_or_good(self) -> CountersConfig:
        if (self.total is None) == (self.good is None):
            raise InvalidKeyError(("total",), "expected exactly one of `total` and `good`, "
                                  f"found {'both' if self.total else 'neither'}")
        return self

    def signals(self) -> dict[str, Name]:
        """Counter kind -> signal name, for the counters configured."""
        kinds = {"total": self.total, "good": self.good, "scrap": self.scrap,
                 "rework": self.rework}
        return {kind: name for kind, name in kinds.items() if name is not None}


WeRule = Literal[1, 2, 3, 4]
WE_RULES: tuple[WeRule, ...] = (1, 2, 3, 4)
CYCLE_TIME = "cycle_time"  # the derived per-part cycle time of a machine with counters


class DriftConfig(ConfigModel):
    """A drift detector on one number signal of the machine, or on its `cycle_time`
    (seconds per part, derived from counter increments while it runs). Parameters are
    in units of the baseline sigma; `mean` and `sigma` are given together, or learned
    from the first `baseline_points` readings, which are also checked for autocorrelation
    (shadow/drift.py)."""

    signal: Name
    detector: Literal["cusum", "ewma", "shewhart"] = "cusum"
    k: float = Field(default=0.5, ge=0)  # CUSUM reference value
    h: float = Field(default=5.0, gt=0)  # CUSUM decision interval
    lam: float = Field(default=0.2, gt=0, le=1, alias="lambda")  # EWMA weight
    width: float = Field(default=2.962, gt=0, alias="L")  # EWMA limit width
    limits: Literal["exact", "asymptotic"] = "exact"  # EWMA limits
    rules: list[WeRule] = Field(default_factory=lambda: list(WE_RULES),
                                min_length=1)  # Western Electric rules used
    mean: float | None = None
    sigma: float | None = Field(default=None, gt=0)
    baseline_points: int = Field(default=DEFAULT_BASELINE_POINTS, ge=MIN_BASELINE_POINTS)
    # autocorrelated baseline: watch AR(1) residuals, or the readings anyway
    autocorrelation: Literal["residuals", "ignore"] = "residuals"
    aggregate_s: float | None = Field(default=None, gt=0)  # watch means over such windows
    in_control_s: float = Field(default=300, gt=0)  # no alarm this long: the alert closes

    @model_validator(mode="after")
    def _mean_with_sigma(self) -> DriftConfig:
        if (self.mean is None) != (self.sigma is None):
            raise InvalidKeyError(("mean",), "expected `mean` and `sigma` together (or "
                                  "neither, to learn them), found only one")
        return self


class ShiftConfig(ConfigModel):
    """A shift on the given weekdays, in the calendar's time zone; `end` before `start`
    means the shift ends the next day."""

    name: Name
    start: time
    end: time
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS[:5]))


class PlannedStopConfig(ConfigModel):
    """Planned downtime: either recurring (`start`/`end` time of day on `days`) or
    dated (`from`/`to`). `machines` empty means every machine."""

    reason: str = Field(min_length=1)
    start: time | None = None
    end: time | None = None
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None
    machines: list[Name] = Field(default_factory=list)

    @model_validator(mode="after")
    def _recurring_or_dated(self) -> PlannedStopConfig:
        recurring = self.start is not None and self.end is not None
        dated = self.from_ is not None and self.to is not None
        if recurring == dated:
            raise InvalidKeyError(("start",), "expected either `start` and `end` (recurring) "
                                  "or `from` and `to` (dated), found "
                                  f"{'both' if recurring else 'neither complete'}")
        if dated:
            for key, ts in (("from", self.from_), ("to", self.to)):
                if ts is not None and ts.tzinfo is None:
                    raise InvalidKeyError((key,), "expected a time with a zone such as "
                                          f"2026-11-23T13:30:00+01:00, found {ts.isoformat()}")
            if self.from_ is not None and self.to is not None and self.to <= self.from_:
                raise InvalidKeyError(("to",), f"expected a time after `from`, found {self.to}")
        return self


class CalendarConfig(ConfigModel):
    """The plant's shift calendar. No shifts means every hour is planned operation
    time (POT)."""

    timezone: str = "UTC"
    shifts: list[ShiftConfig] = Field(default_factory=list)
    planned_stops: list[PlannedStopConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA time zone such as Europe/Paris, "
                             f"found {value!r}") from None
        return value

    @model_validator(mode="after")
    def _unique_shifts(self) -> CalendarConfig:
        require_unique(((s.name, ("shifts", i, "name")) for i, s in enumerate(self.shifts)),
                       "shift name")
        return self


class ReasonConfig(ConfigModel):
    """Where a machine says why it stopped. The value of `signal` is a reason code
    (declared in shadow.reason_codes or imported with `ombre reasons import`), or a raw
    value (a PLC's fault number) that `map` turns into one; a raw value mapped to null
    (`0: null`) or an empty text is no reason. The code in force when a stop (ADET,
    ADOT) opens, or the one that arrives within `grace_s` after, is the stop's reason."""

    signal: Name
    map: dict[str, Name | None] = Field(default_factory=dict)
    grace_s: float = Field(default=5.0, ge=0)

    @field_validator("map", mode="before")
    @classmethod
    def _text_keys(cls, value: object) -> object:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class ReasonCodeConfig(ConfigModel):
    """A reason a stop may have: declared here, or imported from a CSV file with the
    same columns (`ombre reasons import`)."""

    code: Name
    text: str = Field(max_length=400, pattern=r"^[^\x00]*$")  # as the table holds it
    category: Category
    failure: bool = False


Share = Annotated[float, Field(gt=0, le=1)]


class TargetConfig(ConfigModel):
    """What the shift report compares a line's OEE and its factors with. The defaults
    are the usual "world class" figures: 90 % availability x 95 % effectiveness x 99 %
    quality, about 85 % OEE."""

    oee: Share = 0.85
    availability: Share = 0.90
    effectiveness: Share = 0.95
    quality_ratio: Share = 0.99


class TargetsConfig(TargetConfig):
    """The plant's targets, and per line id those that differ (a key left out of a line
    keeps the plant's)."""

    lines: dict[Name, dict[Literal["oee", "availability", "effectiveness", "quality_ratio"],
                           Share]] = Field(default_factory=dict)

    def of(self, line: str) -> TargetConfig:
        """The targets of `line`."""
        plant = {k: getattr(self, k) for k in TargetConfig.model_fields}
        return TargetConfig(**(plant | self.lines.get(line, {})))


class ReportsConfig(ConfigModel):
    """The shift reports (one page per line and shift, HTML and PDF) the shadow writes
    to <data_dir>/reports at each shift's end, in `language`; those older than
    `keep_days` are deleted as new ones are written."""

    at_shift_end: bool = True
    language: Literal["en", "fr"] = "en"
    keep_days: int = Field(default=90, ge=1, le=3660)
    pdf: bool = True  # false: HTML only (no Chromium on the device)


class ShadowConfig(ConfigModel):
    """The plant-wide shadow settings. `database` is a SQLAlchemy URL; the default is
    SQLite at <data_dir>/ombre.sqlite."""

    enabled: bool = True
    database: str | None = None  # e.g. postgresql+psycopg://ombre@db/ombre
    calendar: CalendarConfig = Field(default_factory=CalendarConfig)
    reason_codes: list[ReasonCodeConfig] = Field(default_factory=list)
    alert_causes: list[str] = Field(default_factory=lambda: [
        "tool wear", "material", "sensor", "process change", "maintenance", "other"],
        min_length=1)  # what a person may give as the cause when closing a drift alert
    targets: TargetsConfig = Field(default_factory=TargetsConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)

    @model_validator(mode="after")
    def _unique_codes(self) -> ShadowConfig:
        require_unique(((r.code, ("reason_codes", i, "code"))
                        for i, r in enumerate(self.reason_codes)), "reason code")
        return self


SignalType = Literal["number", "string"]


SignalReference = tuple[tuple[str | int, ...], str, SignalType | None]


def signal_references(state: StateConfig | None, counters: CountersConfig | None,
                      job_signal: str | None, drift: Sequence[DriftConfig] = (),
                      reason: ReasonConfig | None = None) -> list[SignalReference]:
    """Every signal the shadow settings of one machine name: (key path relative to the
    machine, signal name, the signal type it must have, or None for either). A drift
    detector on `cycle_time` needs no such signal when the machine has counters."""
    refs: list[SignalReference] = []
    if isinstance(state, TableState):
        refs.append((("state", "signal"), state.signal, None))
    elif isinstance(state, RulesState):
        refs += [(("state", "rules", i, "when", j, "signal"), c.signal,
                  None if isinstance(c.value, str) else "number")
                 for i, rule in enumerate(state.rules) for j, c in enumerate(rule.when)]
    elif isinstance(state, MachineryState):
        refs += [(("state", "item_state"), state.item_state, None),
                 (("state", "operation_mode"), state.operation_mode, None)]
    elif isinstance(state, PackmlState):
        refs += [(("state", "state"), state.state, None), (("state", "mode"), state.mode, None)]
    if counters is not None:
        refs += [(("counters", kind), name, "number")
                 for kind, name in counters.signals().items()]
    if job_signal is not None:
        refs.append((("job_signal",), job_signal, "string"))
    if reason is not None:
        refs.append((("reason", "signal"), reason.signal, None))
    for i, detector in enumerate(drift):
        if detector.signal != CYCLE_TIME or counters is None:
            refs.append((("drift", i, "signal"), detector.signal, "number"))
    return refs


class ShadowMachineConfig(MachineConfig):
    """A machine and its signals; `state`, `counters`, `job_signal`, `reason`,
    `silence_s`, `reorder_s`, `exclude_idle` and `complete_at_planned_qty` tell the
    shadow how to read it."""

    state: StateConfig | None = None
    counters: CountersConfig | None = None
    job_signal: Name | None = None
    reason: ReasonConfig | None = None  # where the machine says why it stopped
    silence_s: float = Field(default=120, gt=0)  # no reading this long: state unknown
    # Back from a silence, how long (data time) to wait for readings the machine sent
    # before it came back: a device's backlog can arrive after its newer readings.
    reorder_s: float = Field(default=0, ge=0)
    exclude_idle: bool = False  # leave ADOT (no job loaded) out of planned busy time
    complete_at_planned_qty: bool = False  # a job ends once its order's planned_qty is made
    drift: list[DriftConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _signal_references(self) -> ShadowMachineConfig:
        types = {s.name: s.type for s in self.signals}
        for loc, name, expected in signal_references(self.state, self.counters,
                                                     self.job_signal, self.drift,
                                                     self.reason):
            if name not in types:
                raise InvalidKeyError(loc, f"expected one of this machine's signals "
                                      f"({', '.join(types) or 'none declared'}), found {name!r}")
            if expected is not None and types[name] != expected:
                raise InvalidKeyError(loc, f"expected a {expected} signal, found {name!r} "
                                      f"of type {types[name]}")
        return self


class ShadowedConfig(GatewayConfig[ShadowMachineConfig]):
    """The gateway's config with the shadow's keys: per machine, and `shadow:`."""

    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)

    @model_validator(mode="after")
    def _shadow_names(self) -> ShadowedConfig:
        for i, sink in enumerate(self.sinks):
            if sink.name == SHADOW_SINK:
                raise InvalidKeyError(("sinks", i, "name"), f"expected a name other than "
                                      f"{SHADOW_SINK!r}, which the shadow uses, found it")
        lines = {line.id for site in self.sites for line in site.all_lines()}
        for name in self.shadow.targets.lines:
            if name not in lines:
                raise InvalidKeyError(("shadow", "targets", "lines", name),
                                      f"expected a line id of the plant, found {name!r}")
        machines = {m.id for m in self.machines()}
        for i, stop in enumerate(self.shadow.calendar.planned_stops):
            for j, name in enumerate(stop.machines):
                if name not in machines:
                    raise InvalidKeyError(("shadow", "calendar", "planned_stops", i, "machines", j),
                                          f"expected a machine id of the plant, found {name!r}")
        for i, rule in enumerate(self.notifications.rules):
            for j, name in enumerate(getattr(rule, "machines", ())):
                if name not in machines:
                    raise InvalidKeyError(("notifications", "rules", i, "machines", j),
                                          f"expected a machine id of the plant, found {name!r}")
        if self.notifications.rules and not self.shadow.enabled:
            raise InvalidKeyError(("notifications", "rules"), "expected `shadow.enabled: "
                                  "true` (the notifications' queue is in its database), "
                                  "found false")
        return self
