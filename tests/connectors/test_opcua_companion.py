"""Nodes found on the server at connect: browse-path patterns with {machine} and
{signal}, and the Machinery and PackML companion specifications mapped to the
shadow's state and counter signals without per-node config."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Node, Server, ua

from bench.mosquitto import free_port
from connectors.sqlite_ts import open_store
from ombre.cli import main
from shadow.config import MachineryState, PackmlState
from shadow.states import evaluate
from shadow.timeline import Category
from tests.conftest import running, wait_until
from tests.connectors.opcua_plc import (
    ALL,
    BASE_TS,
    STEP,
    config,
    counter,
    only_problem,
    plc,
    raw,
    subscribed,
)


async def add(parent: Node, path: str, name: str, value: Any) -> None:
    """A variable `ns=2;s=<path>` named `name` below `parent`, its initial value stamped
    a day before BASE_TS (so counts from BASE_TS on exclude it)."""
    variant = value if isinstance(value, ua.Variant) else ua.Variant(value)
    node = await parent.add_variable(ua.NodeId(path, 2), name, variant)
    old = BASE_TS - timedelta(days=1)
    await node.write_value(ua.DataValue(variant, SourceTimestamp=old, ServerTimestamp=old))


async def counters_tree(server: Server) -> None:
    """Objects/Machines/<press>/Counters/{Good,Bad}."""
    machines = await server.nodes.objects.add_folder(2, "Machines")
    for press in ("Press1", "Press2", "Press9"):
        counters = await (await machines.add_object(2, press)).add_object(2, "Counters")
        for name in ("Good", "Bad"):
            await add(counters, f"{press}.{name}", name, 0)


async def test_browse_path_pattern_finds_machines_and_signals(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    machines = {p: [{"name": "Good"}, {"name": "Bad"}] for p in ("Press1", "Press2")}
    nodes = [{"browse_path": "Objects/Machines/{machine}/Counters/{signal}"}]
    store = tmp_path / "timeseries.sqlite"
    caplog.set_level(logging.INFO, logger="connectors.opcua")
    async with plc(port, {}, build=counters_tree) as server, \
            running(config(port, tmp_path, nodes, machines)) as gateway:
        await subscribed(gateway, 4)  # Press9 is not in the plant
        for k in range(5):
            for press in machines:
                await server.write(f"{press}.Good", 10 + k, BASE_TS + k * STEP)
            await server.write("Press2.Bad", k + 1, BASE_TS + k * STEP)
        for press in machines:
            await wait_until(lambda p=press: counter(store, p, "Good")() == 5, what="Good")
        await wait_until(lambda: counter(store, "Press2", "Bad")() == 5, what="Bad")
    with open_store(store) as db:
        assert db.read("Press1", "Good", *ALL)[1].tolist()[-5:] == [10, 11, 12, 13, 14]
    messages = [r.getMessage() for r in caplog.records]
    assert "opcua plc: 4 variables found by browse path" in messages
    [unmapped] = [m for m in messages if "name no signal of the plant" in m]
    assert "2 browse-path matches" in unmapped
    assert "Objects/Machines/Press9/Counters/Bad" in unmapped


async def machinery(server: Server) -> None:
    """OPC 40001-1 style: Objects/Machines/CNC1/Monitoring/{MachineryItemState,
    MachineryOperationMode}/CurrentState and Monitoring/OperationCounters."""
    machines = await server.nodes.objects.add_folder(2, "Machines")
    monitoring = await (await machines.add_object(2, "CNC1")).add_object(2, "Monitoring")
    for machine_state, text in (("MachineryItemState", "NotExecuting"),
                                ("MachineryOperationMode", "None")):
        state = await monitoring.add_object(2, machine_state)
        await add(state, f"CNC1.{machine_state}", "CurrentState", ua.LocalizedText(text))
    counters = await monitoring.add_object(2, "OperationCounters")
    await add(counters, "CNC1.Cycles", "OperationCycleCounter",
              ua.Variant(0, ua.VariantType.UInt64))


async def machinery_variables(server: Server) -> None:
    """A simpler server: Objects/Machines/CNC-2/Monitoring/{MachineryItemState,
    MachineryOperationMode} as Int32 variables (enumeration values) and
    OperationCounters directly in the machine."""
    machines = await server.nodes.objects.add_folder(2, "Machines")
    cnc = await machines.add_object(2, "CNC-2")
    monitoring = await cnc.add_object(2, "Monitoring")
    for name in ("MachineryItemState", "MachineryOperationMode"):
        await add(monitoring, f"CNC-2.{name}", name, ua.Variant(0, ua.VariantType.Int32))
    counters = await cnc.add_object(2, "OperationCounters")
    await add(counters, "CNC-2.Cycles", "OperationCycleCounter", 0)


async def packml(server: Server) -> None:
    """OPC 30050 style: Objects/Line1/Filler/Status/{StateCurrent,UnitModeCurrent}."""
    line = await server.nodes.objects.add_object(2, "Line1")
    status = await (await line.add_object(2, "Filler")).add_object(2, "Status")
    await add(status, "Filler.State", "StateCurrent", ua.Variant(2, ua.VariantType.Int32))
    await add(status, "Filler.Mode", "UnitModeCurrent", ua.Variant(1, ua.VariantType.Int32))


async def test_machinery_companion_spec_maps_state_mode_and_counter(tmp_path: Path) -> None:
    port = free_port()
    signals = [{"name": "MachineryItemState", "type": "string"},
               {"name": "MachineryOperationMode", "type": "string"},
               {"name": "OperationCycleCounter"}]
    cfg = config(port, tmp_path, [], {"CNC1": signals}, companion=["machinery"])
    store = tmp_path / "timeseries.sqlite"
    async with plc(port, {}, build=machinery) as server, running(cfg) as gateway:
        await subscribed(gateway, 3)
        await server.write("CNC1.MachineryOperationMode", ua.LocalizedText("Processing"),
                           BASE_TS)
        await server.write("CNC1.MachineryItemState", ua.LocalizedText("Executing"),
                           BASE_TS + STEP)
        for k in range(1, 4):
            await server.write("CNC1.Cycles", ua.Variant(k, ua.VariantType.UInt64),
                               BASE_TS + (1 + k) * STEP)
        await wait_until(lambda: counter(store, "CNC1", "OperationCycleCounter")() == 3,
                         what="3 cycles")

        def states() -> dict[str, object]:
            with open_store(store) as db:
                return {e.name: e.value for e in db.read_events("CNC1", *ALL)}

        await wait_until(lambda: states() == {"MachineryItemState": "Executing",
                                              "MachineryOperationMode": "Processing"},
                         what="the state and the mode")
    with open_store(store) as db:
        assert db.read("CNC1", "OperationCycleCounter", *ALL)[1].tolist()[-3:] == [1, 2, 3]
    # the shadow's `state: {type: machinery}` reads these signals by its default names
    assert evaluate(MachineryState(type="machinery"), states(), job=False).category == \
        Category.APT


async def test_machinery_as_plain_variables_on_a_machine_named_in_capitals(
        tmp_path: Path) -> None:
    port = free_port()
    signals = [{"name": "MachineryItemState"}, {"name": "MachineryOperationMode"},
               {"name": "OperationCycleCounter"}]
    cfg = config(port, tmp_path, [], {"cnc-2": signals}, companion=["machinery"])
    store = tmp_path / "timeseries.sqlite"
    async with plc(port, {}, build=machinery_variables) as server, running(cfg) as gateway:
        await subscribed(gateway, 3)
        await server.write("CNC-2.MachineryItemState", ua.Variant(2, ua.VariantType.Int32),
                           BASE_TS)  # Executing
        await server.write("CNC-2.MachineryOperationMode",
                           ua.Variant(3, ua.VariantType.Int32), BASE_TS)  # Processing
        await server.write("CNC-2.Cycles", 1, BASE_TS)
        for name in ("MachineryItemState", "MachineryOperationMode", "OperationCycleCounter"):
            await wait_until(counter(store, "cnc-2", name), what=name)
    with open_store(store) as db:
        values = {s["name"]: db.read("cnc-2", s["name"], *ALL)[1].tolist()[-1]
                  for s in signals}
    assert values == {"MachineryItemState": 2.0, "MachineryOperationMode": 3.0,
                      "OperationCycleCounter": 1.0}
    assert evaluate(MachineryState(type="machinery"), values, job=False).category == \
        Category.APT


async def test_packml_companion_spec_maps_state_and_mode(tmp_path: Path) -> None:
    port = free_port()
    signals = [{"name": "PackMLState"}, {"name": "PackMLMode"}]
    cfg = config(port, tmp_path, [], {"Filler": signals}, companion=["packml"])
    store = tmp_path / "timeseries.sqlite"
    async with plc(port, {}, build=packml) as server, running(cfg) as gateway:
        await subscribed(gateway, 2)
        await server.write("Filler.State", ua.Variant(6, ua.VariantType.Int32), BASE_TS)
        await wait_until(counter(store, "Filler", "PackMLState"), what="the state")
    with open_store(store) as db:
        values = {s: db.read("Filler", s, *ALL)[1].tolist()[-1]
                  for s in ("PackMLState", "PackMLMode")}
    assert values == {"PackMLState": 6.0, "PackMLMode": 1.0}
    assert evaluate(PackmlState(type="packml"), values, job=False).category == Category.APT


@pytest.mark.parametrize(("node", "expected"), [
    ({"machine": "Press1", "signal": "Good"},
     "nodes[0].node_id: expected exactly one of node_id and browse_path, found neither"),
    ({"machine": "Press1", "signal": "Good", "node_id": "i=1", "browse_path": "Objects/x"},
     "nodes[0].node_id: expected exactly one of node_id and browse_path, found both"),
    ({"signal": "Good", "node_id": "i=1"}, "nodes[0].machine: missing required key"),
    ({"browse_path": "Objects/Machines/{machine}/Good"},
     "nodes[0].signal: expected signal, or {signal} in browse_path"),
    ({"machine": "Press1", "browse_path": "Objects/{machine}/{signal}"},
     "nodes[0].machine: expected no machine when browse_path has {machine}, found 'Press1'"),
])
def test_node_entries_name_a_node_or_a_path(tmp_path: Path, node: dict[str, Any],
                                            expected: str) -> None:
    data = raw(config(free_port(), tmp_path, [], {"Press1": [{"name": "Good"}]},
                      companion=["machinery"]))
    data["sources"][0]["nodes"] = [node]
    assert only_problem(tmp_path, data) == f"sources[0].{expected}"


def test_a_source_needs_nodes_or_a_companion_spec(tmp_path: Path) -> None:
    data = raw(config(free_port(), tmp_path, [], {"Press1": [{"name": "Good"}]},
                      companion=["machinery"]))
    del data["sources"][0]["companion"]
    assert only_problem(tmp_path, data) == (
        "sources[0].nodes: expected at least one node, or a companion specification "
        "(machinery, packml), found neither")


def test_ombre_check_names_a_bad_browse_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [{"machine": "Press1", "browse_path": "Objects//{signal}"}]
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(raw(config(free_port(), tmp_path, nodes,
                                          {"Press1": [{"name": "Good"}]}))))
    assert main(["check", str(path)]) == 2
    assert "sources[0].nodes[0].browse_path: expected browse names separated by single '/'" \
        in capsys.readouterr().err
