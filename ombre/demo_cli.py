"""`ombre demo`: its options, and the run with its exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config_load import ConfigError
from ombre.cli_common import EXIT_CONFIG, EXIT_OK, setup_logging
from sim.broker import DemoError
from sim.scenarios import SCENARIOS


def cmd_demo(args: argparse.Namespace) -> int:
    from ombre.demo import Options, run  # noqa: PLC0415 - the demo's stack, on demand

    setup_logging(args.log_level)
    logging.getLogger("asyncua").setLevel(logging.WARNING)  # a line per request at INFO
    options = Options(data_dir=args.data_dir, speed=args.speed,
                      scenarios=tuple(SCENARIOS[name] for name in dict.fromkeys(args.scenario)),
                      port=args.port, broker=args.broker, duration_s=args.duration,
                      reset=args.reset)
    try:
        asyncio.run(run(options))
    except (DemoError, ConfigError) as exc:
        print(f"ombre demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, found {text}")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:1883, "
                                         f"found {text}")
    return host, int(port)


def add_demo_command(commands: Any) -> None:
    add: Callable[..., argparse.ArgumentParser] = commands.add_parser
    demo = add("demo", help="run a simulated shop floor with the gateway, the shadow and "
                            "the dashboard, on embedded defaults")
    demo.add_argument("--scenario", action="append", default=[], choices=list(SCENARIOS),
                      help="a scripted fault to play (repeatable); see docs/training/")
    demo.add_argument("--speed", type=_positive, default=1.0,
                      help="simulated seconds per wall-clock second (default 1)")
    demo.add_argument("--data-dir", type=Path, default=Path("data/demo"),
                      help="where the demo keeps its data (default data/demo)")
    demo.add_argument("--port", type=int, default=8080,
                      help="port of the dashboard and API on 127.0.0.1 (default 8080)")
    demo.add_argument("--broker", type=_host_port, default=("127.0.0.1", 1883),
                      metavar="HOST:PORT", help="the MQTT broker to use if it answers; "
                      "else the demo starts mosquitto (default 127.0.0.1:1883)")
    demo.add_argument("--duration", type=_positive, metavar="SECONDS",
                      help="stop by itself after this many wall-clock seconds")
    demo.add_argument("--reset", action="store_true", help="start afresh: delete the data")
    demo.add_argument("--log-level", default="info",
                      choices=["debug", "info", "warning", "error"])
    demo.set_defaults(command=cmd_demo)
