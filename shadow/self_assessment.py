"""The self-assessment's answers (shadow/self_assessment_questions.py): each one kept with
who gave it and when, never overwritten, so an assessment of a past window uses the
answers as they stood at its end. Called by the API (an admin answers in the browser)
and by shadow.maturity.assess."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import insert, select

from shadow import audit
from shadow import tables as t
from shadow.self_assessment_questions import QUESTIONS, Question
from shadow.store import ShadowStore

Answer = Literal["yes", "partly", "no"]
ANSWERS: tuple[str, ...] = get_args(Answer)
BY_KEY = {q.key: q for q in QUESTIONS}


@dataclass(frozen=True, slots=True)
class Declared:
    """A question and its latest answer at some moment (None: not answered yet)."""

    question: Question
    answer: str | None
    answered_by: str | None
    answered_ns: int | None

    @property
    def holds(self) -> bool:
        return self.answer == "yes"

    @property
    def status(self) -> str:
        return "not answered" if self.answer is None else "met" if self.holds else "not met"


def save(store: ShadowStore, answers: Mapping[str, Answer], by: str, now_ns: int) -> None:
    """Adds one row per answer, and one audit row for them all, in one transaction.
    The caller has checked the keys (BY_KEY) and the answers."""
    rows = [{"question": key, "answer": answer, "answered_by": by[:200], "answered_ns": now_ns}
            for key, answer in answers.items()]
    with store.engine.begin() as c:
        c.execute(insert(t.self_assessment_answer), rows)
        audit.record(c, by, "assessment.answer", "self-assessment", dict(answers), ts_ns=now_ns)


def declared(store: ShadowStore, as_of_ns: int) -> tuple[Declared, ...]:
    """Every question with its latest answer given at or before `as_of_ns`."""
    sa = t.self_assessment_answer
    with store.engine.connect() as c:
        rows = c.execute(select(sa.c.question, sa.c.answer, sa.c.answered_by, sa.c.answered_ns)
                         .where(sa.c.answered_ns <= as_of_ns)
                         .order_by(sa.c.answered_ns, sa.c.id)).all()
    latest = {r.question: r for r in rows}  # a question dropped from the file is ignored
    return tuple(Declared(q, *(latest[q.key][1:] if q.key in latest else (None, None, None)))
                 for q in QUESTIONS)
