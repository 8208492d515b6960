"""Siemens S7 source: polls absolute addresses with python-snap7's asyncio client
(connectors/s7_client.py), in the gateway's event loop.

At each connect the source asks for a PDU size, builds the read plan from the one the
PLC grants (connectors/s7_address.py: neighbouring addresses share a range, ranges
are packed into multi-variable reads), and reads the CPU's RUN/STOP state (SZL
0x0424). Each poll group (items sharing a poll interval) is then read on its
schedule; every value carries the time its response arrived. An address the PLC
refuses (no such DB, out of range, access denied) is logged and quarantined once and
the others keep flowing; a lost or silent link, a PLC in STOP, or no address readable
at all raises ConnectionError, and the runtime reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from snap7 import AsyncClient
from snap7.error import S7Error

from connectors.s7_address import Plan, describe_code, plan_reads
from connectors.s7_client import (
    MODE_RUN,
    close_client,
    cpu_mode,
    describe,
    open_client,
    read_plan,
)
from connectors.s7_config import S7SourceConfig
from connectors.s7_items import S7Item, ValueBuffer, resolve_items
from gateway.config import Plant, RuntimeConfig
from gateway.types import Batch, Delivery, QuarantineRecord, SignalRegistry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PollGroup:
    """The items (indexes into the source's list) read every `interval_s`."""

    interval_s: float
    items: list[int]
    plan: Plan | None = None  # built at connect, for the PDU size the PLC granted
    next_s: float = 0.0  # monotonic time of its next poll


class S7Source:
    """Polls the configured addresses of one PLC and yields a delivery per poll.

    Called by the runtime from one task: `connect` opens the connection (and fails
    while the CPU is in STOP), `read` waits for the next due poll group, reads it and
    returns what it produced, raising ConnectionError once the link is lost or the
    CPU stops; `aclose` closes the connection within s7_client.CLOSE_TIMEOUT_S. Not
    used after `aclose`. Each poll is one delivery: a poll is already a batch."""

    def __init__(self, config: S7SourceConfig, plant: Plant, registry: SignalRegistry,
                 runtime: RuntimeConfig) -> None:
        self.name = config.name
        self._config = config
        self._where = f"{config.host}:{config.port}"
        self._items: list[S7Item] = resolve_items(config, plant, registry)
        intervals = sorted({item.interval_s for item in self._items})
        self._groups = [PollGroup(s, [i for i, item in enumerate(self._items)
                                      if item.interval_s == s]) for s in intervals]
        self._buffer = ValueBuffer(self._items)
        self._client: AsyncClient | None = None
        self._state_next_s: float | None = None  # when to read the CPU state next
        self._state_known = config.cpu_state_interval_s is not None
        self._errors: dict[int, str] = {}  # item index -> the error last logged
        self._pending_quarantine: list[QuarantineRecord] = []
        snap7_log = logging.getLogger("snap7")
        if snap7_log.level == logging.NOTSET:  # it logs every connect and close at info
            snap7_log.setLevel(logging.WARNING)

    # -- connect and close ------------------------------------------------------------

    async def connect(self) -> None:
        await self._close_client()
        cfg = self._config
        try:
            self._client = client = await open_client(cfg)
            stopped = await self._stopped(client)
        except (S7Error, OSError, TimeoutError) as exc:
            raise await self._failed(f"cannot connect to the PLC at {self._where}: "
                                     f"{describe(exc, cfg.timeout_s)}") from None
        if stopped is not None:
            raise await self._failed(stopped)
        pdu = client.get_pdu_length()
        now = time.monotonic()
        for group in self._groups:
            group.plan = plan_reads([self._items[i].address for i in group.items], pdu,
                                    cfg.max_gap_bytes)
            group.next_s = now
        self._buffer.forget()
        log.info("s7 %s: reading %d addresses in %d request(s) per round (PDU %d bytes) at %s",
                 self.name, len(self._items),
                 sum(len(g.plan.requests) for g in self._groups if g.plan), pdu, self._where)

    async def _stopped(self, client: AsyncClient) -> str | None:
        """Why the source must not read now (the CPU is not in RUN), or None. A PLC
        that does not report its state is not asked again."""
        interval_s = self._config.cpu_state_interval_s
        if not self._state_known or interval_s is None:
            return None
        self._state_next_s = time.monotonic() + interval_s
        mode = await cpu_mode(client, self._config.timeout_s)
        if mode is None:
            self._state_known = False
            log.info("s7 %s: the PLC at %s does not report its RUN/STOP state (SZL 0x0424); "
                     "reading without checking it", self.name, self._where)
            return None
        if mode & 0x0F == MODE_RUN:
            return None
        return f"the PLC at {self._where} is in STOP (CPU mode 0x{mode:02X}), not RUN"

    async def aclose(self) -> None:
        await self._close_client()

    async def _failed(self, reason: str) -> ConnectionError:
        """Close the link; the error that says why, for the runtime to reconnect."""
        await self._close_client()
        return ConnectionError(reason)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client)

    # -- read -------------------------------------------------------------------------

    async def read(self) -> Delivery:
        while True:
            client = self._client
            if client is None:
                raise ConnectionError("not connected")
            due = min(g.next_s for g in self._groups)
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            stopped = None
            try:
                if self._state_next_s is not None and now >= self._state_next_s:
                    stopped = await self._stopped(client)
                for group in self._groups if stopped is None else ():
                    if group.next_s <= now:
                        group.next_s = max(group.next_s + group.interval_s, now)
                        await self._poll(client, group)
            except (S7Error, OSError, TimeoutError, ValueError) as exc:
                raise await self._failed(f"lost the PLC at {self._where}: "
                                         f"{describe(exc, self._config.timeout_s)}") from None
            if stopped is not None:
                raise await self._failed(stopped)
            # nothing readable: down, once the new errors' records are handed over
            if len(self._errors) == len(self._items) and not self._pending_quarantine:
                index, error = next(iter(self._errors.items()))
                raise await self._failed(f"none of the {len(self._items)} addresses can be "
                                         f"read, e.g. {self._items[index].address.text}: {error}")
            delivery = self._take()
            if delivery is not None:
                return delivery

    async def _poll(self, client: AsyncClient, group: PollGroup) -> None:
        """Read one group's plan and buffer its values."""
        assert group.plan is not None  # built at connect
        read = await read_plan(client, group.plan, self._config.timeout_s)
        errors: dict[int, str] = {}
        for s, span in enumerate(group.plan.spans):
            for k in span.items:
                index = group.items[k]
                if s in read.failed:
                    errors[index] = f"{describe_code(read.failed[s])}, reading {span.describe()}"
                    continue
                address = self._items[index].address
                self._buffer.add(index, address.decode(read.buffers[s], address.start - span.start),
                                 read.stamps[s])
        self._report_errors(group, errors)

    def _report_errors(self, group: PollGroup, errors: dict[int, str]) -> None:
        """Log and quarantine an address when its error first appears or changes; log
        once when it reads again. A poll with the same error stays silent."""
        now = time.time_ns()
        for index in group.items:
            item, error = self._items[index], errors.get(index)
            if error is None:
                if self._errors.pop(index, None) is not None:
                    log.info("s7 %s: %s reads again", self.name, item.address.text)
                continue
            if self._errors.get(index) == error:
                continue
            self._errors[index] = error
            log.error("s7 %s: cannot read %s (%s/%s): %s; the other addresses keep flowing",
                      self.name, item.address.text, item.machine, item.signal, error)
            self._pending_quarantine.append(QuarantineRecord(
                now, self.name, item.address.text, b"", f"cannot read: {error}",
                item.signal_id))

    def _take(self) -> Delivery | None:
        if not len(self._buffer) and not self._pending_quarantine:
            return None
        batch, events = self._buffer.take() if len(self._buffer) else (Batch.empty(), [])
        quarantined, self._pending_quarantine = self._pending_quarantine, []
        return Delivery(batch, events, quarantined)
