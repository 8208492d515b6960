"""Ombre on arm64 (a Raspberry Pi 4/5 with 64-bit Raspberry Pi OS), on this amd64
machine: the arm64 Debian package (`deploy/debian/build.sh --arch arm64`), with the
aarch64 wheels a Pi installs, is installed with dpkg in an arm64 Debian 12 root that the
test builds with debootstrap, and runs there under qemu user emulation (binfmt_misc),
in namespaces of its own with no network (test_deb.py's `in_root`). Then a part of the
project's own suite runs inside that root, on the package's venv, with the root's own
aarch64 Mosquitto and OpenSSL: the gateway (config, outbox, storage, runtime, the
pipeline from MQTT to SQLite, the process and its signals), the MQTT source's decoding,
the MQTT sink, the SQLite sink and time series, and the shadow's model. About three
minutes under emulation on two cores; `-s` shows the figures (debootstrap, install and
suite times, tests passed, the compiled wheels).

Left out of the suite here: test_mqtt_sink_outage.py (a minute natively: a load test
of more than 65,535 messages with a busy thread, its bounds are wall-clock ones), and
everything that needs a server this root has not (PostgreSQL, VictoriaMetrics, OPC UA,
Modbus and S7 simulators, a browser)."""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.deploy.test_deb import PIP, base_root, build, in_root, ok, run
from tests.deploy.test_deploy import ROOT

# Above the suite's 300 s per test: the first one waits for debootstrap under emulation
# (two to three minutes, once), the build and the install (a minute); the suite takes
# three minutes on two idle cores, more beside other tests.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# qemu-user-static's registration of aarch64 ELF binaries, flags OPF: F opens the
# interpreter when registering, so it runs inside a chroot that has no qemu of its own.
QEMU_AARCH64 = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")

# The arm64 base system, kept between runs beside the amd64 one (debootstrap under
# emulation takes about two to three minutes): what the package depends on, and the
# Mosquitto and OpenSSL the suite's MQTT and TLS tests start.
INCLUDE = "python3,passwd,init-system-helpers,mosquitto,openssl"

# What runs in the root: whole files, so that their fixtures and helpers come along.
SUITE = (
    "tests/gateway",
    "tests/connectors/test_mqtt_decode.py",
    "tests/connectors/test_mqtt_sink.py",
    "tests/connectors/test_mqtt_stop.py",
    "tests/connectors/test_sqlite_sink.py",
    "tests/connectors/test_sqlite_ts.py",
    "tests/shadow/test_model.py",
)
SUITE_FLOOR = 230  # 239 pass today: fewer means tests went missing, not that all is well
# The suite's tools, beside the runtime's wheels in the venv.
TEST_TOOLS = ("pytest", "pytest-asyncio", "pytest-timeout", "hypothesis")


def platforms(machine: str) -> list[str]:
    """pip's --platform options for a wheel that runs on Debian 12 (glibc 2.36) on
    `machine`, as build.sh gives them."""
    tags = [f"linux_{machine}", f"manylinux2014_{machine}",
            *(f"manylinux_2_{glibc}_{machine}" for glibc in range(17, 37))]
    return [option for tag in tags for option in ("--platform", tag)]


def register_aarch64() -> None:
    """qemu-aarch64 registered with binfmt_misc, with the F flag: the kernel's own
    state, shared by every test and left in place (registering it again is refused)."""
    require_binary("qemu-aarch64-static")
    if not (BINFMT / "register").exists():
        mounted = run("mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT)
        assert mounted.returncode == 0, mounted.stderr
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        with contextlib.suppress(FileExistsError):  # registered meanwhile by another run
            (BINFMT / "register").write_text(QEMU_AARCH64.read_text().strip())
    state = entry.read_text()
    assert state.startswith("enabled\n"), state
    flags = re.search(r"^flags: (\w*)$", state, re.MULTILINE)
    assert flags is not None, state
    assert "F" in flags[1], f"qemu-aarch64 without the F flag:\n{state}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the arm64 root with this repository's arm64 package installed by dpkg,
    with no network: the venv is built from the package's aarch64 wheels."""
    register_aarch64()
    tmp = tmp_path_factory.mktemp("arm64")
    deb = build(ROOT, "0.1.0-1", tmp, arch="arm64")
    assert deb == tmp / "ombre_0.1.0-1_arm64.deb"
    root = tmp / "root"
    copied = run("cp", "-a", base_root(INCLUDE, "arm64"), root)
    assert copied.returncode == 0, copied.stderr
    shutil.copy(deb, root / "tmp")
    started = time.monotonic()
    ok(root, f"dpkg -i /tmp/{deb.name}")
    print(f"dpkg -i {deb.name} under emulation: {time.monotonic() - started:.0f} s")
    return root


def test_the_arm64_package_installs_and_runs_on_aarch64(installed: Path) -> None:
    root = installed
    assert ok(root, "uname -m").strip() == "aarch64"
    assert ok(root, "python3 -c 'import platform; print(platform.machine())'").strip() == "aarch64"
    assert "Status: install ok installed" in ok(root, "dpkg -s ombre")
    assert ok(root, "/opt/ombre/venv/bin/ombre --version").startswith("ombre 0.1.0 ")

    # Every compiled dependency came as an aarch64 wheel (none was built from source),
    # and each one loads in the aarch64 interpreter: psycopg with its binary libpq.
    wheels = sorted(p.name for p in (root / "opt/ombre/wheels").glob("*.whl"))
    compiled = [w for w in wheels if not w.endswith("-none-any.whl")]
    print(f"{len(wheels)} wheels, {len(compiled)} compiled:", *compiled, sep="\n  ")
    assert all("_aarch64." in w for w in compiled), compiled
    assert {w.split("-")[0] for w in compiled} >= {
        "cffi", "cryptography", "httptools", "markupsafe", "numpy", "orjson", "protobuf",
        "psycopg_binary", "pydantic_core", "pyyaml", "sqlalchemy", "uvloop"}
    loaded = ok(root, "/opt/ombre/venv/bin/python -c '"
                "import platform, _cffi_backend, cryptography.hazmat.bindings._rust, httptools, "
                "markupsafe._speedups, numpy, orjson, pydantic_core, uvloop, yaml, psycopg, "
                "google.protobuf.internal.api_implementation as pb, sqlalchemy.util as sa; "
                "print(platform.machine(), psycopg.pq.__impl__, pb.Type(), "
                "yaml.__with_libyaml__, sa.has_compiled_ext())'")
    assert loaded.split() == ["aarch64", "binary", "upb", "True", "True"], loaded

    # `ombre check` reads the package's starter config on this machine.
    ok(root, "/opt/ombre/venv/bin/ombre check /etc/ombre/plant.yaml")


def test_the_suite_passes_on_aarch64(installed: Path) -> None:
    """SUITE, inside the root under emulation, on the package's venv: the tests and
    the benchmarks' helpers are copied in, not the source (Ombre is the installed one)."""
    root = installed
    tools = root / "tmp/test-wheels"
    fetched = run(PIP, "download", "--quiet", "--disable-pip-version-check", "--dest", tools,
                  "--only-binary=:all:", *platforms("aarch64"), "--python-version", "3.11",
                  "--implementation", "cp", "-c", ROOT / "requirements.lock", *TEST_TOOLS)
    assert fetched.returncode == 0, fetched.stderr
    assert all(w.name.endswith(("-none-any.whl", "_aarch64.whl")) for w in tools.iterdir())
    ok(root, "/opt/ombre/venv/bin/pip install --quiet --disable-pip-version-check --no-index "
             f"--find-links /tmp/test-wheels --find-links /opt/ombre/wheels {' '.join(TEST_TOOLS)}")

    suite = root / "opt/ombre-tests"
    ignore = shutil.ignore_patterns("__pycache__", "results")
    for part in ("tests", "bench", "deploy/config"):
        shutil.copytree(ROOT / part, suite / part, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", suite)  # the pytest settings, as in the repository

    started = time.monotonic()
    ran = in_root(root, "cd /opt/ombre-tests && /opt/ombre/venv/bin/python -c "
                        "'import ombre, platform; print(platform.machine(), ombre.__file__)' && "
                        "exec /opt/ombre/venv/bin/python -m pytest -q -p no:cacheprovider "
                        + " ".join(SUITE))
    took = time.monotonic() - started
    output = ran.stdout + ran.stderr
    assert ran.stdout.startswith("aarch64 /opt/ombre/venv/lib/python3.11/site-packages/ombre/"), (
        output[-3000:])
    passed = re.search(r"(\d+) passed", output)
    print(f"the suite on aarch64: {passed[1] if passed else 0} passed in {took:.0f} s "
          f"({' '.join(SUITE)})")
    assert ran.returncode == 0, output[-6000:]
    assert passed is not None, output[-3000:]
    assert int(passed[1]) >= SUITE_FLOOR, output[-3000:]
