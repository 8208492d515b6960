"""python-snap7's own S7 server as the PLC of the S7 tests: in a thread of the test
(`plc`), or as a process of its own (`PlcProcess`, `python -m tests.connectors.s7_plc
PORT`) for the tests that kill, restart or freeze (SIGSTOP) it; and the helpers that
build a config for it.

snap7's server keeps a CPU state but does not serve it: `Plc` answers SZL 0x0424 with
it, as a real CPU does, and counts the read requests it answers, so the tests can
check the grouping.
"""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from snap7.server import CPUState, Server
from snap7.type import SrvArea

from bench.mosquitto import wait_for_port
from ombre.config import OmbreConfig, validate_config

FUNCTION_READ = 0x04
DB_SIZES = {10: 64, 5: 40, 20: 2048}
AREA_SIZES = {SrvArea.MK: 256, SrvArea.PE: 16, SrvArea.PA: 16}


class Plc(Server):
    """A snap7 server that reports its CPU state (SZL 0x0424) and counts read requests.
    `memory` holds its areas: the DBs by number, and "M", "I", "Q"."""

    def __init__(self) -> None:
        super().__init__(log=False)
        self.read_requests = 0
        self._count_lock = threading.Lock()
        self.memory = {**{db: bytearray(size) for db, size in DB_SIZES.items()},
                       **{area.name: bytearray(size) for area, size in AREA_SIZES.items()}}
        for db in DB_SIZES:
            self.register_area(SrvArea.DB, db, self.memory[db])
        for area in AREA_SIZES:
            self.register_area(area, 0, self.memory[area.name])

    def run(self, running: bool) -> None:
        self.set_cpu_status(CPUState.RUN if running else CPUState.STOP)

    def _get_szl_data(self, szl_id: int, szl_index: int) -> bytes | None:
        if szl_id != 0x0424:
            return super()._get_szl_data(szl_id, szl_index)
        # LENTHDR 20, N_DR 1, then the record: event id, 0xFF, the mode (8 RUN, 4 STOP)
        mode = 0x08 if self.cpu_state == CPUState.RUN else 0x04
        return struct.pack(">HHHBB", 20, 1, 0x4301, 0xFF, mode) + bytes(16)

    def _process_request(self, request_data: bytes, client_address: tuple[str, int]
                         ) -> bytes | None:
        if len(request_data) > 10 and request_data[1] == 0x01 and \
                request_data[10] == FUNCTION_READ:
            with self._count_lock:
                self.read_requests += 1
        return super()._process_request(request_data, client_address)


def fill(plc: Plc) -> None:
    """The values the tests expect (see VALUES)."""
    db10, db5, m = plc.memory[10], plc.memory[5], plc.memory["MK"]
    db10[0] = 0b0000_0010  # DBX0.1
    struct.pack_into(">h", db10, 2, -1234)
    struct.pack_into(">f", db10, 4, 21.5)
    struct.pack_into(">i", db10, 8, -100_000)
    struct.pack_into(">I", db10, 12, 3_000_000_000)
    struct.pack_into(">d", db10, 16, 1.25e10)
    db10[24] = 200
    struct.pack_into(">H", db10, 26, 65535)
    struct.pack_into(">BB", db5, 20, 10, 3)  # STRING[10], 3 characters
    db5[22:25] = b"RUN"
    struct.pack_into(">h", m, 100, 4242)
    struct.pack_into(">f", m, 4, -3.5)
    m[10] = 0b0010_0000  # M10.5
    plc.memory["PE"][0] = 1  # I0.0
    plc.memory["PA"][0] = 0b10  # Q0.1


# (address, type, length, expected value): every address form and type
VALUES: list[tuple[str, str | None, int | None, float | str]] = [
    ("DB10.DBX0.1", None, None, 1.0),
    ("DB10.DBX0.0", None, None, 0.0),
    ("DB10.DBW2", None, None, -1234.0),
    ("DB10.DBD4", None, None, 21.5),
    ("DB10.DBD8", "DINT", None, -100_000.0),
    ("DB10.DBD12", "DWORD", None, 3_000_000_000.0),
    ("DB10.DBB16", "LREAL", None, 1.25e10),
    ("DB10.DBB24", None, None, 200.0),
    ("DB10.DBW26", "WORD", None, 65535.0),
    ("DB5.DBB20", "STRING", 10, "RUN"),
    ("MW100", None, None, 4242.0),
    ("MD4", None, None, -3.5),
    ("M10.5", None, None, 1.0),
    ("I0.0", None, None, 1.0),
    ("Q0.1", None, None, 1.0),
]


@contextmanager
def plc(port: int) -> Iterator[Plc]:
    """A running PLC in this process, filled with VALUES, in RUN. It listens on
    127.0.0.1 only: another test's connection may hold the port on 127.0.0.x."""
    server = Plc()
    fill(server)
    server.start_to("127.0.0.1", port)
    try:
        yield server
    finally:
        server.stop()


class PlcProcess:
    """The PLC as a child process on `port`, to kill, restart and freeze."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.connectors.s7_plc", str(self.port)],
            cwd=Path(__file__).parents[2])
        wait_for_port(self.port)

    def kill(self) -> None:
        assert self._process is not None
        self._process.kill()
        self._process.wait()

    def freeze(self, frozen: bool) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self.kill()


def source(port: int, items: list[dict[str, Any]], **settings: object) -> dict[str, Any]:
    return {"type": "s7", "name": "plc", "host": "127.0.0.1", "port": port, "slot": 1,
            "poll_interval_ms": 50, "timeout_s": 1, "items": items, **settings}


def config(data_dir: Path, sources: list[dict[str, Any]],
           signals: dict[str, list[dict[str, Any]]]) -> OmbreConfig:
    """`signals` per machine, the sources, the SQLite sink, a quick runtime."""
    return validate_config({
        "data_dir": str(data_dir),
        "sites": [{"id": "site", "lines": [{"id": "l1", "machines": [
            {"id": machine, "signals": sigs} for machine, sigs in signals.items()]}]}],
        "sources": sources,
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "shadow": {"enabled": False},
        "runtime": {"flush_interval_ms": 20, "backoff_initial_s": 0.05, "backoff_max_s": 0.5},
    })


def main() -> None:
    """Serve a filled PLC on the port given, until killed."""
    server = Plc()
    fill(server)
    server.start_to("127.0.0.1", int(sys.argv[1]))
    threading.Event().wait()


if __name__ == "__main__":
    main()
