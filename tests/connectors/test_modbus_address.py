"""The Modbus address notation, and the register map grouped into reads. Pure."""

from __future__ import annotations

import pytest

from connectors.modbus_address import Address, parse_address
from connectors.modbus_config import ModbusSourceConfig
from connectors.modbus_map import Read, plan_ticks, resolve_items
from gateway.config import Plant


@pytest.mark.parametrize(("text", "expected", "canonical"), [
    ("hr:100", Address("hr", 100, "uint16"), "hr:100"),
    ("HR:100:Float32", Address("hr", 100, "float32"), "hr:100:float32"),
    ("ir:7:int64", Address("ir", 7, "int64"), "ir:7:int64"),
    ("hr:3.15", Address("hr", 3, "bool", bit=15), "hr:3.15"),
    ("hr:3.0:bool", Address("hr", 3, "bool", bit=0), "hr:3.0"),
    ("co:0", Address("co", 0, "bool"), "co:0"),
    ("di:5:bool", Address("di", 5, "bool"), "di:5"),
    ("hr:20:string:9", Address("hr", 20, "string", length=9), "hr:20:string:9"),
    ("40001", Address("hr", 0, "uint16"), "hr:0"),
    ("40101:float32", Address("hr", 100, "float32"), "hr:100:float32"),
    ("30001", Address("ir", 0, "uint16"), "ir:0"),
    ("10006", Address("di", 5, "bool"), "di:5"),
    ("00001", Address("co", 0, "bool"), "co:0"),
    ("465536", Address("hr", 65535, "uint16"), "hr:65535"),
    ("40010.2", Address("hr", 9, "bool", bit=2), "hr:9.2"),
])
def test_notation(text: str, expected: Address, canonical: str) -> None:
    address = parse_address(text)
    assert address == expected
    assert str(address) == canonical
    assert parse_address(canonical) == expected


def test_register_counts() -> None:
    counts = {"hr:0": 1, "hr:0:int32": 2, "hr:0:float64": 4, "hr:0:uint64": 4, "hr:0.3": 1,
              "co:9": 1, "hr:0:string:9": 5, "hr:0:string:10": 5}
    assert {text: parse_address(text).count for text in counts} == counts


@pytest.mark.parametrize(("text", "message"), [
    ("holding:1", "expected a table co, di, hr or ir, found 'holding'"),
    ("hr:1:float33", "expected a type (bool, int16, uint16, int32"),
    ("co:1:uint16", "expected a plain bool for a co address"),
    ("di:1.2", "expected a plain bool for a di address"),
    ("hr:1.16", "expected a bit 0-15 of a register"),
    ("hr:1.2:int16", "expected a bit 0-15 of a register, as a bool"),
    ("hr:1:bool", "expected a bit of the register for a bool, such as 'hr:1.0'"),
    ("hr:1:string", "expected a length with string only"),
    ("hr:1:uint16:4", "expected a length with string only"),
    ("hr:1:string:251", "expected a string length from 1 to 250"),
    ("hr:65535:float32", "expected an address range within 0-65535"),
    ("100", "expected a table prefix (co, di, hr, ir) or a Modicon address"),
    ("20001", "expected a table prefix"),
    ("40000", "expected a table prefix"),
    ("hr:-1", "expected an address such as"),
    ("", "expected an address such as"),
])
def test_bad_addresses_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_address(text)


def _plan(items: list[str], **settings: object) -> list[list[str]]:
    """Each tick's reads, for items given as addresses (optionally 'address@ms')."""
    plant = Plant.model_validate({"sites": [{"id": "s", "lines": [{"id": "l", "machines": [
        {"id": "m", "signals": [{"name": f"s{i}"} for i in range(len(items))]}]}]}]})
    config = ModbusSourceConfig.model_validate({
        "type": "modbus", "name": "d", "host": "h", **settings, "items": [
            {"machine": "m", "signal": f"s{i}", "address": text.split("@")[0],
             **({"poll_interval_ms": float(text.split("@")[1])} if "@" in text else {})}
            for i, text in enumerate(items)]})
    ticks = plan_ticks(resolve_items(config, plant, plant.registry()), config)
    return [[str(read) for read in tick.reads] for tick in ticks]


MAP = ["hr:0", "hr:1:int16", "hr:2:float32", "hr:4.0", "hr:10", "ir:5", "ir:6:uint32",
       "co:0", "co:1", "co:7", "di:3", "hr:2"]


def test_neighbours_share_a_read_within_the_limits() -> None:
    assert _plan(MAP) == [["co:0-1", "co:7", "di:3", "hr:0-4", "hr:10", "ir:5-7"]]
    assert _plan(MAP, max_gap=5) == [["co:0-7", "di:3", "hr:0-10", "ir:5-7"]]
    assert _plan(MAP, max_gap=4) == [["co:0-1", "co:7", "di:3", "hr:0-4", "hr:10", "ir:5-7"]]
    assert _plan(MAP, max_registers_per_read=3) == [
        ["co:0-1", "co:7", "di:3", "hr:0-1", "hr:2-4", "hr:10", "ir:5-7"]]
    assert _plan(MAP, max_bits_per_read=1, max_gap=10) == [
        ["co:0", "co:1", "co:7", "di:3", "hr:0-10", "ir:5-7"]]


def test_each_poll_interval_has_its_own_reads() -> None:
    assert _plan(["hr:0", "hr:1@200", "hr:2", "hr:3@200", "co:0@5000"]) == [
        ["hr:1", "hr:3"], ["hr:0", "hr:2"], ["co:0"]]
    assert _plan(["hr:0", "hr:1@200", "hr:2", "hr:3@200"], max_gap=1) == [
        ["hr:1-3"], ["hr:0-2"]]


def test_a_refused_read_splits_into_its_items() -> None:
    plant = Plant.model_validate({"sites": [{"id": "s", "lines": [{"id": "l", "machines": [
        {"id": "m", "signals": [{"name": "a"}, {"name": "b"}]}]}]}]})
    config = ModbusSourceConfig.model_validate({"type": "modbus", "name": "d", "host": "h",
        "items": [{"machine": "m", "signal": "a", "address": "hr:0:float32"},
                  {"machine": "m", "signal": "b", "address": "hr:2"}]})
    [tick] = plan_ticks(resolve_items(config, plant, plant.registry()), config)
    [read] = tick.reads
    assert [str(r) for r in read.split()] == ["hr:0-1", "hr:2"]
    assert all(isinstance(r, Read) and len(r.items) == 1 for r in read.split())
