"""What every `ombre` command shares: exit codes, loading the config with its plant
checks, and reading times from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import distribution, distributions
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from gateway.config_load import ConfigError
from gateway.plugins import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, BuildContext
from ombre.app import build_context
from ombre.config import OmbreConfig, load_config
from ombre.plugins import PluginError

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_USAGE", "PrintVersion", "load_checked",
           "load_context", "setup_logging", "utc_time"]


def version_text() -> str:
    """`ombre --version`: the installed version and the git commit it came from."""
    found = distribution("ombre")
    # Run from a checkout, its build's ombre.egg-info may come first on sys.path: the
    # installed one is the one pip recorded where it came from.
    recorded = (d.read_text("direct_url.json") for d in distributions(name="ombre"))
    return f"ombre {found.version} ({_commit(next((r for r in recorded if r), None))})"


def _commit(direct_url: str | None) -> str:
    """The commit pip recorded for an install from git; for an install from a local
    checkout kept in place (editable), that checkout's commit now, "-dirty" if its
    tracked files changed. Else unknown: a copied install keeps no commit."""
    info: dict[str, Any] = json.loads(direct_url) if direct_url else {}
    if "vcs_info" in info:
        return f"git {info['vcs_info']['commit_id'][:12]}"
    if not info.get("dir_info", {}).get("editable"):
        return "git commit unknown"
    checkout = url2pathname(urlparse(info["url"]).path)
    try:
        head, changed = (subprocess.run(["git", "-C", checkout, *args], capture_output=True,
                                        text=True, timeout=5, check=True).stdout.strip()
                         for args in (["rev-parse", "--short=12", "HEAD"],
                                      ["status", "--porcelain", "--untracked-files=no"]))
    except (OSError, subprocess.SubprocessError):
        return "git commit unknown"
    return f"git {head}{'-dirty' if changed else ''}"


class PrintVersion(argparse.Action):
    """--version, computed only when asked (it may run git)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


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
