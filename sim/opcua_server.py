"""A simulated machine's OPC UA server (asyncua, in this process), laid out like an OPC
40001 Machinery server: Objects/Machines/<machine>/{Monitoring, OperationCounters,
Production}. Node ids are `ns=2;s=<MACHINE>.<folder>.<name>`, as the demo config maps
them. Each value is written with the simulated time as its source timestamp."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes

from sim.machines import Reading

log = logging.getLogger(__name__)

WAITING = ua.UInt32(StatusCodes.BadWaitingForInitialData)

# name -> (folder, OPC UA browse name, variant type)
NODES: Mapping[str, tuple[str, str, ua.VariantType]] = {
    "MachineryItemState": ("Monitoring", "MachineryItemState", ua.VariantType.Int32),
    "MachineryOperationMode": ("Monitoring", "MachineryOperationMode", ua.VariantType.Int32),
    "spindle_speed": ("Monitoring", "SpindleSpeed", ua.VariantType.Double),
    "spindle_temp": ("Monitoring", "SpindleTemperature", ua.VariantType.Double),
    "power": ("Monitoring", "Power", ua.VariantType.Double),
    "parts_total": ("OperationCounters", "PartsProduced", ua.VariantType.UInt32),
    "parts_scrap": ("OperationCounters", "PartsScrapped", ua.VariantType.UInt32),
    "order": ("Production", "JobId", ua.VariantType.String),
}


class MachineServer:
    """One machine's server on 127.0.0.1:`port`; `start` and `stop` may alternate (the
    opcua-restart scenario), each start building a fresh server on the same port."""

    def __init__(self, machine: str, port: int) -> None:
        self.machine, self.port = machine, port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}"
        self._server: Server | None = None
        self._nodes: dict[str, tuple[ua.NodeId, ua.VariantType]] = {}
        self._last: dict[str, Reading] = {}

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"Ombre demo {self.machine}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace("urn:ombre:demo")
        machines = await server.nodes.objects.add_folder(ns, "Machines")
        machine = await machines.add_object(ns, self.machine.upper())
        folders = {}
        for name, (folder, browse, vtype) in NODES.items():
            if folder not in folders:
                folders[folder] = await machine.add_object(
                    ua.NodeId.from_string(f"ns={ns};s={self.machine.upper()}.{folder}"), folder)
            node_id = ua.NodeId.from_string(f"ns={ns};s={self.machine.upper()}.{folder}.{browse}")
            initial = ua.Variant("" if vtype is ua.VariantType.String else 0, vtype)
            await folders[folder].add_variable(node_id, browse, initial)
            # As a real controller's server: no value until the machine gave one.
            await server.write_attribute_value(node_id, ua.DataValue(
                initial, StatusCode=ua.StatusCode(WAITING)))
            self._nodes[name] = (node_id, vtype)
        await server.start()
        self._server, self._last = server, {}
        log.info("demo: %s's OPC UA server at %s", self.machine, self.endpoint)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def publish(self, t_ns: int, readings: Mapping[str, Reading]) -> int:
        """Writes the readings that changed; returns how many it wrote (0 while stopped)."""
        if self._server is None:
            return 0
        when = cast(ua.DateTime, datetime.fromtimestamp(t_ns / 1e9, UTC))
        written = 0
        for name, value in readings.items():
            if self._last.get(name) == value:
                continue
            node_id, vtype = self._nodes[name]
            integer = vtype in (ua.VariantType.Int32, ua.VariantType.UInt32)
            value_typed = round(float(value)) if integer else value
            await self._server.write_attribute_value(node_id, ua.DataValue(
                ua.Variant(value_typed, vtype), SourceTimestamp=when, ServerTimestamp=when))
            self._last[name] = value
            written += 1
        return written
