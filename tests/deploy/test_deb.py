"""The Debian package (`make deb`, deploy/debian/): built from the repository, then
installed, upgraded, removed and purged with dpkg inside a throwaway Debian 12 root that
the test builds with debootstrap, never on this machine. Each step runs in the root with
chroot, in mount, PID and network namespaces of its own: the package installs with no
network at all, and the service it installs runs there as the unit runs it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.deploy.test_deploy import DEPLOY, ROOT, source_tree, unit_settings

pytestmark = pytest.mark.slow

# The base systems, kept between runs (debootstrap takes a minute or two and reads
# Debian's registry); each test works on a copy. Only what the package depends on: not
# python3-venv, which the package does without.
PACKAGE_NEEDS = "python3,passwd,init-system-helpers"
ROOTS = Path("/var/tmp/ombre-test-roots")
PIP = Path(sys.executable).parent / "pip"


def run(*args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def base_root(include: str = PACKAGE_NEEDS, arch: str = "amd64") -> Path:
    """A minimal Debian 12 for `arch` with the packages of `include`, built once (for
    another architecture, debootstrap runs its second stage under qemu: binfmt_misc
    must know it first)."""
    base = ROOTS / f"bookworm-{arch}-{include.replace(',', '-')}"
    if (base / ".complete").exists():
        return base
    debootstrap = require_binary("debootstrap")
    building = base.with_name(f"{base.name}.{uuid.uuid4().hex}")
    building.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    made = run(debootstrap, f"--arch={arch}", "--variant=minbase", f"--include={include}",
               "bookworm", building, "http://deb.debian.org/debian")
    if made.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    print(f"debootstrap --arch={arch}: {time.monotonic() - started:.0f} s")
    (building / ".complete").touch()
    try:
        building.rename(base)
    except OSError:  # another run finished first
        shutil.rmtree(building)
    return base


def in_root(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`script` run by sh -e as root inside `root`: in new mount, PID and network
    namespaces (only a loopback link), with /proc and /dev mounted for it. Everything
    it started ends with it, and its mounts are gone."""
    outer = (f"set -e; ip link set lo up; mount -t proc proc {root}/proc; "
             f"mount --rbind /dev {root}/dev; exec chroot {root} /usr/bin/env -i "
             "PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 /bin/sh -ec \"$0\"")
    return run("unshare", "--mount", "--net", "--pid", "--fork", "sh", "-c", outer, script)


def ok(root: Path, script: str) -> str:
    result = in_root(root, script)
    assert result.returncode == 0, f"{script}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


def build(source: Path, version: str, out: Path, arch: str = "amd64",
          script: str = "build.sh") -> Path:
    """The package (build.sh) or the offline bundle (bundle.sh) of `source`."""
    built = run("sh", source / "deploy/debian" / script, "--arch", arch, "--version", version,
                "--out", out, "--pip", PIP)
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.strip())


def fresh_root(tmp_path: Path, include: str = PACKAGE_NEEDS) -> Path:
    root = tmp_path / "root"
    copied = run("cp", "-a", base_root(include), root)
    assert copied.returncode == 0, copied.stderr
    return root


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Ombre 0.1.0 as the bundle of package 0.1.0-1, then Ombre 0.2.0 as package
    0.2.0-1."""
    tmp = tmp_path_factory.mktemp("debs")
    bundle = build(source_tree(tmp / "v1", "0.1.0"), "0.1.0-1", tmp, script="bundle.sh")
    assert bundle == tmp / "ombre-0.1.0-1-amd64.tar"
    deb = build(source_tree(tmp / "v2", "0.2.0"), "0.2.0-1", tmp)
    assert deb == tmp / "ombre_0.2.0-1_amd64.deb"
    return bundle, deb


SERVICE = """
cd /var/lib/ombre
setpriv --reuid=ombre --regid=ombre --init-groups {command} >/tmp/ombre.log 2>&1 &
pid=$!
healthz='import urllib.request as u; u.urlopen("http://127.0.0.1:8080/healthz", timeout=2)'
for _ in $(seq 90); do
    if python3 -c "$healthz" 2>/dev/null; then break; fi
    sleep 1
done
python3 - <<'EOF'
import json, urllib.error, urllib.request
token = open("/var/lib/ombre/first-admin-token").read().strip()
request = urllib.request.Request("http://127.0.0.1:8080/readyz",
                                 headers={{"Authorization": f"Bearer {{token}}"}})
try:
    urllib.request.urlopen(request, timeout=5)
except urllib.error.HTTPError as answer:
    print("readyz", answer.code, answer.read().decode())
EOF
kill -TERM $pid
wait $pid && echo "exit 0"
cat /tmp/ombre.log
stat -c 'token %a %U' /var/lib/ombre/first-admin-token
"""


def test_install_upgrade_remove_purge(packages: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, second = packages
    root = fresh_root(tmp_path)
    assert run("tar", "-xf", bundle, "-C", root / "tmp").returncode == 0
    shutil.copy(second, root / "tmp")

    # Installed from the bundle with no network: the venv comes from the package's wheels.
    installed = ok(root, "sh /tmp/ombre-0.1.0-1-amd64/install.sh")
    assert "ombre install: ombre 0.1.0-1 installed" in installed
    assert "Version: 0.1.0-1" in ok(root, "dpkg -s ombre")
    assert ok(root, "/opt/ombre/venv/bin/ombre --version").startswith("ombre 0.1.0 ")
    assert ok(root, "getent passwd ombre").strip().endswith(":/var/lib/ombre:/usr/sbin/nologin")
    assert ok(root, "stat -c '%a %U %G' /etc/ombre /etc/ombre/plant.yaml /var/lib/ombre"
              ).split("\n")[:3] == ["750 root ombre", "640 root ombre", "750 ombre ombre"]
    assert (root / "etc/ombre/plant.yaml").read_text() == (
        DEPLOY / "systemd/plant.yaml").read_text()
    unit = root / "lib/systemd/system/ombre.service"
    assert unit.read_text() == (DEPLOY / "systemd/ombre.service").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/ombre.service"
    assert wants.is_symlink()
    assert wants.readlink() == Path("/lib/systemd/system/ombre.service")
    # Every connector's stack is in the venv.
    ok(root, "/opt/ombre/venv/bin/python -c 'import asyncua, pymodbus, snap7, influxdb_client, "
             "psycopg, google.protobuf, uvloop, numpy, fastapi'")

    # The service's command, as the unit gives it, as the service's user: the gateway
    # and the API in one process. No broker answers in this namespace: /healthz says it
    # lives, /readyz names the source that is down, SIGTERM stops it in order.
    command = unit_settings(unit.read_text())["Service.ExecStart"][0]
    served = ok(root, SERVICE.format(command=command))
    assert "readyz 503" in served, served
    assert "local-broker" in served, served
    assert "exit 0" in served, served
    assert "ombre.app: stopped" in served, served
    assert "token 600 ombre" in served, served

    # Upgrade: the edited config and the data stay; the venv is the new version's.
    config = root / "etc/ombre/plant.yaml"
    config.write_text(config.read_text().replace("My plant", "Edited plant"))
    (root / "var/lib/ombre/marker").write_text("readings")
    upgraded = ok(root, f"dpkg -i /tmp/{second.name}")
    assert "plant.yaml" not in upgraded  # no question about the conffile: it is kept
    assert "Version: 0.2.0-1" in ok(root, "dpkg -s ombre")
    assert ok(root, "/opt/ombre/venv/bin/ombre --version").startswith("ombre 0.2.0 ")
    assert "Edited plant" in config.read_text()
    assert (root / "var/lib/ombre/marker").read_text() == "readings"
    assert (root / "var/lib/ombre/first-admin-token").exists()
    assert ok(root, "grep -c '^ombre:' /etc/passwd").strip() == "1"
    ok(root, "setpriv --reuid=ombre --regid=ombre --init-groups "
             "/opt/ombre/venv/bin/ombre check /etc/ombre/plant.yaml")

    # Remove: the program goes, the config and the data stay.
    ok(root, "dpkg -r ombre")
    assert "Status: deinstall ok config-files" in ok(root, "dpkg -s ombre")
    assert not (root / "opt/ombre").exists()
    assert not unit.exists()
    assert "Edited plant" in config.read_text()
    assert (root / "var/lib/ombre/marker").read_text() == "readings"

    # Purge: the config and the data go too; no trace of the unit is left.
    ok(root, "dpkg -P ombre")
    assert in_root(root, "dpkg -s ombre").returncode == 1
    for gone in ("etc/ombre", "var/lib/ombre", "opt/ombre"):
        assert not (root / gone).exists(), gone
    assert not list((root / "etc/systemd/system").rglob("ombre*"))
    assert not list((root / "var/lib/systemd").rglob("ombre*"))


def test_arm64_bundle_carries_only_arm64_or_pure_wheels(tmp_path: Path) -> None:
    """Built on this amd64 machine for a Raspberry Pi 4/5 with 64-bit Raspberry Pi OS:
    every compiled dependency comes as an aarch64 wheel (none builds from source). Its
    installer refuses this machine, and a damaged bundle."""
    bundle = build(ROOT, "0.1.0-1", tmp_path, arch="arm64", script="bundle.sh")
    assert bundle == tmp_path / "ombre-0.1.0-1-arm64.tar"
    assert run("tar", "-xf", bundle, "-C", tmp_path).returncode == 0
    unpacked = tmp_path / "ombre-0.1.0-1-arm64"
    assert sorted(p.name for p in unpacked.iterdir()) == [
        "SHA256SUMS", "install.sh", "ombre_0.1.0-1_arm64.deb"]
    deb = unpacked / "ombre_0.1.0-1_arm64.deb"
    assert run("dpkg-deb", "--field", deb, "Architecture").stdout.strip() == "arm64"
    listing = run("dpkg-deb", "--contents", deb).stdout
    wheels = [line.split("/")[-1] for line in listing.splitlines() if line.endswith(".whl")]
    compiled = [w for w in wheels if not w.endswith("-none-any.whl")]
    assert len(wheels) > 30
    assert {"numpy", "pydantic_core", "cryptography", "sqlalchemy", "psycopg_binary",
            "uvloop"} <= {w.split("-")[0] for w in compiled}
    assert all(w.endswith("_aarch64.whl") for w in compiled), compiled
    extracted = tmp_path / "x"
    assert run("dpkg-deb", "--extract", deb, extracted).returncode == 0
    ombre = next((extracted / "opt/ombre/wheels").glob("ombre-*.whl"))
    with zipfile.ZipFile(ombre) as wheel:
        assert "ombre/cli.py" in wheel.namelist()
    assert shlex.split((extracted / "lib/systemd/system/ombre.service").read_text()
                       .split("ExecStart=")[1].splitlines()[0])[1:3] == ["run", "--api"]

    root = fresh_root(tmp_path)
    shutil.copytree(unpacked, root / "tmp/bundle")
    refused = in_root(root, "sh /tmp/bundle/install.sh")
    assert refused.returncode == 1
    assert "this bundle is for arm64; this machine is amd64" in refused.stderr
    with (root / "tmp/bundle/install.sh").open("a") as script:
        script.write("# changed\n")
    damaged = in_root(root, "sh /tmp/bundle/install.sh")
    assert damaged.returncode == 1
    assert "the bundle is damaged" in damaged.stderr
    assert in_root(root, "dpkg -s ombre").returncode == 1


WITH_SYSTEMD = f"systemd,systemd-sysv,dbus,{PACKAGE_NEEDS}"


@contextmanager
def booted(root: Path) -> Iterator[Callable[[str], subprocess.CompletedProcess[str]]]:
    """`root` booted by systemd-nspawn with systemd as PID 1, in a network namespace of
    its own (a loopback link only). Yields a function that runs a shell script inside;
    powers the container off at the end."""
    nspawn = require_binary("systemd-nspawn")
    with (root.parent / "nspawn.log").open("w") as log:
        container = subprocess.Popen(
            [nspawn, "--quiet", "--register=no", "--keep-unit", "--private-network", "-D",
             str(root), "-b", "--console=read-only"], stdout=log, stderr=log)

    def inside(script: str) -> subprocess.CompletedProcess[str]:
        return run("nsenter", "-t", leader, "-a", "/usr/bin/env", "-i",
                   "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "/bin/sh", "-ec", script)

    try:
        deadline = time.monotonic() + 120
        leader = ""
        while not leader or inside("systemctl is-system-running --wait").stdout.strip() not in (
                "running", "degraded"):
            assert container.poll() is None, (root.parent / "nspawn.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the container did not boot"
            time.sleep(1)
            leader = run("pgrep", "-P", str(container.pid)).stdout.strip()
        yield inside
    finally:
        if leader:
            inside("systemctl poweroff")
        try:
            container.wait(60)
        except subprocess.TimeoutExpired:
            container.kill()
            container.wait(10)


def main_pid(inside: Callable[[str], subprocess.CompletedProcess[str]]) -> int:
    return int(inside("systemctl show -P MainPID ombre").stdout)


def wait_served(inside: Callable[[str], subprocess.CompletedProcess[str]], other_than: int = 0
                ) -> int:
    """Waits until ombre.service is active, with a main process other than `other_than`,
    and its /healthz answers; returns that process's PID."""
    healthz = ("python3 -c 'import urllib.request as u; "
               "u.urlopen(\"http://127.0.0.1:8080/healthz\", timeout=2)'")
    deadline = time.monotonic() + 90
    while True:
        pid = main_pid(inside)
        if (pid not in (0, other_than) and inside("systemctl is-active ombre").returncode == 0
                and inside(healthz).returncode == 0):
            return pid
        assert time.monotonic() < deadline, inside("journalctl -u ombre --no-pager").stdout[-3000:]
        time.sleep(1)


def test_the_service_under_systemd(packages: tuple[Path, Path], tmp_path: Path) -> None:
    """The package in a Debian 12 booted with systemd: installed from the bundle, the
    hardened unit starts (Type=notify: active only once `ombre run --api` said READY)
    and serves; a frozen process (SIGSTOP: no more watchdog pings) is killed and
    restarted by systemd; an upgrade restarts it on the new version; purge stops it."""
    bundle, second = packages
    root = fresh_root(tmp_path, WITH_SYSTEMD)
    assert run("tar", "-xf", bundle, "-C", root / "root").returncode == 0  # systemd's /tmp
    shutil.copy(second, root / "root")  # is a new tmpfs
    with booted(root) as inside:
        installed = inside("sh /root/ombre-0.1.0-1-amd64/install.sh")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "the first admin token: sudo cat /var/lib/ombre/first-admin-token" in (
            installed.stdout)
        first = wait_served(inside)
        assert inside("stat -c '%a %U' /var/lib/ombre/first-admin-token").stdout == "600 ombre\n"
        journal = inside("journalctl -u ombre --no-pager").stdout
        assert "first-admin-token" in journal
        assert not re.search(r"ombre_[0-9A-Za-z]", journal)

        # A frozen gateway: its pings stop, and systemd's watchdog (3 s here) restarts it.
        dropin = root / "etc/systemd/system/ombre.service.d/watchdog.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text("[Service]\nWatchdogSec=3\nTimeoutAbortSec=2\n")
        assert inside("systemctl daemon-reload && systemctl restart ombre").returncode == 0
        calm = wait_served(inside, other_than=first)
        time.sleep(8)  # longer than the watchdog's period: the pings keep it alive
        assert main_pid(inside) == calm
        assert inside(f"kill -STOP {calm}").returncode == 0
        restarted = wait_served(inside, other_than=calm)
        journal = inside("journalctl -u ombre --no-pager").stdout
        assert "Watchdog timeout" in journal, journal[-2000:]
        assert int(inside("systemctl show -P NRestarts ombre").stdout) >= 1
        dropin.unlink()
        assert inside("systemctl daemon-reload").returncode == 0

        upgraded = inside(f"dpkg -i /root/{second.name}")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        wait_served(inside, other_than=restarted)
        assert inside("/opt/ombre/venv/bin/ombre --version").stdout.startswith("ombre 0.2.0 ")

        purged = inside("dpkg -P ombre")
        assert purged.returncode == 0, purged.stdout + purged.stderr
        assert inside("systemctl is-active ombre").stdout.strip() == "inactive"
        owners = inside("stat -c %U /proc/[0-9]*").stdout.split()
        assert "root" in owners
        assert "ombre" not in owners  # no process of the service is left
        assert not (root / "var/lib/ombre").exists()
