"""The batching rule every source shares: hand over a chunk when it is full, or a flush
interval after its first item, whichever comes first."""

from __future__ import annotations

import asyncio
import contextlib
import time


class ChunkTimer:
    """Tracks the chunk a source is filling. The filling side calls `started` at the
    chunk's first item, `filled` when it reaches its size, and `wake` when `read` must
    return at once (a lost link); from another thread it goes through
    `loop.call_soon_threadsafe`. The reading side awaits `ready`, takes the chunk, and
    calls `reset`. Used from the event loop only."""

    def __init__(self, flush_s: float) -> None:
        self._flush_s = flush_s
        self._first_s: float | None = None
        self._has_data = asyncio.Event()
        self._full = asyncio.Event()

    def started(self) -> None:
        if self._first_s is None:
            self._first_s = time.monotonic()
        self._has_data.set()

    def filled(self) -> None:
        self._full.set()

    def wake(self) -> None:
        self._has_data.set()
        self._full.set()

    def reset(self) -> None:
        self._first_s = None
        self._has_data.clear()
        self._full.clear()

    async def ready(self, idle_timeout_s: float | None = None) -> None:
        """Wait for a first item (at most `idle_timeout_s`), then until the chunk is
        full or the flush interval since that item has passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._has_data.wait(), idle_timeout_s)
        if self._first_s is not None:
            remaining = self._first_s + self._flush_s - time.monotonic()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), remaining)
