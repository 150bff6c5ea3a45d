"""The replay's JSON summary gives per-group counts in one shape: lists of objects."""

from __future__ import annotations

from stream.replay import ReplaySummary


def test_excursions_and_data_gaps_are_lists_of_counted_groups() -> None:
    summary = ReplaySummary()
    summary.excursions[("grade-c-prep", "alert")] += 2
    summary.gaps["cold-store"] += 1
    summary.gaps["grade-c-prep"] += 3
    data = summary.as_dict()
    assert data["excursions"] == [{"area": "grade-c-prep", "level": "alert", "count": 2}]
    assert data["data_gaps"] == [
        {"area": "cold-store", "count": 1},
        {"area": "grade-c-prep", "count": 3},
    ]
