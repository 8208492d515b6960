"""shadow/fleet.py's leases against a real database (SQLite and PostgreSQL): one member
holds a site at a time, a lapsed lease is taken with a new epoch, and a write under an
epoch that is no longer held is refused (the fence), even by the same member's process
that took the site back since."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shadow.fleet import LeaseLostError, Leases
from shadow.schema import database_url, open_engine, upgrade

S = 10**9


class Clock:
    def __init__(self) -> None:
        self.ns = 1_800_000_000 * S

    def __call__(self) -> int:
        return self.ns


Make = Callable[[str, Clock], Leases]


@pytest.fixture
def leases(database: str | None, tmp_path: Path) -> Iterator[Make]:
    """Makes one member's leases (its own engine, as a process has) in a fresh schema."""
    url = database_url(database, tmp_path)
    engines = [open_engine(url)]
    upgrade(engines[0])

    def make(member: str, clock: Clock) -> Leases:
        engines.append(open_engine(url))
        return Leases(engines[-1], member, lease_s=15, now_ns=clock)

    yield make
    for engine in engines:
        engine.dispose()


def fenced(member: Leases, held: dict[str, int]) -> bool:
    """Whether a write under `held` would go through."""
    try:
        with member.engine.begin() as c:
            member.fence(c, held)
    except LeaseLostError:
        return False
    return True


def test_one_holder_at_a_time_and_a_lapsed_lease_changes_hands(leases: Make) -> None:
    clock = Clock()
    a, b = leases("central-a", clock), leases("central-b", clock)
    assert (a.heartbeat(), b.heartbeat()) == (1, 2)
    assert a.take("lyon") == 1
    assert b.take("lyon") is None  # held by a
    assert a.holders() == {"lyon": "central-a"}
    clock.ns += 10 * S
    assert a.renew({"lyon": 1}) == {"lyon": 1}  # renewed to 25 s from the start
    clock.ns += 14 * S
    assert b.take("lyon") is None
    assert fenced(a, {"lyon": 1})
    clock.ns += 2 * S  # a froze: its lease lapsed
    assert not fenced(a, {"lyon": 1})
    assert b.take("lyon") == 2
    assert a.renew({"lyon": 1}) == {}  # a wakes up: the site is gone
    assert not fenced(a, {"lyon": 1})
    assert fenced(b, {"lyon": 2})
    assert not fenced(b, {"lyon": 2, "turin": 1})  # never taken


def test_a_restarted_member_takes_its_sites_back_at_once_under_a_new_epoch(leases: Make) -> None:
    clock = Clock()
    first = leases("central-a", clock)
    assert first.take("lyon") == 1
    again = leases("central-a", clock)  # the same member's next process
    assert again.take("lyon") == 2
    assert leases("central-b", clock).take("lyon") is None
    assert not fenced(first, {"lyon": 1})  # the old process's model is stale
    assert fenced(again, {"lyon": 2})


def test_a_site_given_back_is_free_and_a_member_that_leaves_is_not_counted(leases: Make) -> None:
    clock = Clock()
    a, b = leases("central-a", clock), leases("central-b", clock)
    a.heartbeat()
    assert b.heartbeat() == 2
    assert a.take("lyon") == 1
    a.give_back("lyon", 1)
    assert a.holders() == {}
    assert b.take("lyon") == 2
    a.leave()
    assert b.heartbeat() == 1
    clock.ns += 16 * S
    assert leases("central-c", clock).heartbeat() == 1  # b's heartbeat is stale
