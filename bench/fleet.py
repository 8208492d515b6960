"""What a fleet's parts cost per 1,000 readings/s, for sizing one (docs/fleet.md):

    python -m bench.fleet [--rate 2000] [--seconds 20] [--runs 3]

One edge gateway (`ombre run`: 50 machines read from a shop-floor Mosquitto, the UNS
published to a central one) and one central member (`ombre run` with `fleet:`, the
shadow on the local PostgreSQL), each a process of its own, with the load generator
(bench/loadgen.py, W1: one reading per message, QoS 1) in a third, paced at --rate.
For each part: the CPU seconds it used while the stream ran and until the member's
shadow had applied every reading, per 1,000 readings, i.e. the cores it needs per
1,000 readings/s; and each Ombre's resident memory at the end. PostgreSQL's is the CPU
of all its processes (keep the machine otherwise quiet). Repeated --runs times: the
spread is printed with the median. Writes bench/results/fleet.json."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.loadgen import DEVICES
from bench.mosquitto import Mosquitto, find_binary
from bench.postgres import pg_schema
from shadow import tables as t
from shadow.schema import database_url, open_engine

TICK_S = os.sysconf("SC_CLK_TCK")
RESULTS = Path(__file__).parent / "results" / "fleet.json"


def cpu_s(pids: list[int]) -> dict[int, float]:
    """User and system CPU seconds of each process still running."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / TICK_S
    return found


def used_s(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings by the processes running at the second
    (one started in between counts whole: PostgreSQL's backend of a new connection)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pid(broker: Mosquitto) -> int:
    assert broker.process is not None
    return broker.process.pid


def postgres_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            and (p / "comm").exists() and (p / "comm").read_text().strip() == "postgres"]


def plant() -> list[dict[str, Any]]:
    return [{"id": "s1", "lines": [{"id": "line-1", "machines": [
        {"id": f"dev-{i:02d}", "signals": [{"name": "value"}]} for i in range(DEVICES)]}]}]


def ombre(name: str, workdir: Path, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    path = workdir / f"{name}.json"
    path.write_text(json.dumps({"data_dir": str(workdir / name), **config}))
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "ombre", "run", str(path)], stdout=log,
                            stderr=subprocess.STDOUT)


def applied(url: str, workdir: Path) -> int:
    """The readings the member's shadow has counted (a connection of its own, whose
    PostgreSQL backend exits before the CPU is read: not counted)."""
    engine = open_engine(database_url(url, workdir))
    try:
        with engine.connect() as c:
            return int(c.execute(select(func.coalesce(func.sum(t.reading_count.c.readings), 0)))
                       .scalar_one())
    except Exception:  # noqa: BLE001 - not created yet
        return 0
    finally:
        engine.dispose()


def wait_for(condition: Any, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.fleet: timed out waiting for {what}")
        time.sleep(0.2)


def one_run(rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    with tempfile.TemporaryDirectory(prefix="ombre-bench-fleet-") as tmp, pg_schema() as url:
        workdir = Path(tmp)
        binary = find_binary("mosquitto")
        if binary is None:
            raise SystemExit("bench.fleet: mosquitto is not installed (make test-services)")
        brokers = [Mosquitto(binary, workdir / n, persistence=False)
                   for n in ("floor", "central")]
        for b in brokers:
            b.workdir.mkdir()
            b.start()
        floor, central = brokers
        runtime = {"flush_interval_ms": 50}
        member = ombre("member", workdir, {
            "sites": plant(), "runtime": runtime, "shadow": {"database": url},
            "fleet": {"member": "central-a", "port": central.port, "lease_s": 15}})
        wait_for(lambda: "mqtt fleet:s1: connected" in (workdir / "member.log").read_text(),
                 "the member's session")
        edge = ombre("edge", workdir, {
            "sites": plant(), "runtime": runtime, "shadow": {"enabled": False},
            "sources": [{"type": "mqtt", "name": "floor", "port": floor.port,
                         "client_id": "edge", "subscriptions": [
                             {"topic": "bench/{line}/{machine}/{signal}", "format": "value"}]}],
            "sinks": [{"type": "mqtt", "name": "uns", "port": central.port,
                       "client_id": "edge-uns"}]})
        wait_for(lambda: "mqtt floor: connected" in (workdir / "edge.log").read_text(),
                 "the edge's subscription")
        parts: dict[str, Any] = {
            "edge": lambda: [edge.pid], "member": lambda: [member.pid],
            "shop-floor broker": lambda: [_pid(floor)],
            "central broker": lambda: [_pid(central)], "PostgreSQL": postgres_pids}
        before = {k: cpu_s(pids()) for k, pids in parts.items()}
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench.loadgen", "--port", str(floor.port),
                        "--workload", "w1", "--count", str(count), "--rate", str(rate)],
                       check=True, capture_output=True)
        wait_for(lambda: applied(url, workdir) >= count, "the shadow to apply everything")
        elapsed = time.perf_counter() - began
        used = {k: used_s(before[k], cpu_s(pids())) for k, pids in parts.items()}
        memory = {"edge": rss_mb(edge.pid), "member": rss_mb(member.pid)}
        for process in (edge, member):
            process.terminate()
            process.wait(30)
        for b in brokers:
            b.stop()
    return {"readings": count, "seconds": elapsed,
            "cores_per_1000_per_s": {k: v / count * 1000 for k, v in used.items()},
            "rss_mb": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run(args.rate, args.seconds) for _ in range(args.runs)]
    print(f"fleet at {args.rate:g} readings/s for {args.seconds:g} s, {args.runs} runs: "
          "cores per 1,000 readings/s, median (min-max)")
    summary = {}
    for part in runs[0]["cores_per_1000_per_s"]:
        values = [r["cores_per_1000_per_s"][part] for r in runs]
        summary[part] = {"median": statistics.median(values), "min": min(values),
                         "max": max(values)}
        print(f"  {part:18} {summary[part]['median']:.3f} "
              f"({summary[part]['min']:.3f}-{summary[part]['max']:.3f})")
    for part in ("edge", "member"):
        print(f"  {part} RSS at the end: "
              + ", ".join(f"{r['rss_mb'][part]:.0f} MB" for r in runs))
    RESULTS.write_text(json.dumps({"rate": args.rate, "seconds": args.seconds,
                                   "runs": runs, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
