"""The maturity assessment (shadow/maturity.py), computed exactly as `ombre assess`
computes it, the assessments kept so far, the self-assessment an admin answers in the
browser, and the printable report."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import maturity_report, pdf
from api.deps import AsAdmin, AsViewer, Config, Now, PlantWide, Store, window_of
from shadow import self_assessment
from shadow.maturity import DEFAULT_DAYS, STAGES, assess, history, record
from shadow.self_assessment import BY_KEY, Answer
from shadow.timeline import Window

router = APIRouter(tags=["maturity"], dependencies=[PlantWide])  # not per site
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


class AnswersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: dict[str, Answer] = Field(min_length=1, max_length=len(BY_KEY))

    @field_validator("answers")
    @classmethod
    def _known(cls, answers: dict[str, Answer]) -> dict[str, Answer]:
        unknown = sorted(set(answers) - set(BY_KEY))
        if unknown:
            raise ValueError(f"unknown question {unknown[0][:40]!r}; the questions are "
                             f"{', '.join(BY_KEY)}")
        return answers


def _questions(store: Store, now: int) -> dict[str, Any]:
    return {"answers": list(self_assessment.ANSWERS), "questions": [
        {"key": d.question.key, "area": d.question.area, "stage": d.question.stage,
         "stage_name": STAGES[d.question.stage], "theme": d.question.theme,
         "text": {"en": d.question.en, "fr": d.question.fr}, "answer": d.answer,
         "answered_by": d.answered_by, "answered_ns": d.answered_ns}
        for d in self_assessment.declared(store, now)]}


@router.get("/assessment/questions")
def get_questions(*, _: AsViewer, store: Store, now: Now) -> dict[str, Any]:
    """The self-assessment: each question (area, stage, theme, English and French text)
    with its latest answer, who gave it and when."""
    return _questions(store, now)


@router.post("/assessment/answers")
def post_answers(*, token: AsAdmin, store: Store, now: Now, body: AnswersIn) -> dict[str, Any]:
    """Answers some or all of the self-assessment's questions (`{"answers": {"trained":
    "yes", ...}}`; yes, partly or no). Each answer is kept with the token that gave it
    and when, and audited; assessments whose window ends from now on use them. Returns
    the questions as GET /assessment/questions does."""
    self_assessment.save(store, body.answers, f"token:{token.id}:{token.name}", now)
    return _questions(store, now)


@router.get("/assessment/report", response_model=None)
def get_report(*, _: AsViewer, store: Store, config: Config, window: AssessmentRange,
               now: Now, lang: Literal["en", "fr"] = "en",
               as_: Annotated[Literal["html", "pdf"], Query(alias="format")] = "html"
               ) -> Response:
    """The assessment over `from`-`to` as a printable report, in English or French:
    one HTML page, or a PDF printed by the server's Chromium (503 without one)."""
    result = assess(store, config, window).to_dict()
    record(store, result, now)
    page = maturity_report.render(result, history(store, maturity_report.KEPT_SHOWN), lang,
                                  maturity_report.plant_name(config))
    if as_ == "html":
        return HTMLResponse(page)
    try:
        data = pdf.pdf(page)
    except pdf.PdfError as exc:
        raise HTTPException(503, str(exc)) from exc
    name = f"ombre-maturity-{result['window']['to'][:10]}-{lang}.pdf"
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
