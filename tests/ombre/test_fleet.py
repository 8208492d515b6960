"""The fleet as an integrator runs it, every part a real process on 127.0.0.1:

- the machines of three sites publish to a shop-floor Mosquitto;
- three edge gateways (`ombre run`, one site each) read them and publish the Unified
  Namespace to a central Mosquitto (the MQTT sink);
- two central members (`ombre run` with `fleet:`) share the sites, one shadow on
  PostgreSQL;
- a single `ombre run` reads the same machines directly: the reference.

Mid-stream an edge and a central member are killed (SIGKILL) and started again, as
systemd does; later the other member stops (SIGTERM) and its sites move to the first.
Then no reading is lost, each site was written by one member at a time, and every
machine's KPIs equal the single process's; and the first member's API (`ombre run
--api`) serves every site, filters by site, and gives a token scoped to a site that
site alone, with its KPIs equal to the single process's for the same machines."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import ProgrammingError

from api.tokens import Role, create_token
from bench.mosquitto import Mosquitto, free_port
from bench.postgres import pg_schema
from connectors.sqlite_ts import open_store
from ombre.config import load_config, validate_config
from shadow import tables as t
from shadow.calendar import rfc3339
from shadow.report import kpi
from shadow.schema import database_url, open_engine
from shadow.store import ShadowStore
from shadow.timeline import Window
from tests.conftest import Publisher, own_broker

SITES = ("lyon", "turin", "porto")
STEPS = 600  # data seconds; each machine sends its two signals at each
PACE_S = 0.04  # wall seconds per data second: 24 s of stream
S = 10**9
T0 = (int(time.time()) // 60 - 30) * 60 * S  # half an hour ago, on a minute
LEASE_S = 6


def plant(sites: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"id": s, "lines": [{"id": f"{s}-line", "machines": [
        {"id": f"{s}-{m}", "signals": [{"name": "state", "type": "string"}, {"name": "count"}],
         "state": {"type": "table", "signal": "state",
                   "map": {"RUNNING": "APT", "STOPPED": "ADET"}},
         "counters": {"total": "count"}, "silence_s": 3600}
        for m in ("m1", "m2")]}]} for s in sites]


MACHINES = [m["id"] for site in plant(SITES) for line in site["lines"] for m in line["machines"]]
RUNTIME = {"flush_interval_ms": 20, "backoff_initial_s": 0.1, "backoff_max_s": 1}


def reading(step: int, k: int) -> tuple[str, int]:
    """Machine k's state and part count at data second `step`: running, with a part
    every 5 s, then stopped for a while, each machine on its own phase."""
    running = ((step + 37 * k) // 45) % 3 != 2
    parts = sum(1 for i in range(step + 1) if i % 5 == 0 and ((i + 37 * k) // 45) % 3 != 2)
    return ("RUNNING" if running else "STOPPED"), parts


@dataclass
class Proc:
    """One `ombre run`, its output appended to a log across restarts."""

    name: str
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)
    options: tuple[str, ...] = ()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ombre", "run", *self.options, str(self.config)],
                stdout=out, stderr=subprocess.STDOUT)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        self.exits.append(self.process.wait(60))

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def write_config(path: Path, data: dict[str, Any]) -> Path:
    validate_config(data)  # a mistake in the test's config shows here, not as a dead child
    path.write_text(json.dumps(data))
    return path


def wait(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@dataclass
class Fleet:
    tmp: Path
    floor: Mosquitto
    central: Mosquitto
    pg: str
    procs: dict[str, Proc] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)  # central-a's

    def add(self, name: str, data: dict[str, Any], *options: str) -> Proc:
        data = {"data_dir": str(self.tmp / name), "runtime": RUNTIME, **data}
        proc = Proc(name, write_config(self.tmp / f"{name}.json", data), self.tmp / f"{name}.log",
                    options=options)
        self.procs[name] = proc
        proc.start()
        return proc

    def holders(self) -> dict[str, str]:
        """Site -> the member holding it (none before a member made the tables)."""
        engine = open_engine(database_url(self.pg, self.tmp))
        lease = t.fleet_lease
        try:
            with engine.connect() as c:
                return {site: member for site, member in c.execute(
                    select(lease.c.site_id, lease.c.member)
                    .where(lease.c.expires_ns > time.time_ns()))}
        except ProgrammingError:
            return {}
        finally:
            engine.dispose()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with own_broker(tmp_path / "floor") as floor, own_broker(tmp_path / "central") as central, \
            pg_schema() as pg:
        running = Fleet(tmp_path, floor, central, pg)
        try:
            yield running
        finally:
            for proc in running.procs.values():
                if proc.process is not None and proc.process.poll() is None:
                    proc.process.kill()
                    proc.process.wait()


def start(fleet: Fleet) -> None:
    """The members first, and their sessions on the central broker opened, so that it
    keeps every site's messages from the edges' first one."""
    for member in ("central-a", "central-b"):
        api = {"api": {"port": fleet.api_port}} if member == "central-a" else {}
        fleet.add(member, {
            "sites": plant(SITES), "shadow": {"database": fleet.pg},
            "fleet": {"member": member, "port": fleet.central.port, "lease_s": LEASE_S},
            "sinks": [{"type": "sqlite", "name": "timeseries"}], **api},
            *(["--api"] if api else []))
    wait(lambda: len(fleet.holders()) == 3 and len(set(fleet.holders().values())) == 2,
         "the two members to share the three sites")
    wait(lambda: all(f"mqtt fleet:{site}: connected" in fleet.procs["central-a"].text()
                     + fleet.procs["central-b"].text() for site in SITES),
         "every site's session")
    for site in SITES:
        fleet.add(f"edge-{site}", {
            "sites": plant((site,)), "shadow": {"enabled": False},
            "sources": [{"type": "mqtt", "name": "floor", "port": fleet.floor.port,
                         "client_id": f"edge-{site}", "subscriptions": [
                             {"topic": f"m/{site}/{{machine}}/{{signal}}", "format": "value"}]}],
            "sinks": [{"type": "mqtt", "name": "uns", "port": fleet.central.port,
                       "client_id": f"edge-{site}-uns"}]})
    fleet.add("single", {
        "sites": plant(SITES), "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "sources": [{"type": "mqtt", "name": "floor", "port": fleet.floor.port,
                     "client_id": "single", "subscriptions": [
                         {"topic": "m/{site}/{machine}/{signal}", "format": "value"}]}]})
    for name in ("edge-lyon", "edge-turin", "edge-porto", "single"):
        wait(lambda name=name: "mqtt floor: connected" in fleet.procs[name].text(),
             f"{name} subscribed")


def stream(fleet: Fleet) -> dict[str, float]:
    """Publishes every machine's data in time order, killing and restarting along the
    way; returns when (wall seconds from the start) each fault came."""
    publisher = Publisher(fleet.floor.port, "machines")
    faults: dict[str, float] = {}
    began = time.monotonic()
    procs = fleet.procs
    try:
        for step in range(STEPS):
            for k, machine in enumerate(MACHINES):
                site = machine.split("-")[0]
                state, parts = reading(step, k)
                ts = (T0 + step * S) // 10**6
                publisher.publish(f"m/{site}/{machine}/state",
                                  json.dumps({"value": state, "ts": ts}))
                publisher.publish(f"m/{site}/{machine}/count",
                                  json.dumps({"value": parts, "ts": ts}))
            at = time.monotonic() - began
            if step == 150:
                procs["edge-turin"].signal(signal.SIGKILL)
                faults["edge-turin killed"] = at
            elif step == 200:
                procs["edge-turin"].start()
            elif step == 300:
                procs["central-a"].signal(signal.SIGKILL)
                faults["central-a killed"] = at
            elif step == 340:
                procs["central-a"].start()
            elif step == 450:
                procs["central-b"].signal(signal.SIGTERM)
                faults["central-b stopped"] = at
            time.sleep(max(0.0, began + (step + 1) * PACE_S - time.monotonic()))
        wait(lambda: len(publisher.acked) == 2 * STEPS * len(MACHINES),
             "the broker's acknowledgements of every message")
    finally:
        publisher.close()
    return faults


def stored(fleet: Fleet, names: tuple[str, ...]) -> dict[str, set[int]]:
    """Each machine's count readings' timestamps in the time series of `names`."""
    found: dict[str, set[int]] = {m: set() for m in MACHINES}
    for name in names:
        path = fleet.tmp / name / "timeseries.sqlite"
        if not path.exists():
            continue
        with open_store(path) as store:
            for m in MACHINES:
                with contextlib.suppress(KeyError):  # nothing stored yet
                    found[m] |= set(store.read(m, "count", 0, 2**62)[0].tolist())
    return found


def clocks(url: str | None, data_dir: Path) -> dict[str, int]:
    """Each machine's latest reading applied by a shadow (its snapshot)."""
    engine = open_engine(database_url(url, data_dir))
    try:
        return {m: s["last_seen_ns"] or 0 for m, s in ShadowStore(engine).snapshots().items()}
    finally:
        engine.dispose()


def kpis(url: str | None, data_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Each machine's time elements and quantities over the stream's data time."""
    plant_config = validate_config({**config, "data_dir": str(data_dir)})
    engine = open_engine(database_url(url, data_dir))
    try:
        store = ShadowStore(engine)
        window = Window(T0, T0 + STEPS * S)
        found = {}
        for m in plant_config.machines():
            result = kpi(store, plant_config, window, [m]).to_dict()
            found[m.id] = {"time_s": result["time_s"], "quantities": result["quantities"]}
        return found
    finally:
        engine.dispose()


def the_api_serves_each_site_alone(fleet: Fleet) -> None:
    """central-a's API: every site for a plant token, Turin alone for a Turin token,
    and Turin's KPIs over the stream those of the single process's Turin machines."""
    engine = open_engine(database_url(fleet.pg, fleet.tmp))
    try:
        tokens = {"plant": create_token(engine, "office", Role.VIEWER),
                  "turin": create_token(engine, "turin", Role.VIEWER, site="turin")}
    finally:
        engine.dispose()
    span = {"from": rfc3339(T0), "to": rfc3339(T0 + STEPS * S)}

    def get(who: str, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(
            f"http://127.0.0.1:{fleet.api_port}/api/v1{path}?{query}",
            headers={"Authorization": f"Bearer {tokens[who]}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    assert [s["id"] for s in get("plant", "/sites")] == list(SITES)
    assert [m["id"] for m in get("plant", "/machines", site="porto")] == ["porto-m1", "porto-m2"]
    assert [s["id"] for s in get("turin", "/sites")] == ["turin"]
    assert [(m["id"], m["site"]) for m in get("turin", "/machines")] == [
        ("turin-m1", "turin"), ("turin-m2", "turin")]
    [turin] = get("turin", "/kpis", **span)
    assert get("plant", "/kpis", site="turin", **span) == [turin]
    config = validate_config({"sites": plant(SITES), "data_dir": str(fleet.tmp / "single")})
    engine = open_engine(database_url(None, fleet.tmp / "single"))
    try:
        single = kpi(ShadowStore(engine), config, Window(T0, T0 + STEPS * S),
                     [m for m in config.machines() if m.id.startswith("turin-")]).to_dict()
    finally:
        engine.dispose()
    assert (turin["time_s"], turin["quantities"]) == (single["time_s"], single["quantities"])


def test_three_edges_two_members_a_kill_and_a_move_lose_nothing(fleet: Fleet) -> None:
    start(fleet)
    began = fleet.holders()
    faults = stream(fleet)
    every = {m: {(T0 + step * S) for step in range(STEPS)} for m in MACHINES}
    wait(lambda: stored(fleet, ("single",)) == every, "the single process's readings")
    wait(lambda: stored(fleet, ("central-a", "central-b")) == every,
         "the members' readings", timeout_s=90)
    last = T0 + (STEPS - 1) * S
    wait(lambda: clocks(fleet.pg, fleet.tmp) == dict.fromkeys(MACHINES, last),
         "the fleet's shadow to apply everything")
    wait(lambda: clocks(None, fleet.tmp / "single") == dict.fromkeys(MACHINES, last),
         "the single shadow to apply everything")
    ended = fleet.holders()
    lost = {m: len(every[m] - found) for m, found in
            stored(fleet, ("central-a", "central-b")).items()}
    print(f"fleet: sites at the start {began}, at the end {ended}; faults at "
          + ", ".join(f"{k} {v:.1f} s" for k, v in faults.items())
          + f"; count readings lost per machine {lost}")
    assert set(began.values()) == {"central-a", "central-b"}
    assert ended == dict.fromkeys(SITES, "central-a")  # central-b's sites moved
    config = {"sites": plant(SITES)}
    fleet_kpis = kpis(fleet.pg, fleet.tmp, config)
    single_kpis = kpis(None, fleet.tmp / "single", config)
    for m in MACHINES:
        differ = {f"{part}.{key}": (value, single_kpis[m][part].get(key))
                  for part, values in fleet_kpis[m].items() for key, value in values.items()
                  if value != single_kpis[m][part].get(key)}
        assert differ == {}, (m, "fleet, single:", differ)
    assert all(k["quantities"]["PQ"] > 0 for k in single_kpis.values())
    the_api_serves_each_site_alone(fleet)
    for name, proc in fleet.procs.items():
        if proc.process is not None and proc.process.poll() is None:
            proc.signal(signal.SIGTERM)
        log = proc.text()
        assert "Traceback" not in log, (name, log[-3000:])
        assert proc.exits[-1] == 0, (name, log[-3000:])
    assert "gives site" in fleet.procs["central-b"].text()
    assert fleet.procs["central-a"].text().count("keeps site") >= 3


@pytest.mark.parametrize("name", ["edge-lyon", "edge-turin", "central"])
def test_the_example_configs_of_the_readme_load(name: str) -> None:
    config = load_config(Path("deploy/fleet") / f"{name}.yaml",
                         {"OMBRE_MEMBER": "central-a", "OMBRE_API_PORT": "8081"})
    if name == "central":
        assert config.fleet is not None
        assert (config.fleet.member, config.fleet.port, config.api.port) == \
            ("central-a", 1884, 8081)
        assert {s.id for s in config.sites} == {"lyon", "turin"}
    else:
        assert [s.type for s in config.sinks] == ["mqtt"]
