"""S7 addresses and the read plan, without a PLC: the notation, its errors, and how
addresses are grouped into ranges and requests for a PDU size."""

from __future__ import annotations

import struct

import pytest

from connectors.s7_address import (
    AREA_DB,
    AREA_I,
    AREA_M,
    AREA_Q,
    ITEM_HEADER,
    ITEM_SPEC,
    MAX_ITEMS,
    REQUEST_HEADER,
    AddressError,
    Plan,
    parse_address,
    plan_reads,
    split_items,
)


@pytest.mark.parametrize(("text", "type_name", "length", "expected"), [
    ("DB10.DBD4", None, None, ("DB10.DBD4", AREA_DB, 10, 4, 0, "REAL", 4)),
    ("db10.dbw2", None, None, ("DB10.DBW2", AREA_DB, 10, 2, 0, "INT", 2)),
    ("DB10.DBX0.1", None, None, ("DB10.DBX0.1", AREA_DB, 10, 0, 1, "BOOL", 1)),
    ("DB10.DBB5", None, None, ("DB10.DBB5", AREA_DB, 10, 5, 0, "BYTE", 1)),
    ("DB10.DBD4", "dint", None, ("DB10.DBD4", AREA_DB, 10, 4, 0, "DINT", 4)),
    ("DB1.DBB8", "LREAL", None, ("DB1.DBB8", AREA_DB, 1, 8, 0, "LREAL", 8)),
    ("DB5.DBB20", "STRING", 20, ("DB5.DBB20", AREA_DB, 5, 20, 0, "STRING", 22)),
    ("MW100", None, None, ("MW100", AREA_M, 0, 100, 0, "INT", 2)),
    ("MD4", None, None, ("MD4", AREA_M, 0, 4, 0, "REAL", 4)),
    ("M10.5", None, None, ("M10.5", AREA_M, 0, 10, 5, "BOOL", 1)),
    ("I0.0", None, None, ("I0.0", AREA_I, 0, 0, 0, "BOOL", 1)),
    ("Q0.1", None, None, ("Q0.1", AREA_Q, 0, 0, 1, "BOOL", 1)),
    ("E1.7", None, None, ("I1.7", AREA_I, 0, 1, 7, "BOOL", 1)),  # German mnemonics
    ("AW4", "UINT", None, ("QW4", AREA_Q, 0, 4, 0, "UINT", 2)),
])
def test_addresses_in_the_integrators_notation(
        text: str, type_name: str | None, length: int | None,
        expected: tuple[str, int, int, int, int, str, int]) -> None:
    a = parse_address(text, type_name, length)
    assert (a.text, a.area, a.db, a.start, a.bit, a.type.name, a.size) == expected


@pytest.mark.parametrize(("text", "type_name", "length", "key", "message"), [
    ("DB10.DBQ4", None, None, "address", "expected an S7 address such as DB10.DBD4"),
    ("DB0.DBW2", None, None, "address", "DB number from 1 to 65535"),
    ("M10", None, None, "address", "expected a bit number"),
    ("MW10.1", None, None, "address", "expected a bit number"),
    ("DB1.DBX0.8", None, None, "address", "bit number from 0 to 7"),
    ("DB10.DBD4", "INT", None, "type", "(DWORD, DINT, UDINT, REAL), found INT"),
    ("DB10.DBD4", "FLOAT", None, "type", "expected a type among BOOL"),
    ("DB1.DBW0", "STRING", 4, "type", "(WORD, INT, UINT), found STRING"),
    ("DB1.DBB0", "STRING", None, "length", "expected a length"),
    ("DB1.DBW0", None, 4, "length", "expected a length"),
    ("DB1.DBB0", "STRING", 255, "length", "from 1 to 254"),
])
def test_bad_addresses_name_the_setting_at_fault(
        text: str, type_name: str | None, length: int | None, key: str, message: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(text, type_name, length)
    assert caught.value.key == key
    assert message in str(caught.value)


def test_values_are_big_endian_and_strings_take_their_actual_length() -> None:
    data = bytearray(32)
    struct.pack_into(">f", data, 4, 21.5)
    struct.pack_into(">h", data, 8, -2)
    data[10] = 0b1000_0000
    data[12:18] = bytes([4, 3]) + b"ABCD"  # STRING[4] holding "ABC" (and a stale D)
    assert parse_address("DB1.DBD4").decode(data, 4) == 21.5
    assert parse_address("DB1.DBW8").decode(data, 8) == -2.0
    assert parse_address("DB1.DBW8", "WORD").decode(data, 8) == 65534.0
    assert parse_address("DB1.DBX10.7").decode(data, 10) == 1.0
    assert parse_address("DB1.DBX10.6").decode(data, 10) == 0.0
    assert parse_address("DB1.DBB12", "STRING", 4).decode(data, 12) == "ABC"
    data[13] = 200  # an actual length beyond the declared one is cut to it
    assert parse_address("DB1.DBB12", "STRING", 4).decode(data, 12) == "ABCD"


def _fits(plan: Plan, pdu: int) -> None:
    """Every request and its response fit the PDU; no request has too many items."""
    for request in plan.requests:
        assert len(request) <= MAX_ITEMS
        assert REQUEST_HEADER + ITEM_SPEC * len(request) <= pdu
        assert REQUEST_HEADER + sum(ITEM_HEADER + c.size + c.size % 2 for c in request) <= pdu


def test_neighbours_share_a_range_and_gaps_beyond_max_gap_split_it() -> None:
    addresses = [parse_address(t) for t in
                 ("DB10.DBD4", "DB10.DBW0", "DB10.DBX8.0", "DB10.DBD30", "DB11.DBW0", "MW4")]
    plan = plan_reads(addresses, 480, max_gap=4)
    assert [(s.area, s.db, s.start, s.size) for s in plan.spans] == [
        (AREA_M, 0, 4, 2), (AREA_DB, 10, 0, 9), (AREA_DB, 10, 30, 4), (AREA_DB, 11, 0, 2)]
    assert [sorted(s.items) for s in plan.spans] == [[5], [0, 1, 2], [3], [4]]
    assert len(plan.requests) == 1
    assert len(plan_reads(addresses, 480, max_gap=30).spans) == 3  # DB10 in one range
    _fits(plan, 480)


def test_twenty_items_per_request_and_fewer_when_the_pdu_is_small() -> None:
    addresses = [parse_address(f"DB10.DBW{i * 100}") for i in range(45)]  # 45 ranges
    plan = plan_reads(addresses, 960, max_gap=16)
    assert [len(r) for r in plan.requests] == [20, 20, 5]
    small = plan_reads(addresses, 240, max_gap=16)  # 18 specs fit a 240-byte request
    assert [len(r) for r in small.requests] == [18, 18, 9]
    _fits(plan, 960)
    _fits(small, 240)


def test_a_range_longer_than_a_response_is_cut_into_chunks() -> None:
    addresses = [parse_address("DB20.DBD0"), parse_address("DB20.DBD1000"),
                 parse_address("DB20.DBB300", "STRING", 254)]
    plan = plan_reads(addresses, 240, max_gap=1000)
    assert [(s.start, s.size) for s in plan.spans] == [(0, 1004)]
    chunks = [c for r in plan.requests for c in r]
    assert sorted((c.offset, c.size) for c in chunks) == [
        (0, 222), (222, 222), (444, 222), (666, 222), (888, 116)]
    assert len(plan.requests) == 5  # each chunk fills a response
    _fits(plan, 240)


def test_response_items_with_fill_bytes_and_errors() -> None:
    data = (bytes([0xFF, 0x04, 0, 24]) + b"abc" + b"\x00"  # 3 bytes, then a fill byte
            + bytes([0x0A, 0x00, 0, 0])  # no such DB
            + bytes([0xFF, 0x09, 0, 2]) + b"xy")  # octet string: length in bytes
    assert split_items(data, 3) == [(0xFF, b"abc"), (0x0A, b""), (0xFF, b"xy")]
    with pytest.raises(ValueError, match="ends before item 4 of 4"):
        split_items(data, 4)
    with pytest.raises(ValueError, match="ends within item 1"):
        split_items(bytes([0xFF, 0x04, 0, 80]) + b"ab", 1)
