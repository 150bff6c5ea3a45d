"""The time-series schema: readings as line protocol (stream.timeseries.schema)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envmon.models import Level, Quality, Reading
from envmon.testing import DEFAULT_T0, make_spec
from envmon.timeutil import parse_ts, to_us
from stream.timeseries import schema as tsschema
from stream.timeseries.schema import Point, escape_tag, quote_string, to_line, to_point

SPEC = make_spec("fridge-1.temperature", area="cold-store", parameter="temperature")


def reading(value: float | None = 4.25, **kwargs) -> Reading:
    data = {"sensor_id": "fridge-1.temperature", "value": value, "unit": "degC", "ts": DEFAULT_T0}
    data.update(kwargs)
    return Reading(**data)


def point(**kwargs) -> Point:
    data = {
        "site": "plant-a",
        "area": "cold-store",
        "instrument": "fridge-1",
        "sensor": "fridge-1.temperature",
        "parameter": "temperature",
        "unit": "degC",
        "value": 4.25,
        "quality": Quality.GOOD,
        "state": 0,
        "ts_us": 1_767_600_000_000_000,
    }
    data.update(kwargs)
    return Point(**data)


class TestToPoint:
    """Placing a reading in the schema."""

    def test_from_spec(self):
        """Area, instrument and parameter come from the spec, the site from the argument."""
        p = to_point(reading(), SPEC, site="plant-a")
        assert (p.site, p.area, p.instrument, p.sensor, p.parameter, p.unit) == (
            "plant-a",
            "cold-store",
            "fridge-1",
            "fridge-1.temperature",
            "temperature",
            "degC",
        )
        assert (p.value, p.quality, p.state) == (4.25, Quality.GOOD, tsschema.STATE_NORMAL)

    def test_from_plain_strings(self):
        """Without a spec the placement is given as strings."""
        p = to_point(reading(), site="s", area="a", instrument="i", parameter="p")
        assert (p.site, p.area, p.instrument, p.parameter) == ("s", "a", "i", "p")

    def test_strings_override_spec(self):
        """A string given explicitly wins over the spec's value."""
        assert to_point(reading(), SPEC, area="other").area == "other"

    def test_site_from_spec(self):
        """The spec's site is used when no site is given."""
        spec = dataclasses.replace(SPEC, site="from-spec")
        assert to_point(reading(), spec).site == "from-spec"

    def test_unit_falls_back_to_spec(self):
        """A reading without a unit takes the spec's."""
        assert to_point(reading(unit=""), SPEC).unit == "degC"

    @pytest.mark.parametrize(("level", "code"), [(None, 0), (Level.ALERT, 1), (Level.ACTION, 2)])
    def test_state_codes(self, level, code):
        """Normal, alert and action are 0, 1 and 2."""
        assert to_point(reading(), SPEC, state=level).state == code

    def test_timestamp_in_microseconds(self):
        """The timestamp is the source time in integer µs since the epoch, UTC."""
        ts = parse_ts("2026-01-05T09:00:00.123456+01:00")
        assert to_point(reading(ts=ts), SPEC).ts_us == 1_767_600_000_123_456


class TestToLine:
    """Line protocol output."""

    def test_full_line(self):
        """A good reading: sorted tags, three fields, µs timestamp."""
        assert to_line(point()) == (
            "reading,area=cold-store,instrument=fridge-1,parameter=temperature,"
            "sensor=fridge-1.temperature,site=plant-a,unit=degC"
            ' value=4.25,quality="good",state=0i 1767600000000000'
        )

    def test_none_value_omits_field(self):
        """A reading without a value keeps quality and state but has no value field."""
        line = to_line(to_point(reading(None, quality=Quality.BAD), SPEC, state=Level.ACTION))
        assert ' quality="bad",state=2i ' in line
        assert "value=" not in line

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_non_finite_value_omitted(self, value):
        """NaN and infinities, which InfluxDB refuses, are left out like a missing value."""
        assert "value=" not in to_line(point(value=value))

    @pytest.mark.parametrize(
        ("value", "text"),
        [(4.0, "4.0"), (-0.5, "-0.5"), (1e20, "1e+20"), (1.2345678901234567, "1.2345678901234567")],
    )
    def test_float_exact(self, value, text):
        """Floats are written in their shortest exact form."""
        assert f" value={text}," in to_line(point(value=value))

    def test_integer_value_written_as_float(self):
        """An integral value is still a float field (never an ``i`` integer)."""
        assert " value=3.0," in to_line(point(value=3))

    def test_empty_tags_left_out(self):
        """Empty tag values are not written (line protocol forbids them)."""
        line = to_line(point(unit="", site=""))
        assert "unit=" not in line
        assert "site=" not in line
        assert line.startswith("reading,area=cold-store,instrument=fridge-1,")

    def test_tag_escaping(self):
        """Commas, equals signs and spaces in tags are escaped with a backslash."""
        line = to_line(point(area="Grade B, room 1", instrument="a=b"))
        assert r"area=Grade\ B\,\ room\ 1," in line
        assert r"instrument=a\=b," in line

    def test_string_field_escaping(self):
        """Quotes and backslashes in string fields are escaped; the rest is kept."""
        assert quote_string('say "hi" \\ ok, a=b') == r'"say \"hi\" \\ ok, a=b"'

    def test_measurement_escaping(self):
        """A measurement's commas and spaces are escaped (equals signs are not)."""
        assert to_line(point(), measurement="my table,x=y").startswith(r"my\ table\,x=y,area=")

    @pytest.mark.parametrize("bad", ["line\nbreak", "carriage\rreturn", "ends with\\"])
    def test_unrepresentable_tags_refused(self, bad):
        """A line break or a trailing backslash in a tag cannot be written: ValueError."""
        with pytest.raises(ValueError, match="tag"):
            escape_tag(bad)

    def test_precision_is_microseconds(self):
        """The schema's precision is µs and lines carry 16-digit timestamps for 2026."""
        assert tsschema.PRECISION == "us"
        ts = DEFAULT_T0 + timedelta(microseconds=7)
        assert to_line(to_point(reading(ts=ts), SPEC)).endswith(" 1767600000000007")

    def test_reading_line_shortcut(self):
        """``reading_line`` is ``to_line(to_point(...))``."""
        r = reading()
        assert tsschema.reading_line(r, SPEC, site="x", state=Level.ALERT) == to_line(
            to_point(r, SPEC, site="x", state=Level.ALERT)
        )

    def test_unicode_kept(self):
        """Non-ASCII text passes through unchanged (line protocol is UTF-8)."""
        assert "area=Kühlraum\\ µ," in to_line(point(area="Kühlraum µ"))


_SPECS = {
    SPEC.sensor_id: SPEC,
    "room-1.temperature": make_spec("room-1.temperature", area="room 1,a=b", parameter="t"),
}


@given(
    sensor=st.sampled_from([*_SPECS, "unknown.sensor"]),
    value=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    unit=st.sampled_from(["", "degC", "1/m3", "a b,c=d"]),
    quality=st.sampled_from(list(Quality)),
    level=st.sampled_from([None, Level.ALERT, Level.ACTION]),
    micros=st.integers(min_value=0, max_value=10**12),
    site=st.sampled_from(["", "plant-a", "plant b"]),
)
def test_line_encoder_writes_what_reading_line_writes(
    sensor: str,
    value: float | None,
    unit: str,
    quality: Quality,
    level: Level | None,
    micros: int,
    site: str,
) -> None:
    """The worker's cached encoder gives the schema's exact text, for any reading."""
    # Built without validation: a Reading refuses NaN and ±inf since issue 14, and the
    # encoder still leaves them out should one ever get through.
    r = Reading.model_construct(
        sensor_id=sensor,
        value=value,
        unit=unit,
        quality=quality,
        ts=DEFAULT_T0 + timedelta(microseconds=micros),
    )
    encoder = tsschema.LineEncoder(_SPECS, site=site)
    expected = tsschema.reading_line(r, _SPECS.get(sensor), site=site, state=level)
    assert encoder.line(r, level) == expected
    assert encoder.line(r, level) == expected  # from the cache
    assert encoder.encode(r, to_us(r.ts), tsschema.state_code(level)) == expected
    assert encoder.encode_all([(r, to_us(r.ts), tsschema.state_code(level))]) == [expected]
    other = r.model_copy(update={"unit": unit + "x"})  # the unit is part of the series
    assert encoder.line(other, level) == tsschema.reading_line(
        other, _SPECS.get(sensor), site=site, state=level
    )
    assert encoder.line(r, level) == expected
    prepared = tsschema.LineEncoder(_SPECS, site=site)
    prepared.prepare()  # series prefixes computed from the specs' units ahead of time
    assert prepared.line(r, level) == expected


def test_line_encoder_value_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Value texts are cached up to MAX_VALUES, then the cache starts over; lines stay exact."""
    monkeypatch.setattr(tsschema.LineEncoder, "MAX_VALUES", 8)
    encoder = tsschema.LineEncoder(_SPECS, site="plant-a")
    for i in range(50):
        for value in (i / 7, -0.0, 0.0, float("nan"), float("inf"), 5):
            r = Reading.model_construct(  # unvalidated: NaN and inf are refused by validation
                sensor_id="fridge-1.temperature", value=value, unit="degC", ts=DEFAULT_T0
            )
            expected = tsschema.reading_line(r, _SPECS["fridge-1.temperature"], site="plant-a")
            assert encoder.line(r) == expected
        assert len(encoder._values) <= 8
