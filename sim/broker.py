"""The demo's MQTT broker: the one at 127.0.0.1:1883 (or --broker) if it answers, else
a Mosquitto child process on a free port, with its persistence in the data directory.

Mosquitto rather than an in-process Python broker (amqtt): it is the broker most shop
floors run, the same one Ombre's production installs and tests use, small on a
Raspberry Pi, and one apt package; amqtt would add a less maintained dependency for the
demo alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class Broker:
    @staticmethod
    @contextlib.asynccontextmanager
    async def find_or_start(host: str, port: int,
                            data_dir: Path) -> AsyncIterator[tuple[str, int]]:
        if _answers(host, port):
            log.info("demo: using the MQTT broker at %s:%d", host, port)
            yield host, port
            return
        path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
        binary = shutil.which("mosquitto", path=path)
        if binary is None:
            raise DemoError(f"no MQTT broker answers at {host}:{port} and mosquitto is not "
                            "installed: install it (apt-get install mosquitto) or start a "
                            "broker there")
        log.info("demo: no MQTT broker answers at %s:%d; starting mosquitto", host, port)
        port = free_port()
        home = data_dir / "mosquitto"
        home.mkdir(parents=True, exist_ok=True)
        conf = home / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        f"persistence true\npersistence_location {home}/\n"
                        f"log_dest file {home}/mosquitto.log\n")
        child = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + START_TIMEOUT_S
            while not await asyncio.to_thread(_answers, "127.0.0.1", port):
                if child.returncode is not None or loop.time() > deadline:
                    raise RuntimeError(f"mosquitto did not start; see {home}/mosquitto.log")
                await asyncio.sleep(0.1)
            log.info("demo: started mosquitto on 127.0.0.1:%d", port)
            yield "127.0.0.1", port
        finally:
            # A Ctrl-C in a terminal reaches mosquitto too, which may be gone already.
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
