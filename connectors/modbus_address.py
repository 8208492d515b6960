"""Modbus addresses as integrators write them, and how a value is decoded from what a
read returns. Pure: no I/O, no pymodbus.

The notation is `TABLE:ADDRESS[.BIT][:TYPE[:LENGTH]]`, the address zero-based as on
the wire:

    hr:100            holding register 100, uint16
    hr:100:float32    holding registers 100-101 as one float32
    hr:100.3          bit 3 (0 = least significant) of holding register 100, a bool
    ir:7:int32        input registers 7-8
    co:0, di:5        coil 0, discrete input 5 (bools)
    hr:20:string:10   10 characters in holding registers 20-24

Tables: `co` coils, `di` discrete inputs, `hr` holding registers, `ir` input registers.
The Modicon form of a device manual, one-based with the table as its first digit,
works too: 40001 is hr:0, 30001 ir:0, 10001 di:0, 00001 co:0 (six digits: 400001).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

Table = Literal["co", "di", "hr", "ir"]
DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                   "float32", "float64", "string"]
ByteOrder = Literal["big", "little"]

TABLES: tuple[Table, ...] = get_args(Table)
TYPES: tuple[DataType, ...] = get_args(DataType)
BIT_TABLES = ("co", "di")
# type -> (struct format, registers)
NUMBERS: dict[str, tuple[str, int]] = {
    "int16": ("h", 1), "uint16": ("H", 1), "int32": ("i", 2), "uint32": ("I", 2),
    "int64": ("q", 4), "uint64": ("Q", 4), "float32": ("f", 2), "float64": ("d", 4),
}
MAX_ADDRESS = 65535
MAX_STRING = 250  # characters: 125 registers, the most one read returns

_NOTATION = re.compile(r"(?:(?P<table>[a-z]+):)?(?P<address>\d+)(?:\.(?P<bit>\d+))?"
                       r"(?::(?P<type>[a-z0-9]+)(?::(?P<length>\d+))?)?")
_MODICON = {"0": "co", "1": "di", "3": "ir", "4": "hr"}
EXAMPLES = "'hr:100', 'hr:100:float32', 'hr:100.3', 'co:0', 'hr:20:string:10' or '40101'"


@dataclass(frozen=True, slots=True)
class Address:
    """One value's place in a device: `count` registers (or bits) from `start`."""

    table: Table
    start: int
    type: DataType
    bit: int | None = None  # a bool that is one bit of a register
    length: int = 0  # a string's characters

    @property
    def count(self) -> int:
        if self.table in BIT_TABLES or self.bit is not None:
            return 1
        if self.type == "string":
            return (self.length + 1) // 2
        return NUMBERS[self.type][1]

    def __str__(self) -> str:
        text = f"{self.table}:{self.start}"
        if self.bit is not None:
            return f"{text}.{self.bit}"
        if self.type == "string":
            return f"{text}:string:{self.length}"
        default = "bool" if self.table in BIT_TABLES else "uint16"
        return text if self.type == default else f"{text}:{self.type}"


def parse_address(text: str) -> Address:
    """The address `text` names; ValueError saying what was expected and found."""
    found = _NOTATION.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"expected an address such as {EXAMPLES}, found {text!r}")
    table, digits = found["table"], found["address"]
    start = int(digits)
    if table is None:
        if len(digits) not in (5, 6) or digits[0] not in _MODICON or start % 10 ** (
                len(digits) - 1) == 0:
            raise ValueError(f"expected a table prefix (co, di, hr, ir) or a Modicon "
                             f"address such as 40001, found {text!r}")
        table, start = _MODICON[digits[0]], start % 10 ** (len(digits) - 1) - 1
    if table not in TABLES:
        raise ValueError(f"expected a table co, di, hr or ir, found {table!r} in {text!r}")
    bit = int(found["bit"]) if found["bit"] is not None else None
    bits = table in BIT_TABLES
    kind = found["type"] or ("bool" if bits or bit is not None else "uint16")
    if kind not in TYPES:
        raise ValueError(f"expected a type ({', '.join(TYPES)}), found {kind!r} in {text!r}")
    if bits and (kind != "bool" or bit is not None):
        raise ValueError(f"expected a plain bool for a {table} address (coils and "
                         f"discrete inputs are single bits), found {text!r}")
    if bit is not None and (bit > 15 or kind != "bool"):
        raise ValueError(f"expected a bit 0-15 of a register, as a bool, found {text!r}")
    if not bits and bit is None and kind == "bool":
        raise ValueError(f"expected a bit of the register for a bool, such as "
                         f"'{table}:{start}.0', found {text!r}")
    length = int(found["length"]) if found["length"] is not None else 0
    if (kind == "string") != (found["length"] is not None):
        raise ValueError(f"expected a length with string only, such as "
                         f"'{table}:{start}:string:10', found {text!r}")
    if kind == "string" and not 1 <= length <= MAX_STRING:
        raise ValueError(f"expected a string length from 1 to {MAX_STRING}, found {text!r}")
    address = Address(table, start, kind, bit, length)
    if start + address.count - 1 > MAX_ADDRESS:
        raise ValueError(f"expected an address range within 0-{MAX_ADDRESS}, found {text!r}")
    return address


def decode(address: Address, data: Sequence[int] | Sequence[bool], offset: int,
           byte_order: ByteOrder, word_order: ByteOrder) -> float | str:
    """The value at `offset` in a read's registers or bits. Byte order is within each
    register, word order across registers: big/big is ABCD, little words CDAB, little
    bytes BADC. A string is NUL-terminated or space-padded; words keep their order."""
    if address.table in BIT_TABLES:
        return float(data[offset])
    if address.bit is not None:
        return float(int(data[offset]) >> address.bit & 1)
    words = [int(w) for w in data[offset:offset + address.count]]
    if address.type == "string":
        raw = b"".join(w.to_bytes(2, byte_order) for w in words)[:address.length]
        return raw.decode("latin-1").split("\x00", 1)[0].rstrip()
    if word_order == "little":
        words.reverse()
    fmt = NUMBERS[address.type][0]
    return float(struct.unpack(">" + fmt, b"".join(w.to_bytes(2, byte_order)
                                                   for w in words))[0])

