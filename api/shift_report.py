"""The shift report of one line, in English or French: one self-contained HTML page (no
script, no remote file, the bars drawn as SVG) from shadow.shift_report.facts, and the
same page as PDF (api/pdf.py); and the reports kept in <data_dir>/reports, which the
running shadow writes at each shift's end (ombre/app.py), `ombre report shift` on
demand, and GET /api/v1/reports lists."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from api import pdf
from api.report_text import NONE, Lang, pct, words_of
from shadow.calendar import Shift, from_ns
from shadow.config import ShadowedConfig
from shadow.shift_report import FACTORS, facts
from shadow.store import ShadowStore
from shadow.timeline import NS_PER_S

log = logging.getLogger(__name__)

REPORTS_DIR = "reports"  # under the data directory
DAY_NS = 86_400 * NS_PER_S
FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}\.(html|pdf)$")


def words(lang: Lang) -> dict[str, Any]:
    return words_of("shift_report_text.json", lang)


def _local(iso: str, zone: str, with_day: bool = False) -> str:
    when = datetime.fromisoformat(iso).astimezone(ZoneInfo(zone))
    return when.strftime("%Y-%m-%d %H:%M" if with_day else "%H:%M")


def _bar(value: float | None, target: float) -> str:
    """A bar of `value` on a 0-100 % scale, with the target as a tick."""
    width, height = 180, 14
    fill = "#2e7d32" if value is not None and value >= target else "#c62828"
    bar = "" if value is None else (f'<rect width="{width * min(value, 1):.0f}" '
                                    f'height="{height}" fill="{fill}"/>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<rect width="{width}" height="{height}" fill="#eee"/>{bar}'
            f'<line x1="{width * target:.0f}" y1="0" x2="{width * target:.0f}" '
            f'y2="{height}" stroke="#111" stroke-width="2"/></svg>')


def _kpis(f: Mapping[str, Any], w: Mapping[str, str]) -> str:
    rows = []
    for k in FACTORS:
        value, target = f["kpis"][k]["value"], f["targets"][k]
        if value is None:
            gap, status, cls = NONE, w["not-known"], "unknown"
        else:
            gap = f"{100 * (value - target):+.1f} pt"
            status, cls = (w["met"], "met") if value >= target else (w["below"], "below")
        why = f["kpis"][k]["reason"]
        rows.append(f'<tr class="{cls}" data-kpi="{k}"><th>{escape(w[k])}</th>'
                    f'<td class="num">{pct(value)}</td><td>{_bar(value, target)}</td>'
                    f'<td class="num">{pct(target)}</td><td class="num">{gap}</td>'
                    f'<td>{escape(status)}'
                    + (f' <span class="muted">({escape(why)})</span>' if why and value is None
                       else "") + "</td></tr>")
    return (f'<table class="kpis"><thead><tr><th>{escape(w["kpi"])}</th>'
            f'<th class="num">{escape(w["value"])}</th><th></th>'
            f'<th class="num">{escape(w["target"])}</th><th class="num">{escape(w["gap"])}</th>'
            f'<th></th></tr></thead><tbody>{"".join(rows)}'
            "</tbody></table>")


def _machines(f: Mapping[str, Any], w: Mapping[str, str]) -> str:
    if len(f["machines"]) < 2:
        return ""
    head = "".join(f'<th class="num">{escape(w[k])}</th>' for k in FACTORS)
    rows = "".join(f'<tr><td>{escape(m["name"])}</td>'
                   + "".join(f'<td class="num">{pct(m["kpis"][k]["value"])}</td>'
                             for k in FACTORS) + "</tr>" for m in f["machines"])
    return (f'<h2>{escape(w["machines"])}</h2><table><thead><tr>'
            f'<th>{escape(w["machine"])}</th>{head}</tr></thead><tbody>{rows}</tbody></table>')


def _pareto(found: Mapping[str, Any], w: Mapping[str, str]) -> str:
    """The lost time by cause, largest first, with each one's share and the cumulative
    share."""
    bars = found["bars"]
    unpriced = (f'<p class="muted">{escape(w["unpriced"])}{escape(w["colon"])}'
                + escape(", ".join(f"{m} ({why})" for m, why in found["unpriced"].items()))
                + "</p>") if found["unpriced"] else ""
    if not bars:
        return f'<h2>{escape(w["pareto"])}</h2><p>{escape(w["no-loss"])}</p>{unpriced}'
    total = sum(b["lost_s"] for b in bars)
    top = bars[0]["lost_s"]
    rows, running = [], 0.0
    for bar in bars:
        seconds = bar["lost_s"]
        label = (bar["text"] or bar["key"]) if bar["cause"] == "reason" else \
            w["cause-" + bar["cause"]]
        running += seconds
        rows.append(f'<tr><td>{escape(label)}</td><td class="num">{seconds / 60:.0f}</td>'
                    f'<td><svg xmlns="http://www.w3.org/2000/svg" width="180" height="12">'
                    f'<rect width="{180 * seconds / top:.0f}" height="12" fill="#e0a000"/>'
                    f'</svg></td><td class="num">{100 * seconds / total:.0f} %</td>'
                    f'<td class="num">{100 * running / total:.0f} %</td></tr>')
    return (f'<h2>{escape(w["pareto"])}</h2><table class="pareto"><thead><tr>'
            f'<th>{escape(w["loss"])}</th><th class="num">{escape(w["minutes"])}</th><th></th>'
            f'<th class="num">{escape(w["share"])}</th>'
            f'<th class="num">{escape(w["cumulative"])}</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{unpriced}')


def _orders(f: Mapping[str, Any], w: Mapping[str, str]) -> str:
    if not f["orders"]:
        return f'<h2>{escape(w["orders"])}</h2><p>{escape(w["no-parts"])}</p>'
    keys = ("PQ", "GQ", "SQ", "RQ")
    rows = "".join(f'<tr><td>{escape(o["job"] or w["no-order"])}</td>'
                   + "".join(f'<td class="num">{o[k]}</td>' for k in keys) + "</tr>"
                   for o in f["orders"])
    q = f["quantities"]
    total = (f'<tr class="total"><th>{escape(w["total"])}</th>'
             + "".join(f'<td class="num">{q[k]}</td>' for k in keys) + "</tr>")
    return (f'<h2>{escape(w["orders"])}</h2><table class="orders"><thead><tr>'
            f'<th>{escape(w["order"])}</th>'
            + "".join(f'<th class="num">{escape(w[k])}</th>'
                      for k in ("produced", "good", "scrap", "rework"))
            + f'</tr></thead><tbody>{rows}{total}</tbody></table>')


def _alerts(f: Mapping[str, Any], w: Mapping[str, str]) -> str:
    head = f'<h2>{escape(w["alerts"])}</h2>'
    if not f["alerts"]:
        return head + f'<p class="alerts">{escape(w["no-alerts"])}</p>'
    rows = "".join(
        f'<tr><td>{escape(a["machine"])}</td><td>{escape(a["signal"])}</td>'
        f'<td>{escape(_local(a["detected"], f["timezone"], True))}</td>'
        f'<td>{escape(w[a["direction"]])} {abs(a["shift_sigma"]):.1f} \N{GREEK SMALL LETTER SIGMA} '
        f'({a["shift_value"]:+.3g} {escape(a["unit"] or "")})</td>'
        f'<td>{escape(w["yes"] if a["acknowledged"] else w["no"])}</td></tr>'
        for a in f["alerts"])
    return (head + f'<table class="alerts"><thead><tr><th>{escape(w["machine"])}</th>'
            f'<th>{escape(w["signal"])}</th><th>{escape(w["since"])}</th>'
            f'<th>{escape(w["shift-sigma"])}</th><th>{escape(w["acknowledged"])}</th></tr>'
            f'</thead><tbody>{rows}</tbody></table>')


def _notes(f: Mapping[str, Any], w: Mapping[str, str]) -> str:
    head = f'<h2>{escape(w["notes"])}</h2>'
    if not f["notes"]:
        return head + f'<p class="notes">{escape(w["no-notes"])}</p>'
    items = "".join(f'<li><span class="muted">{escape(_local(n["written"], f["timezone"]))}, '
                    f'{escape(w["by"])} {escape(n["author"])}{escape(w["colon"])}</span>'
                    f'{escape(n["text"])}</li>' for n in f["notes"])
    return head + f'<ul class="notes">{items}</ul>'


STYLE = """
@page { size: A4; margin: 12mm 13mm; }
body { font-family: "DejaVu Sans", system-ui, sans-serif; color: #111; font-size: 9.5pt;
       max-width: 190mm; margin: 0 auto; }
h1 { font-size: 16pt; margin: 0 0 2pt; } h2 { font-size: 11pt; margin: 10pt 0 3pt; }
.muted { color: #555; } .head { margin: 0 0 4pt; }
table { border-collapse: collapse; width: 100%; font-size: 9pt; }
th, td { border-bottom: 1px solid #ddd; padding: 2pt 4pt; text-align: left;
         vertical-align: middle; }
.num { text-align: right; white-space: nowrap; } tr { break-inside: avoid; }
table.kpis tbody th { font-weight: 600; width: 28%; } table.kpis td:nth-child(3) { width: 190px; }
table.orders td:first-child, table.pareto td:first-child { width: 40%; }
tr.below td:last-child { color: #c62828; font-weight: 600; }
tr.met td:last-child { color: #2e7d32; font-weight: 600; }
tr.total th, tr.total td { font-weight: 600; border-top: 1px solid #999; }
ul.notes { margin: 0; padding-left: 14pt; } ul.notes li { margin: 2pt 0; white-space: pre-wrap; }
footer { margin-top: 10pt; font-size: 7.5pt; color: #555; }
"""


def render(f: Mapping[str, Any], lang: Lang, made_ns: int) -> str:
    """The report as one HTML page."""
    w, zone, colon = words(lang), f["timezone"], words(lang)["colon"]
    s = f["shift"]
    when = (f'{escape(s["day"])} · {escape(s["name"])} · {_local(s["start"], zone)}'
            f' → {_local(s["end"], zone)} ({escape(zone)})')
    progress = "" if f["complete"] else (
        f'<p class="muted" id="in-progress">'
        f'{escape(w["in-progress"].format(t=_local(f["until"], zone, True)))}</p>')
    coverage = escape(w["coverage"].format(c=pct(f["coverage"])))
    made = _local(from_ns(made_ns).isoformat(), zone, True)
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<title>{escape(w["title"])}: {escape(f["line"]["name"])} {escape(s["day"])}
{escape(s["name"])}</title>
<style>{STYLE}</style></head>
<body>
<h1>{escape(w["title"])} · {escape(f["line"]["name"])}</h1>
<p class="head">{escape(w["plant"])}{colon}<strong>{escape(f["plant"])}</strong> ·
{escape(w["shift"])}{colon}<strong>{when}</strong></p>
{progress}
<h2>{escape(w["kpis"])}</h2>
{_kpis(f, w)}
<p class="muted">{coverage}</p>
{_machines(f, w)}
{_pareto(f["losses"], w)}
{_orders(f, w)}
{_alerts(f, w)}
{_notes(f, w)}
<footer>{escape(w["footer"].format(t=made))}</footer>
</body></html>
"""


def stem(line: str, shift: Shift, lang: Lang) -> str:
    """The file name (without suffix) of a line's shift report: readable, and unique
    even where the line's id or the shift's name has characters a file name avoids."""
    raw = f"{shift.day.isoformat()}_{shift.name}_{line}"
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", raw)[:120]
    if safe != raw:
        safe += "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"shift_{safe}.{lang}"


def reports_dir(config: ShadowedConfig) -> Path:
    return config.data_dir / REPORTS_DIR


def write_report(store: ShadowStore, config: ShadowedConfig, line: str, shift: Shift, *,
                 lang: Lang, out: Path, now_ns: int, with_pdf: bool,
                 wait: bool = False) -> list[Path]:
    """Writes the line's report of `shift` to `out` as <stem>.html, <stem>.pdf (with
    `with_pdf`) and <stem>.json (what the listing reads); the paths written. KeyError for
    an unknown line, ValueError for a shift not begun, OSError; pdf.PdfError once the HTML
and the JSON are written."""
    found = facts(store, config, line, shift, now_ns)
    page = render(found, lang, now_ns)
    out.mkdir(parents=True, exist_ok=True)
    name = stem(line, shift, lang)
    written = [out / f"{name}.html"]
    written[0].write_text(page, encoding="utf-8")
    failed: pdf.PdfError | None = None
    if with_pdf:
        try:
            printed = pdf.pdf(page, wait=wait)
        except pdf.PdfError as exc:
            failed = exc
        else:
            written.append(out / f"{name}.pdf")
            written[1].write_bytes(printed)
    meta = {"line": found["line"]["id"], "line_name": found["line"]["name"],
            "shift": shift.name, "day": found["shift"]["day"],
            "start_ns": shift.window.start_ns, "end_ns": shift.window.end_ns, "lang": lang,
            "complete": found["complete"], "made_ns": now_ns,
            "oee": found["kpis"]["oee"]["value"], "oee_target": found["targets"]["oee"],
            "files": [p.name for p in written]}
    (out / f"{name}.json").write_text(json.dumps(meta), encoding="utf-8")
    if failed is not None:
        raise failed  # the HTML is kept, and listed
    return written


def prune(out: Path, newest_end_ns: int, keep_days: int) -> int:
    """Deletes the reports in `out` whose shift ended more than `keep_days` before
    `newest_end_ns`; how many reports."""
    gone = 0
    for meta in listed(out):
        if meta["end_ns"] < newest_end_ns - keep_days * DAY_NS:
            for name in [*meta["files"], f'{meta["name"]}.json']:
                (out / name).unlink(missing_ok=True)
            gone += 1
    return gone


def listed(out: Path) -> list[dict[str, Any]]:
    """The reports kept in `out`, newest shift first (a file that is not a report's is
    skipped)."""
    found = []
    for path in out.glob("shift_*.json") if out.is_dir() else ():
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and {"line", "end_ns", "files"} <= meta.keys():
            found.append(meta | {"name": path.stem})
    return sorted(found, key=lambda m: (-m["start_ns"], m["line"], m["lang"]))


def at_shift_end(config: ShadowedConfig, store: ShadowStore, shift: Shift) -> None:
    """Called by the running shadow once `shift` ended (in a worker thread of its own):
    writes every line's report in the plant's language to <data_dir>/reports and prunes
    the old ones. A report that cannot be printed is logged, its HTML kept."""
    settings = config.shadow.reports
    out = reports_dir(config)
    for site in config.sites:
        for line in site.all_lines():
            try:
                write_report(store, config, line.id, shift, lang=settings.language, out=out,
                             now_ns=time.time_ns(), with_pdf=settings.pdf, wait=True)
            except pdf.PdfError as exc:
                log.warning("shift report of %s, %s %s: no PDF: %s", line.id,
                            shift.day, shift.name, exc)
    gone = prune(out, shift.window.end_ns, settings.keep_days)
    if gone:
        log.info("shift reports: %d older than %d days deleted", gone, settings.keep_days)
