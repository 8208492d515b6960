"""The maturity assessment as a shared tool: an anonymised export that plants can pass
around (to a regional programme, to each other), and where one plant stands among such
exports (README, "Maturity assessment").

An export holds figures and stages only: no name, no machine id, no site, no date (the
window's length stays, so a week is not compared with a month unawares). Its schema is
the pydantic model `Export`; docs/maturity.schema.json is that model's JSON Schema,
published so that other tools can read and write it (a test keeps the two the same). A
version that reads differently gets a new EXPORT_SCHEMA."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from shadow.maturity import AREAS, STAGES

EXPORT_SCHEMA = "ombre.maturity-export/1"
SCHEMA_FILE = "docs/maturity.schema.json"  # where the JSON Schema is published

Stage = Annotated[int, Field(ge=0, le=len(STAGES) - 1)]
CriterionKey = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.[a-z_]+$")]
NullableStage = Annotated[int | None, Field(ge=0, le=len(STAGES) - 1,
                                            description="null: not assessed")]


class CriterionFigure(BaseModel):
    """One criterion of the assessment: the plant's figure and what it was judged by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Stage
    declared: bool = Field(description="answered in the self-assessment, not measured")
    value: float | None = Field(ge=0, le=1, description="the plant's share; null when not "
                                "measured, nothing to judge, or declared")
    threshold: float | None = Field(ge=0, le=1, description="null when declared")
    answer: Literal["yes", "partly", "no"] | None = Field(
        description="the self-assessment's answer; null when measured or not answered")
    status: Literal["met", "not met", "not measured", "nothing to judge", "not answered"]


class Areas(BaseModel):
    """Each structural area's stage (shadow.maturity.AREAS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resources: NullableStage
    information_systems: NullableStage
    organisational_structure: NullableStage
    culture: NullableStage


class Export(BaseModel):
    """An anonymised assessment (`ombre assess --export`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Ombre maturity export")

    schema_: Literal["ombre.maturity-export/1"] = Field(alias="schema")
    window_days: float = Field(gt=0, description="the length of the assessed window")
    machines: int = Field(ge=0, description="how many machines the plant declares")
    stage: Stage
    areas: Areas
    criteria: dict[CriterionKey, CriterionFigure] = Field(
        description="keyed by area.figure, e.g. resources.classified_share",
        json_schema_extra={"additionalProperties": False})


def export(result: dict[str, Any]) -> dict[str, Any]:
    """The anonymised export of `result` (Assessment.to_dict)."""
    window = result["window"]
    machines = {e["scope"] for e in result["evidence"] if e["scope"].startswith("machine:")}
    criteria = {c["key"]: {"stage": c["stage"], "declared": c["declared"],
                           "value": c.get("value"), "threshold": c.get("threshold"),
                           "answer": c.get("answer"), "status": c["status"]}
                for a in AREAS for c in result["areas"][a]["criteria"]}
    doc = {"schema": EXPORT_SCHEMA,
           "window_days": round((window["to_ns"] - window["from_ns"]) / 86_400e9, 6),
           "machines": len(machines), "stage": result["stage"],
           "areas": {a: result["areas"][a]["stage"] for a in AREAS}, "criteria": criteria}
    return Export.model_validate(doc).model_dump(by_alias=True)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an export, as docs/maturity.schema.json publishes it."""
    schema = Export.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


class ExportError(ValueError):
    """A file that is not an export: the message names the file and the field."""


def read(path: Path) -> Export:
    """The export in `path`; ExportError naming the file and what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: cannot be read ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg})") from None
    if not isinstance(doc, dict):
        raise ExportError(f"{path}: not an export (a JSON object with `schema` "
                          f"{EXPORT_SCHEMA!r}), found {type(doc).__name__}")
    if doc.get("schema") != EXPORT_SCHEMA:
        raise ExportError(f"{path}: schema: expected {EXPORT_SCHEMA!r}, found "
                          f"{doc.get('schema')!r}")
    try:
        return Export.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                             for e in exc.errors())
        raise ExportError(f"{path}: {problems}") from None


def percentile_rank(value: float, others: list[float]) -> float:
    """The share of `others` below `value`, counting ties as half (0 to 100)."""
    below = sum(o < value for o in others)
    ties = sum(o == value for o in others)
    return 100 * (below + ties / 2) / len(others)


def compare(mine: dict[str, Any], others: list[Export]) -> dict[str, Any]:
    """Where `mine` (an export) stands among `others`: per criterion its value, how many
    of the others measured it and its percentile rank among them; and how the others'
    stages are distributed, overall and per area."""
    criteria = {}
    for key, figure in mine["criteria"].items():
        values = [o.criteria[key].value for o in others if key in o.criteria]
        measured = [v for v in values if v is not None]
        criteria[key] = {
            "stage": figure["stage"], "declared": figure["declared"],
            "value": figure["value"], "threshold": figure["threshold"],
            "answer": figure["answer"], "status": figure["status"],
            "plants": len(measured),
            "percentile": None if figure["value"] is None or not measured
            else round(percentile_rank(figure["value"], measured), 1),
            "median": statistics.median(measured) if measured else None}

    def spread(stages: list[int | None]) -> dict[str, int]:
        counts = Counter("not assessed" if s is None else str(s) for s in stages)
        return {k: counts[k] for k in [*map(str, range(len(STAGES))), "not assessed"]
                if counts[k]}

    return {"plants": len(others), "stage": mine["stage"],
            "stage_name": STAGES[mine["stage"]],
            "stages": spread([o.stage for o in others]),
            "areas": {a: {"stage": mine["areas"][a],
                          "stages": spread([getattr(o.areas, a) for o in others])}
                      for a in AREAS},
            "criteria": criteria}

