"""`ombre assess --export FILE` and `--compare FILES...`: the assessment as a shared tool
(shadow/maturity_export.py). The export is anonymised: figures and stages only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ombre.cli_common import EXIT_OK, EXIT_USAGE
from shadow.maturity import STAGES
from shadow.maturity_export import EXPORT_SCHEMA, ExportError, compare, export, read


def add_share_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --export and --compare to `ombre assess`."""
    parser.add_argument("--export", type=Path, metavar="FILE",
                        help=f"also write the assessment, anonymised (figures and stages "
                             f"only), to FILE ({EXPORT_SCHEMA}, docs/maturity.schema.json)")
    parser.add_argument("--compare", type=Path, nargs="+", metavar="FILE",
                        help="place this plant among other plants' exports: its percentile "
                             "per criterion, and their stages (instead of the assessment)")


def share(args: argparse.Namespace, result: dict[str, Any]) -> int:
    """Writes --export and prints --compare for `result` (Assessment.to_dict); a file
    that cannot be written or read is named on stderr, and the others are still used."""
    code = EXIT_OK
    mine = export(result)
    if args.export is not None:
        try:
            args.export.write_text(json.dumps(mine, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"ombre assess: --export {args.export}: cannot be written ({exc.strerror})",
                  file=sys.stderr)
            code = EXIT_USAGE
    if args.compare:
        others = []
        for path in args.compare:
            try:
                others.append(read(path))
            except ExportError as exc:
                print(f"ombre assess: --compare {exc}", file=sys.stderr)
                code = EXIT_USAGE
        if not others:
            print("ombre assess: --compare: no export could be read", file=sys.stderr)
            return EXIT_USAGE
        found = compare(mine, others)
        print(json.dumps(found, indent=2) if args.json else render_comparison(found))
    return code


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render_comparison(found: dict[str, Any]) -> str:
    """The comparison in words: this plant against the others, criterion by criterion."""
    plants = found["plants"]

    def spread(stages: dict[str, int]) -> str:
        return ", ".join(f"{n} {k}" if k == "not assessed" else f"{n} at stage {k}"
                         for k, n in stages.items())

    lines = [f"This plant among {plants} other plant{'s' * (plants != 1)}",
             f"Overall stage: {found['stage']} {found['stage_name']}; the others: "
             f"{spread(found['stages'])}", ""]
    for area, a in found["areas"].items():
        mine = "not assessed" if a["stage"] is None else f"stage {a['stage']}"
        lines.append(f"{area.replace('_', ' ').capitalize()}: {mine}; the others: "
                     f"{spread(a['stages'])}")
    lines += ["", f"  {'criterion':<46} {'stage':<22} {'this plant':>10} {'median':>7} "
                  f"{'percentile':>10}  plants"]
    for key, c in found["criteria"].items():
        rank = "-" if c["percentile"] is None else f"{c['percentile']:g}"
        lines.append(f"  {key:<46} {c['stage']} {STAGES[c['stage']]:<20} "
                     f"{_share(c['value']):>10} {_share(c['median']):>7} {rank:>10}  "
                     f"{c['plants']}")
    lines += ["", "percentile: the share of the other plants below this one (ties count half);",
              "a plant that did not measure a criterion is left out of it"]
    return "\n".join(lines)
