"""The bounded queue between the sources and the outbox writer, with a named overflow
policy. Used only from the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Literal

from gateway.types import Batch, Delivery

OverflowPolicy = Literal["block", "drop_oldest"]


class DeliveryQueue:
    """At most `maxsize` deliveries.

    - "block": `put` waits for room, so the source stops reading and its upstream
      (the broker, the PLC) holds the data.
    - "drop_oldest": `put` drops the telemetry of the oldest delivery, reports it to
      `on_drop`, and keeps its events and quarantine records by moving them into
      the next delivery, so only telemetry is ever lost.
    """

    def __init__(self, maxsize: int, policy: OverflowPolicy,
                 on_drop: Callable[[Batch], None]) -> None:
        self._items: deque[Delivery] = deque()
        self._maxsize = maxsize
        self._policy = policy
        self._on_drop = on_drop
        self._changed = asyncio.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, delivery: Delivery) -> None:
        async with self._changed:
            if self._policy == "block":
                await self._changed.wait_for(lambda: len(self._items) < self._maxsize)
            elif len(self._items) >= self._maxsize:
                self._drop_oldest(delivery)
            self._items.append(delivery)
            self._changed.notify_all()

    async def get_many(self, max_readings: int, gather_s: float = 0.0) -> list[Delivery]:
        """Wait for at least one delivery, then for up to `gather_s` more while the queue
        is neither full nor holding `max_readings` readings nor closed, then take
        deliveries in order until they hold `max_readings` readings. Returns an empty
        list once closed and empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items) or self._closed)
            if gather_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(gather_s):
                        await self._changed.wait_for(lambda: self._gathered(max_readings))
            taken: list[Delivery] = []
            readings = 0
            while self._items and (not taken or readings < max_readings):
                taken.append(self._items.popleft())
                readings += len(taken[-1].batch)
            self._changed.notify_all()
            return taken

    def _gathered(self, max_readings: int) -> bool:
        """Whether a gathering `get_many` stops waiting: closed, full, or enough readings."""
        return (self._closed or len(self._items) >= self._maxsize
                or sum(len(d.batch) for d in self._items) >= max_readings)

    async def close(self) -> None:
        """No more puts will come: let `get_many` return what is left, then nothing."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _drop_oldest(self, incoming: Delivery) -> None:
        oldest = self._items.popleft()
        self._on_drop(oldest.batch)
        heir = self._items[0] if self._items else incoming
        heir.events[:0] = oldest.events
        heir.quarantined[:0] = oldest.quarantined
        heir.acks[:0] = oldest.acks
