"""The audit log: one row per operator or admin action, written by whoever performs it
(an API route for a token, a command for the person at the console), and one per
server certificate a running OPC UA source refused (which an admin may then trust);
read by `ombre audit` and GET /api/v1/audit. Rows are only ever added."""

from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from sqlalchemy import Connection, Engine, insert, select

from shadow import tables as t
from shadow.config import ShadowedConfig
from shadow.schema import database_url, open_engine, upgrade

Action = Literal["token.create", "token.revoke", "alert.acknowledge", "alert.close",
                 "downtime.reason", "job.start", "job.complete", "orders.import", "trust.add",
                 "opcua.certificate_rejected", "assessment.answer", "shift.note"]
ACTIONS: tuple[str, ...] = get_args(Action)
MAX_LISTED = 100  # job keys listed in one orders.import row; the count says the rest


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts_ns: int
    actor: str
    action: str
    target: str
    details: dict[str, Any]


def cli_actor() -> str:
    """The actor of a command run at the console: `cli:<login name>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:  # a uid without a name, as in some containers
        return f"cli:uid {os.getuid()}"


def record(db: Engine | Connection, actor: str, action: Action, target: str,
           details: dict[str, Any] | None = None, *, ts_ns: int | None = None) -> None:
    """Adds one row; with a Connection, in its transaction (so it commits or rolls back
    with the action it records)."""
    row = {"ts_ns": time.time_ns() if ts_ns is None else ts_ns, "actor": actor[:200],
           "action": action, "target": target[:400],
           "details": json.dumps(details or {}, sort_keys=True)}
    if isinstance(db, Connection):
        db.execute(insert(t.audit_log).values(row))
        return
    with db.begin() as c:
        c.execute(insert(t.audit_log).values(row))


def as_action(name: str) -> Action:
    """`name` as an Action; ValueError naming the ones the log knows if it is not one
    (a plug-in's audit hook passes a plain string)."""
    if name not in ACTIONS:
        raise ValueError(f"expected an audit action ({', '.join(ACTIONS)}), found {name!r}")
    return cast(Action, name)


def record_in(config: ShadowedConfig, actor: str, action: Action, target: str,
              details: dict[str, Any]) -> None:
    """Adds one row to the configured shadow database from code that holds no engine
    for it (a command, a connector's callback), migrating it first as every process
    that opens it does."""
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        upgrade(engine)
        record(engine, actor, action, target, details)
    finally:
        engine.dispose()


def certificate_rejected(config: ShadowedConfig, source: str, endpoint: str,
                         details: dict[str, str]) -> None:
    """Records that the running gateway's OPC UA source refused the server certificate
    at `endpoint` (details: its subject, SHA-256 fingerprint and the file it was saved
    as, for `ombre trust`). The source's OnRejected, bound to a config."""
    record_in(config, f"source:{source}", "opcua.certificate_rejected", endpoint, details)


def entries(engine: Engine, *, since_ns: int | None = None, action: str | None = None,
            limit: int = 1000) -> list[AuditEntry]:
    """The newest `limit` rows at or after `since_ns` (of one action), newest first."""
    al = t.audit_log
    query = select(al).order_by(al.c.ts_ns.desc(), al.c.id.desc()).limit(limit)
    if since_ns is not None:
        query = query.where(al.c.ts_ns >= since_ns)
    if action is not None:
        query = query.where(al.c.action == action)
    with engine.connect() as c:
        rows = c.execute(query).all()
    return [AuditEntry(r.id, r.ts_ns, r.actor, r.action, r.target, json.loads(r.details))
            for r in rows]


def orders_details(rows: list[dict[str, Any]], problems: list[str]) -> dict[str, Any]:
    """What an orders.import row says: how many, which job keys (the first MAX_LISTED),
    how many rows were refused."""
    return {"imported": len(rows), "job_keys": [r["job_key"] for r in rows[:MAX_LISTED]],
            "refused_rows": len(problems)}
