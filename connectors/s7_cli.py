"""`ombre s7 read HOST ADDRESS[:TYPE] ...`: reads addresses from a PLC once and prints
their values, to commission a PLC before writing its config. It reads them as the
source would: the same plan, the same requests, the CPU's mode first. Registered by
the s7 plug-in (connectors/s7_plugin.py); snap7 is imported when the command runs, so
`ombre` starts without the s7 extra."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

from pydantic import ValidationError

from connectors.s7_address import (
    EXAMPLES,
    Address,
    AddressError,
    describe_code,
    parse_address,
    plan_reads,
)
from connectors.s7_config import S7SourceConfig
from gateway.plugins import EXIT_OK, EXIT_USAGE, Commands

_TYPED = re.compile(r"(?P<address>[^:]+)(?::(?P<type>[A-Za-z]+)(?:\[(?P<length>\d+)\])?)?")


def _address(text: str) -> Address:
    """ADDRESS[:TYPE], a STRING as `DB5.DBB20:STRING[20]`."""
    match = _TYPED.fullmatch(text.strip())
    try:
        if match is None:
            raise AddressError("address", f"expected ADDRESS[:TYPE] such as DB10.DBD4:DINT or "
                               f"DB5.DBB20:STRING[20], found {text!r}")
        length = match["length"]
        return parse_address(match["address"], match["type"],
                             int(length) if length is not None else None)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config(args: argparse.Namespace) -> S7SourceConfig:
    """The connection settings as a source's, with the addresses as its items."""
    reach: dict[str, Any] = ({"remote_tsap": args.remote_tsap} if args.remote_tsap
                             else {"rack": args.rack, "slot": args.slot})
    return S7SourceConfig.model_validate({
        "type": "s7", "name": "cli", "host": args.host, "port": args.port,
        "local_tsap": args.local_tsap, "timeout_s": args.timeout_s, **reach,
        "items": [{"machine": "cli", "signal": f"a{i}", "address": a.text, "type": a.type.name,
                   "length": a.size - 2 if a.type.name == "STRING" else None}
                  for i, a in enumerate(args.addresses)]})


async def _read(cfg: S7SourceConfig, addresses: list[Address]) -> tuple[str, list[str], bool]:
    """A header line, a line per address, and whether every address could be read."""
    from connectors.s7_client import (  # noqa: PLC0415 - snap7 only when this command runs
        MODE_RUN,
        close_client,
        cpu_mode,
        open_client,
        read_plan,
    )

    client = await open_client(cfg)
    try:
        mode = await cpu_mode(client, cfg.timeout_s)
        pdu = client.get_pdu_length()
        plan = plan_reads(addresses, pdu, cfg.max_gap_bytes)
        read = await read_plan(client, plan, cfg.timeout_s)
    finally:
        await close_client(client)
    state = ("not reported" if mode is None else "RUN" if mode & 0x0F == MODE_RUN
             else f"STOP (mode 0x{mode:02X})")
    header = (f"PLC at {cfg.host}:{cfg.port}: CPU {state}, PDU {pdu} bytes, "
              f"{len(addresses)} addresses in {len(plan.requests)} request(s)")
    values: dict[int, str] = {}
    for s, span in enumerate(plan.spans):
        for i in span.items:
            a = addresses[i]
            values[i] = (f"error: {describe_code(read.failed[s])}" if s in read.failed
                         else _show(a.decode(read.buffers[s], a.start - span.start)))
    width = max(len(a.text) for a in addresses)
    lines = [f"{a.text:<{width}}  {a.type.name:<6}  {values[i]}" for i, a in enumerate(addresses)]
    return header, lines, not read.failed


def _show(value: float | str) -> str:
    """A whole number without its `.0` (what an integer type holds), else its repr."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def cmd_s7_read(args: argparse.Namespace) -> int:
    """Prints the CPU's mode and each address's value (numbers before any scale)."""
    try:
        cfg = _config(args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"ombre s7 read: {problems}", file=sys.stderr)
        return EXIT_USAGE
    from snap7.error import S7Error  # noqa: PLC0415 - snap7 only when this command runs

    from connectors.s7_client import describe  # noqa: PLC0415

    try:
        header, lines, complete = asyncio.run(_read(cfg, args.addresses))
    except (S7Error, OSError, TimeoutError, ValueError) as exc:
        print(f"ombre s7 read: cannot read from the PLC at {cfg.host}:{cfg.port}: "
              f"{describe(exc, cfg.timeout_s)}", file=sys.stderr)
        return EXIT_USAGE
    print(header)
    print("\n".join(lines))
    return EXIT_OK if complete else EXIT_USAGE


def add_s7_commands(commands: Commands) -> None:
    """Registers `s7 read`."""
    s7 = commands.add_parser("s7", help="Siemens S7 PLCs: read addresses to commission one")
    actions = s7.add_subparsers(title="s7 commands", metavar="COMMAND", required=True)
    read = actions.add_parser("read", help="read addresses once and print their values")
    read.add_argument("host", help="the PLC's IP address or name")
    read.add_argument("addresses", nargs="+", type=_address, metavar="ADDRESS[:TYPE]",
                      help=f"e.g. {EXAMPLES}; a type after a colon (DB10.DBD4:DINT), a "
                           "string with its declared length (DB5.DBB20:STRING[20])")
    read.add_argument("--port", type=int, default=102, help="ISO-on-TCP port (102)")
    read.add_argument("--rack", type=int, default=0, help="the CPU's rack (0)")
    read.add_argument("--slot", type=int, default=1,
                      help="the CPU's slot (1: S7-1200/1500; an S7-300 is in slot 2)")
    read.add_argument("--remote-tsap", help="reach the PLC by TSAP instead, e.g. 03.01")
    read.add_argument("--local-tsap", default="01.00", help="our TSAP (01.00)")
    read.add_argument("--timeout-s", type=float, default=5, help="per request (5)")
    read.set_defaults(command=cmd_s7_read)
