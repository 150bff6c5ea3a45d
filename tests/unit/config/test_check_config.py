"""Tests of ``envmon check-config`` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envmon.cli import app

from .test_example_site import EXAMPLE
from .test_loader import CROSS_FIELD
from .test_yamlsource import BILLION_LAUGHS

LIMIT_KEYS = {
    "alert_high",
    "action_high",
    "alert_low",
    "action_low",
    "delay_s",
    "consecutive",
    "deadband",
    "rate_of_change_per_min",
    "stale_after_s",
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


class TestCheckConfigCommand:
    """``envmon check-config FILE [--json]`` validates and shows resolved limits."""

    def test_valid_file_prints_table(self, runner):
        """A valid file exits 0 with a table of every channel."""
        result = runner.invoke(app, ["check-config", str(EXAMPLE)])
        assert result.exit_code == 0, result.output
        for text in (
            "ult-freezer-1.temperature",
            "pc-grade-b.particles_0_5um",
            "ln2-dewar-1.level",
            "352,000",
            "in operation",
            "at rest",
            "15m",
        ):
            assert text in result.stdout

    def test_scheduled_channels_show_both_states(self, runner):
        """An occupancy-dependent channel gets one row per state (wide enough: a table)."""
        result = runner.invoke(app, ["check-config", str(EXAMPLE)], env={"COLUMNS": "250"})
        rows = [line for line in result.stdout.splitlines() if "pc-grade-b.particles_0_5um" in line]
        assert len(rows) == 2
        assert "3,520" in rows[0]
        assert "352,000" in rows[1]

    def test_narrow_output_is_stacked_within_80_columns(self, runner: CliRunner) -> None:
        """Piped at 80 columns the channels come one block each, every value whole."""
        result = runner.invoke(app, ["check-config", str(EXAMPLE)], env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80
        stripped = [line.rstrip() for line in lines]
        assert "Sensor id:   pc-grade-b.particles_0_5um" in stripped
        assert "Action high: 352,000" in stripped
        assert "Unit:        particles/m³" in stripped

    def test_json_output(self, runner):
        """``--json`` prints one object per channel with exactly the documented limit keys."""
        result = runner.invoke(app, ["check-config", str(EXAMPLE), "--json"])
        assert result.exit_code == 0, result.output
        records = json.loads(result.stdout)
        assert len(records) == 26
        for record in records:
            assert {"sensor_id", "area", "parameter", "unit", "limits"} <= set(record)
            assert set(record["limits"]) == LIMIT_KEYS
        by_id = {record["sensor_id"]: record for record in records}
        fridge = by_id["fridge-1.temperature"]
        assert fridge["area"] == "cold-store"
        assert fridge["parameter"] == "temperature"
        assert fridge["unit"] == "degC"
        assert fridge["limits"] == {
            "alert_high": 7.0,
            "action_high": 8.0,
            "alert_low": 3.0,
            "action_low": 2.0,
            "delay_s": 900.0,
            "consecutive": None,
            "deadband": 0.3,
            "rate_of_change_per_min": None,
            "stale_after_s": 600.0,
        }

    def test_json_occupancy_dependent_limits(self, runner):
        """Scheduled rooms add limits per occupancy state with the same keys."""
        result = runner.invoke(app, ["check-config", str(EXAMPLE), "--json"])
        record = {r["sensor_id"]: r for r in json.loads(result.stdout)}[
            "pc-grade-b.particles_0_5um"
        ]
        assert record["occupancy"] == "schedule"
        by_state = record["limits_by_occupancy"]
        assert set(by_state) == {"at_rest", "in_operation"}
        assert set(by_state["in_operation"]) == LIMIT_KEYS
        assert by_state["in_operation"]["action_high"] == 352_000
        assert by_state["at_rest"]["action_high"] == 3_520

    def test_invalid_file(self, runner, tmp_path: Path):
        """An invalid file exits 2 and prints every issue as ``file:line:col: path: message``."""
        path = tmp_path / "site.yaml"
        path.write_text(CROSS_FIELD.replace("kind: incubator", "kind: incubatr"), encoding="utf-8")
        result = runner.invoke(app, ["check-config", str(path)])
        assert result.exit_code == 2
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert lines[0] == f"{path}: 2 errors in the configuration"
        assert lines[1].startswith(f"{path}:11:9: areas[1].instruments[0].kind: must be")
        assert lines[2].startswith(
            f"{path}:21:15: areas[1].instruments[0].channels[2].limits.action_high:"
            " must be above alert_high"
        )

    def test_invalid_file_json(self, runner, tmp_path: Path):
        """With ``--json`` an invalid file still reports on stderr and exits 2."""
        path = tmp_path / "site.yaml"
        path.write_text(CROSS_FIELD, encoding="utf-8")
        result = runner.invoke(app, ["check-config", str(path), "--json"])
        assert result.exit_code == 2
        assert result.stdout == ""
        assert "limits.action_high" in result.stderr

    def test_missing_file(self, runner, tmp_path: Path):
        """A missing file exits 2 with a message naming it."""
        path = tmp_path / "nope.yaml"
        result = runner.invoke(app, ["check-config", str(path)])
        assert result.exit_code == 2
        assert f"{path}: cannot read the file" in result.stderr


class TestHostileFiles:
    """Files built to hurt get a listed problem and exit 2, never a traceback (issue 14)."""

    def check(self, runner: CliRunner, tmp_path: Path, text: str) -> list[str]:
        path = tmp_path / "site.yaml"
        path.write_text(text, encoding="utf-8")
        result = runner.invoke(app, ["check-config", str(path)])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
        lines = result.stderr.splitlines()
        assert lines[0].startswith(f"{path}: ")
        return lines[1:]

    def test_alias_bomb_inside_the_example_site(self, runner, tmp_path):
        """A billion-laughs bomb in a real site file is refused, naming its line."""
        text = (
            EXAMPLE.read_text(encoding="utf-8")
            + "bomb:\n"
            + "".join(f"  {line}\n" for line in BILLION_LAUGHS.splitlines())
        )
        start = EXAMPLE.read_text(encoding="utf-8").count("\n") + 1
        (issue,) = self.check(runner, tmp_path, text)
        where = f"{tmp_path / 'site.yaml'}:{start + 6}"
        assert issue.startswith(f"{where}: bomb.f[0]: aliases and merge keys expand")

    def test_integer_over_4300_digits(self, runner, tmp_path):
        """Python's 4,300-digit limit on int() is a listed problem, not a ValueError."""
        text = EXAMPLE.read_text(encoding="utf-8").replace(
            "bad_after: 3", "bad_after: " + "9" * 5_000, 1
        )
        (issue,) = self.check(runner, tmp_path, text)
        assert ".bad_after: integer 999999999999999999999999… (5,000 characters) is out" in issue

    def test_infinite_limit(self, runner, tmp_path):
        """A limit of 1e400 is refused as out of range; .inf as not finite."""
        site = EXAMPLE.read_text(encoding="utf-8")
        assert "action_high: 25 " in site
        (issue,) = self.check(
            runner, tmp_path, site.replace("action_high: 25 ", "action_high: 1e400")
        )
        assert issue.endswith(".action_high: number 1e400 is out of range (at most about 1.8e308)")
        (issue,) = self.check(
            runner, tmp_path, site.replace("action_high: 25 ", "action_high: .inf")
        )
        assert issue.endswith(".action_high: must be a finite number (got inf)")


class TestOneErrorFormat:
    """Every command prints configuration errors alike; a shared anchor's problem once."""

    def _typo(self, tmp_path: Path) -> Path:
        site = EXAMPLE.read_text(encoding="utf-8")
        anchored = "              deadband: 0.3          # probe accuracy ±0.2 °C"
        assert site.count(anchored) == 1  # fridge-1's, which fridge-2 merges in (<<: *fridge)
        path = tmp_path / "site.yaml"
        path.write_text(site.replace(anchored, anchored.replace("deadband", "deadbnd")), "utf-8")
        return path

    def test_an_anchored_typo_is_reported_once_naming_both_uses(
        self, runner: CliRunner, tmp_path: Path
    ) -> None:
        path = self._typo(tmp_path)
        result = runner.invoke(app, ["check-config", str(path)])
        assert result.exit_code == 2
        head, *issues = result.stderr.splitlines()
        assert head == f"{path}: 1 error in the configuration"
        (issue,) = issues
        line = (
            path.read_text(encoding="utf-8")
            .splitlines()
            .index("              deadbnd: 0.3          # probe accuracy ±0.2 °C")
        )
        assert issue.startswith(
            f"{path}:{line + 1}:15: areas[4].instruments[3].channels[0].limits.deadbnd:"
            " unknown key 'deadbnd'; did you mean 'deadband'?"
        )
        assert "also at areas[4].instruments[4].channels[0].limits.deadbnd" in issue

    @pytest.mark.parametrize(
        "command",
        [
            ["check-config", "{site}"],
            ["replay", "-c", "{site}", "-i", "{readings}"],
            ["demo", "-c", "{site}", "--summary", "{summary}", "--no-web"],
            ["alerts", "check", "{site}"],
            ["dashboards", "generate", "--site", "{site}", "--out", "{out}"],
            ["collect", "--site", "{site}"],
            ["stream", "worker", "--site", "{site}"],
            ["alerts", "run", "--site", "{site}"],
        ],
        ids=lambda command: " ".join(command[:2]),
    )
    def test_every_command_prints_the_same_report(
        self, runner: CliRunner, tmp_path: Path, command: list[str]
    ) -> None:
        path = self._typo(tmp_path)
        readings = tmp_path / "readings.csv"
        readings.write_text("sensor_id,at,value\n", encoding="utf-8")
        args = [
            part.format(
                site=path, readings=readings, summary=tmp_path / "s.json", out=tmp_path / "out"
            )
            for part in command
        ]
        expected = runner.invoke(app, ["check-config", str(path)]).stderr
        result = runner.invoke(app, args, env={"ENVMON_SETTINGS_FILE": None, "ENVMON_BUS": "kafka"})
        assert result.exit_code == 2, result.output
        assert result.stderr == expected
