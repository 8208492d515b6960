"""The InfluxDB sink against a real VictoriaMetrics (the `victoria` fixture), read back
through its export API; the answers VictoriaMetrics cannot give (a 400 naming bad lines,
503, 429) come from a small InfluxDB 2 front that forwards what it accepts to it."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import sqlite3
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bench.victoria import VictoriaMetrics
from connectors.influx import failing_lines
from connectors.line_protocol import LineLayout
from connectors.replay import ReplaySource
from gateway.config_load import ConfigError
from gateway.runtime import Gateway
from gateway.types import Batch, Event, Quality
from ombre.app import build_context, build_gateway, build_sink
from ombre.config import OmbreConfig, load_config, validate_config
from tests.conftest import wait_until

SIGNALS = [{"name": "temp", "unit": "degC"}, {"name": "speed"},
           {"name": "state", "type": "string"}]
MS = 1_000_000
STALL_S = 1.0  # how long the InfluxDB front stalls when told to


def plant(data_dir: Path, url: str, site: str, **sink: object) -> OmbreConfig:
    """Two machines on one line: m1 of type `press`, m2 of none (its measurement is the
    site id); one influxdb sink and no shadow."""
    return validate_config({
        "data_dir": str(data_dir),
        "sites": [{"id": site, "lines": [{"id": "l1", "machines": [
            {"id": "m1", "type": "press", "signals": SIGNALS},
            {"id": "m2", "signals": SIGNALS}]}]}],
        "sinks": [{"type": "influxdb", "name": "tsdb", "url": url, "org": "ombre",
                   "bucket": "plant", "token": SecretStr("unused"), **sink}],
        "shadow": {"enabled": False},
        "runtime": {"flush_interval_ms": 20, "backoff_initial_s": 0.05, "backoff_max_s": 0.5},
    })


def rfc3339(ns: int) -> str:
    whole = datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ns % 10**9:09d}Z"


def recording(path: Path, n: int, base_ns: int) -> Path:
    """n readings per number signal of each machine, 1 ms and 1 µs apart (so that the
    nanoseconds show), and a state event every 100 readings."""
    lines = []
    for i in range(n):
        ts = base_ns + i * MS + i * 1_000
        for machine in ("m1", "m2"):
            lines.append({"ts": rfc3339(ts), "machine": machine, "signal": "temp",
                          "value": i * 0.25})
            lines.append({"ts": rfc3339(ts), "machine": machine, "signal": "speed",
                          "value": 1000 + i})
            if i % 100 == 0:
                lines.append({"ts": rfc3339(ts), "machine": machine, "signal": "state",
                              "value": "RUNNING" if i % 200 else "IDLE"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


async def replay(config: OmbreConfig, path: Path, settled: Callable[[Gateway], bool]) -> Gateway:
    """Runs the gateway with the recording as its source until `settled`, then stops it."""
    done = asyncio.Event()
    source = ReplaySource(path, config, config.registry(), speed=None, on_done=done.set)
    gateway, outbox = build_gateway(config, sources=[source])
    stop, force = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, force), name="test:gateway")
    try:
        await wait_until(done.is_set, what="the recording to be read")
        await wait_until(lambda: settled(gateway), what="the sink to settle")
    finally:
        stop.set()
        await task
        outbox.close()
    return gateway


def by_labels(series: dict[Any, list[tuple[int, float]]]) -> dict[str, list[tuple[int, float]]]:
    """Exported series keyed by "name machine signal"."""
    out = {}
    for key, samples in series.items():
        labels = dict(key)
        out[f"{labels['__name__']} {labels['machine']} {labels['signal']}"] = samples
    return out


@pytest.mark.parametrize("gzip_on", [False, True], ids=["plain", "gzip"])
async def test_readings_and_events_arrive_exactly_through_the_runtime(
        victoria: VictoriaMetrics, tmp_path: Path, gzip_on: bool) -> None:
    site = f"site-{uuid.uuid4().hex[:8]}"
    config = plant(tmp_path / "data", victoria.url, site, gzip=gzip_on, batch_size=700)
    n, base = 3000, (time.time_ns() - 3600 * 10**9) // 10**9 * 10**9
    gateway = await replay(config, recording(tmp_path / "rec.jsonl", n, base),
                           lambda g: g.counters.connector("tsdb", "sink").readings == 4 * n
                           and g.counters.connector("tsdb", "sink").events == 2 * n // 100)
    sink = gateway.counters.connector("tsdb", "sink")
    assert (sink.quarantined, sink.retries, sink.valueless) == (0, 0, 0)
    stored = by_labels(victoria.export(f'{{site="{site}"}}'))
    assert sorted(stored) == sorted([
        "press_value m1 temp", "press_value m1 speed", "events_value m1 state",
        f"{site}_value m2 temp", f"{site}_value m2 speed", "events_value m2 state"])
    ms = [(base + i * MS + i * 1_000) // MS for i in range(n)]  # stored: ns floored to ms
    for measurement, machine in (("press", "m1"), (site, "m2")):
        assert stored[f"{measurement}_value {machine} temp"] == [
            (t, i * 0.25) for i, t in enumerate(ms)]
        assert stored[f"{measurement}_value {machine} speed"] == [
            (t, 1000.0 + i) for i, t in enumerate(ms)]
        # VictoriaMetrics stores a string field that is no number as 0: the count and
        # times are what it shows of events
        assert stored[f"events_value {machine} state"] == [(t, 0.0) for t in ms[::100]]
    labels = next(dict(k) for k in victoria.export(f'{{site="{site}",machine="m1"}}')
                  if dict(k)["signal"] == "temp")
    assert labels == {"__name__": "press_value", "site": site, "line": "l1", "machine": "m1",
                      "signal": "temp", "unit": "degC"}


async def test_timestamps_go_in_ns_and_victoria_keeps_ms(victoria: VictoriaMetrics,
                                                         tmp_path: Path) -> None:
    """What is true of the precision: the sink sends every nanosecond; VictoriaMetrics
    floors to the millisecond and, deduplicating, keeps one sample per series and ms."""
    site = f"site-{uuid.uuid4().hex[:8]}"
    config = plant(tmp_path, victoria.url, site)
    base = (time.time_ns() - 600 * 10**9) // MS * MS
    ts = np.array([base + 999_999, base + MS + 1, base + MS + 500_000], np.int64)
    batch = Batch(ts, np.zeros(3, np.int32), np.array([1.0, 2.0, 3.0]), np.zeros(3, np.uint8))
    lines, _ = LineLayout(config.sinks[0], config, config.registry()).reading_lines(batch)
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(t) for t in ts.tolist()]
    sink = build_sink(config.sinks[0], build_context(config))
    await sink.connect()
    try:
        await sink.write(batch, [])
    finally:
        await sink.aclose()
    [samples] = victoria.export(f'{{site="{site}"}}').values()
    assert [t for t, _ in samples] == [base // MS, base // MS + 1]
    assert samples[0][1] == 1.0
    assert samples[1][1] in (2.0, 3.0)  # one of the two in that millisecond


async def test_nan_inf_and_bad_quality_are_kept_as_quality_and_counted(
        victoria: VictoriaMetrics, tmp_path: Path) -> None:
    site = f"site-{uuid.uuid4().hex[:8]}"
    config = plant(tmp_path, victoria.url, site)
    sink = build_sink(config.sinks[0], build_context(config))
    base = (time.time_ns() - 600 * 10**9) // MS * MS
    values = np.array([1.5, np.nan, np.inf, -np.inf, 7.0])
    quality = np.array([0, Quality.BAD, 0, 0, Quality.UNCERTAIN | Quality.TS_RECEIVED],
                       np.uint8)
    batch = Batch(base + np.arange(5, dtype=np.int64) * MS, np.zeros(5, np.int32), values,
                  quality)
    events = [Event(base, "m1", "state", None, Quality.BAD), Event(base + MS, "m1", "state", 42),
              Event(base + 2 * MS, "m1", "state", float("nan"))]
    await sink.connect()
    try:
        written = await sink.write(batch, events)
    finally:
        await sink.aclose()
    assert written.valueless == 3 + 2
    assert written.refused == []
    stored = by_labels(victoria.export(f'{{site="{site}"}}'))
    t0 = base // MS
    assert stored["press_value m1 temp"] == [(t0, 1.5), (t0 + 4, 7.0)]
    assert stored["press_quality m1 temp"] == [(t0 + 1, 1.0), (t0 + 2, 0.0), (t0 + 3, 0.0),
                                               (t0 + 4, 6.0)]
    assert stored["events_quality m1 state"] == [(t0, 1.0), (t0 + 2, 0.0)]
    # VictoriaMetrics reads a string field holding a number as that number (else as 0)
    assert stored["events_value m1 state"] == [(t0 + 1, 42.0)]


# -- escaping: any name makes exactly one series per signal, read back exactly ----------

NAME = re.compile(r"[^/#+\s]([^/#+]*[^/#+\s])?")
SPECIAL = st.sampled_from([" ", ",", "=", '"', "'", "\\", "\t", "é", "€", "😀", "ß", "_", "."])
CHARS = SPECIAL | st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\n\r")
name = st.text(CHARS, min_size=1, max_size=12).filter(lambda s: bool(NAME.fullmatch(s)))
free_text = st.text(CHARS | st.sampled_from(["#", "/", "+"]), max_size=12).filter(
    lambda s: bool(s.strip()))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.fixed_dictionaries({
    "site": name, "machines": st.lists(name, min_size=2, max_size=2, unique=True),
    "type": st.none() | free_text, "signals": st.lists(name, min_size=2, max_size=2, unique=True),
    "unit": st.none() | free_text}))
def test_names_never_make_extra_series_nor_break_a_line(victoria: VictoriaMetrics,
                                                        names: dict[str, Any]) -> None:
    site, machines, machine_type = names["site"], names["machines"], names["type"]
    signals, unit = names["signals"], names["unit"]
    line = f"line-{uuid.uuid4().hex}"
    config = validate_config({
        "sites": [{"id": site, "lines": [{"id": line, "machines": [
            {"id": m, "type": machine_type, "signals": [{"name": s, "unit": unit}
                                                        for s in signals]}
            for m in machines]}]}],
        "sinks": [{"type": "influxdb", "url": victoria.url, "org": "o", "bucket": "b",
                   "token": SecretStr("unused")}],
    })
    registry = config.registry()
    n = len(registry)
    ts = np.full(n, (time.time_ns() - 600 * 10**9) // MS * MS, np.int64)
    batch = Batch(ts, np.arange(n, dtype=np.int32), np.arange(n) + 0.5, np.zeros(n, np.uint8))
    sink = build_sink(config.sinks[0], build_context(config, registry))

    async def write() -> None:
        await sink.connect()
        try:
            await sink.write(batch, [])
        finally:
            await sink.aclose()

    asyncio.run(write())
    measurement = machine_type if machine_type else site
    measurement = "\\" + measurement if measurement.startswith("#") else measurement
    expected = {}
    for info in registry:
        labels = {"__name__": f"{measurement}_value", "site": site, "line": line,
                  "machine": info.machine, "signal": info.signal}
        if unit:
            labels["unit"] = unit
        expected[tuple(sorted(labels.items()))] = [(int(ts[0]) // MS, info.id + 0.5)]
    assert victoria.export(f'{{line="{line}"}}') == expected


# -- answers only an InfluxDB 2 gives: a front that forwards to VictoriaMetrics ---------

def test_victoria_answers_204_to_a_bad_line_and_skips_it(victoria: VictoriaMetrics) -> None:
    """Why the 400 cases need a front: VictoriaMetrics never answers them."""
    site = f"site-{uuid.uuid4().hex[:8]}"
    ms = (time.time_ns() - 600 * 10**9) // MS
    body = f"m,site={site} value=1 {ms * MS}\nnot line protocol\nm,site={site} value=2 " \
           f"{(ms + 1) * MS}"
    with urllib.request.urlopen(urllib.request.Request(
            f"{victoria.url}/api/v2/write?org=o&bucket=b", data=body.encode()),
            timeout=30) as response:
        assert response.status == 204
    assert list(victoria.export(f'{{site="{site}"}}').values()) == [[(ms, 1.0), (ms + 1, 2.0)]]


class InfluxFront:
    """An HTTP server answering the InfluxDB 2 write API in a thread. It first answers
    the statuses of `script` (503, 429...; 0 answers 204 after STALL_S, too late for a
    client with a shorter timeout, having written nothing), then: a line for which
    `refuse` is true is refused with 400, the rest forwarded to VictoriaMetrics. With
    `names_lines`, as InfluxDB Cloud does, the 400 names each refused line by number
    and the rest is written; without, as InfluxDB OSS 2 does for a line it cannot
    parse, it names no number and nothing of the request is written."""

    def __init__(self, victoria: VictoriaMetrics, refuse: Callable[[bytes], bool],
                 script: list[int] | None = None, names_lines: bool = True) -> None:
        self.requests = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(204)  # /ping
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status, answer = front.answer(body, self.path.split("?", 1)[1])
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer).encode() if answer else b"")

            def log_message(self, *args: object) -> None:
                pass

        self._victoria, self._refuse = victoria, refuse
        self._script, self._names_lines = list(script or []), names_lines
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, body: bytes, query: str) -> tuple[int, dict[str, Any] | None]:
        self.requests += 1
        if self._script:
            status = self._script.pop(0)
            if status == 0:
                time.sleep(STALL_S)
                return 204, None
            return status, {"code": "unavailable", "message": f"scripted {status}"}
        lines = body.split(b"\n")
        bad = [i for i, line in enumerate(lines) if self._refuse(line)]
        if bad and not self._names_lines:
            return 400, {"code": "invalid",
                         "message": f"unable to parse '{lines[bad[0]].decode()}': bad line"}
        good = b"\n".join(line for i, line in enumerate(lines) if i not in bad)
        if good:
            urllib.request.urlopen(urllib.request.Request(
                f"{self._victoria.url}/api/v2/write?{query}", data=good), timeout=30).close()
        if not bad:
            return 204, None
        message = "\n".join(f"error parsing line {i + 1} (1-based): field type conflict"
                            for i in bad)
        return 400, {"code": "invalid", "line": bad[0] + 1, "message": message}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def front_factory(victoria: VictoriaMetrics) -> Iterator[Callable[..., InfluxFront]]:
    fronts: list[InfluxFront] = []

    def make(refuse: Callable[[bytes], bool] = lambda line: False,
             script: list[int] | None = None, names_lines: bool = True) -> InfluxFront:
        fronts.append(InfluxFront(victoria, refuse, script, names_lines))
        return fronts[-1]

    yield make
    for front in fronts:
        front.close()


def quarantine(data_dir: Path) -> list[tuple[str, str, bytes, str, int | None]]:
    db = sqlite3.connect(data_dir / "gateway.sqlite")
    try:
        return db.execute("SELECT source, topic, head, reason, signal_id FROM quarantine "
                          "ORDER BY id").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("names_lines", [True, False], ids=["cloud-400", "oss2-400"])
async def test_a_400_quarantines_only_the_refused_line(
        victoria: VictoriaMetrics, front_factory: Callable[..., InfluxFront], tmp_path: Path,
        names_lines: bool) -> None:
    n, bad_i = 500, 321
    bad_value = f"{1000 + bad_i}.0".encode()
    bad_line = b"machine=m2,signal=speed value=" + bad_value + b" "
    front = front_factory(lambda line: bad_line in line, names_lines=names_lines)
    site = f"site-{uuid.uuid4().hex[:8]}"
    config = plant(tmp_path / "data", front.url, site, batch_size=128)
    base = (time.time_ns() - 3600 * 10**9) // 10**9 * 10**9
    gateway = await replay(config, recording(tmp_path / "rec.jsonl", n, base),
                           lambda g: g.counters.connector("tsdb", "sink").readings == 4 * n - 1)
    sink = gateway.counters.connector("tsdb", "sink")
    assert (sink.quarantined, sink.events, sink.retries) == (1, 10, 0)
    m2_speed = config.registry().id_of("m2", "speed")
    assert gateway.counters.signal_quarantined[m2_speed] == 1
    assert gateway.counters.signal_written[m2_speed] == n - 1
    [(source, topic, head, reason, signal_id)] = quarantine(tmp_path / "data")
    assert (source, topic, signal_id) == ("tsdb", "m2/speed", m2_speed)
    assert head.startswith(f"{site},site={site},line=l1,".encode() + bad_line)
    assert reason.startswith(f"HTTP 400 from {front.url}: ")
    assert ("field type conflict" if names_lines else "unable to parse") in reason
    stored = by_labels(victoria.export(f'{{site="{site}"}}'))
    assert [v for _, v in stored[f"{site}_value m2 speed"]] == [
        1000.0 + i for i in range(n) if i != bad_i]
    assert len(stored["press_value m1 speed"]) == n


async def test_5xx_429_401_and_timeouts_are_retried_then_written(
        victoria: VictoriaMetrics, front_factory: Callable[..., InfluxFront],
        tmp_path: Path) -> None:
    front = front_factory(script=[503, 500, 429, 401, 0])
    site = f"site-{uuid.uuid4().hex[:8]}"
    config = plant(tmp_path / "data", front.url, site, timeout_s=STALL_S / 2)
    n = 200
    base = (time.time_ns() - 3600 * 10**9) // 10**9 * 10**9
    gateway = await replay(config, recording(tmp_path / "rec.jsonl", n, base),
                           lambda g: g.counters.connector("tsdb", "sink").readings == 4 * n)
    sink = gateway.counters.connector("tsdb", "sink")
    assert (sink.retries, sink.quarantined) == (5, 0)
    assert "timed out" in (sink.last_error or "")
    assert quarantine(tmp_path / "data") == []
    stored = by_labels(victoria.export(f'{{site="{site}"}}'))
    assert [v for _, v in stored["press_value m1 temp"]] == [i * 0.25 for i in range(n)]


def test_failing_lines_reads_the_bodies_influxdb_answers() -> None:
    cloud = {"code": "invalid", "line": 2, "message": "error parsing line 2 (1-based): "
             "Invalid measurement\nerror parsing line 5 (1-based): bad timestamp"}
    assert failing_lines(json.dumps(cloud).encode(), 10) == {
        1: "Invalid measurement", 4: "bad timestamp"}
    v3 = {"error": "partial write of line protocol occurred", "data": [
        {"original_line": "x", "line_number": 3, "error_message": "no fields"}]}
    assert failing_lines(json.dumps(v3), 10) == {2: "no fields"}
    assert failing_lines(json.dumps(cloud), 3) == {1: "Invalid measurement"}  # in range only
    assert failing_lines(b'{"code": "invalid", "message": "unable to parse"}', 10) == {}
    assert failing_lines(b"<html>bad gateway</html>", 10) == {}


# -- config errors, located ---------------------------------------------------------------

PLANT_YAML = """\
data_dir: data
sites:
  - id: lyon
    lines:
      - id: l1
        machines:
          - id: m1
            type: {machine_type}
            signals: [{{name: temp}}]
sinks:
  - type: influxdb
    url: {url}
    org: ombre
    bucket: plant
{token}
"""


@pytest.mark.parametrize(("changes", "where", "expected"), [
    ({"url": "127.0.0.1:8086"}, "sinks[0].url", "expected a URL such as"),
    ({"url": "ftp://tsdb/"}, "sinks[0].url", "expected a URL such as"),
    ({"token": ""}, "sinks[0].token", "missing required key"),
    ({"token": "    token: ${INFLUX_TOKEN}"}, "sinks[0].token",
     "expected environment variable 'INFLUX_TOKEN' to be set"),
    ({"token": "    token: s3cr3t"}, "sinks[0].token", "write the secret as ${ENV_NAME}"),
    ({"token": "    token: ${T}\n    tags: [site, signal]"}, "sinks[0].tags",
     "expected a list with 'machine'"),
    ({"token": "    token: ${T}\n    value_field: _value"}, "sinks[0].value_field",
     "not starting with '_'"),
    ({"machine_type": '"press\\nline"'}, "sites[0].lines[0].machines[0].type",
     "expected no line break"),
])
def test_config_errors_name_the_key(tmp_path: Path, changes: dict[str, str], where: str,
                                    expected: str) -> None:
    fields = {"machine_type": "press", "url": "http://127.0.0.1:8086",
              "token": "    token: ${T}", **changes}
    path = tmp_path / "plant.yaml"
    path.write_text(PLANT_YAML.format(**fields))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"T": "token"})
    [problem] = caught.value.problems
    assert problem.path == where
    assert expected in problem.message
    assert problem.line is not None
