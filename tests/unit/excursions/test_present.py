"""The QA pages' wording: the rule in force, audit values, list rows (excursions.web.present)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from envmon.display import Display
from envmon.testing import make_spec
from envmon.timeutil import parse_ts
from excursions.queries import RecordSummary
from excursions.web.present import Catalogue, audit_value, list_row, rule_sentences

SHOWN = Display(ZoneInfo("Europe/Berlin"))
RECORD: dict[str, Any] = {
    "kind": "excursion",
    "level": "alert",
    "unit": "degC",
    "sensor_id": "fridge-1.temperature",
    "parameter": "temperature",
    "direction": "high",
    "peak": 11.25,
    "limits": {"alert_high": 8.0, "action_high": 10.0},
}


def test_the_rule_in_force_in_words() -> None:
    delayed = make_spec(alert_high=8, action_high=10, delay_s=600, deadband=0.5)
    text = rule_sentences(RECORD, delayed, SHOWN)
    assert text[0] == (
        "Alert level is reached after 10 min beyond the alert limit (delay); the same rule"
        " applies to the action level."
    )
    assert "back inside its limit by 0.5 °C (deadband)" in text[1]
    assert "beyond the action limit (10.0 °C)" in text[2]  # why the peak did not escalate
    assert "stayed at alert level" in text[2]
    counted = rule_sentences(RECORD, make_spec(consecutive=3, delay_s=120), SHOWN)
    assert counted[0].startswith(
        "Alert level is reached after 2 min beyond the alert limit (delay) and 3 consecutive"
        " readings beyond it"
    )
    plain = rule_sentences({**RECORD, "level": "action"}, make_spec(), SHOWN)
    assert plain[0].startswith("A level is reached with the first reading beyond its limit")
    assert not any("stayed" in sentence for sentence in plain)


def test_a_rule_stored_with_the_record_wins_and_an_unknown_one_is_said() -> None:
    stored = {**RECORD, "rules": {"delay_s": 300, "consecutive": None, "deadband": 0}}
    text = rule_sentences(stored, make_spec(delay_s=600), SHOWN)
    assert "after 5 min beyond the alert limit" in text[0]
    assert text[-1] == "As stored with the record."
    assert "without the site configuration" in rule_sentences(RECORD, None, SHOWN)[0]
    gap = rule_sentences({"kind": "data_gap"}, make_spec(stale_after_s=300), SHOWN)
    assert (
        gap[0] == "A data gap is recorded when no reading arrives for 5 min (stale-data timeout)."
    )


def test_audit_values_read_as_the_page_shows_them() -> None:
    assert audit_value("peak", "-57.39237443852002", RECORD, SHOWN) == (
        "−57.4 °C",
        "stored: -57.39237443852002",
    )
    assert audit_value("peak_ts", '"2026-01-05T08:01:00Z"', RECORD, SHOWN)[0] == (
        "2026-01-05 09:01:00 CET"
    )
    assert audit_value("time_beyond_limit_s", "164.25981966278954", RECORD, SHOWN)[0] == (
        "2 min 44 s"
    )
    assert audit_value("integral_beyond_limit", "110148167.1125354", RECORD, SHOWN)[0] == (
        "110,148,167.1 °C·s"
    )
    assert audit_value("qa_state", "under_review", RECORD, SHOWN) == ("Under review", "")
    assert audit_value("root_cause_category", "human_error", RECORD, SHOWN)[0] == "Human error"
    assert audit_value("comment", '"quoted" text', RECORD, SHOWN) == ('"quoted" text', "")
    assert audit_value("peak", "not json", RECORD, SHOWN) == ("not json", "")


def test_a_list_row_names_the_instrument_of_a_data_gap() -> None:
    names = Catalogue(
        options={},
        instrument_names={"fridge-1": "Fridge 4 °C 1"},
        specs={"fridge-1.temperature": make_spec()},
    )
    gap = RecordSummary(
        id="g",
        kind="data_gap",
        sensor_id="fridge-1.temperature",
        area="",
        instrument="",
        parameter="temperature",
        level=None,
        start=parse_ts("2026-01-05T08:00:00Z"),
        end=None,
        core_status="open",
        qa_state="under_review",
        peak=None,
        unit=None,
    )
    row = list_row(gap, SHOWN, names)
    assert row["instrument"] == "Fridge 4 °C 1"
    assert row["duration"] is None  # shown as "open"
    assert row["peak"] == "—"
    assert row["qa_text"] == "Under review"
    assert row["start_text"] == "2026-01-05 09:00:00 CET"
    assert list_row(gap, SHOWN, Catalogue(options={}))["instrument"] == "fridge-1.temperature"
