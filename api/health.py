"""The health of each part of the data path, as /readyz and /metrics report it: the
shadow's database and, in the gateway's process, every source, every sink and the
outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway.counters import ConnectorCounters, Counters, Health, describe
from shadow.store import ShadowStore

DATABASE = "shadow database"


def database_part() -> ConnectorCounters:
    """The shadow database's health, kept by the app (its changes are logged once)."""
    return ConnectorCounters(DATABASE, "store")


def check_database(request: Request, store: ShadowStore) -> None:
    """Ask the shadow's database for `SELECT 1`, and record whether it answered."""
    part: ConnectorCounters = request.app.state.database
    try:
        with store.engine.connect() as c:
            c.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        part.set_health(Health.DOWN, describe(exc))
    else:
        part.set_health(Health.UP)


def parts(request: Request) -> list[ConnectorCounters]:
    counters: Counters | None = request.app.state.counters
    return [request.app.state.database, *(counters.parts() if counters else [])]


def describe_part(part: ConnectorCounters) -> dict[str, Any]:
    return {"kind": part.kind, "health": part.health, "last_error": part.last_error,
            "since": datetime.fromtimestamp(part.since_ts, UTC).isoformat()}
