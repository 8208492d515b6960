"""`ombre assess`: the plant's stage on the acatech Industrie 4.0 Maturity Index, with the
evidence behind it and what to do next, over a window (default: the last 30 days).
Each assessment is kept (shadow.maturity.record), so progress shows over time."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ombre.cli_common import EXIT_CONFIG, EXIT_USAGE, utc_time
from ombre.maturity_report import add_report_arguments, write_report
from ombre.maturity_share import add_share_arguments, share
from ombre.shadow_cli import config_of, store_of, with_config
from shadow.calendar import to_ns
from shadow.maturity import (
    AREAS,
    DEFAULT_DAYS,
    MEASURES,
    NOT_MEASURED,
    STAGES,
    assess,
    record,
)
from shadow.timeline import Window


def assessment_window(from_: datetime | None, to: datetime | None, now: datetime,
                      max_days: float) -> Window:
    """[from, to), by default the DEFAULT_DAYS before `to` (default: now); ValueError
    naming the problem if `from` is after `to` or the range is longer than `max_days`."""
    end = to or now
    start = from_ or end - timedelta(days=DEFAULT_DAYS)
    if start > end:
        raise ValueError(f"--from ({start.isoformat()}) is after --to ({end.isoformat()})")
    if end - start > timedelta(days=max_days):
        raise ValueError(f"the range from {start.isoformat()} to {end.isoformat()} is longer "
                         f"than api.max_range_days ({max_days:g} days)")
    return Window(to_ns(start), to_ns(end))


def cmd_assess(args: argparse.Namespace) -> int:
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    try:
        window = assessment_window(args.from_, args.to, datetime.now(UTC),
                                   config.api.max_range_days)
    except ValueError as exc:
        print(f"ombre assess: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with store_of(config) as store:
        result = assess(store, config, window).to_dict()
        record(store, result, time.time_ns())
        code = share(args, result)
        if not args.compare:
            print(json.dumps(result, indent=2) if args.json else render(result))
        if args.report:
            code = max(code, write_report(args, store, config, result))
    return code


def _pct(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.0%}"


def render(result: dict[str, Any]) -> str:
    """The assessment in words, for a production manager."""
    w = result["window"]
    lines = [f"Maturity of the shop floor from {w['from']} to {w['to']}",
             *([f"({w['note']})"] if "note" in w else []),
             "(acatech Industrie 4.0 Maturity Index: 1 computerisation, 2 connectivity, "
             "3 visibility, 4 transparency, 5 predictive capacity, 6 adaptability)", "",
             f"Overall stage: {result['stage']} {result['stage_name']}",
             f"  {result['basis']}", ""]
    for area in AREAS:
        a = result["areas"][area]
        title = area.replace("_", " ").capitalize()
        if a["stage"] is None:
            lines += [f"{title}: not assessed ({a['note']})", ""]
            continue
        lines.append(f"{title}: stage {a['stage']} {a['stage_name']}")
        for c in a["criteria"]:
            mark = {"met": "ok ", "nothing to judge": "ok "}.get(c["status"], "-- ")
            if c["declared"]:
                lines.append(f"  {mark}{c['stage']} {c['stage_name']:<20} {c['text']} "
                             f"(declared: {c['answer'] or 'not answered'})")
                continue
            why = f", {c['note']}" if c["status"] == "not measured" else ""
            value = "none in the window" if c["status"] == "nothing to judge" else _pct(c["value"])
            lines.append(f"  {mark}{c['stage']} {c['stage_name']:<20} {c['text']}: "
                         f"{value} (needs {c['threshold']:.0%}; {c['status']}{why})")
        if a["not_measured_stages"]:
            lines.append(f"     not measured: {', '.join(a['not_measured_stages'])}")
        lines.append("")
    lines.append("Not measured (never guessed):")
    lines += [f"  {e['key']}: {e['note'].removeprefix(NOT_MEASURED)}"
              for e in result["evidence"] if (e["note"] or "").startswith(NOT_MEASURED)]
    lines += ["", "Next steps, most critical first:"]
    for s in result["next_steps"] or []:
        who = s["machine"] or "the plant"
        seen = s["history"]
        known = (f" (downtime {seen['downtime_min']:g} min, scrap {seen['scrap']}, "
                 f"{seen['drift_alerts']} drift alerts)" if seen else
                 " (no data yet)" if s["machine"] else "")
        lines.append(f"  {s['rank']}. {who}{known}: {s['action']}; for stage {s['stage']} "
                     f"{STAGES[s['stage']]}, {MEASURES[s['criterion'].split('.')[1]].text} "
                     f"{_pct(s['value'])}, needs {s['threshold']:.0%}")
    if not result["next_steps"]:
        lines.append("  none the data can point at")
    return "\n".join(lines)


def add_maturity_commands(commands: Any) -> None:
    """Registers `ombre assess` on `ombre`'s subparsers."""
    assess_ = with_config(commands.add_parser(
        "assess", help="the shop floor's stage on the Industrie 4.0 Maturity Index, with "
                       "its evidence and the next steps"))
    assess_.add_argument("--from", dest="from_", type=utc_time, metavar="TIME",
                         help=f"start, RFC 3339 (default: {DEFAULT_DAYS} days before --to)")
    assess_.add_argument("--to", type=utc_time, metavar="TIME",
                         help="end, exclusive (default: now)")
    assess_.add_argument("--json", action="store_true", help="print JSON")
    add_report_arguments(assess_)
    add_share_arguments(assess_)
    assess_.set_defaults(command=cmd_assess)
