"""Connector plug-ins: a protocol added from outside the repository, through an entry
point of its own distribution, is accepted and checked by `ombre check` like a built-in
one; an unknown type and a missing extra are named; each built-in plug-in's sample
block passes `ombre check`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from ombre.cli import main
from ombre.plugins import registry

# A distribution installed nowhere but on PYTHONPATH: a module with two plug-ins, and its
# metadata (what `pip install` writes) naming them in the entry point group.
BEACON = '''
from typing import Literal

from pydantic import Field

from gateway.config import SourceConfig
from gateway.plugins import Plugin


class BeaconSourceConfig(SourceConfig):
    type: Literal["beacon"]
    machine: str
    period_s: float = Field(gt=0)


class GhostSourceConfig(SourceConfig):
    type: Literal["ghost"]


def build(config, context):
    raise NotImplementedError


BEACON = Plugin(BeaconSourceConfig, build, sample="", docs="")
GHOST = Plugin(GhostSourceConfig, build, sample="", docs="", extra="ghost",
               requires=("ombre_ghost_protocol_stack",))
'''
ENTRY_POINTS = """\
[ombre.sources]
beacon = ombre_beacon:BEACON
ghost = ombre_beacon:GHOST
"""
PLANT = """\
sites:
  - id: site
    lines:
      - id: l1
        machines:
          - id: press-1
            signals: [{name: temperature}, {name: state, type: string}]
sources:
"""


@pytest.fixture
def beacon_path(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "ombre_beacon-0.1.dist-info").mkdir(parents=True)
    (site / "ombre_beacon.py").write_text(BEACON)
    (site / "ombre_beacon-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ombre-beacon\nVersion: 0.1\n")
    (site / "ombre_beacon-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def check(path: Path, python_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{python_path}{os.pathsep}{Path.cwd()}"}
    return subprocess.run([sys.executable, "-m", "ombre", "check", str(path)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def write(tmp_path: Path, sources: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(PLANT + textwrap.indent(textwrap.dedent(sources), "  "))
    return path


def test_a_plugin_from_another_distribution_is_checked_like_a_built_in(
        tmp_path: Path, beacon_path: Path) -> None:
    good = write(tmp_path, """\
        - type: beacon
          name: b1
          machine: press-1
          period_s: 0.5
        """)
    done = check(good, beacon_path)
    assert done.returncode == 0, done.stderr
    assert "OK (1 machines, 2 signals, 1 sources, 0 sinks)" in done.stdout

    bad = write(tmp_path, """\
        - type: mqtt
          name: m1
          subscriptions: [{topic: "plant/{machine}/{signal}"}]
        - type: beacon
          name: b1
          machine: press-1
          period_ms: 500
        """)
    done = check(bad, beacon_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{bad}:12: sources[1].period_s: missing required key",
        f"{bad}:15: sources[1].period_ms: unknown key 'period_ms', did you mean 'period_s'?",
    ]


def test_an_unknown_type_lists_the_installed_ones(tmp_path: Path, beacon_path: Path) -> None:
    path = write(tmp_path, """\
        - type: modbus-rtu
          name: r1
        """)
    done = check(path, beacon_path)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{path}:9: sources[0].type: expected one of ")
    for known in ("'mqtt'", "'opcua'", "'beacon'", "'ghost'"):
        assert known in line
    assert line.endswith("found 'modbus-rtu'")


def test_a_missing_extra_is_named_with_what_to_install(tmp_path: Path,
                                                        beacon_path: Path) -> None:
    path = write(tmp_path, """\
        - type: ghost
          name: g1
        """)
    done = check(path, beacon_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{path}:9: sources[0].type: the ghost connector needs ombre_ghost_protocol_stack, "
        "which is not installed: pip install 'ombre[ghost]'"]


@pytest.mark.parametrize("kind", ["sources", "sinks"])
def test_every_built_in_sample_block_passes_check(tmp_path: Path, kind: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    plugins = getattr(registry(), kind)
    blocks = [block for plugin in plugins.values() for block in yaml.safe_load(plugin.sample)]
    plant = {key: value for key, value in yaml.safe_load(PLANT).items() if key == "sites"}
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump({**plant, kind: blocks}))
    monkeypatch.setenv("INFLUX_TOKEN", "token")
    assert main(["check", str(path)]) == 0, capsys.readouterr().err
    assert {b["type"] for b in blocks} == set(plugins)
