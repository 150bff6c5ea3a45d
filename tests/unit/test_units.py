"""Unit conversions and cumulative counters (envmon.units)."""

from __future__ import annotations

import pytest

from envmon.units import FT3_IN_M3, CounterDelta, UnitError, conversion


class TestConversion:
    """Linear conversions between units of one quantity."""

    @pytest.mark.parametrize(
        ("source", "target", "value", "expected"),
        [
            ("degF", "degC", 98.6, 37.0),
            ("degF", "degC", -40.0, -40.0),
            ("°F", "degC", 32.0, 0.0),
            ("K", "degC", 273.15, 0.0),
            ("degC", "degF", 100.0, 212.0),
            ("particles/ft3", "particles/m3", 100.0, 100.0 / FT3_IN_M3),
            ("particles/L", "particles/m3", 3.52, 3520.0),
            ("ppm", "%", 50_000.0, 5.0),
            ("%RH", "%RH", 45.0, 45.0),
        ],
    )
    def test_values(self, source, target, value, expected):
        """Each conversion gives the physically right value."""
        assert conversion(source, target)(value) == pytest.approx(expected)

    def test_identity(self):
        """A unit converts to itself unchanged, known or not."""
        assert conversion("widgets", "widgets").is_identity

    def test_counts_per_sample_volume(self):
        """Counts in one sample divided by the sample volume give particles per m³."""
        convert = conversion("counts", "particles/m3", sample_volume_m3=0.0283)
        assert convert(100.0) == pytest.approx(100 / 0.0283)

    def test_one_cubic_foot(self):
        """A 28.3 L/min counter over one minute samples one cubic foot (0.0283168 m³)."""
        assert pytest.approx(0.028316846592) == FT3_IN_M3

    def test_counts_need_a_sample_volume(self):
        """Counts without a sample volume cannot become a concentration."""
        with pytest.raises(UnitError, match="sample volume"):
            conversion("counts", "particles/m3")

    def test_a_volume_too_small_to_convert_is_refused(self):
        """A subnormal volume would make every count inf (and 0 counts NaN) per m³."""
        with pytest.raises(UnitError, match="too small"):
            conversion("counts", "particles/m3", sample_volume_m3=1e-320)

    @pytest.mark.parametrize(
        ("source", "target"), [("degF", "%"), ("ppm", "degC"), ("widgets", "degC")]
    )
    def test_incompatible_units(self, source, target):
        """Units of different quantities (or unknown units) do not convert."""
        with pytest.raises(UnitError, match="cannot convert"):
            conversion(source, target)


class TestCounterDelta:
    """Cumulative counters turned into per-interval counts."""

    def test_first_value_is_the_baseline(self):
        """The first value of a counter yields nothing."""
        assert CounterDelta().step("s", 100.0, 1) == (None, False)

    def test_differences(self):
        """Later values yield the difference to the previous one."""
        counter = CounterDelta()
        counter.step("s", 100.0, 1)
        assert counter.step("s", 130.0, 2) == (30.0, False)
        assert counter.step("s", 130.0, 3) == (0.0, False)

    def test_reset(self):
        """A value below the previous one is a reset: the new value is the interval's count."""
        counter = CounterDelta()
        counter.step("s", 1_000.0, 1)
        assert counter.step("s", 12.0, 2) == (12.0, True)
        assert counter.step("s", 20.0, 3) == (8.0, False)

    def test_duplicates_and_late_values_are_ignored(self):
        """A sample not newer than the last one yields nothing and changes nothing."""
        counter = CounterDelta()
        counter.step("s", 10.0, 5)
        assert counter.step("s", 10.0, 5) == (None, False)
        assert counter.step("s", 3.0, 4) == (None, False)
        assert counter.step("s", 15.0, 6) == (5.0, False)

    def test_counters_are_per_key(self):
        """Each key has its own baseline."""
        counter = CounterDelta()
        counter.step("a", 10.0, 1)
        assert counter.step("b", 50.0, 2) == (None, False)
        assert len(counter) == 2
