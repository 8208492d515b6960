"""The audit log: every operator and admin action through the API and the CLI is
recorded with who did it, and only an admin reads it back (GET /api/v1/audit, `ombre
audit`), on SQLite and on the real PostgreSQL. The first admin token goes to a file
only the service's user can read, never to its output."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from api.app import create_app
from api.tokens import Role, create_token
from bench.mosquitto import free_port
from connectors.opcua_security import Pki, ensure_own_certificate
from ombre.cli import main
from ombre.config import load_config
from shadow import tables as t
from shadow.schema import open_engine
from tests.api.test_api import SHIFT, Api
from tests.connectors.test_opcua_security import raw_config
from tests.shadow.test_live import live_config
from tests.shadow.test_replay import Shop, replay_worked_example

CLI = f"cli:{getpass.getuser()}"


def add_open_alert(url: Any) -> int:
    """An open drift alert on press-1, as the shadow's detectors write one."""
    engine = open_engine(url)
    try:
        with engine.begin() as c:
            return int(c.execute(insert(t.drift_alert).values(
                machine_id="press-1", signal="temp", detector="ewma", params="{}", direction="up",
                shift_sigma=4.0, shift_value=3.0, start_ns=1, detected_ns=2,
                last_alarm_ns=2, in_control_ns=10**12, status="open")
                .returning(t.drift_alert.c.id)).scalar_one())
    finally:
        engine.dispose()


def audit_rows(api: Api, role: Role = Role.ADMIN, **params: str) -> Any:
    response = api.client.get("/api/v1/audit", params=params, headers=api.headers(role))
    assert response.status_code == 200, response.text
    return response.json()


def test_api_actions_are_audited_and_only_an_admin_reads_them(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, database, [])
    replay_worked_example(shop, capsys)
    alert_id = add_open_alert(shop.engine_url())
    with TestClient(create_app(load_config(shop.config, {}))) as client:
        api = Api(shop, client)
        operator, admin = api.headers(Role.OPERATOR), api.headers(Role.ADMIN)
        [idle] = [d for d in api.get("/downtime", **SHIFT)  # type: ignore[attr-defined]
                  if d["state"] == "IDLE"]
        for path, body in ((f"/downtime/{idle['id']}/reason", {"code": "tool"}),
                           (f"/alerts/{alert_id}/ack", None),
                           (f"/alerts/{alert_id}/close", {"cause": "other", "note": "seen"})):
            done = client.post(f"/api/v1{path}", json=body, headers=operator)
            assert done.status_code == 200, done.text
        refused = client.post(f"/api/v1/alerts/{alert_id}/ack", headers=operator)
        assert refused.status_code == 409  # refused actions are not recorded
        assert client.post("/api/v1/orders/import", content="order_no,planned_qty,pru_s\n"
                           "4712,100,30\n4713,x,30\n", headers={
                               **admin, "Content-Type": "text/csv"}).status_code == 200
        assert client.post("/api/v1/orders", headers=admin, json=[
            {"order_no": "4714", "planned_qty": 10, "pru_s": 2}]).status_code == 200

        assert client.get("/api/v1/audit", headers=operator).status_code == 403
        rows = audit_rows(api)
        ids = {role: api.tokens[role].split("_")[1] for role in Role}
        by_token = [(r["actor"], r["action"], r["target"], r["details"]) for r in rows
                    if r["actor"].startswith("token:")]
        assert by_token == [  # newest first
            (f"token:{ids[Role.ADMIN]}:admin", "orders.import", "api:json",
             {"imported": 1, "job_keys": ["4714"], "refused_rows": 0}),
            (f"token:{ids[Role.ADMIN]}:admin", "orders.import", "api:csv",
             {"imported": 1, "job_keys": ["4712"], "refused_rows": 1}),
            (f"token:{ids[Role.OPERATOR]}:operator", "alert.close", f"alert {alert_id}",
             {"cause": "other", "note": "seen"}),
            (f"token:{ids[Role.OPERATOR]}:operator", "alert.acknowledge", f"alert {alert_id}",
             {}),
            (f"token:{ids[Role.OPERATOR]}:operator", "downtime.reason",
             f"state interval {idle['id']}", {"code": "tool"})]
        created = [r for r in rows if r["action"] == "token.create"]
        assert {(r["actor"], r["details"]["role"]) for r in created} == {
            (CLI, role.name.lower()) for role in Role}
        only = audit_rows(api, action="alert.close")
        assert [r["action"] for r in only] == ["alert.close"]
        assert audit_rows(api, since="2100-01-01T00:00:00Z") == []
        unknown = client.get("/api/v1/audit", params={"action": "nope"}, headers=admin)
        assert unknown.status_code == 422


def test_job_commands_are_audited(tmp_path: Path, database: str | None) -> None:
    config = live_config(free_port(), tmp_path / "data", database, job_signal=None)
    with TestClient(create_app(config)) as client:
        engine = client.app.state.store.engine  # type: ignore[attr-defined]
        admin = {"Authorization": f"Bearer {create_token(engine, 'erp', Role.ADMIN)}"}
        assert client.post("/api/v1/orders", headers=admin, json=[
            {"order_no": "4711", "planned_qty": 10, "pru_s": 2}]).status_code == 200
        started = client.post("/api/v1/machines/press-1/job", json={"order": "4711"},
                              headers=admin)
        assert started.status_code == 202, started.text
        completed = client.post("/api/v1/machines/press-1/job/complete", headers=admin)
        assert completed.status_code == 202, completed.text
        rows = client.get("/api/v1/audit", headers=admin,
                          params={"since": "2000-01-01T00:00:00"}).json()
        jobs = [(r["action"], r["target"], r["details"]) for r in rows
                if r["action"].startswith("job.")]
        assert jobs == [
            ("job.complete", "machine press-1", {"command": completed.json()["id"]}),
            ("job.start", "machine press-1", {"command": started.json()["id"], "job": "4711"})]


def ombre(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def audit_lines(capsys: pytest.CaptureFixture[str], config: Path,
                *args: str) -> list[list[str]]:
    code, out, err = ombre(capsys, "audit", "-c", str(config), *args)
    assert code == 0, err
    return [line.split("\t") for line in out.splitlines()]


def test_cli_actions_are_audited_and_ombre_audit_prints_them(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, database, [])
    config = str(shop.config)
    code, token, _ = ombre(capsys, "token", "create", "--name", "hall screen", "-c", config)
    assert code == 0
    token_id = token.split("_")[1]
    assert ombre(capsys, "token", "revoke", token_id, "-c", config)[0] == 0
    orders = shop.write("orders.csv", "order_no,planned_qty,pru_s\n4711,480,45\n")
    assert ombre(capsys, "orders", "import", str(orders), "-c", config)[0] == 0
    lines = audit_lines(capsys, shop.config)
    assert [line[1:] for line in lines] == [
        [CLI, "token.create", f"token {token_id}",
         json.dumps({"name": "hall screen", "role": "viewer"})],
        [CLI, "token.revoke", f"token {token_id}", "{}"],
        [CLI, "orders.import", str(orders),
         json.dumps({"imported": 1, "job_keys": ["4711"], "refused_rows": 0})]]
    assert [line[2] for line in audit_lines(capsys, shop.config, "--action", "token.revoke")] \
        == ["token.revoke"]
    assert audit_lines(capsys, shop.config, "--since", "2100-01-01T00:00:00Z") == []


def test_ombre_trust_is_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(raw_config(free_port(), tmp_path, {"mode": "None"})))
    pki = Pki.of(tmp_path)
    ensure_own_certificate(pki)  # any certificate: as if the server had presented it
    pki.rejected("plc").parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(pki.own_cert, pki.rejected("plc"))
    assert ombre(capsys, "trust", str(path), "plc")[0] == 0
    [line] = audit_lines(capsys, path, "--action", "trust.add")
    assert line[1:4] == [CLI, "trust.add", "OPC UA source plc"]
    details = json.loads(line[4])
    assert details["file"] == str(pki.trusted / "plc.der")
    assert "Ombre" in details["certificate"]


def test_the_first_admin_token_goes_to_a_file_only_the_service_user_reads(
        tmp_path: Path) -> None:
    """`ombre api` for real, on a fresh database: the token is in
    <data_dir>/first-admin-token (mode 0600, this user's), works, and is in neither
    its stdout nor its stderr (what a journal would keep)."""
    port = free_port()
    data = tmp_path / "data"
    config = tmp_path / "plant.yaml"
    config.write_text(json.dumps({
        "data_dir": str(data), "api": {"port": port},
        "sites": [{"id": "s", "lines": [{"id": "l", "machines": [
            {"id": "m", "signals": [{"name": "temp"}]}]}]}]}))
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as o, err.open("w") as e:
        server = subprocess.Popen([sys.executable, "-m", "ombre", "api", "-c", str(config)],
                                  stdout=o, stderr=e)
    try:
        deadline = time.monotonic() + 60
        answered = None
        while answered is None:
            assert server.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "ombre api did not answer"
            try:
                token = (data / "first-admin-token").read_text().strip()
                answered = httpx.get(f"http://127.0.0.1:{port}/api/v1/audit",
                                     headers={"Authorization": f"Bearer {token}"})
            except (OSError, httpx.TransportError):
                time.sleep(0.2)
        assert answered.status_code == 200
        assert [r["details"] for r in answered.json()] == [
            {"name": "first admin", "role": "admin"}]
        stat = (data / "first-admin-token").stat()
        assert (stat.st_mode & 0o777, stat.st_uid) == (0o600, os.getuid())
    finally:
        server.terminate()
        server.wait(30)
    logged = out.read_text() + err.read_text()
    assert token not in logged
    assert token.split("_", 2)[2][:8] not in logged  # the secret may hold "_"
    assert f"an admin token was written to {data / 'first-admin-token'}" in logged
