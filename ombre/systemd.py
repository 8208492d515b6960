"""systemd's service notifications (sd_notify(3)) for `ombre run` under `Type=notify`:
READY=1 once the gateway runs, WATCHDOG=1 every half `WatchdogSec` while the data path
is alive, STOPPING=1 when it stops. Written by hand: one datagram on the socket systemd
names in NOTIFY_SOCKET, which is what libsystemd does; nothing when it is unset (not
under systemd, or `Type=exec`).

Alive: the event loop runs (the ping is sent from it, so a hung loop sends none), and
no outbox call has been stuck in its thread for longer than the watchdog's period (a
failing disk answers, with an error, and keeps the pings: a restart would not mend it;
its health says so)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Sends `message` to systemd; False when not asked to (no NOTIFY_SOCKET) or when
    the socket refuses it (logged, never raised: notifying must not stop
    the gateway)."""
    path = environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # @: an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("systemd: could not send %s to %s: %s", message, path, exc)
        return False
    return True


def watchdog_s(environ: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog's period (WatchdogSec) if systemd asked this process for pings."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


async def supervised(busy_s: Callable[[], float], stop: asyncio.Event,
                     environ: Mapping[str, str] = os.environ) -> None:
    """READY=1, then a ping every half period while no outbox call has been stuck for a
    whole period, until cancelled (after the drain); STOPPING=1 once `stop` is set."""
    if not notify("READY=1", environ):
        return
    period = watchdog_s(environ)
    stopping = asyncio.create_task(stop.wait())
    stopping.add_done_callback(lambda _: notify("STOPPING=1", environ))
    try:
        if period is None:
            await asyncio.Event().wait()  # until cancelled
            return
        stuck = False
        while True:
            if busy_s() < period:
                notify("WATCHDOG=1", environ)
                stuck = False
            elif not stuck:
                stuck = True
                log.error("systemd: an outbox call has taken %.0f s: no watchdog ping, "
                          "systemd restarts the gateway after WatchdogSec", busy_s())
            await asyncio.sleep(period / 2)
    finally:
        stopping.cancel()
