"""The audit log through the API: GET /audit for admins, and how a route records what
a token did (`record`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import AsAdmin, Store, bounded
from api.tokens import Token
from shadow import audit
from shadow.audit import Action
from shadow.calendar import to_ns
from shadow.store import ShadowStore

router = APIRouter(tags=["audit"])


class AuditOut(BaseModel):
    id: int
    ts_ns: int
    actor: str  # token:<id>:<name>, or cli:<user> for a command run at the console
    action: str
    target: str
    details: dict[str, Any]


def record(store: ShadowStore, token: Token, action: Action, target: str, *, now_ns: int,
           details: dict[str, Any] | None = None) -> None:
    """Called by a route once its action is done."""
    audit.record(store.engine, f"token:{token.id}:{token.name}", action, target, details,
                 ts_ns=now_ns)


@router.get("/audit")
def list_audit(_: AsAdmin, store: Store, since: datetime | None = None,
               action: Action | None = None,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[AuditOut]:
    """Who did what, newest first: token and alert actions, downtime reasons, jobs,
    orders imports and trusted certificates (`ombre audit` prints the same)."""
    found = audit.entries(store.engine, since_ns=to_ns(bounded("since", since)) if since else None,
                          action=action, limit=limit)
    return [AuditOut(id=e.id, ts_ns=e.ts_ns, actor=e.actor, action=e.action, target=e.target,
                     details=e.details) for e in found]
