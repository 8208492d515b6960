"""Loading the YAML config: the samples, every kind of problem with its key path and
line, secrets, and `ombre check` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from connectors.mqtt_config import MqttSourceConfig
from gateway.config_base import Reference
from gateway.config_load import ConfigError, ConfigProblem
from ombre.cli import main
from ombre.config import load_config

SAMPLES = Path(__file__).parents[2] / "deploy" / "config"
SECRET = "s3cr3t-Pa55word"

BASE = """\
sites:
  - id: plant
    lines:
      - id: line-1
        machines:
          - id: m-1
            signals:
              - name: temp
                unit: degC
          - id: m-2
sources:
  - type: mqtt
    name: broker
    port: 1883
    password: ${MQTT_PASSWORD}
    subscriptions:
      - topic: plant/{line}/{machine}/{signal}
sinks:
  - type: sqlite
    path: ts.sqlite
"""
ENV = {"MQTT_PASSWORD": SECRET}


def write(tmp_path: Path, text: str, name: str = "plant.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of `text` containing `needle`."""
    (line,) = [i for i, row in enumerate(text.splitlines(), 1) if needle in row]
    return line


def problems(tmp_path: Path, text: str, environ: dict[str, str] = ENV) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ)
    return caught.value.problems


def only_problem(tmp_path: Path, text: str, environ: dict[str, str] = ENV) -> ConfigProblem:
    (problem,) = problems(tmp_path, text, environ)
    return problem


def test_reference_sample_loads() -> None:
    config = load_config(SAMPLES / "plant.yaml", {})
    assert [m.id for m in config.machines()] == ["cnc-1", "press-3", "pack-1"]
    assert len(config.registry()) == 16
    assert [a.id for a in config.sites[0].areas] == ["hall-a"]
    assert len(config.sites[0].all_lines()) == 2
    assert {s.format for s in config.sources[0].subscriptions} == {
        "number", "value", "object", "array"}
    assert (config.sources[0].host, config.sources[0].port) == ("127.0.0.1", 1883)
    assert config.sinks[0].type == "sqlite"
    assert config.data_dir == SAMPLES.absolute() / "data"


def test_minimal_sample_loads_with_defaults() -> None:
    config = load_config(SAMPLES / "minimal.yaml", {})
    assert [s.id for s in config.sites] == ["my-plant"]
    assert config.sources == []
    assert config.sinks == []
    assert config.runtime.flush_interval_ms == 50


def test_base_loads_and_resolves_paths_and_secret(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), ENV)
    source = config.sources[0]
    assert source.password is not None
    assert source.password.get_secret_value() == SECRET
    assert config.data_dir == tmp_path / "data"
    assert config.sinks[0].path == tmp_path / "ts.sqlite"


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    text = BASE.replace("    port: 1883", "    protocl: 5")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem(
        "sources[0].protocl", line_of(text, "protocl"),
        "unknown key 'protocl', did you mean 'protocol'?")


def test_unknown_key_without_a_close_match_lists_the_valid_keys(tmp_path: Path) -> None:
    text = BASE + "colour: blue\n"
    problem = only_problem(tmp_path, text)
    assert problem.path == "colour"
    assert problem.line == line_of(text, "colour")
    assert problem.message == ("unknown key 'colour'; expected one of data_dir, sites, sources, "
                               "sinks, runtime, storage, shadow, notifications, api, fleet")


@pytest.mark.parametrize(("port", "found"), [("abc", "'abc'"), ("70000", "70000"),
                                             ("0", "0"), ("", "nothing")])
def test_port_must_be_an_integer_in_range(tmp_path: Path, port: str, found: str) -> None:
    text = BASE.replace("port: 1883", f"port: {port}")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem("sources[0].port", line_of(text, "port:"),
                                    f"expected an integer from 1 to 65535, found {found}")
    assert str(ConfigError("plant.yaml", [problem])) == (
        f"plant.yaml:{problem.line}: sources[0].port: "
        f"expected an integer from 1 to 65535, found {found}")


def test_wrong_type_deep_in_the_plant(tmp_path: Path) -> None:
    text = BASE.replace("unit: degC", "unit: [degC]")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem("sites[0].lines[0].machines[0].signals[0].unit",
                                    line_of(text, "unit:"), "expected a string, found a list")


def test_long_found_values_are_shortened(tmp_path: Path) -> None:
    text = BASE.replace("- type: sqlite", "- type: sqlite\n    retention_days: " + "x" * 200)
    message = only_problem(tmp_path, text).message
    assert message.startswith("expected a number greater than 0, found 'xxx")
    assert message.endswith("...")
    assert len(message) < 110


def test_bad_source_type_lists_the_allowed_types(tmp_path: Path) -> None:
    text = BASE.replace("type: mqtt", "type: kafka")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem("sources[0].type", line_of(text, "kafka"),
                                    "expected one of 'modbus', 'mqtt', 'opcua', 's7', "
                                    "'sparkplug', found 'kafka'")


def test_missing_source_type(tmp_path: Path) -> None:
    text = BASE.replace("  - type: mqtt\n    name: broker", "  - name: broker")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem("sources[0].type", line_of(text, "name: broker"),
                                    "missing required key (one of 'modbus', 'mqtt', 'opcua', "
                                    "'s7', 'sparkplug')")


def test_missing_required_key_points_at_its_parent(tmp_path: Path) -> None:
    text = BASE.replace("          - id: m-2", "          - name: Press")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem("sites[0].lines[0].machines[1].id",
                                    line_of(text, "name: Press"), "missing required key")


def test_duplicate_machine_id_names_the_second_and_the_first(tmp_path: Path) -> None:
    text = BASE.replace("id: m-2", "id: m-1")
    problem = only_problem(tmp_path, text)
    first, second = [i for i, row in enumerate(text.splitlines(), 1) if "id: m-1" in row]
    assert problem == ConfigProblem(
        "sites[0].lines[0].machines[1].id", second,
        f"expected a unique machine id, found 'm-1' again (first at line {first})")


def test_duplicate_names_across_sources_and_sinks(tmp_path: Path) -> None:
    text = BASE.replace("- type: sqlite", "- type: sqlite\n    name: broker")
    problem = only_problem(tmp_path, text)
    first, second = [i for i, row in enumerate(text.splitlines(), 1) if "name: broker" in row]
    assert problem == ConfigProblem(
        "sinks[0].name", second,
        f"expected a unique source/sink name, found 'broker' again (first at line {first})")


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    text = (BASE.replace("unit: degC", "unit: 3").replace("port: 1883", "port: x")
            + "runtime:\n  overflow: sometimes\n")
    found = problems(tmp_path, text)
    assert [(p.path, p.line) for p in found] == [
        ("sites[0].lines[0].machines[0].signals[0].unit", line_of(text, "unit:")),
        ("sources[0].port", line_of(text, "port:")),
        ("runtime.overflow", line_of(text, "overflow")),
    ]
    assert found[2].message == "expected one of 'block', 'drop_oldest', found 'sometimes'"


def test_yaml_syntax_error_is_one_problem_with_line_and_column(tmp_path: Path) -> None:
    text = BASE.replace("    port: 1883", "    port: 1883: 1884")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem("", line_of(text, "1884"),
                                    "invalid YAML at column 15: mapping values are not allowed "
                                    "here")


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    text = BASE.replace("    port: 1883", "    port: 1883\n    port: 1884")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem("sources[0].port", line_of(text, "1884"),
                                    "expected each key once, found 'port' again "
                                    f"(first at line {line_of(text, '1883')})")


@pytest.mark.parametrize(("text", "message"), [
    ("", "expected a mapping of keys, found an empty file"),
    ("- id: plant\n", "expected a mapping of keys, found a list"),
])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, message: str) -> None:
    assert only_problem(tmp_path, text) == ConfigProblem("", 1, message)


def test_at_least_one_site(tmp_path: Path) -> None:
    assert only_problem(tmp_path, "sites: []\n") == ConfigProblem(
        "sites", 1, "expected a list with at least one item, found an empty list")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml", {})
    assert str(caught.value) == (f"{tmp_path / 'nope.yaml'}: cannot read file "
                                 f"'{tmp_path / 'nope.yaml'}': No such file or directory")


def test_unset_environment_variable_is_named(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, BASE, environ={})
    assert problem == ConfigProblem(
        "sources[0].password", line_of(BASE, "password"),
        "expected environment variable 'MQTT_PASSWORD' to be set, found it unset")


def test_unset_variable_is_the_only_problem_of_its_key(tmp_path: Path) -> None:
    text = BASE.replace("port: 1883", "port: ${MQTT_PORT}")
    assert only_problem(tmp_path, text) == ConfigProblem(
        "sources[0].port", line_of(text, "port:"),
        "expected environment variable 'MQTT_PORT' to be set, found it unset")


def test_environment_reference_in_a_plain_value(tmp_path: Path) -> None:
    text = BASE.replace("port: 1883", "port: ${MQTT_PORT}")
    config = load_config(write(tmp_path, text), {**ENV, "MQTT_PORT": "8883"})
    assert config.sources[0].port == 8883


def test_literal_password_is_refused_and_never_printed(tmp_path: Path) -> None:
    text = BASE.replace("${MQTT_PASSWORD}", SECRET)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), ENV)
    assert caught.value.problems == [ConfigProblem(
        "sources[0].password", line_of(text, "password"),
        "write the secret as ${ENV_NAME} or ${file:/path}, not in the file; found <secret>")]
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_secret_mixed_with_literal_text_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("${MQTT_PASSWORD}", "pre-${MQTT_PASSWORD}")
    assert only_problem(tmp_path, text).path == "sources[0].password"


def test_file_reference_reads_the_file_without_its_newline(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt").write_text(SECRET + "\n", encoding="utf-8")
    text = BASE.replace("${MQTT_PASSWORD}", "${file:secrets/mqtt}")
    config = load_config(write(tmp_path, text), {})
    password = config.sources[0].password
    assert password is not None
    assert password.get_secret_value() == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config)


def test_unreadable_file_reference_is_named(tmp_path: Path) -> None:
    text = BASE.replace("${MQTT_PASSWORD}", "${file:/nonexistent/mqtt}")
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem(
        "sources[0].password", line_of(text, "password"),
        "cannot read file '/nonexistent/mqtt': No such file or directory")


def test_substituted_value_is_not_printed_in_errors(tmp_path: Path) -> None:
    text = BASE.replace("port: 1883", "port: ${MQTT_PASSWORD}")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), ENV)
    assert caught.value.problems == [ConfigProblem(
        "sources[0].port", line_of(text, "port:"),
        "expected an integer from 1 to 65535, found '${MQTT_PASSWORD}' (substituted value "
        "not shown)")]
    assert SECRET not in str(caught.value)


def test_reference_repr_hides_the_value() -> None:
    assert repr(Reference(SECRET, "${MQTT_PASSWORD}")) == "Reference('${MQTT_PASSWORD}')"


def test_code_may_pass_a_secretstr_but_not_a_plain_string() -> None:
    fields = {"type": "mqtt", "name": "b", "subscriptions": [{"topic": "t/{machine}/{signal}"}]}
    ok = MqttSourceConfig.model_validate({**fields, "password": SecretStr(SECRET)})
    assert ok.password is not None
    assert ok.password.get_secret_value() == SECRET
    with pytest.raises(ValidationError, match="write the secret as") as caught:
        MqttSourceConfig.model_validate({**fields, "password": SECRET})
    assert caught.value.errors()[0]["loc"] == ("password",)


def test_protocol_may_be_written_as_a_number(tmp_path: Path) -> None:
    text = BASE.replace("port: 1883", "protocol: 5")
    assert load_config(write(tmp_path, text), ENV).sources[0].protocol == "5"


def test_oldest_ts_needs_a_time_zone(tmp_path: Path) -> None:
    text = BASE + "runtime:\n  limits:\n    oldest_ts: 2000-01-01T00:00:00\n"
    problem = only_problem(tmp_path, text)
    assert problem.path == "runtime.limits.oldest_ts"
    assert problem.message.endswith("found '2000-01-01T00:00:00'")


def test_check_prints_a_summary_for_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = SAMPLES / "plant.yaml"
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (3 machines, 16 signals, 1 sources, 1 sinks)\n"
    assert err == ""


def test_check_prints_every_problem_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_PASSWORD", SECRET)
    text = BASE.replace("port: 1883", "port: x").replace("id: m-2", "idd: m-2")
    path = write(tmp_path, text)
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:{line_of(text, 'idd')}: sites[0].lines[0].machines[1].id: missing required key",
        f"{path}:{line_of(text, 'idd')}: sites[0].lines[0].machines[1].idd: unknown key 'idd', "
        "did you mean 'id'?",
        f"{path}:{line_of(text, 'port')}: sources[0].port: expected an integer from 1 to 65535, "
        "found 'x'",
    ]


def test_console_command_reports_a_broken_file_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "sites:\n  - id: [unclosed\n")
    done = subprocess.run([sys.executable, "-m", "ombre", "check", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"{path}:3: invalid YAML at column 1: ")
    assert "Traceback" not in done.stderr


def test_storage_profile_is_read_and_defaults_to_default(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, BASE), ENV).storage.profile == "default"
    text = BASE + "storage:\n  profile: sd-card\n"
    assert load_config(write(tmp_path, text), ENV).storage.profile == "sd-card"


def test_unknown_storage_profile_lists_the_profiles(tmp_path: Path) -> None:
    text = BASE + "storage:\n  profile: sdcard\n"
    problem = only_problem(tmp_path, text)
    assert problem == ConfigProblem("storage.profile", line_of(text, "profile"),
                                    "expected one of 'default', 'sd-card', found 'sdcard'")
