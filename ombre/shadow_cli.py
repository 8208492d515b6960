"""The shadow's `ombre` commands: replay, kpi, orders (import, complete), export,
downtime and alerts.
Each finds its config with `-c/--config`, or $OMBRE_CONFIG, or ./ombre.yaml."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from connectors.replay import ReplaySource
from ombre.app import build_gateway, serve
from ombre.cli_common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_USAGE,
    load_checked,
    setup_logging,
    utc_time,
)
from ombre.config import OmbreConfig
from shadow import audit
from shadow import tables as t
from shadow.calendar import rfc3339, to_ns
from shadow.completion import CompletionRefusedError, UnknownOrderError, complete_order
from shadow.csv_rows import CsvError, M, read_csv
from shadow.orders import OrderIn, job_key, order_rows, parse_orders
from shadow.report import Report, reports, select_machines
from shadow.schema import database_url, open_engine, upgrade
from shadow.store import ShadowStore
from shadow.timeline import Window

REPLAY_DRAIN_S = 24 * 3600.0  # a replay waits for every sink to catch up


def config_path(args: argparse.Namespace) -> Path:
    path: Path = args.config or Path(os.environ.get("OMBRE_CONFIG", "ombre.yaml"))
    return path


def config_of(args: argparse.Namespace) -> OmbreConfig | None:
    return load_checked(config_path(args))


@contextmanager
def store_of(config: OmbreConfig) -> Iterator[ShadowStore]:
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        upgrade(engine)
        yield ShadowStore(engine)
    finally:
        engine.dispose()


def _window(args: argparse.Namespace) -> Window:
    to_ts = args.to or datetime.now(UTC)
    from_ts = args.from_ or to_ts - timedelta(hours=24)
    if from_ts > to_ts:
        raise argparse.ArgumentTypeError(f"--from {from_ts} is after --to {to_ts}")
    return Window(to_ns(from_ts), to_ns(to_ts))


def cmd_replay(args: argparse.Namespace) -> int:
    """Feeds a JSON Lines recording through the pipeline (sinks and shadow), then exits
    once every sink has written it."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    if not args.file.is_file():
        print(f"ombre replay: no such file: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(args.log_level)
    # Nothing of a replay may be dropped: block on a full queue, drain to the end.
    runtime = config.runtime.model_copy(update={"overflow": "block",
                                                "drain_timeout_s": REPLAY_DRAIN_S})
    config = config.model_copy(update={"runtime": runtime})
    done = asyncio.Event()
    source = ReplaySource(args.file, config, config.registry(),
                          speed=None if args.max else args.speed, on_done=done.set,
                          historical=args.historical)
    gateway, outbox = build_gateway(config, sources=[source], outbox_name="replay-outbox.sqlite")
    started = time.monotonic()
    asyncio.run(serve(config, gateway, outbox, done, notify=False))
    counters = gateway.counters.connector(source.name, "source")
    print(f"replayed {source.lines} lines of {args.file} in {time.monotonic() - started:.1f} s; "
          f"{counters.quarantined} quarantined", file=sys.stderr)
    if counters.quarantined:
        print(f"the quarantined lines are in {config.data_dir / 'replay-outbox.sqlite'} "
              "(table quarantine), with the reason for each", file=sys.stderr)
    return EXIT_USAGE if counters.quarantined or not done.is_set() else EXIT_OK


def _print_report(report: Report) -> None:
    data = report.result.to_dict()
    print(f"== {report.label}: {', '.join(data['machines'])}"
          + (f", job {data['job']}" if data["job"] else "")
          + (" (idle time excluded from PBT)" if data["idle_excluded"] else ""))
    print("time (min): " + "  ".join(f"{k} {v / 60:.2f}" for k, v in data["time_s"].items()))
    quantities = data["quantities"]
    print("quantities: " + "  ".join(f"{k} {quantities[k]:g}" for k in
                                     ("PQ", "GQ", "SQ", "RQ", "PSQ", "IP", "GP", "FE")))
    for name, kpi in data["kpis"].items():
        value = "null" if kpi["value"] is None else f"{kpi['value']:.6f}"
        unit = "" if kpi["unit"] == "1" else f" {kpi['unit']}"
        why = f"  ({kpi['reason']})" if kpi["reason"] else ""
        print(f"  {name:<30} {value}{unit}{why}")
    share, coverage = data["unclassified_share"], data["coverage"]
    print(f"  {'unclassified share of PBT':<30} "
          f"{'null' if share['value'] is None else format(share['value'], '.6f')}"
          f"  (unknown {coverage['unknown_s'] / 60:.2f} min)")
    print(f"  {'coverage':<30} "
          f"{'null' if coverage['value'] is None else format(coverage['value'], '.6f')}"
          f"  (no data {coverage['no_data_s'] / 60:.2f} min, out of PBT)")


def cmd_kpi(args: argparse.Namespace) -> int:
    """Prints the ISO 22400 KPIs of a machine, a line or the plant over a time range."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    try:
        machines = select_machines(config.sites, args.machine, args.line, args.site)
        window = _window(args)
        with store_of(config) as store:
            found = reports(store, config, window, machines, args.by)
    except (KeyError, argparse.ArgumentTypeError) as exc:
        print(f"ombre kpi: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps([{"label": r.label, **r.result.to_dict()} for r in found], indent=2))
    else:
        for report in found:
            _print_report(report)
    return EXIT_OK


def import_csv(args: argparse.Namespace, command: str, what: str,
               parse: Callable[[Iterable[str], str], tuple[list[M], list[str]]],
               store_rows: Callable[[ShadowStore, list[M], list[str]], int]) -> int:
    """`ombre COMMAND FILE`: the rows `parse` reads from the CSV file, the good ones
    stored by `store_rows` (given the bad rows' messages too; it returns how many it
    stored), each bad row reported by line. Exit 2 when a row was bad."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    try:
        rows, problems = read_csv(args.file, parse)
    except CsvError as exc:
        print(f"ombre {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with store_of(config) as store:
        count = store_rows(store, rows, problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{count} {what} imported from {args.file}"
          + (f"; {len(problems)} rows rejected" if problems else ""))
    return EXIT_USAGE if problems else EXIT_OK


def cmd_orders_import(args: argparse.Namespace) -> int:
    """Creates or updates production orders from a CSV file; bad rows are reported with
    their line and column, and the good ones imported."""

    def store_orders(store: ShadowStore, orders: list[OrderIn], problems: list[str]
                     ) -> int:
        rows = order_rows(orders)
        count = store.import_orders(rows)
        audit.record(store.engine, audit.cli_actor(), "orders.import", str(args.file),
                     audit.orders_details(rows, problems))
        return count

    return import_csv(args, "orders import", "orders", parse_orders, store_orders)


def _confirmations(store: ShadowStore, window: Window) -> tuple[list[str], list[list[Any]]]:
    oc = t.order_confirmation
    job = t.job
    with store.engine.connect() as c:
        keys = select(job.c.job_key).where(job.c.start_ns < window.end_ns,
                                           (job.c.end_ns.is_(None))
                                           | (job.c.end_ns > window.start_ns))
        po = t.production_order
        result = c.execute(select(oc).join(po, (po.c.order_no == oc.c.order_no)
                                           & (po.c.operation == oc.c.operation))
                           .where(po.c.job_key.in_(keys)).order_by(oc.c.order_no,
                                                                   oc.c.operation))
        return list(result.keys()), [list(row) for row in result]


def _kpi_rows(store: ShadowStore, config: OmbreConfig,
              window: Window) -> tuple[list[str], list[list[Any]]]:
    header: list[str] = []
    rows: list[list[Any]] = []
    for machine in config.machines():
        for report in reports(store, config, window, [machine], "shift"):
            data = report.result.to_dict()
            if not header:
                header = ["shift", "machine", "start", "end",
                          *(f"{k}_min" for k in data["time_s"]),
                          "PQ", "GQ", "SQ", "RQ", *data["kpis"], "unclassified_share",
                          "coverage"]
            rows.append([report.label, machine.id, rfc3339(data["window"]["start_ns"]),
                         rfc3339(data["window"]["end_ns"]),
                         *(round(v / 60, 4) for v in data["time_s"].values()),
                         *(data["quantities"][k] for k in ("PQ", "GQ", "SQ", "RQ")),
                         *(k["value"] for k in data["kpis"].values()),
                         data["unclassified_share"]["value"], data["coverage"]["value"]])
    return header, rows


def cmd_export(args: argparse.Namespace) -> int:
    """Writes order confirmations or shift KPIs for the ERP as CSV."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    try:
        window = _window(args)
    except argparse.ArgumentTypeError as exc:
        print(f"ombre export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with store_of(config) as store:
        header, rows = (_confirmations(store, window) if args.what == "confirmations"
                        else _kpi_rows(store, config, window))
    out = args.out.open("w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    finally:
        if args.out:
            out.close()
    return EXIT_OK


def cmd_orders_complete(args: argparse.Namespace) -> int:
    """Completes an order (see shadow.completion)."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    key = job_key(args.order, args.operation)
    with store_of(config) as store:
        try:
            done = complete_order(store, config.machines(), key, args.by, time.time_ns())
        except (UnknownOrderError, CompletionRefusedError) as exc:
            print(f"ombre orders complete: {exc.args[0]}", file=sys.stderr)
            return EXIT_USAGE
        audit.record(store.engine, audit.cli_actor(), "job.complete", f"order {key}",
                     {"status": done.status, "job_commands": [c for _, c in done.commands]})
    for machine, command in done.commands:
        print(f"{key}: job command {command} completes it on {machine} (the running "
              "gateway applies it)")
    if not done.commands:
        print(f"{key}: {'' if done.changed else 'already '}{done.status}")
    return EXIT_OK


def cmd_downtime(args: argparse.Namespace) -> int:
    """Lists downtime intervals without a reason, or assigns a reason code to one."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    with store_of(config) as store:
        if args.action == "assign":
            if args.interval is None or args.code is None:
                print("ombre downtime assign: give an interval id and a reason code",
                      file=sys.stderr)
                return EXIT_USAGE
            try:
                done = store.assign_reason(args.interval, args.code)
            except SQLAlchemyError:
                print(f"ombre downtime assign: no reason code {args.code!r}; declare it under "
                      "shadow.reason_codes", file=sys.stderr)
                return EXIT_USAGE
            if not done:
                print(f"ombre downtime assign: no downtime interval {args.interval}",
                      file=sys.stderr)
                return EXIT_USAGE
            print(f"interval {args.interval}: reason {args.code}")
            return EXIT_OK
        rows = store.unexplained_downtime(None, None, args.limit)
    writer = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    writer.writerow(["id", "machine", "start", "end", "minutes", "state", "category",
                     "machine_reason"])
    for iid, machine, start, end, raw, category, why in rows:
        writer.writerow([iid, machine, rfc3339(start), rfc3339(end), f"{(end - start) / 6e10:.1f}",
                         raw, category or "unclassified", why or ""])
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    """Lists drift alerts, or acknowledges or closes one."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    with store_of(config) as store:
        if args.action == "list":
            rows = store.alerts(status=args.status, limit=args.limit,
                                machines=None if args.machine is None else [args.machine])
            writer = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
            writer.writerow(["id", "machine", "signal", "detector", "status", "direction",
                             "shift_sigma", "shift", "unit", "start", "detected", "end",
                             "acknowledged_by", "cause", "note"])
            for r in rows:
                writer.writerow([r.id, r.machine_id, r.signal, r.detector, r.status,
                                 r.direction, f"{r.shift_sigma:.2f}", f"{r.shift_value:.4g}",
                                 r.unit or "", rfc3339(r.start_ns), rfc3339(r.detected_ns),
                                 "" if r.end_ns is None else rfc3339(r.end_ns),
                                 r.acknowledged_by or "", r.cause or "", r.note or ""])
            return EXIT_OK
        if args.id is None or not args.by:
            print(f"ombre alerts {args.action}: give an alert id and --by NAME", file=sys.stderr)
            return EXIT_USAGE
        if args.action == "close" and args.cause not in config.shadow.alert_causes:
            print(f"ombre alerts close: --cause must be one of "
                  f"{', '.join(map(repr, config.shadow.alert_causes))}, found {args.cause!r}",
                  file=sys.stderr)
            return EXIT_USAGE
        done = (store.acknowledge_alert(args.id, args.by, time.time_ns())
                if args.action == "ack"
                else store.close_alert(args.id, args.by, args.cause, args.note, time.time_ns()))
    if not done:
        print(f"ombre alerts {args.action}: no alert {args.id} that is not closed",
              file=sys.stderr)
        return EXIT_USAGE
    print(f"alert {args.id}: {'acknowledged' if args.action == 'ack' else 'closed'}")
    return EXIT_OK


def with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("-c", "--config", type=Path, metavar="CONFIG",
                        help="the YAML config file (default: $OMBRE_CONFIG, else ombre.yaml)")
    return parser


def _with_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_", type=utc_time, metavar="TIME",
                        help="start, RFC 3339 (default: 24 hours before --to)")
    parser.add_argument("--to", type=utc_time, metavar="TIME",
                        help="end, exclusive (default: now)")


def add_shadow_commands(commands: Any) -> None:
    """Registers the shadow's subcommands on `ombre`'s subparsers."""
    add: Callable[..., argparse.ArgumentParser] = commands.add_parser
    replay = with_config(add("replay", help="feed a JSON Lines recording through the "
                                             "pipeline, then exit"))
    replay.add_argument("file", type=Path, metavar="FILE")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None, metavar="X",
                      help="run data time X times as fast as real time")
    pace.add_argument("--max", action="store_true", help="as fast as possible (the default)")
    replay.add_argument("--historical", action="store_true",
                        help="a backfill of past data: it feeds no drift detector")
    replay.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    replay.set_defaults(command=cmd_replay)

    kpi = with_config(add("kpi", help="print ISO 22400 KPIs"))
    scope = kpi.add_mutually_exclusive_group()
    scope.add_argument("--machine", help="one machine (default: the whole plant)")
    scope.add_argument("--line", help="every machine of a line")
    scope.add_argument("--site", help="every machine of a site")
    _with_range(kpi)
    kpi.add_argument("--by", choices=["window", "shift", "order", "day"], default="window",
                     help="one result for the range (default), or one per shift, order or day")
    kpi.add_argument("--json", action="store_true", help="print JSON with every input")
    kpi.set_defaults(command=cmd_kpi)

    orders = add("orders", help="production orders")
    orders_commands = orders.add_subparsers(metavar="ACTION", required=True)
    imp = with_config(orders_commands.add_parser(
        "import", help="create or update orders from a CSV file"))
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.set_defaults(command=cmd_orders_import)
    complete = with_config(orders_commands.add_parser(
        "complete", help="complete an order (its job on a machine without a job signal)"))
    complete.add_argument("order", metavar="ORDER", help="the order number")
    complete.add_argument("--operation", default="", help="the order's operation, if it has one")
    complete.add_argument("--by", default="cli", help="who completes it (default: cli)")
    complete.set_defaults(command=cmd_orders_complete)

    export = with_config(add("export", help="CSV for the ERP"))
    export.add_argument("what", choices=["confirmations", "kpis"])
    _with_range(export)
    export.add_argument("--out", type=Path, metavar="FILE", help="default: standard output")
    export.set_defaults(command=cmd_export)

    downtime = with_config(add("downtime", help="downtime intervals and their reasons"))
    downtime.add_argument("action", choices=["list", "assign"])
    downtime.add_argument("interval", type=int, nargs="?", help="interval id (assign)")
    downtime.add_argument("code", nargs="?", help="reason code (assign)")
    downtime.add_argument("--limit", type=int, default=100)
    downtime.set_defaults(command=cmd_downtime)

    alerts = with_config(add("alerts", help="drift alerts: list, acknowledge, close"))
    alerts.add_argument("action", choices=["list", "ack", "close"])
    alerts.add_argument("id", type=int, nargs="?", help="alert id (ack, close)")
    alerts.add_argument("--by", help="who acknowledges or closes it")
    alerts.add_argument("--cause", help="close: one of shadow.alert_causes")
    alerts.add_argument("--note", help="close: free text")
    alerts.add_argument("--status", choices=["open", "acknowledged", "closed"],
                        help="list: only alerts in this status")
    alerts.add_argument("--machine", help="list: only this machine's alerts")
    alerts.add_argument("--limit", type=int, default=100)
    alerts.set_defaults(command=cmd_alerts)
