"""to_us: exact epoch microseconds for every kind of aware datetime, with its UTC shortcut."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envmon.models import Reading
from envmon.timeutil import EPOCH, ONE_US, NaiveTimestampError, ScaledClock, to_us

OFFSETS = st.sampled_from(["Z", "+00:00", "+02:00", "-05:30", "+14:00"])
ZONES: list[tzinfo] = [
    UTC,
    timezone(timedelta(hours=-3)),
    ZoneInfo("Europe/Zurich"),
    ZoneInfo("America/New_York"),
]
NAIVE = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
)


def decoded(text: str) -> datetime:
    """Return the ``ts`` of a reading decoded from JSON (pydantic's own tzinfo)."""
    raw = f'{{"sensor_id": "a.b", "value": 1.0, "ts": "{text}"}}'
    return Reading.model_validate_json(raw).ts


class TestToUs:
    @given(
        st.lists(
            st.tuples(
                NAIVE,
                OFFSETS,
                st.sampled_from(ZONES),
                st.booleans(),
            ),
            min_size=1,
            max_size=20,
        )
    )
    def test_equals_the_plain_subtraction_whatever_came_before(
        self, cases: list[tuple[datetime, str, tzinfo, bool]]
    ) -> None:
        """Interleaved decoded and stdlib datetimes all convert exactly (the cache switches)."""
        for naive, offset, zone, from_json in cases:
            dt = decoded(naive.isoformat() + offset) if from_json else naive.replace(tzinfo=zone)
            assert to_us(dt) == (dt - EPOCH) // ONE_US

    def test_a_decoded_utc_timestamp_keeps_its_microseconds(self) -> None:
        """The shortcut for pydantic's UTC gives the exact microsecond."""
        assert to_us(decoded("2026-01-05T00:00:10.123456Z")) == 1_767_571_210_123_456
        assert to_us(decoded("2026-01-05T02:00:10.123456+02:00")) == 1_767_571_210_123_456

    def test_naive_is_refused(self) -> None:
        """A datetime without an offset is refused."""
        with pytest.raises(NaiveTimestampError):
            to_us(datetime(2026, 1, 5))  # noqa: DTZ001 (the case under test)


class TestScaledClock:
    def test_runs_speed_times_faster_from_its_start(self) -> None:
        """Ten real seconds at 30x are five simulated minutes."""
        now = [100.0]
        start = datetime(2026, 1, 5, 8, tzinfo=UTC)
        clock = ScaledClock(start, 30, monotonic=lambda: now[0])
        now[0] += 10
        assert clock() == start + timedelta(minutes=5)

    def test_a_paused_clock_stays_at_its_start_until_resumed(self) -> None:
        """Set-up time is not simulated time: the scenario's first minute follows resume."""
        now = [100.0]
        start = datetime(2026, 1, 5, 8, tzinfo=UTC)
        clock = ScaledClock(start, 60, monotonic=lambda: now[0], paused=True)
        now[0] += 5  # the demo's set-up: argon2 hashes, servers
        assert clock() == start
        clock.resume()
        now[0] += 1
        assert clock() == start + timedelta(minutes=1)
        clock.resume()  # once running, a second resume changes nothing
        assert clock() == start + timedelta(minutes=1)
