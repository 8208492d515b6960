"""The notifications' durable queue and incidents, in the shadow's database.

A message is queued in the same transaction that marks its incidents as told, so a
crash either loses both or keeps both. A delivery is marked sent after the server
accepted it: a crash in between sends it again after the restart (at least once; the
message's id lets a receiver drop the copy). Beyond `max_pending` messages waiting, the
oldest are dropped (overflow policy DROP_OLDEST) and counted."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from shadow import tables as t
from shadow.notify_config import QueueConfig
from shadow.notify_rules import Incident
from shadow.notify_text import Message

MAX_DUE = 20  # deliveries tried in one round


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    message_id: str
    channel: str
    created_ns: int
    subject: str
    body: str
    payload: str
    attempts: int


class NotificationStore:
    """Used from the Notifier's worker thread, and by the API (`recent`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def incidents(self) -> list[Incident]:
        ni = t.notification_incident
        with self.engine.connect() as c:
            return [Incident(r.rule, r.subject, r.opened_ns, r.cleared_ns, r.openings,
                             json.loads(r.detail), r.notified, r.changed_ns)
                    for r in c.execute(select(ni))]

    def save(self, incidents: Iterable[Incident], forgotten: Iterable[tuple[str, str]],
             messages: Sequence[tuple[str, Message]], *, now_ns: int,
             queue: QueueConfig) -> int:
        """Writes the incidents, deletes the forgotten ones and queues `messages`
        ((channel, message) each), in one transaction; returns how many pending messages
        the queue's bound dropped."""
        with self.engine.begin() as c:
            for key in forgotten:
                c.execute(delete(t.notification_incident).where(
                    t.notification_incident.c.rule == key[0],
                    t.notification_incident.c.subject == key[1]))
            rows = [{"rule": i.rule, "subject": i.subject, "opened_ns": i.opened_ns,
                     "cleared_ns": i.cleared_ns, "openings": i.openings,
                     "detail": json.dumps(i.detail), "notified": i.notified,
                     "changed_ns": i.changed_ns} for i in incidents]
            if rows:
                stmt = _insert(c)(t.notification_incident)
                c.execute(stmt.on_conflict_do_update(
                    index_elements=["rule", "subject"],
                    set_={k: stmt.excluded[k] for k in rows[0] if k not in ("rule", "subject")}),
                    rows)
            if not messages:
                return 0
            c.execute(t.notification.insert(), [
                {"message_id": message.id, "channel": channel, "created_ns": now_ns,
                 "subject": message.subject, "body": message.body,
                 "payload": json.dumps(message.payload), "status": "pending", "attempts": 0,
                 "next_ns": now_ns} for channel, message in messages])
            return self._bound(c, now_ns, queue)

    def _bound(self, c: Connection, now_ns: int, queue: QueueConfig) -> int:
        n = t.notification
        pending = c.execute(select(func.count()).where(n.c.status == "pending")).scalar_one()
        over = pending - queue.max_pending
        if over > 0:
            oldest = select(n.c.id).where(n.c.status == "pending").order_by(n.c.id).limit(over)
            c.execute(update(n).where(n.c.id.in_(oldest)).values(
                status="dropped", done_ns=now_ns, last_error="queue full"))
        done = c.execute(select(func.count()).where(n.c.status != "pending")).scalar_one()
        if done > queue.max_history:
            oldest = (select(n.c.id).where(n.c.status != "pending").order_by(n.c.id)
                      .limit(done - queue.max_history))
            c.execute(delete(n).where(n.c.id.in_(oldest)))
        return max(0, over)

    def due(self, now_ns: int) -> list[Delivery]:
        """Pending deliveries whose time has come, oldest first."""
        n = t.notification
        with self.engine.connect() as c:
            rows = c.execute(select(n).where(n.c.status == "pending", n.c.next_ns <= now_ns)
                             .order_by(n.c.id).limit(MAX_DUE))
            return [Delivery(r.id, r.message_id, r.channel, r.created_ns, r.subject, r.body,
                             r.payload, r.attempts) for r in rows]

    def finish(self, delivery: Delivery, status: str, now_ns: int,
               error: str | None = None, next_ns: int | None = None) -> None:
        """`status` sent or failed (for good), or pending again at `next_ns`."""
        n = t.notification
        values: dict[str, Any] = {"status": status, "attempts": delivery.attempts + 1,
                                  "last_error": error}
        if status == "pending":
            values["next_ns"] = next_ns
        else:
            values["done_ns"] = now_ns
        with self.engine.begin() as c:
            c.execute(update(n).where(n.c.id == delivery.id, n.c.status == "pending")
                      .values(**values))

    def recent(self, limit: int, status: str | None = None) -> list[Any]:
        """The newest messages, any status, newest first (for the dashboard)."""
        n = t.notification
        query = select(n.c.id, n.c.message_id, n.c.channel, n.c.created_ns, n.c.subject,
                       n.c.body, n.c.status, n.c.attempts, n.c.last_error, n.c.done_ns,
                       n.c.next_ns).order_by(n.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(n.c.status == status)
        with self.engine.connect() as c:
            return list(c.execute(query))


def _insert(c: Connection) -> Any:
    return postgresql.insert if c.dialect.name == "postgresql" else sqlite.insert
