"""The notifications sent, waiting or given up (shadow/notifier.py's durable queue),
newest first, for the dashboard's alerts page."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import AsViewer, PlantWide, Store
from shadow.notify_queue import NotificationStore

router = APIRouter(tags=["notifications"], dependencies=[PlantWide])  # not per site
Status = Literal["pending", "sent", "failed", "dropped"]


class NotificationOut(BaseModel):
    id: int
    message_id: str  # the same for each channel of one message; a webhook's `id`
    channel: Literal["email", "webhook"]
    created_ns: int
    subject: str
    body: str
    status: Status
    attempts: int
    last_error: str | None
    done_ns: int | None  # when sent, given up or dropped
    next_ns: int | None  # a pending message's next attempt


@router.get("/notifications")
def list_notifications(_: AsViewer, store: Store, status: Status | None = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 50
                       ) -> list[NotificationOut]:
    """Newest first."""
    return [NotificationOut(id=r.id, message_id=r.message_id, channel=r.channel,
                            created_ns=r.created_ns, subject=r.subject, body=r.body,
                            status=r.status, attempts=r.attempts, last_error=r.last_error,
                            done_ns=r.done_ns,
                            next_ns=r.next_ns if r.status == "pending" else None)
            for r in NotificationStore(store.engine).recent(limit, status)]
