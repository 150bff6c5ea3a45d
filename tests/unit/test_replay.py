"""Tests of ``envmon replay``: input formats, bad lines, strict mode, output and summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envmon.cli import app

SITE = """\
site:
  name: Test site
areas:
  - id: cold-store
    name: Cold store
    instruments:
      - id: fridge-1
        name: Fridge 1
        kind: fridge
        channels:
          - parameter: temperature
            unit: degC
            limits:
              alert_high: 7
              action_high: 8
              alert_low: 3
              action_low: 2
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    return path


def replay(site: Path, tmp_path: Path, text: str, suffix: str = ".csv", *extra: str):
    data = tmp_path / f"in{suffix}"
    data.write_text(text)
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        app, ["replay", "-c", str(site), "-i", str(data), "-o", str(out), *extra]
    )
    events = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return result, events


class TestCsvInput:
    def test_excursion_written_once_when_closed(self, site, tmp_path):
        """A closed excursion appears once, with its final fields."""
        result, events = replay(
            site,
            tmp_path,
            "sensor_id,ts,value\n"
            "fridge-1.temperature,2026-01-05T08:00:00Z,5\n"
            "fridge-1.temperature,2026-01-05T08:01:00Z,7.5\n"
            "fridge-1.temperature,2026-01-05T08:02:00Z,5\n",
        )
        assert result.exit_code == 0, result.output
        kinds = [(e["kind"], e.get("event"), e.get("status")) for e in events]
        assert kinds == [
            ("alarm", "raised", None),
            ("alarm", "cleared", None),
            ("excursion", None, "closed"),
        ]

    def test_offsets_are_converted_to_utc(self, site, tmp_path):
        """Timestamps with any offset are evaluated and written in UTC."""
        _, events = replay(
            site,
            tmp_path,
            "sensor_id,ts,value\nfridge-1.temperature,2026-01-05T09:01:00+01:00,9\n",
        )
        assert events[0]["ts"] == "2026-01-05T08:01:00Z"

    def test_open_excursion_written_at_end_with_null_end(self, site, tmp_path):
        """An excursion still open at the end of the input is written with end null."""
        _, events = replay(
            site, tmp_path, "sensor_id,ts,value\nfridge-1.temperature,2026-01-05T08:00:00Z,9\n"
        )
        record = events[-1]
        assert record["kind"] == "excursion"
        assert record["end"] is None
        assert record["status"] == "open"

    def test_quality_column(self, site, tmp_path):
        """A bad-quality line with an empty value is accepted and not evaluated."""
        result, events = replay(
            site,
            tmp_path,
            "sensor_id,ts,value,quality\nfridge-1.temperature,2026-01-05T08:00:00Z,,bad\n"
            "fridge-1.temperature,2026-01-05T08:01:00Z,99,bad\n",
            ".csv",
            "--json",
        )
        assert result.exit_code == 0
        assert events == []
        assert json.loads(result.output)["rejected"] == 0

    def test_missing_header_column_is_refused(self, site, tmp_path):
        """A CSV without the required columns fails with the line named."""
        result, _ = replay(site, tmp_path, "sensor,ts\nx,y\n")
        assert result.exit_code == 2
        assert "in.csv:1" in result.output
        assert "value" in result.output


class TestBadLines:
    BAD = (
        "sensor_id,ts,value\n"
        "fridge-1.temperature,2026-01-05T08:00:00Z,5\n"
        "fridge-1.temperature,2026-01-05T08:01:00Z,warm\n"
        "no-such.sensor,2026-01-05T08:02:00Z,5\n"
        "fridge-1.temperature,2026-01-05 08:03:00,5\n"
        "fridge-1.temperature,yesterday,5\n"
        "fridge-1.temperature,2026-01-05T08:05:00Z\n"
        "fridge-1.temperature,2026-01-05T08:06:00Z,nan\n"
        "fridge-1.temperature,2026-01-05T08:07:00Z,6\n"
    )

    def test_each_bad_line_is_reported_with_its_number_and_skipped(self, site, tmp_path):
        """Unparseable, unknown-sensor and non-numeric lines are named and skipped."""
        result, _ = replay(site, tmp_path, self.BAD)
        assert result.exit_code == 0
        out = result.output
        assert "in.csv:3: skipped: value 'warm' is not a number" in out
        assert "in.csv:4: skipped: unknown sensor 'no-such.sensor'" in out
        assert "in.csv:5: skipped: timestamp '2026-01-05 08:03:00' has no UTC offset" in out
        assert "in.csv:6: skipped: timestamp 'yesterday' is not ISO 8601" in out
        assert "in.csv:7: skipped: expected at least 3 fields, got 2" in out
        assert "in.csv:8: skipped: value 'nan' is not finite" in out
        assert "2 readings" in out
        assert "rejected 6" in out

    def test_strict_stops_at_first_bad_line(self, site, tmp_path):
        """--strict exits with code 2 at the first bad line, naming it."""
        result, _ = replay(site, tmp_path, self.BAD, ".csv", "--strict")
        assert result.exit_code == 2
        assert "in.csv:3: value 'warm' is not a number" in result.output

    def test_late_and_duplicate_lines_are_counted(self, site, tmp_path):
        """Late and duplicate samples are counted in the summary, not evaluated."""
        result, events = replay(
            site,
            tmp_path,
            "sensor_id,ts,value\n"
            "fridge-1.temperature,2026-01-05T08:05:00Z,5\n"
            "fridge-1.temperature,2026-01-05T08:05:00Z,9\n"
            "fridge-1.temperature,2026-01-05T08:01:00Z,9\n",
            ".csv",
            "--json",
        )
        summary = json.loads(result.output)
        assert (summary["late"], summary["duplicates"], summary["readings"]) == (1, 1, 3)
        assert events == []


class TestExtremeTimestamps:
    """Times an offset moves out of the datetime range are rejected lines (issue 14)."""

    EXTREME = ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59")

    def test_csv(self, site, tmp_path):
        """Each such line is skipped with its reason; the rest of the file replays."""
        text = "sensor_id,ts,value\n" + "".join(
            f"fridge-1.temperature,{ts},9\n" for ts in self.EXTREME
        )
        text += "fridge-1.temperature,2026-01-05T08:00:00Z,5\n"
        result, _ = replay(site, tmp_path, text, ".csv")
        assert result.exit_code == 0, result.output
        assert result.exception is None
        for line, ts in enumerate(self.EXTREME, start=2):
            assert f"in.csv:{line}: skipped: timestamp '{ts}' is out of range in UTC" in (
                result.output
            )
        assert "1 readings from 4 lines" in result.output

    def test_jsonl(self, site, tmp_path):
        """The same in JSON lines."""
        text = "".join(
            json.dumps({"sensor_id": "fridge-1.temperature", "ts": ts, "value": 9}) + "\n"
            for ts in self.EXTREME
        )
        result, _ = replay(site, tmp_path, text, ".jsonl")
        assert result.exit_code == 0, result.output
        assert result.exception is None
        assert "in.jsonl:1: skipped: timestamp '9999-12-31T23:59:59-23:59' is out of range" in (
            result.output
        )
        assert "in.jsonl:2: skipped: timestamp '0001-01-01T00:00:00+23:59' is out of range" in (
            result.output
        )


class TestJsonLines:
    def test_jsonl_input(self, site, tmp_path):
        """JSON lines with the same keys give the same events."""
        lines = [
            {"sensor_id": "fridge-1.temperature", "ts": "2026-01-05T08:00:00Z", "value": 1.5},
            {"sensor_id": "fridge-1.temperature", "ts": "2026-01-05T08:01:00Z", "value": 5},
        ]
        text = "\n".join(json.dumps(x) for x in lines) + "\n"
        result, events = replay(site, tmp_path, text, ".jsonl")
        assert result.exit_code == 0, result.output
        assert [e["kind"] for e in events] == ["alarm", "alarm", "excursion"]
        assert events[0]["level"] == "action"
        assert events[0]["direction"] == "low"

    def test_proofs_of_life_as_on_the_bus(self, site, tmp_path):
        """A proof of life holds the last value until its time, as the stream worker does.

        Above the action limit at 08:00, back inside at 08:02: alone, the value is taken
        to fall straight from 9 to 5; with a proof at 08:01:30 it held 9 until then, so
        the excursion is beyond the limit longer. Bad proofs are rejected by line.
        """

        def line(**fields):
            return json.dumps({"sensor_id": "fridge-1.temperature", **fields}) + "\n"

        readings = [
            line(ts="2026-01-05T08:00:00Z", value=9),
            line(ts="2026-01-05T08:02:00Z", value=5),
        ]
        proof = line(kind="proof_of_life", ts="2026-01-05T08:01:30Z")
        _, alone = replay(site, tmp_path, "".join(readings), ".jsonl")
        result, held = replay(
            site,
            tmp_path,
            readings[0]
            + proof
            + json.dumps(
                {
                    "kind": "proof_of_life",
                    "sensor_id": "fridge-9.temperature",
                    "ts": "2026-01-05T08:01:40Z",
                }
            )
            + "\n"
            + json.dumps({"kind": "proof_of_life", "sensor_id": "fridge-1.temperature"})
            + "\n"
            + readings[1],
            ".jsonl",
            "--json",
        )
        assert result.exit_code == 0, result.output
        (before,) = [e for e in alone if e["kind"] == "excursion"]
        (after,) = [e for e in held if e["kind"] == "excursion"]
        assert after["time_beyond_limit_s"] > before["time_beyond_limit_s"]
        assert '"proofs_of_life": 1' in result.output
        assert "in.jsonl:3: skipped: unknown sensor 'fridge-9.temperature'" in result.output
        assert "in.jsonl:4: skipped: missing key(s): ts" in result.output

    def test_bad_json_lines(self, site, tmp_path):
        """Broken JSON, missing keys and wrong types are rejected by line number."""
        text = (
            "{not json\n"
            '{"sensor_id": "fridge-1.temperature", "ts": "2026-01-05T08:00:00Z"}\n'
            '{"sensor_id": "fridge-1.temperature", "ts": 5, "value": 1}\n'
            '{"sensor_id": "fridge-1.temperature", "ts": "2026-01-05T08:00:00Z", "value": true}\n'
            "[1, 2]\n"
        )
        result, _ = replay(site, tmp_path, text, ".jsonl")
        out = result.output
        assert "in.jsonl:1: skipped: not JSON" in out
        assert "in.jsonl:2: skipped: missing key(s): value" in out
        assert "in.jsonl:3: skipped: ts 5 is not an ISO 8601 string" in out
        assert "in.jsonl:4: skipped: value True is not a number" in out
        assert "in.jsonl:5: skipped: not a JSON object" in out


class TestCommandErrors:
    def test_invalid_config_refused_before_reading(self, tmp_path):
        """An invalid site configuration is refused with exit code 2."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("site: {name: x}\nareas: 5\n")
        data = tmp_path / "in.csv"
        data.write_text("sensor_id,ts,value\n")
        result = CliRunner().invoke(app, ["replay", "-c", str(bad), "-i", str(data)])
        assert result.exit_code == 2
        assert "areas" in result.output

    def test_missing_input(self, site, tmp_path):
        """A missing input file is a clear error, exit code 2."""
        result = CliRunner().invoke(app, ["replay", "-c", str(site), "-i", str(tmp_path / "x")])
        assert result.exit_code == 2
        assert "no such file" in result.output
