"""`python -m bench.bridge`: Ombre as an MQTT bridge, next to a bare paho-mqtt bridge in
the same run. Broker A -> bridge -> broker B -> counter, QoS 1 on every hop, two
Mosquittos of its own; the load generator (bench.loadgen), the bridge and the counter
are each a process of their own.

- Ombre: `ombre run` with the MQTT source on A and the MQTT sink on B (shadow off, no
  other sink): every reading goes through the durable outbox, and A's messages are
  acknowledged only once committed, B's publishes are waited for before the cursor
  moves. W1 (1 reading per message) goes out as one message per reading; W2 (100
  readings per message) with `batch: machine`, a message per machine and write.
- bare: a paho client that republishes each message of A on B as it arrives (acked to
  A on receipt: nothing is durable).

For each workload and bridge, `--runs` times (default 3):
- forwarded readings/s: a backlog published to A while the bridge is away (its
  persistent session keeps it) is drained through B, timed at the counter from the
  10 % mark to the last reading;
- latency: a paced flow, p50 and p99 from the reading's timestamp (set by the load
  generator when it publishes) to its arrival at the counter, after a warm-up.
Prints the median of the runs with their spread (min-max), and writes
bench/results/bridge.json."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.loadgen import DEVICES, W2_READINGS, W2_SIGNALS, prepare_session
from bench.mosquitto import Mosquitto, find_binary

RESULTS = Path(__file__).parent / "results" / "bridge.json"
SOURCE_FILTER = "bench/+/+/+"


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    per_message: int
    backlog: int  # messages drained for the readings/s
    rate: float  # messages/s of the latency flow
    seconds: float  # of the latency flow
    warmup_s: float  # its first seconds, not counted


WORKLOADS = {
    "w1": Workload("w1", 1, 20_000, 500, 10, 3),
    "w2": Workload("w2", W2_READINGS, 400, 20, 10, 3),
}


# -- the counter and the bare bridge (child processes) -----------------------------------

def count(port: int, expect: int, skip: int, timeout_s: float) -> None:
    """Subscribes to every topic of the broker at `port`, prints "ready", then one JSON
    line once `expect` readings arrived (or `timeout_s` passed): readings/s and latency
    percentiles over the readings after the first `skip`."""
    done = threading.Event()
    received = 0
    marks: list[float] = []  # perf_counter at `skip`, and at the last reading
    latencies: list[float] = []

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        now_ms = time.time_ns() / 1e6
        doc = json.loads(message.payload)
        items = doc if isinstance(doc, list) else [doc]
        for item in items:
            ts = item["ts"]
            if received >= skip:
                latencies.append(now_ms - (ts / 1000 if ts > 1e14 else ts))  # µs or ms
            received += 1
            if received == skip + 1:
                marks.append(time.perf_counter())
        if received >= expect:
            marks.append(time.perf_counter())
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"counter-{os.getpid()}",
                         protocol=mqtt.MQTTv311)
    client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("#", qos=1)
    subscribed.wait(10)
    print("ready", flush=True)
    done.wait(timeout_s)
    client.disconnect()
    client.loop_stop()
    lat = np.array(latencies) if latencies else np.array([np.nan])
    span = marks[-1] - marks[0] if len(marks) >= 2 else float("nan")
    print(json.dumps({"readings": received, "complete": received >= expect,
                      "readings_per_s": (received - skip - 1) / span if span else None,
                      "p50_ms": float(np.percentile(lat, 50)),
                      "p99_ms": float(np.percentile(lat, 99))}), flush=True)


def bare(source: int, target: int, client_id: str) -> None:
    """Republishes each message of the broker at `source` (its prepared persistent
    session) on the one at `target`, QoS 1, until SIGTERM; prints "ready"."""
    out = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{client_id}-out",
                      protocol=mqtt.MQTTv5)
    out.max_inflight_messages_set(1000)
    out.max_queued_messages_set(0)
    out.connect("127.0.0.1", target)
    out.loop_start()
    into = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    def forward(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        out.publish(message.topic, message.payload, qos=1)

    into.on_message = forward
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 10_000
    into.connect("127.0.0.1", source, clean_start=False, properties=props)
    into.subscribe(SOURCE_FILTER, qos=1)
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    into.loop_start()
    stop.wait()
    into.disconnect()
    into.loop_stop()
    out.disconnect()
    out.loop_stop()


# -- the harness ----------------------------------------------------------------------------

def ombre_config(workdir: Path, a: int, b: int, client_id: str, workload: Workload) -> Path:
    signals = [{"name": "value"}] + [{"name": f"s{j:02d}"} for j in range(W2_SIGNALS)]
    machines = [{"id": f"dev-{i:02d}", "signals": signals} for i in range(DEVICES)]
    w1 = workload.name == "w1"
    config = {
        "data_dir": str(workdir / client_id),
        "sites": [{"id": "bench", "lines": [{"id": "line-1", "machines": machines}]}],
        "sources": [{"type": "mqtt", "name": "a", "port": a, "client_id": client_id,
                     "subscriptions": [{"topic": "bench/{line}/{machine}/{signal}", "qos": 1,
                                        "format": "value" if w1 else "array",
                                        "ts_unit": "ms" if w1 else "us"}]}],
        "sinks": [{"type": "mqtt", "name": "uns", "port": b, "client_id": f"{client_id}-uns",
                   "prefix": "bench", "topic": "{prefix}/{line}/{machine}/{signal}",
                   "batch": "none" if w1 else "machine", "model": False}],
        "shadow": {"enabled": False},
    }
    path = workdir / f"{client_id}.json"
    path.write_text(json.dumps(config))
    return path


@dataclass(frozen=True, slots=True)
class Setup:
    workdir: Path
    a: Mosquitto  # the bridge reads here
    b: Mosquitto  # and publishes here, where the counter subscribes


class Bridge:
    """One bridge process, started with `start` once the counter listens."""

    def __init__(self, kind: str, setup: Setup, client_id: str, workload: Workload) -> None:
        self.kind, self.client_id = kind, client_id
        self.log = setup.workdir / f"{client_id}.log"
        a, b = setup.a.port, setup.b.port
        if kind == "ombre":
            config = ombre_config(setup.workdir, a, b, client_id, workload)
            self.argv = [sys.executable, "-m", "ombre", "run", str(config)]
        else:
            self.argv = [sys.executable, "-m", "bench.bridge", "bare", "--source", str(a),
                         "--target", str(b), "--client-id", client_id]
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with self.log.open("w") as log:
            self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log,
                                            text=True)
        if self.kind == "bare":
            assert self.process.stdout is not None
            if self.process.stdout.readline().strip() != "ready":
                raise RuntimeError("the bare bridge did not start")
            return
        deadline = time.monotonic() + 30
        marks = ("mqtt sink uns: connected", "subscribing to")
        while not all(m in self.log.read_text() for m in marks):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"ombre did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


def child(module: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)],
                            stdout=subprocess.PIPE, text=True)


def started_counter(port: int, expect: int, skip: int, timeout_s: float) -> subprocess.Popen[str]:
    counter = child("bench.bridge", "count", "--port", port, "--expect", expect, "--skip",
                    skip, "--timeout", timeout_s)
    assert counter.stdout is not None
    if counter.stdout.readline().strip() != "ready":
        raise RuntimeError("the counter did not start")
    return counter


def result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=300)
    return dict(json.loads(out.strip().splitlines()[-1]))


def drain(kind: str, setup: Setup, w: Workload, run: int) -> dict[str, Any]:
    client_id = f"{kind}-{w.name}-drain-{run}"
    readings = w.backlog * w.per_message
    a, b = setup.a, setup.b
    prepare_session(a.port, client_id, SOURCE_FILTER)
    result(child("bench.loadgen", "--port", a.port, "--workload", w.name, "--count", w.backlog))
    counter = started_counter(b.port, readings, readings // 10, 120)
    bridge = Bridge(kind, setup, client_id, w)
    bridge.start()
    try:
        return result(counter)
    finally:
        bridge.stop()
        prepare_session(a.port, client_id, None)


def flow(kind: str, setup: Setup, w: Workload, run: int) -> dict[str, Any]:
    client_id = f"{kind}-{w.name}-flow-{run}"
    messages = int(w.rate * w.seconds)
    readings = messages * w.per_message
    a, b = setup.a, setup.b
    counter = started_counter(b.port, readings, int(w.rate * w.warmup_s) * w.per_message,
                              w.seconds + 60)
    bridge = Bridge(kind, setup, client_id, w)
    bridge.start()
    try:
        result(child("bench.loadgen", "--port", a.port, "--workload", w.name, "--count",
                     messages, "--rate", w.rate))
        return result(counter)
    finally:
        bridge.stop()
        prepare_session(a.port, client_id, None)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bridge")
    commands = parser.add_subparsers(dest="command")
    c = commands.add_parser("count")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--expect", type=int, required=True)
    c.add_argument("--skip", type=int, default=0)
    c.add_argument("--timeout", type=float, default=120)
    p = commands.add_parser("bare")
    p.add_argument("--source", type=int, required=True)
    p.add_argument("--target", type=int, required=True)
    p.add_argument("--client-id", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append")
    args = parser.parse_args(argv)
    if args.command == "count":
        count(args.port, args.expect, args.skip, args.timeout)
        return
    if args.command == "bare":
        bare(args.source, args.target, args.client_id)
        return
    binary = find_binary("mosquitto")
    if binary is None:
        raise SystemExit("mosquitto is not installed: run `make bench`, which installs it")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ombre-bridge-") as tmp:
        workdir = Path(tmp)
        brokers = []
        for name in ("a", "b"):
            (workdir / name).mkdir()
            broker = Mosquitto(binary, workdir / name, persistence=False)
            broker.start()
            brokers.append(broker)
        setup = Setup(workdir, *brokers)
        try:
            for w in (WORKLOADS[n] for n in args.workload or sorted(WORKLOADS)):
                runs: dict[str, list[dict[str, Any]]] = {"ombre": [], "bare": []}
                for run in range(args.runs):  # interleaved, so both see the same machine
                    for kind in ("bare", "ombre"):
                        runs[kind].append({**drain(kind, setup, w, run),
                                           **{f"flow_{k}": v for k, v in
                                              flow(kind, setup, w, run).items()}})
                for kind, rows in runs.items():
                    if not all(r["complete"] and r["flow_complete"] for r in rows):
                        raise SystemExit(f"{kind} {w.name}: readings missing: {rows}")
                    figures[f"{w.name}_{kind}"] = {
                        "readings_per_s": spread([r["readings_per_s"] for r in rows]),
                        "p50_ms": spread([r["flow_p50_ms"] for r in rows]),
                        "p99_ms": spread([r["flow_p99_ms"] for r in rows]),
                        "flow_readings_per_s": w.rate * w.per_message,
                        "runs": len(rows),
                    }
        finally:
            for broker in brokers:
                broker.stop()
    for key, row in figures.items():
        print(f"{key:<10} readings/s {row['readings_per_s']['median']:>9,.0f} "
              f"({row['readings_per_s']['min']:,.0f}-{row['readings_per_s']['max']:,.0f})   "
              f"at {row['flow_readings_per_s']:,.0f}/s: p50 {row['p50_ms']['median']:.1f} ms "
              f"({row['p50_ms']['min']:.1f}-{row['p50_ms']['max']:.1f}), "
              f"p99 {row['p99_ms']['median']:.1f} ms "
              f"({row['p99_ms']['min']:.1f}-{row['p99_ms']['max']:.1f})")
    RESULTS.write_text(json.dumps({**figures, "date": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
