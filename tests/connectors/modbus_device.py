"""A real Modbus TCP device for tests: pymodbus's server in this event loop on a free
port, serving one unit's four tables, counting the requests it receives (each one
read), and able to answer "busy", stop and start again; and a device that accepts TCP
connections but never answers. Also the config of a source reading it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ombre.config import OmbreConfig, validate_config

UNIT = 1
FUNCTIONS = {"co": 1, "di": 2, "hr": 3, "ir": 4}  # a table's read function code
BITS = 64  # coils and discrete inputs 0-63


def _runs(size: int, holes: set[int]) -> list[SimData]:
    """Registers 0..size-1 except `holes`, which answer illegal address."""
    blocks, start = [], None
    for address in range(size + 1):
        inside = address < size and address not in holes
        if inside and start is None:
            start = address
        elif not inside and start is not None:
            blocks.append(SimData(start, count=address - start, values=0,
                                  datatype=DataType.REGISTERS))
            start = None
    return blocks


class Device:
    """Holding and input registers 0..`size`-1 (except `holes`), coils and discrete
    inputs 0..BITS-1, all zero until set. `requests` lists each request received as
    (function code, address, count), and `answers` counts the answers sent; `busy` makes
    every valid read answer exception 6."""

    def __init__(self, port: int, size: int = 200, holes: Sequence[int] = ()) -> None:
        self.port = port
        self.requests: list[tuple[int, int, int]] = []
        self.answers = 0
        self.busy = False
        self._size, self._holes = size, set(holes)
        self._server: ModbusTcpServer | None = None
        self._values: list[tuple[int, int, list[int] | list[bool]]] = []

    async def start(self) -> None:
        bits = [SimData(0, count=BITS, values=False, datatype=DataType.BITS)]
        device = SimDevice(UNIT, simdata=(bits, list(bits), _runs(self._size, self._holes),
                                          _runs(self._size, self._holes)),
                           action=self._action)
        self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port),
                                       trace_pdu=self._trace)
        await self._server.serve_forever(background=True)
        for function, address, values in self._values:  # what was set before a restart
            await self._server.async_setValues(UNIT, function, address, values)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    async def set(self, table: str, address: int, values: list[int] | list[bool]) -> None:
        """Write registers (or bits) as the device's own program would."""
        self._values.append((FUNCTIONS[table], address, values))
        assert self._server is not None
        await self._server.async_setValues(UNIT, FUNCTIONS[table], address, values)

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            self.answers += 1
        else:
            self.requests.append((pdu.function_code, pdu.address, pdu.count))
        return pdu

    async def _action(self, function: int, start: int, address: int, count: int,  # noqa: PLR0917 - pymodbus's SimAction
                      registers: list[int], values: list[int] | list[bool] | None
                      ) -> ExcCodes | None:
        return ExcCodes.DEVICE_BUSY if self.busy and values is None else None


@asynccontextmanager
async def device(port: int, size: int = 200, holes: Sequence[int] = ()) -> AsyncIterator[Device]:
    served = Device(port, size, holes)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


@contextmanager
def frozen_device() -> Iterator[int]:
    """The port of a socket that listens but never accepts: connecting succeeds (the
    kernel completes the handshake), no request is ever answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def source(name: str, port: int, items: list[dict[str, Any]], **settings: Any) -> dict[str, Any]:
    return {"type": "modbus", "name": name, "host": "127.0.0.1", "port": port,
            "unit_id": UNIT, "timeout_s": 0.5, "retries": 0, "poll_interval_ms": 50,
            "items": items, **settings}


def config(data_dir: Path, machines: dict[str, list[dict[str, Any]]],
           sources: list[dict[str, Any]]) -> OmbreConfig:
    return validate_config({
        "data_dir": str(data_dir),
        "sites": [{"id": "site", "lines": [{"id": "l1", "machines": [
            {"id": m, "signals": signals} for m, signals in machines.items()]}]}],
        "sources": sources,
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "runtime": {"flush_interval_ms": 20, "backoff_initial_s": 0.1, "backoff_max_s": 0.5},
    })
