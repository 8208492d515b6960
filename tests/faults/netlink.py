"""A faulty network link between a network namespace of the test's own and the host,
for the network fault tests: never the shared loopback.

This kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set), so the link is two
TUN devices, one moved into the namespace, with a relay in the test's process between
them: each IP packet read on one side is written on the other, after a delay, or
dropped. Delay with jitter reorders packets; a partition drops every packet (nothing
is refused: no RST, no ICMP). The namespace's side is `inner`, the host's `outer`.

Needs root (namespaces, /dev/net/tun) and iproute2's `ip`."""

from __future__ import annotations

import fcntl
import heapq
import itertools
import json
import os
import random
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.mosquitto import Mosquitto
from connectors.sqlite_ts import open_store
from tests.conftest import Publisher, plant_dict, require_binary
from tests.gateway.test_process import OmbreProcess

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
QUEUE_MAX = 50_000  # packets held for delay per direction; beyond, they are dropped
_ids = itertools.count()


@dataclass
class Faults:
    """What the link does to each packet, read by the relay at every packet."""

    delay_s: float = 0.0
    jitter_s: float = 0.0  # uniform in [-jitter, +jitter] around delay_s
    loss: float = 0.0  # probability of dropping a packet
    partitioned: bool = False  # drop everything


@dataclass
class Direction:
    """Packets relayed one way: counted, and held in a heap until their time."""

    source: int
    target: int
    forwarded: int = 0
    dropped: int = 0
    held: list[tuple[float, int, bytes]] = field(default_factory=list)


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class FaultyLink:
    """`with FaultyLink() as link:` creates the namespace `link.namespace` whose address
    `link.inner` reaches the host's `link.outer` through the relay; `link.faults` is
    changed at any time. Everything is deleted on exit, whatever happened."""

    def __init__(self, seed: int = 1) -> None:
        n = next(_ids)
        tag = f"{os.getpid() % 100_000}x{n}"
        self.namespace = f"ombre-faults-{tag}"
        self._devices = (f"oi{tag}", f"oo{tag}")  # at most 15 characters
        # A /30 of its own per link, away from what the host routes.
        net = 16 + (os.getpid() * 7 + n) % 4000
        prefix = f"10.{200 + net // 256 % 50}.{net % 256}"
        self.inner, self.outer = f"{prefix}.1", f"{prefix}.2"
        self.faults = Faults()
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._fds: list[int] = []
        self._thread: threading.Thread | None = None
        self.directions: list[Direction] = []
        self._order = itertools.count()  # ties in the heap keep arrival order

    def __enter__(self) -> FaultyLink:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        inner_dev, outer_dev = self._devices
        _run("ip", "netns", "add", self.namespace)
        self._fds = [_open_tun(inner_dev), _open_tun(outer_dev)]
        _run("ip", "link", "set", inner_dev, "netns", self.namespace)
        ns = ("ip", "netns", "exec", self.namespace)
        _run(*ns, "ip", "link", "set", "lo", "up")
        _run(*ns, "ip", "addr", "add", self.inner, "peer", self.outer, "dev", inner_dev)
        _run(*ns, "ip", "link", "set", inner_dev, "up")
        _run("ip", "addr", "add", self.outer, "peer", self.inner, "dev", outer_dev)
        _run("ip", "link", "set", outer_dev, "up")
        self.directions = [Direction(self._fds[0], self._fds[1]),
                           Direction(self._fds[1], self._fds[0])]
        self._thread = threading.Thread(target=self._relay, name="faulty-link", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for fd in self._fds:
            os.close(fd)  # deletes the (non-persistent) TUN device
        self._fds = []
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True,
                       check=False)

    def exec_argv(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def counts(self) -> tuple[int, int]:
        """Packets forwarded and dropped so far, both ways."""
        return (sum(d.forwarded for d in self.directions),
                sum(d.dropped for d in self.directions))

    def _relay(self) -> None:
        by_fd = {d.source: d for d in self.directions}
        while not self._stop.is_set():
            now = time.monotonic()
            due = min((d.held[0][0] for d in self.directions if d.held), default=now + 0.05)
            readable, _, _ = select.select(list(by_fd), [], [], max(0.0, min(due - now, 0.05)))
            for fd in readable:
                self._take(by_fd[fd])
            now = time.monotonic()
            for d in self.directions:
                while d.held and d.held[0][0] <= now:
                    _, _, packet = heapq.heappop(d.held)
                    self._write(d, packet)

    def _take(self, d: Direction) -> None:
        while True:
            try:
                packet = os.read(d.source, 65_536)
            except BlockingIOError:
                return
            faults = self.faults
            if (faults.partitioned or self._random.random() < faults.loss
                    or len(d.held) >= QUEUE_MAX):
                d.dropped += 1
                continue
            delay = faults.delay_s + self._random.uniform(-faults.jitter_s, faults.jitter_s)
            if delay <= 0:
                self._write(d, packet)
            else:
                heapq.heappush(d.held, (time.monotonic() + delay, next(self._order),
                                        packet))

    @staticmethod
    def _write(d: Direction, packet: bytes) -> None:
        try:
            os.write(d.target, packet)
            d.forwarded += 1
        except OSError:  # the device's queue is full: lost, like on a wire
            d.dropped += 1


class OmbreInNamespace(OmbreProcess):
    """`ombre run` started inside a FaultyLink's namespace."""

    def __init__(self, link: FaultyLink, config: Path, log: Path) -> None:
        super().__init__(config, log)
        self._link = link

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._started_at = log.tell()
            self.process = subprocess.Popen(
                self._link.exec_argv(sys.executable, "-m", "ombre", "run", str(self.config)),
                stdout=log, stderr=log)


def link_broker(link: FaultyLink, tmp_path: Path) -> Mosquitto:
    """A Mosquitto started on the host's side of the link, its files in tmp_path/mosquitto;
    the caller stops it."""
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = Mosquitto(require_binary("mosquitto"), workdir, host=link.outer)
    broker.start()
    return broker


def start_ombre(link: FaultyLink, broker: Mosquitto, tmp_path: Path,
                **source: object) -> OmbreInNamespace:
    """`ombre run` in the link's namespace, subscribed to `broker` across the link."""
    config = plant_dict(broker.port, tmp_path / "data")
    config["sources"][0].update(host=link.outer, **source)
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(config))
    ombre = OmbreInNamespace(link, path, tmp_path / "ombre.log")
    ombre.start()
    ombre.wait_for_log("source broker is up")
    return ombre


def wait_subscribed(publisher: Publisher, data: Path, timeout_s: float = 30) -> None:
    """Wait until Ombre's subscription is in place at the broker: "source broker is up"
    comes with the CONNACK, before the SUBACK, and across a slow link a flow begun then
    would lose what it published first (the broker keeps only what a session
    subscribed to). Probes go to m3/temp, outside the flow's signals."""
    deadline = time.monotonic() + timeout_s
    probe = 0
    while not len(stored_values(data, "m3", "temp")):
        assert time.monotonic() < deadline, "Ombre never stored a probe"
        publisher.publish("plant/l1/m3/temp", json.dumps({"value": probe}))
        probe += 1
        time.sleep(0.2)


def stored_values(data: Path, machine: str, signal: str) -> np.ndarray:
    path = data / "timeseries.sqlite"
    if not path.exists():
        return np.empty(0)
    with open_store(path) as store:
        return store.read(machine, signal, 0, 2**62)[1]
