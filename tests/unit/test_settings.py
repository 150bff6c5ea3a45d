"""Runtime settings: environment over file over defaults, and errors that name the place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envmon.settings import Settings, SettingsError, load_settings


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without variables or a file the process runs the in-process bus and SQLite."""
    monkeypatch.delenv("ENVMON_SETTINGS_FILE", raising=False)
    settings = load_settings()
    assert (settings.bus, settings.timeseries) == ("memory", "sqlite")


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A YAML file sets values; an ENVMON_ variable wins over it."""
    file = tmp_path / "settings.yaml"
    file.write_text("bus: kafka\nkafka_partitions: 12\nkafka_bootstrap: a:9092,b:9092\n")
    monkeypatch.setenv("ENVMON_KAFKA_PARTITIONS", "6")
    settings = load_settings(file)
    assert settings.bus == "kafka"
    assert settings.kafka_partitions == 6
    assert settings.faust_broker == "kafka://a:9092;kafka://b:9092"


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value is refused before anything starts, naming the variable and the key."""
    monkeypatch.setenv("ENVMON_KAFKA_PARTITIONS", "0")
    with pytest.raises(SettingsError, match=r"ENVMON_KAFKA_PARTITIONS.*greater than or equal"):
        load_settings()


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    """A typo in the settings file is an error, not silently ignored."""
    file = tmp_path / "settings.yaml"
    file.write_text("kafka_partitons: 3\n")
    with pytest.raises(SettingsError, match="kafka_partitons"):
        load_settings(file)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """Naming a settings file that does not exist stops at once."""
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_topic_prefix() -> None:
    """Every topic name gets the installation's prefix."""
    assert Settings(topic_prefix="plant-a.").topic("envmon.readings") == "plant-a.envmon.readings"


def test_as_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings handed to another process as variables come back the same."""
    settings = Settings(bus="kafka", kafka_partitions=3, influx_token="s3cret", tick_s=0)
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == settings


def test_shipped_example_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/examples/settings.yaml (the operations guide's file) is valid as shipped."""
    for name in list(os.environ):
        if name.startswith("ENVMON_"):
            monkeypatch.delenv(name)
    example = Path(__file__).parents[2] / "deploy" / "examples" / "settings.yaml"
    settings = load_settings(example)
    assert (settings.bus, settings.timeseries) == ("kafka", "influx")
    assert settings.kafka_replication == 3


def test_the_developers_shell_settings_do_not_reach_the_tests(tmp_path):
    """With ENVMON_BUS and ENVMON_SITE set in the shell, the settings tests still pass."""
    import subprocess
    import sys

    env = {**os.environ, "ENVMON_BUS": "kafka", "ENVMON_SITE": "/nonexistent/site.yaml"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path}",
            "-k",
            "not developers_shell",
            __file__,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:]
