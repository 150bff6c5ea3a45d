"""The collectors' fast paths for readings equal pydantic's own construction and encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from envmon.models import Quality, Reading

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
