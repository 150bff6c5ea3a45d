"""Tests of weekly occupancy schedules, including daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from envmon.config.schedule import NEVER_US, WeeklySchedule, WeeklyWindow
from envmon.sensors import Occupancy, OccupancySchedule
from envmon.timeutil import from_us, to_us

AMS = ZoneInfo("Europe/Amsterdam")
REST, OPERATION = Occupancy.AT_REST, Occupancy.IN_OPERATION


def local_us(*args: int) -> int:
    """Epoch µs of a wall-clock time in Amsterdam (first occurrence if ambiguous)."""
    return to_us(datetime(*args, tzinfo=AMS))  # type: ignore[misc]


def utc_us(*args: int) -> int:
    """Epoch µs of a UTC time."""
    return to_us(datetime(*args, tzinfo=UTC))  # type: ignore[misc]


def office_hours() -> WeeklySchedule:
    """Mon–Fri 07:00–19:00 Amsterdam time."""
    return WeeklySchedule(
        "Europe/Amsterdam", tuple(WeeklyWindow(d, 7 * 60, 19 * 60) for d in range(5))
    )


class TestWeeklySchedule:
    """``WeeklySchedule.state_at`` gives the state and the exact instant it next changes."""

    def test_in_operation_during_hours(self):
        """Tuesday 10:00 is in operation until 19:00 the same day."""
        state, until = office_hours().state_at(local_us(2024, 1, 16, 10, 0))
        assert state is OPERATION
        assert until == local_us(2024, 1, 16, 19, 0)

    def test_at_rest_overnight(self):
        """Tuesday 22:00 is at rest until Wednesday 07:00."""
        state, until = office_hours().state_at(local_us(2024, 1, 16, 22, 0))
        assert state is REST
        assert until == local_us(2024, 1, 17, 7, 0)

    def test_at_rest_over_the_weekend(self):
        """Friday 19:00 starts a rest period that lasts until Monday 07:00."""
        state, until = office_hours().state_at(local_us(2024, 1, 19, 19, 0))
        assert state is REST
        assert until == local_us(2024, 1, 22, 7, 0)

    def test_boundaries_are_half_open(self):
        """The start instant is in operation; the end instant is at rest."""
        schedule = office_hours()
        assert schedule.state_at(local_us(2024, 1, 16, 7, 0))[0] is OPERATION
        assert schedule.state_at(local_us(2024, 1, 16, 7, 0) - 1)[0] is REST
        assert schedule.state_at(local_us(2024, 1, 16, 19, 0))[0] is REST
        assert schedule.state_at(local_us(2024, 1, 16, 19, 0) - 1)[0] is OPERATION

    def test_across_a_whole_week(self):
        """Walking the valid_until chain through a week visits exactly the expected changes."""
        schedule = office_hours()
        ts = local_us(2024, 1, 14, 12, 0)  # Sunday noon
        changes = []
        for _ in range(10):
            state, ts = schedule.state_at(ts)
            changes.append((state, from_us(ts).astimezone(AMS).strftime("%a %H:%M")))
        assert changes == [
            (REST, "Mon 07:00"),
            (OPERATION, "Mon 19:00"),
            (REST, "Tue 07:00"),
            (OPERATION, "Tue 19:00"),
            (REST, "Wed 07:00"),
            (OPERATION, "Wed 19:00"),
            (REST, "Thu 07:00"),
            (OPERATION, "Thu 19:00"),
            (REST, "Fri 07:00"),
            (OPERATION, "Fri 19:00"),
        ]

    def test_spring_forward_weekend(self):
        """Across the March change the next start is 07:00 CEST, one hour earlier in UTC."""
        # Clocks go from 02:00 CET to 03:00 CEST on Sunday 31 March 2024.
        state, until = office_hours().state_at(utc_us(2024, 3, 29, 18, 0))  # Fri 19:00 CET
        assert state is REST
        assert until == utc_us(2024, 4, 1, 5, 0)  # Mon 07:00 CEST
        assert office_hours().state_at(utc_us(2024, 3, 25, 6, 0)) == (
            OPERATION,
            utc_us(2024, 3, 25, 18, 0),  # Mon 19:00 CET
        )

    def test_fall_back_weekend(self):
        """Across the October change the next start is 07:00 CET, one hour later in UTC."""
        # Clocks go from 03:00 CEST back to 02:00 CET on Sunday 27 October 2024.
        state, until = office_hours().state_at(utc_us(2024, 10, 25, 17, 0))  # Fri 19:00 CEST
        assert state is REST
        assert until == utc_us(2024, 10, 28, 6, 0)  # Mon 07:00 CET

    def test_window_starting_in_the_skipped_hour(self):
        """A start at 02:30 on the spring-forward night is read as 03:30 CEST (PEP 495 fold=0)."""
        schedule = WeeklySchedule("Europe/Amsterdam", (WeeklyWindow(6, 2 * 60 + 30, 4 * 60),))
        state, until = schedule.state_at(utc_us(2024, 3, 31, 0, 0))  # 01:00 CET
        assert state is REST
        assert until == utc_us(2024, 3, 31, 1, 30)  # 03:30 CEST
        assert schedule.state_at(until) == (OPERATION, utc_us(2024, 3, 31, 2, 0))  # 04:00 CEST

    def test_window_in_the_repeated_hour(self):
        """On the fall-back night 02:30 means its first occurrence (CEST)."""
        schedule = WeeklySchedule("Europe/Amsterdam", (WeeklyWindow(6, 2 * 60 + 30, 3 * 60 + 30),))
        state, until = schedule.state_at(utc_us(2024, 10, 26, 23, 0))  # 01:00 CEST
        assert state is REST
        assert until == utc_us(2024, 10, 27, 0, 30)  # 02:30 CEST
        assert schedule.state_at(until) == (OPERATION, utc_us(2024, 10, 27, 2, 30))  # 03:30 CET

    def test_overnight_window(self):
        """A window ending before it starts runs past midnight into the next day."""
        schedule = WeeklySchedule("Europe/Amsterdam", (WeeklyWindow(4, 22 * 60, 6 * 60),))  # Fri
        assert schedule.state_at(local_us(2024, 1, 20, 3, 0)) == (  # Saturday 03:00
            OPERATION,
            local_us(2024, 1, 20, 6, 0),
        )

    def test_touching_windows_merge(self):
        """Back-to-back windows form one in-operation stretch."""
        schedule = WeeklySchedule(
            "Europe/Amsterdam",
            (WeeklyWindow(0, 6 * 60, 14 * 60), WeeklyWindow(0, 14 * 60, 22 * 60)),
        )
        assert schedule.state_at(local_us(2024, 1, 15, 10, 0)) == (
            OPERATION,
            local_us(2024, 1, 15, 22, 0),
        )

    def test_whole_day_window(self):
        """00:00–24:00 covers the whole local day."""
        schedule = WeeklySchedule("UTC", (WeeklyWindow(2, 0, 24 * 60),))  # Wednesday
        assert schedule.state_at(utc_us(2024, 1, 17, 12, 0)) == (OPERATION, utc_us(2024, 1, 18))

    def test_always_in_operation(self):
        """A schedule covering the whole week never changes."""
        schedule = WeeklySchedule("UTC", tuple(WeeklyWindow(d, 0, 24 * 60) for d in range(7)))
        assert schedule.state_at(utc_us(2024, 1, 17, 12, 0)) == (OPERATION, NEVER_US)

    def test_no_windows(self):
        """A schedule without windows is always at rest."""
        assert WeeklySchedule("UTC", ()).state_at(0) == (REST, NEVER_US)

    def test_other_timezone(self):
        """Windows are in the schedule's own time zone."""
        schedule = WeeklySchedule("America/New_York", (WeeklyWindow(0, 9 * 60, 17 * 60),))
        assert schedule.state_at(utc_us(2024, 1, 15, 14, 0)) == (  # 09:00 EST
            OPERATION,
            utc_us(2024, 1, 15, 22, 0),
        )

    @pytest.mark.parametrize(
        "start",
        [datetime(2024, 3, 20, tzinfo=UTC), datetime(2024, 10, 17, tzinfo=UTC)],
        ids=["spring", "autumn"],
    )
    def test_valid_until_is_exact_around_dst(self, start):
        """Over three weeks around a DST change, the state is constant until valid_until and
        changes exactly there, and agrees with the local wall clock."""
        schedule = office_hours()
        for step in range(0, 3 * 7 * 24 * 4):
            ts = to_us(start + timedelta(minutes=15 * step))
            state, until = schedule.state_at(ts)
            local = from_us(ts).astimezone(AMS)
            expected = local.weekday() < 5 and 7 <= local.hour < 19
            assert (state is OPERATION) == expected, local
            assert until > ts
            assert schedule.state_at(until - 1)[0] is state
            assert schedule.state_at(until)[0] is not state

    def test_invalid_windows_refused(self):
        """Weekdays and minutes out of range are programming errors."""
        with pytest.raises(ValueError, match="weekday"):
            WeeklyWindow(7, 0, 60)
        with pytest.raises(ValueError, match="start"):
            WeeklyWindow(0, 24 * 60, 60)
        with pytest.raises(ValueError, match="end"):
            WeeklyWindow(0, 0, 24 * 60 + 1)

    def test_satisfies_protocol(self):
        """A WeeklySchedule can be used wherever the core expects an OccupancySchedule."""
        schedule: OccupancySchedule = office_hours()
        assert schedule.state_at(0)[0] in (REST, OPERATION)
