"""`ombre demo`: the simulated shop floor, the gateway, the shadow and the API with its
dashboard, in one process, on embedded defaults (sim/plant.yaml, SQLite in a data
directory). Ctrl-C stops it in order: machines first, then the gateway once what they
sent has arrived, then the API. A second run goes on from the same data and clock."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter

from api.app import PREFIX, create_app
from api.deps import AsViewer
from api.serve import listen, run_beside
from api.tokens import Role, check_token, create_token, list_tokens, revoke_token
from connectors.modbus import ModbusSource
from connectors.modbus_config import ModbusSourceConfig
from gateway.counters import Health
from gateway.runtime import Gateway
from gateway.types import Source
from ombre.app import build_context, build_gateway, build_source, stop_on_signals, stop_timeout_s
from ombre.config import OmbreConfig, load_config
from shadow.calendar import PlannedSchedule
from shadow.orders import OrderIn
from shadow.schema import database_url, open_engine, upgrade
from shadow.store import ShadowStore
from sim.broker import Broker, DemoError, free_port
from sim.clock import SimClock
from sim.machines import MACHINES, MachineSim
from sim.modbus_server import ModbusMachineServer
from sim.opcua_server import MachineServer
from sim.publisher import Publisher
from sim.relay import Relay
from sim.scenarios import BAD_PAYLOADS, Scenario

log = logging.getLogger(__name__)

PLANT = Path(str(resources.files("sim") / "plant.yaml"))  # the simulated plant
STATE_FILE = "demo.json"
TICK_S = 0.05  # wall-clock seconds between two rounds of machine steps
SAVE_EVERY_S = 10.0
QUIET_S = 1.0  # at shutdown: no new message this long means what was sent has arrived
QUIET_MAX_S = 20.0
DEMO_TOKEN = "demo"
KIOSK_FILE = "kiosk-token"  # in the data directory: the wall display's token
MODBUS_POLL_MS = 100  # the lathe's poll interval: at --speed 120, 12 simulated seconds


@dataclass(frozen=True, slots=True)
class Options:
    data_dir: Path
    speed: float
    scenarios: tuple[Scenario, ...]
    port: int
    broker: tuple[str, int]  # tried first; if it does not answer, mosquitto is started
    duration_s: float | None  # stop by itself after this many wall-clock seconds
    reset: bool


class Demo:
    """The running demo: its clock, machines, servers, gateway and API."""

    def __init__(self, options: Options, config: OmbreConfig, state: dict[str, Any], *,
                 clock: SimClock, links: tuple[Relay, Relay], opcua: MachineServer,
                 modbus: ModbusMachineServer) -> None:
        self.options, self.config, self.clock = options, config, clock
        self.gateway_link, self.machines_link = links
        self.opcua, self.modbus = opcua, modbus
        self.gateway: Gateway | None = None
        self.publisher = Publisher("127.0.0.1", self.machines_link.port,
                                   f"{state['client']}-machines", _topic(state))
        self.schedule = PlannedSchedule(config.shadow.calendar)
        self.lines = {m.id: line.id for site in config.sites for line in site.all_lines()
                      for m in line.machines}
        now = clock.now_ns()
        self.machines = [MachineSim(model, now, seed=i + 1)
                         for i, model in enumerate(MACHINES)]
        for sim in self.machines:
            if sim.model.id in state.get("machines", {}):
                sim.restore(state["machines"][sim.model.id])
        self.client = state["client"]
        # The signals the machines send: the gateway polls a Modbus machine's registers
        # whether it changed or not, so nothing of it is ever on its way.
        polled = {m.id for m in MACHINES if m.protocol == "modbus"}
        self.pushed = np.array([s.id for s in config.registry() if s.machine not in polled],
                               np.intp)
        self.started_ns = now
        self.quarantined_sent = 0
        self.store = ShadowStore(open_engine(database_url(config.shadow.database,
                                                          config.data_dir)))
        self._new_orders: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        return {"client": self.client, "sim_ns": self.clock.now_ns(),
                "machines": {s.model.id: s.state() for s in self.machines},
                "published": dict(self.publisher.published),
                "bad_payloads_sent": self.quarantined_sent}

    def save(self) -> None:
        path = self.config.data_dir / STATE_FILE
        path.with_suffix(".tmp").write_text(json.dumps(self.state(), indent=1))
        path.with_suffix(".tmp").replace(path)

    def _order(self, sim: MachineSim) -> None:
        m = sim.model
        self._new_orders.append(OrderIn(
            order_no=sim.order, planned_qty=sim.order_qty, pru_s=m.pru_s,
            planned_scrap_qty=round(sim.order_qty * m.scrap_rate), machine=m.id).row())

    async def run_machines(self, stop: asyncio.Event) -> None:
        """Steps every machine up to the clock, publishing each step's readings."""
        next_save = time.monotonic() + SAVE_EVERY_S
        while not stop.is_set():
            now = self.clock.now_ns()
            for sim in self.machines:
                while sim.t_ns <= now:
                    t = sim.t_ns
                    sim.step(self.schedule.inside(sim.model.id, t), self._order)
                    if self._new_orders:  # the ERP releases an order before it is run
                        orders, self._new_orders = self._new_orders, []
                        await asyncio.to_thread(self.store.import_orders, orders)
                    await self._publish(sim, t)
            if time.monotonic() >= next_save:
                await asyncio.to_thread(self.save)
                next_save = time.monotonic() + SAVE_EVERY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)

    async def _publish(self, sim: MachineSim, t_ns: int) -> None:
        m = sim.model
        readings = m.render(sim)
        if m.protocol == "opcua":
            await self.opcua.publish(t_ns, readings)
        elif m.protocol == "modbus":
            await self.modbus.publish(readings)
        elif m.protocol == "mqtt-object":
            self.publisher.readings(self.lines[m.id], m.id, t_ns, readings)
        else:
            for name, value in readings.items():
                self.publisher.value(self.lines[m.id], m.id, name, t_ns, value)

    async def run_scenario(self, scenario: Scenario, stop: asyncio.Event) -> None:
        """Waits for the scenario's start in simulated time, then plays it."""
        start_ns = self.started_ns + int(scenario.at_s * 1e9)
        while not stop.is_set() and self.clock.now_ns() < start_ns:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        if stop.is_set():
            return
        log.warning("demo: scenario %s starts", scenario.name)
        sim = next(s for s in self.machines if s.model.id == scenario.machine)
        if scenario.name == "breakdown":
            sim.break_down(scenario.amount)
        elif scenario.name == "slowdown":
            sim.slowdown = scenario.factor
            await self._sleep_sim(scenario.amount, stop)
            sim.slowdown = 1.0
        elif scenario.name == "drift":
            sim.drift_from_ns, sim.drift_per_h = sim.t_ns, scenario.factor
            await self._sleep_sim(scenario.amount, stop)
            sim.drift_from_ns = None  # the bearing is replaced
        elif scenario.name == "broker-outage":
            await self._broker_outage(scenario.amount)
        elif scenario.name == "opcua-restart":
            await self.opcua.stop()
            await asyncio.sleep(scenario.amount)
            await self.opcua.start()
        elif scenario.name == "counter-reset":
            sim.total = sim.scrap = 0
        else:  # bad-payloads
            topic = f"{self.publisher.prefix}/{self.lines[sim.model.id]}/{sim.model.id}"
            for i in range(int(scenario.amount)):
                self.quarantined_sent += self.publisher.raw(
                    topic, BAD_PAYLOADS[i % len(BAD_PAYLOADS)])
        log.warning("demo: scenario %s played", scenario.name)

    async def _broker_outage(self, seconds: float) -> None:
        """Both links to the broker drop; the gateway's comes back first, and the
        machines' once the gateway is subscribed again, so that the broker never has to
        queue their backlog for an absent gateway (Mosquitto keeps at most
        max_queued_messages, 1000 by default, per absent client)."""
        log.warning("demo: broker unreachable for %g s", seconds)
        await asyncio.gather(self.gateway_link.stop(), self.machines_link.stop())
        await asyncio.sleep(seconds)
        await self.gateway_link.start()
        assert self.gateway is not None
        await _connected(self.gateway, [s.name for s in self.config.sources])
        await self.machines_link.start()
        log.warning("demo: broker reachable again")

    async def _sleep_sim(self, sim_s: float, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.clock.real_s(sim_s))

    async def play(self, gateway: Gateway, stop: asyncio.Event,
                   gateway_stop: asyncio.Event) -> None:
        """Downstream first: the machines start once the gateway is connected, and stop
        first (at `stop`); the gateway stops once what they sent has arrived."""
        self.gateway = gateway
        try:
            await _connected(gateway, [s.name for s in self.config.sources])
            self.publisher.start()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.run_machines(stop), name="demo:machines")
                for s in self.options.scenarios:
                    tasks.create_task(self.run_scenario(s, stop), name=f"demo:scenario:{s.name}")
                if self.options.duration_s is not None:
                    tasks.create_task(_stop_after(stop, self.options.duration_s),
                                      name="demo:duration")
            if not await asyncio.to_thread(self.publisher.stop):
                log.warning("demo: the broker did not acknowledge every message in time")
            await _quiet(gateway, self.pushed)
            await asyncio.to_thread(self.save)
        finally:
            gateway_stop.set()

    def router(self) -> APIRouter:
        """GET /api/v1/demo: the speed, the simulated time and the scenarios."""
        router = APIRouter(tags=["demo"])

        @router.get("/demo")
        def demo(_: AsViewer) -> dict[str, Any]:
            """What the demo is running, and what to look for."""
            now = self.clock.now_ns()
            return {"speed": self.options.speed, "sim_ns": now, "scenarios": [
                {"name": s.name, "machine": s.machine,
                 "starts_ns": self.started_ns + int(s.at_s * 1e9),
                 "started": now >= self.started_ns + int(s.at_s * 1e9),
                 "look_for": {"en": s.look_for[0], "fr": s.look_for[1]}}
                for s in self.options.scenarios]}

        return router


def modbus_env(speed: float) -> dict[str, str]:
    """The lathe's poll interval, and the period of its readings in simulated time, which
    the maturity assessment expects them at (a poll interval is wall-clock time)."""
    return {"DEMO_MODBUS_POLL_MS": str(MODBUS_POLL_MS),
            "DEMO_MODBUS_PERIOD_S": f"{MODBUS_POLL_MS / 1000 * speed:g}"}


def _load_state(data_dir: Path, reset: bool) -> dict[str, Any]:
    if reset and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / STATE_FILE
    if path.exists():
        saved: dict[str, Any] = json.loads(path.read_text())
        return saved
    # The MQTT client ids are this data directory's own, so its broker sessions (and
    # their queued messages) are never another demo's.
    tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return {"client": f"ombre-demo-{tag}-{secrets.token_hex(2)}"}


def _topic(state: dict[str, Any]) -> str:
    """The demo's MQTT topic prefix: its data directory's own."""
    return f"ombre-demo/{state['client'].removeprefix('ombre-demo-')}"


def _admin_token(store: ShadowStore) -> str:
    """A fresh admin token for this run; the previous run's is revoked (not the kiosk
    token of the wall display)."""
    for token in list_tokens(store.engine):
        if token.name == DEMO_TOKEN and token.revoked_ns is None:
            revoke_token(store.engine, token.id)
    return create_token(store.engine, DEMO_TOKEN, Role.ADMIN)


def _kiosk_token(store: ShadowStore, data_dir: Path) -> str:
    """The wall display's kiosk token: the one kept in <data_dir>/kiosk-token while it
    is still accepted, so a wall screen left open goes on across runs; else a new one,
    written there readable by this user only."""
    path = data_dir / KIOSK_FILE
    if path.exists():
        kept = path.read_text().strip()
        found = check_token(store.engine, kept)
        if found is not None and found.kiosk:
            return kept
    token = create_token(store.engine, "demo wall", Role.VIEWER, kiosk=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


async def _quiet(gateway: Gateway, signal_ids: npt.NDArray[np.intp]) -> None:
    """Returns once the gateway received nothing for `signal_ids` for QUIET_S (at most
    QUIET_MAX_S)."""
    c = gateway.counters
    last, since, deadline = -1, time.monotonic(), time.monotonic() + QUIET_MAX_S
    while time.monotonic() < min(since + QUIET_S, deadline):
        seen = int(c.signal_received[signal_ids].sum() + c.signal_quarantined[signal_ids].sum())
        if seen != last:
            last, since = seen, time.monotonic()
        await asyncio.sleep(0.1)


async def run(options: Options) -> None:
    state = _load_state(options.data_dir, options.reset)
    clock = SimClock(max(time.time_ns(), int(state.get("sim_ns", 0))), options.speed)
    try:  # now, so that a taken port fails before anything starts
        listener = listen("127.0.0.1", options.port)
    except OSError as exc:
        raise DemoError(f"port {options.port} is taken ({exc.strerror}): give another with "
                        "--port") from None
    async with Broker.find_or_start(*options.broker, options.data_dir) as (host, port):
        links = Relay(host, port), Relay(host, port)  # the gateway's, the machines'
        for link in links:
            await link.start()
        opcua = MachineServer("cnc-1", free_port())
        modbus = ModbusMachineServer("lathe-1", free_port())
        env = {**os.environ, "DEMO_MQTT_PORT": str(links[0].port),
               "DEMO_BROKER_HOST": host, "DEMO_BROKER_PORT": str(port), "DEMO_API_PORT":
               str(options.port), "DEMO_OPCUA_ENDPOINT": opcua.endpoint,
               "DEMO_MODBUS_PORT": str(modbus.port), **modbus_env(options.speed),
               "DEMO_CLIENT_ID": state["client"], "DEMO_TOPIC": _topic(state)}
        config = load_config(PLANT, env)
        config = config.model_copy(update={"data_dir": options.data_dir.resolve()})
        upgrade(open_engine(database_url(config.shadow.database, config.data_dir)))
        demo = Demo(options, config, state, clock=clock, links=links, opcua=opcua,
                    modbus=modbus)
        gateway, outbox = build_gateway(config, sources=_sources(config, clock))
        app = create_app(config, clock.now_ns, gateway.counters)
        app.include_router(demo.router(), prefix=PREFIX)
        stop, gateway_stop, force = asyncio.Event(), asyncio.Event(), asyncio.Event()
        try:
            # Ctrl-C while the machines' servers start (seconds on a busy machine) stops
            # the demo as cleanly as later on; the dashboard is announced once they run.
            with stop_on_signals(stop, stop_timeout_s(config.runtime)):
                await opcua.start()
                await modbus.start()
                print(f"Ombre demo: dashboard at http://127.0.0.1:{options.port}/"
                      f"#token={_admin_token(demo.store)}\n"
                      f"  wall display (its kiosk token is kept from run to run): "
                      f"http://127.0.0.1:{options.port}/wall#token="
                      f"{_kiosk_token(demo.store, config.data_dir)}\n  data: {config.data_dir}\n"
                      f"  live plant (UNS): mosquitto_sub -h {host} -p {port} -t 'ombre/#' -v\n"
                      f"  Sparkplug B: mosquitto_sub -h {host} -p {port} -t "
                      f"'spBv1.0/ombre/+/{state['client']}/#' -v\n"
                      f"  speed: x{options.speed:g}; scenarios: "
                      f"{', '.join(s.name for s in options.scenarios) or 'none'}\n  Ctrl-C stops.",
                      file=sys.stderr, flush=True)
                if not stop.is_set():
                    await run_beside(app, listener, gateway, gateway_stop, force,
                                     demo.play(gateway, stop, gateway_stop))
        finally:
            outbox.close()
            await opcua.stop()
            await modbus.stop()
            for link in links:
                await link.stop()
            demo.store.engine.dispose()
            listener.close()
    print("Ombre demo stopped; `ombre demo` goes on from here, `--reset` starts afresh.",
          file=sys.stderr)


def _sources(config: OmbreConfig, clock: SimClock) -> list[Source]:
    """The configured sources, each through its plug-in, except a Modbus one: it stamps
    what it reads with the simulated time, as the other machines' servers and
    publishers do (Modbus carries none)."""
    context = build_context(config)
    return [ModbusSource(c, context.plant, context.registry, config.runtime, clock.now_ns)
            if isinstance(c, ModbusSourceConfig) else build_source(c, context)
            for c in config.sources]


async def _connected(gateway: Gateway, sources: list[str], timeout_s: float = 30.0) -> None:
    """Waits until every source is up (at most `timeout_s`, then goes on regardless:
    the outbox and the broker's session keep what arrives later)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(gateway.counters.connector(name, "source").health is Health.UP
               for name in sources):
            return
        await asyncio.sleep(0.1)
    log.warning("demo: not every source is up after %g s; the machines start anyway",
                timeout_s)


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()
