"""Values, times and spans as people read them (``envmon.display``)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from envmon.display import Display, format_seconds, format_time, format_value, relative
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


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (0.4, "< 1 s"),
        (44.2, "44 s"),
        (164.2598, "2 min 44 s"),
        (120, "2 min"),
        (5400, "1 h 30 min"),
        (2 * 86400 + 3 * 3600 + 20, "2 d 3 h"),
    ],
)
def test_measured_durations_read_in_words(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_a_site_display_rounds_each_sensor_to_its_digits() -> None:
    """A channel's ``decimals`` wins over its parameter's default, which wins over the size."""
    shown = Display(ZoneInfo("Europe/Amsterdam"), {"freezer.temperature": 2})
    assert shown.value(-57.39237, "degC", sensor="freezer.temperature") == "−57.39 °C"
    assert shown.value(-57.39237, "degC", sensor="other", parameter="temperature") == "−57.4 °C"
    assert shown.value(1059222.61, "particles/m3", parameter="particles_0_5um") == (
        "1,059,223 particles/m³"
    )
    assert shown.value(-0.04, "degC", parameter="temperature") == "0.0 °C"
    assert shown.value(None, "degC") == "—"
    assert shown.time("2026-12-04T14:21:38.515858Z") == "2026-12-04 15:21:38 CET"
    assert shown.utc("2026-12-04 14:32:00.467461+00:00") == "2026-12-04 14:32:00 UTC"
    assert shown.label("under_review") == "Under review"
    assert shown.label("data_gap") == "Data gap"
    assert shown.label("peak_ts") == "Peak time"  # the core's fields in the audit trail
    assert shown.label("time_beyond_limit_s") == "Time beyond limit"


def test_the_example_site_sets_digits_per_parameter() -> None:
    from envmon.config import load_site

    shown = load_site("deploy/examples/site.yaml").display()
    assert shown.decimals["ult-freezer-1.temperature"] == 1
    assert shown.decimals["pc-grade-b.particles_0_5um"] == 0
    assert shown.zone.key == "Europe/Amsterdam"
