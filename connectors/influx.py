"""The InfluxDB sink: writes the runtime's batches through influxdb-client's synchronous
v2 write API, as line protocol built from the batch arrays (connectors/line_protocol.py)
in requests of `batch_size` lines.

What an answer means:
- 2xx: written.
- 429, 5xx, a timeout or a connection error: `write` raises, and the runtime writes the
  same data again after a backoff; line protocol is idempotent on (series, timestamp).
- 401, 403 and 404 (bad token, unknown org or bucket): `write` raises too. The data is
  fine and the config is not; it waits in the outbox until the server accepts it.
- Any other 4xx refuses lines for good. The lines its body names (InfluxDB Cloud's and
  IOx's `error parsing line N`, InfluxDB 3's `line_number`) are quarantined with the
  server's message and the rest of the request is sent again (harmless where the
  server already wrote it). A body naming no line splits the request in halves, each
  sent again, down to the single lines that are refused: a 413, or InfluxDB OSS 2,
  which refuses a whole request for one line it cannot parse.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Sequence

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.rest import ApiException

from connectors.influx_config import InfluxSinkConfig
from connectors.line_protocol import LineLayout
from gateway.config import Plant
from gateway.types import Batch, Event, QuarantineRecord, SignalRegistry, Written

HEAD_BYTES = 256  # how much of a refused line the quarantine keeps
REASON_CHARS = 500  # how much of the server's message a quarantine record keeps
CONFIG_STATUSES = (401, 403, 404)  # the request was refused, not its lines
_PARSE_ERROR = re.compile(r"error parsing line (\d+) \(1-based\): ([^\n]*)")


class InfluxSink:
    """Writes to the InfluxDB 2 write API at `config.url` (or a server that speaks it).

    The runtime calls `connect` (again after a failed write), `write` from one task and
    `aclose` once; each runs the client in a worker thread, one at a time. `write`
    returns once every line is written or refused; the Written report lists the refused
    lines and counts the valueless readings. After `aclose`, `write` raises RuntimeError."""

    def __init__(self, config: InfluxSinkConfig, plant: Plant,
                 registry: SignalRegistry) -> None:
        self.name = config.name
        self._config = config
        self._layout = LineLayout(config, plant, registry)
        self._registry = registry
        self._lock = threading.Lock()  # a cancelled call's thread may still be running
        self._client: InfluxDBClient | None = None
        self._api: WriteApi | None = None

    async def connect(self) -> None:
        await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        self._close()
        with self._lock:
            config = self._config
            client = InfluxDBClient(config.url, config.token.get_secret_value(), org=config.org,
                                    timeout=int(config.timeout_s * 1000),
                                    enable_gzip=config.gzip)
            if not client.ping():
                client.close()
                raise ConnectionError(f"no answer from {config.url}/ping")
            self._client, self._api = client, client.write_api(write_options=SYNCHRONOUS)

    async def write(self, batch: Batch, events: Sequence[Event]) -> Written:
        return await asyncio.to_thread(self._write, batch, events)

    def _write(self, batch: Batch, events: Sequence[Event]) -> Written:
        readings, valueless = self._layout.reading_lines(batch)
        event_lines, valueless_events = self._layout.event_lines(events)
        lines = readings + event_lines
        refused: list[QuarantineRecord] = []
        with self._lock:
            if self._api is None:
                raise RuntimeError(f"sink {self.name} is not connected")
            size = self._config.batch_size
            for start in range(0, len(lines), size):
                chunk = range(start, min(start + size, len(lines)))
                for i, reason in self._send(self._api, lines, chunk).items():
                    refused.append(self._record(i, lines[i], reason, batch, events))
        return Written(refused, valueless + valueless_events)

    def _send(self, api: WriteApi, lines: list[str], chunk: Sequence[int]) -> dict[int, str]:
        """Writes lines[i] for i in chunk; returns the refused ones, index -> reason."""
        body = "\n".join(lines[i] for i in chunk).encode()
        try:
            api.write(self._config.bucket, self._config.org, body)  # precision: ns by default
        except ApiException as exc:
            status = int(exc.status or 0)
            reason = f"HTTP {status} from {self._config.url}: {str(exc.message)[:REASON_CHARS]}"
            if not 400 <= status < 500 or status == 429 or status in CONFIG_STATUSES:
                raise ConnectionError(reason) from None
            named = {chunk[k]: why for k, why in failing_lines(exc.body, len(chunk)).items()}
            if not named and len(chunk) == 1:
                return {chunk[0]: reason}
            if not named:
                half = len(chunk) // 2
                return self._send(api, lines, chunk[:half]) | self._send(api, lines, chunk[half:])
            rest = [i for i in chunk if i not in named]
            return ({i: f"HTTP {status} from {self._config.url}: {why[:REASON_CHARS]}"
                     for i, why in named.items()}
                    | (self._send(api, lines, rest) if rest else {}))
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectionError(f"{self._config.url}: {exc}") from None
        return {}

    def _record(self, i: int, line: str, reason: str, batch: Batch,
                events: Sequence[Event]) -> QuarantineRecord:
        if i < len(batch):
            info = self._registry.info(int(batch.signal_id[i]))
            topic, signal_id = f"{info.machine}/{info.signal}", info.id
        else:
            event = events[i - len(batch)]
            topic, signal_id = f"{event.machine}/{event.name}", None
        return QuarantineRecord(time.time_ns(), self.name, topic,
                                line.encode()[:HEAD_BYTES], reason, signal_id)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client, self._api = None, None


def failing_lines(body: object, n: int) -> dict[int, str]:
    """The lines (0-based, below n) that an error body names, each with its reason:
    InfluxDB Cloud and IOx answer {"line": N, "message": "error parsing line N
    (1-based): ..."} (one message line per bad line), InfluxDB 3 {"data":
    [{"line_number": N, "error_message": ...}]}. Empty when the body names none."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    message = str(doc.get("message", ""))
    found = {int(m[1]) - 1: m[2] for m in _PARSE_ERROR.finditer(message)}
    if isinstance(doc.get("line"), int):
        found.setdefault(doc["line"] - 1, message)
    for item in doc.get("data") or []:
        if isinstance(item, dict) and isinstance(item.get("line_number"), int):
            found.setdefault(item["line_number"] - 1, str(item.get("error_message", "")))
    return {k: why for k, why in found.items() if 0 <= k < n}
