"""`python -m bench.opcua_load`: Ombre subscribed to an asyncua server that changes N
variables every 100 ms, for N = 1,000 then 5,000. Each run starts the server (a
process of its own, `server` subcommand), then `ombre run` on a config subscribing to
every variable; the server waits until Ombre is subscribed, writes for SECONDS, and
reports its writes and CPU. Ombre is stopped with SIGTERM (it drains), its CPU is
read from wait4, and its SQLite store is counted: every write plus each variable's
initial value must be there, so loss = expected - committed. Results go to
bench/results/opcua.json. The server is Python: on a small machine it, not Ombre,
sets the rate, which the report shows as changes/s produced."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from bench.mosquitto import free_port
from connectors.sqlite_ts import open_store

SIZES = (1_000, 5_000)
SECONDS = 20.0
PERIOD_S = 0.1
RESULTS = Path(__file__).parent / "results" / "opcua.json"


async def serve(port: int, n: int, seconds: float) -> None:
    """The server process: prints "ready", waits for one subscription, writes every
    variable every PERIOD_S for `seconds`, prints one JSON line, lingers for the drain."""
    from asyncua import ua  # noqa: PLC0415 - only the server process needs it
    from asyncua.server.server import Server  # noqa: PLC0415

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    await server.register_namespace("urn:ombre:bench")
    folder = await server.nodes.objects.add_folder(2, "Bench")
    ids = [ua.NodeId(ua.String(f"v{i}"), ua.Int16(2)) for i in range(n)]
    for i, node_id in enumerate(ids):
        await folder.add_variable(node_id, f"v{i}", 0.0)
    async with server:
        print("ready", flush=True)
        while not server.iserver.subscription_service.subscriptions:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # the monitored items are created after the subscription
        cpu0, writes, k, start = _cpu_s(resource.RUSAGE_SELF), 0, 0, time.monotonic()
        while time.monotonic() - start < seconds:
            k += 1
            ts = cast(ua.DateTime, datetime.now(UTC))
            for node_id in ids:
                await server.write_attribute_value(node_id, ua.DataValue(
                    ua.Variant(float(k)), SourceTimestamp=ts, ServerTimestamp=ts))
            writes += n
            await asyncio.sleep(max(0.0, start + k * PERIOD_S - time.monotonic()))
        elapsed = time.monotonic() - start
        print(json.dumps({"writes": writes, "seconds": round(elapsed, 2),
                          "cpu_s": round(_cpu_s(resource.RUSAGE_SELF) - cpu0, 2)}), flush=True)
        await asyncio.sleep(3600)  # until the parent ends it


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run(n: int, workdir: Path) -> dict[str, Any]:
    port = free_port()
    config = workdir / f"opcua-{n}.json"
    config.write_text(json.dumps({
        "data_dir": str(workdir / f"data-{n}"),
        "sites": [{"id": "bench", "lines": [{"id": "l", "machines": [
            {"id": "m", "signals": [{"name": f"v{i}"} for i in range(n)]}]}]}],
        "sources": [{"type": "opcua", "name": "plc", "security": {"mode": "None"},
                     "endpoint": f"opc.tcp://127.0.0.1:{port}/bench/",
                     "publishing_interval_ms": 100, "sampling_interval_ms": 0,
                     "queue_size": 100, "keepalive_count": 30,
                     "nodes": [{"machine": "m", "signal": f"v{i}", "node_id": f"ns=2;s=v{i}"}
                               for i in range(n)]}],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "shadow": {"enabled": False},
    }))
    server = subprocess.Popen([sys.executable, "-m", "bench.opcua_load", "server", str(port),
                               str(n), str(SECONDS)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    try:
        assert server.stdout.readline().strip() == "ready"
        ombre = subprocess.Popen([sys.executable, "-m", "ombre", "run", str(config),
                                  "--log-level", "warning"])
        produced = json.loads(server.stdout.readline())
        time.sleep(3)  # the last publish and commit
        ombre.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(ombre.pid, 0)
        ombre.returncode = os.waitstatus_to_exitcode(status)
    finally:
        server.terminate()
        server.wait(10)
    with open_store(workdir / f"data-{n}" / "timeseries.sqlite") as store:
        committed = sum(store.count("m", f"v{i}", 0, 2**62) for i in range(n))
    expected = produced["writes"] + n  # every write and each initial value
    return {
        "variables": n,
        "changes_per_s_produced": round(produced["writes"] / produced["seconds"]),
        "expected": expected, "committed": committed, "loss": expected - committed,
        "server_cpu_s": produced["cpu_s"],
        "ombre_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "ombre_peak_rss_mb": round(usage.ru_maxrss / 1024),
        "ombre_exit": ombre.returncode,
    }


def main() -> None:
    if sys.argv[1:2] == ["server"]:
        asyncio.run(serve(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
        return
    with tempfile.TemporaryDirectory(prefix="ombre-opcua-bench-") as tmp:
        results = [run(n, Path(tmp)) for n in SIZES]
    for result in results:
        print(json.dumps(result))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
