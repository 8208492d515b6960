"""The OPC UA `ombre` commands: `trust`, which trusts the server certificate a source
last rejected, and `browse`, which shows a server's address space or writes config
for it. Registered by the opcua plug-in (connectors/opcua_config.py); asyncua is
imported when a command runs, so `ombre` starts without the opcua extra."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from connectors.opcua_config import OpcUaSourceConfig
from connectors.opcua_paths import PathPattern
from gateway.plugins import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, Commands, Load

if TYPE_CHECKING:
    from connectors.opcua_browse import Tree


def cmd_trust(args: argparse.Namespace) -> int:
    """Moves <data_dir>/pki/rejected/<source>.der into <data_dir>/pki/trusted/ and
    prints what was trusted; a running gateway uses it at its next reconnect."""
    from connectors.opcua_security import Pki, describe, load_certificate, trust_rejected  # noqa: PLC0415

    context = args.load(args.config)
    if context is None:
        return EXIT_CONFIG
    config = context.plant
    names = [s.name for s in config.sources if isinstance(s, OpcUaSourceConfig)]
    if args.source not in names:
        print(f"ombre trust: expected the name of an opcua source ({', '.join(names) or 'none'}"
              f"), found {args.source!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        trusted = trust_rejected(Pki.of(config.data_dir), args.source)
    except FileNotFoundError as exc:
        print(f"ombre trust: {exc}", file=sys.stderr)
        return EXIT_USAGE
    certificate = describe(load_certificate(trusted))
    if context.audit is not None:
        context.audit(None, "trust.add", f"OPC UA source {args.source}",
                      {"certificate": certificate, "file": str(trusted)})
    print(f"trusted {certificate} for source {args.source}: {trusted}")
    return EXIT_OK


async def _browse(args: argparse.Namespace, source: OpcUaSourceConfig | None,
                  data_dir: Path) -> Tree:
    from connectors.opcua_browse import Browser  # noqa: PLC0415
    from connectors.opcua_security import new_client, secure  # noqa: PLC0415

    client = new_client(args.endpoint, args.timeout_s)
    if source is not None:
        await secure(client, source, data_dir)
    async with client:
        return await Browser(client, args.concurrency, args.max_nodes).tree(args.depth)


def cmd_browse(args: argparse.Namespace) -> int:
    """Prints the address space below the Objects folder as a tree, or with
    --emit-config the matching variables as a config fragment (YAML)."""
    from asyncua.ua.uaerrors import UaError  # noqa: PLC0415

    from connectors.opcua_browse import config_fragment, render  # noqa: PLC0415

    source, data_dir = None, Path("data")
    if args.config is not None:
        context = args.load(args.config)
        if context is None:
            return EXIT_CONFIG
        config = context.plant
        sources = {s.name: s for s in config.sources if isinstance(s, OpcUaSourceConfig)}
        source, data_dir = sources.get(args.source or ""), config.data_dir
        if source is None:
            print(f"ombre browse: expected --source naming an opcua source "
                  f"({', '.join(sources) or 'none'}), found {args.source!r}", file=sys.stderr)
            return EXIT_USAGE
    try:
        pattern = PathPattern.parse(args.filter) if args.filter is not None else None
    except ValueError as exc:
        print(f"ombre browse: --filter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        tree = asyncio.run(_browse(args, source, data_dir))
    except (OSError, TimeoutError, UaError) as exc:
        hint = "" if source is not None else (
            " (a server that needs security or a user: add --config and --source)")
        print(f"ombre browse: cannot browse {args.endpoint}: {type(exc).__name__} {exc}{hint}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.emit_config:
        fragment = config_fragment(tree.root, pattern)
        print("# machines: paste under a line's `machines:`; nodes: under the opcua "
              "source's `nodes:`")
        print(yaml.safe_dump(fragment, sort_keys=False), end="")
    else:
        for line in render(tree.root, pattern):
            print(line)
    if tree.truncated:
        print(f"ombre browse: stopped after {args.max_nodes} nodes (--max-nodes)",
              file=sys.stderr)
    return EXIT_OK


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, found {text!r}")
    return value


def add_opcua_commands(commands: Commands, load: Load) -> None:
    """Registers `trust` and `browse`; they read their config through `load`, and
    `trust` records the certificate it added in the audit log, as done by the person
    at the console."""
    trust = commands.add_parser("trust", help="trust the OPC UA server certificate a source "
                                "rejected (see <data_dir>/pki/rejected)")
    trust.add_argument("config", type=Path, metavar="CONFIG", help="the YAML config file")
    trust.add_argument("source", help="the opcua source's name")
    trust.set_defaults(command=cmd_trust, load=load)

    browse = commands.add_parser("browse", help="show an OPC UA server's address space, "
                                 "or with --emit-config a config fragment for it")
    browse.add_argument("endpoint", help="e.g. opc.tcp://192.168.0.10:4840")
    browse.add_argument("--depth", type=_positive, default=10, help="levels below Objects (10)")
    browse.add_argument("--filter", metavar="PATTERN", help="only paths matching this, e.g. "
                        "'Objects/Machines/{machine}/Counters/{signal}' ('*' within a level, "
                        "'**' any levels; {machine} and {signal} name them in --emit-config)")
    browse.add_argument("--emit-config", action="store_true",
                        help="print the matching variables as machines and nodes (YAML)")
    browse.add_argument("--config", type=Path, help="take security and identity from "
                        "this config file's --source")
    browse.add_argument("--source", help="the opcua source whose security to use")
    browse.add_argument("--concurrency", type=_positive, default=4, help="requests in flight (4)")
    browse.add_argument("--max-nodes", type=_positive, default=200_000,
                        help="stop after this many nodes (200000)")
    browse.add_argument("--timeout-s", type=float, default=10, help="per request (10)")
    browse.set_defaults(command=cmd_browse, load=load)
