"""Notifications: incidents throttled and grouped (pure), then messages counted as real
servers received them: an SMTP server requiring STARTTLS and a login, an HTTP receiver
down first and up later, across a restart of the notifier."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from bench.mosquitto import Mosquitto
from gateway.config_load import ConfigError
from gateway.counters import ConnectorCounters, Health
from ombre.app import build_gateway, serve
from ombre.config import OmbreConfig, load_config, validate_config
from shadow import tables as t
from shadow.calendar import to_ns
from shadow.notifier import Notifier
from shadow.notify_rules import ConnectorView, Incidents, MachineView, PlantView
from shadow.schema import database_url, open_engine
from shadow.store import ShadowStore
from shadow.timeline import NS_PER_S, Category
from tests.conftest import Publisher, wait_until
from tests.shadow.notify_servers import PASSWORD, USER, Receiver, free_port, smtp_server
from tests.shadow.scenarios import DAY, at, plant, scenario_d_lines
from tests.shadow.test_drift_alerts import RAMP_WATCH
from tests.shadow.test_replay import WORKED_STOP, Shop, replay_worked_example

MIN = 60 * NS_PER_S
T0 = 1_780_000_000 * NS_PER_S  # 2026-05-28, a Thursday


def config_with(tmp_path: Path, notifications: dict[str, Any],
                database: str | None = None) -> OmbreConfig:
    data = plant(tmp_path / "data", database)
    data["notifications"] = notifications
    return validate_config(data)


def stopped(*machines: str, since_ns: int) -> dict[str, MachineView]:
    return {m: MachineView(Category.ADET, since_ns, planned=False) for m in machines}


def test_a_flapping_machine_sends_a_bounded_number_of_messages(tmp_path: Path) -> None:
    """press-1 stops 3 minutes, runs 1, for two hours: 30 incidents, at most one message
    every min_interval_s (5 min), each saying how often it opened."""
    config = config_with(tmp_path, {
        "webhook": {"url": "http://127.0.0.1:9/hook"}, "group_window_s": 60,
        "min_interval_s": 300,
        "rules": [{"type": "machine_stopped", "minutes": 1}]}).notifications
    incidents = Incidents(config)
    messages: list[list[tuple[str, int, bool]]] = []
    opened = 0
    was_stopped = False
    for step in range(0, 120 * 6):  # every 10 s
        now = T0 + step * 10 * NS_PER_S
        minute = step // 6
        stop_since = T0 + (minute - minute % 4) * MIN
        is_stopped = minute % 4 < 3 and now - stop_since >= MIN
        opened += is_stopped and not was_stopped
        was_stopped = is_stopped
        machines = stopped("press-1", since_ns=stop_since) if minute % 4 < 3 else {}
        incidents.update(PlantView(now, machines))
        if due := incidents.due(now):
            messages.append([(i.subject, i.openings, i.cleared_ns is None) for i in due])
            incidents.sent(due, now)
    assert opened == 30
    assert 2 <= len(messages) <= 120 // 5 + 1
    assert all(len(m) == 1 for m in messages)  # one incident, one line
    assert max(openings for m in messages for _, openings, _ in m) >= 2


def test_a_burst_of_incidents_goes_out_as_one_message(tmp_path: Path) -> None:
    config = config_with(tmp_path, {
        "webhook": {"url": "http://127.0.0.1:9/hook"}, "group_window_s": 60,
        "rules": [{"type": "machine_stopped", "minutes": 5},
                  {"type": "connector_down", "minutes": 1}]}).notifications
    incidents = Incidents(config)
    first = T0 + 10 * MIN
    incidents.update(PlantView(first, stopped("press-1", since_ns=T0)))
    assert incidents.due(first) == []  # waits for the others of the burst
    down = [ConnectorView("broker", "source", T0, "connection refused")]
    incidents.update(PlantView(first + 20 * NS_PER_S, stopped("press-1", since_ns=T0),
                               connectors=down))
    due = incidents.due(first + 60 * NS_PER_S)
    assert [(i.rule, i.subject) for i in due] == [("machine_stopped", "press-1"),
                                                  ("connector_down", "broker")]
    incidents.sent(due, first + 60 * NS_PER_S)
    assert incidents.due(first + 10 * MIN) == []  # told once: nothing new


def test_a_silent_machine_keeps_its_incident_until_it_speaks(tmp_path: Path) -> None:
    config = config_with(tmp_path, {
        "webhook": {"url": "http://127.0.0.1:9/hook"}, "group_window_s": 0,
        "rules": [{"type": "machine_stopped", "minutes": 5}]}).notifications
    incidents = Incidents(config)
    now = T0 + 10 * MIN
    incidents.update(PlantView(now, stopped("press-1", since_ns=T0)))
    incidents.sent(incidents.due(now), now)
    silent = {"press-1": MachineView(None, now, planned=False, silent=True)}
    assert incidents.update(PlantView(now + MIN, silent)) == (set(), set())
    assert incidents.due(now + 10 * MIN) == []  # nothing to say: neither ended nor new
    running = {"press-1": MachineView(Category.APT, now + 20 * MIN, planned=False)}
    incidents.update(PlantView(now + 20 * MIN, running))
    [ended] = incidents.due(now + 20 * MIN)
    assert ended.cleared_ns == now + 20 * MIN


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


def count(config: OmbreConfig, status: str) -> int:
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        with engine.connect() as c:
            n: int = c.execute(select(func.count()).where(
                t.notification.c.status == status)).scalar_one()
            return n
    finally:
        engine.dispose()


def test_a_webhook_down_then_up_gets_each_message_once_across_a_restart(
        tmp_path: Path, receiver: Receiver, database: str | None) -> None:
    """The receiver is down: the message waits in the queue, retried with backoff; the
    notifier restarts, the receiver comes up: it gets the message once, then the
    connector's recovery, in French."""
    config = config_with(tmp_path, {
        "language": "fr", "webhook": {"url": receiver.url}, "group_window_s": 0,
        "min_interval_s": 0, "queue": {"retry_initial_s": 30, "retry_max_s": 60},
        "rules": [{"type": "connector_down", "minutes": 2}]}, database)
    now = [T0]
    down = [ConnectorView("broker", "source", T0 - 5 * MIN, "connection refused")]
    first = Notifier(config, clock=lambda: now[0])
    try:
        first.step(down)
        assert (first.sent, first.retried, count(config, "pending")) == (0, 1, 1)
        now[0] += 10 * NS_PER_S  # before its retry: not tried again
        first.deliver()
        assert first.retried == 1
    finally:
        first.close()
    receiver.start()
    now[0] += 2 * MIN
    again = Notifier(config, clock=lambda: now[0])
    try:
        again.step(down)  # the incident was told before the restart: no new message
        assert again.sent == 1
        assert len(receiver.bodies) == 1
        body = receiver.bodies[0]
        assert body["incidents"][0]["status"] == "open"
        assert body["text"] == "source broker : hors service depuis 5 min (connection refused)"
        assert receiver.headers[0]["Idempotency-Key"] == body["id"]
        now[0] += MIN
        again.check(PlantView(now[0], connectors=[ConnectorView("broker", "source", None,
                                                                None)]))
        again.deliver()
        assert len(receiver.bodies) == 2
        assert "de nouveau en service" in receiver.bodies[1]["text"]
        again.step(down[:0])
        assert len(receiver.bodies) == 2
    finally:
        again.close()
    assert (count(config, "sent"), count(config, "pending")) == (2, 0)


def test_a_refusing_webhook_fails_for_good_and_a_full_queue_drops_the_oldest(
        tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    config = config_with(tmp_path, {
        "webhook": {"url": receiver.url}, "group_window_s": 0, "min_interval_s": 0,
        "queue": {"max_pending": 2},
        "rules": [{"type": "machine_stopped", "minutes": 1, "notify_clear": False}]})
    now = [T0]
    notifier = Notifier(config, clock=lambda: now[0])
    try:
        notifier.step()  # opens the database
        for i in range(5):  # five stops while the receiver is down: 5 messages
            now[0] += 5 * MIN
            notifier.check(PlantView(now[0], stopped("press-1", since_ns=now[0] - 2 * MIN)))
            notifier.check(PlantView(now[0] + i, {}))
        assert notifier.dropped == 3
        assert "dropped the 1 oldest (3 so far)" in caplog.text
        notifier.deliver()  # the receiver is down: its first failure holds the channel
        assert (notifier.retried, count(config, "pending")) == (1, 2)
        receiver.start()
        receiver.fail_with = 400
        now[0] += 10 * MIN
        notifier.deliver()
        assert notifier.failed == 2
        assert (count(config, "failed"), count(config, "dropped")) == (2, 3)
    finally:
        notifier.close()


def test_a_message_the_database_refused_is_queued_at_the_next_step(tmp_path: Path) -> None:
    config = config_with(tmp_path, {
        "webhook": {"url": "http://127.0.0.1:9/hook"}, "group_window_s": 0,
        "rules": [{"type": "connector_down", "minutes": 1}]})
    down = [ConnectorView("broker", "source", T0 - 5 * MIN, "refused")]
    notifier = Notifier(config, clock=lambda: T0)
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        notifier.step()
        with engine.begin() as c:  # the queue's table unusable, as on a full disk
            c.exec_driver_sql("ALTER TABLE notification RENAME TO away")
        with pytest.raises(OperationalError):
            notifier.check(PlantView(T0, connectors=down))
        with engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE away RENAME TO notification")
        notifier.step(down)
        assert [r.status for r in notifier.queue.recent(10)] == ["pending"]
    finally:
        engine.dispose()
        notifier.close()


def test_each_channel_gets_the_lines_of_its_rules(tmp_path: Path) -> None:
    config = config_with(tmp_path, {
        "webhook": {"url": "http://127.0.0.1:9/hook"}, "group_window_s": 0,
        "email": {"host": "127.0.0.1", "sender": "o@plant.test", "to": ["a@plant.test"]},
        "rules": [{"type": "machine_stopped", "minutes": 1, "channels": ["email"]},
                  {"type": "connector_down", "minutes": 1}]})
    notifier = Notifier(config, clock=lambda: T0)
    try:
        notifier.step()
        notifier.check(PlantView(T0, stopped("press-1", since_ns=T0 - 5 * MIN), connectors=[
            ConnectorView("broker", "source", T0 - 5 * MIN, "refused")]))
        queued = {r.channel: r.body for r in notifier.queue.recent(10)}
    finally:
        notifier.close()
    assert queued == {
        "email": "source broker: down for 5 min (refused)\n"
                 "press-1: stopped (ADET) for 5 min, since 2026-05-28 20:21\n",
        "webhook": "source broker: down for 5 min (refused)\n"}


def test_a_flapping_machine_reaches_a_real_receiver_a_bounded_number_of_times(
        tmp_path: Path, receiver: Receiver) -> None:
    """press-1 stops 3 minutes and runs 1, for an hour, checked every 30 s: the receiver
    gets at most one message per min_interval_s (5 min), each listing press-1 once."""
    config = config_with(tmp_path, {
        "webhook": {"url": receiver.url}, "group_window_s": 60, "min_interval_s": 300,
        "rules": [{"type": "machine_stopped", "minutes": 1}]})
    receiver.start()
    now = [T0]
    notifier = Notifier(config, clock=lambda: now[0])
    try:
        notifier.step()
        for step in range(60 * 2):
            now[0] = T0 + step * 30 * NS_PER_S
            minute = step // 2
            since = T0 + (minute - minute % 4) * MIN
            notifier.check(PlantView(now[0], stopped("press-1", since_ns=since)
                                     if minute % 4 < 3 else {}))
            notifier.deliver()
    finally:
        notifier.close()
    assert 2 <= len(receiver.bodies) <= 60 // 5 + 1
    assert all([i["subject"] for i in b["incidents"]] == ["press-1"] for b in receiver.bodies)
    assert len({b["id"] for b in receiver.bodies}) == len(receiver.bodies)  # none twice


def write_config(tmp_path: Path, mqtt_port: int, smtp_port: int, cafile: Path) -> Path:
    """A config file whose SMTP login comes from ${ENV} and ${file:}."""
    data = plant(tmp_path / "data")
    data["shadow"]["calendar"] = {}
    data["sources"] = [{"type": "mqtt", "name": "broker", "port": mqtt_port,
                        "client_id": "ombre-notify-test",
                        "subscriptions": [{"topic": "plant/{machine}/{signal}"}]}]
    data["runtime"] = {"flush_interval_ms": 20}
    data["notifications"] = {
        "language": "fr", "group_window_s": 0, "check_interval_s": 0.2,
        "email": {"host": "127.0.0.1", "port": smtp_port, "username": "${SMTP_USER}",
                  "password": "${file:smtp-password}", "cafile": str(cafile),
                  "sender": "ombre@plant.test", "to": ["chef@plant.test"]},
        "rules": [{"type": "machine_stopped", "minutes": 5}]}
    (tmp_path / "smtp-password").write_text(PASSWORD + "\n")
    path = tmp_path / "ombre.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


@pytest.mark.slow
async def test_a_breakdown_over_mqtt_sends_one_email_over_starttls(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher,
        caplog: pytest.LogCaptureFixture) -> None:
    """Through the whole stack: a machine publishes a breakdown that began 10 minutes
    ago; `ombre run`'s composition root runs the notifier beside the gateway; the SMTP
    server gets one e-mail, in French, over STARTTLS after a login."""
    caplog.set_level(logging.INFO)
    with smtp_server(tmp_path) as (controller, mailbox, cert):
        path = write_config(tmp_path, broker.port, controller.port, cert)
        config = load_config(path, {"SMTP_USER": USER})
        gateway, outbox = build_gateway(config)
        stop = asyncio.Event()
        task = asyncio.create_task(serve(config, gateway, outbox, stop), name="test:serve")
        try:
            began_ms = time.time_ns() // 10**6 - 10 * 60_000
            await wait_until(lambda: gateway.counters.connector("broker", "source").health
                             is Health.UP, what="the MQTT source")
            publisher.publish("plant/press-1/state",
                              json.dumps({"value": "BREAKDOWN", "ts": began_ms}))
            await wait_until(lambda: len(mailbox.messages) >= 1, what="the e-mail")
            await asyncio.sleep(1)  # a few more checks: nothing new to say
        finally:
            stop.set()
            await task
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["Subject"].startswith("[Ombre] press-1 : à l'arrêt (ADET) depuis 10 min, "
                                         "soit depuis ")
    assert "press-1 : à l'arrêt (ADET) depuis 10 min" in message.get_content()
    assert message["To"] == "chef@plant.test"
    assert mailbox.tls == [True]
    assert mailbox.logins == [(USER, True)]


def test_a_refused_login_is_given_up_at_once(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with smtp_server(tmp_path) as (controller, mailbox, cert):
        config = config_with(tmp_path, {
            "group_window_s": 0,
            "email": {"host": "127.0.0.1", "port": controller.port, "username": USER,
                      "password": SecretStr("wrong"), "cafile": str(cert),
                      "sender": "o@plant.test", "to": ["a@plant.test"]},
            "rules": [{"type": "connector_down", "minutes": 1}]})
        notifier = Notifier(config, clock=lambda: T0)
        try:
            notifier.step([ConnectorView("broker", "source", T0 - 5 * MIN, "refused")])
        finally:
            notifier.close()
    assert (notifier.sent, notifier.failed, notifier.retried) == (0, 1, 0)
    assert mailbox.messages == []
    assert mailbox.logins  # smtplib tries each mechanism offered: all refused
    assert set(mailbox.logins) == {(USER, False)}
    assert "answered 535" in caplog.text


def test_connector_health_reaches_the_rules(tmp_path: Path) -> None:
    """What the composition root hands the notifier: the gateway's parts, down ones
    with the time they went down."""
    config = config_with(tmp_path, {"webhook": {"url": "http://127.0.0.1:9/hook"},
                                    "rules": [{"type": "connector_down"}]})
    part = ConnectorCounters("broker", "source")
    part.set_health(Health.DOWN, "refused")
    notifier = Notifier(config, lambda: [part])
    try:
        [view] = notifier._connector_views()
    finally:
        notifier.close()
    assert view.name == "broker"
    assert view.error == "refused"
    assert view.down_since_ns == int(part.since_ts * NS_PER_S)


def docs_block() -> dict[str, Any]:
    text = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded: dict[str, Any] = yaml.safe_load(block)
    return loaded


def test_the_documented_block_loads_with_its_secrets_from_env_and_file(tmp_path: Path) -> None:
    data = plant(tmp_path / "data")
    data["sites"][0]["lines"][0]["machines"].append({"id": "cnc-1"})
    data["notifications"] = docs_block()["notifications"]
    secret = tmp_path / "smtp-password"
    secret.write_text("pw\n")
    data["notifications"]["email"]["password"] = f"${{file:{secret}}}"
    path = tmp_path / "ombre.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, {"SMTP_USER": "u", "WEBHOOK_TOKEN": "tok"})
    email = config.notifications.email
    assert email is not None
    assert email.password is not None
    assert (email.username, email.password.get_secret_value()) == ("u", "pw")
    assert [r.type for r in config.notifications.rules] == [
        "machine_stopped", "drift_alert", "oee_below", "connector_down"]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda n: n["email"].update(password="hunter2"),
     "notifications.email.password: write the secret as ${ENV_NAME} or ${file:/path}"),
    (lambda n: n.pop("email") and n.pop("webhook"),
     "notifications.rules: expected `email` or `webhook`"),
    (lambda n: n["rules"][0].update(machines=["press-9"]),
     "notifications.rules[0].machines[0]: expected a machine id of the plant, "
     "found 'press-9'"),
    (lambda n: n["rules"].append({"type": "drift_alert"}),
     "notifications.rules[4].name: expected a unique rule name, found 'drift_alert' again"),
    (lambda n: n.pop("webhook"),
     "notifications.rules[3].channels[0]: expected a configured channel (email), "
     "found 'webhook'"),
])
def test_a_bad_block_names_its_key(tmp_path: Path, change: Any, expected: str) -> None:
    data = plant(tmp_path / "data")
    data["notifications"] = docs_block()["notifications"]
    data["notifications"]["rules"][0]["machines"] = ["press-1"]
    data["notifications"]["email"]["password"] = "${SMTP_PASSWORD}"
    change(data["notifications"])
    path = tmp_path / "ombre.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as raised:
        load_config(path, {"SMTP_USER": "u", "SMTP_PASSWORD": "p", "WEBHOOK_TOKEN": "t"})
    [problem] = str(raised.value).splitlines()
    assert expected in problem


def test_the_oee_at_mid_shift_and_the_drift_alerts_come_from_the_tables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The worked shift replayed (its first half's OEE known from `ombre kpi`) and a
    ramp that opens a drift alert: at 11:00, mid-shift past, the notifier reads both
    from the shadow's tables and queues one message, in French."""
    shop = Shop(tmp_path, None, [WORKED_STOP], drift=[RAMP_WATCH])
    replay_worked_example(shop, capsys)
    assert shop.ombre(capsys, "replay", str(shop.write("d.jsonl", scenario_d_lines())))[0] == 0
    [half] = shop.kpis(capsys, "2026-03-02T06:00:00Z", "2026-03-02T10:00:00Z")
    oee = half["kpis"]["oee"]["value"]
    data = json.loads(shop.config.read_text())
    data["notifications"] = {
        "language": "fr", "webhook": {"url": "http://127.0.0.1:9/hook"}, "group_window_s": 0,
        "rules": [{"type": "oee_below", "target": 0.99}, {"type": "drift_alert"}]}
    shop.config.write_text(json.dumps(data))
    config = load_config(shop.config, {})
    engine = open_engine(shop.engine_url())
    try:  # the replay ran past the ramp's episode: back in control, it closed itself
        with engine.begin() as c:  # as the notifier would find it during the episode
            c.execute(update(t.drift_alert).values(status="open", end_ns=None, closed_by=None))
        alerts = ShadowStore(engine).alerts(status="open", machines=None, limit=100)
    finally:
        engine.dispose()
    assert alerts
    notifier = Notifier(config, clock=lambda: to_ns(at("11:00", DAY)))
    try:
        notifier.step()
        [queued] = notifier.queue.recent(10)
    finally:
        notifier.close()
    lines = queued.body.splitlines()
    percent = f"{oee * 100:.0f} %"
    assert (f"press-1 : TRS de {percent} à mi-poste (early 2026-03-02), sous l'objectif "
            "de 99 %") in lines
    drift = [line for line in lines if re.search(
        r"^press-1/temp : alerte de dérive, à la hausse de \d+,\d sigma, depuis 2026-03-05 "
        r"\d\d:\d\d$", line)]
    assert len(drift) == len(alerts)
