"""The API through httpx (FastAPI's TestClient) against the app, on a shadow database
filled by replaying recorded shifts, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import Role, create_token, revoke_token
from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.schema import open_engine
from tests.conftest import metric
from tests.shadow.scenarios import D_DAY, at, scenario_d_lines
from tests.shadow.test_drift_alerts import RAMP_WATCH
from tests.shadow.test_replay import WORKED_STOP, Shop, replay_worked_example

SHIFT = {"from": "2026-03-02T06:00:00Z", "to": "2026-03-02T14:00:00Z"}


class Api:
    """A client of the app over `shop`'s database, with one token per role."""

    def __init__(self, shop: Shop, client: TestClient) -> None:
        self.shop, self.client = shop, client
        engine = open_engine(shop.engine_url())
        try:
            self.tokens = {role: create_token(engine, role.name.lower(), role) for role in Role}
        finally:
            engine.dispose()

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def get(self, path: str, role: Role = Role.VIEWER, **params: object) -> object:
        response = self.client.get(f"/api/v1{path}", params=params, headers=self.headers(role))
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def api(tmp_path: Path, database: str | None,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Api]:
    shop = Shop(tmp_path, database, [WORKED_STOP], drift=[RAMP_WATCH])
    replay_worked_example(shop, capsys)
    assert shop.ombre(capsys, "replay", str(shop.write("d.jsonl", scenario_d_lines())))[0] == 0
    config = load_config(shop.config, {})
    clock = to_ns(at("08:01", D_DAY))  # a minute after scenario D's last reading
    with TestClient(create_app(config, clock=lambda: clock)) as client:
        yield Api(shop, client)


def test_health_needs_no_token_and_everything_else_does(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    for path in ("/api/v1/machines", "/api/v1/kpis", "/api/v1/alerts", "/api/v1/downtime"):
        response = api.client.get(path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    wrong = api.client.get("/api/v1/machines", headers={"Authorization": "Bearer ombre_1_x"})
    assert wrong.status_code == 401


def test_a_revoked_token_is_refused(api: Api) -> None:
    assert api.client.get("/api/v1/machines", headers=api.headers(Role.VIEWER)).status_code \
        == 200
    engine = open_engine(api.shop.engine_url())
    try:
        assert revoke_token(engine, 1)  # the viewer's, created first
    finally:
        engine.dispose()
    assert api.client.get("/api/v1/machines", headers=api.headers(Role.VIEWER)).status_code \
        == 401


def test_a_viewer_cannot_act(api: Api) -> None:
    [alert] = api.get("/alerts")  # type: ignore[misc]
    for path, body in ((f"/api/v1/alerts/{alert['id']}/ack", None),
                       (f"/api/v1/alerts/{alert['id']}/close", {"cause": "other"}),
                       ("/api/v1/downtime/1/reason", {"code": "tool"})):
        response = api.client.post(path, json=body, headers=api.headers(Role.VIEWER))
        assert response.status_code == 403
        assert "operator" in response.json()["detail"]


def test_kpis_are_the_numbers_ombre_kpi_prints(api: Api,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for by in ("window", "shift", "order"):
        from_api = api.get("/kpis", machine="press-1", by=by, **SHIFT)
        code, out, _ = api.shop.ombre(capsys, "kpi", "--machine", "press-1", "--by", by,
                                      "--from", SHIFT["from"], "--to", SHIFT["to"], "--json")
        assert code == 0
        assert from_api == json.loads(out)
    [window] = api.get("/kpis", line="line-1", **SHIFT)  # type: ignore[misc]
    assert window["kpis"]["oee"]["value"] == pytest.approx(0.766667, abs=1e-6)


def test_ranges_and_inputs_are_bounded_and_checked(api: Api) -> None:
    viewer = api.headers(Role.VIEWER)
    ten_years = api.client.get("/api/v1/kpis", headers=viewer, params={
        "from": "2016-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    assert ten_years.status_code == 400
    assert "max_range_days" in ten_years.json()["detail"]
    backwards = api.client.get("/api/v1/kpis", headers=viewer, params={
        "from": SHIFT["to"], "to": SHIFT["from"]})
    assert backwards.status_code == 400
    bad_by = api.client.get("/api/v1/kpis", headers=viewer, params={"by": "week"})
    assert bad_by.status_code == 422
    assert bad_by.json()["detail"][0]["loc"] == ["query", "by"]
    unknown = api.client.get("/api/v1/kpis", headers=viewer, params={"machine": "press-9"})
    assert unknown.status_code == 404
    big = api.client.post("/api/v1/downtime/1/reason", headers=api.headers(Role.OPERATOR),
                          content=b"x" * (2 * 1024 * 1024))
    assert big.status_code == 413


def test_machines_show_the_live_model(api: Api) -> None:
    [press] = api.get("/machines")  # type: ignore[misc]
    assert (press["id"], press["line"], press["state"], press["category"]) == (
        "press-1", "line-1", "IDLE", "ADOT")
    assert press["online"] is True  # its last reading is a minute old, silence_s is 120
    detail = api.get("/machines/press-1")
    assert detail["signals"]["temp"]["ts_ns"] > 0  # type: ignore[index]
    missing = api.client.get("/api/v1/machines/nope", headers=api.headers(Role.VIEWER))
    assert missing.status_code == 404


def test_an_operator_gives_a_downtime_its_reason(api: Api) -> None:
    idle = [d for d in api.get("/downtime", **SHIFT)  # type: ignore[attr-defined]
            if d["state"] == "IDLE" and d["category"] == "ADOT"]
    assert len(idle) == 1
    operator = api.headers(Role.OPERATOR)
    unknown = api.client.post(f"/api/v1/downtime/{idle[0]['id']}/reason",
                              json={"code": "nope"}, headers=operator)
    assert unknown.status_code == 422
    done = api.client.post(f"/api/v1/downtime/{idle[0]['id']}/reason", json={"code": "tool"},
                           headers=operator)
    assert done.status_code == 200
    [window] = api.get("/kpis", machine="press-1", **SHIFT)  # type: ignore[misc]
    assert window["time_s"]["ADOT"] == 0
    assert window["quantities"]["FE"] == 3


def test_an_operator_acknowledges_and_closes_an_alert(api: Api) -> None:
    [alert] = api.get("/alerts")  # type: ignore[misc]
    assert (alert["signal"], alert["direction"], alert["status"]) == ("temp", "up", "closed")
    operator = api.headers(Role.OPERATOR)
    again = api.client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=operator)
    assert again.status_code == 409  # closed by itself once back in control
    bad = api.client.post(f"/api/v1/alerts/{alert['id']}/close", json={"cause": ""},
                          headers=operator)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "cause"]


def test_orders_are_listed_with_progress_and_imported_by_an_admin(api: Api) -> None:
    [order] = api.get("/orders")  # type: ignore[misc]
    # Its job ended when the order signal was cleared at 13:30: it is completed.
    assert (order["job_key"], order["planned_qty"], order["status"]) == \
        ("4711", 480, "completed")
    assert (order["end_ns"], order["ended_by"], order["end_reason"]) == (
        to_ns(at("13:30")), "signal", "press-1: job signal cleared")
    assert (order["produced"], order["good"], order["scrap"], order["rework"]) == (480, 460,
                                                                                   12, 8)
    csv_text = "order_no,planned_qty,pru_s\n4712,100,30\n4713,many,30\n"
    operator = api.client.post("/api/v1/orders/import", content=csv_text,
                               headers={**api.headers(Role.OPERATOR),
                                        "Content-Type": "text/csv"})
    assert operator.status_code == 403
    done = api.client.post("/api/v1/orders/import", content=csv_text,
                           headers={**api.headers(Role.ADMIN), "Content-Type": "text/csv"})
    assert done.status_code == 200
    assert done.json()["imported"] == 1
    [problem] = done.json()["problems"]
    assert problem.startswith("upload:3: planned_qty: ")
    created = api.client.post("/api/v1/orders", headers=api.headers(Role.ADMIN), json=[
        {"order_no": "4714", "operation": "20", "planned_qty": 10, "pru_min": 2}])
    assert created.status_code == 200
    invalid = api.client.post("/api/v1/orders", headers=api.headers(Role.ADMIN), json=[
        {"order_no": "4715", "planned_qty": -1, "pru_s": 3}])
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", 0, "planned_qty"]
    keys = {o["job_key"]: o["pru_s"] for o in api.get("/orders")}  # type: ignore[attr-defined]
    assert keys == {"4711": 45.0, "4712": 30.0, "4714/20": 120.0}


def test_ready_when_the_database_answers(api: Api) -> None:
    assert api.client.get("/readyz").status_code == 401
    ready = api.client.get("/readyz", headers=api.headers(Role.VIEWER))
    assert ready.json()["status"] == "ready"
    assert {name: p["health"] for name, p in ready.json()["parts"].items()} == {
        "shadow database": "up"}
    assert 'ombre_connector_up{connector="shadow database",kind="store"} 1' in \
        api.client.get("/metrics", headers=api.headers(Role.VIEWER)).text


def test_the_stream_sends_machines_alerts_and_kpis(api: Api) -> None:
    """The first round of the live stream carries the state of every machine, the alerts
    and the current shift's KPIs, as Server-Sent Events."""
    seen: dict[str, dict[str, object]] = {}
    with api.client.stream("GET", "/api/v1/stream", headers=api.headers(Role.VIEWER),
                           params={"interval_s": 0.2}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen[kind] = json.loads(line.removeprefix("data: "))
            if {"machine", "alert", "kpis"} <= seen.keys():
                break
    assert seen["machine"]["id"] == "press-1"
    assert seen["alert"]["signal"] == "temp"
    assert "press-1" in seen["kpis"]["machines"]  # type: ignore[operator]


def test_metrics_in_prometheus_format(api: Api) -> None:
    api.get("/machines")
    response = api.client.get("/metrics", headers=api.headers(Role.VIEWER))
    assert response.status_code == 200
    text = response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert metric(text, "ombre_machine_online", machine="press-1") == 1
    assert metric(text, "ombre_machine_category", machine="press-1", category="ADOT") == 1
    assert metric(text, "ombre_drift_alerts_open") == 0
    assert metric(text, "ombre_http_request_seconds_count", method="GET",
                  handler="list_machines", status="200") == 1


def test_signal_history_is_downsampled_with_its_drift_baseline(api: Api) -> None:
    start, end = at("06:00", D_DAY), at("08:00", D_DAY)
    series = api.get("/machines/press-1/signals/temp", points=120,
                     **{"from": start.isoformat(), "to": end.isoformat()})
    assert isinstance(series, dict)
    assert len(series["ts_ns"]) == len(series["mean"]) == 120
    assert series["readings"] == 720  # a reading every 10 s for two hours
    assert series["bad"] == 0
    assert series["ts_ns"][0] == to_ns(start)
    for low, mean, high in zip(series["min"], series["mean"], series["max"], strict=True):
        assert low <= mean <= high
    # The configured baseline's first 500 one-minute means were checked: not autocorrelated.
    [baseline] = series["baselines"]
    phi = baseline["phi"]
    assert isinstance(phi, float)
    assert abs(phi) < 0.2
    assert baseline == {"detector": "cusum", "mean": 60.0, "sigma": pytest.approx(0.5 / 6**0.5),
                        "points": 500, "phi": phi, "phi_se": pytest.approx(500**-0.5),
                        "autocorrelated": False, "mode": "readings", "residual_sigma": None,
                        "status": f"independent readings (phi={phi:.2f} +-0.04 over 500 "
                                  "readings)"}
    missing = api.client.get("/api/v1/machines/press-1/signals/nope",
                             headers=api.headers(Role.VIEWER))
    assert missing.status_code == 404


def test_a_job_cannot_be_set_by_hand_on_a_machine_with_a_job_signal(api: Api) -> None:
    operator = api.headers(Role.OPERATOR)
    for path, body in (("/api/v1/machines/press-1/job", {"order": "4711"}),
                       ("/api/v1/machines/press-1/job/complete", None)):
        refused = api.client.post(path, json=body, headers=operator)
        assert refused.status_code == 409
        assert "'order'" in refused.json()["detail"]  # the job signal it takes jobs from
    unknown = api.client.post("/api/v1/machines/press-9/job", json={"order": "4711"},
                              headers=operator)
    assert unknown.status_code == 404
    invalid = api.client.post("/api/v1/machines/press-1/job", json={"order": ""},
                              headers=operator)
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "order"]
    assert api.client.get("/api/v1/job-commands/1", headers=api.headers(Role.VIEWER)) \
        .status_code == 404


def test_text_the_database_cannot_hold_and_dates_out_of_range_are_refused(api: Api) -> None:
    """Found by schemathesis: a NUL character (PostgreSQL text cannot hold one) and a
    `to` near year 1 (the default `from` is a day before it) were 500s."""
    nul = api.client.post("/api/v1/downtime/1/reason", json={"code": "\x00"},
                          headers=api.headers(Role.OPERATOR))
    assert nul.status_code == 422
    assert nul.json()["detail"][0]["loc"] == ["body", "code"]
    query = api.client.get("/api/v1/alerts", params={"machine": "\x00"},
                           headers=api.headers(Role.VIEWER))
    assert query.status_code == 422
    assert query.json()["detail"][0]["loc"] == ["query", "machine"]
    early = api.client.get("/api/v1/downtime", params={"to": "0001-01-01T00:00:00Z"},
                           headers=api.headers(Role.VIEWER))
    assert early.status_code == 400
    assert "`to` must be from 1970-01-01" in early.json()["detail"]
