"""Tests of duration parsing and of limit/duration formatting."""

from __future__ import annotations

import pytest

from envmon.config.durations import parse_duration
from envmon.config.formatting import format_duration, format_number


class TestParseDuration:
    """``parse_duration`` reads seconds or compact duration strings."""

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            (30, 30.0),
            (1.5, 1.5),
            (0, 0.0),
            ("30s", 30.0),
            ("5m", 300.0),
            ("1h", 3600.0),
            ("1h30m", 5400.0),
            ("1d2h3m4s", 93784.0),
            ("1.5h", 5400.0),
            ("2m 30s", 150.0),
        ],
    )
    def test_valid(self, text, seconds):
        """Numbers are seconds; strings combine d, h, m and s in that order."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize(
        "value",
        ["", "5 minutes", "30", "m5", "5x", "30s5m", "-5s", True, None, [5], -1, float("nan")],
    )
    def test_invalid(self, value):
        """Anything else, negative or not finite, is refused with a helpful message."""
        with pytest.raises(ValueError, match="must be"):
            parse_duration(value)


class TestFormatting:
    """``format_duration`` and ``format_number`` keep tables readable."""

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (0, "0s"),
            (30, "30s"),
            (90, "1m30s"),
            (300, "5m"),
            (5400, "1h30m"),
            (86400, "1d"),
            (1.5, "1.5s"),
        ],
    )
    def test_format_duration(self, seconds, text):
        """Durations are written with the largest units first."""
        assert format_duration(seconds) == text

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (3520.0, "3,520"),
            (3_520_000.0, "3,520,000"),
            (37.5, "37.5"),
            (-80.0, "-80"),
            (0.2, "0.2"),
        ],
    )
    def test_format_number(self, value, text):
        """Whole numbers get thousands separators; fractions stay compact."""
        assert format_number(value) == text
