"""The `ombre` command. Each subcommand is a `cmd_<name>(args) -> int` function that
returns the process exit code, registered in `build_parser`."""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from connectors.sqlite_config import SqliteSinkConfig
from connectors.sqlite_ts import StoreError, open_store
from gateway.metrics import MetricsListenError
from ombre.api_cli import add_api_commands
from ombre.app import build_gateway, serve
from ombre.cli_common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_USAGE,
    PrintVersion,
    load_checked,
    load_context,
    setup_logging,
    utc_time,
)
from ombre.config import OmbreConfig
from ombre.demo_cli import add_demo_command
from ombre.maturity_cli import add_maturity_commands
from ombre.plugins import PluginError, install_hint, registry
from ombre.reasons_cli import add_reasons_commands
from ombre.report_cli import add_report_commands
from ombre.shadow_cli import add_shadow_commands
from shadow.calendar import to_ns


def cmd_check(args: argparse.Namespace) -> int:
    """Validates the config file: prints a one-line summary to stdout, or every problem
    to stderr."""
    config = load_checked(args.config)
    if config is None:
        return EXIT_CONFIG
    machines = config.machines()
    print(f"{args.config}: OK ({len(machines)} machines, "
          f"{sum(len(m.signals) for m in machines)} signals, {len(config.sources)} sources, "
          f"{len(config.sinks)} sinks)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Runs the gateway until SIGTERM or Ctrl-C (a second one forces the exit); with
    --api, the API and dashboard too, in the same process."""
    config = load_checked(args.config)
    if config is None:
        return EXIT_CONFIG
    setup_logging(args.log_level)
    if args.test:
        from ombre.commission import commission  # noqa: PLC0415

        return commission(config, args.seconds, sys.stdout)
    try:
        if args.api:
            _run_with_api(config)
        else:
            asyncio.run(serve(config))
    except (MetricsListenError, ApiListenError) as exc:
        print(f"ombre run: {exc}; change it in {args.config}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


class ApiListenError(Exception):
    """api.host:api.port cannot be listened on."""


def _run_with_api(config: OmbreConfig) -> None:
    """The gateway with the API and dashboard beside it, in one event loop."""
    # The API's stack (FastAPI, SQLAlchemy) is loaded only when it is served.
    from api.app import create_app  # noqa: PLC0415
    from api.serve import listen, run_beside  # noqa: PLC0415
    from api.tokens import first_admin_token  # noqa: PLC0415
    from shadow.schema import database_url, open_engine, upgrade  # noqa: PLC0415

    try:
        sock = listen(config.api.host, config.api.port)
    except OSError as exc:
        raise ApiListenError(f"cannot serve the API on {config.api.host}:{config.api.port}: "
                             f"{exc.strerror} (api.port)") from exc
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        upgrade(engine)
        first_admin_token(engine, config.data_dir)
    finally:
        engine.dispose()
    gateway, outbox = build_gateway(config)
    app = create_app(config, counters=gateway.counters)
    print(f"Ombre API and dashboard on http://{config.api.host}:{config.api.port}/",
          file=sys.stderr)
    asyncio.run(serve(config, gateway, outbox, run=functools.partial(run_beside, app, sock)))


def cmd_query(args: argparse.Namespace) -> int:
    """Prints one signal's stored samples over a time range, as text or CSV: the
    readings of a number signal, the events of a string signal (a state, an order)."""
    config = load_checked(args.config)
    if config is None:
        return EXIT_CONFIG
    sink = next((s for s in config.sinks if isinstance(s, SqliteSinkConfig)), None)
    if sink is None:
        print(f"{args.config}: no sqlite sink to read from", file=sys.stderr)
        return EXIT_USAGE
    to_ts = args.to or datetime.now(UTC)
    from_ts = args.from_ or to_ts - timedelta(hours=1)
    window = to_ns(from_ts), to_ns(to_ts)
    string = any(m.id == args.machine and s.name == args.signal and s.type == "string"
                 for m in config.machines() for s in m.signals)
    try:
        with open_store(sink.path or config.data_dir / "timeseries.sqlite") as store:
            if string:
                rows = [(e.ts_ns, e.value if isinstance(e.value, str) else
                         orjson.dumps(e.value).decode(), e.quality)
                        for e in store.read_events(args.machine, *window, name=args.signal)]
            else:
                ts, value, quality = store.read(args.machine, args.signal, *window)
                rows = list(zip(ts.tolist(), map(repr, value.tolist()), quality.tolist(),
                                strict=True))
    except (KeyError, StoreError) as exc:
        print(f"ombre query: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    writer = csv.writer(sys.stdout, delimiter="," if args.csv else "\t", lineterminator="\n")
    writer.writerow(["ts", "value", "quality"])
    for t, v, q in rows:
        stamp = datetime.fromtimestamp(t // 10**9, UTC).replace(microsecond=t % 10**9 // 1000)
        writer.writerow([stamp.isoformat().replace("+00:00", "Z"), v, q])
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subparser sets `command` to its cmd_ function."""
    parser = argparse.ArgumentParser(
        prog="ombre", description="Ombre: edge gateway and digital shadow for the shop floor.")
    parser.add_argument("--version", action=PrintVersion, nargs=0,
                        help="print the installed version and the git commit it came from, "
                             "and exit")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    check = commands.add_parser("check", help="validate a config file and exit: "
                                "0 if it is valid, 2 if not")
    check.add_argument("config", type=Path, metavar="CONFIG", help="the YAML config file")
    check.set_defaults(command=cmd_check)

    run = commands.add_parser("run", help="run the gateway until SIGTERM or Ctrl-C")
    run.add_argument("config", type=Path, metavar="CONFIG", help="the YAML config file")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--api", action="store_true",
                      help="serve the API and dashboard in the same process (api: in the "
                           "config), with every connector's health in /readyz")
    mode.add_argument("--test", action="store_true",
                      help="commissioning: connect to every source, print what arrives and "
                           "the machines' states, write nothing, and end with a summary "
                           "(exit 1 if a source never connected)")
    run.add_argument("--seconds", type=float, default=10.0, metavar="N",
                     help="with --test: how long to watch (default 10)")
    run.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    run.set_defaults(command=cmd_run)

    query = commands.add_parser("query", help="print a signal's stored samples")
    query.add_argument("config", type=Path, metavar="CONFIG", help="the YAML config file")
    query.add_argument("machine", help="machine id")
    query.add_argument("signal", help="signal name")
    query.add_argument("--from", dest="from_", type=utc_time, metavar="TIME",
                       help="start, RFC 3339 (default: an hour before --to)")
    query.add_argument("--to", type=utc_time, metavar="TIME", help="end, exclusive (default: now)")
    query.add_argument("--csv", action="store_true", help="comma-separated instead of tabs")
    query.set_defaults(command=cmd_query)

    add_shadow_commands(commands)
    add_reasons_commands(commands)
    add_maturity_commands(commands)
    add_report_commands(commands)
    add_api_commands(commands)
    add_demo_command(commands)
    for plugin in registry().all():
        if plugin.add_commands is not None:
            plugin.add_commands(commands, load_context)

    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ombre` console script and `python -m ombre`; returns the
    exit code. Bad usage exits with status 2 through argparse."""
    try:
        parser = build_parser()
    except PluginError as exc:
        print(f"ombre: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except ModuleNotFoundError as exc:  # a plug-in's command whose extra is not installed
        plugin = next((p for p in registry().all()
                       if exc.name and exc.name.split(".")[0] in p.requires), None)
        if plugin is None:
            raise
        print(f"ombre: this command needs {exc.name}, which is not installed: "
              f"{install_hint(plugin)}", file=sys.stderr)
        return EXIT_USAGE
