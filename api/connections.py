"""The cap on the connections one client address holds open at once
(api.rate_limit.per_address_connections), counted as uvicorn accepts them: one over the
cap is answered 429 and closed before a byte of it is read. Without it a flooder that
does not wait for answers opens a connection per request, and each one it holds is a
request queued in the server ahead of other clients' (HTTP/1.1 has one request in
flight per connection); with it, no more than the cap of one address's requests are
ever queued. A refused connection still costs an accept and a write, and a flooder
may open another at once (bench/api_flood.py counts them).

A trusted proxy (uvicorn's FORWARDED_ALLOW_IPS, 127.0.0.1 and ::1 by default) is not
capped: its clients share its address, and the buckets tell them apart by
X-Forwarded-For."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import _TrustedHosts  # its FORWARDED_ALLOW_IPS parser
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr

from api.ratelimit import Connections

_BODY = b'{"detail":"too many connections from this address (api.rate_limit)"}'
REFUSAL = (b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
           b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
           % (len(_BODY), _BODY))


def http_protocol(app: FastAPI) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, counting each connection in `app`'s rate limits:
    pass it to uvicorn as `http`. One class per app (the counts are the app's)."""
    connections: Connections = app.state.rate_limits.connections

    class CappedHttpToolsProtocol(HttpToolsProtocol):
        trusted: ClassVar[_TrustedHosts | None] = None  # from uvicorn's config, once
        address: str | None = None  # counted in `connections` while open
        refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            cls = type(self)
            if cls.trusted is None:
                cls.trusted = _TrustedHosts(self.config.forwarded_allow_ips)
            client = get_remote_addr(transport)
            if client is not None and client[0] not in cls.trusted:
                if not connections.open(client[0]):
                    self.refused = True
                    transport.write(REFUSAL)
                    transport.close()
                    return
                self.address = client[0]
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.refused:
                return
            if self.address is not None:
                connections.close(self.address)
            super().connection_lost(exc)

    return CappedHttpToolsProtocol
