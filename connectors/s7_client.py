"""The S7 calls the source and `ombre s7 read` share, on python-snap7's asyncio client:
open a connection, read the CPU's mode, read a plan, close.

snap7 3.x speaks S7 in pure Python over asyncio streams, so every call runs in the
caller's event loop, each bounded by `asyncio.timeout`: a PLC that accepts TCP but
never answers costs one timeout, never a blocked thread, and a cancelled call (a
stop) ends at once. After a timeout the connection is in an unknown state: callers
close it. snap7's own multi-variable read stops at the first refused item, so plans
are read with its request builder and `iso_exchange_buffer`, keeping each item's
return code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from snap7 import AsyncClient
from snap7.error import S7ConnectionError, S7Error, S7TimeoutError

from connectors.s7_address import Plan, split_items
from connectors.s7_config import S7SourceConfig

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0
CONNECTION_PG = 1  # the TSAP's connection type when reached by rack and slot
SZL_CPU_STATE = 0x0424  # the current mode: byte 3 of its record, 8 in RUN
MODE_RUN = 0x08
ITEM_OK = 0xFF


def describe(exc: BaseException, timeout_s: float) -> str:
    """One line for a failed call: a timeout says how long it waited."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


async def open_client(cfg: S7SourceConfig) -> AsyncClient:
    """A client connected to the PLC of `cfg`, the PDU size negotiated. Raises S7Error,
    OSError or TimeoutError, having closed what it opened."""
    client = AsyncClient()
    client.pdu_length = cfg.pdu_size
    client.local_tsap = cfg.local_tsap
    if cfg.remote_tsap is not None:  # its bytes: connection type, then rack and slot
        kind, rack, slot = cfg.remote_tsap >> 8, cfg.remote_tsap >> 5 & 7, cfg.remote_tsap & 31
    else:
        assert cfg.slot is not None  # the config requires slot without remote_tsap
        kind, rack, slot = CONNECTION_PG, cfg.rack, cfg.slot
    client.set_connection_type(kind)
    try:
        async with asyncio.timeout(cfg.timeout_s):
            await client.connect(cfg.host, rack, slot, cfg.port)
    except BaseException:  # a timeout cancels connect before it cleans up
        await close_client(client)
        raise
    assert client.connection is not None
    client.connection.timeout = cfg.timeout_s  # each receive: as long as our bound
    return client


async def cpu_mode(client: AsyncClient, timeout_s: float) -> int | None:
    """The CPU's mode byte (MODE_RUN in RUN; 4 or 3 in STOP), or None when the PLC
    answers that it does not report it (it refuses SZL 0x0424). A lost or silent link
    raises."""
    try:
        async with asyncio.timeout(timeout_s):
            szl = await client.read_szl(SZL_CPU_STATE, 0)
    except (S7ConnectionError, S7TimeoutError):
        raise
    except (S7Error, RuntimeError) as exc:  # the PLC answered: it has no such list
        log.debug("SZL 0x0424 refused: %s", exc)
        return None
    return int(szl.Data[7]) if szl.Header.LengthDR >= 8 else None


@dataclass(frozen=True, slots=True)
class PlanRead:
    """A plan's spans as read: their bytes, the time the last response for each came
    (ns), and the return code of the spans the PLC refused."""

    buffers: list[bytearray]
    stamps: list[int]
    failed: dict[int, int]


async def read_plan(client: AsyncClient, plan: Plan, timeout_s: float) -> PlanRead:
    """Send the plan's requests one after another, each within `timeout_s`. Raises
    S7Error, OSError or TimeoutError on the link, ValueError on a malformed answer."""
    spans = plan.spans
    read = PlanRead([bytearray(s.size) for s in spans], [0] * len(spans), {})
    for request in plan.requests:
        specs = [(spans[c.span].area, spans[c.span].db, spans[c.span].start + c.offset, c.size)
                 for c in request]
        pdu = client.protocol.build_multi_read_request(specs)
        async with asyncio.timeout(timeout_s):
            raw = await client.iso_exchange_buffer(bytearray(pdu))
        ts_ns = time.time_ns()
        response = client.protocol.parse_response(bytes(raw))
        items = split_items(response.get("raw_data", b""), len(request))
        for chunk, (code, data) in zip(request, items, strict=True):
            if code != ITEM_OK:
                read.failed[chunk.span] = code
            elif len(data) != chunk.size:
                raise ValueError(f"{len(data)} bytes for a read of {chunk.size}")
            else:
                read.buffers[chunk.span][chunk.offset:chunk.offset + chunk.size] = data
                read.stamps[chunk.span] = ts_ns
    return read


async def close_client(client: AsyncClient) -> None:
    """Close within CLOSE_TIMEOUT_S, whatever state the link is in."""
    try:
        await asyncio.wait_for(client.disconnect(), CLOSE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - the link is gone already; just free it
        log.debug("s7 disconnect from %s: %r", client.host, exc)
