"""The independent Sparkplug B peer of the interop tests: tests/sparkplug/node.mjs, in
Node.js with protobufjs loading connectors/sparkplug_b.proto and MQTT.js, run as a
child process. Commands go in on its stdin, what it sees comes out as JSON lines."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import require_binary

SCRIPT = Path(__file__).parents[1] / "sparkplug" / "node.mjs"
Line = dict[str, Any]


class Peer:
    """One node.mjs process; `lines` holds everything it printed, in order."""

    def __init__(self, *args: str) -> None:
        node = require_binary("node")
        if not (SCRIPT.parent / "node_modules" / "protobufjs").is_dir():
            pytest.fail("protobufjs is not in tests/sparkplug/node_modules; `make test` "
                        "installs it")
        self.lines: list[Line] = []
        self._process = subprocess.Popen([node, str(SCRIPT), *args], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, name="peer:stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            self.lines.append(orjson.loads(raw))

    def send(self, command: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{command}\n".encode())
        self._process.stdin.flush()

    def messages(self, kind: str | None = None, device: str | None = None) -> list[Line]:
        """The Sparkplug messages a host peer received, of `kind` (NBIRTH...) and device."""
        found = [x for x in self.lines if "topic" in x]
        if kind is not None:
            found = [x for x in found if x["topic"].split("/")[2] == kind]
        if device is not None:
            found = [x for x in found if x["topic"].split("/")[-1] == device]
        return found

    async def wait(self, condition: Callable[[], object], what: str,
                   timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self._process.poll() is not None:
                pytest.fail(f"node.mjs ended with {self._process.returncode} while waiting "
                            f"for {what}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s} s waiting for {what}; the peer "
                            f"printed {self.lines[-5:]}")
            await asyncio.sleep(0.02)

    async def event(self, name: str, count: int = 1) -> None:
        await self.wait(lambda: sum(x.get("event") == name for x in self.lines) >= count,
                        f"the peer's event {name!r} (#{count})")

    async def resend(self, command: str, event: str, count: int, every_s: float = 0.5,
                     timeout_s: float = 30.0) -> None:
        """Send `command` every `every_s` until the peer reports `event` the `count`th
        time: for a message whose receiver may not have subscribed yet."""
        deadline = time.monotonic() + timeout_s
        while sum(x.get("event") == event for x in self.lines) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s} s resending {command!r} until the "
                            f"peer's event {event!r} (#{count})")
            self.send(command)
            await asyncio.sleep(every_s)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.terminate()
        self._process.wait(10)
        assert self._process.stdout is not None
        self._process.stdout.close()
        self._reader.join(5)


@contextmanager
def peer(*args: str) -> Iterator[Peer]:
    running = Peer(*args)
    try:
        yield running
    finally:
        running.close()
