"""`python -m bench`: every figure in one run, against one Mosquitto of its own.

1. ceiling: a bare paho subscriber drains a backlog of W1 messages (msg/s), over MQTT 5
   and over MQTT 3.1.1;
2. W1: Ombre drains the same backlog into SQLite (readings/s end to end), its MQTT
   source over MQTT 5 and over 3.1.1;
3. W2: the same with 100 readings per message, into SQLite, and into a
   VictoriaMetrics of its own through the InfluxDB sink;
4. the InfluxDB sink's outbox drain rate: W2 arrives while VictoriaMetrics is down,
   then it is started and the backlog is timed from the first write to the last;
5. latency: a live 5,000 readings/s flow, p50 and p99 from timestamp to commit, after
   a warm-up, from a load generator in a process of its own; three runs, with the
   median and the spread (and the load average before each, to see a busy machine);
6. Ombre's peak RSS.
Each drain resumes a persistent session prepared before the backlog is published, so
the publisher never competes with the subscriber being measured. Results go to
bench/results/latest.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import DEVICES, W2_READINGS, W2_SIGNALS, prepare_session
from bench.mosquitto import Mosquitto, find_binary
from bench.victoria import BINARY as VICTORIA_BINARY
from bench.victoria import VictoriaMetrics

W1_MESSAGES = 200_000
W2_MESSAGES = 20_000
LATENCY_RATE = 5_000
LATENCY_SECONDS = 20
LATENCY_WARMUP_S = 5  # left out of the percentiles
LATENCY_RUNS = 3
PROTOCOLS = ("5", "3.1.1")
RESULTS = Path(__file__).parent / "results" / "latest.json"


def child(module: str, *args: object, timeout: float = 600) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", module, *map(str, args)], check=True,
                         capture_output=True, text=True, timeout=timeout).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def ombre_config(port: int, workdir: Path, client_id: str, workload: str,
                 drift: bool = False, *, influx_url: str | None = None,
                 protocol: str = "5") -> Path:
    """The gateway's config for a workload; `drift` puts a CUSUM detector on each W2
    signal, with a baseline so wide (sigma 100) that they watch in control, raising
    nothing: the cost of watching, not of alerting. `influx_url` replaces the SQLite
    sink by an InfluxDB one, with a backoff of at most 1 s. `protocol` is the MQTT
    source's."""
    signals = [{"name": "value"}] + [{"name": f"s{j:02d}"} for j in range(W2_SIGNALS)]
    detectors = [{"signal": f"s{j:02d}", "mean": 12.0, "sigma": 100.0}
                 for j in range(W2_SIGNALS)] if drift else []
    machines = [{"id": f"dev-{i:02d}", "signals": signals, "drift": detectors}
                for i in range(DEVICES)]
    config: dict[str, Any] = {
        "data_dir": str(workdir / client_id),
        "sites": [{"id": "bench", "lines": [{"id": "line-1", "machines": machines}]}],
        "sources": [{
            "type": "mqtt", "name": "broker", "port": port, "client_id": client_id,
            "protocol": protocol,
            "subscriptions": [{
                "topic": "bench/{line}/{machine}/{signal}", "qos": 1,
                "format": "value" if workload == "w1" else "array",
                "ts_unit": "ms" if workload == "w1" else "us",
            }],
        }],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
    }
    if influx_url is not None:
        (workdir / "influx-token").write_text("unused\n")  # VictoriaMetrics reads none
        config["sinks"] = [{"type": "influxdb", "name": "influxdb", "url": influx_url,
                            "org": "bench", "bucket": "bench", "token": "${file:influx-token}"}]
        config["runtime"] = {"backoff_max_s": 1}
    path = workdir / f"{client_id}.json"
    path.write_text(json.dumps(config))
    return path


def drain(broker: Mosquitto, workdir: Path, client_id: str, workload: str,
          count: int, *shadow: str, protocol: str = "5") -> dict[str, Any]:
    """Loads the broker with `count` messages, then times the worker draining them;
    `shadow` ("shadow" or "drift") adds the shadow sink, without or with detectors."""
    config = ombre_config(broker.port, workdir, client_id, workload, "drift" in shadow,
                          protocol=protocol)
    prepare_session(broker.port, client_id, "bench/+/+/+")
    child("bench.loadgen", "--port", broker.port, "--workload", workload, "--count", count)
    per_message = 1 if workload == "w1" else W2_READINGS
    result = child("bench.worker", "--config", config, "--expect", count * per_message,
                   *(["--shadow"] if shadow else []))
    prepare_session(broker.port, client_id, None)
    return result


def influx_drain(broker: Mosquitto, workdir: Path, victoria: VictoriaMetrics,
                 outage: bool) -> dict[str, Any]:
    """W2 into VictoriaMetrics; with `outage`, W2 fills the outbox while it is down, and
    the result is the drain rate once it is started."""
    client_id = "ombre-w2o" if outage else "ombre-w2i"
    config = ombre_config(broker.port, workdir, client_id, "w2", influx_url=victoria.url)
    prepare_session(broker.port, client_id, "bench/+/+/+")
    child("bench.loadgen", "--port", broker.port, "--workload", "w2", "--count", W2_MESSAGES)
    if outage:
        victoria.stop()
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.worker", "--config", str(config), "--expect",
         str(W2_MESSAGES * W2_READINGS), *(["--outage"] if outage else [])],
        stdout=subprocess.PIPE, text=True,
    )
    assert worker.stdout is not None
    if outage:
        if worker.stdout.readline().strip() != "ready" or worker.stdout.readline().strip() \
                != "backlog":
            raise RuntimeError("the outage worker did not fill its outbox")
        victoria.start()
    out, _ = worker.communicate(timeout=600)
    prepare_session(broker.port, client_id, None)
    return dict(json.loads(out.strip().splitlines()[-1]))


def latency(broker: Mosquitto, workdir: Path, run: int) -> dict[str, Any]:
    """One live run: the worker, then the load generator (a process of its own) at
    LATENCY_RATE for LATENCY_SECONDS; the percentiles leave the warm-up out."""
    count = LATENCY_RATE * LATENCY_SECONDS
    client_id = f"ombre-latency-{run}"
    config = ombre_config(broker.port, workdir, client_id, "w1")
    load = os.getloadavg()[0]
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.worker", "--config", str(config), "--expect", str(count),
         "--warmup-s", str(LATENCY_WARMUP_S)],
        stdout=subprocess.PIPE, text=True,
    )
    assert worker.stdout is not None
    if worker.stdout.readline().strip() != "ready":
        raise RuntimeError("the latency worker did not start")
    child("bench.loadgen", "--port", broker.port, "--workload", "w1", "--count", count,
          "--rate", LATENCY_RATE)
    out, _ = worker.communicate(timeout=120)
    prepare_session(broker.port, client_id, None)  # else it keeps collecting the next run's
    return {**json.loads(out.strip().splitlines()[-1]), "load_before": load}


def ceiling_and_w1(broker: Mosquitto, workdir: Path, protocol: str) -> tuple[
        dict[str, Any], dict[str, Any]]:
    """The bare paho subscriber's rate and Ombre's W1 rate, both over `protocol`."""
    client_id = f"ceiling-{protocol}"
    prepare_session(broker.port, client_id, "bench/#")
    child("bench.loadgen", "--port", broker.port, "--workload", "w1", "--count", W1_MESSAGES)
    ceiling = child("bench.ceiling", "--port", broker.port, "--client-id", client_id,
                    "--count", W1_MESSAGES, "--protocol", protocol)
    prepare_session(broker.port, client_id, None)
    w1 = drain(broker, workdir, f"ombre-w1-{protocol}", "w1", W1_MESSAGES, protocol=protocol)
    return ceiling, w1


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f}, min {min(values):.1f}, max {max(values):.1f}"


def main() -> None:
    binary, victoria_binary = find_binary("mosquitto"), find_binary(VICTORIA_BINARY)
    if binary is None or victoria_binary is None:
        raise SystemExit("mosquitto or victoria-metrics is not installed: run `make bench`, "
                         "which installs them")
    with tempfile.TemporaryDirectory(prefix="ombre-bench-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto(binary, workdir, persistence=False)
        broker.start()
        (workdir / "victoria").mkdir()
        victoria = VictoriaMetrics(victoria_binary, workdir / "victoria")
        victoria.start()
        try:
            (ceiling, w1), (ceiling_311, w1_311) = (
                ceiling_and_w1(broker, workdir, p) for p in PROTOCOLS)
            w2 = drain(broker, workdir, "ombre-w2", "w2", W2_MESSAGES)
            w2_shadow = drain(broker, workdir, "ombre-w2s", "w2", W2_MESSAGES, "shadow")
            w2_drift = drain(broker, workdir, "ombre-w2d", "w2", W2_MESSAGES, "drift")
            w2_influx = influx_drain(broker, workdir, victoria, outage=False)
            outbox_drain = influx_drain(broker, workdir, victoria, outage=True)
            # VictoriaMetrics keeps merging what it took for a while: stopped, it leaves
            # the latency runs the machine (else the first run fell behind, 4,412/s).
            victoria.stop()
            runs = [latency(broker, workdir, i) for i in range(LATENCY_RUNS)]
        finally:
            broker.stop()
            victoria.stop()
    results = {
        "ceiling_msgs_per_s": round(ceiling["msgs_per_s"]),
        "w1_readings_per_s": round(w1["readings_per_s"]),
        "w1_ratio": round(w1["readings_per_s"] / ceiling["msgs_per_s"], 3),
        "ceiling_mqtt311_msgs_per_s": round(ceiling_311["msgs_per_s"]),
        "w1_mqtt311_readings_per_s": round(w1_311["readings_per_s"]),
        "w1_mqtt311_ratio": round(w1_311["readings_per_s"] / ceiling_311["msgs_per_s"], 3),
        "w1_mqtt311_vs_ceiling_mqtt5": round(w1_311["readings_per_s"] / ceiling["msgs_per_s"],
                                             3),
        "w2_readings_per_s": round(w2["readings_per_s"]),
        "w2_shadow_readings_per_s": round(w2_shadow["readings_per_s"]),
        "w2_drift_readings_per_s": round(w2_drift["readings_per_s"]),
        "drift_cost": round(1 - w2_drift["readings_per_s"] / w2_shadow["readings_per_s"], 3),
        "w2_influx_readings_per_s": round(w2_influx["readings_per_s"]),
        "w2_influx_vs_sqlite": round(w2_influx["readings_per_s"] / w2["readings_per_s"], 3),
        "influx_outbox_drain_readings_per_s": round(outbox_drain["readings_per_s"]),
        "p50_ms_at_5k": round(statistics.median(r["p50_ms"] for r in runs), 1),
        "p99_ms_at_5k": round(statistics.median(r["p99_ms"] for r in runs), 1),
        "p50_ms_at_5k_runs": [round(r["p50_ms"], 1) for r in runs],
        "p99_ms_at_5k_runs": [round(r["p99_ms"], 1) for r in runs],
        "p99_ms_at_5k_spread": spread([r["p99_ms"] for r in runs]),
        # below 5,000: that run fell behind, and its latency is the age of a backlog
        "latency_readings_per_s_runs": [round(r["readings_per_s"]) for r in runs],
        "load_average_before_runs": [round(r["load_before"], 2) for r in runs],
        "latency_warmup_s": LATENCY_WARMUP_S,
        "peak_rss_mb": round(max(w1["peak_rss_mb"], w2["peak_rss_mb"],
                                 *(r["peak_rss_mb"] for r in runs)), 1),
        "w1_peak_rss_mb": round(w1["peak_rss_mb"], 1),
        "w2_peak_rss_mb": round(w2["peak_rss_mb"], 1),
        "w2_influx_peak_rss_mb": round(w2_influx["peak_rss_mb"], 1),
        "latency_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
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
