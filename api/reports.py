"""The shift reports kept in <data_dir>/reports (api/shift_report.py), listed and
served; and the operators' notes on a line's shift, which the reports list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.deps import AsOperator, AsViewer, Config, Now, Scope, Store, Visible, bounded
from api.shift_report import FILE_NAME, listed, reports_dir
from shadow.calendar import Shift, from_ns, to_ns
from shadow.config import ShadowedConfig
from shadow.shift_notes import MAX_NOTE_CHARS, ShiftNote, add_note, notes, shift_at
from shadow.tables import TEXT

router = APIRouter(tags=["reports"])
LineId = Annotated[str, Path(min_length=1, max_length=128, pattern=TEXT)]


class ReportOut(BaseModel):
    name: str
    line: str
    line_name: str
    shift: str
    day: str
    start_ns: int
    end_ns: int
    lang: str
    complete: bool  # false: asked for while the shift ran
    made_ns: int
    oee: float | None
    oee_target: float
    html: str  # the URL of the page
    pdf: str | None  # the URL of the PDF, if printed


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS, pattern=TEXT)
    at: datetime | None = None  # a time within the shift (default: now)


class NoteOut(BaseModel):
    id: int
    line: str
    shift: str
    shift_start_ns: int
    written_ns: int
    author: str
    text: str


@router.get("/reports")
def list_reports(_: AsViewer, config: Config, scope: Visible, line: Annotated[
                 str | None, Query(max_length=128, pattern=TEXT)] = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[ReportOut]:
    """The shift reports kept (shadow.reports.keep_days), newest shift first."""
    out = []
    for meta in _seen(config, scope):
        if line is not None and meta["line"] != line:
            continue
        files: list[str] = meta["files"]
        pdfs = [f for f in files if f.endswith(".pdf")]
        out.append(ReportOut(**{k: meta[k] for k in ReportOut.model_fields
                                if k not in ("html", "pdf")},
                             html=f"/api/v1/reports/{meta['name']}.html",
                             pdf=f"/api/v1/reports/{pdfs[0]}" if pdfs else None))
        if len(out) == limit:
            break
    return out


@router.get("/reports/{name}", response_model=None)
def get_report(name: Annotated[str, Path(max_length=200)], _: AsViewer,
               config: Config, scope: Visible) -> FileResponse:
    """One kept report: <name>.html or <name>.pdf, as GET /reports lists them."""
    path = reports_dir(config) / name
    if (not FILE_NAME.fullmatch(name) or not path.is_file()
            or (scope.site is not None
                and not any(name in meta["files"] for meta in _seen(config, scope)))):
        raise HTTPException(404, f"no report {name!r}")
    media = "application/pdf" if name.endswith(".pdf") else "text/html; charset=utf-8"
    return FileResponse(path, media_type=media, filename=name,
                        content_disposition_type="inline")


def _seen(config: ShadowedConfig, scope: Scope) -> list[dict[str, Any]]:
    """The kept reports' metadata, of the lines the token sees."""
    lines = {ln.id for ln in scope.lines()}
    return [meta for meta in listed(reports_dir(config))
            if scope.site is None or meta["line"] in lines]


def _shift(config: ShadowedConfig, scope: Scope, line: str, at: datetime | None,
           now: int) -> Shift:
    """The shift running at `at` (default: now) for a line the token sees; 404 or 422
    saying why not."""
    if line not in {ln.id for ln in scope.lines()}:
        raise HTTPException(404, f"no line {line!r} {scope.where}")
    ts = to_ns(bounded("at", at)) if at is not None else now
    shift = shift_at(config.shadow.calendar, ts)
    if shift is None:
        raise HTTPException(422, f"no shift of the calendar runs at {from_ns(ts).isoformat()}")
    return shift


def _out(n: ShiftNote) -> NoteOut:
    return NoteOut(id=n.id, line=n.line, shift=n.shift_name, shift_start_ns=n.shift_start_ns,
                   written_ns=n.written_ns, author=n.author, text=n.text)


@router.post("/lines/{line}/notes", status_code=201)
def post_note(line: LineId, body: NoteIn, *, token: AsOperator, store: Store, config: Config,
              scope: Visible, now: Now) -> NoteOut:
    """An operator's note on the line's shift running at `at` (default: now); the
    shift's report lists it."""
    shift = _shift(config, scope, line, body.at, now)
    return _out(add_note(store.engine, line, shift, author=token.name,
                         actor=f"token:{token.id}:{token.name}", text=body.text, written_ns=now))


@router.get("/lines/{line}/notes")
def list_notes(line: LineId, *, _: AsViewer, store: Store, config: Config, scope: Visible,
               now: Now, at: datetime | None = None) -> list[NoteOut]:
    """The notes on the line's shift running at `at` (default: now), oldest first."""
    shift = _shift(config, scope, line, at, now)
    return [_out(n) for n in notes(store.engine, line, shift.window.start_ns)]


