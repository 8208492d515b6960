"""`ombre browse` against a real asyncua server with a nested tree: the printed tree,
the filter, and an --emit-config fragment that `ombre check` accepts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from asyncua import Server, ua

from bench.mosquitto import free_port
from ombre.cli import main
from tests.connectors.opcua_plc import config, plc

MACHINES = ("Press1", "Press2")


async def machines_tree(server: Server) -> None:
    """Objects/Machines/<press>/{Counters/{Good,Bad}, State, Temp[] (an array)}."""
    machines = await server.nodes.objects.add_folder(2, "Machines")
    for name in MACHINES:
        press = await machines.add_object(2, name)
        counters = await press.add_object(2, "Counters")
        for counter in ("Good", "Bad"):
            await counters.add_variable(ua.NodeId(f"{name}.{counter}", 2), counter,
                                        ua.Variant(0, ua.VariantType.UInt32))
        state = await press.add_variable(ua.NodeId(f"{name}.State", 2), "State", "idle")
        await state.set_writable()
        await press.add_variable(ua.NodeId(f"{name}.Temp", 2), "Temp", [1.0, 2.0])


async def browse(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["browse", *args])
    out, err = capsys.readouterr()
    return code, out, err


async def test_browse_prints_the_nested_tree(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/ombre/"
    async with plc(port, {"temp": 1.5}, build=machines_tree):
        code, out, err = await browse(capsys, endpoint)
        assert (code, err) == (0, "")
        lines = out.splitlines()
        assert lines[0] == "Objects  i=85"
        assert "  Plant  ns=2;i=" in out  # a folder, with its numeric node id
        assert "    temp  ns=2;s=temp  Double  r" in lines
        assert "      Counters  ns=2;i=" in out
        assert "        Good  ns=2;s=Press1.Good  UInt32  r" in lines
        assert "      State  ns=2;s=Press2.State  String  rw" in lines
        assert "      Temp  ns=2;s=Press1.Temp  Double[]  r" in lines
        assert "Server" not in out  # namespace 0 below Objects is left out
        good = lines.index("        Good  ns=2;s=Press1.Good  UInt32  r")
        assert lines[good - 1].startswith("      Counters")  # depth first: a child follows
        assert lines[good - 2].startswith("    Press1")      # its parents

        code, out, _ = await browse(capsys, endpoint, "--depth", "2")
        assert code == 0
        assert "Press1" in out
        assert "Counters" not in out

        code, out, _ = await browse(capsys, endpoint, "--filter", "**/Good")
        assert [line.strip().split()[0] for line in out.splitlines()] == [
            "Objects", "Machines", "Press1", "Counters", "Good", "Press2", "Counters", "Good"]


async def test_emit_config_is_accepted_by_ombre_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/ombre/"
    async with plc(port, {"temp": 1.5}, build=machines_tree):
        code, out, _ = await browse(capsys, endpoint, "--emit-config", "--filter",
                                    "Objects/Machines/{machine}/**/{signal}")
    assert code == 0
    fragment = yaml.safe_load(out)
    assert fragment["machines"] == [
        {"id": m, "signals": [{"name": "State", "type": "string"}, {"name": "Good"},
                              {"name": "Bad"}]}
        for m in MACHINES]  # the array Temp cannot be a signal
    assert {"machine": "Press2", "signal": "Bad", "node_id": "ns=2;s=Press2.Bad"} in \
        fragment["nodes"]
    assert len(fragment["nodes"]) == 6

    raw = config(port, tmp_path, [{"machine": "m", "signal": "s", "node_id": "i=1"}],
                 {"m": [{"name": "s"}]}).model_dump(mode="json", exclude_defaults=True)
    raw["sites"][0]["lines"][0]["machines"] = fragment["machines"]
    raw["sources"][0]["nodes"] = fragment["nodes"]
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(raw))
    assert main(["check", str(path)]) == 0
    assert "OK (2 machines, 6 signals" in capsys.readouterr().out


async def test_browse_reports_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await browse(capsys, f"opc.tcp://127.0.0.1:{free_port()}", "--timeout-s", "2")
    assert code == 1
    assert err.startswith("ombre browse: cannot browse opc.tcp://127.0.0.1:")


async def test_browse_rejects_a_bad_filter(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await browse(capsys, "opc.tcp://127.0.0.1:1", "--filter", "Objects//x")
    assert code == 1
    assert "--filter: expected browse names separated by single '/'" in err


async def many_nodes(server: Server) -> None:
    """Objects/Big/F<i>/V<j>: 20 folders of 50 variables."""
    big = await server.nodes.objects.add_folder(2, "Big")
    for i in range(20):
        folder = await big.add_folder(2, f"F{i}")
        for j in range(50):
            await folder.add_variable(ua.NodeId(f"F{i}.V{j}", 2), f"V{j}", float(j))


async def test_browse_stops_at_max_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    async with plc(port, {}, build=many_nodes):
        endpoint = f"opc.tcp://127.0.0.1:{port}/ombre/"
        code, out, err = await browse(capsys, endpoint, "--concurrency", "2")
        assert (code, err) == (0, "")
        assert len(out.splitlines()) == 1 + 1 + 1 + 20 + 1000  # Objects, Plant, Big, ...
        code, out, err = await browse(capsys, endpoint, "--max-nodes", "500")
    assert code == 0
    assert len(out.splitlines()) == 500
    assert err == "ombre browse: stopped after 500 nodes (--max-nodes)\n"


def test_browse_refuses_a_concurrency_of_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["browse", "opc.tcp://127.0.0.1:1", "--concurrency", "0"])
    assert exit_info.value.code == 2
    assert "expected a whole number of at least 1, found '0'" in capsys.readouterr().err
