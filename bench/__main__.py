"""`python -m bench`: every figure in one run, against one Mosquitto of its own.

1. ceiling: a bare paho subscriber drains a backlog of W1 messages (msg/s);
2. W1: Ombre drains the same backlog into SQLite (readings/s end to end);
3. W2: the same with 100 readings per message;
4. latency: a live 5,000 readings/s flow, p50 and p99 from timestamp to commit;
5. Ombre's peak RSS.
Each drain resumes a persistent session prepared before the backlog is published, so
the publisher never competes with the subscriber being measured. Results go to
bench/results/latest.json."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import DEVICES, W2_READINGS, W2_SIGNALS, prepare_session
from bench.mosquitto import Mosquitto, find_binary

W1_MESSAGES = 200_000
W2_MESSAGES = 20_000
LATENCY_RATE = 5_000
LATENCY_SECONDS = 20
RESULTS = Path(__file__).parent / "results" / "latest.json"


def child(module: str, *args: object, timeout: float = 600) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", module, *map(str, args)], check=True,
                         capture_output=True, text=True, timeout=timeout).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def ombre_config(port: int, workdir: Path, client_id: str, workload: str,
                 drift: bool = False) -> Path:
    """The gateway's config for a workload; `drift` puts a CUSUM detector on each W2
    signal, with a baseline so wide (sigma 100) that they watch in control, raising
    nothing: the cost of watching, not of alerting."""
    signals = [{"name": "value"}] + [{"name": f"s{j:02d}"} for j in range(W2_SIGNALS)]
    detectors = [{"signal": f"s{j:02d}", "mean": 12.0, "sigma": 100.0}
                 for j in range(W2_SIGNALS)] if drift else []
    machines = [{"id": f"dev-{i:02d}", "signals": signals, "drift": detectors}
                for i in range(DEVICES)]
    config = {
        "data_dir": str(workdir / client_id),
        "sites": [{"id": "bench", "lines": [{"id": "line-1", "machines": machines}]}],
        "sources": [{
            "type": "mqtt", "name": "broker", "port": port, "client_id": client_id,
            "subscriptions": [{
                "topic": "bench/{line}/{machine}/{signal}", "qos": 1,
                "format": "value" if workload == "w1" else "array",
                "ts_unit": "ms" if workload == "w1" else "us",
            }],
        }],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
    }
    path = workdir / f"{client_id}.json"
    path.write_text(json.dumps(config))
    return path


def drain(broker: Mosquitto, workdir: Path, client_id: str, workload: str,
          count: int, *shadow: str) -> dict[str, Any]:
    """Loads the broker with `count` messages, then times the worker draining them;
    `shadow` ("shadow" or "drift") adds the shadow sink, without or with detectors."""
    config = ombre_config(broker.port, workdir, client_id, workload, "drift" in shadow)
    prepare_session(broker.port, client_id, "bench/+/+/+")
    child("bench.loadgen", "--port", broker.port, "--workload", workload, "--count", count)
    per_message = 1 if workload == "w1" else W2_READINGS
    result = child("bench.worker", "--config", config, "--expect", count * per_message,
                   *(["--shadow"] if shadow else []))
    prepare_session(broker.port, client_id, None)
    return result


def latency(broker: Mosquitto, workdir: Path) -> dict[str, Any]:
    count = LATENCY_RATE * LATENCY_SECONDS
    config = ombre_config(broker.port, workdir, "ombre-latency", "w1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.worker", "--config", str(config), "--expect", str(count)],
        stdout=subprocess.PIPE, text=True,
    )
    assert worker.stdout is not None
    if worker.stdout.readline().strip() != "ready":
        raise RuntimeError("the latency worker did not start")
    child("bench.loadgen", "--port", broker.port, "--workload", "w1", "--count", count,
          "--rate", LATENCY_RATE)
    out, _ = worker.communicate(timeout=120)
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    binary = find_binary("mosquitto")
    if binary is None:
        raise SystemExit("mosquitto is not installed: run `make bench`, which installs it")
    with tempfile.TemporaryDirectory(prefix="ombre-bench-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto(binary, workdir, persistence=False)
        broker.start()
        try:
            prepare_session(broker.port, "ceiling", "bench/#")
            child("bench.loadgen", "--port", broker.port, "--workload", "w1",
                  "--count", W1_MESSAGES)
            ceiling = child("bench.ceiling", "--port", broker.port, "--client-id", "ceiling",
                            "--count", W1_MESSAGES)
            prepare_session(broker.port, "ceiling", None)
            w1 = drain(broker, workdir, "ombre-w1", "w1", W1_MESSAGES)
            w2 = drain(broker, workdir, "ombre-w2", "w2", W2_MESSAGES)
            w2_shadow = drain(broker, workdir, "ombre-w2s", "w2", W2_MESSAGES, "shadow")
            w2_drift = drain(broker, workdir, "ombre-w2d", "w2", W2_MESSAGES, "drift")
            lat = latency(broker, workdir)
        finally:
            broker.stop()
    results = {
        "ceiling_msgs_per_s": round(ceiling["msgs_per_s"]),
        "w1_readings_per_s": round(w1["readings_per_s"]),
        "w1_ratio": round(w1["readings_per_s"] / ceiling["msgs_per_s"], 3),
        "w2_readings_per_s": round(w2["readings_per_s"]),
        "w2_shadow_readings_per_s": round(w2_shadow["readings_per_s"]),
        "w2_drift_readings_per_s": round(w2_drift["readings_per_s"]),
        "drift_cost": round(1 - w2_drift["readings_per_s"] / w2_shadow["readings_per_s"], 3),
        "p50_ms_at_5k": round(lat["p50_ms"], 1),
        "p99_ms_at_5k": round(lat["p99_ms"], 1),
        "peak_rss_mb": round(max(w1["peak_rss_mb"], w2["peak_rss_mb"], lat["peak_rss_mb"]), 1),
        "w1_peak_rss_mb": round(w1["peak_rss_mb"], 1),
        "w2_peak_rss_mb": round(w2["peak_rss_mb"], 1),
        "latency_peak_rss_mb": round(lat["peak_rss_mb"], 1),
        "ceiling_peak_rss_mb": round(ceiling["peak_rss_mb"], 1),
        "w1_messages": W1_MESSAGES,
        "w2_readings": W2_MESSAGES * W2_READINGS,
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
