"""Polling, for OPC UA servers without subscriptions: every `read_interval_ms` one
Read of all nodes' values (ITEMS_PER_READ per request), of which only the values that
changed since the last read (value, status or source timestamp) go on, as data-change
notifications would. No deadband: that is the server's filter, on subscriptions only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes

from connectors.opcua_items import MonitoredNode

ITEMS_PER_READ = 1000
# A node that cannot be read at all, as opposed to a value the server marks bad.
NODE_ERRORS = frozenset({StatusCodes.BadNodeIdUnknown, StatusCodes.BadNodeIdInvalid,
                         StatusCodes.BadAttributeIdInvalid, StatusCodes.BadNotReadable,
                         StatusCodes.BadUserAccessDenied})


class Poller:
    """Reads on a fixed schedule; used by one source task. Remembers one value per node
    (bounded by the node count) and forgets them on `reset`, after a reconnect, so the
    first read reports every value, like a new subscription."""

    def __init__(self, interval_ms: float) -> None:
        self._interval_s = interval_ms / 1000
        self._next = time.monotonic()
        self._last: dict[int, tuple[object, int, object]] = {}

    def reset(self) -> None:
        self._next = time.monotonic()
        self._last.clear()

    async def wait(self) -> None:
        """Sleep until the next tick; ticks missed while busy are skipped, not caught up."""
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(self._next + self._interval_s, time.monotonic())

    async def poll(self, client: Client, nodes: Sequence[MonitoredNode]
                   ) -> tuple[list[ua.MonitoredItemNotification], dict[int, str]]:
        """The changed values as notifications (client handle = node index), and the
        nodes that cannot be read, with their status names."""
        changes, failed = [], {}
        for start in range(0, len(nodes), ITEMS_PER_READ):
            params = ua.ReadParameters(TimestampsToReturn=ua.TimestampsToReturn.Both)
            params.NodesToRead = [ua.ReadValueId(NodeId=n.node_id, AttributeId=AttributeIds.Value)
                                  for n in nodes[start:start + ITEMS_PER_READ]]
            for handle, dv in enumerate(await client.uaclient.read(params), start):
                status = dv.StatusCode if dv.StatusCode is not None else ua.StatusCode()
                if status.value in NODE_ERRORS:
                    failed[handle] = status.name
                    continue
                key = (dv.Value.Value if dv.Value is not None else None, status.value,
                       dv.SourceTimestamp)
                if self._last.get(handle) != key:
                    self._last[handle] = key
                    changes.append(ua.MonitoredItemNotification(ClientHandle=handle, Value=dv))
        return changes, failed
