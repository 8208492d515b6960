"""An OPC UA server as a process of its own, for the fault tests to freeze (SIGSTOP) or
replace: `python -m tests.faults.opcua_server PORT [CERT KEY]` serves `ns=2;s=temp`,
set to 0, 1, 2, ... every 100 ms, value k stamped BASE_TS + k * STEP; with a
certificate, only over Basic256Sha256 SignAndEncrypt. Runs until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from asyncua import ua

from tests.connectors.opcua_plc import BASE_TS, STEP, Security, ServerCert, plc

INTERVAL_S = 0.1


async def serve(port: int, cert: ServerCert | None) -> None:
    security = None if cert is None else Security(
        cert, [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt], {})
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with plc(port, {"temp": -1.0}, security) as server:
        await server.rebind_transfers()
        print("serving", flush=True)
        k = 0
        while not stop.is_set():
            await server.write("temp", float(k), BASE_TS + k * STEP)
            k += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL_S)


if __name__ == "__main__":
    certificate = ServerCert(Path(sys.argv[2]), Path(sys.argv[3])) if len(sys.argv) > 3 else None
    asyncio.run(serve(int(sys.argv[1]), certificate))
