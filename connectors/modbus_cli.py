"""`ombre modbus read`: read a few addresses of a Modbus TCP device, to commission it
(find the unit id, the addresses, the byte and word order) before writing its items.
Registered by the modbus plug-in (connectors/modbus_plugin.py); pymodbus is imported
when the command runs, so `ombre` starts without the modbus extra."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from connectors.modbus_address import (
    BIT_TABLES,
    EXAMPLES,
    Address,
    ByteOrder,
    decode,
    parse_address,
)
from connectors.modbus_map import Read
from gateway.plugins import EXIT_OK, EXIT_USAGE, Commands


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or ":" in host:  # no port, or an IPv6 address without one
        return text, 502
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST or HOST:PORT such as "
                                         f"192.168.0.20:502, found {text!r}")
    return host, int(port)


def _address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _show(address: Address, value: float | str) -> str:
    if isinstance(value, str):
        return repr(value)
    if address.type == "bool":
        return "true" if value else "false"
    if address.type.startswith("float"):
        return f"{value:.7g}" if address.type == "float32" else repr(value)
    return str(int(value))


def _raw(address: Address, data: Any) -> str:
    if address.table in BIT_TABLES:
        return str(int(data[0]))
    return " ".join(f"{int(w):04x}" for w in data[:address.count])


async def _read_all(args: argparse.Namespace) -> int:
    # pymodbus is loaded only when a modbus command runs.
    from pymodbus.client import AsyncModbusTcpClient  # noqa: PLC0415
    from pymodbus.exceptions import ConnectionException, ModbusIOException  # noqa: PLC0415

    from connectors.modbus import exception_text, request, values_of  # noqa: PLC0415

    host, port = args.device
    client = AsyncModbusTcpClient(host, port=port, timeout=args.timeout_s,
                                  retries=args.retries, reconnect_delay=0)
    if not await client.connect():
        print(f"ombre modbus read: cannot connect to {host}:{port}", file=sys.stderr)
        return EXIT_USAGE
    failed = 0
    width = max(len(str(a)) for a in args.addresses)
    try:
        for address in args.addresses:
            read = Read(address.table, address.start, address.count, ())
            try:
                response = await request(client, read, args.unit)
            except (ModbusIOException, ConnectionException) as exc:
                print(f"ombre modbus read: no answer from {host}:{port} unit {args.unit} "
                      f"to {address}: {exc}", file=sys.stderr)
                return EXIT_USAGE
            data = None if response.isError() else values_of(read, response)
            if data is None:
                failed += 1
                reason = (exception_text(response.exception_code) if response.isError()
                          else "a short answer")
                print(f"{address!s:{width}}  {reason}")
                continue
            value = decode(address, data, 0, args.byte_order, args.word_order)
            print(f"{address!s:{width}}  {_raw(address, data):19}  {_show(address, value)}")
    finally:
        client.close()
    return EXIT_OK if not failed else EXIT_USAGE


def cmd_modbus_read(args: argparse.Namespace) -> int:
    """Prints one line per address: the address, the raw registers (hex) or bit, and
    the decoded value, or the exception the device answered. Exit 1 if any failed."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its own lines repeat ours
    return asyncio.run(_read_all(args))


def add_modbus_commands(commands: Commands) -> None:
    """Registers `modbus read`."""
    modbus = commands.add_parser("modbus", help="commission a Modbus TCP device")
    actions = modbus.add_subparsers(title="actions", metavar="ACTION", required=True)
    read = actions.add_parser(
        "read", help="read addresses of a device and print them decoded",
        description=f"Addresses: TABLE:ADDRESS[.BIT][:TYPE[:LENGTH]], e.g. {EXAMPLES}; "
                    "tables co, di, hr, ir; types bool, int16, uint16, int32, uint32, int64, "
                    "uint64, float32, float64, string (with a length). See "
                    "docs/connectors/modbus.md.")
    read.add_argument("device", type=_host_port, metavar="HOST[:PORT]",
                      help="the device (port 502 unless given)")
    read.add_argument("addresses", type=_address, nargs="+", metavar="ADDRESS",
                      help="e.g. hr:100:float32, ir:3, co:0, hr:7.2, 40101")
    read.add_argument("--unit", type=int, default=1, choices=range(256), metavar="N",
                      help="unit id (slave id), 0-255 (1)")
    byte_orders: list[ByteOrder] = ["big", "little"]
    read.add_argument("--byte-order", choices=byte_orders, default="big",
                      help="byte order within a register (big)")
    read.add_argument("--word-order", choices=byte_orders, default="big",
                      help="register order of a 32- or 64-bit value (big: high word first)")
    read.add_argument("--timeout-s", type=float, default=2.0, help="per request (2)")
    read.add_argument("--retries", type=int, default=1, help="after a timeout (1)")
    read.set_defaults(command=cmd_modbus_read)
