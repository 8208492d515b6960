"""Operators' notes on a line's shift: written through the API (an operator token) and
listed by the shift report. A note belongs to the shift running when it is written (or
at the time it names), and to one line; notes are only ever added."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, insert, select

from shadow import audit
from shadow import tables as t
from shadow.calendar import Shift, shifts
from shadow.config import CalendarConfig
from shadow.timeline import Window

MAX_NOTE_CHARS = 2000
MAX_NOTES = 200  # notes of one line's shift the report and the API list, oldest first


@dataclass(frozen=True, slots=True)
class ShiftNote:
    id: int
    line: str
    shift_name: str
    shift_start_ns: int
    written_ns: int
    author: str
    text: str


def shift_at(calendar: CalendarConfig, ts_ns: int) -> Shift | None:
    """The shift of the calendar running at `ts_ns`, if any."""
    return next((s for s in shifts(calendar, Window(ts_ns, ts_ns + 1))
                 if s.window.start_ns <= ts_ns < s.window.end_ns), None)


def add_note(engine: Engine, line: str, shift: Shift, *, author: str, actor: str, text: str,
             written_ns: int) -> ShiftNote:
    """Adds the note (signed `author`, a token's name) and its audit row (by `actor`) in
    one transaction."""
    row = {"line_id": line, "shift_start_ns": shift.window.start_ns, "shift_name": shift.name,
           "written_ns": written_ns, "author": author[:200], "text": text}
    with engine.begin() as c:
        note_id = int(c.execute(insert(t.shift_note).values(row).returning(t.shift_note.c.id)
                                ).scalar_one())
        audit.record(c, actor, "shift.note", f"line {line}",
                     {"shift": f"{shift.day.isoformat()} {shift.name}", "note": note_id},
                     ts_ns=written_ns)
    return ShiftNote(note_id, line, shift.name, shift.window.start_ns, written_ns,
                     author[:200], text)


def notes(engine: Engine, line: str, shift_start_ns: int) -> list[ShiftNote]:
    """The notes of one line's shift, oldest first (at most MAX_NOTES)."""
    n = t.shift_note
    with engine.connect() as c:
        rows = c.execute(select(n).where(n.c.line_id == line, n.c.shift_start_ns ==
                                         shift_start_ns).order_by(n.c.written_ns, n.c.id)
                         .limit(MAX_NOTES)).all()
    return [ShiftNote(r.id, r.line_id, r.shift_name, r.shift_start_ns, r.written_ns, r.author,
                      r.text) for r in rows]
