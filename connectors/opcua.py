"""OPC UA source: asyncua 2.x, one subscription of monitored items per connection.

asyncua runs in the gateway's event loop. Its publish task calls `_on_publish` with
each raw PublishResponse (no task per notification, no per-item dispatch objects);
the callback appends to a columnar buffer and wakes `read` at most twice per chunk.
When the buffer holds BUFFER_CHUNKS full chunks the callback waits, which stalls only
asyncua's publish loop (its receive task keeps serving other requests): the server
then keeps the backlog in each item's queue (queue_size, discard oldest).

A lost link is seen three ways: asyncua's connection supervisor, a status-change
notification, and a watchdog (no publish response within 3 keep-alive periods).
`read` then raises ConnectionError; the runtime backs off and calls `connect`, which
opens a new session and re-creates every monitored item. The gap between the last
publish response and the new subscription is reported as an `opcua_gap` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from datetime import UTC, datetime

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError

from connectors.opcua_items import NotificationBuffer, item_request, resolve_nodes
from gateway.chunks import ChunkTimer
from gateway.config import OmbreConfig, OpcUaSourceConfig, RuntimeConfig
from gateway.outbox import GATEWAY_MACHINE
from gateway.types import Batch, Delivery, Event, QuarantineRecord, SignalRegistry

log = logging.getLogger(__name__)

GAP_EVENT = "opcua_gap"
BUFFER_CHUNKS = 4  # the publish callback waits when this many full chunks are unread
ITEMS_PER_REQUEST = 1000  # monitored items created per CreateMonitoredItems request
MAX_NOTIFICATIONS_PER_PUBLISH = 10_000
CLOSE_TIMEOUT_S = 3.0
STALE_KEEPALIVES = 3  # keep-alive periods without a publish response before giving up


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


class OpcUaSource:
    """Subscribes to the configured nodes and yields deliveries of whole chunks.

    Called by the runtime from one task: `connect` (re)creates the session and the
    subscription, `read` returns what arrived (at most one flush interval after the
    first notification) and raises ConnectionError once the link is lost and the
    buffer is empty, `aclose` deletes the subscription and disconnects within
    CLOSE_TIMEOUT_S. Not used after `aclose`."""

    def __init__(self, config: OpcUaSourceConfig, plant: OmbreConfig, registry: SignalRegistry,
                 runtime: RuntimeConfig) -> None:
        self.name = config.name
        self._config = config
        self._nodes = resolve_nodes(config, plant, registry)
        self._buffer = NotificationBuffer(config.name, self._nodes)
        self._chunk = runtime.batch_max_messages
        self._flush_s = runtime.flush_interval_ms / 1000
        self._client: Client | None = None
        self._subscription_id: int | None = None
        self._generation = 0  # bumped per connection; older callbacks are ignored
        self._lost: str | None = None
        self._last_publish = time.monotonic()
        self._stale_after_s = 0.0
        self._gap_start_ns: int | None = None
        self._pending_events: list[Event] = []
        self._pending_quarantine: list[QuarantineRecord] = []
        self._node_errors: dict[int, str] = {}  # handle -> status last logged
        self._timer = ChunkTimer(self._flush_s)
        self._room = asyncio.Event()

    # -- connect and close ------------------------------------------------------------

    async def connect(self) -> None:
        await self._close_client()
        cfg = self._config
        client = Client(cfg.endpoint, timeout=cfg.connect_timeout_s)
        self._generation += 1
        generation = self._generation
        client.connection_lost_callback = functools.partial(self._on_connection_lost,
                                                            generation)
        try:
            await asyncio.wait_for(client.connect(), cfg.connect_timeout_s)
        except (OSError, TimeoutError, UaError) as exc:
            client.disconnect_socket()  # no session yet: nothing else to close
            raise ConnectionError(f"cannot connect to {cfg.endpoint}: "
                                  f"{type(exc).__name__} {exc}".rstrip()) from None
        self._client, self._subscription_id = client, None
        try:
            await self._subscribe(client, generation)
        except (OSError, TimeoutError, UaError) as exc:
            await self._close_client()
            raise ConnectionError(f"cannot subscribe at {cfg.endpoint}: "
                                  f"{type(exc).__name__} {exc}".rstrip()) from None
        self._lost, self._last_publish = None, time.monotonic()
        self._room.set()
        if self._gap_start_ns is not None:
            end_ns = time.time_ns()
            self._pending_events.append(Event(
                end_ns, GATEWAY_MACHINE, GAP_EVENT,
                f"{self.name}: {_iso(self._gap_start_ns)} to {_iso(end_ns)}"))
            self._gap_start_ns = None
        log.info("opcua %s: subscribed to %d of %d nodes at %s", self.name,
                 len(self._nodes) - len(self._node_errors), len(self._nodes), cfg.endpoint)

    async def _subscribe(self, client: Client, generation: int) -> None:
        cfg = self._config
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=cfg.publishing_interval_ms,
            RequestedLifetimeCount=cfg.keepalive_count * 6,
            RequestedMaxKeepAliveCount=cfg.keepalive_count,
            MaxNotificationsPerPublish=MAX_NOTIFICATIONS_PER_PUBLISH,
            PublishingEnabled=True, Priority=0)
        result = await client.uaclient.create_subscription(
            params, functools.partial(self._on_publish, generation))
        self._subscription_id = result.SubscriptionId
        keepalive_s = result.RevisedPublishingInterval * result.RevisedMaxKeepAliveCount / 1000
        self._stale_after_s = max(STALE_KEEPALIVES * keepalive_s, 1.0)
        failed: dict[int, str] = {}
        for start in range(0, len(self._nodes), ITEMS_PER_REQUEST):
            request = ua.CreateMonitoredItemsParameters()
            request.SubscriptionId = result.SubscriptionId
            request.TimestampsToReturn = ua.TimestampsToReturn.Both
            request.ItemsToCreate = [item_request(h, self._nodes[h]) for h in
                                     range(start, min(start + ITEMS_PER_REQUEST, len(self._nodes)))]
            for handle, created in enumerate(
                    await client.uaclient.create_monitored_items(request), start):
                if not created.StatusCode.is_good():
                    failed[handle] = created.StatusCode.name
        self._report_node_errors(failed)
        if len(failed) == len(self._nodes):
            raise ConnectionError(f"none of the {len(failed)} nodes could be monitored, e.g. "
                                  f"{self._nodes[0].text}: {failed[0]}")

    def _report_node_errors(self, failed: dict[int, str]) -> None:
        """Log and quarantine a node when its error first appears or changes; log once
        when it recovers. A retry with the same error stays silent."""
        now = time.time_ns()
        for handle, status in failed.items():
            if self._node_errors.get(handle) == status:
                continue
            node = self._nodes[handle]
            log.error("opcua %s: cannot monitor node %s (%s/%s): %s; the other nodes "
                      "keep flowing", self.name, node.text, node.machine, node.signal, status)
            self._pending_quarantine.append(QuarantineRecord(
                now, self.name, node.text, b"", f"cannot monitor node: {status}",
                node.signal_id))
        for handle in set(self._node_errors) - set(failed):
            log.info("opcua %s: node %s is monitored again", self.name, self._nodes[handle].text)
        self._node_errors = failed

    async def aclose(self) -> None:
        await self._close_client()

    async def _close_client(self) -> None:
        client, subscription_id = self._client, self._subscription_id
        self._client, self._subscription_id = None, None
        self._generation += 1
        self._room.set()  # release a publish callback waiting for room
        if client is None:
            return
        client.connection_lost_callback = None
        if subscription_id is not None and self._lost is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.delete_subscriptions([subscription_id]),
                                       CLOSE_TIMEOUT_S)
        try:
            await asyncio.wait_for(client.disconnect(), CLOSE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the link is already gone; just free it
            log.debug("opcua %s: disconnect: %r", self.name, exc)
            client.disconnect_socket()

    # -- read -------------------------------------------------------------------------

    async def read(self) -> Delivery:
        while True:
            await self._timer.ready(idle_timeout_s=min(self._flush_s * 20, 1.0))  # watchdog
            delivery = self._take()
            if delivery is not None:
                return delivery
            if self._lost is None and self._client is not None and (
                    time.monotonic() - self._last_publish > self._stale_after_s):
                self._mark_lost(f"no publish response from {self._config.endpoint} for "
                                f"{self._stale_after_s:.1f} s (3 keep-alive periods)")
            if self._lost is not None:
                raise ConnectionError(self._lost)
            if self._client is None:
                raise ConnectionError("not connected")

    def _take(self) -> Delivery | None:
        self._timer.reset()
        self._room.set()
        if not len(self._buffer) and not self._pending_events and not self._pending_quarantine:
            return None
        batch, events, quarantined = (self._buffer.take() if len(self._buffer)
                                      else (Batch.empty(), [], []))
        if self._pending_events or self._pending_quarantine:
            events = [*self._pending_events, *events]
            quarantined = [*self._pending_quarantine, *quarantined]
            self._pending_events, self._pending_quarantine = [], []
        return Delivery(batch, events, quarantined)

    # -- asyncua callbacks, in its publish and supervisor tasks ------------------------

    async def _on_publish(self, generation: int, result: ua.PublishResult) -> None:
        if generation != self._generation:
            return
        self._last_publish = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return  # a keep-alive
        received_ns = time.time_ns()
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                self._buffer.add(notification.MonitoredItems, received_ns)
            elif isinstance(notification, ua.StatusChangeNotification):
                self._mark_lost(f"the server ended the subscription: {notification.Status.name}")
        if len(self._buffer):
            self._timer.started()
        if len(self._buffer) >= self._chunk:
            self._timer.filled()
        while (len(self._buffer) >= BUFFER_CHUNKS * self._chunk and self._lost is None
               and generation == self._generation):
            self._room.clear()
            await self._room.wait()
            self._last_publish = time.monotonic()  # time spent waiting is not staleness

    async def _on_connection_lost(self, generation: int, exc: Exception) -> None:
        if generation == self._generation:
            self._mark_lost(f"lost the connection to {self._config.endpoint}: {exc!r}")

    def _mark_lost(self, reason: str) -> None:
        """Record the loss once; `read` raises it after handing over the buffer."""
        if self._lost is not None:
            return
        self._lost = reason
        if self._gap_start_ns is None:
            since_s = time.monotonic() - self._last_publish
            self._gap_start_ns = time.time_ns() - int(since_s * 1e9)
        self._timer.wake()
        self._room.set()
