"""What the fault-injection tests share: a QoS 1 flow of numbered readings over a few
signals, and a PostgreSQL server of their own to stop and start."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from bench.mosquitto import free_port
from tests.conftest import Publisher
from tests.gateway.test_process import OmbreProcess

SIGNALS = [("m1", "temp"), ("m1", "speed"), ("m2", "temp"), ("m2", "speed")]
PUBLISHER_BACKLOG = 200_000  # readings the publisher keeps while the broker is away
PAHO_MAX = 50_000  # unacked messages handed to paho: its packet ids wrap at 65,535


@dataclass
class Flow:
    """Reading k goes to SIGNALS[k % 4] with the value k // 4 (its sequence number on
    that signal) and a timestamp one millisecond per sequence number after `base_ms`,
    so every (signal, ts) is distinct and each stored series must be 0, 1, 2, ...

    While the broker is away the readings wait in a bounded backlog of the publisher's
    own, handed to paho only once paho has resent (and had acked) what it held: paho
    resends its held messages when the CONNACK arrives, and a message published from
    another thread around that moment would overtake them. A slow broker leaves them
    there too, so that paho never holds more messages than it has packet ids."""

    publisher: Publisher
    base_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000 - 60_000)
    sent: int = 0  # readings produced, in order
    handed: int = 0  # of which handed to paho
    acked: int = 0  # PUBACKs from the broker, counted in paho's thread (one writer)
    backlog: deque[tuple[str, bytes]] = field(default_factory=deque)
    resuming: bool = False

    def __post_init__(self) -> None:
        self.publisher.client.on_publish = self._on_publish

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason: object, properties: object) -> None:
        self.acked += 1

    def publish_until(self, count: int) -> None:
        """Produce readings up to `count` in all, and hand paho what it may send."""
        while self.sent < count:
            machine, signal = SIGNALS[self.sent % len(SIGNALS)]
            seq = self.sent // len(SIGNALS)
            self.backlog.append((f"plant/l1/{machine}/{signal}",
                                 orjson.dumps({"value": seq, "ts": self.base_ms + seq})))
            self.sent += 1
        assert len(self.backlog) <= PUBLISHER_BACKLOG, "the publisher's backlog is full"
        if not self.publisher.client.is_connected():
            self.resuming = True
            return
        if self.resuming and self.acked < self.handed:
            return  # paho is still resending what it held
        self.resuming = False
        while self.backlog and self.handed - self.acked < PAHO_MAX:
            info = self.publisher.publish(*self.backlog.popleft())
            # NO_CONN: the link dropped just now; paho keeps the message, resent in order.
            assert info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN), info.rc
            self.handed += 1

    def expected(self, signal_index: int) -> np.ndarray:
        """The values SIGNALS[signal_index] must hold once everything sent arrived."""
        return np.arange(len(range(signal_index, self.sent, len(SIGNALS))), dtype=np.float64)

    def lost(self, stored: list[np.ndarray]) -> int:
        """Readings sent that are not in `stored` (the stored values of each signal)."""
        return sum(len(np.setdiff1d(self.expected(k), v)) for k, v in enumerate(stored))

    def assert_each_stored_once(self, stored: list[np.ndarray]) -> None:
        for k, values in enumerate(stored):
            np.testing.assert_array_equal(values, self.expected(k))  # none lost, each once


def end(flow: Flow, ombre: OmbreProcess) -> None:
    """A fault test's last step, passed or failed: the flow's client closed, and the
    process killed if it still runs (the test failed before stopping it)."""
    flow.publisher.close()
    ombre.kill()


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program (initdb, pg_ctl) of the newest installed version."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed; `make test` installs it")
    return str(found[-1])


class PostgresCluster:
    """A PostgreSQL server of the test's own, on a free loopback port, that a test may
    stop and start: the shared server at 127.0.0.1:5432 is never touched. Its files
    live in a fresh directory under /tmp owned by the `postgres` user (the server
    refuses to run as root), removed by `destroy`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ombre-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres(postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                          "-A", "trust", "--no-sync")

    def _as_postgres(self, *argv: str) -> None:
        result = subprocess.run(["runuser", "-u", "postgres", "--", *argv],
                                capture_output=True, text=True, check=False)
        if result.returncode:
            pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root}")
        self._as_postgres(postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options,
                          "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stops the server the hard way (`-m immediate`: no checkpoint, every client
        cut off mid-transaction), like a crash; the next start recovers from its WAL."""
        self._as_postgres(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")

    def url(self, schema: str) -> str:
        """A SQLAlchemy URL on the database `postgres`, in `schema` (created here)."""
        with psycopg.connect(f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        return (f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
                f"?options=-csearch_path%3D{schema}")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root)


def rss_kb(pid: int) -> int:
    """The resident set size of a running process, in kB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def open_fds(pid: int) -> int:
    """How many file descriptors a running process holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Driven:
    """The flow at `rate` readings/s from `start`, into `ombre`."""

    flow: Flow
    ombre: OmbreProcess
    rate: int
    start: float = field(default_factory=time.monotonic)

    def mark(self) -> int:
        """Where the log ends now: pass it to `publish_for` as `since`, taken before the
        action that should make a line appear (a line logged in between counts)."""
        return self.ombre.log.stat().st_size

    def publish_for(self, seconds: float, until: str | None = None,
                    since: int | None = None) -> float:
        """Go on with the flow for `seconds`, or until the log has `until` after the
        point `since` (a `mark`; by default, the log's end now), then the time it took;
        fails if the process dies."""
        ombre = self.ombre
        assert ombre.process is not None
        since = self.mark() if since is None else since
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            self.flow.publish_until(int((time.monotonic() - self.start) * self.rate))
            if until and until.encode() in ombre.log.read_bytes()[since:]:
                return time.monotonic() - began
            assert ombre.process.poll() is None, ombre.log.read_text()[-3000:]
            time.sleep(0.01)
        assert until is None, f"no {until!r} in {seconds} s:\n{ombre.log.read_text()[-3000:]}"
        return seconds

    def drain(self, stored: Callable[[], int], timeout_s: float = 60) -> None:
        """Stop producing; wait until the broker acked and `stored()` counts everything."""
        total = self.flow.sent
        deadline = time.monotonic() + timeout_s
        while self.flow.acked < total or stored() < total:
            assert time.monotonic() < deadline, (
                f"the backlog never drained: {total} published, {self.flow.acked} acked by "
                f"the broker, {stored()} stored")
            self.flow.publish_until(total)
            time.sleep(0.1)
