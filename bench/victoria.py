"""A VictoriaMetrics child process on a free loopback port with a data directory of its
own, for the tests and the benchmark. It accepts the InfluxDB v2 write API
(`/api/v2/write`) and serves what it stored through its export API. It can be stopped
and started again on the same port and data directory.

What it stores of line protocol: the metric `<measurement>_<field>` with the tags as
labels; timestamps floored to the millisecond; a string field as the number it holds,
or 0 if it holds none. It runs with
`-dedup.minScrapeInterval=1ms`, which keeps one sample per series and millisecond:
idempotent on (series, ms) as InfluxDB is on (series, ns), so a batch written twice
is stored once."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.mosquitto import free_port

BINARY = "victoria-metrics"


@dataclass
class VictoriaMetrics:
    binary: str
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        self.port = self.port or free_port()
        log = (self.workdir / "victoria.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"-storageDataPath={self.workdir / 'data'}",
             f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y",
             "-dedup.minScrapeInterval=1ms", "-loggerLevel=ERROR"],
            stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"VictoriaMetrics did not start on port {self.port}; "
                                   f"see {self.workdir / 'victoria.log'}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def export(self, match: str) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
        """Every stored series matching the selector: its sorted labels (with __name__)
        -> its (ms timestamp, value) samples in time order. Flushes first, so every
        acknowledged write shows; a series exported in several blocks is merged."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=30).close()
        query = urllib.parse.urlencode({"match[]": match})
        series: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=60) as response:
            for line in response.read().splitlines():
                block: dict[str, Any] = json.loads(line)
                samples = series.setdefault(tuple(sorted(block["metric"].items())), [])
                samples += zip(block["timestamps"], block["values"], strict=True)
        return {key: sorted(samples) for key, samples in series.items()}
