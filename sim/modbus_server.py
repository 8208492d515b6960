"""A simulated machine's Modbus TCP server (pymodbus, in this process): an old lathe's
controller with a handful of holding registers, laid out as `REGISTERS` says and
sim/plant.yaml maps them. The controller keeps no time: the gateway stamps each value
when it reads it."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus_address import encode, parse_address
from sim.machines import Reading

log = logging.getLogger(__name__)

UNIT = 1
SIZE = 16  # holding registers 0-15
# reading -> (address, factor): the controller keeps the spindle load in tenths of a
# percent, the part counter in two registers (high word first), run and fault as bits
# of a status word, and the order an operator keyed in as ten characters.
REGISTERS: Mapping[str, tuple[str, float]] = {
    "spindle_load": ("hr:0", 10), "parts_total": ("hr:1:uint32", 1), "running": ("hr:3.0", 1),
    "fault": ("hr:3.1", 1), "order": ("hr:10:string:10", 1),
}


def registers_of(readings: Mapping[str, Reading]) -> list[int]:
    """The holding registers 0..SIZE-1 that hold `readings`."""
    image = [0] * SIZE
    for name, value in readings.items():
        text, factor = REGISTERS[name]
        address = parse_address(text)
        if address.bit is not None:
            image[address.start] |= (1 if value else 0) << address.bit
            continue
        scaled = value if isinstance(value, str) else round(float(value) * factor)
        words = encode(address, scaled, "big", "big")
        image[address.start:address.start + len(words)] = words
    return image


class ModbusMachineServer:
    """One machine's server on 127.0.0.1:`port`; `start` and `stop` may alternate, each
    start serving the last registers written."""

    def __init__(self, machine: str, port: int) -> None:
        self.machine, self.port = machine, port
        self._server: ModbusTcpServer | None = None
        self._image = [0] * SIZE

    async def start(self) -> None:
        device = SimDevice(UNIT, simdata=[SimData(0, count=SIZE, values=0,
                                                  datatype=DataType.REGISTERS)])
        self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)
        await self._server.async_setValues(UNIT, 16, 0, self._image)
        log.info("demo: %s's Modbus TCP server at 127.0.0.1:%d", self.machine, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    async def publish(self, readings: Mapping[str, Reading]) -> None:
        """Writes the registers that hold `readings`, if they changed."""
        image = registers_of(readings)
        if image != self._image:
            self._image = image
            if self._server is not None:
                await self._server.async_setValues(UNIT, 16, 0, image)
