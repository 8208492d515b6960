"""OPC UA security against real asyncua servers with their own certificates: secure
channels per policy and mode, the trust list and `ombre trust`, the user identity,
and the config rules that keep an unsecured link a written choice."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import SecretStr

from bench.mosquitto import free_port
from connectors import opcua_security
from connectors.opcua_security import Pki, Rejected, RejectionAudit, fingerprint, load_certificate
from ombre.cli import main
from ombre.config import OmbreConfig, load_config
from shadow import audit
from shadow.schema import database_url, open_engine
from tests.conftest import running, wait_until
from tests.connectors.opcua_plc import (
    BASE_TS,
    STEP,
    Security,
    ServerCert,
    config,
    counter,
    make_server_cert,
    only_problem,
    plc,
    raw,
    subscribed,
)

MACHINES = {"press": [{"name": "temp"}]}
NODES = [{"machine": "press", "signal": "temp", "node_id": "ns=2;s=temp"}]
P = ua.SecurityPolicyType


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    return make_server_cert(tmp_path_factory.mktemp("plc-pki"))


def trust(data_dir: Path, cert: ServerCert) -> None:
    trusted = Pki.of(data_dir).trusted
    trusted.mkdir(parents=True)
    shutil.copy(cert.cert, trusted / "plc.der")


async def flows(port: int, security: Security, cfg: OmbreConfig, store: Path) -> None:
    """Five writes reach the store through the gateway."""
    async with plc(port, {"temp": -1.0}, security) as server, running(cfg) as gateway:
        await subscribed(gateway, 1)
        for k in range(5):
            await server.write("temp", float(k), BASE_TS + k * STEP)
        await wait_until(lambda: counter(store, "press", "temp")() == 5, what="5 readings")


@pytest.mark.parametrize(("server_policy", "policy", "mode"), [
    (P.Basic256Sha256_SignAndEncrypt, "Basic256Sha256", "SignAndEncrypt"),
    (P.Aes128Sha256RsaOaep_Sign, "Aes128_Sha256_RsaOaep", "Sign"),
    (P.Aes256Sha256RsaPss_SignAndEncrypt, "Aes256_Sha256_RsaPss", "SignAndEncrypt"),
])
async def test_secure_channel_with_a_trusted_server_and_a_password(
        tmp_path: Path, server_cert: ServerCert, server_policy: ua.SecurityPolicyType,
        policy: str, mode: str) -> None:
    port = free_port()
    security = Security(server_cert, [server_policy], {"alice": "s3cret"})
    trust(tmp_path, server_cert)
    cfg = config(port, tmp_path, NODES, MACHINES, security={"policy": policy, "mode": mode},
                 username="alice", password=SecretStr("s3cret"))
    await flows(port, security, cfg, tmp_path / "timeseries.sqlite")
    pki = Pki.of(tmp_path)
    assert pki.own_key.stat().st_mode & 0o777 == 0o600
    assert pki.own_cert.stat().st_size > 0
    assert not pki.rejected("plc").exists()


async def test_x509_user_identity(tmp_path: Path, server_cert: ServerCert) -> None:
    port = free_port()
    user = make_server_cert(tmp_path / "user", "user", ExtendedKeyUsageOID.CLIENT_AUTH)
    security = Security(server_cert, [P.Basic256Sha256_Sign], {},
                        [user.cert.read_bytes()])
    trust(tmp_path, server_cert)
    cfg = config(port, tmp_path, NODES, MACHINES,
                 security={"policy": "Basic256Sha256", "mode": "Sign"},
                 user_certificate=user.cert, user_key=user.key)
    await flows(port, security, cfg, tmp_path / "timeseries.sqlite")
    assert security.attempts == 1


async def test_untrusted_server_fails_closed_until_ombre_trust(
        tmp_path: Path, server_cert: ServerCert, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    security = Security(server_cert, [P.Basic256Sha256_SignAndEncrypt], {})
    raw = raw_config(port, tmp_path, {"policy": "Basic256Sha256", "mode": "SignAndEncrypt"})
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    cfg = load_config(path, {})
    store, pki = tmp_path / "timeseries.sqlite", Pki.of(tmp_path)
    async with plc(port, {"temp": -1.0}, security) as server, running(cfg) as gateway:
        source = gateway.counters.connector("plc", "source")
        await wait_until(lambda: pki.rejected("plc").exists() and source.last_error is not None,
                         what="the rejected certificate")
        message = source.last_error or ""
        assert f"It was saved as {pki.rejected('plc')}" in message
        assert "run `ombre trust CONFIG plc`" in message
        assert f"into {pki.trusted}/" in message
        assert pki.rejected("plc").read_bytes() == server_cert.cert.read_bytes()
        assert security.attempts == 0  # no session was ever activated
        assert source.readings == 0
        # Refused at every reconnect, recorded in the audit log once.
        await wait_until(lambda: source.retries >= 4, what="four refused reconnects")
        [row] = audit_rows(tmp_path, "opcua.certificate_rejected")
        assert (row.actor, row.target) == ("source:plc", cfg.sources[0].endpoint)
        assert row.details == {
            "subject": "CN=test server",
            "sha256": fingerprint(load_certificate(server_cert.cert)),
            "file": str(pki.rejected("plc"))}

        assert main(["trust", str(path), "plc"]) == 0
        assert str(pki.trusted / "plc.der") in capsys.readouterr().out
        assert not pki.rejected("plc").exists()
        await subscribed(gateway, 1)
        await server.write("temp", 1.0, BASE_TS)
        await wait_until(counter(store, "press", "temp"), what="data after trusting")


async def test_browse_with_a_source_s_security(
        tmp_path: Path, server_cert: ServerCert, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    security = Security(server_cert, [P.Aes256Sha256RsaPss_SignAndEncrypt], {"alice": "pw"})
    trust(tmp_path, server_cert)
    data = raw_config(port, tmp_path, {"policy": "Aes256_Sha256_RsaPss",
                                       "mode": "SignAndEncrypt"})
    data["sources"][0] |= {"username": "alice", "password": "${PLC_PASSWORD}"}
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(data))
    args = ["browse", f"opc.tcp://127.0.0.1:{port}/ombre/", "--config", str(path),
            "--source", "plc"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLC_PASSWORD", "pw")
        async with plc(port, {"temp": 1.5}, security):
            code = await asyncio.to_thread(main, args)
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "    temp  ns=2;s=temp  Double  r" in out.splitlines()
    assert security.attempts == 1


def audit_rows(data_dir: Path, action: str) -> list[audit.AuditEntry]:
    engine = open_engine(database_url(None, data_dir))
    try:
        return audit.entries(engine, action=action)
    finally:
        engine.dispose()


async def test_each_refused_certificate_is_recorded_once_until_forgotten(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The dedupe between refusals and audit rows: once per distinct certificate, again
    after a recording failed, and a bounded memory (the oldest is forgotten)."""
    monkeypatch.setattr(opcua_security, "MAX_REMEMBERED", 3)
    calls: list[tuple[str, str, str]] = []
    database_down = True

    def on_rejected(source: str, endpoint: str, details: dict[str, str]) -> None:
        if database_down:
            raise ConnectionError("connection refused")
        calls.append((source, endpoint, details["sha256"]))

    def cert(n: int) -> Rejected:
        return Rejected("CN=plc", f"{n:02X}:00", Path("pki/rejected/plc.der"))

    rejections = RejectionAudit("plc", "opc.tcp://plc:4840", on_rejected)
    with caplog.at_level(logging.INFO, "connectors.opcua_security"):
        for _ in range(3):  # the database is down: each refusal tries again, one warning
            await rejections.record(cert(1))
        database_down = False
        for _ in range(3):
            await rejections.record(cert(1))
    assert calls == [("plc", "opc.tcp://plc:4840", "01:00")]
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "cannot record the refused certificate in the audit log" in caplog.records[0].message

    for n in (2, 1, 3, 2, 4, 1):  # 4 makes 4 remembered: 1, the oldest, is forgotten
        await rejections.record(cert(n))
    assert [sha256 for _, _, sha256 in calls] == ["01:00", "02:00", "03:00", "04:00", "01:00"]


def raw_config(port: int, data_dir: Path, security: dict[str, Any]) -> dict[str, Any]:
    return raw(config(port, data_dir, NODES, MACHINES, security=security))


async def test_ombre_trust_without_a_rejected_certificate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(raw_config(free_port(), tmp_path, {"mode": "None"})))
    assert main(["trust", str(path), "plc"]) == 1
    assert "no rejected certificate for source 'plc'" in capsys.readouterr().err
    assert main(["trust", str(path), "nope"]) == 1
    assert "expected the name of an opcua source (plc), found 'nope'" in \
        capsys.readouterr().err


async def test_wrong_password_is_refused_clearly_with_backoff(
        tmp_path: Path, server_cert: ServerCert, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    security = Security(server_cert, [P.Basic256Sha256_SignAndEncrypt], {"alice": "s3cret"})
    trust(tmp_path, server_cert)
    cfg = config(port, tmp_path, NODES, MACHINES,
                 security={"policy": "Basic256Sha256", "mode": "SignAndEncrypt"},
                 username="alice", password=SecretStr("wrong"))
    caplog.set_level(logging.WARNING, logger="gateway.counters")
    async with plc(port, {"temp": -1.0}, security), running(cfg) as gateway:
        await wait_until(lambda: security.attempts >= 3, what="3 refused attempts")
        source = gateway.counters.connector("plc", "source")
        assert source.readings == 0
    assert "the server refused user 'alice'" in (source.last_error or "")
    assert "check the username and password" in (source.last_error or "")
    assert "BadUserAccessDenied" in (source.last_error or "")
    down = [r.getMessage() for r in caplog.records if "source plc is" in r.getMessage()]
    assert len(down) == 1  # the retries back off silently


def only_error(tmp_path: Path, security: dict[str, Any]) -> str:
    data = raw_config(free_port(), tmp_path, {"mode": "None"})
    data["sources"][0]["security"] = security
    if not security:
        del data["sources"][0]["security"]
    return only_problem(tmp_path, data)


@pytest.mark.parametrize(("security", "expected"), [
    ({}, "sources[0].security: missing required key"),
    ({"policy": "Basic256Sha256"}, "sources[0].security.mode: missing required key"),
    ({"mode": "SignAndEncrypt"}, "sources[0].security.policy: expected a security policy "
                                 "for mode SignAndEncrypt"),
    ({"mode": "None", "policy": "Basic256Sha256"},
     "sources[0].security.policy: expected None (or no policy) with mode None"),
    ({"mode": "Sign", "policy": "Basic256"},
     "sources[0].security.policy: expected a current policy"),
    ({"mode": "Sign", "policy": "Basic128Rsa15"}, "set allow_deprecated: true"),
])
def test_security_config_is_explicit(tmp_path: Path, security: dict[str, Any],
                                     expected: str) -> None:
    assert expected in only_error(tmp_path, security)


def test_deprecated_policy_when_allowed(tmp_path: Path) -> None:
    cfg = config(free_port(), tmp_path, NODES, MACHINES, security={
        "mode": "Sign", "policy": "Basic256", "allow_deprecated": True})
    assert cfg.sources[0].security.policy == "Basic256"  # type: ignore[union-attr]
