"""Which sources feed which machine, as the equipment rows record it: S7 and Modbus
items and OPC UA node ids name their machines; browse paths with {machine} and companion
specifications may find any machine on the server."""

from __future__ import annotations

from typing import Any

from ombre.config import validate_config
from shadow.store import _equipment


def connections(*sources: dict[str, Any]) -> dict[str, str | None]:
    config = validate_config({
        "sites": [{"id": "s", "lines": [{"id": "l", "machines": [
            {"id": m, "signals": [{"name": "x"}]} for m in ("a", "b")]}]}],
        "sources": list(sources)})
    return {row["id"]: row["connection"] for row in _equipment(config)
            if row["level"] == "machine"}


def opcua(name: str, **keys: Any) -> dict[str, Any]:
    return {"type": "opcua", "name": name, "endpoint": "opc.tcp://127.0.0.1:4840",
            "security": {"mode": "None"}, **keys}


def test_node_ids_name_their_machines() -> None:
    assert connections(opcua("plc", nodes=[
        {"machine": "a", "signal": "x", "node_id": "ns=2;s=x"},
        {"machine": "a", "browse_path": "Objects/A/{signal}"}])) == {
        "a": "opcua:plc", "b": None}


def test_machine_placeholders_and_companion_specs_may_feed_any_machine() -> None:
    assert connections(opcua("plc", companion=["machinery"]),
                       opcua("paths", nodes=[{"browse_path": "Objects/{machine}/{signal}"}])
                       ) == {"a": "opcua:plc, opcua:paths", "b": "opcua:plc, opcua:paths"}


def test_s7_items_name_their_machines() -> None:
    assert connections({"type": "s7", "name": "press-plc", "host": "10.0.0.5", "slot": 1,
                        "items": [{"machine": "b", "signal": "x", "address": "DB1.DBD0"}]}
                       ) == {"a": None, "b": "s7:press-plc"}


def test_modbus_items_name_their_machines() -> None:
    assert connections({"type": "modbus", "name": "lathe", "host": "10.0.0.6",
                        "items": [{"machine": "a", "signal": "x", "address": "hr:0"}]}
                       ) == {"a": "modbus:lathe", "b": None}
