"""Rate limits: an in-process token bucket per API token and one per client address,
checked by an ASGI middleware in front of everything else, so a refused request costs
no database query and no thread. A refusal is 429 with Retry-After, sent at once:
holding it would make a client that does not wait for answers open a connection per
request, which costs the server more than the refusal. /healthz is not counted (a
health check must not be starved by a flood)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

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


@dataclass(frozen=True)
class RateLimits:
    """The buckets of one app: built by create_app from api.rate_limit."""

    by_token: Buckets
    by_address: Buckets

    @classmethod
    def of(cls, config: RateLimitConfig) -> RateLimits:
        return cls(Buckets(config.per_token_per_s, config.per_token_burst, config.max_clients),
                   Buckets(config.per_address_per_s, config.per_address_burst,
                           config.max_clients))


class RateLimit:
    """The middleware: the client's address bucket, then its token's (if it sent one)."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait, what = self.limits.by_address.take(client[0] if client else ""), "address"
        token = bearer_credentials(Headers(scope=scope).get("authorization"))
        if not wait and token is not None:
            wait, what = self.limits.by_token.take(token[:MAX_KEY_CHARS]), "token"
        if wait:
            retry_s = math.ceil(wait)
            await JSONResponse({"detail": f"too many requests from this {what}; retry in "
                                          f"{retry_s} s (api.rate_limit)"}, 429,
                               headers={"Retry-After": str(retry_s)})(scope, receive, send)
            return
        await self.app(scope, receive, send)
