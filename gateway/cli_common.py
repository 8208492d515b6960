"""What every `ombre` command shares: exit codes, loading the config with its plant
checks, and reading times from the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from connectors.modbus_config import ModbusSourceConfig
from connectors.modbus_map import resolve_items
from connectors.topics import TopicRouter
from gateway.config import MqttSourceConfig, OmbreConfig
from gateway.config_load import ConfigError, load_config

EXIT_OK = 0
EXIT_USAGE = 1  # the command cannot do what was asked (unknown signal, no store)
EXIT_CONFIG = 2  # the config file cannot be used (argparse also exits 2 on bad usage)


def load_checked(path: Path) -> OmbreConfig | None:
    """The validated config, with each source's topic templates checked against the
    plant; or None after printing every problem to stderr."""
    try:
        config = load_config(path, os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    registry, problems = config.registry(), []
    for i, source in enumerate(config.sources):
        try:
            if isinstance(source, MqttSourceConfig):
                TopicRouter(source.subscriptions, config, registry)
            elif isinstance(source, ModbusSourceConfig):
                resolve_items(source, config, registry)
            else:
                from connectors.opcua_items import resolve_nodes  # noqa: PLC0415 - see app.py

                resolve_nodes(source, config, registry)
        except ValueError as exc:
            key = "subscriptions: " if isinstance(source, MqttSourceConfig) else ""
            problems.append(f"{path}: sources[{i}].{key}{exc}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return None
    return config


def utc_time(text: str) -> datetime:
    """An RFC 3339 timestamp; one without a zone is taken as UTC."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an RFC 3339 time such as "
                                         f"2026-11-22T06:00:00Z, found {text!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)




def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
