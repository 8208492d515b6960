"""The demo's own mosquitto (sim/broker.py), started when no broker answers."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from bench.mosquitto import free_port
from sim.broker import Broker


def mosquitto_pid(conf: Path) -> int:
    """The process running mosquitto with `conf`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(conf).encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:  # ended meanwhile
                continue
    raise AssertionError(f"no mosquitto runs with {conf}")


async def test_the_demo_stops_cleanly_when_its_mosquitto_went_first(tmp_path: Path) -> None:
    """A Ctrl-C in a terminal reaches the demo's mosquitto too, which may exit before
    the demo stops it: the demo still ends without an error."""
    async with Broker.find_or_start("127.0.0.1", free_port(), tmp_path) as (_, port):
        assert port > 0
        pid = mosquitto_pid(tmp_path / "mosquitto" / "mosquitto.conf")
        os.kill(pid, signal.SIGINT)
        for _ in range(100):  # until asyncio has reaped it
            await asyncio.sleep(0.05)
            if not await asyncio.to_thread(Path(f"/proc/{pid}").exists):
                break
        else:
            raise AssertionError("mosquitto did not exit on SIGINT")
