"""The S7 source against python-snap7's own server (tests/connectors/s7_plc.py), in
this process or as a process to kill and freeze, through the whole gateway into the
SQLite sink."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from snap7.server import Server
from snap7.type import SrvArea

from bench.mosquitto import free_port
from connectors.s7_client import close_client, open_client
from connectors.s7_config import S7SourceConfig
from connectors.sqlite_ts import open_store
from gateway.counters import Health
from ombre.cli import main
from ombre.config import OmbreConfig
from tests.conftest import running, wait_until
from tests.connectors.opcua_plc import ALL, quarantine
from tests.connectors.s7_plc import VALUES, PlcProcess, config, plc, source

SOURCE = ("plc", "source")


def _items(values: list[tuple[str, str | None, int | None, Any]]) -> list[dict[str, Any]]:
    return [{"machine": "m", "signal": f"s{i}", "address": address,
             **({"type": type_name} if type_name else {}),
             **({"length": length} if length else {})}
            for i, (address, type_name, length, _) in enumerate(values)]


def _signals(values: list[tuple[str, str | None, int | None, Any]]
             ) -> dict[str, list[dict[str, Any]]]:
    return {"m": [{"name": f"s{i}", **({"type": "string"} if isinstance(v, str) else {})}
                  for i, (*_, v) in enumerate(values)]}


def _last(store: Path, signal: str) -> float:
    with open_store(store) as db:
        return float(db.read("m", signal, *ALL)[1][-1])


async def test_every_address_type_reaches_sqlite_scaled_in_one_request(tmp_path: Path) -> None:
    port = free_port()
    items = [*_items(VALUES), {"machine": "m", "signal": "scaled", "address": "DB10.DBW2",
                               "scale": 0.1, "offset": 1000}]
    signals = _signals(VALUES)
    signals["m"].append({"name": "scaled"})
    cfg = config(tmp_path, [source(port, items, poll_interval_ms=60_000)], signals)
    with plc(port) as server:
        async with running(cfg) as gateway:
            counters = gateway.counters.connector(*SOURCE)
            await wait_until(lambda: counters.readings == len(VALUES) and counters.events == 1,
                             what="one round of values")
            await asyncio.sleep(0.2)  # nothing more until the next round, a minute away
            assert (counters.readings, counters.events) == (len(VALUES), 1)
            # 16 addresses, 6 ranges (DB5, DB10, M twice, I, Q), one multi-variable read
            assert server.read_requests == 1
    store = tmp_path / "timeseries.sqlite"
    for i, (_, _, _, expected) in enumerate(VALUES):
        if isinstance(expected, str):
            with open_store(store) as db:
                assert [e.value for e in db.read_events("m", *ALL, name=f"s{i}")] == [expected]
        else:
            assert _last(store, f"s{i}") == expected, VALUES[i]
    assert _last(store, "scaled") == pytest.approx(-1234 * 0.1 + 1000)
    assert quarantine(tmp_path) == []


@pytest.mark.parametrize(("max_gap", "requests"), [(0, 3), (16, 1)])
async def test_addresses_are_grouped_into_as_few_requests_as_the_pdu_allows(
        tmp_path: Path, max_gap: int, requests: int) -> None:
    port = free_port()
    values = [(f"DB20.DBW{4 * i}", None, None, float(i * 7 - 100)) for i in range(45)]
    cfg = config(tmp_path, [source(port, _items(values), poll_interval_ms=60_000,
                                   max_gap_bytes=max_gap)], _signals(values))
    with plc(port) as server:
        for i, (*_, value) in enumerate(values):
            struct.pack_into(">h", server.memory[20], 4 * i, int(value))
        async with running(cfg) as gateway:
            counters = gateway.counters.connector(*SOURCE)
            await wait_until(lambda: counters.readings == len(values), what="one round")
            # 45 ranges: 20 variables per request; bridged 2-byte gaps: one range
            assert server.read_requests == requests
    store = tmp_path / "timeseries.sqlite"
    assert [_last(store, f"s{i}") for i in range(len(values))] == [v for *_, v in values]


async def test_a_plc_reached_by_tsap(tmp_path: Path) -> None:
    port = free_port()
    values = [("DB10.DBD4", None, None, 21.5)]
    settings = source(port, _items(values), slot=None, remote_tsap="03.01", local_tsap="10.00")
    cfg = config(tmp_path, [settings], _signals(values))
    with plc(port):
        client = await open_client(S7SourceConfig.model_validate(settings))
        assert client.connection is not None  # the TSAPs of its connection request
        assert (client.connection.local_tsap, client.connection.remote_tsap) == (0x1000, 0x0301)
        await close_client(client)
        async with running(cfg) as gateway:
            counters = gateway.counters.connector(*SOURCE)
            await wait_until(lambda: counters.readings >= 1, what="a reading")
    assert _last(tmp_path / "timeseries.sqlite", "s0") == 21.5


async def test_a_plc_in_stop_is_down_until_it_runs_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    values = [("DB10.DBD4", None, None, 21.5)]
    cfg = config(tmp_path, [source(port, _items(values), cpu_state_interval_s=0.1)],
                 _signals(values))
    with plc(port) as server, caplog.at_level(logging.INFO):
        async with running(cfg) as gateway:
            counters = gateway.counters.connector(*SOURCE)
            await wait_until(lambda: counters.readings >= 3, what="readings")
            server.run(False)
            await wait_until(lambda: counters.health is Health.DOWN, what="down in STOP")
            assert "is in STOP" in (counters.last_error or "")
            stopped_at = counters.readings
            await wait_until(lambda: counters.retries >= 3, what="retries while in STOP")
            assert counters.readings == stopped_at  # frozen values are not sent as new
            server.run(True)
            await wait_until(lambda: counters.health is Health.UP, what="up in RUN")
            await wait_until(lambda: counters.readings > stopped_at + 3, what="readings again")
    downs = [r for r in caplog.records if "is down" in r.getMessage()]
    assert len(downs) == 1, downs  # one line, however many retries
    assert "in STOP" in downs[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_plc_that_does_not_report_its_state_is_read_anyway(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = Server(log=False)  # snap7's own: it refuses SZL 0x0424
    db = bytearray(8)
    struct.pack_into(">f", db, 4, 7.25)
    server.register_area(SrvArea.DB, 10, db)
    server.start_to("127.0.0.1", port)
    values = [("DB10.DBD4", None, None, 7.25)]
    cfg = config(tmp_path, [source(port, _items(values), cpu_state_interval_s=0.1)],
                 _signals(values))
    try:
        with caplog.at_level(logging.INFO):
            async with running(cfg) as gateway:
                counters = gateway.counters.connector(*SOURCE)
                await wait_until(lambda: counters.readings >= 5, what="readings")
                assert counters.health is Health.UP
    finally:
        server.stop()
    assert _last(tmp_path / "timeseries.sqlite", "s0") == 7.25
    notes = [r for r in caplog.records if "does not report its RUN/STOP" in r.getMessage()]
    assert len(notes) == 1


async def test_refused_addresses_are_quarantined_once_and_the_others_keep_flowing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    values = [("DB10.DBD4", None, None, 21.5), ("DB99.DBW0", None, None, 0.0),
              ("DB5.DBW100", None, None, 0.0)]  # no DB99; DB5 has 40 bytes
    cfg = config(tmp_path, [source(port, _items(values))], _signals(values))
    with plc(port), caplog.at_level(logging.INFO):
        async with running(cfg) as gateway:
            counters = gateway.counters.connector(*SOURCE)
            await wait_until(lambda: counters.readings >= 10, what="readings of DB10.DBD4")
            assert counters.health is Health.UP
            assert counters.quarantined == 2
    records = quarantine(tmp_path)
    assert sorted(topic for topic, _ in records) == ["DB5.DBW100", "DB99.DBW0"]
    reasons = dict(records)
    assert "no such DB" in reasons["DB99.DBW0"]
    assert "out of range" in reasons["DB5.DBW100"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, errors  # once each, not once per poll
    assert any("DB99.DBW0 (m/s1)" in e for e in errors)


async def test_no_readable_address_at_all_is_a_down_source(tmp_path: Path) -> None:
    port = free_port()
    values = [("DB99.DBW0", None, None, 0.0)]
    cfg = config(tmp_path, [source(port, _items(values))], _signals(values))
    with plc(port):
        async with running(cfg) as gateway:
            counters = gateway.counters.connector(*SOURCE)
            await wait_until(lambda: counters.health is Health.DOWN, what="down")
            assert "none of the 1 addresses can be read, e.g. DB99.DBW0" in (
                counters.last_error or "")
    assert len(quarantine(tmp_path)) == 1


@pytest.fixture
def plc_process() -> Iterator[PlcProcess]:
    """The PLC as a process of its own, to kill, restart and freeze."""
    process = PlcProcess(free_port())
    process.start()
    yield process
    process.stop()


def _one_address(data_dir: Path, port: int) -> OmbreConfig:
    values = [("DB10.DBD4", None, None, 21.5)]
    return config(data_dir, [source(port, _items(values))], _signals(values))


@pytest.mark.slow
async def test_a_lost_connection_and_a_plc_restart_are_retried_and_recovered(
        tmp_path: Path, plc_process: PlcProcess) -> None:
    async with running(_one_address(tmp_path, plc_process.port)) as gateway:
        counters = gateway.counters.connector(*SOURCE)
        await wait_until(lambda: counters.readings >= 3, what="readings")
        plc_process.kill()  # the link drops
        await wait_until(lambda: counters.health is Health.DOWN, what="down")
        retries = counters.retries
        await wait_until(lambda: counters.retries >= retries + 3, what="retries")
        assert "127.0.0.1" in (counters.last_error or "")
        plc_process.start()  # the PLC is back, on the same address
        await wait_until(lambda: counters.health is Health.UP, what="up again")
        back_at = counters.readings
        await wait_until(lambda: counters.readings > back_at + 3, what="readings again")


@pytest.mark.slow
async def test_a_frozen_plc_times_out_recovers_and_never_blocks_a_stop(
        tmp_path: Path, plc_process: PlcProcess) -> None:
    gateway_run = running(_one_address(tmp_path, plc_process.port))
    gateway = await gateway_run.__aenter__()
    counters = gateway.counters.connector(*SOURCE)
    await wait_until(lambda: counters.readings >= 3, what="readings")
    plc_process.freeze(True)  # TCP stays open; nothing answers
    await wait_until(lambda: counters.health is Health.DOWN, what="down")
    assert "no answer within 1 s" in (counters.last_error or "")
    plc_process.freeze(False)
    await wait_until(lambda: counters.health is Health.UP, what="up after the thaw")
    plc_process.freeze(True)
    await wait_until(lambda: counters.health is Health.DOWN, what="down again")
    async with asyncio.timeout(10):  # a stop while a read hangs: bounded by timeout_s
        await gateway_run.__aexit__(None, None, None)


async def test_a_plc_that_accepts_tcp_but_never_answers(tmp_path: Path) -> None:
    with socket.socket() as listener:  # a listening socket that never accepts or replies
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        values = [("DB10.DBD4", None, None, 21.5)]
        cfg = config(tmp_path, [source(port, _items(values), timeout_s=0.3)],
                     _signals(values))
        async with asyncio.timeout(20), running(cfg) as gateway:
            counters = gateway.counters.connector(*SOURCE)
            await wait_until(lambda: counters.retries >= 2, what="retried connects")
            assert counters.health is Health.DOWN
            assert counters.last_error == ("ConnectionError: cannot connect to the PLC at "
                                           f"127.0.0.1:{port}: no answer within 0.3 s")


PLANT = """\
sites:
  - id: site
    lines:
      - id: l1
        machines:
          - id: press
            signals:
              - {name: temp}
              - {name: recipe, type: string}
sources:
  - type: s7
    name: plc
    host: 192.168.0.10
    %s
    items:
      - {machine: press, signal: temp, address: DB10.DBD4}
      - machine: press
        signal: recipe
        address: %s
        type: STRING
        length: 16
"""


@pytest.mark.parametrize(("reach", "address", "expected"), [
    ("slot: 1", "DB10.DBB20", "OK (1 machines, 2 signals, 1 sources, 0 sinks)"),
    ("remote_tsap: '03.01'", "DB10.DBB20", "OK"),
    ("slot: 1", "DB10.DBW20",
     "plant.yaml:20: sources[0].items[1].type: expected a type that fits 'DB10.DBW20' "
     "(WORD, INT, UINT), found STRING"),
    ("slot: 1", "DB10.DB20",
     "plant.yaml:19: sources[0].items[1].address: expected an S7 address such as"),
    ("rack: 0", "DB10.DBB20",
     "plant.yaml:11: sources[0].slot: expected either rack and slot, or remote_tsap, "
     "found neither"),
])
def test_ombre_check_names_the_file_line_and_key_of_a_bad_s7_setting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], reach: str, address: str,
        expected: str) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(PLANT % (reach, address))
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code == (0 if expected.startswith("OK") else 2)
    assert expected in (out if code == 0 else err.replace(str(tmp_path) + "/", ""))


def test_ombre_check_names_an_item_whose_signal_the_plant_lacks_or_mistypes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text((PLANT % ("slot: 1", "DB10.DBB20")).replace("signal: temp", "signal: tmp")
                    .replace("signal: recipe", "signal: temp"))
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.replace(str(tmp_path) + "/", "").splitlines() == [
        "plant.yaml:16: sources[0].items[0]: expected a signal declared in the plant, "
        "found press/tmp"]
    swapped = (PLANT % ("slot: 1", "DB10.DBB20")).replace("signal: temp", "signal: x") \
        .replace("signal: recipe", "signal: temp").replace("signal: x", "signal: recipe")
    path.write_text(swapped)
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.replace(str(tmp_path) + "/", "").splitlines() == [
        "plant.yaml:16: sources[0].items[0].signal: expected a number signal for DB10.DBD4 "
        "(REAL), found press/recipe of type string"]


def test_ombre_s7_read_prints_each_address_and_what_the_plc_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    with plc(port) as server:
        server.run(False)
        code = main(["s7", "read", "127.0.0.1", "--port", str(port), "DB10.DBD4",
                     "DB10.DBD8:DINT", "DB5.DBB20:STRING[10]", "I0.0", "DB99.DBW0"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1  # an address could not be read
    assert out == [
        f"PLC at 127.0.0.1:{port}: CPU STOP (mode 0x04), PDU 480 bytes, 5 addresses in "
        "1 request(s)",
        "DB10.DBD4  REAL    21.5",
        "DB10.DBD8  DINT    -100000",
        "DB5.DBB20  STRING  'RUN'",
        "I0.0       BOOL    1",
        "DB99.DBW0  INT     error: object does not exist: no such DB in the PLC (return "
        "code 0x0A)"]


@pytest.mark.parametrize(("args", "expected_code", "message"), [
    (["DB10.DBD4:INT"], 2, "expected a type that fits 'DB10.DBD4'"),
    (["DB5.DBB20:STRING"], 2, "expected a length"),
    (["--remote-tsap", "x", "DB10.DBD4"], 1, "remote_tsap: Value error, expected a TSAP"),
])
def test_ombre_s7_read_refuses_bad_arguments_before_connecting(
        capsys: pytest.CaptureFixture[str], args: list[str], expected_code: int,
        message: str) -> None:
    try:  # nothing listens on the port: an argument error must come first
        code = main(["s7", "read", "127.0.0.1", "--port", str(free_port()), *args])
    except SystemExit as exc:  # argparse: a bad ADDRESS argument
        code = int(exc.code or 0)
    assert code == expected_code
    assert message in capsys.readouterr().err
