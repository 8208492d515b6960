"""The request body guard, an ASGI middleware in front of every route: it reads the body
itself, counting the bytes actually received (a chunked upload has no Content-Length
to trust), and answers what no route should see:

- a Content-Encoding other than identity: 415 (nothing is decompressed);
- a body over api.max_body_bytes: 413, as soon as the count passes the cap;
- a JSON body with NaN or Infinity (Python's parser accepts them, JSON does not):
  422 naming the field.

The route then gets the body it read, replayed. An exception the route raises becomes
a 500 logged with its type and traceback but not its message, which may quote the
body (a validation error's input, a SQL statement's parameters); uvicorn, which would
log it whole, never sees it."""

from __future__ import annotations

import json
import logging
import math
import traceback
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class BodyGuard:
    """Built by create_app with the cap in bytes; one instance serves every request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = _refused_headers(headers, self.max_body_bytes)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away before its body was complete
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _too_large(self.max_body_bytes)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if body and _is_json(headers):
            path = _non_finite(bytes(body))
            if path is not None:
                await JSONResponse({"detail": [{
                    "type": "finite_number", "loc": ["body", *path],
                    "msg": "NaN and Infinity are not JSON numbers; send a finite number"}]},
                    422)(scope, receive, send)
                return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _replay(bytes(body), receive), send_tracked)
        except Exception as exc:  # noqa: BLE001 - every one, or uvicorn logs its message
            log.error("%s %s failed: %s (message not logged)\n%s", scope["method"],
                      scope["path"], type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)).rstrip())
            if not started:
                await JSONResponse({"detail": "internal error; the API's log has where"},
                                   500)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over the limit of {limit} bytes "
                                   "(api.max_body_bytes)"}, 413)


def _refused_headers(headers: Headers, limit: int) -> JSONResponse | None:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return JSONResponse({"detail": f"Content-Encoding {encoding!r} is not accepted; "
                                       "send the body uncompressed"}, 415)
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return _too_large(limit)
    return None


def _is_json(headers: Headers) -> bool:
    """Whether FastAPI would parse the body as JSON: no content type, or a JSON one."""
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    return not kind or kind == "application/json" or kind.endswith("+json")


def _non_finite(body: bytes) -> list[str | int] | None:
    """The path to the first NaN or ±Infinity in a JSON body, or None. A body that is
    not JSON at all is left to the route, which refuses it."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[list[str | int], Any]] = [([], value)]
    while stack:  # not recursive: the body may nest as deep as the parser allows
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path
        if isinstance(item, dict):
            stack += [([*path, k], v) for k, v in reversed(item.items())]
        elif isinstance(item, list):
            stack += [([*path, i], v) for i, v in reversed(list(enumerate(item)))]
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives the body read once, then the client's later messages (its
    disconnect, which a stream waits for)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
