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
opens a new session and first tries to take over the old subscription, which the
server keeps for TRANSFER_WINDOW_S (TransferSubscriptions), asking again for the
messages it sent but we never received (Republish): then nothing is lost. Otherwise
(the server restarted) it re-creates every monitored item, and the gap between the
last publish response and the new subscription is reported as an `opcua_gap` event;
so is a jump in the message numbers (messages the server could no longer resend).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from connectors.opcua_browse import Browser
from connectors.opcua_config import OpcUaSourceConfig
from connectors.opcua_items import NotificationBuffer, item_request, match_paths, resolve_nodes
from connectors.opcua_poll import Poller
from connectors.opcua_security import (
    OnRejected,
    Pki,
    RejectionAudit,
    SecurityError,
    UntrustedError,
    new_client,
    secure,
)
from gateway.chunks import ChunkTimer
from gateway.config import Plant, RuntimeConfig
from gateway.outbox import GATEWAY_MACHINE
from gateway.types import Batch, Delivery, Event, QuarantineRecord, SignalRegistry

log = logging.getLogger(__name__)

GAP_EVENT = "opcua_gap"
BUFFER_CHUNKS = 4  # the publish callback waits when this many full chunks are unread
ITEMS_PER_REQUEST = 1000  # monitored items created per CreateMonitoredItems request
MAX_NOTIFICATIONS_PER_PUBLISH = 10_000
CLOSE_TIMEOUT_S = 3.0
TRANSFER_WINDOW_S = 60.0  # a lost link's subscription outlives it this long on the server
STALE_KEEPALIVES = 3  # keep-alive periods without a publish response before giving up


_REFUSED_USER = frozenset({StatusCodes.BadUserAccessDenied,
                           StatusCodes.BadIdentityTokenRejected,
                           StatusCodes.BadIdentityTokenInvalid})
_REFUSED_CLIENT = frozenset({StatusCodes.BadSecurityChecksFailed,
                             StatusCodes.BadCertificateUntrusted})


def _explain(exc: Exception, cfg: OpcUaSourceConfig, data_dir: Path) -> str:
    """What went wrong connecting, and for a refusal, what the user can change."""
    text = f"{type(exc).__name__} {exc}".rstrip()
    code = exc.code if isinstance(exc, UaStatusCodeError) else None
    if code in _REFUSED_USER:
        who = (f"user {cfg.username!r}" if cfg.username is not None else
               f"the certificate {cfg.user_certificate}" if cfg.user_certificate is not None
               else "an anonymous user")
        return f"the server refused {who} ({text}): check the username and password"
    if code in _REFUSED_CLIENT and cfg.security.mode != "None":
        return (f"the server refused the secure channel ({text}): add Ombre's client "
                f"certificate {Pki.of(data_dir).own_cert} to the server's trusted certificates")
    return text


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


class OpcUaSource:
    """Subscribes to the configured nodes and yields deliveries of whole chunks.

    Called by the runtime from one task: `connect` (re)creates the session and the
    subscription, `read` returns what arrived (at most one flush interval after the
    first notification) and raises ConnectionError once the link is lost and the
    buffer is empty, `aclose` deletes the subscription and disconnects within
    CLOSE_TIMEOUT_S. Not used after `aclose`. `on_rejected` records each distinct
    server certificate the trust list refuses, once (the audit log's writer)."""

    def __init__(self, config: OpcUaSourceConfig, plant: Plant, registry: SignalRegistry,
                 runtime: RuntimeConfig, on_rejected: OnRejected | None = None) -> None:
        self.name = config.name
        self._config = config
        self._data_dir = plant.data_dir
        self._registry = registry
        self._plan = resolve_nodes(config, plant, registry)
        self._nodes = list(self._plan.fixed)  # the buffer reads this list; kept in place
        self._resolved: tuple[int, frozenset[str]] | None = None  # last logged resolution
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
        self._orphan: int | None = None  # a subscription a lost link left on the server
        self._last_seq = 0  # the last notification message number of the subscription
        self._last_message_ns = 0
        self._pending_events: list[Event] = []
        self._pending_quarantine: list[QuarantineRecord] = []
        self._node_errors: dict[str, str] = {}  # node text -> status last logged
        self._poller = (Poller(config.read_interval_ms) if config.read_interval_ms is not None
                        else None)
        self._timer = ChunkTimer(self._flush_s)
        self._room = asyncio.Event()
        self._rejections = RejectionAudit(config.name, config.endpoint, on_rejected)

    # -- connect and close ------------------------------------------------------------

    async def connect(self) -> None:
        await self._close_client()
        cfg = self._config
        client = new_client(cfg.endpoint, cfg.connect_timeout_s)
        self._generation += 1
        generation = self._generation
        client.connection_lost_callback = functools.partial(self._on_connection_lost,
                                                            generation)
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                await secure(client, cfg, self._data_dir)
            async with asyncio.timeout(cfg.connect_timeout_s):
                await client.connect()
        except (OSError, TimeoutError, UaError) as exc:
            client.disconnect_socket()  # no session yet: nothing else to close
            if isinstance(exc, UntrustedError):
                await self._rejections.record(exc.rejected)
            if isinstance(exc, SecurityError):
                raise
            raise ConnectionError(f"cannot connect to {cfg.endpoint}: "
                                  f"{_explain(exc, cfg, self._data_dir)}") from None
        self._client, self._subscription_id = client, None
        try:
            if self._poller is not None:
                await self._resolve_paths(client)
                self._poller.reset()
            elif not await self._transfer(client, generation):
                await self._subscribe(client, generation)
        except (OSError, TimeoutError, UaError) as exc:
            await self._close_client()
            raise ConnectionError(f"cannot subscribe at {cfg.endpoint}: "
                                  f"{type(exc).__name__} {exc}".rstrip()) from None
        self._lost, self._last_publish = None, time.monotonic()
        self._room.set()
        if self._gap_start_ns is not None:
            self._pending_events.append(self._gap_event(self._gap_start_ns, time.time_ns()))
            self._gap_start_ns = None
        log.info("opcua %s: %s %d of %d nodes at %s", self.name,
                 "subscribed to" if self._poller is None else "reading", len(self._nodes)
                 - len(self._node_errors), len(self._nodes), cfg.endpoint)

    def _gap_event(self, start_ns: int, end_ns: int) -> Event:
        return Event(end_ns, GATEWAY_MACHINE, GAP_EVENT,
                     f"{self.name}: {_iso(start_ns)} to {_iso(end_ns)}")

    async def _transfer(self, client: Client, generation: int) -> bool:
        """Take over the subscription a lost link left on the server (TransferSubscriptions)
        and Republish the messages sent but never received. True when the subscription
        is ours again; the gap then counts as filled unless a message was missing."""
        orphan, self._orphan = self._orphan, None
        if orphan is None:
            return False
        try:
            [result] = await client.uaclient.transfer_subscriptions(
                ua.TransferSubscriptionsParameters(SubscriptionIds=[orphan],
                                                   SendInitialValues=False))
            status = result.StatusCode
        except UaStatusCodeError as exc:  # e.g. BadServiceUnsupported
            status = ua.StatusCode(exc.code)
        if not status.is_good():
            log.info("opcua %s: cannot take over subscription %d (%s); creating a new one",
                     self.name, orphan, status.name)
            return False
        session = client.uaclient.session
        # asyncua has no public call to adopt a transferred subscription: register
        # its callback as create_subscription does, then start the publish loop.
        session._subscription_callbacks[orphan] = functools.partial(self._on_publish, generation)
        self._subscription_id = orphan
        missing = sorted(n for n in result.AvailableSequenceNumbers or [] if n > self._last_seq)
        for number in missing:
            self._handle(await session.republish(orphan, number), number)
        session.ensure_publish_loop()
        self._gap_start_ns = None  # a message the server no longer has shows as a jump
        log.info("opcua %s: took over subscription %d, %d messages republished", self.name,
                 orphan, len(missing))
        return True

    async def _resolve_paths(self, client: Client) -> None:
        """Match the browse-path patterns against the server's address space, which
        may have changed since the last connect; logs the outcome when it changes."""
        if not self._plan.paths:
            return
        tree = await Browser(client).tree(self._config.browse_depth)
        variables = [(n.path, n.node_id) for _, n in tree.root.walk()
                     if n.node_class == ua.NodeClass.Variable]
        nodes, unmapped = match_paths(self._plan, self._registry, variables)
        self._nodes[:] = nodes
        resolved = (len(nodes) - len(self._plan.fixed), frozenset(unmapped))
        if resolved == self._resolved:
            return
        self._resolved = resolved
        log.info("opcua %s: %d variables found by browse path%s", self.name, resolved[0],
                 " (the walk stopped at its node limit)" if tree.truncated else "")
        if unmapped:
            log.warning("opcua %s: %d browse-path matches name no signal of the plant, "
                        "e.g. %s", self.name, len(unmapped), "; ".join(sorted(unmapped)[:3]))

    async def _subscribe(self, client: Client, generation: int) -> None:
        cfg = self._config
        await self._resolve_paths(client)
        if not self._nodes:
            raise ConnectionError(f"no variable at {cfg.endpoint} matches the browse paths "
                                  f"({', '.join(p.text for p in self._plan.paths)})")
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=cfg.publishing_interval_ms,
            RequestedLifetimeCount=max(cfg.keepalive_count * 6, math.ceil(
                TRANSFER_WINDOW_S * 1000 / cfg.publishing_interval_ms)),
            RequestedMaxKeepAliveCount=cfg.keepalive_count,
            MaxNotificationsPerPublish=MAX_NOTIFICATIONS_PER_PUBLISH,
            PublishingEnabled=True, Priority=0)
        result = await client.uaclient.create_subscription(
            params, functools.partial(self._on_publish, generation))
        self._subscription_id, self._last_seq = result.SubscriptionId, 0
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
        errors = {self._nodes[handle].text: status for handle, status in failed.items()}
        for handle, status in failed.items():
            node = self._nodes[handle]
            if self._node_errors.get(node.text) == status:
                continue
            log.error("opcua %s: cannot monitor node %s (%s/%s): %s; the other nodes "
                      "keep flowing", self.name, node.text, node.machine, node.signal, status)
            self._pending_quarantine.append(QuarantineRecord(
                now, self.name, node.text, b"", f"cannot monitor node: {status}",
                node.signal_id))
        for text in set(self._node_errors) - set(errors):
            log.info("opcua %s: node %s is monitored again", self.name, text)
        self._node_errors = errors

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
        if subscription_id is not None and self._lost is not None:
            self._orphan = subscription_id  # the next connect tries to take it over
            # asyncua's disconnect closes the session deleting its subscriptions: a
            # server frozen (SIGSTOP, a stalled VM) reads that request when it wakes,
            # before the takeover, and the gap would be lost. Close it keeping them.
            close_session = client.uaclient.close_session

            async def keep_subscriptions(delete_subscriptions: bool) -> None:
                await close_session(False)

            client.uaclient.close_session = keep_subscriptions  # type: ignore[method-assign]
        elif subscription_id is not None:
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
        if self._poller is not None:
            return await self._read_polled(self._poller)
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

    async def _read_polled(self, poller: Poller) -> Delivery:
        """Read every node each interval until something changed or the link is lost."""
        while True:
            if self._lost is not None or self._client is None:
                raise ConnectionError(self._lost or "not connected")
            await poller.wait()
            try:
                # each Read is bounded by the client's request timeout
                changes, failed = await poller.poll(self._client, self._nodes)
            except (OSError, TimeoutError, UaError) as exc:
                self._mark_lost(f"cannot read from {self._config.endpoint}: "
                                f"{type(exc).__name__} {exc}".rstrip())
                continue
            self._last_publish = time.monotonic()
            self._report_node_errors(failed)
            self._buffer.add(changes, time.time_ns())
            delivery = self._take()
            if delivery is not None:
                return delivery

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
        message = result.NotificationMessage
        if not message.NotificationData:
            return  # a keep-alive
        self._handle(message, message.SequenceNumber)
        while (len(self._buffer) >= BUFFER_CHUNKS * self._chunk and self._lost is None
               and generation == self._generation):
            self._room.clear()
            await self._room.wait()
            self._last_publish = time.monotonic()  # time spent waiting is not staleness

    def _handle(self, message: ua.NotificationMessage, number: int) -> None:
        """Buffer one notification message. A message number that skips ahead means
        the server discarded messages: that stretch is recorded as a gap."""
        received_ns = time.time_ns()
        if self._last_seq and number > self._last_seq + 1:
            log.warning("opcua %s: messages %d to %d of subscription %d are lost", self.name,
                        self._last_seq + 1, number - 1, self._subscription_id)
            self._pending_events.append(self._gap_event(self._last_message_ns, received_ns))
        self._last_seq, self._last_message_ns = max(self._last_seq, number), received_ns
        for notification in message.NotificationData or []:
            if isinstance(notification, ua.DataChangeNotification):
                self._buffer.add(notification.MonitoredItems, received_ns)
            elif isinstance(notification, ua.StatusChangeNotification):
                self._mark_lost(f"the server ended the subscription: {notification.Status.name}")
        if len(self._buffer):
            self._timer.started()
        if len(self._buffer) >= self._chunk:
            self._timer.filled()

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
