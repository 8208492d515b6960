"""PostgreSQL stopped hard for 1 min while the shadow writes the MES/ERP tables from a
paced replay of the worked example (the real `ombre replay` process): once it is back,
every state interval and production count is there, exactly as in a run without the
outage, and the KPIs are those of the reference.

The server is one of the test's own (`pg_ctl stop -m immediate`), not a proxy: clients
are cut off mid-transaction, pooled connections die, new ones are refused, and the
restart runs PostgreSQL's crash recovery: all a real crash does."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.counters import Health
from ombre.config import load_config
from shadow import tables as t
from shadow.sink import ShadowSink
from tests.conftest import wait_until
from tests.faults.harness import PostgresCluster
from tests.shadow.scenarios import WORKED_KPIS, WORKED_PQ, WORKED_SQ, worked_example_lines
from tests.shadow.test_replay import WORKED_STOP, Shop, replay_worked_example

pytestmark = [pytest.mark.faults, pytest.mark.slow]

OUTAGE_S = 60.0
REPLAY_S = 30.0  # wall time of the paced replay: the outage starts within it
SPEED = 8 * 3600 / REPLAY_S  # the worked example is one 8-hour shift
STOP_AFTER_ROWS = 30  # production counts written when the server stops: mid-shift
COMPARED = ("state_interval", "production_count", "job", "machine_state", "shift_kpi")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


def shop_on(tmp_path: Path, name: str, postgres: PostgresCluster) -> Shop:
    """The worked example's plant on a schema of its own; reconnection backs off to at
    most 2 s, so the test does not wait for the default 30 s once the server is back."""
    (tmp_path / name).mkdir()
    shop = Shop(tmp_path / name, postgres.url(name), [WORKED_STOP])
    data = json.loads(shop.config.read_text())
    data["runtime"] = {"backoff_initial_s": 0.2, "backoff_max_s": 2}
    shop.config.write_text(json.dumps(data))
    return shop


def content(shop: Shop) -> dict[str, list[tuple[Any, ...]]]:
    """The compared tables' rows, sorted, without their generated ids: a transaction the
    outage rolled back still used up sequence numbers, so ids may differ; nothing else."""
    dump = shop.dump()
    out = {}
    for name in COMPARED:
        keep = [i for i, c in enumerate(t.metadata.tables[name].columns)
                if c.name not in ("id", "shift_id")]
        out[name] = sorted(tuple(row[i] for i in keep) for row in dump[name])
    return out


def rows(postgres: PostgresCluster, schema: str, table: str) -> int:
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} dbname=postgres "
                         "user=postgres") as conn:
        return int(conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()[0])


def test_postgres_down_for_a_minute_loses_no_row(
        postgres: PostgresCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference = shop_on(tmp_path, "reference", postgres)
    replay_worked_example(reference, capsys)
    expected = content(reference)

    shop = shop_on(tmp_path, "outage", postgres)
    orders = shop.write("orders.csv", reference.dir.joinpath("orders.csv").read_text())
    assert shop.ombre(capsys, "orders import", str(orders))[0] == 0
    shift = shop.write("shift.jsonl", worked_example_lines())
    log = tmp_path / "replay.log"
    with log.open("wb") as out:
        replay = subprocess.Popen(
            [sys.executable, "-m", "ombre", "replay", "-c", str(shop.config), str(shift),
             "--speed", str(SPEED), "--log-level", "info"], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + REPLAY_S
        while rows(postgres, "outage", "production_count") < STOP_AFTER_ROWS:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        written_before = rows(postgres, "outage", "production_count")
        postgres.stop()
        stopped = time.monotonic()
        time.sleep(OUTAGE_S)
        assert replay.poll() is None, "the replay ended while the shadow's database was down"
        postgres.start()
        restarted = time.monotonic()
        while log.read_text().count("sink shadow is up") < 2:
            assert replay.poll() is None, log.read_text()
            time.sleep(0.05)
        recovered = time.monotonic()
        assert replay.wait(120) == 0, log.read_text()
        finished = time.monotonic()
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
    text = log.read_text()
    assert "sink shadow is down" in text
    # The job-command poller sees the outage too (a failed query, or the sink waiting
    # to reconnect): one line when it starts, no traceback; the replay may end before
    # its next look, so the line saying it is back may not come.
    assert text.count("shadow job commands is down") == 1, text
    assert text.count("shadow job commands is up (was down)") <= 1, text
    assert "Traceback" not in text
    got = content(shop)
    [result] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")
    missing = {n: len(set(expected[n]) - set(got[n])) for n in COMPARED}
    extra = {n: len(set(got[n]) - set(expected[n])) for n in COMPARED}
    print(f"\nPostgreSQL stopped {OUTAGE_S:.0f} s after {written_before} production-count rows "
          f"(of {len(expected['production_count'])}): rows missing {missing}, extra {extra}; "
          f"the shadow wrote again {recovered - restarted:.1f} s after the restart and caught "
          f"up {finished - restarted:.1f} s after it ({finished - stopped:.0f} s in all)")
    for table in COMPARED:
        assert got[table] == expected[table], table
    assert len(got["state_interval"]) == 8
    assert sum(r[3] for r in got["production_count"]) == WORKED_PQ
    assert result["quantities"]["SQ"] == WORKED_SQ
    assert {k: v["value"] for k, v in result["kpis"].items()} == pytest.approx(WORKED_KPIS,
                                                                              abs=1e-6)


async def test_the_job_command_poller_reports_an_outage_in_two_lines(
        postgres: PostgresCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With no reading to write, only the poller meets the outage: its health goes down
    with one warning and up with one line once the server is back; no traceback."""
    config = load_config(shop_on(tmp_path, "poller", postgres).config, os.environ)
    sink = ShadowSink(config, config.registry())
    caplog.set_level(logging.INFO)
    await sink.connect()
    try:
        assert sink.commands.health is Health.UP
        await asyncio.to_thread(postgres.stop)
        await wait_until(lambda: sink.commands.health is Health.DOWN, timeout_s=30,
                         what="the poller to see the outage")
        await asyncio.to_thread(postgres.start)
        await wait_until(lambda: sink.commands.health is Health.UP, timeout_s=30,
                         what="the poller to apply commands again")
    finally:
        if not (postgres.data / "postmaster.pid").exists():
            postgres.start()  # for the module's other test
        await sink.aclose()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if "job commands" in r.getMessage()]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][1].startswith("shadow job commands is down: OperationalError: ")
    assert lines[1][1] == "shadow job commands is up (was down)"
    assert not [r for r in caplog.records if r.exc_info]
