"""Values, times and spans as people read them (``envmon.display``)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from envmon.display import format_time, format_value, relative
from envmon.testing import DEFAULT_T0

NOW = DEFAULT_T0


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (-80.345, "degC", "−80.3 °C"),
        (4.236, "degC", "4.24 °C"),
        (3520.4, "particles/m3", "3,520 particles/m³"),
        (35.3, "particles/m3", "35 particles/m³"),
        (5.0, "%", "5.00 %"),
        (0.0, "", "0.00"),
    ],
)
def test_values_are_rounded_with_their_unit(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_a_time_is_in_the_site_zone_with_the_zone_named() -> None:
    assert format_time(NOW, ZoneInfo("Europe/Amsterdam")) == "2026-01-05 09:00:00 CET"


@pytest.mark.parametrize(
    ("offset", "plain", "with_seconds"),
    [
        (timedelta(0), "just now", "just now"),
        (timedelta(seconds=-0.4), "just now", "just now"),
        (timedelta(seconds=-42.7), "just now", "42 s ago"),
        (timedelta(seconds=-59.9), "just now", "59 s ago"),
        (timedelta(seconds=-61), "1 min ago", "1 min ago"),
        (timedelta(minutes=-90), "1 h 30 min ago", "1 h 30 min ago"),
        (timedelta(days=-3), "3 days ago", "3 days ago"),
        (timedelta(seconds=5), "in less than a minute", "in 5 s"),
        (timedelta(minutes=8), "in 8 min", "in 8 min"),
    ],
)
def test_relative_times(offset: timedelta, plain: str, with_seconds: str) -> None:
    """Within a minute a live page shows seconds; otherwise both read the same."""
    assert relative(NOW + offset, NOW) == plain
    assert relative(NOW + offset, NOW, seconds=True) == with_seconds
