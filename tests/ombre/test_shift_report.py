"""The shift report: written by the running shadow at the shift's end (a replay of the
worked example through the whole pipeline), and by `ombre report shift --at` in English
and French; its HTML read for its figures, its PDF read back with pypdf (one page), and
bad input refused with a message naming it."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from html import escape
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import insert

from api.shift_report import listed, prune, render, write_report
from ombre.cli import main
from ombre.config import load_config
from shadow import tables as t
from shadow.calendar import to_ns
from shadow.schema import open_engine
from shadow.shift_notes import add_note, shift_at
from shadow.shift_report import facts
from shadow.store import ShadowStore
from tests.shadow.scenarios import WORKED_KPIS, WORKED_ORDERS_CSV, at, worked_example_lines
from tests.shadow.test_replay import WORKED_STOP, Shop

LIVE = "shift_2026-03-02_early_line-1.fr"  # what the replay's shift end writes
NOTE = "Outil changé à 11:20 <vérifier> & noter"


def shift_report_shop(path: Path) -> Shop:
    """The worked example replayed (`ombre replay`) on a plant whose language is French,
    with a drift alert still open at the shift's end and an operator's note."""
    shop = Shop(path, None, [WORKED_STOP])
    data = json.loads(shop.config.read_text())
    data["shadow"]["reports"] = {"language": "fr", "keep_days": 30, "pdf": True}
    data["shadow"]["targets"] = {"lines": {"line-1": {"oee": 0.75}}}
    shop.config.write_text(json.dumps(data))
    config = ["-c", str(shop.config)]
    assert main(["orders", "import", str(shop.write("orders.csv", WORKED_ORDERS_CSV)),
                 *config]) == 0
    assert main(["replay", str(shop.write("shift.jsonl", worked_example_lines())),
                 *config]) == 0
    engine = open_engine(shop.engine_url())
    try:
        with engine.begin() as c:
            c.execute(insert(t.drift_alert).values(
                machine_id="press-1", signal="temp", detector="cusum", params="{}",
                start_ns=to_ns(at("11:00")), detected_ns=to_ns(at("11:05")),
                last_alarm_ns=to_ns(at("13:00")), in_control_ns=0, end_ns=None,
                direction="up", shift_sigma=3.2, shift_value=3.2, unit="°C", status="open"))
        shift = shift_at(load_config(shop.config, {}).shadow.calendar, to_ns(at("12:00")))
        assert shift is not None
        add_note(engine, "line-1", shift, author="alice", actor="test", text=NOTE,
                 written_ns=to_ns(at("12:00")))
    finally:
        engine.dispose()
    return shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    return shift_report_shop(tmp_path_factory.mktemp("shift-report"))


def pdf_text(path: Path) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(path.read_bytes()))
    return len(reader.pages), " ".join(p.extract_text() for p in reader.pages)


def test_the_running_shadow_writes_the_report_at_the_shift_end_in_the_plants_language(
        shop: Shop) -> None:
    reports = shop.dir / "data" / "reports"
    # The early shift ended within the replay; the late one (14:00-22:00) has not.
    assert sorted(p.name for p in reports.iterdir()) == [f"{LIVE}.{s}"
                                                         for s in ("html", "json", "pdf")]
    meta = json.loads((reports / f"{LIVE}.json").read_text())
    assert (meta["line"], meta["shift"], meta["day"], meta["lang"], meta["complete"]) == \
        ("line-1", "early", "2026-03-02", "fr", True)
    assert meta["oee"] == pytest.approx(WORKED_KPIS["oee"], abs=1e-6)
    pages, text = pdf_text(reports / f"{LIVE}.pdf")
    assert pages == 1
    assert "Rapport de poste" in text
    assert "TRS" in text
    assert "OEE" not in text
    assert "76.7 %" in text


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_ombre_report_shift_prints_the_shift_in_english_and_french(
        shop: Shop, lang: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = shop.ombre(capsys, "report shift", "--at", "2026-03-02T10:00:00Z",
                                "--line", "line-1", "--lang", lang, "--out", str(tmp_path))
    assert code == 0, err
    stem = f"shift_2026-03-02_early_line-1.{lang}"
    assert out.split() == [str(tmp_path / f"{stem}.html"), str(tmp_path / f"{stem}.pdf")]
    page = (tmp_path / f"{stem}.html").read_text()
    words = {"en": ("Shift report", "OEE", "below target", "met", "Operators' notes"),
             "fr": ("Rapport de poste", "TRS", "sous l'objectif", "atteint",
                    "Notes des opérateurs")}[lang]
    title, oee, below, met, notes = words
    assert f"<h1>{title} · line-1</h1>" in page
    # OEE 76.7 % against the line's target of 75 %: met; availability 86.7 % against the
    # plant's 90 %: below.
    assert (f'<tr class="met" data-kpi="oee"><th>{oee}</th><td class="num">76.7 %</td>'
            in page)
    assert '<tr class="below" data-kpi="availability">' in page
    assert '<td class="num">75.0 %</td><td class="num">+1.7 pt</td>' in page
    assert f"{escape(below)}</td>" in page
    assert f"{met}</td>" in page
    # The Pareto of the lost time (shadow.losses), largest first: the 40 min of stops
    # without a reason lead.
    pareto = {"en": "<tr><td>downtime without a reason</td><td class=\"num\">40</td>",
              "fr": "<tr><td>arrêts sans motif</td><td class=\"num\">40</td>"}[lang]
    assert pareto in page
    assert page.index(pareto) < page.index(escape(words[-1]))
    # The parts of order 4711: produced, good, scrap, rework.
    assert ('<tr><td>4711</td><td class="num">480</td><td class="num">460</td>'
            '<td class="num">12</td><td class="num">8</td></tr>') in page
    # The drift alert still open at 14:00, and the note, escaped.
    assert "<td>press-1</td><td>temp</td><td>2026-03-02 11:05</td>" in page
    assert escape(notes) in page
    assert "Outil changé à 11:20 &lt;vérifier&gt; &amp; noter" in page
    assert "alice" in page
    if lang == "fr":
        assert "OEE" not in page
    pages, text = pdf_text(tmp_path / f"{stem}.pdf")
    assert pages == 1
    assert title in text
    assert "76.7 %" in text
    assert "4711" in text


def test_a_running_shift_is_reported_up_to_now_and_one_not_begun_is_refused(
        shop: Shop, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(shop.config, {})
    shift = shift_at(config.shadow.calendar, to_ns(at("10:00")))
    assert shift is not None
    engine = open_engine(shop.engine_url())
    try:
        found = facts(ShadowStore(engine), config, "line-1", shift, to_ns(at("10:00")))
        whole = facts(ShadowStore(engine), config, "line-1", shift, to_ns(at("14:00")))
    finally:
        engine.dispose()
    assert (found["complete"], found["until"]) == (False, "2026-03-02T10:00:00+00:00")
    assert found["time_s"]["POT"] == 4 * 3600
    # The Pareto's bars add up to what the OEE lost: PBT minus the fully productive time.
    lost = sum(b["lost_s"] for b in whole["losses"]["bars"])
    assert lost == pytest.approx(450 * 60 * (1 - WORKED_KPIS["oee"]), abs=1)
    assert [b["cause"] for b in whole["losses"]["bars"]] == [
        "unexplained", "speed", "setup", "defects", "startup_rejects"]
    assert 'id="in-progress">in progress: figures up to 2026-03-02 10:00</p>' in \
        render(found, "en", to_ns(at("10:00")))
    code, _, err = shop.ombre(capsys, "report shift", "--at", "2200-03-04T10:00:00Z",
                              "--out", str(tmp_path), "--no-pdf")
    assert code == 1
    assert "--at: the early shift of 2200-03-04 starts at 2200-03-04T06:00:00+00:00, after" \
        in err


@pytest.mark.parametrize(("args", "message"), [
    (["--at", "yesterday"], "argument --at: expected an RFC 3339 time such as "
                            "2026-11-22T06:00:00Z, found 'yesterday'"),
    (["--at", "2026-03-02T10:00:00Z", "--line", "line-9"],
     "--line: no line 'line-9' in the config (its lines: line-1)"),
    (["--at", "2026-03-01T10:00:00Z"],  # a Sunday
     "--at 2026-03-01T10:00:00+00:00: no shift of the calendar runs then "
     "(shadow.calendar.shifts, in UTC: early 06:00-14:00, late 14:00-22:00)"),
])
def test_bad_input_is_refused_naming_it(shop: Shop, args: list[str], message: str,
                                        tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code, _, err = shop.ombre(capsys, "report shift", *args, "--out", str(tmp_path))
    except SystemExit as exc:  # argparse
        code, err = int(str(exc.code)), capsys.readouterr().err
    assert code == (2 if "argument" in message else 1)  # argparse exits with 2
    assert message in err
    assert not list(tmp_path.iterdir())


def test_a_target_out_of_range_or_for_a_line_the_plant_has_not_is_refused(
        shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(shop.config.read_text())
    data["shadow"]["targets"] = {"oee": 0.8, "lines": {"line-2": {"oee": 0.7}}}
    bad = shop.dir / "bad.yaml"
    bad.write_text(json.dumps(data))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "shadow.targets.lines.line-2" in err
    assert "expected a line id of the plant, found 'line-2'" in err
    data["shadow"]["targets"] = {"oee": 1.2}
    bad.write_text(json.dumps(data))
    assert main(["check", str(bad)]) == 2
    assert "shadow.targets.oee: expected a number greater than 0 and at most 1, found 1.2" \
        in capsys.readouterr().err


def test_reports_older_than_keep_days_are_deleted(shop: Shop, tmp_path: Path) -> None:
    config = load_config(shop.config, {})
    first = shift_at(config.shadow.calendar, to_ns(at("10:00")))
    later = shift_at(config.shadow.calendar, to_ns(at("10:00") + timedelta(days=42)))
    assert first is not None
    assert later is not None
    engine = open_engine(shop.engine_url())
    try:
        for shift in (first, later):
            write_report(ShadowStore(engine), config, "line-1", shift, lang="en", out=tmp_path,
                         now_ns=to_ns(at("10:00") + timedelta(days=43)), with_pdf=False)
    finally:
        engine.dispose()
    (tmp_path / "notes.txt").write_text("not a report")
    assert [m["day"] for m in listed(tmp_path)] == ["2026-04-13", "2026-03-02"]
    assert prune(tmp_path, later.window.end_ns, keep_days=42) == 0
    assert prune(tmp_path, later.window.end_ns, keep_days=41) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt", "shift_2026-04-13_early_line-1.en.html",
        "shift_2026-04-13_early_line-1.en.json"]
