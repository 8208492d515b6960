"""`ombre report shift --at TIME`: the shift report (api/shift_report.py) of the shift
running at TIME, for one line or every line, as HTML and PDF, written where the running
shadow writes those of each shift's end (<data_dir>/reports, listed in the dashboard)
unless --out says elsewhere."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from api import pdf
from api.shift_report import reports_dir, write_report
from ombre.cli_common import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, utc_time
from ombre.shadow_cli import config_of, store_of, with_config
from shadow.calendar import to_ns
from shadow.shift_notes import shift_at
from shadow.shift_report import line_of


def cmd_report_shift(args: argparse.Namespace) -> int:
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    try:
        lines = [line_of(config, args.line).id] if args.line else \
            [ln.id for site in config.sites for ln in site.all_lines()]
    except KeyError as exc:
        print(f"ombre report shift: --line: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    shift = shift_at(config.shadow.calendar, to_ns(args.at))
    if shift is None:
        names = ", ".join(f"{s.name} {s.start:%H:%M}-{s.end:%H:%M}"
                          for s in config.shadow.calendar.shifts) or "none"
        print(f"ombre report shift: --at {args.at.isoformat()}: no shift of the calendar runs "
              f"then (shadow.calendar.shifts, in {config.shadow.calendar.timezone}: {names})",
              file=sys.stderr)
        return EXIT_USAGE
    out: Path = args.out or reports_dir(config)
    lang = args.lang or config.shadow.reports.language
    code = EXIT_OK
    with store_of(config) as store:
        for line in lines:
            try:
                written = write_report(store, config, line, shift, lang=lang, out=out,
                                       now_ns=time.time_ns(), with_pdf=not args.no_pdf)
            except ValueError as exc:
                print(f"ombre report shift: --at: {exc}", file=sys.stderr)
                return EXIT_USAGE
            except (OSError, pdf.PdfError) as exc:
                print(f"ombre report shift: line {line}: cannot write the report to {out}: "
                      f"{exc}", file=sys.stderr)
                code = EXIT_USAGE
                continue
            for path in written:
                print(path)
    return code


def add_report_commands(commands: Any) -> None:
    """Registers `ombre report shift` on `ombre`'s subparsers."""
    report = commands.add_parser("report", help="printable reports")
    kinds = report.add_subparsers(title="reports", metavar="REPORT", required=True)
    shift = with_config(kinds.add_parser(
        "shift", help="the one-page report of a line's shift: OEE and its factors against "
                      "target, losses, parts per order, open alerts, operators' notes"))
    shift.add_argument("--at", type=utc_time, required=True, metavar="TIME",
                       help="a time within the shift, RFC 3339 (a running shift is "
                            "reported up to now)")
    shift.add_argument("--line", metavar="ID", help="one line (default: every line)")
    shift.add_argument("--lang", choices=("en", "fr"),
                       help="the language (default: shadow.reports.language)")
    shift.add_argument("--out", type=Path, metavar="DIR",
                       help="where to write (default: <data_dir>/reports, which the "
                            "dashboard lists)")
    shift.add_argument("--no-pdf", action="store_true", help="HTML only (no Chromium)")
    shift.set_defaults(command=cmd_report_shift)
