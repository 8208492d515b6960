"""`python -m bench.api_flood`: does one client flooding the API move another client's
latency? A real `ombre api` (uvicorn) on a free port serves an empty plant; a calm
client (its own viewer token, from 127.0.0.2) asks GET /api/v1/machines 10 times a
second. Each run measures its latencies for PHASE_S alone, then for PHASE_S while a
flooder (a process of its own, another viewer token, from 127.0.0.3) sends 1,000
requests/s whatever the answers take, opening connections as it needs them (open loop,
asyncio). RUNS (3) runs with the default api.rate_limit, then as many with the limits
lifted, to show what the limit buys. It prints each run's p50 and p99 and their ratio
flooded / alone, the median and spread of the runs' ratios, and the p99 of all runs'
answers pooled (300 a phase, where one run's p99 is about its second-longest of 100),
and writes bench/results/api_flood.json.

The clients stand for other machines: with two CPUs or more, the server is pinned to
CPU 0 and this process and the flooder to the others (os.sched_setaffinity), so the
flooder's own CPU is not taken from the server, as it would not be on the shop floor.
(Separate addresses need no network namespace: any 127.x.y.z is loopback. What the
pinning leaves shared is the memory bus, the kernel's loopback and, on a machine
others use, their load: the output gives the load average.) With one CPU, nothing
is pinned and the output says so."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.mosquitto import free_port, wait_for_port

RUNS = 3
PHASE_S = 10.0
CALM_PER_S = 10
FLOOD_PER_S = 1000
MAX_CONNECTIONS = 2000  # the flooder's open at once, for answers slower than its rate
PATH = "/api/v1/machines"
OMBRE = [sys.executable, "-m", "ombre"]  # the `ombre` command of this interpreter
RESULTS = Path(__file__).parent / "results" / "api_flood.json"
SERVER_CPUS = {0}
CLIENT_CPUS = set(range(1, os.cpu_count() or 1))  # empty with one CPU: nothing pinned
UNLIMITED = {"per_token_per_s": 1e9, "per_token_burst": 10**9, "per_address_per_s": 1e9,
             "per_address_burst": 10**9, "per_client_in_flight": 10**6,
             "per_address_connections": 10**6}


def paced(port: int, token: str, *, per_s: float, seconds: float, latencies: list[float],
          codes: Counter[int]) -> None:
    """The calm client: GET PATH every 1/per_s seconds for `seconds` on one keep-alive
    connection from 127.0.0.2 (a late answer does not move the schedule: the next
    request goes as soon as it can)."""
    headers = {"Authorization": f"Bearer {token}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120,
                                      source_address=("127.0.0.2", 0))
    start = time.monotonic()
    due = start
    while due - start < seconds and time.monotonic() - start < seconds:
        time.sleep(max(0.0, due - time.monotonic()))
        due += 1 / per_s
        sent = time.monotonic()
        try:
            conn.request("GET", PATH, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            codes[0] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120,
                                              source_address=("127.0.0.2", 0))
            continue
        codes[response.status] += 1
        latencies.append(time.monotonic() - sent)
    conn.close()


@dataclass
class Flood:
    """The flooder's connections: `due` holds the requests no connection has taken yet."""

    request: bytes
    due: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    codes: Counter[int] = field(default_factory=Counter)
    opened: int = 0
    live: int = 0  # connections open or opening
    settled: int = 0  # connection attempts over, whether they connected or not
    idle: int = 0  # connections waiting for a request to send

    async def connection(self, port: int) -> None:
        """One keep-alive connection from 127.0.0.3: sends a request whenever one is due
        and it is idle, and reads the answer."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=("127.0.0.3", 0))
        except OSError:
            self.codes[0] += 1
            self.live -= 1
            return
        finally:
            self.settled += 1
        try:
            while True:
                self.idle += 1
                try:
                    await self.due.get()
                finally:
                    self.idle -= 1
                writer.write(self.request)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.codes[status] += 1
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            self.codes[0] += 1  # the server closed or garbled it: this connection ends
        finally:
            writer.close()
            self.live -= 1


async def _flood(port: int, token: str, seconds: float) -> dict[str, Any]:
    """FLOOD_PER_S requests a second whatever the answers take (open loop): requests that
    find every connection busy open more, up to MAX_CONNECTIONS open at once. A request
    lost with its connection (the server closed it) counts as code 0. An idle
    connection woken for a request still counts as idle until it runs: it takes it."""
    flood = Flood((f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n").encode())
    offered = 0
    start = time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds), asyncio.TaskGroup() as tasks:
            while True:
                target = int((time.monotonic() - start) * FLOOD_PER_S)
                for _ in range(target - offered):
                    flood.due.put_nowait(None)
                offered = target
                ready = flood.idle + flood.opened - flood.settled  # or connecting
                for _ in range(min(flood.due.qsize() - ready,
                                   MAX_CONNECTIONS - flood.live)):
                    tasks.create_task(flood.connection(port), name=f"flood:{flood.opened}")
                    flood.opened += 1
                    flood.live += 1
                await asyncio.sleep(0.005)
    elapsed = time.monotonic() - start
    return {"offered_per_s": round(offered / elapsed),
            "answered_per_s": round(sum(flood.codes.values()) / elapsed),
            "connections": flood.opened,
            "codes": {str(k): v for k, v in sorted(flood.codes.items())}}


def flood(port: int, token: str, seconds: float) -> None:
    """The flooder process: prints one JSON line."""
    print(json.dumps(asyncio.run(_flood(port, token, seconds))))


def p99_ms(latencies: list[float]) -> float:
    """The 99th percentile, within the answers measured (never beyond the longest); with
    fewer than two answers (a starved client), the longest one, or the whole phase."""
    if len(latencies) < 2:
        return round(1000 * max(latencies, default=PHASE_S), 1)
    return round(1000 * statistics.quantiles(latencies, n=100, method="inclusive")[98], 1)


def p50_ms(latencies: list[float]) -> float:
    return round(1000 * statistics.median(latencies or [PHASE_S]), 1)


def calm_phase(port: int, token: str) -> tuple[list[float], Counter[int]]:
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    paced(port, token, per_s=CALM_PER_S, seconds=PHASE_S, latencies=latencies, codes=codes)
    return latencies, codes


def cpu_s(pid: int) -> float:
    """The CPU time (user and system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle(server: int, timeout_s: float = 120) -> None:
    """Wait until the server has worked off what an earlier flood left queued: under 5 %
    of a core for a whole second (else the next run's calm phase measures that backlog)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_s(server)
        time.sleep(1.0)
        if cpu_s(server) - before < 0.05:
            return
    raise RuntimeError(f"the server stayed busy for {timeout_s:.0f} s after the flood")


def run(port: int, server: int, calm: str, flooder: str
        ) -> tuple[dict[str, Any], list[float], list[float]]:
    """One run: the calm client alone, then beside the flood; with the share of one CPU
    the server (pid `server`) and the flooder used while the calm client measured. Also
    returns the calm client's latencies alone and flooded."""
    idle(server)
    alone, alone_codes = calm_phase(port, calm)
    process = subprocess.Popen([sys.executable, "-m", "bench.api_flood", "flood", str(port),
                                flooder, str(PHASE_S + 1)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # the flood is running before the measure starts
        began, server_cpu, flood_cpu = time.monotonic(), cpu_s(server), cpu_s(process.pid)
        flooded, flooded_codes = calm_phase(port, calm)
        elapsed = time.monotonic() - began
        server_cpu, flood_cpu = cpu_s(server) - server_cpu, cpu_s(process.pid) - flood_cpu
        flood_report = json.loads(process.communicate(timeout=300)[0])
    finally:
        process.kill()
        process.wait()
    return {"p50_alone_ms": p50_ms(alone), "p50_flooded_ms": p50_ms(flooded),
            "p99_alone_ms": p99_ms(alone), "p99_flooded_ms": p99_ms(flooded),
            "ratio": round(p99_ms(flooded) / p99_ms(alone), 2),
            "calm_codes": {str(k): v for k, v in sorted((alone_codes + flooded_codes).items())},
            "flood": flood_report, "server_cpu_pct": round(100 * server_cpu / elapsed),
            "flooder_cpu_pct": round(100 * flood_cpu / elapsed),
            "load_average_1m": round(os.getloadavg()[0], 2)}, alone, flooded


def ombre(*args: str | Path) -> str:
    return subprocess.run([*OMBRE, *map(str, args)], capture_output=True, text=True,
                          check=True).stdout.strip()


def scenario(workdir: Path, limited: bool) -> dict[str, Any]:
    """RUNS runs against a fresh `ombre api`, with the default limits or none."""
    port = free_port()
    config = workdir / ("limited.yaml" if limited else "unlimited.yaml")
    config.write_text(json.dumps({
        "data_dir": str(workdir / config.stem),
        "sites": [{"id": "site", "lines": [{"id": "l1", "machines": [
            {"id": f"m{i}", "signals": [{"name": "temp"}]} for i in range(3)]}]}],
        "api": {"host": "127.0.0.1", "port": port,
                **({} if limited else {"rate_limit": UNLIMITED})}}))
    calm = ombre("token", "create", "--name", "calm", "-c", config)
    flooder = ombre("token", "create", "--name", "flood", "-c", config)
    log = (workdir / f"{config.stem}.log").open("w")
    server = subprocess.Popen([*OMBRE, "api", "-c", str(config), "--log-level", "warning"],
                              stdout=log, stderr=log)
    if CLIENT_CPUS:
        os.sched_setaffinity(server.pid, SERVER_CPUS)  # before uvicorn starts its threads
    runs: list[dict[str, Any]] = []
    alone: list[float] = []
    flooded: list[float] = []
    try:
        wait_for_port(port, 30)
        for _ in range(RUNS):
            summary, run_alone, run_flooded = run(port, server.pid, calm, flooder)
            runs.append(summary)
            alone += run_alone
            flooded += run_flooded
            print(f"rate limit {'default' if limited else 'off'}: {summary}", file=sys.stderr,
                  flush=True)
            if server.poll() is not None:
                raise RuntimeError(f"ombre api exited: {Path(log.name).read_text()}")
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    ratios = [r["ratio"] for r in runs]
    return {"rate_limit": "default" if limited else "off", "runs": runs,
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "pooled_p99_alone_ms": p99_ms(alone),
            "pooled_p99_flooded_ms": p99_ms(flooded),
            "pooled_ratio": round(p99_ms(flooded) / p99_ms(alone), 2)}


def main() -> None:
    if sys.argv[1:2] == ["flood"]:
        flood(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
        return
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)  # the calm client here, and the flooder
        pinning = (f"server pinned to CPU {sorted(SERVER_CPUS)}, the clients to CPU "
                   f"{sorted(CLIENT_CPUS)}")
    else:
        pinning = "one CPU: the clients share it with the server"
    print(pinning)
    with tempfile.TemporaryDirectory(prefix="ombre-api-flood-") as tmp:
        results = [scenario(Path(tmp), limited) for limited in (True, False)]
    for result in results:
        print(f"rate limit {result['rate_limit']}: p99 flooded / alone = "
              f"{result['ratio_median']} (median of {RUNS} runs; {result['ratio_min']} to "
              f"{result['ratio_max']}); all runs pooled: {result['pooled_p99_flooded_ms']} / "
              f"{result['pooled_p99_alone_ms']} ms = {result['pooled_ratio']}")
        for r in result["runs"]:
            print(f"  p50 alone {r['p50_alone_ms']} ms, flooded {r['p50_flooded_ms']} ms; "
                  f"p99 alone {r['p99_alone_ms']} ms, flooded {r['p99_flooded_ms']} ms, "
                  f"calm answers {r['calm_codes']}, flood {r['flood']}, CPU while flooded: "
                  f"server {r['server_cpu_pct']} %, flooder {r['flooder_cpu_pct']} % of one "
                  f"core; load average {r['load_average_1m']:.1f}")
    RESULTS.write_text(json.dumps({"calm_per_s": CALM_PER_S, "flood_per_s": FLOOD_PER_S,
                                   "phase_s": PHASE_S, "path": PATH, "cpus": pinning,
                                   "scenarios": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
