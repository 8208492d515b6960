"""The printable maturity report, in English or French: one self-contained HTML page
(no script, no remote file, the chart drawn as SVG) from an assessment
(shadow.maturity.Assessment.to_dict) and the kept ones, and the same page as PDF.
`ombre assess --report` and GET /api/v1/assessment/report call it; the dashboard's
maturity page shares its words (static/maturity_text.json)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from api.report_text import NONE, Lang, pct, words_of
from shadow.config import ShadowedConfig
from shadow.maturity import AREAS, NOT_MEASURED, SELF_ASSESSED
from shadow.self_assessment import BY_KEY

KEPT_SHOWN = 12  # the latest kept assessments the report lists


def words(lang: Lang) -> dict[str, Any]:
    return words_of("maturity_text.json", lang)


def _criterion_text(c: dict[str, Any], lang: Lang) -> str:
    if c["declared"]:
        question = BY_KEY.get(c["key"].split(".", 1)[1])
        return question.fr if question and lang == "fr" else c["text"]
    return str(words(lang)["measures"].get(c["key"].split(".", 1)[1], c["text"]))


def _chart(result: dict[str, Any], w: dict[str, Any]) -> str:
    """Horizontal bars, one per area, on a 0-6 scale; a declared area is hatched."""
    left, width, row = 210, 420, 34
    top = 24
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{left + width + 20}" '
           f'height="{top + row * len(AREAS) + 10}" aria-label="{escape(w["areas-chart"])}">',
           '<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="8" height="8" fill="#e0a000"/>'
           '<line x1="0" y1="0" x2="0" y2="8" stroke="#fff" stroke-width="3"/></pattern></defs>']
    for s in range(7):
        x = left + width * s / 6
        out.append(f'<line x1="{x:.0f}" y1="{top - 4}" x2="{x:.0f}" '
                   f'y2="{top + row * len(AREAS)}" stroke="#ccc"/>'
                   f'<text x="{x:.0f}" y="{top - 8}" text-anchor="middle" '
                   f'font-size="12">{s}</text>')
    for i, area in enumerate(AREAS):
        a = result["areas"][area]
        y = top + row * i + 6
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" font-size="13">'
                   f'{escape(w["areas"][area])}</text>')
        if a["stage"] is None:
            out.append(f'<text x="{left + 6}" y="{y + 16}" font-size="12" fill="#666">'
                       f'{escape(w["statuses"]["not assessed"])}</text>')
            continue
        fill = "url(#hatch)" if area in SELF_ASSESSED else "#1f6fd1"
        out.append(f'<rect x="{left}" y="{y}" width="{width * a["stage"] / 6:.0f}" '
                   f'height="22" fill="{fill}" data-area="{area}"/>'
                   f'<text x="{left + width * a["stage"] / 6 + 6:.0f}" y="{y + 16}" '
                   f'font-size="12">{a["stage"]} {escape(w["stages"][a["stage"]])}'
                   + (f' ({escape(w["declared-series"])})' if area in SELF_ASSESSED else "")
                   + "</text>")
    return "".join(out) + "</svg>"


def _area(area: str, a: dict[str, Any], lang: Lang) -> str:
    w = words(lang)
    colon = w["colon"]
    status = escape(w["statuses"][a["status"]])
    head = (f'<h3>{escape(w["areas"][area])}{colon}' + (
        f'{a["stage"]} {escape(w["stages"][a["stage"]])} <span class="status">({status})</span>'
        if a["stage"] is not None else f'<span class="status">{status}</span>') + "</h3>")
    rows = []
    for c in a["criteria"]:
        if c["declared"]:
            answer = w["answers"][c["answer"]] if c["answer"] else NONE
            by = (f'{w["colon"]}{c["answered_by"]}, {c["answered_at"][:10]}' if c["answer"]
                  else "")
            rows.append(f'<tr class="declared"><td>{c["stage"]}</td><td>'
                        f'{escape(_criterion_text(c, lang))}</td><td>{escape(answer)}</td>'
                        f'<td>{escape(w["answers"]["yes"])}</td>'
                        f'<td>{escape(w["statuses"][c["status"]])}</td>'
                        f'<td>{escape(w["statuses"]["declared"] + by)}</td></tr>')
            continue
        rows.append(f'<tr><td>{c["stage"]}</td><td>{escape(_criterion_text(c, lang))}</td>'
                    f'<td class="value">{pct(c["value"])}</td>'
                    f'<td class="value">{pct(c["threshold"])}</td>'
                    f'<td>{escape(w["statuses"][c["status"]])}</td>'
                    f'<td class="source">{escape(c["source"])}</td></tr>')
    if not rows:
        return head
    return (head + f'<table><thead><tr><th>{escape(w["stage"])}</th>'
            f'<th>{escape(w["criterion"])}</th><th>{escape(w["value"])}</th>'
            f'<th>{escape(w["threshold"])}</th><th>{escape(w["status"])}</th>'
            f'<th>{escape(w["source"])}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


FIGURES = ("data_completeness", "data_age_p95", "data_age", "signals_declared")


def figure_text(e: dict[str, Any]) -> str:
    """A figure as the report and the maturity page write it (seconds rounded half up,
    as JavaScript's Math.round)."""
    value = e["value"]
    if value is None:
        return NONE
    if e["key"] == "data_completeness":
        return pct(value)
    return f"{math.floor(value + 0.5)} s" if e["unit"] == "s" else str(value)


def _figure(e: dict[str, Any] | None) -> str:
    if e is None:
        return '<td class="value"></td>'
    note = f' title="{escape(e["note"])}"' if e["note"] else ""
    return f'<td class="value"{note}>{escape(figure_text(e))}</td>'


def _figures(result: dict[str, Any], lang: Lang) -> str:
    """The figures no criterion judges, as the maturity page shows them: per scope (the
    plant, then each machine) the data completeness, the live model's age and the signals
    declared; for the plant, the readings lost and the protocols."""
    w = words(lang)
    names, colon = w["figure-names"], w["colon"]
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for e in result["evidence"]:
        by.setdefault(e["scope"], {})[e["key"]] = e
    scopes = [s for s in by if s == "plant" or s.startswith("machine:")]
    rows = "".join(
        f'<tr><td>{escape(w["the-plant"] if s == "plant" else s.removeprefix("machine:"))}'
        f'</td>{"".join(_figure(by[s].get(k)) for k in FIGURES)}</tr>' for s in scopes)
    plant = by["plant"]
    lost = plant["readings_lost"]["value"]
    head = "".join(f"<th>{escape(names[k])}</th>" for k in ("scope", *FIGURES))
    return (f'<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
            f'<p>{escape(names["readings_lost"])}{colon}{NONE if lost is None else lost} · '
            f'{escape(names["protocols"])}{colon}{escape(plant["protocols"]["note"])}</p>')


def _steps(result: dict[str, Any], lang: Lang) -> str:
    w = words(lang)
    texts = {c["key"]: c["text"] for a in result["areas"].values() for c in a["criteria"]}
    items = []
    for s in result["next_steps"]:
        action = s["action"] if lang == "en" else w["actions"].get(s["criterion"], s["action"])
        measure = s["criterion"].split(".", 1)[1]
        seen = s["history"]
        known = (" (" + w["history-line"].format(d=f'{seen["downtime_min"]:g}', s=seen["scrap"],
                                                  a=seen["drift_alerts"]) + ")" if seen else
                 f' ({w["no-data-yet"]})' if s["machine"] else "")
        what = w["measures"][measure] if lang == "fr" else texts[s["criterion"]]
        items.append(f'<li><strong>{escape(s["machine"] or w["the-plant"])}</strong>'
                     f'{escape(known)}{w["colon"]}{escape(action)}; '
                     f'{escape(w["for-stage"])} {s["stage"]} '
                     f'{escape(w["stages"][s["stage"]])}, {escape(what)} {pct(s["value"])}, '
                     f'{escape(w["needs"])} {pct(s["threshold"])}</li>')
    return (f'<ol class="steps">{"".join(items)}</ol>' if items else
            f'<p>{escape(w["no-steps"])}</p>')


def _kept(kept: Sequence[dict[str, Any]], lang: Lang) -> str:
    w = words(lang)
    if not kept:
        return f'<p>{escape(w["no-history"])}</p>'
    head = "".join(f"<th>{escape(w['areas'][a])}</th>" for a in AREAS)
    rows = "".join(
        f'<tr><td>{escape(h["day"])}</td><td>{h["stage"]}</td>'
        + "".join(f'<td>{NONE if h["areas"][a] is None else h["areas"][a]}</td>' for a in AREAS)
        + "</tr>" for h in kept[-KEPT_SHOWN:])
    return (f'<table><thead><tr><th>{escape(w["day"])}</th><th>{escape(w["overall"])}</th>'
            f'{head}</tr></thead><tbody>{rows}</tbody></table>')


STYLE = """
@page { size: A4; margin: 15mm 14mm; }
body { font-family: "DejaVu Sans", system-ui, sans-serif; color: #111; font-size: 10.5pt;
       max-width: 190mm; margin: 0 auto; }
h1 { font-size: 18pt; margin: 0 0 4pt; } h2 { font-size: 13pt; margin: 14pt 0 4pt; }
h3 { font-size: 11pt; margin: 10pt 0 3pt; break-after: avoid; }
.overall { font-size: 16pt; font-weight: 700; margin: 6pt 0; }
.muted, .status, .source { color: #555; } .source { font-size: 8pt; }
table { border-collapse: collapse; width: 100%; font-size: 9pt; }
th, td { border-bottom: 1px solid #ddd; padding: 2pt 4pt; text-align: left;
         vertical-align: top; }
.value { white-space: nowrap; } tr { break-inside: avoid; } tr.declared td { background: #fff6e0; }
footer { margin-top: 14pt; font-size: 8pt; color: #555; }
"""


def render(result: dict[str, Any], kept: Sequence[dict[str, Any]], lang: Lang,
           plant: str) -> str:
    """The report as one HTML page; `kept` is shadow.maturity.history()."""
    w = words(lang)
    win, colon = result["window"], w["colon"]
    gaps = [w["not-measured"][e["key"]] if lang == "fr"
            else f'{e["key"]}: {e["note"].removeprefix(NOT_MEASURED)}'
            for e in result["evidence"] if (e["note"] or "").startswith(NOT_MEASURED)]
    overall = f'{escape(w["overall"])}{colon}{result["stage"]} ' \
              f'{escape(w["stages"][result["stage"]])}'
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<title>{escape(w["report-title"])}: {escape(plant)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(w["report-title"])}</h1>
<p>{escape(w["plant"])}{colon}<strong>{escape(plant)}</strong> ·
{escape(w["window"])}{colon}{escape(win["from"])} → {escape(win["to"])}</p>
<p class="overall" id="overall" data-stage="{result["stage"]}">{overall}</p>
<p class="muted">{escape(w["model"])}</p>
<h2>{escape(w["areas-chart"])}</h2>
{_chart(result, w)}
<h2>{escape(w["evidence"])}</h2>
{"".join(_area(a, result["areas"][a], lang) for a in AREAS)}
<h3>{escape(w["not-measured-title"])}</h3>
<ul>{"".join(f"<li>{escape(g)}</li>" for g in gaps)}</ul>
<h2>{escape(w["figures"])}</h2>
{_figures(result, lang)}
<h2>{escape(w["next-steps"])}</h2>
{_steps(result, lang)}
<h2>{escape(w["progress"])}</h2>
{_kept(kept, lang)}
<footer>{escape(w["footer"])}</footer>
</body></html>
"""


def plant_name(config: ShadowedConfig) -> str:
    """The plant as the report names it: its sites' names (or ids)."""
    return ", ".join(site.name or site.id for site in config.sites)
