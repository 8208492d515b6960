"""The shadow sink of a central member (shadow/sink.py with a fleet), on SQLite and
PostgreSQL: a member that restarts takes its sites back before its first write, so the
readings its outbox replays for them (received before it stopped, not yet applied)
reach the model. Seen in the fleet test on a clean clone: the first write came before
the first take, found no site held, and left 14 s of a machine's states out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.types import Batch
from ombre.config import validate_config
from shadow.fleet import Fleet, Leases
from shadow.schema import database_url, open_engine
from shadow.sink import ShadowSink

S = 10**9
T0 = 1_800_000_000 * S


async def nothing(site: str) -> None:
    """The source's part, left out: the batches are written by hand."""


async def test_a_restarted_member_applies_its_outbox_tail_for_the_sites_it_held(
        tmp_path: Path, database: str | None) -> None:
    config = validate_config({
        "data_dir": str(tmp_path), "shadow": {"database": database},
        "sites": [{"id": site, "lines": [{"id": f"{site}-line", "machines": [
            {"id": f"{site}-m1", "signals": [{"name": "count"}],
             "counters": {"total": "count"}}]}]} for site in ("lyon", "turin")]})
    registry = config.registry()
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        for run in range(2):  # the member's first start, then its restart
            fleet = Fleet(Leases(engine, "central-a", lease_s=15), ["lyon", "turin"], 15,
                          taken=nothing, giving=nothing, dropped=nothing)
            sink = ShadowSink(config, registry, fleet=fleet)
            await sink.connect()
            # The outbox's first batch comes at once: one reading per machine.
            ids = [registry.id_of(f"{site}-m1", "count") for site in ("lyon", "turin")]
            ts = T0 + run * S
            await sink.write(Batch(np.array([ts, ts], np.int64), np.array(ids, np.int32),
                                   np.array([10.0 + run, 20.0 + run]),
                                   np.zeros(2, np.uint8)), [])
            assert sink.store is not None
            snapshots = sink.store.snapshots()
            assert {m: s["last_seen_ns"] for m, s in snapshots.items()} == {
                "lyon-m1": ts, "turin-m1": ts}, f"run {run}"
            await sink.aclose()  # gives the sites back, as a SIGTERM does
    finally:
        engine.dispose()
