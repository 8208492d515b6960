"""The maturity assessment (shadow/maturity.py), computed exactly as `ombre assess`
computes it, and the assessments kept so far."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import AsViewer, Config, Now, Store, window_of
from shadow.maturity import DEFAULT_DAYS, assess, history, record
from shadow.timeline import Window

router = APIRouter(tags=["maturity"])
AssessmentRange = Annotated[Window, Depends(window_of(timedelta(days=DEFAULT_DAYS)))]


@router.get("/assessment")
def get_assessment(*, _: AsViewer, store: Store, config: Config, window: AssessmentRange,
                   now: Now) -> dict[str, Any]:
    """The plant's stage on the acatech Industrie 4.0 Maturity Index over `from`-`to`
    (default: the last 30 days): per structural area the stage reached and its criteria,
    every figure with its threshold and source, and the next steps. The same JSON as
    `ombre assess --json`; it is kept as the assessment of the day the window ends on."""
    result = assess(store, config, window).to_dict()
    record(store, result, now)
    return result


@router.get("/assessment/history")
def get_history(*, _: AsViewer, store: Store,
                limit: Annotated[int, Query(ge=1, le=1000)] = 365) -> list[dict[str, Any]]:
    """The kept assessments, oldest day first (at most `limit` days, the latest): the
    plant's stage and each area's, and the window each covered."""
    return history(store, limit)
