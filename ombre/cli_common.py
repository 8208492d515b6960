"""What every `ombre` command shares: exit codes, loading the config with its plant
checks, and reading times from the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from gateway.config_load import ConfigError
from gateway.plugins import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, BuildContext
from ombre.app import build_context
from ombre.config import OmbreConfig, load_config
from ombre.plugins import PluginError

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_USAGE", "load_checked", "load_context",
           "setup_logging", "utc_time"]


def load_checked(path: Path) -> OmbreConfig | None:
    """The validated config, its connectors checked against the plant by their
    plug-ins; or None after printing every problem to stderr."""
    try:
        return load_config(path, os.environ)
    except (ConfigError, PluginError) as exc:
        print(exc, file=sys.stderr)
        return None


def load_context(path: Path) -> BuildContext | None:
    """load_checked as a plug-in's commands see it (gateway.plugins.Load)."""
    config = load_checked(path)
    return None if config is None else build_context(config)


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
