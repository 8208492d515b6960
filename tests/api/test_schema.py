"""Schemathesis against the OpenAPI schema: generated requests to every operation, with
an admin token, never get a 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.tokens import Role, create_token
from ombre.config import load_config
from shadow.schema import open_engine
from shadow.store import ShadowStore
from tests.api.conftest import limited
from tests.shadow.test_drift_alerts import RAMP_WATCH
from tests.shadow.test_replay import WORKED_STOP, Shop, replay_worked_example


def test_no_request_gets_a_server_error(tmp_path: Path, database: str | None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, database, [WORKED_STOP], drift=[RAMP_WATCH])
    replay_worked_example(shop, capsys)
    # Hundreds of requests a second from one token: unlimited (test_rate_limit.py).
    app = create_app(limited(load_config(shop.config, {}), per_token_per_s=1e9,
                             per_token_burst=10**9, per_address_per_s=1e9,
                             per_address_burst=10**9))
    engine = open_engine(shop.engine_url())
    app.state.store = ShadowStore(engine)  # what the lifespan would open
    headers = {"Authorization": f"Bearer {create_token(engine, 'schemathesis', Role.ADMIN)}"}
    tested = []
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers)
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path == "/api/v1/stream":
                continue  # an endless event stream: tested in test_api.py

            @given(case=operation.as_strategy())
            @settings(max_examples=25, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

            check()
            tested.append(f"{operation.method.upper()} {operation.path}")
    finally:
        engine.dispose()
    assert len(tested) >= 15, tested
