"""Migrations when several processes start at once (`ombre run` and `ombre api` under
systemd or compose): they take turns, none fails, the schema ends at head once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import inspect

from shadow.schema import database_url, open_engine

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
