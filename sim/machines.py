"""The simulated machines: a table of machine models (data), and one small state machine
that runs any of them in fixed steps of simulated time.

Each machine works through an endless order book: a setup, then cycles until the order's
quantity is made (some parts scrapped), then a short wait for the next order. While it
runs it may stop briefly (a jam) or break down (a repair); during the calendar's planned
stops it waits. What it reports, and in which protocol's words, is its model's `render`.
Everything random comes from the machine's own seeded generator, one draw sequence per
step, so a run of the same number of steps is the same run."""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

NS = 1_000_000_000

Reading = float | str  # a number, or the text of a string signal (the order)


class Phase(enum.StrEnum):
    IDLE = "idle"  # no order loaded
    SETUP = "setup"
    RUN = "run"
    JAM = "jam"  # a minor stop, with the order loaded
    BREAKDOWN = "breakdown"
    BREAK = "break"  # a planned stop of the calendar


@dataclass(frozen=True, slots=True)
class MachineModel:
    """A kind of machine: how it produces, how it fails, and what it reports."""

    id: str
    # How `ombre demo` publishes its readings: on its OPC UA server, as one MQTT JSON
    # object per step (format object), one MQTT message per signal (format value), or
    # in the registers of its Modbus TCP server.
    protocol: Literal["opcua", "mqtt-object", "mqtt-value", "modbus"]
    order_prefix: str
    pru_s: float  # planned run time per unit, as the order book says
    cycle_s: float  # the real cycle time: a little slower than planned
    scrap_rate: float
    setup_s: float
    qty: tuple[int, int]  # order quantities, drawn uniformly
    mtbf_s: float  # mean running time between breakdowns
    mttr_s: float  # mean repair time
    jam_every_s: float  # mean running time between minor stops (inf: none)
    jam_s: float
    step_s: float  # simulated seconds between two reports
    render: Callable[[MachineSim], dict[str, Reading]]


@dataclass(slots=True)
class MachineSim:
    """One machine's state; `step` moves it `model.step_s` forward."""

    model: MachineModel
    t_ns: int  # the time of the next step
    seed: int
    seq: int = 0  # orders started so far
    total: int = 0  # the part counters, as the controller keeps them
    scrap: int = 0
    energy_kwh: float = 0.0
    phase: Phase = Phase.IDLE
    phase_end_ns: int = 0
    order: str = ""
    order_qty: int = 0
    made: int = 0  # parts of the current order
    progress: float = 0.0  # fraction of the current cycle done
    slowdown: float = 1.0  # cycle time factor (a scenario sets it)
    drift_from_ns: int | None = None  # spindle_temp drifts from then, at drift_per_h
    drift_per_h: float = 0.0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed * 1_000_003 + self.seq)

    def state(self) -> dict[str, Any]:
        """What a later demo needs to go on where this one stopped."""
        return {"seq": self.seq, "total": self.total, "scrap": self.scrap,
                "energy_kwh": self.energy_kwh}

    def restore(self, saved: dict[str, Any]) -> None:
        self.seq, self.total, self.scrap = saved["seq"], saved["total"], saved["scrap"]
        self.energy_kwh = saved["energy_kwh"]
        self.rng = random.Random(self.seed * 1_000_003 + self.seq)

    def step(self, planned_stop: bool, new_order: Callable[[MachineSim], None]) -> None:
        """One step of `model.step_s`: phase changes, then production."""
        m, dt = self.model, self.model.step_s
        t = self.t_ns
        if planned_stop and self.phase not in (Phase.BREAKDOWN, Phase.BREAK):
            self._enter(Phase.BREAK, 0.0)
        elif self.phase is Phase.BREAK and not planned_stop:
            self._enter(Phase.RUN if self.order else Phase.IDLE, 0.0)
        elif self.phase in (Phase.SETUP, Phase.JAM, Phase.BREAKDOWN) and t >= self.phase_end_ns:
            self._enter(Phase.RUN, 0.0)
        elif self.phase is Phase.IDLE and t >= self.phase_end_ns:
            self.seq += 1
            self.order = f"{m.order_prefix}{self.seq:05d}"
            self.order_qty = self.rng.randint(*m.qty)
            self.made, self.progress = 0, 0.0
            new_order(self)
            self._enter(Phase.SETUP, m.setup_s * self.rng.uniform(0.8, 1.2))
        elif self.phase is Phase.RUN:
            draw = self.rng.random()
            if draw < dt / m.mtbf_s:
                # Exponential repairs, but none past 3 MTTR: by then the spare is in.
                self.break_down(min(self.rng.expovariate(1 / m.mttr_s), 3 * m.mttr_s))
            elif draw < dt / m.mtbf_s + dt / m.jam_every_s:
                self._enter(Phase.JAM, m.jam_s * self.rng.uniform(0.5, 1.5))
        if self.phase is Phase.RUN:
            self._produce(dt)
        self.energy_kwh += self.power_kw() * dt / 3600
        self.t_ns += int(dt * NS)

    def break_down(self, repair_s: float) -> None:
        if self.phase is not Phase.IDLE:
            self._enter(Phase.BREAKDOWN, repair_s)

    def power_kw(self) -> float:
        return {Phase.RUN: 1.0, Phase.SETUP: 0.3, Phase.JAM: 0.4}.get(self.phase, 0.15)

    def noise(self, sigma: float) -> float:
        return self.rng.gauss(0.0, sigma)

    def drift(self) -> float:
        """How far spindle_temp has drifted: 0 unless a scenario started it."""
        if self.drift_from_ns is None or self.t_ns < self.drift_from_ns:
            return 0.0
        return (self.t_ns - self.drift_from_ns) / (3600 * NS) * self.drift_per_h

    def _enter(self, phase: Phase, duration_s: float) -> None:
        self.phase, self.phase_end_ns = phase, self.t_ns + int(duration_s * NS)

    def _produce(self, dt: float) -> None:
        cycle = self.model.cycle_s * self.slowdown * self.rng.uniform(0.97, 1.03)
        self.progress += dt / cycle
        parts = math.floor(self.progress)
        self.progress -= parts
        for _ in range(min(parts, self.order_qty - self.made)):
            self.made += 1
            self.total += 1
            self.scrap += self.rng.random() < self.model.scrap_rate
        if self.made >= self.order_qty:
            self.order = ""
            self._enter(Phase.IDLE, self.rng.uniform(120, 600))  # waiting for the next order


# OPC 40001-1 MachineryItemState: 0 NotAvailable, 1 OutOfService, 2 Executing,
# 3 NotExecuting; MachineryOperationMode: 0 None, 1 Maintenance, 2 Setup, 3 Processing.
_ITEM_STATE = {Phase.RUN: 2, Phase.SETUP: 2, Phase.BREAKDOWN: 1, Phase.JAM: 3, Phase.IDLE: 3,
               Phase.BREAK: 3}


def render_cnc(s: MachineSim) -> dict[str, Reading]:
    running = s.phase is Phase.RUN
    return {
        "MachineryItemState": _ITEM_STATE[s.phase],
        "MachineryOperationMode": 2 if s.phase is Phase.SETUP else 3,
        "parts_total": s.total, "parts_scrap": s.scrap, "order": s.order,
        "spindle_speed": max(0.0, 8000 + s.noise(40)) if running else 0.0,
        "spindle_temp": 38.0 + s.drift() + s.noise(0.3),  # the chiller holds it
        "power": 1.2 + 6.5 * s.power_kw() + s.noise(0.2),
    }


# Stack light: 0 off, 1 green (automatic cycle), 2 yellow (waiting), 3 red (fault).
_STACK_LIGHT = {Phase.RUN: 1, Phase.SETUP: 2, Phase.JAM: 2, Phase.BREAKDOWN: 3, Phase.IDLE: 0,
                Phase.BREAK: 0}


def render_press(s: MachineSim) -> dict[str, Reading]:
    return {
        "cycle_counter": s.total, "scrap_counter": s.scrap,
        "mould_temp": (65.0 if s.phase is Phase.RUN else 58.0) + s.noise(0.5),
        "energy": round(s.energy_kwh * 25, 3),
        "stack_light": _STACK_LIGHT[s.phase],
        "mould_change": 1 if s.phase is Phase.SETUP else 0, "order": s.order,
    }


# PackML states: 2 Stopped, 4 Idle, 5 Suspended, 6 Execute, 9 Aborted; modes: 1
# Production, 3 Manual (a format change is done in manual mode).
_PACKML_STATE = {Phase.RUN: 6, Phase.SETUP: 6, Phase.JAM: 5, Phase.BREAKDOWN: 9, Phase.IDLE: 4,
                 Phase.BREAK: 2}


def render_packml(s: MachineSim) -> dict[str, Reading]:
    return {
        "PackMLState": _PACKML_STATE[s.phase], "PackMLMode": 3 if s.phase is Phase.SETUP else 1,
        "ProdProcessedCount": s.total, "ProdDefectiveCount": s.scrap, "order": s.order,
    }


def render_lathe(s: MachineSim) -> dict[str, Reading]:
    running = s.phase is Phase.RUN
    return {
        "spindle_load": max(0.0, 62 + s.noise(4)) if running else 0.0, "parts_total": s.total,
        "running": 1 if running else 0, "fault": 1 if s.phase is Phase.BREAKDOWN else 0,
        "order": s.order,
    }


MACHINES: tuple[MachineModel, ...] = (
    MachineModel(id="cnc-1", protocol="opcua", order_prefix="M", pru_s=60, cycle_s=64,
                 scrap_rate=0.02, setup_s=1800, qty=(120, 200), mtbf_s=6 * 3600,
                 mttr_s=1500, jam_every_s=math.inf, jam_s=0, step_s=2, render=render_cnc),
    MachineModel(id="press-1", protocol="mqtt-object", order_prefix="P", pru_s=30, cycle_s=32,
                 scrap_rate=0.03, setup_s=2700, qty=(400, 800), mtbf_s=8 * 3600,
                 mttr_s=1800, jam_every_s=2400, jam_s=180, step_s=5, render=render_press),
    MachineModel(id="pack-1", protocol="mqtt-value", order_prefix="K", pru_s=2, cycle_s=2.1,
                 scrap_rate=0.01, setup_s=900, qty=(3000, 6000), mtbf_s=10 * 3600,
                 mttr_s=1200, jam_every_s=1200, jam_s=120, step_s=5, render=render_packml),
    MachineModel(id="lathe-1", protocol="modbus", order_prefix="L", pru_s=90, cycle_s=94,
                 scrap_rate=0.0, setup_s=600, qty=(40, 90), mtbf_s=5 * 3600, mttr_s=1800,
                 jam_every_s=math.inf, jam_s=0, step_s=2, render=render_lathe),
)
