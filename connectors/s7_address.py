"""S7 addresses in the notation integrators write (`DB10.DBD4`, `MW100`, `I0.0`), the
types read at them, and the read plan that groups them into as few requests as the
PLC's PDU size allows.

No I/O and no snap7: the config validates addresses with `parse_address`, and the
source reads the plan's requests. S7 data is big-endian. A DB (or M, I, Q) is read
in byte ranges: neighbouring addresses in one area, no more than `max_gap` unread
bytes apart, share one range (a span); a span longer than a response can carry is
cut into chunks; chunks are packed into multi-variable read requests (at most
MAX_ITEMS each, and request and response within the negotiated PDU size).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

# S7 area codes (snap7's S7Area); E and A are the German mnemonics for I and Q.
AREA_DB, AREA_I, AREA_Q, AREA_M = 0x84, 0x81, 0x82, 0x83
_AREAS = {"I": AREA_I, "E": AREA_I, "Q": AREA_Q, "A": AREA_Q, "M": AREA_M}
_AREA_NAMES = {AREA_DB: "DB", AREA_I: "I", AREA_Q: "Q", AREA_M: "M"}

MAX_ITEMS = 20  # variables per multi-read request (snap7's MaxVars, the S7-300 limit)
REQUEST_HEADER = 14  # a response's S7 header (12) with its function and item count (2)
ITEM_SPEC = 12  # one variable's address in a request
ITEM_HEADER = 4  # return code, transport size, length: before each item's data in a response
MAX_BYTE = 2**21 - 1  # the request carries a bit address in 3 bytes
STRING_MAX = 254


@dataclass(frozen=True, slots=True)
class S7Type:
    """A PLC data type: its size in bytes and its big-endian struct format (none for
    BOOL, read as one bit, and STRING, a max-length and a length byte, then text)."""

    name: str
    size: int
    fmt: str | None


TYPES = {t.name: t for t in (
    S7Type("BOOL", 1, None),
    S7Type("BYTE", 1, ">B"), S7Type("SINT", 1, ">b"), S7Type("USINT", 1, ">B"),
    S7Type("WORD", 2, ">H"), S7Type("INT", 2, ">h"), S7Type("UINT", 2, ">H"),
    S7Type("DWORD", 4, ">I"), S7Type("DINT", 4, ">i"), S7Type("UDINT", 4, ">I"),
    S7Type("REAL", 4, ">f"),
    S7Type("LWORD", 8, ">Q"), S7Type("LINT", 8, ">q"), S7Type("ULINT", 8, ">Q"),
    S7Type("LREAL", 8, ">d"),
    S7Type("STRING", 2, None),
)}
# The type an address's width letter implies when none is given, and the sizes a
# given type may have there: B (byte) also starts a STRING and the 8-byte types,
# which have no letter of their own.
_DEFAULT = {"X": "BOOL", "B": "BYTE", "W": "INT", "D": "REAL"}
_SIZES = {"X": (), "B": (1, 8), "W": (2,), "D": (4,)}

_DB = re.compile(r"DB(\d{1,5})\.DB([XBWD])(\d+)(?:\.(\d+))?", re.IGNORECASE)
_OTHER = re.compile(r"([IEQAM])([BWD]?)(\d+)(?:\.(\d+))?", re.IGNORECASE)
EXAMPLES = "DB10.DBD4, DB10.DBX0.1, MW100, I0.0 or Q0.1"

Value = float | str


class AddressError(ValueError):
    """A bad address; `key` names the setting at fault: address, type or length."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Address:
    """One variable in the PLC: where it is, what type it has, how many bytes it takes."""

    text: str  # canonical and upper case, e.g. DB10.DBD4
    area: int
    db: int  # 0 outside data blocks
    start: int  # byte offset
    bit: int  # 0-7 for a BOOL
    type: S7Type
    size: int  # bytes read: the type's size, or 2 + the length for a STRING

    def decode(self, data: bytes | bytearray, offset: int) -> Value:
        """The value at `offset` in `data`, which holds this address's bytes there."""
        if self.type.fmt is not None:
            return float(struct.unpack_from(self.type.fmt, data, offset)[0])
        if self.type.name == "BOOL":
            return float(data[offset] >> self.bit & 1)
        length = min(data[offset + 1], self.size - 2)  # the actual length, within the max
        return bytes(data[offset + 2:offset + 2 + length]).decode("latin-1")


def parse_address(text: str, type_name: str | None = None, length: int | None = None
                  ) -> Address:
    """`text` (e.g. `DB10.DBD4`, `MW100`, `I0.0`) read as `type_name` (by default the
    one its width implies: X BOOL, B BYTE, W INT, D REAL); a STRING needs its declared
    `length`. AddressError saying what is wrong, and in which setting."""
    db_match, other = _DB.fullmatch(text.strip()), _OTHER.fullmatch(text.strip())
    if db_match is not None:
        area, db, width, start, bit = (AREA_DB, int(db_match[1]), db_match[2].upper(),
                                       int(db_match[3]), db_match[4])
        if not 1 <= db <= 65535:
            raise AddressError("address", f"expected a DB number from 1 to 65535, "
                               f"found {text!r}")
    elif other is not None:
        area, db, width, start, bit = (_AREAS[other[1].upper()], 0, other[2].upper() or "X",
                                       int(other[3]), other[4])
    else:
        raise AddressError("address", f"expected an S7 address such as {EXAMPLES}, "
                           f"found {text!r}")
    if (bit is None) == (width == "X"):
        raise AddressError("address", "expected a bit number (.0 to .7) on a bit address "
                           f"and only there, as in DB10.DBX0.1 or M10.5, found {text!r}")
    if bit is not None and int(bit) > 7:
        raise AddressError("address", f"expected a bit number from 0 to 7, found {text!r}")
    if start > MAX_BYTE:
        raise AddressError("address", f"expected a byte offset up to {MAX_BYTE}, "
                           f"found {text!r}")
    name = (type_name or _DEFAULT[width]).upper()
    s7_type = TYPES.get(name)
    if s7_type is None:
        raise AddressError("type", f"expected a type among {', '.join(TYPES)}, "
                           f"found {type_name!r}")
    if width == "X" or name in ("BOOL", "STRING"):
        fits = (width, name) in (("X", "BOOL"), ("B", "STRING"))
    else:
        fits = s7_type.size in _SIZES[width]
    if not fits:
        raise AddressError("type" if type_name else "address", f"expected a type that "
                           f"fits {text!r} ({_fits(width)}), found {name}")
    if (name == "STRING") != (length is not None):
        raise AddressError("length", "expected a length "
                           "(the n of STRING[n]) with type STRING and only there, found "
                           f"{'none' if length is None else length}")
    if length is not None and not 1 <= length <= STRING_MAX:
        raise AddressError("length", f"expected a STRING length from 1 to {STRING_MAX}, "
                           f"found {length}")
    canonical = (f"DB{db}.DB{width}{start}" if area == AREA_DB
                 else f"{_AREA_NAMES[area]}{'' if width == 'X' else width}{start}")
    if bit is not None:
        canonical += f".{bit}"
    size = s7_type.size + (length or 0)
    return Address(canonical, area, db, start, int(bit or 0), s7_type, size)


def _fits(width: str) -> str:
    if width == "X":
        return "BOOL"
    if width == "B":
        return "a 1-byte type, STRING or an 8-byte type"
    return ", ".join(t.name for t in TYPES.values() if t.size in _SIZES[width] and t.fmt)


# -- the read plan --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """Contiguous bytes of one area read together, and the addresses (by index) in them."""

    area: int
    db: int
    start: int
    size: int
    items: tuple[int, ...]

    def describe(self) -> str:
        area = f"DB{self.db}" if self.area == AREA_DB else _AREA_NAMES[self.area]
        return f"{area} bytes {self.start}-{self.start + self.size - 1}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A part of a span that one request item reads."""

    span: int
    offset: int  # within the span
    size: int


@dataclass(frozen=True, slots=True)
class Plan:
    spans: tuple[Span, ...]
    requests: tuple[tuple[Chunk, ...], ...]


def plan_reads(addresses: Sequence[Address], pdu_size: int, max_gap: int) -> Plan:
    """The spans that cover `addresses` and the requests that read them with PDUs of
    `pdu_size` bytes: neighbours with at most `max_gap` bytes between them share a span;
    chunks are packed first-fit, in address order."""
    order = sorted(range(len(addresses)),
                   key=lambda i: (addresses[i].area, addresses[i].db, addresses[i].start))
    groups: list[tuple[int, int, int, int, list[int]]] = []  # area, db, start, end, items
    for i in order:
        a = addresses[i]
        last = groups[-1] if groups else None
        if last is not None and (last[0], last[1]) == (a.area, a.db) and \
                a.start <= last[3] + max_gap:
            groups[-1] = (*last[:3], max(last[3], a.start + a.size), [*last[4], i])
        else:
            groups.append((a.area, a.db, a.start, a.start + a.size, [i]))
    spans = tuple(Span(area, db, start, end - start, tuple(items))
                  for area, db, start, end, items in groups)
    max_chunk = (pdu_size - REQUEST_HEADER - ITEM_HEADER) & ~1  # even: no fill byte
    if max_chunk < 2:
        raise ValueError(f"a PDU of {pdu_size} bytes cannot carry a read")
    chunks = [Chunk(s, offset, min(max_chunk, span.size - offset))
              for s, span in enumerate(spans) for offset in range(0, span.size, max_chunk)]
    requests: list[list[Chunk]] = []
    used: list[int] = []  # response bytes of each request
    for chunk in chunks:
        cost = ITEM_HEADER + chunk.size + (chunk.size & 1)  # with its fill byte, if any
        for r, request in enumerate(requests):
            if len(request) < max_items(pdu_size) and used[r] + cost <= pdu_size:
                request.append(chunk)
                used[r] += cost
                break
        else:
            requests.append([chunk])
            used.append(REQUEST_HEADER + cost)
    return Plan(spans, tuple(tuple(r) for r in requests))


def max_items(pdu_size: int) -> int:
    """Variables per request: MAX_ITEMS, or fewer when their specs overflow the PDU."""
    return min(MAX_ITEMS, (pdu_size - REQUEST_HEADER) // ITEM_SPEC)


def split_items(data: bytes, count: int) -> list[tuple[int, bytes]]:
    """The (return code, bytes) of each of the `count` items in a read response's data
    section; 0xFF is success. ValueError when the section is cut short."""
    items, offset = [], 0
    for i in range(count):
        if offset + ITEM_HEADER > len(data):
            raise ValueError(f"the response ends before item {i + 1} of {count}")
        code, transport, length = struct.unpack_from(">BBH", data, offset)
        offset += ITEM_HEADER
        size = length if transport in (0x03, 0x07, 0x09) else length // 8  # bits, else bytes
        if offset + size > len(data):
            raise ValueError(f"the response ends within item {i + 1} of {count}")
        items.append((code, data[offset:offset + size]))
        offset += size + (size & 1)  # items after an odd one start at an even offset
    return items


# What an item's return code means, and what the integrator can do about it.
RETURN_CODES = {
    0x01: "hardware fault",
    0x03: "access denied: on an S7-1200/1500, allow PUT/GET communication and turn off "
          "optimized block access for this DB",
    0x05: "address out of range: beyond the end of the DB or area",
    0x06: "data type not supported",
    0x07: "data type inconsistent",
    0x0A: "object does not exist: no such DB in the PLC",
}


def describe_code(code: int) -> str:
    return f"{RETURN_CODES.get(code, 'error')} (return code 0x{code:02X})"
