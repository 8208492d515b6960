"""The dashboard in a real headless Firefox: the Debian firefox-esr, driven over its
built-in WebDriver BiDi by tests/firefox/dashboard.mjs (puppeteer-core, so no
geckodriver; `make test` runs its npm ci), against the API served by uvicorn on a free
port. The script reports what each page shows; this test judges it."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ombre.config import load_config
from tests.api.test_dashboard import Served, served, shift_oee  # noqa: F401 (a fixture)
from tests.conftest import require_binary
from tests.shadow.scenarios import D_DAY, at, reading
from tests.sim.test_demo import _get

SCRIPT = Path(__file__).parents[1] / "firefox" / "dashboard.mjs"
STYLE = Path(__file__).parents[2] / "api" / "static" / "style.css"


def colour(category: str) -> str:
    """The colour style.css gives `category`, as a browser computes it."""
    found = re.search(rf"--{category}: #([0-9a-f]{{6}});", STYLE.read_text())
    assert found, f"style.css has no colour for {category}"
    return "rgb({}, {}, {})".format(*bytes.fromhex(found[1]))


def step(process: subprocess.Popen[str], name: str) -> dict[str, Any]:
    """The script's next report, which must be the step `name`."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        pytest.fail(f"dashboard.mjs stopped before {name!r} (exit code {process.wait(30)}); "
                    "its stderr is below")
    seen: dict[str, Any] = json.loads(line)
    assert seen.pop("step") == name
    return seen


def test_the_dashboard_works_in_firefox(served: Served,  # noqa: F811 (the fixture)
                                        capsys: pytest.CaptureFixture[str]) -> None:
    firefox, node = require_binary("firefox-esr"), require_binary("node")
    if not (SCRIPT.parent / "node_modules" / "puppeteer-core").is_dir():
        pytest.fail("puppeteer-core is not in tests/firefox/node_modules; `make test` installs it")
    expected_oee = shift_oee(served, capsys)
    with subprocess.Popen([node, str(SCRIPT), firefox, served.url, served.token, "press-1"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as process:
        try:
            machine, overview = step(process, "machine"), step(process, "overview")
            # The open overview sees press-1 break down, through the live stream.
            lines = [reading(at("06:00", D_DAY + timedelta(days=1)), "state", "BREAKDOWN")]
            assert served.shop.ombre(capsys, "replay",
                                     str(served.shop.write("breakdown.jsonl", lines)))[0] == 0
            assert process.stdin is not None
            process.stdin.write("changed\n")
            process.stdin.flush()
            live, french = step(process, "live"), step(process, "french")
            errors = step(process, "errors")
            assert process.wait(60) == 0
        finally:
            process.kill()

    # The machine page: the API's state band of the shift, each segment at its times,
    # in the categories' colours; the axis; the losses; and a chart uPlot drew.
    api = f"{served.url}/api/v1"
    timeline = _get(f"{api}/timeline?machine=press-1", served.token)
    start, end = timeline["from_ns"], timeline["to_ns"]
    [expected] = timeline["machines"]
    band = machine["band"]
    assert [(s["id"], s["kind"], s["category"]) for s in band] \
        == [(None if i["id"] is None else str(i["id"]), i["kind"], i["category"] or "none")
            for i in expected["segments"]]
    assert [s["background"] for s in band if s["kind"] == "state"] \
        == [colour(s["category"]) for s in band if s["kind"] == "state"]
    assert [x for s in band for x in ((s["left"] - machine["bandLeft"]) / machine["bandWidth"],
                                      s["width"] / machine["bandWidth"])] == pytest.approx(
        [x for i in expected["segments"] for x in ((i["start_ns"] - start) / (end - start),
                                                   (i["end_ns"] - i["start_ns"]) / (end - start))],
        abs=1e-3)
    assert machine["ticks"][0] == "06:00"
    assert "availability loss: 60.0" in machine["losses"]
    assert machine["chart"] == "temp"
    assert machine["drawn"] > 0
    # The overview: a tile per machine, coloured by its category, with the shift's OEE.
    config = load_config(served.shop.config, {})
    assert overview["tiles"] == [f"machine-{m.id}" for m in config.machines()]
    assert (overview["category"], overview["background"]) == ("ADOT", colour("ADOT"))
    assert "IDLE · idle, no job (ADOT)" in overview["text"]
    assert float(overview["oee"]) == pytest.approx(expected_oee, abs=1e-12)
    assert f"OEE {100 * expected_oee:.1f} %" in overview["text"]
    assert overview["url"] == f"{served.url}/"  # the token left the address
    # Live, without a reload: the tile turned to the breakdown's category and colour.
    assert (live["category"], live["background"]) == ("ADET", colour("ADET"))
    assert "BREAKDOWN · unplanned stop (ADET)" in live["text"]
    assert (live["notReloaded"], live["url"]) == (True, overview["url"])
    # In French.
    assert (french["heading"], french["button"]) == ("Atelier", "EN")
    assert "disponibilité" in french["text"]
    assert "pas d'OF" in french["text"]
    assert errors == {"errors": []}
