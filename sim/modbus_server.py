"""A simulated machine's Modbus TCP server (pymodbus, in this process): an old lathe's
controller with a handful of holding registers, laid out as `registers_of` says and
sim/plant.yaml maps them. The controller keeps no time: the gateway stamps each value
when it reads it."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from sim.machines import Reading

log = logging.getLogger(__name__)

UNIT = 1
SIZE = 16  # holding registers 0-15
ORDER_AT, ORDER_CHARS = 10, 10  # the order number: registers 10-14


def registers_of(readings: Mapping[str, Reading]) -> list[int]:
    """The holding registers 0..SIZE-1 of the lathe's controller, which keeps the
    spindle load in tenths of a percent at 0, the part counter at 1-2 (high word first),
    a status word at 3 (bit 0 running, bit 1 fault), and the order an operator keyed in
    at 10-14 (two Latin-1 characters a register, the first in the high byte, NUL-padded).
    Encoded here as the controller's manual would say, not by the connector's code, so
    the demo reads it as it would a real device."""
    image = [0] * SIZE
    image[0] = round(float(readings["spindle_load"]) * 10)
    total = int(readings["parts_total"])
    image[1:3] = [total >> 16 & 0xFFFF, total & 0xFFFF]
    image[3] = (1 if readings["running"] else 0) | (2 if readings["fault"] else 0)
    order = str(readings["order"]).encode("latin-1")[:ORDER_CHARS].ljust(ORDER_CHARS, b"\0")
    image[ORDER_AT:ORDER_AT + ORDER_CHARS // 2] = [
        int.from_bytes(order[i:i + 2], "big") for i in range(0, ORDER_CHARS, 2)]
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
