"""The `ombre` command. Each subcommand is a `cmd_<name>(args) -> int` function that
returns the process exit code, registered in `build_parser`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.app import serve
from gateway.config_load import ConfigError, load_config

EXIT_OK = 0
EXIT_CONFIG = 2  # the config file cannot be used (argparse also exits 2 on bad usage)


def cmd_check(args: argparse.Namespace) -> int:
    """Validates the config file: prints a one-line summary to stdout, or every problem
    to stderr."""
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    machines = config.machines()
    print(f"{args.config}: OK ({len(machines)} machines, "
          f"{sum(len(m.signals) for m in machines)} signals, {len(config.sources)} sources, "
          f"{len(config.sinks)} sinks)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Runs the gateway until SIGTERM or Ctrl-C (a second one forces the exit)."""
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subparser sets `command` to its cmd_ function."""
    parser = argparse.ArgumentParser(
        prog="ombre", description="Ombre: edge gateway and digital shadow for the shop floor.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    check = commands.add_parser("check", help="validate a config file and exit: "
                                "0 if it is valid, 2 if not")
    check.add_argument("config", type=Path, metavar="CONFIG", help="the YAML config file")
    check.set_defaults(command=cmd_check)

    run = commands.add_parser("run", help="run the gateway until SIGTERM or Ctrl-C")
    run.add_argument("config", type=Path, metavar="CONFIG", help="the YAML config file")
    run.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    run.set_defaults(command=cmd_run)

    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ombre` console script and `python -m gateway`; returns the
    exit code. Bad usage exits with status 2 through argparse."""
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)
