"""Rate limits: an in-process token bucket per API token and one per client address,
checked by an ASGI middleware in front of everything else, so a refused request costs
no database query and no thread. A refusal is 429 with Retry-After, sent at once, from
the request's head alone: its body is never read, and no Starlette object is built for
it (a flood is mostly refusals, so their cost is what a flood takes from other clients).
Holding a refusal would make a client that does not wait for answers open a connection
per request, which costs the server more than the refusal. /healthz is not counted (a
health check must not be starved by a flood).

A request the buckets let through then waits its turn among its client's: at most
`per_client_in_flight` requests of one client (its token, or its address without one)
are worked on at once, until each answer starts (a stream holds no turn once it has
begun). A client's burst is then served a few at a time, between other clients'
requests, instead of filling the worker threads at once.

Before all this, a client address holds at most `per_address_connections` connections
open (Connections, counted by api/connections.py as uvicorn accepts them)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import bearer_credentials
from api.config import RateLimitConfig

EXEMPT = frozenset({"/healthz"})
MAX_KEY_CHARS = 200  # a token is about 55 characters; longer ones are cut, not stored


@dataclass
class Buckets:
    """Token buckets by key: each holds up to `burst` and refills at `per_s`. At most
    `max_keys` buckets are kept; the one used longest ago is dropped first (a dropped
    key starts again with a full bucket). Called from the event loop only."""

    per_s: float
    burst: int
    max_keys: int
    clock: Callable[[], float] = time.monotonic
    refused: int = 0  # requests refused so far, for /metrics
    _levels: dict[str, tuple[float, float]] = field(default_factory=dict)  # key: (left, at)

    def take(self, key: str) -> float:
        """Takes one request from `key`'s bucket: 0 when it may pass, else the seconds
        until it may."""
        now = self.clock()
        left, at = self._levels.pop(key, (float(self.burst), now))  # re-inserted: newest
        left = min(float(self.burst), left + (now - at) * self.per_s)
        wait = 0.0
        if left >= 1:
            left -= 1
        else:
            wait = (1 - left) / self.per_s
            self.refused += 1
        self._levels[key] = (left, now)
        if len(self._levels) > self.max_keys:
            del self._levels[next(iter(self._levels))]
        return wait


@dataclass
class Turns:
    """At most `limit` holders of a turn per key at once; the others wait, first come
    first served. A key is kept only while one of its requests holds or awaits a turn,
    so there are never more keys than requests the buckets let in."""

    limit: int
    _waiting: dict[str, tuple[asyncio.Semaphore, int]] = field(default_factory=dict)

    async def take(self, key: str) -> None:
        semaphore, users = self._waiting.get(key, (asyncio.Semaphore(self.limit), 0))
        self._waiting[key] = (semaphore, users + 1)
        try:
            await semaphore.acquire()
        except BaseException:  # cancelled while waiting: the client went away
            self._leave(key)
            raise

    def give_back(self, key: str) -> None:
        self._waiting[key][0].release()
        self._leave(key)

    def _leave(self, key: str) -> None:
        semaphore, users = self._waiting[key]
        if users == 1:
            del self._waiting[key]
        else:
            self._waiting[key] = (semaphore, users - 1)


@dataclass
class Connections:
    """Connections open by client address, at most `limit` each (api/connections.py counts
    them as uvicorn accepts and loses them). An address is kept only while it has one
    open. Called from the event loop only."""

    limit: int
    refused: int = 0  # connections refused so far, for /metrics
    _open: dict[str, int] = field(default_factory=dict)

    def open(self, address: str) -> bool:
        """Counts a connection from `address` in, if it is under the limit."""
        count = self._open.get(address, 0)
        if count >= self.limit:
            self.refused += 1
            return False
        self._open[address] = count + 1
        return True

    def close(self, address: str) -> None:
        count = self._open.pop(address) - 1
        if count:
            self._open[address] = count


@dataclass(frozen=True)
class RateLimits:
    """The buckets, turns and connection counts of one app: built by create_app from
    api.rate_limit."""

    by_token: Buckets
    by_address: Buckets
    turns: Turns
    connections: Connections

    @classmethod
    def of(cls, config: RateLimitConfig) -> RateLimits:
        return cls(Buckets(config.per_token_per_s, config.per_token_burst, config.max_clients),
                   Buckets(config.per_address_per_s, config.per_address_burst,
                           config.max_clients),
                   Turns(config.per_client_in_flight),
                   Connections(config.per_address_connections))


class RateLimit:
    """The middleware: the client's address bucket, then its token's (if it sent one);
    then the client's turn."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else ""
        wait, what = self.limits.by_address.take(address), "address"
        token = bearer_credentials(_authorization(scope))
        if not wait and token is not None:
            wait, what = self.limits.by_token.take(token[:MAX_KEY_CHARS]), "token"
        if wait:
            await _refuse(send, what, math.ceil(wait))
            return
        key = "token:" + token[:MAX_KEY_CHARS] if token is not None else "address:" + address
        turns = self.limits.turns
        await turns.take(key)
        holding = True

        async def send_then_give_back(message: Message) -> None:
            nonlocal holding
            if holding and message["type"] == "http.response.start":
                holding = False
                turns.give_back(key)
            await send(message)

        try:
            await self.app(scope, receive, send_then_give_back)
        finally:
            if holding:  # no answer began (the client went away, an error)
                turns.give_back(key)


def _authorization(scope: Scope) -> str | None:
    """The request's first Authorization header (ASGI servers give names in lower case)."""
    found = next((v for n, v in scope["headers"] if n == b"authorization"), None)
    return None if found is None else bytes(found).decode("latin-1")


async def _refuse(send: Send, what: str, retry_s: int) -> None:
    """Answers 429 with Retry-After and a JSON `detail`, as the routes' errors have."""
    body = (f'{{"detail":"too many requests from this {what}; retry in {retry_s} s '
            f'(api.rate_limit)"}}').encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(retry_s).encode())]})
    await send({"type": "http.response.body", "body": body})
