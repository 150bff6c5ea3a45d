"""The collectors' fast paths for readings equal pydantic's own construction and encoding."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from envmon.models import NonFiniteValueError, Quality, Reading

aware = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001 - hypothesis adds the zone below
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5))]),
)
fields = st.fixed_dictionaries(
    {
        "sensor_id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,20}", fullmatch=True),
        "value": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "unit": st.sampled_from(["", "degC", "%", "counts/m3", "µg"]),
        "ts": aware,
        "received_at": st.none() | aware,
        "quality": st.sampled_from(list(Quality)),
        "source": st.text(max_size=20),
    }
)


@given(fields)
def test_trusted_equals_validated_construction(kw: dict[str, object]) -> None:
    """``Reading.trusted`` builds the same model as validation does, every field set."""
    fast = Reading.trusted(**kw)  # type: ignore[arg-type]
    validated = Reading.model_validate(kw)
    assert fast == validated
    assert fast.model_fields_set == validated.model_fields_set | {"schema_version"}
    assert fast.model_dump() == validated.model_dump()


@given(fields)
def test_to_json_is_model_dump_json_byte_for_byte(kw: dict[str, object]) -> None:
    """The orjson encoding is pydantic's, byte for byte, and reads back to the same reading."""
    reading = Reading.model_validate(kw)
    assert reading.to_json() == reading.model_dump_json().encode()
    assert Reading.model_validate_json(reading.to_json()) == reading


def test_to_json_converts_offsets_to_utc() -> None:
    """A timestamp with an offset is written in UTC with ``Z``, as everywhere else."""
    ts = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    reading = Reading.trusted("a.t", 1.5, "degC", ts, None, Quality.GOOD, "x")
    assert b'"ts":"2026-03-29T01:30:00Z"' in reading.to_json()


class TestNonFiniteValues:
    """No reading carries NaN or infinity: on the bus it would read as a value-less good one."""

    TS = datetime(2026, 1, 5, tzinfo=UTC)

    @pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
    @pytest.mark.parametrize("quality", list(Quality))
    def test_trusted_refuses_them(self, value: float, quality: Quality) -> None:
        """The collectors' fast constructor raises rather than build one."""
        with pytest.raises(NonFiniteValueError, match="not finite"):
            Reading.trusted("pc-1.p", value, "particles/m3", self.TS, None, quality, "x")

    @pytest.mark.parametrize("value", [math.inf, math.nan])
    def test_validation_refuses_them(self, value: float) -> None:
        """A validated reading refuses them like any invalid field."""
        with pytest.raises(ValidationError, match="finite number"):
            Reading(sensor_id="pc-1.p", value=value, ts=self.TS)

    @pytest.mark.parametrize("text", [b"Infinity", b"-Infinity", b"NaN", b"1e400"])
    def test_decoding_refuses_them(self, text: bytes) -> None:
        """A reading message off the bus with a non-finite value is invalid (the worker
        dead-letters it), whatever JSON spelling carries it."""
        message = b'{"sensor_id":"pc-1.p","value":' + text + b',"ts":"2026-01-05T00:00:00Z"}'
        with pytest.raises(ValidationError, match="finite number"):
            Reading.model_validate_json(message)
