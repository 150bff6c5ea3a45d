"""Weekly occupancy schedules: when a cleanroom is in operation, in local wall-clock time.

A schedule is a set of weekly windows (``mon 07:00 → 19:00``) in one IANA time zone. Each
window starts on a local date at a local time and ends at a local time on the same date
or, when it ends at or before its start time, on the next date (a night shift). Windows
become instants through ``zoneinfo``, so they follow daylight-saving changes:

- a local time that does not exist (skipped by a spring-forward change) is read with the
  offset in force before the change, i.e. as if the clocks had not moved yet (PEP 495,
  ``fold=0``): ``02:30`` on the day clocks jump from 02:00 to 03:00 becomes 03:30;
- a local time that occurs twice (autumn fall-back) means its first occurrence.

Overlapping or touching windows merge. ``state_at`` returns the state at an instant and
the exact instant the state next changes, which the evaluation core caches on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from envmon.sensors import Occupancy
from envmon.timeutil import from_us, to_us

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2})$")
NEVER_US = 2**62
"""The "valid until" of a state that never changes (as ``FixedOccupancy`` uses)."""

# Windows are generated for local dates around the instant asked about. A merged
# in-operation stretch is shorter than a week unless the schedule covers the whole week
# (handled separately), so two weeks either side always contain both of its ends.
_HORIZON_DAYS = 15


def parse_time_of_day(value: object) -> object:
    """Turn ``"HH:MM"`` into minutes after midnight (``"24:00"`` is 1440); for validators."""
    if not isinstance(value, str):
        raise ValueError("must be a time of day written as 'HH:MM' in quotes, e.g. '07:00'")
    match = _TIME_OF_DAY.match(value.strip())
    if match is None:
        raise ValueError(f"must be a time of day 'HH:MM', got {value!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"must be a time of day between 00:00 and 24:00, got {value!r}")
    return hours * 60 + minutes


def expand_days(value: object) -> object:
    """Expand ranges such as ``mon-fri`` in a list of weekdays and refuse unknown days."""
    if not isinstance(value, list | tuple):
        return value
    days: list[str] = []
    for item in value:
        name = item.strip().lower() if isinstance(item, str) else item
        first, _, last = name.partition("-") if isinstance(name, str) else (name, "", "")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(
                f"unknown day {item!r}; use {', '.join(WEEKDAYS)} or a range such as 'mon-fri'"
            )
        if not last:
            days.append(first)
            continue
        start, stop = WEEKDAYS.index(first), WEEKDAYS.index(last)
        span = range(start, stop + 1) if start <= stop else [*range(start, 7), *range(stop + 1)]
        days.extend(WEEKDAYS[i] for i in span)
    return days


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """One weekly in-operation window: a weekday and local start/end minute of the day.

    ``end_min`` may be 1440 (24:00). An end at or before the start means the window runs
    past midnight into the next day.
    """

    weekday: int
    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday must be 0 (mon) to 6 (sun), got {self.weekday}")
        if not 0 <= self.start_min < MINUTES_PER_DAY:
            raise ValueError(f"start must be in [00:00, 24:00), got minute {self.start_min}")
        if not 0 <= self.end_min <= MINUTES_PER_DAY:
            raise ValueError(f"end must be in [00:00, 24:00], got minute {self.end_min}")

    @property
    def length_min(self) -> int:
        """Length of the window in wall-clock minutes."""
        if self.end_min > self.start_min:
            return self.end_min - self.start_min
        return self.end_min + MINUTES_PER_DAY - self.start_min


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    """An ``envmon.sensors.OccupancySchedule``: in operation inside the windows, else at rest."""

    timezone: str
    windows: tuple[WeeklyWindow, ...]
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _always: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        object.__setattr__(self, "_always", _covers_whole_week(self.windows))

    def state_at(self, ts_us: int) -> tuple[Occupancy, int]:
        """Return the occupancy at ``ts_us`` (epoch µs, UTC) and the instant it next changes."""
        if not self.windows:
            return Occupancy.AT_REST, NEVER_US
        if self._always:
            return Occupancy.IN_OPERATION, NEVER_US
        local_date = from_us(ts_us).astimezone(self._zone).date()
        intervals = self._intervals(local_date)
        for start, end in intervals:
            if ts_us < start:
                return Occupancy.AT_REST, start
            if ts_us < end:
                return Occupancy.IN_OPERATION, end
        # Unreachable while the horizon is longer than any gap; stay safe regardless.
        return Occupancy.AT_REST, ts_us + 86_400 * 1_000_000  # pragma: no cover

    def _intervals(self, around: date) -> list[tuple[int, int]]:
        """Return merged in-operation intervals (epoch µs) for local dates near ``around``."""
        raw: list[tuple[int, int]] = []
        for offset in range(-_HORIZON_DAYS, _HORIZON_DAYS + 1):
            day = around + timedelta(days=offset)
            for window in self.windows:
                if window.weekday != day.weekday():
                    continue
                start = self._instant(day, window.start_min)
                end_day = day if window.end_min > window.start_min else day + timedelta(days=1)
                end = self._instant(end_day, window.end_min)
                if end > start:
                    raw.append((start, end))
        raw.sort()
        merged: list[tuple[int, int]] = []
        for start, end in raw:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def _instant(self, day: date, minute: int) -> int:
        """Return the instant (epoch µs) of a local date and minute of the day (24:00 ok)."""
        if minute >= MINUTES_PER_DAY:
            day, minute = day + timedelta(days=1), minute - MINUTES_PER_DAY
        local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self._zone)
        return to_us(local.astimezone(UTC))


def _covers_whole_week(windows: tuple[WeeklyWindow, ...]) -> bool:
    """Return True when the windows leave no wall-clock minute of the week at rest."""
    covered = [False] * (7 * MINUTES_PER_DAY)
    for window in windows:
        first = window.weekday * MINUTES_PER_DAY + window.start_min
        for minute in range(first, first + window.length_min):
            covered[minute % len(covered)] = True
    return all(covered)
