"""Serving the API beside the gateway in one event loop (`ombre run --api`, `ombre
demo`): uvicorn without signal handlers of its own (the gateway's serve owns SIGINT
and SIGTERM), on a socket bound before anything starts, stopped after the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from api.connections import http_protocol
from gateway.runtime import Gateway


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; OSError (e.g. the port is taken) before anything started."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


async def run_beside(app: FastAPI, sock: socket.socket, gateway: Gateway,
                     stop: asyncio.Event, force: asyncio.Event,
                     *also: Coroutine[Any, Any, None]) -> None:
    """Runs the gateway until `stop` (then its drain), the API until the gateway has
    stopped, and `also` beside them, in one task group."""
    server = _Server(uvicorn.Config(app, log_level="warning", http=http_protocol(app)))

    async def gateway_then_api() -> None:
        try:
            await gateway.run(stop, force)
        finally:
            server.should_exit = True

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(server.serve(sockets=[sock]), name="api")
        tasks.create_task(gateway_then_api(), name="gateway")
        for i, coroutine in enumerate(also):
            tasks.create_task(coroutine, name=f"beside:{i}")
