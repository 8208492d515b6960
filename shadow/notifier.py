"""The notifications service: every `check_interval_s` it looks at the plant (the
machines' states, the open drift alerts, the OEE at mid-shift, the gateway's
connectors), updates the incidents (shadow/notify_rules.py) and queues the message that
is due; every second it delivers what the durable queue holds (shadow/notify_queue.py),
retrying with backoff while a server is down.

The composition root (ombre/app.py) runs `Notifier.run` as a task beside the gateway
and cancels it at shutdown; `connectors` is read in the event loop, the database only
in a worker thread, one call at a time."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from gateway.counters import ConnectorCounters, Health, describe
from shadow.calendar import shifts
from shadow.config import ShadowedConfig
from shadow.notify_queue import Delivery, NotificationStore
from shadow.notify_rules import (
    AlertView,
    ConnectorView,
    Incidents,
    MachineView,
    OeeView,
    PlantView,
)
from shadow.notify_send import DeliveryError, send_email, send_webhook
from shadow.notify_text import compose
from shadow.report import live_kpis
from shadow.schema import database_url, open_engine, upgrade
from shadow.store import ShadowStore
from shadow.timeline import NS_PER_S, Category, Window

log = logging.getLogger(__name__)

TICK_S = 1.0  # how often the queue is looked at
MAX_OEE_CHECKS = 10_000  # (machine, shift) whose mid-shift OEE was computed, remembered


class Notifier:
    """Owns its engine; `run` until cancelled. `connectors` gives the gateway's parts
    (gateway/counters.py) and is called in the event loop; `clock` gives the wall
    clock in ns (UTC)."""

    def __init__(self, config: ShadowedConfig,
                 connectors: Callable[[], Sequence[ConnectorCounters]] = tuple,
                 counters: ConnectorCounters | None = None,
                 clock: Callable[[], int] = time.time_ns, engine: Engine | None = None) -> None:
        """`counters` (kind "runtime", in /metrics) gets, in the event loop, the messages
        delivered (`events`), the failed attempts retried (`retries`), the messages given
        up (`quarantined`) and those dropped by the queue's bound (`dropped`)."""
        self._config = config
        self._settings = config.notifications
        self._connectors = connectors
        self._counters = counters
        self._clock = clock
        self._engine = engine or open_engine(database_url(config.shadow.database,
                                                          config.data_dir))
        self._owns_engine = engine is None
        self.queue = NotificationStore(self._engine)
        self._incidents: Incidents | None = None
        self._oee: dict[tuple[str, int], OeeView] = {}
        self._next_check = 0.0
        self.sent = 0
        self.retried = 0
        self.dropped = 0
        self.failed = 0
        self.health = ConnectorCounters("notifications", "store", Health.CONNECTING)
        self._down: dict[str, int] = {}  # channel -> failed attempts in a row, for the log
        self._hold: dict[str, int] = {}  # channel -> no attempt before this time (ns)

    async def run(self) -> None:
        """Checks and delivers until cancelled; a database error is logged once and
        retried every TICK_S."""
        try:
            while True:
                views = self._connector_views()
                try:
                    await asyncio.to_thread(self.step, views)
                except Exception as exc:  # noqa: BLE001 - the database is down: retried
                    self.health.set_health(Health.DOWN, describe(exc))
                else:
                    self.health.set_health(Health.UP)
                if self._counters is not None:
                    c = self._counters
                    c.events, c.retries = self.sent, self.retried
                    c.quarantined, c.dropped = self.failed, self.dropped
                await asyncio.sleep(TICK_S)
        finally:
            self.close()

    def close(self) -> None:
        """Disposes the engine it opened; after a `run`, which calls it, or `step`s."""
        if self._owns_engine:
            self._engine.dispose()

    def _connector_views(self) -> list[ConnectorView]:
        return [ConnectorView(c.name, c.kind, None if c.health is Health.UP
                              else int(c.since_ts * NS_PER_S), c.last_error)
                for c in self._connectors() if c.health in (Health.UP, Health.DOWN)]

    def step(self, connectors: Sequence[ConnectorView] = ()) -> None:
        """One round, in a worker thread: the check when due, then the deliveries."""
        if self._incidents is None:
            upgrade(self._engine)
            self._incidents = Incidents(self._settings, self.queue.incidents())
            self._next_check = 0.0  # at once: what was not saved is found again
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self._settings.check_interval_s
            self.check(self._view(connectors))
        self.deliver()

    def check(self, view: PlantView) -> None:
        """Updates the incidents after `view` and queues the message now due. If the
        database refuses it, the incidents are read again from it at the next step, so
        what was not saved is found and sent again."""
        assert self._incidents is not None
        incidents = self._incidents
        try:
            self._check(incidents, view)
        except BaseException:
            self._incidents = None
            raise

    def _check(self, incidents: Incidents, view: PlantView) -> None:
        changed, gone = incidents.update(view)
        due = incidents.due(view.now_ns)
        messages = []
        for channel in self._settings.channels():  # each channel its rules' incidents
            listed = [i for i in due
                      if channel in self._settings.rule_channels(incidents.rule(i.rule))]
            if listed:
                messages.append((channel, compose(
                    [(incidents.rule(i.rule).type, i) for i in listed],
                    self._settings.language, self._config.shadow.calendar.timezone,
                    view.now_ns, self._settings.max_items)))
        if due:
            told, forgotten = incidents.sent(due, view.now_ns)
            changed = (changed | told) - forgotten
            gone |= forgotten
        if not changed and not gone and not messages:
            return
        dropped = self.queue.save([incidents.items[k] for k in changed], gone, messages,
                                  now_ns=view.now_ns, queue=self._settings.queue)
        if dropped:
            self.dropped += dropped
            log.warning("notifications: the queue holds %d messages not yet delivered, its "
                        "bound (notifications.queue.max_pending): dropped the %d oldest "
                        "(%d so far)", self._settings.queue.max_pending, dropped, self.dropped)

    def deliver(self) -> None:
        """Tries each delivery that is due, once, but none on a channel held back: a
        failure holds its channel until the failed message's next try, so a server
        that is down gets one attempt per backoff, not one per message."""
        now = self._clock()
        for delivery in self.queue.due(now):
            if self._hold.get(delivery.channel, 0) <= now:
                self._deliver(delivery)

    def _deliver(self, d: Delivery) -> None:
        settings = self._settings
        now = self._clock()
        try:
            if d.channel == "email" and settings.email is not None:
                send_email(settings.email, d.message_id, d.subject, d.body)
            elif d.channel == "webhook" and settings.webhook is not None:
                send_webhook(settings.webhook, d.message_id, d.payload)
            else:
                raise DeliveryError(f"channel {d.channel} is no longer configured",
                                    permanent=True)
        except DeliveryError as exc:
            self._failed(d, exc, now)
            return
        self.queue.finish(d, "sent", self._clock())
        self.sent += 1
        if self._down.pop(d.channel, 0):
            log.info("notifications: %s delivers again", d.channel)

    def _failed(self, d: Delivery, exc: DeliveryError, now: int) -> None:
        queue = self._settings.queue
        expired = now - d.created_ns >= queue.give_up_after_s * NS_PER_S
        if exc.permanent or expired:
            self.queue.finish(d, "failed", now, str(exc))
            self.failed += 1
            log.warning("notifications: gave up on message %s by %s after %d attempts: %s",
                        d.message_id, d.channel, d.attempts + 1, exc)
            return
        failures = max(d.attempts, self._down.get(d.channel, 0))  # the channel's, in a row
        ceiling = min(queue.retry_max_s, queue.retry_initial_s * 2 ** min(failures, 30))
        delay = random.uniform(ceiling / 2, ceiling)
        self._hold[d.channel] = now + int(delay * NS_PER_S)
        self.queue.finish(d, "pending", now, str(exc), self._hold[d.channel])
        self.retried += 1
        if not self._down.get(d.channel):
            log.warning("notifications: %s failed, retrying with backoff: %s", d.channel, exc)
        self._down[d.channel] = self._down.get(d.channel, 0) + 1

    def _view(self, connectors: Sequence[ConnectorView]) -> PlantView:
        """The plant as the shadow's tables say it now."""
        now = self._clock()
        store = ShadowStore(self._engine)
        machines: dict[str, MachineView] = {}
        for name, snap in store.snapshots().items():
            _, category, _, _ = snap["state"]
            machines[name] = MachineView(None if category is None else Category(category),
                                         snap["since_ns"], bool(snap["planned"]),
                                         bool(snap["silent"]))
        alerts = [AlertView(r.id, r.machine_id, r.signal, r.direction, r.shift_sigma,
                            r.detected_ns)
                  for status in ("open", "acknowledged")
                  for r in store.alerts(status=status, machines=None, limit=1000)]
        return PlantView(now, machines, alerts, self._mid_shift_oee(store, now), connectors)

    def _mid_shift_oee(self, store: ShadowStore, now: int) -> dict[str, OeeView]:
        """Each watched machine's OEE over the first half of its current shift, computed
        once, when the shift reaches its middle."""
        if not any(r.type == "oee_below" for r in self._settings.rules):
            return {}
        self._oee = {k: v for k, v in self._oee.items() if v.end_ns > now}
        found: dict[str, OeeView] = {}
        calendar = self._config.shadow.calendar
        for s in shifts(calendar, Window(now, now + 1)):
            start, end = s.window.start_ns, s.window.end_ns
            middle = start + (end - start) // 2
            if not middle <= now < end:
                continue
            for machine in self._config.machines():
                key = (machine.id, start)
                if key not in self._oee and len(self._oee) < MAX_OEE_CHECKS:
                    oee = live_kpis(store, self._config, Window(start, middle), [machine])["oee"]
                    self._oee[key] = OeeView(f"{s.name} {s.day}", end, oee)
                if key in self._oee:
                    found[machine.id] = self._oee[key]
        return found

