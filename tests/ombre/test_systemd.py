"""`ombre run` under systemd's `Type=notify` with a watchdog, as systemd sees it: the
process's datagrams on the socket the test binds as NOTIFY_SOCKET (systemd is not PID 1
here). READY, pings every half period, none while an outbox call is stuck in its thread
(the test holds the outbox's write lock: SQLite waits 5 s, then fails), STOPPING."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from bench.mosquitto import Mosquitto
from tests.conftest import Publisher
from tests.gateway.test_process import write_config

WATCHDOG_S = 2.0


class Listener:
    """The NOTIFY_SOCKET: every datagram with the monotonic time it came."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._listen)
        self.thread.start()

    def _listen(self) -> None:
        while not self.done.is_set():
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue

    def pings(self, start: float, end: float) -> list[float]:
        return [t for t, m in self.got if m == "WATCHDOG=1" and start <= t < end]

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.sock.close()


def longest_gap(times: list[float], start: float, end: float) -> float:
    return max(b - a for a, b in itertools.pairwise([start, *times, end]))


def test_ready_pings_and_no_ping_while_the_outbox_is_stuck(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher) -> None:
    listener = Listener(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"),
           "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))}
    config = write_config(tmp_path, broker.port)
    log = tmp_path / "ombre.log"
    with log.open("wb") as out:
        ombre = subprocess.Popen([sys.executable, "-m", "ombre", "run", str(config)],
                                 stdout=out, stderr=out, env=env)
    try:
        deadline = time.monotonic() + 30
        # Calm once started: READY comes first, then the sinks and the source connect
        # (the shadow loads SQLAlchemy and migrates its database meanwhile).
        while not (any(m == "READY=1" for _, m in listener.got)
                   and all(f"{part} is up" in log.read_text()
                           for part in ("source broker", "sink shadow", "sink timeseries"))):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        calm = time.monotonic() + 1
        time.sleep(4)
        lock = sqlite3.connect(tmp_path / "data" / "gateway.sqlite", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        locked = time.monotonic()
        for i in range(50):  # the writer has something to commit
            publisher.publish("plant/l1/m1/temp", orjson.dumps({"value": i}))
        time.sleep(9)
        lock.rollback()
        lock.close()
        released = time.monotonic()
        time.sleep(3)
        ombre.send_signal(signal.SIGTERM)
        assert ombre.wait(30) == 0, log.read_text()
    finally:
        if ombre.poll() is None:
            ombre.kill()
            ombre.wait()
        listener.close()
    messages = [m for _, m in listener.got]
    assert messages[0] == "READY=1"
    assert messages.count("STOPPING=1") == 1  # at SIGTERM; pings go on while it drains
    # Calm, and once it commits again: a ping every half period, never a silence of a
    # whole period. Locked: SQLite's 5 s wait shows as a silence longer than the period,
    # which is what makes systemd restart a stuck gateway (pings stop once a call has
    # taken a period, and come back when it fails: at least 5 - 2 = 3 s without one).
    pings = listener.pings(calm - 1, released + 3)
    assert longest_gap(listener.pings(calm, locked), calm, locked) < WATCHDOG_S, pings
    assert longest_gap(listener.pings(locked, released), locked, released) > WATCHDOG_S, pings
    after = released + 1
    assert longest_gap(listener.pings(after, after + 2), after, after + 2) < WATCHDOG_S, pings
    assert "no watchdog ping" in log.read_text()
