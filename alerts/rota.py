"""Who is on call: rotations, weekly shifts, iCalendar files and dated overrides.

A schedule (``alerting.schedules``) is read in layers; at any instant the first layer that
has someone wins:

1. dated overrides (``overrides``);
2. weekly shifts (``shifts``);
3. the rotation (``rotation``) or the iCalendar file (``ical``).

Every time in a schedule is wall-clock time in the schedule's zone (the site's unless it
names one), turned into instants through ``zoneinfo``, so a 09:00 hand-over stays at 09:00
local across daylight-saving changes: the turn that spans a change lasts 23 or 25 hours
per day it spans. A local time skipped by a spring-forward change is read with the offset
before the change (as ``envmon.config.schedule`` does: 02:30 becomes 03:30), and a time that
occurs twice means its first occurrence.

An iCalendar file is read once, when the ``Rota`` is built: each event's SUMMARY names a
contact by id or name (an unknown one is refused, naming the file and the event's line);
recurring events (RRULE, RDATE, EXDATE) expand through ``recurring-ical-events``; all-day
and floating events are in the schedule's zone, TZID-ed ones in their own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Final, Protocol
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events  # type: ignore[import-untyped]

from envmon.config.alerting import (
    AlertingConfig,
    ContactConfig,
    OverrideConfig,
    RotationConfig,
    ScheduleConfig,
    ShiftConfig,
)
from envmon.config.schedule import MINUTES_PER_DAY, WEEKDAYS
from envmon.errors import ConfigError, ConfigIssue

logger = logging.getLogger(__name__)

#: Calendar events are asked for this much beyond a stretch: a floating or all-day event is
#: placed in the schedule's zone here, not in the zone the library compares in.
_CALENDAR_MARGIN: Final = timedelta(days=2)
_ONE_US: Final = timedelta(microseconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_QUOTED: Final = 60


@dataclass(frozen=True, slots=True)
class Shift:
    """A stretch with the same people on call, ``[start, end)`` in UTC; ``who == ()``: nobody."""

    start: datetime
    end: datetime
    who: tuple[str, ...]


class _Layer(Protocol):
    """One source of who is on call: the stretches it has someone for, near a time span."""

    def spans(self, start: datetime, end: datetime) -> Iterable[Shift]:
        """Return stretches overlapping ``[start, end)`` (more may be returned)."""


def _instant(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """Return the UTC instant of a local date and minute of the day (1440 = next midnight)."""
    if minute >= MINUTES_PER_DAY:
        day, minute = day + timedelta(days=1), minute - MINUTES_PER_DAY
    local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
    return local.astimezone(UTC)


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    """Return a naive local date-time of the configuration as a UTC instant."""
    return moment.replace(tzinfo=zone).astimezone(UTC)


class _Rotation:
    """People taking turns of ``every`` days, handing over at a local time of day."""

    def __init__(self, config: RotationConfig, zone: ZoneInfo) -> None:
        self.people = config.people
        self.first_day = config.start
        self.days = config.every_days
        self.handover = config.handover
        self.zone = zone

    def turn_start(self, turn: int) -> datetime:
        """Return when turn ``turn`` (0: the first person's first) starts."""
        day = self.first_day + timedelta(days=turn * self.days)
        return _instant(day, self.handover, self.zone)

    def turn_at(self, at: datetime) -> int:
        """Return the turn ``at`` falls in (negative before the rotation starts)."""
        day = at.astimezone(self.zone).date()
        elapsed = (day - self.first_day).days
        if at < _instant(day, self.handover, self.zone):
            elapsed -= 1  # before today's hand-over: still yesterday's rota day
        return elapsed // self.days

    def spans(self, start: datetime, end: datetime) -> Iterable[Shift]:
        """Return the turns overlapping ``[start, end)``."""
        turn = max(self.turn_at(start), 0)
        begins = self.turn_start(turn)
        while begins < end:
            ends = self.turn_start(turn + 1)
            yield Shift(begins, ends, (self.people[turn % len(self.people)],))
            turn, begins = turn + 1, ends


class _Weekly:
    """Fixed weekly shifts (an end at or before the start runs overnight)."""

    def __init__(self, shifts: Sequence[ShiftConfig], zone: ZoneInfo) -> None:
        self.shifts = shifts
        self.zone = zone

    def spans(self, start: datetime, end: datetime) -> Iterable[Shift]:
        """Return the shifts of the local days around ``[start, end)``."""
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date()
        while day <= last:
            name = WEEKDAYS[day.weekday()]
            for shift in self.shifts:
                if name not in shift.days:
                    continue
                end_day = day if shift.end > shift.start else day + timedelta(days=1)
                begins = _instant(day, shift.start, self.zone)
                ends = _instant(end_day, shift.end, self.zone)
                if ends > begins:
                    yield Shift(begins, ends, shift.who)
            day += timedelta(days=1)


class _Overrides:
    """Dated stretches that win over everything else."""

    def __init__(self, overrides: Sequence[OverrideConfig], zone: ZoneInfo) -> None:
        self.stretches = [
            Shift(_local(o.start, zone), _local(o.end, zone), o.who) for o in overrides
        ]

    def spans(self, start: datetime, end: datetime) -> Iterable[Shift]:
        """Return the overrides overlapping ``[start, end)``."""
        return [s for s in self.stretches if s.start < end and s.end > start]


class _Calendar:
    """An iCalendar file: each event's SUMMARY names the contact on call during it."""

    def __init__(
        self,
        path: Path,
        zone: ZoneInfo,
        contacts: Sequence[ContactConfig],
        schedule_id: str,
    ) -> None:
        self.zone = zone
        source = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            message = f"cannot read the iCalendar file of schedule {schedule_id!r}: "
            raise ConfigError(
                source, [ConfigIssue("", message + (exc.strerror or str(exc)))]
            ) from None
        try:
            calendar = icalendar.Calendar.from_ical(raw)
        except ValueError as exc:
            reason = str(exc)[:_QUOTED]
            issue = ConfigIssue("", f"not an iCalendar file (schedule {schedule_id!r}): {reason}")
            raise ConfigError(source, [issue]) from None
        if not isinstance(calendar, icalendar.Calendar):
            issue = ConfigIssue(
                "", f"not an iCalendar file (schedule {schedule_id!r}): no VCALENDAR"
            )
            raise ConfigError(source, [issue])
        self.who = self._names(calendar, raw, contacts, schedule_id, source)
        try:  # recurrence rules are read when the events are first expanded: do it now
            self.events = recurring_ical_events.of(calendar)
            self.events.between(_EPOCH, _EPOCH + timedelta(days=1))
        except Exception as exc:  # the library raises many kinds: every one means this
            reason = str(exc)[:_QUOTED]
            issue = ConfigIssue(
                "", f"cannot expand the events (schedule {schedule_id!r}): {reason}"
            )
            raise ConfigError(source, [issue]) from None

    @staticmethod
    def _names(
        calendar: icalendar.Calendar,
        raw: bytes,
        contacts: Sequence[ContactConfig],
        schedule_id: str,
        source: str,
    ) -> dict[str, str]:
        """Return the contact each SUMMARY names; refuse one that names nobody."""
        lines = [
            number
            for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), start=1)
            if line.strip().upper() == "BEGIN:VEVENT"
        ]
        who: dict[str, str] = {}
        issues: list[ConfigIssue] = []
        for index, event in enumerate(calendar.walk("VEVENT")):
            line = lines[index] if index < len(lines) else None
            summary = str(event.get("SUMMARY", "")).strip()
            try:
                assert isinstance(event, icalendar.Event)
                event.start, event.end  # noqa: B018 - each raises when it cannot be read
            except ValueError as exc:
                reason = str(exc)[:_QUOTED] or type(exc).__name__
                issues.append(
                    ConfigIssue(f"VEVENT[{index}]", f"no usable start/end: {reason}", line)
                )
                continue
            found, why = _contact_named(summary, contacts)
            if found is not None:
                who[summary] = found
                continue
            known = ", ".join(c.id for c in contacts)
            issues.append(
                ConfigIssue(
                    f"VEVENT[{index}].SUMMARY",
                    f"{summary[:_QUOTED]!r} {why} (schedule {schedule_id!r}; write a "
                    f"contact's id or name: {known})",
                    line,
                )
            )
        if issues:
            raise ConfigError(source, issues)
        return who

    def spans(self, start: datetime, end: datetime) -> Iterable[Shift]:
        """Return the events overlapping ``[start, end)``."""
        for event in self.events.between(start - _CALENDAR_MARGIN, end + _CALENDAR_MARGIN):
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            begins, ends = self._when(event.start), self._when(event.end)
            person = self.who.get(str(event.get("SUMMARY", "")).strip())
            if person is not None and ends > begins and begins < end and ends > start:
                yield Shift(begins, ends, (person,))

    def _when(self, value: date | datetime) -> datetime:
        """Return an event time as UTC: dates and floating times are in the schedule's zone."""
        if not isinstance(value, datetime):
            return _instant(value, 0, self.zone)
        if value.tzinfo is None:
            return _local(value, self.zone)
        return value.astimezone(UTC)


def _contact_named(summary: str, contacts: Sequence[ContactConfig]) -> tuple[str | None, str]:
    """Return the id of the contact ``summary`` names, or None and why it names none."""
    if not summary:
        return None, "is empty: the SUMMARY must name the contact on call"
    for contact in contacts:
        if contact.id == summary:
            return contact.id, ""
    wanted = summary.casefold()
    matches = {c.id for c in contacts if wanted in (c.id.casefold(), c.name.strip().casefold())}
    if len(matches) == 1:
        return matches.pop(), ""
    if matches:
        return None, f"names several contacts ({', '.join(sorted(matches))})"
    return None, "names no contact"


@dataclass(frozen=True, slots=True)
class _Timetable:
    """One schedule: its zone and its layers, the first of them that has someone wins."""

    zone: ZoneInfo
    layers: tuple[_Layer, ...]

    def shifts(self, start: datetime, end: datetime) -> list[Shift]:
        """Return who is on call over ``[start, end)``, contiguously, gaps included."""
        if end <= start:
            return []
        found = [
            [s for s in layer.spans(start, end) if s.start < end and s.end > start]
            for layer in self.layers
        ]
        inner = {t for spans in found for s in spans for t in (s.start, s.end) if start < t < end}
        cuts = sorted({start, end} | inner)
        result: list[Shift] = []
        for begins, ends in pairwise(cuts):
            who: tuple[str, ...] = ()
            for spans in found:
                covering = [s for s in spans if s.start <= begins and s.end >= ends]
                if covering:
                    who = tuple(dict.fromkeys(p for s in covering for p in s.who))
                    break
            if result and result[-1].who == who:
                result[-1] = Shift(result[-1].start, ends, who)
            else:
                result.append(Shift(begins, ends, who))
        return result


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


class Rota:
    """Who is on call for every schedule of a site, at an instant or over a stretch."""

    def __init__(self, timetables: Mapping[str, _Timetable]) -> None:
        self._timetables = dict(timetables)

    @classmethod
    def from_config(cls, alerting: AlertingConfig, *, site_tz: ZoneInfo, base_dir: Path) -> Rota:
        """Build the rota of every schedule; iCalendar paths are relative to ``base_dir``.

        Raises ``ConfigError`` naming an iCalendar file that cannot be read or names an
        unknown contact.
        """
        return cls(
            {
                schedule.id: _timetable(schedule, alerting.contacts, site_tz, base_dir)
                for schedule in alerting.schedules
            }
        )

    @property
    def schedule_ids(self) -> tuple[str, ...]:
        """The ids of the schedules, in file order."""
        return tuple(self._timetables)

    def timezone(self, schedule_id: str) -> ZoneInfo:
        """Return the zone a schedule's times are in (``KeyError`` for an unknown schedule)."""
        return self._timetables[schedule_id].zone

    def on_call(self, schedule_id: str, at: datetime) -> tuple[str, ...]:
        """Return the ids of the contacts on call at ``at`` (aware); ``()`` for nobody."""
        moment = _utc(at, "at")
        return self._timetables[schedule_id].shifts(moment, moment + _ONE_US)[0].who

    def shifts(self, schedule_id: str, start: datetime, end: datetime) -> list[Shift]:
        """Return who is on call over ``[start, end)`` as contiguous stretches (``who=()``: nobody).

        Consecutive stretches always differ in who; a hand-over to the same person (a
        rotation of one) is no boundary.
        """
        return self._timetables[schedule_id].shifts(_utc(start, "start"), _utc(end, "end"))

    def gaps(
        self, schedule_id: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        """Return the stretches of ``[start, end)`` in which nobody is on call."""
        return [(s.start, s.end) for s in self.shifts(schedule_id, start, end) if not s.who]


def _timetable(
    schedule: ScheduleConfig,
    contacts: Sequence[ContactConfig],
    site_tz: ZoneInfo,
    base_dir: Path,
) -> _Timetable:
    zone = schedule.zone(site_tz)
    layers: list[_Layer] = [_Overrides(schedule.overrides, zone), _Weekly(schedule.shifts, zone)]
    if schedule.rotation is not None:
        layers.append(_Rotation(schedule.rotation, zone))
    if schedule.ical is not None:
        layers.append(_Calendar(base_dir / schedule.ical, zone, contacts, schedule.id))
    return _Timetable(zone, tuple(layers))
