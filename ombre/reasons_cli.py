"""`ombre reasons`: import a long table of reason codes (a controller's fault codes)
from CSV, and list the raw stop reasons machines gave that are no reason code, as
`ombre check` lists problems."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.config_base import Loc
from gateway.config_load import format_problem, located
from ombre.cli_common import EXIT_CONFIG, EXIT_OK
from ombre.config import OmbreConfig
from ombre.shadow_cli import config_of, config_path, import_csv, store_of, with_config
from shadow.calendar import from_ns
from shadow.config import ReasonCodeConfig
from shadow.csv_rows import parse_rows
from shadow.store import ShadowStore


def parse_reason_codes(lines: Iterable[str],
                       source: str) -> tuple[list[ReasonCodeConfig], list[str]]:
    """Reason codes from CSV (`code,text,category,failure`; failure true/false, default
    false) and one message per bad row."""
    return parse_rows(lines, source, ReasonCodeConfig, "code",
                      "code, text, category and (optionally) failure")


def cmd_reasons_import(args: argparse.Namespace) -> int:
    """Creates or updates reason codes from a CSV file; bad rows are reported by line,
    the good ones imported."""

    def store_codes(store: ShadowStore, codes: list[ReasonCodeConfig], _: list[str]) -> int:
        return store.import_reason_codes(list({c.code: c.model_dump() for c in codes}.values()))

    return import_csv(args, "reasons import", "reason codes", parse_reason_codes, store_codes)


def unknown_reason_warnings(config: OmbreConfig, file: Path,
                            found: Iterable[tuple[str, str, int, int, int]]) -> list[str]:
    """One `file:line: key: warning: ...` line per (machine, raw reason) that is no
    reason code, pointing at the machine's `reason` key."""
    machines = {m.id: m for m in config.machines()}
    lines = []
    for machine, raw, stops, total_ns, first_ns in found:
        loc: Loc = (*config.machine_key(machine), "reason") if machine in machines else ()
        since = from_ns(first_ns).isoformat().replace("+00:00", "Z")
        message = (f"warning: machine {machine} gave the stop reason {raw!r}, which is no "
                   f"reason code: {stops} stop{'s' if stops != 1 else ''} "
                   f"({total_ns / 6e10:.1f} min) since {since}; map it under reason.map or "
                   "declare it (shadow.reason_codes, ombre reasons import)")
        lines.append(format_problem(str(file), located(file, loc, message)))
    return lines


def cmd_reasons_unknown(args: argparse.Namespace) -> int:
    """Prints a warning per raw stop reason that no reason code stands for."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    with store_of(config) as store:
        found = store.unknown_reasons()
    for line in unknown_reason_warnings(config, config_path(args), found):
        print(line)
    if not found:
        print("every stop reason the machines gave is a reason code")
    return EXIT_OK


def add_reasons_commands(commands: Any) -> None:
    """Registers `ombre reasons import|unknown` on `ombre`'s subparsers."""
    reasons = commands.add_parser("reasons", help="reason codes: import a CSV table, list "
                                                  "the stop reasons machines gave that are "
                                                  "no code")
    actions = reasons.add_subparsers(metavar="ACTION", required=True)
    imp = with_config(actions.add_parser(
        "import", help="create or update reason codes from a CSV file "
                       "(code,text,category,failure)"))
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.set_defaults(command=cmd_reasons_import)
    unknown = with_config(actions.add_parser(
        "unknown", help="warnings for the raw stop reasons no code stands for"))
    unknown.set_defaults(command=cmd_reasons_unknown)
