"""Migrations when several processes start at once (`ombre run` and `ombre api` under
systemd or compose): they take turns, none fails, the schema ends at head once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from shadow.schema import alembic_config, database_url, open_engine, upgrade

STARTERS = 4
# Each child waits for the same instant, then upgrades: their migrations overlap.
CHILD = """
import sys, time
from sqlalchemy.engine import make_url
from shadow.schema import open_engine, upgrade
engine = open_engine(make_url(sys.argv[1]))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
upgrade(engine)
"""


def test_concurrent_upgrades_take_turns(database: str | None, tmp_path: Path) -> None:
    url = database_url(database, tmp_path)
    at = time.time() + 3
    children = [subprocess.Popen([sys.executable, "-c", CHILD,
                                  url.render_as_string(hide_password=False), str(at)],
                                 stderr=subprocess.PIPE, text=True)
                for _ in range(STARTERS)]
    failures = [err for child in children
                if (err := child.communicate(timeout=60)[1]) and child.returncode]
    assert failures == []
    engine = open_engine(url)
    try:
        with engine.connect() as c:
            assert "equipment" in inspect(c).get_table_names()
            heads = c.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        assert len(heads) == 1
    finally:
        engine.dispose()


def test_an_upgrade_that_fails_half_way_leaves_the_schema_where_it_was(
        database: str | None, tmp_path: Path) -> None:
    """A failure in a later migration (here a table of 0008 that is in the way; in the
    field, a full disk) undoes the earlier ones of the same upgrade, so the next start
    finds a schema it knows instead of tables without their version."""
    engine = open_engine(database_url(database, tmp_path))
    try:
        with engine.begin() as c:
            command.upgrade(alembic_config(c), "0004")
        with engine.begin() as c:
            c.execute(text("CREATE TABLE audit_log (x INTEGER)"))
        with pytest.raises(SQLAlchemyError, match="audit_log"):
            upgrade(engine)
        with engine.connect() as c:
            assert c.execute(text("SELECT version_num FROM alembic_version")).all() == [("0004",)]
            assert "gateway_run" not in inspect(c).get_table_names()  # 0005 was undone
        with engine.begin() as c:
            c.execute(text("DROP TABLE audit_log"))
        upgrade(engine)  # nothing in the way: it ends at head
        with engine.connect() as c:
            assert {"gateway_run", "audit_log"} <= set(inspect(c).get_table_names())
    finally:
        engine.dispose()
