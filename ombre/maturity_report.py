"""`ombre assess --report FILE [--lang fr|en]`: the printable report of the assessment
(api/maturity_report.py), as HTML or, for a FILE ending in .pdf, printed to PDF by
headless Chromium; an SME hands it to its regional programme."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from api import maturity_report, pdf
from ombre.cli_common import EXIT_OK, EXIT_USAGE
from shadow.config import ShadowedConfig
from shadow.maturity import history
from shadow.store import ShadowStore

SUFFIXES = (".html", ".htm", ".pdf")


def report_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in SUFFIXES:
        raise argparse.ArgumentTypeError(f"expected a file ending in {', '.join(SUFFIXES)}, "
                                         f"found {text!r}")
    return path


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", type=report_path, metavar="FILE",
                        help="also write the printable report to FILE: .html, or .pdf "
                             "(printed by headless Chromium)")
    parser.add_argument("--lang", choices=("en", "fr"), default="en",
                        help="the report's language (default: en)")


def write_report(args: argparse.Namespace, store: ShadowStore, config: ShadowedConfig,
                 result: dict[str, Any]) -> int:
    """Writes the report of `result` (Assessment.to_dict) to args.report; says where on
    stderr, or why it could not."""
    path: Path = args.report
    page = maturity_report.render(result, history(store, maturity_report.KEPT_SHOWN),
                                  args.lang, maturity_report.plant_name(config))
    try:
        if path.suffix.lower() == ".pdf":
            path.write_bytes(pdf.pdf(page))
        else:
            path.write_text(page, encoding="utf-8")
    except (OSError, pdf.PdfError) as exc:
        print(f"ombre assess: cannot write the report to {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"ombre assess: the report is in {path}", file=sys.stderr)
    return EXIT_OK
