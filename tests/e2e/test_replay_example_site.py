"""End to end: ``envmon replay`` of the example site's scripted demo day."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envmon.cli import app
from envmon.config import load_site
from envmon.testing import EXAMPLE_SCENARIO_DURATION, example_scenario

SITE = Path(__file__).parents[2] / "deploy" / "examples" / "site.yaml"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], str]:
    """Generate the demo day, replay it, and return (events, summary text)."""
    tmp = tmp_path_factory.mktemp("replay")
    data = tmp / "readings.csv"
    events = tmp / "events.jsonl"
    example_scenario(load_site(SITE).sensors()).write_csv(data, EXAMPLE_SCENARIO_DURATION)
    result = CliRunner().invoke(
        app, ["replay", "--config", str(SITE), "--input", str(data), "--output", str(events)]
    )
    assert result.exit_code == 0, result.output
    lines = events.read_text().splitlines()
    return [json.loads(line) for line in lines], result.output


def brief(record: dict) -> tuple:
    return (
        record["sensor_id"],
        record["direction"],
        record["level"],
        record["start"],
        record["end"],
        record["peak"],
        record["peak_ts"],
    )


class TestExampleSiteReplay:
    def test_expected_excursions(self, replayed):
        """The door opening, the CO2 drop and the particle burst give exactly these records."""
        events, _ = replayed
        excursions = [brief(e) for e in events if e["kind"] == "excursion"]
        assert excursions == [
            (
                "ult-freezer-1.temperature",
                "high",
                "action",
                "2026-01-05T07:07:00Z",
                "2026-01-05T07:41:00Z",
                -50.0,
                "2026-01-05T07:20:00Z",
            ),
            (
                "incubator-2.co2",
                "low",
                "action",
                "2026-01-05T09:08:00Z",
                "2026-01-05T09:56:00Z",
                3.0,
                "2026-01-05T09:30:00Z",
            ),
            (
                "pc-grade-b.particles_0_5um",
                "high",
                "action",
                "2026-01-05T10:00:00Z",
                "2026-01-05T10:05:00Z",
                450000.0,
                "2026-01-05T10:00:00Z",
            ),
            (
                "pc-grade-b.particles_5_0um",
                "high",
                "action",
                "2026-01-05T10:00:00Z",
                "2026-01-05T10:05:00Z",
                4000.0,
                "2026-01-05T10:00:00Z",
            ),
        ]

    def test_freezer_alarm_timeline(self, replayed):
        """The freezer is raised after its 10-minute delay and escalates after another."""
        events, _ = replayed
        freezer = [
            (e["event"], e["ts"], e["level"])
            for e in events
            if e["kind"] == "alarm" and e["sensor_id"] == "ult-freezer-1.temperature"
        ]
        assert freezer[:4] == [
            ("rate_of_change", "2026-01-05T07:01:00Z", None),
            ("raised", "2026-01-05T07:17:00Z", "alert"),
            ("escalated", "2026-01-05T07:24:00Z", "action"),
            ("cleared", "2026-01-05T07:41:00Z", "action"),
        ]

    def test_particle_limits_follow_occupancy(self, replayed):
        """The grade B burst is judged against the in-operation limit on a weekday morning."""
        events, _ = replayed
        rec = next(
            e
            for e in events
            if e["kind"] == "excursion" and e["sensor_id"] == "pc-grade-b.particles_0_5um"
        )
        assert rec["limits"]["action_high"] == 352000

    def test_communication_loss_gives_a_data_gap(self, replayed):
        """Twenty silent minutes of fridge 2 give a stale alarm and one data gap."""
        events, _ = replayed
        gaps = [e for e in events if e["kind"] == "data_gap"]
        assert [(g["sensor_id"], g["start"], g["end"], g["duration_s"]) for g in gaps] == [
            ("fridge-2.temperature", "2026-01-05T10:59:00Z", "2026-01-05T11:20:00Z", 1260.0)
        ]
        stale = [e for e in events if e["kind"] == "alarm" and e["event"] == "stale"]
        assert [e["ts"] for e in stale] == ["2026-01-05T11:09:00Z"]

    def test_metrics_of_the_co2_drop(self, replayed):
        """The CO2 record carries duration, samples and the time below the alert limit."""
        events, _ = replayed
        rec = next(e for e in events if e["kind"] == "excursion" and "co2" in e["sensor_id"])
        assert rec["duration_s"] == 2880.0
        assert rec["samples"] == 48
        assert rec["status"] == "closed"
        # below 4.5 % from t=450 s to t=3150 s of the ramp: 45 minutes
        assert rec["time_beyond_limit_s"] == pytest.approx(2700, abs=60)

    def test_summary_table(self, replayed):
        """The summary counts excursions per area and level and the gaps."""
        _, output = replayed
        assert "9,340 readings" in output
        assert "grade-b-room" in output
        assert "rejected 0" in output
