"""Many central Ombre processes, one shadow: which process keeps which site's machines.

Edge gateways publish their plant (the MQTT sink's Unified Namespace) to a central
broker; central processes (`fleet:` in their config) consume it into one shadow
database. Each site is kept by one process at a time, its *member*, through a lease row
(fleet_lease) in that database:

- a member holds a site's lease for `lease_s` and renews it every lease_s / TICKS; one
  not renewed lapses, and another member takes it;
- every taking adds one to the lease's epoch. The shadow loads a site's machines under
  the epoch it holds, and each of its writes checks, in the write's own transaction with
  the lease rows locked, that it still holds every site it writes at that epoch
  (`fence`). A member frozen past its lease, or one whose database link dropped, has
  its write refused (LeaseLostError) and rolls back: two members never both write a machine;
- members say they are alive (fleet_member); each holds at most its fair share of the
  sites, ceil(sites / members alive), and gives back what is over it once the data it
  received for them is applied (`Fleet.giving`, which the composition root provides).

Times are wall-clock: members' clocks must agree to well under `lease_s` (NTP does)."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from shadow import tables as t

log = logging.getLogger(__name__)

TICKS = 3  # renewals in a lease's life: one late renewal does not lose it
NS_PER_S = 1_000_000_000

Held = dict[str, int]  # site -> the epoch it is held at


class LeaseLostError(Exception):
    """A write touched a site this member no longer holds at the epoch it loaded."""


class Leases:
    """The lease rows of one member, in one process (a random `instance`): a member
    that restarts takes its sites again at once, with a new epoch."""

    def __init__(self, engine: Engine, member: str, lease_s: float,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self.engine = engine
        self.member = member
        self.instance = secrets.token_hex(8)
        self._lease_ns = int(lease_s * NS_PER_S)
        self._now_ns = now_ns

    def heartbeat(self) -> int:
        """Says this member is alive; returns how many members are (itself included)."""
        now, m = self._now_ns(), t.fleet_member
        with self.engine.begin() as c:
            if not c.execute(update(m).where(m.c.member == self.member)
                             .values(instance=self.instance, seen_ns=now)).rowcount:
                c.execute(m.insert().values(member=self.member, instance=self.instance,
                                            seen_ns=now))
            return len(c.execute(select(m.c.member)
                                 .where(m.c.seen_ns > now - self._lease_ns)).all())

    def renew(self, held: Mapping[str, int]) -> Held:
        """Extends the leases still held at their epochs; returns those."""
        now, lease = self._now_ns(), t.fleet_lease
        kept: Held = {}
        with self.engine.begin() as c:
            for site, epoch in held.items():
                if c.execute(update(lease).where(
                        lease.c.site_id == site, lease.c.instance == self.instance,
                        lease.c.epoch == epoch, lease.c.expires_ns > now)
                        .values(expires_ns=now + self._lease_ns)).rowcount:
                    kept[site] = epoch
        return kept

    def take(self, site: str) -> int | None:
        """Takes `site` if nobody holds it (never held, given back, lapsed) or this
        member's previous process did; returns the new epoch, or None."""
        now, lease = self._now_ns(), t.fleet_lease
        try:
            with self.engine.begin() as c:
                row = c.execute(select(lease.c.member, lease.c.epoch, lease.c.expires_ns)
                                .where(lease.c.site_id == site).with_for_update()).first()
                if row is None:
                    c.execute(lease.insert().values(
                        site_id=site, member=self.member, instance=self.instance, epoch=1,
                        expires_ns=now + self._lease_ns))
                    return 1
                if row.expires_ns > now and row.member != self.member:
                    return None
                c.execute(update(lease).where(lease.c.site_id == site).values(
                    member=self.member, instance=self.instance, epoch=row.epoch + 1,
                    expires_ns=now + self._lease_ns))
                return int(row.epoch) + 1
        except IntegrityError:  # another member inserted the row first
            return None

    def give_back(self, site: str, epoch: int) -> None:
        lease = t.fleet_lease
        with self.engine.begin() as c:
            c.execute(update(lease).where(lease.c.site_id == site,
                                          lease.c.instance == self.instance,
                                          lease.c.epoch == epoch).values(expires_ns=0))

    def leave(self) -> None:
        """Says this member is gone, so that the others count without it at once."""
        m = t.fleet_member
        with self.engine.begin() as c:
            c.execute(delete(m).where(m.c.member == self.member,
                                      m.c.instance == self.instance))

    def fence(self, c: Connection, held: Mapping[str, int]) -> None:
        """Within a write's transaction: raises LeaseLostError unless this process holds
        every site of `held` at its epoch, unexpired. The rows stay locked until the
        write commits, so that nobody takes them in between (PostgreSQL)."""
        if not held:
            return
        lease, now = t.fleet_lease, self._now_ns()
        rows = c.execute(select(lease.c.site_id, lease.c.instance, lease.c.epoch,
                                lease.c.expires_ns)
                         .where(lease.c.site_id.in_(sorted(held))).with_for_update()).all()
        mine = {r.site_id for r in rows if r.instance == self.instance
                and r.epoch == held[r.site_id] and r.expires_ns > now}
        if lost := sorted(set(held) - mine):
            raise LeaseLostError(f"fleet member {self.member} no longer holds site(s) "
                            f"{', '.join(lost)}: another member writes them")

    def holders(self) -> dict[str, str]:
        """Site -> the member holding it now (lapsed and given-back leases left out)."""
        lease, now = t.fleet_lease, self._now_ns()
        with self.engine.connect() as c:
            return {site: member for site, member in c.execute(
                select(lease.c.site_id, lease.c.member).where(lease.c.expires_ns > now))}


Change = Callable[[str], Awaitable[None]]


class Fleet:
    """This member's share of the sites, kept by `run`: `held` says which it holds
    now, at which epoch (the shadow reads it before each write). `taken(site)` is
    awaited once a site is held (start receiving it), `giving(site)` before one is given
    back to share the sites (stop receiving it, and apply what was received),
    `dropped(site)` once one lapsed and before each is given back at `close` (stop
    receiving it: at close, the runtime has drained)."""

    def __init__(self, leases: Leases, sites: Sequence[str], lease_s: float, *,
                 taken: Change, giving: Change, dropped: Change) -> None:
        self.leases = leases
        self.held: Held = {}
        self._sites = list(sites)
        self._tick_s = lease_s / TICKS
        self._taken, self._giving, self._dropped = taken, giving, dropped
        self._failing = False
        # Members start at different sites, so that members started together spread out.
        start = zlib.crc32(leases.member.encode()) % max(1, len(self._sites))
        self._order = self._sites[start:] + self._sites[:start]

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except SQLAlchemyError as exc:
                if not self._failing:
                    log.warning("fleet: the shadow database is not reachable (%s): the "
                                "sites held lapse in %.0f s unless it comes back",
                                str(exc).splitlines()[0], self._tick_s * TICKS)
                self._failing = True
            except Exception:
                log.exception("fleet: the sites' leases could not be kept up to date; "
                              "tried again in %.0f s", self._tick_s)
            else:
                if self._failing:
                    log.info("fleet: the shadow database is reachable again")
                self._failing = False
            await asyncio.sleep(self._tick_s)

    async def tick(self) -> None:
        """Renews, then gives back what is over the fair share, then takes up to it."""
        alive = await asyncio.to_thread(self.leases.heartbeat)
        kept = await asyncio.to_thread(self.leases.renew, self.held)
        for site in [s for s in self.held if s not in kept]:
            del self.held[site]
            log.warning("fleet: lost site %s (its lease lapsed): another member keeps it; "
                        "what this one received for it and had not applied is left to it",
                        site)
            await self._dropped(site)
        share = math.ceil(len(self._sites) / alive)
        for site in sorted(self.held, reverse=True)[:max(0, len(self.held) - share)]:
            await self._giving(site)
            await self._give_back(site, f"{alive} members share {len(self._sites)} sites")
        for site in self._order:
            if len(self.held) >= share:
                break
            if site in self.held:
                continue
            epoch = await asyncio.to_thread(self.leases.take, site)
            if epoch is not None:
                self.held[site] = epoch
                log.info("fleet: member %s keeps site %s (epoch %d)", self.leases.member,
                         site, epoch)
                await self._taken(site)

    async def close(self) -> None:
        """Gives every site back and leaves, so that the others take them at once."""
        for site in list(self.held):
            await self._dropped(site)
            await self._give_back(site, "stopping")
        await asyncio.to_thread(self.leases.leave)

    async def _give_back(self, site: str, why: str) -> None:
        epoch = self.held.pop(site)
        await asyncio.to_thread(self.leases.give_back, site, epoch)
        log.info("fleet: member %s gives site %s back (%s)", self.leases.member, site, why)
