"""`ombre query` and the plant checks of `ombre check`, through `main`."""

from __future__ import annotations

import json
import re
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from connectors.sqlite_sink import SqliteSink
from gateway.types import Batch, Event
from ombre.cli import main
from ombre.cli_common import _commit
from tests.conftest import plant_config, plant_dict

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, **changes: object) -> Path:
    data = plant_dict(1883, tmp_path / "data")
    data["sources"][0].update(changes)
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(data, indent=1))
    return path


def test_check_reports_a_topic_template_that_does_not_fit_the_plant(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, subscriptions=[
        {"topic": "plant/{machine}/{signal}"},
        {"topic": "fixed/topic", "machine": "m7", "signal": "temp"},
    ])
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if "fixed/topic" in text) - 1  # the subscription's opening brace
    assert f"{path}:{line}: sources[0].subscriptions[1]: subscription topic 'fixed/topic': " \
           "unknown machine 'm7'" in err
    assert "Traceback" not in err


async def test_query_prints_the_stored_samples(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = plant_config(1883, tmp_path / "data")
    path = write_config(tmp_path)
    sink = SqliteSink(config.sinks[0], config.data_dir, config.registry())
    await sink.connect()
    t0 = (time.time_ns() - 600 * 10**9) // 10**9 * 10**9
    temp = config.registry().id_of("m2", "temp")
    await sink.write(Batch(np.array([t0, t0 + 1_500_000], np.int64), np.full(2, temp, np.int32),
                           np.array([20.5, 21.0]), np.array([0, 4], np.uint8)), [])
    await sink.aclose()
    assert main(["query", str(path), "m2", "temp", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 // 10**9))
    assert lines == ["ts,value,quality", f"{stamp}Z,20.5,0", f"{stamp}.001500Z,21.0,4"]
    assert main(["query", str(path), "m2", "nope"]) == 1
    assert "no series m2/nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["query", str(path), "m2", "temp", "--from", "yesterday"])
    assert "expected an RFC 3339 time" in capsys.readouterr().err


async def test_query_prints_the_events_of_a_string_signal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state or an order travels as events: query prints them like readings."""
    config = plant_config(1883, tmp_path / "data")
    path = write_config(tmp_path)
    sink = SqliteSink(config.sinks[0], config.data_dir, config.registry())
    await sink.connect()
    t0 = (time.time_ns() - 600 * 10**9) // 10**9 * 10**9
    await sink.write(Batch.empty(), [Event(t0, "m2", "state", "RUNNING"),
                                     Event(t0 + 2_000_000, "m2", "state", "jam, feeder", 4),
                                     Event(t0 + 1_000, "m1", "state", "IDLE"),
                                     Event(t0 + 3_000_000, "m2", "state", 7)])
    await sink.aclose()
    assert main(["query", str(path), "m2", "state", "--csv"]) == 0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 // 10**9))
    assert capsys.readouterr().out.splitlines() == [
        "ts,value,quality", f"{stamp}Z,RUNNING,0", f'{stamp}.002000Z,"jam, feeder",4',
        f"{stamp}.003000Z,7,0"]


def test_version_prints_the_installed_package_version_and_its_commit(
        capsys: pytest.CaptureFixture[str]) -> None:
    """This checkout is installed editable (`make test`): its own commit, "-dirty" when
    its tracked files changed."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True, cwd=ROOT).stdout.strip()
    assert re.fullmatch(rf"ombre {re.escape(version('ombre'))} \(git {head}(-dirty)?\)\n",
                        capsys.readouterr().out)


@pytest.mark.parametrize(("direct_url", "said"), [
    ('{"url": "https://github.com/o/ombre", "vcs_info": {"vcs": "git", '
     '"commit_id": "0123456789abcdef0123"}}', "git 0123456789ab"),  # pip install git+...
    ('{"url": "file:///opt/src", "dir_info": {}}', "git commit unknown"),  # copied
    (None, "git commit unknown"),  # from a wheel of an index
    ('{"url": "file:///nonexistent/ombre", "dir_info": {"editable": true}}',
     "git commit unknown"),  # the checkout is gone
])
def test_the_commit_comes_from_what_pip_recorded(direct_url: str | None, said: str) -> None:
    assert _commit(direct_url) == said
