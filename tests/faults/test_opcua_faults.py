"""The OPC UA server, a process of its own (tests/faults/opcua_server.py), frozen with
SIGSTOP for 20 s, then replaced by one whose certificate Ombre does not trust; Ombre
runs as `ombre run`. Frozen: the source goes down with the stale link as its reason
within a few keep-alive periods, and comes back after SIGCONT without losing a value.
Untrusted: the source fails closed, says why, keeps the certificate for `ombre trust`,
records the refusal once in the audit log (however often it reconnects), and stores
nothing from that server."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from bench.mosquitto import free_port, wait_for_port
from connectors.opcua_security import Pki, fingerprint, load_certificate
from tests.conftest import metric
from tests.connectors.opcua_plc import ServerCert, config, make_server_cert, raw
from tests.faults.harness import rss_kb
from tests.faults.netlink import stored_values
from tests.gateway.test_process import OmbreProcess

pytestmark = [pytest.mark.faults, pytest.mark.slow]

FREEZE_S = 20.0
KEEPALIVE_S = 0.25  # publishing 50 ms x keep-alive count 5 (opcua_plc.config)
NODES = [{"machine": "press", "signal": "temp", "node_id": "ns=2;s=temp"}]
MACHINES = {"press": [{"name": "temp"}]}


@contextmanager
def opcua_server(port: int, cert: ServerCert | None = None) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "tests.faults.opcua_server", str(port)]
    if cert is not None:
        argv += [str(cert.cert), str(cert.key)]
    server = subprocess.Popen(argv)
    try:
        wait_for_port(port, timeout_s=30)
        yield server
    finally:
        server.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        server.terminate()
        server.wait(30)


class ApiOmbre(OmbreProcess):
    """`ombre run --api`, so a test reads the health its users see in /readyz."""

    def __init__(self, config: Path, log: Path, api_port: int, data_dir: Path) -> None:
        super().__init__(config, log)
        self.api_port, self.data_dir = api_port, data_dir

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._started_at = log.tell()
            self.process = subprocess.Popen([sys.executable, "-m", "ombre", "run",
                                             str(self.config), "--api"], stdout=log, stderr=log)

    def get(self, path: str) -> bytes:
        """The body of GET `path` with the admin token, whatever its status."""
        token = (self.data_dir / "first-admin-token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return cast(bytes, response.read())
        except urllib.error.HTTPError as error:  # /readyz 503: not ready, with the reasons
            return cast(bytes, error.read())

    def readyz(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.get("/readyz")))

    def retries(self, source: str) -> int:
        """Failed connects of `source` so far (ombre_connector_retries_total)."""
        value = metric(self.get("/metrics").decode(), "ombre_connector_retries_total",
                       connector=source, kind="source")
        assert value is not None
        return int(value)


def start_ombre(tmp_path: Path, port: int, **source: object) -> ApiOmbre:
    plant = raw(config(port, tmp_path / "data", NODES, MACHINES, **source))
    plant["api"] = {"port": free_port()}
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(plant))
    ombre = ApiOmbre(path, tmp_path / "ombre.log", plant["api"]["port"], tmp_path / "data")
    ombre.start()
    return ombre


def wait_for_more(ombre: OmbreProcess, text: str, seen: int, timeout_s: float) -> float:
    """Seconds until the log has `text` more than `seen` times."""
    began = time.monotonic()
    while ombre.log.read_text().count(text) <= seen:
        assert ombre.process is not None
        assert ombre.process.poll() is None, ombre.log.read_text()[-3000:]
        assert time.monotonic() - began < timeout_s, f"no {text!r}:\n{ombre.log.read_text()}"
        time.sleep(0.05)
    return time.monotonic() - began


def stop(ombre: OmbreProcess) -> None:
    assert ombre.process is not None
    if ombre.process.poll() is None:
        assert ombre.signal(signal.SIGTERM) == 0


def test_server_frozen_20_s_is_seen_stale_and_recovers_after_sigcont(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    with opcua_server(port) as server:
        ombre = start_ombre(tmp_path, port)
        try:
            wait_for_more(ombre, "source plc is up", 0, 30)
            time.sleep(3.0)
            assert ombre.process is not None
            rss_before, before = rss_kb(ombre.process.pid), len(stored_values(data, "press",
                                                                                 "temp"))
            server.send_signal(signal.SIGSTOP)
            detected_s = wait_for_more(ombre, "source plc is down", 0, FREEZE_S)
            time.sleep(FREEZE_S - detected_s)
            server.send_signal(signal.SIGCONT)
            recovered_s = wait_for_more(ombre, "source plc is up", 1, 60)
            time.sleep(3.0)
            rss_after = rss_kb(ombre.process.pid)
        finally:
            stop(ombre)
    assert "Traceback" not in ombre.log.read_text()
    values = stored_values(data, "press", "temp")
    # The subscription begins with the value current then; from there on, every one.
    values = values[values >= 0]  # the initial -1 is not one of the server's writes
    expected = np.arange(values[0], values[0] + len(values))
    lost = int(values[-1] - values[0]) + 1 - len(values)
    down = ombre.log.read_text().split("source plc is down: ")[1].splitlines()[0]
    print(f"\nOPC UA server SIGSTOPped {FREEZE_S:.0f} s (keep-alive {KEEPALIVE_S} s): "
          f"{before} values stored before, {len(values)} in all, {lost} lost; detected "
          f"after {detected_s:.1f} s ({down!r}), up again {recovered_s:.1f} s after "
          f"SIGCONT; RSS {rss_before / 1024:.1f} MB before, {rss_after / 1024:.1f} MB after")
    assert "no publish response" in down
    np.testing.assert_array_equal(values, expected)  # none lost, each once
    assert len(values) > before


def test_server_certificate_swapped_for_an_untrusted_one_fails_closed(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    trusted, swapped = (make_server_cert(tmp_path / "certs", name) for name in ("plc", "rogue"))
    pki = Pki.of(data)
    pki.trusted.mkdir(parents=True)
    shutil.copy(trusted.cert, pki.trusted / "plc.der")
    secure = {"security": {"policy": "Basic256Sha256", "mode": "SignAndEncrypt"}}
    with opcua_server(port, trusted):
        ombre = start_ombre(tmp_path, port, **secure)
        try:
            wait_for_more(ombre, "source plc is up", 0, 60)
            wait_for_more(ombre, "Ombre API and dashboard on", 0, 60)
            time.sleep(2.0)
        except BaseException:
            stop(ombre)
            raise
    try:
        with opcua_server(port, swapped):
            listening = time.monotonic()
            while "is not trusted" not in str(ombre.readyz()["parts"]["plc"]):
                assert time.monotonic() - listening < 60, ombre.readyz()
                time.sleep(0.1)
            detected_s = time.monotonic() - listening
            before = len(stored_values(data, "press", "temp"))
            retries = ombre.retries("plc")
            time.sleep(5.0)  # the rogue server writes 50 values meanwhile
            after = len(stored_values(data, "press", "temp"))
            ready, refusals = ombre.readyz(), ombre.retries("plc") - retries
            log = ombre.log.read_text()
            audit = subprocess.run(
                [sys.executable, "-m", "ombre", "audit", "-c", str(ombre.config),
                 "--action", "opcua.certificate_rejected"],
                capture_output=True, text=True, timeout=60, check=True).stdout
    finally:
        stop(ombre)
    reason = ready["parts"]["plc"]["last_error"]
    rows = [line.split("\t") for line in audit.splitlines()]
    print(f"\nOPC UA server certificate swapped for an untrusted one: refused "
          f"{detected_s:.1f} s after the new server listened, {after - before} values "
          f"stored from it, {log.count('source plc is up')} connection(s) in all; "
          f"/readyz: {ready['status']}, plc {ready['parts']['plc']['health']}: {reason!r}; "
          f"{refusals} more refused reconnects in the 5 s after, {len(rows)} audit row(s): "
          f"{audit.strip()!r}")
    assert ready["status"] == "not ready"
    assert ready["parts"]["plc"]["health"] == "down"
    assert "is not trusted, so the connection was refused" in reason
    assert pki.rejected("plc").read_bytes() == swapped.cert.read_bytes()
    assert after == before  # nothing from the untrusted server
    assert log.count("source plc is up") == 1
    # One audit row for the refused certificate, however often it was refused again.
    assert refusals >= 3
    [[_, actor, action, target, details]] = rows
    assert (actor, action) == ("source:plc", "opcua.certificate_rejected")
    assert target == f"opc.tcp://127.0.0.1:{port}/ombre/"
    assert json.loads(details) == {"subject": "CN=test rogue",
                                   "sha256": fingerprint(load_certificate(swapped.cert)),
                                   "file": str(pki.rejected("plc"))}
