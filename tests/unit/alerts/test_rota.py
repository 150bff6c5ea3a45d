"""Who is on call: rotations, shifts, iCalendar files and overrides, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.rota import Rota, Shift
from envmon.config.alerting import AlertingConfig
from envmon.errors import ConfigError

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)


def contact(contact_id: str, name: str) -> dict[str, Any]:
    return {"id": contact_id, "name": name, "channels": [{"id": "hook", "url": "json://h/x"}]}


def rota(
    *schedules: dict[str, Any], base_dir: Path = Path(), site_tz: ZoneInfo = AMSTERDAM
) -> Rota:
    """Build a rota of ``schedules`` for alice, bob and carol."""
    alerting = AlertingConfig.model_validate(
        {
            "contacts": [
                contact("alice", "Alice Jansen"),
                contact("bob", "Bob Smith"),
                contact("carol", "Carol de Vries"),
            ],
            "schedules": list(schedules),
            "policies": [{"id": "p", "steps": [{"notify": {"schedule": schedules[0]["id"]}}]}],
            "routes": [{"policy": "p"}],
        }
    )
    return Rota.from_config(alerting, site_tz=site_tz, base_dir=base_dir)


def local(zone: ZoneInfo, *parts: int) -> datetime:
    """Return a local wall-clock time as an aware UTC datetime."""
    return datetime(*parts, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


def walls(shifts: list[Shift], zone: ZoneInfo) -> list[tuple[str, tuple[str, ...]]]:
    """Return each stretch's local start (``MM-DD HH:MM``) and who."""
    return [(f"{s.start.astimezone(zone):%m-%d %H:%M}", s.who) for s in shifts]


WEEKLY = {
    "id": "weekly",
    "rotation": {
        "people": ["alice", "bob"],
        "start": "2026-01-05",
        "every": "7d",
        "handover": "09:00",
    },
}


class TestRotation:
    """People take turns, handing over at a wall-clock time of day."""

    def test_turns_follow_from_the_start_date(self):
        """The first person's turn starts on the start date; turns alternate."""
        r = rota(WEEKLY)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 1, 5, 9)) == ("alice",)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 1, 12, 8, 59)) == ("alice",)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 1, 12, 9)) == ("bob",)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 1, 19, 9)) == ("alice",)

    def test_nobody_before_the_rotation_starts(self):
        """Before the first hand-over there is nobody on call."""
        r = rota(WEEKLY)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 1, 5, 8, 59)) == ()
        assert r.gaps("weekly", local(AMSTERDAM, 2026, 1, 4), local(AMSTERDAM, 2026, 1, 6)) == [
            (local(AMSTERDAM, 2026, 1, 4), local(AMSTERDAM, 2026, 1, 5, 9))
        ]

    def test_amsterdam_spring_forward_keeps_the_0900_handover(self):
        """The week over 29 March 2026 lasts 167 hours; both hand-overs are at 09:00 local."""
        r = rota(WEEKLY)
        shifts = r.shifts(
            "weekly", local(AMSTERDAM, 2026, 3, 23, 9), local(AMSTERDAM, 2026, 4, 6, 9)
        )
        assert walls(shifts, AMSTERDAM) == [("03-23 09:00", ("bob",)), ("03-30 09:00", ("alice",))]
        assert shifts[0].end - shifts[0].start == 167 * HOUR
        assert shifts[0].end == datetime(2026, 3, 30, 7, tzinfo=UTC)  # 09:00 CEST

    def test_amsterdam_fall_back_keeps_the_0900_handover(self):
        """The week over 25 October 2026 lasts 169 hours; both hand-overs are at 09:00 local."""
        r = rota(WEEKLY)
        shifts = r.shifts(
            "weekly", local(AMSTERDAM, 2026, 10, 19, 9), local(AMSTERDAM, 2026, 11, 2, 9)
        )
        assert walls(shifts, AMSTERDAM) == [("10-19 09:00", ("bob",)), ("10-26 09:00", ("alice",))]
        assert shifts[0].end - shifts[0].start == 169 * HOUR
        assert shifts[0].end == datetime(2026, 10, 26, 8, tzinfo=UTC)  # 09:00 CET

    @pytest.mark.parametrize(
        ("day", "hours"),
        [(7, 24), (8, 23), (9, 24), (31, 24)],
    )
    def test_new_york_daily_turns_in_march(self, day, hours):
        """A schedule in New York hands over at 09:00 there: 8 March 2026 has a 23-hour turn."""
        r = rota(
            {
                "id": "ny",
                "timezone": "America/New_York",
                "rotation": {
                    "people": ["alice", "bob", "carol"],
                    "start": "2026-01-01",
                    "every": "1d",
                    "handover": "09:00",
                },
            }
        )
        start = local(NEW_YORK, 2026, 3, day - 1, 9)
        turn = r.shifts("ny", start, start + timedelta(days=2))[0]
        assert turn.start == start
        assert turn.end - turn.start == hours * HOUR
        assert turn.end.astimezone(NEW_YORK).hour == 9

    def test_new_york_fall_back_turn_lasts_25_hours(self):
        """The turn over 1 November 2026 lasts 25 hours and ends at 09:00 New York time."""
        r = rota(
            {
                "id": "ny",
                "timezone": "America/New_York",
                "rotation": {
                    "people": ["alice", "bob"],
                    "start": "2026-10-30",
                    "every": "1d",
                    "handover": "09:00",
                },
            },
        )
        shifts = r.shifts("ny", local(NEW_YORK, 2026, 10, 31, 9), local(NEW_YORK, 2026, 11, 2, 9))
        assert walls(shifts, NEW_YORK) == [("10-31 09:00", ("bob",)), ("11-01 09:00", ("alice",))]
        assert [s.end - s.start for s in shifts] == [25 * HOUR, 24 * HOUR]
        assert shifts[0].end == datetime(2026, 11, 1, 14, tzinfo=UTC)  # 09:00 EST

    def test_the_schedule_zone_wins_over_the_site_zone(self):
        """A schedule naming a zone hands over in it, whatever the site's zone."""
        r = rota(
            {
                "id": "ny",
                "timezone": "America/New_York",
                "rotation": {
                    "people": ["alice", "bob"],
                    "start": "2026-01-05",
                    "every": "7d",
                    "handover": "09:00",
                },
            },
        )
        assert r.timezone("ny") == NEW_YORK
        assert r.on_call("ny", local(NEW_YORK, 2026, 1, 12, 8, 59)) == ("alice",)
        assert r.on_call("ny", local(NEW_YORK, 2026, 1, 12, 9)) == ("bob",)

    def test_a_handover_in_the_skipped_hour_happens_an_hour_later(self):
        """02:30 does not exist on 29 March in Amsterdam: that hand-over is at 03:30 CEST."""
        r = rota(
            {
                "id": "night",
                "rotation": {
                    "people": ["alice", "bob"],
                    "start": "2026-03-28",
                    "every": "1d",
                    "handover": "02:30",
                },
            },
        )
        shifts = r.shifts(
            "night", local(AMSTERDAM, 2026, 3, 28, 2, 30), local(AMSTERDAM, 2026, 3, 30, 2, 30)
        )
        assert [s.start for s in shifts] == [
            datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
            datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # 03:30 CEST
        ]
        assert shifts[0].end - shifts[0].start == 24 * HOUR
        assert shifts[1].end - shifts[1].start == 23 * HOUR

    def test_a_handover_in_the_repeated_hour_happens_at_the_first(self):
        """02:30 occurs twice on 25 October in Amsterdam: the hand-over is at the first."""
        r = rota(
            {
                "id": "night",
                "rotation": {
                    "people": ["alice", "bob"],
                    "start": "2026-10-24",
                    "every": "1d",
                    "handover": "02:30",
                },
            },
        )
        assert r.on_call("night", datetime(2026, 10, 25, 0, 29, tzinfo=UTC)) == ("alice",)
        assert r.on_call("night", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == ("bob",)  # CEST

    def test_a_rotation_of_one_has_no_boundaries(self):
        """A person following themselves is one stretch."""
        r = rota(
            {
                "id": "solo",
                "rotation": {"people": ["carol"], "start": "2026-01-01", "handover": "09:00"},
            }
        )
        (shift,) = r.shifts("solo", local(AMSTERDAM, 2026, 3, 1), local(AMSTERDAM, 2026, 4, 1))
        assert shift.who == ("carol",)


WORKDAYS = {
    "id": "days",
    "shifts": [
        {"who": "alice", "days": "mon-fri", "from": "08:00", "to": "17:00"},
        {"who": "bob", "days": "fri", "from": "22:00", "to": "06:00"},
    ],
}


class TestShifts:
    """Weekly shifts, overnight ones included, in wall-clock time."""

    def test_day_shifts_and_the_gaps_between_them(self):
        """Outside the shifts nobody is on call, and the gaps say so."""
        r = rota(WORKDAYS)
        monday = local(AMSTERDAM, 2026, 12, 7)
        assert walls(r.shifts("days", monday, monday + timedelta(days=1)), AMSTERDAM) == [
            ("12-07 00:00", ()),
            ("12-07 08:00", ("alice",)),
            ("12-07 17:00", ()),
        ]
        assert r.gaps("days", monday, monday + timedelta(days=1)) == [
            (monday, local(AMSTERDAM, 2026, 12, 7, 8)),
            (local(AMSTERDAM, 2026, 12, 7, 17), local(AMSTERDAM, 2026, 12, 8)),
        ]

    def test_an_overnight_shift_runs_into_the_next_day(self):
        """Friday 22:00 to 06:00 covers Saturday 05:59 but not 06:00."""
        r = rota(WORKDAYS)
        assert r.on_call("days", local(AMSTERDAM, 2026, 12, 11, 21, 59)) == ()
        assert r.on_call("days", local(AMSTERDAM, 2026, 12, 11, 22)) == ("bob",)
        assert r.on_call("days", local(AMSTERDAM, 2026, 12, 12, 5, 59)) == ("bob",)
        assert r.on_call("days", local(AMSTERDAM, 2026, 12, 12, 6)) == ()

    def test_an_overnight_shift_over_the_spring_forward_night_is_shorter(self):
        """The night of 27-28 March is 8 hours; a Saturday night shift into 29 March is 7."""
        r = rota(
            {
                "id": "nights",
                "shifts": [{"who": "carol", "days": "fri-sat", "from": "22:00", "to": "06:00"}],
            }
        )
        shifts = [
            s
            for s in r.shifts(
                "nights", local(AMSTERDAM, 2026, 3, 27), local(AMSTERDAM, 2026, 3, 30)
            )
            if s.who
        ]
        assert [s.end - s.start for s in shifts] == [8 * HOUR, 7 * HOUR]
        assert shifts[1].end.astimezone(AMSTERDAM).hour == 6

    def test_shifts_win_over_the_rotation(self):
        """During a shift its people are on call; around it, the rotation's."""
        r = rota(
            {**WEEKLY, "shifts": [{"who": "carol", "days": "tue", "from": "08:00", "to": "17:00"}]}
        )
        tuesday = local(AMSTERDAM, 2026, 1, 6)
        assert walls(r.shifts("weekly", tuesday, tuesday + timedelta(days=1)), AMSTERDAM) == [
            ("01-06 00:00", ("alice",)),
            ("01-06 08:00", ("carol",)),
            ("01-06 17:00", ("alice",)),
        ]

    def test_overlapping_shifts_page_everyone_in_them(self):
        """Two shifts at once put both people on call."""
        r = rota(
            {
                "id": "both",
                "shifts": [
                    {"who": "alice", "days": "mon", "from": "08:00", "to": "17:00"},
                    {"who": ["bob", "carol"], "days": "mon", "from": "12:00", "to": "13:00"},
                ],
            }
        )
        assert r.on_call("both", local(AMSTERDAM, 2026, 12, 7, 12, 30)) == ("alice", "bob", "carol")


class TestOverrides:
    """Dated overrides win over everything."""

    def test_an_override_wins_over_rotation_and_shifts(self):
        """Carol covers Christmas whoever else would be on call."""
        r = rota(
            {
                **WEEKLY,
                "shifts": [{"who": "bob", "days": "mon-fri", "from": "08:00", "to": "17:00"}],
                "overrides": [
                    {"who": "carol", "from": "2026-12-24 18:00", "to": "2026-12-28 08:00"}
                ],
            }
        )
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 12, 24, 16, 59)) == ("bob",)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 12, 24, 17, 59)) == ("alice",)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 12, 24, 18)) == ("carol",)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 12, 28, 7, 59)) == ("carol",)
        assert r.on_call("weekly", local(AMSTERDAM, 2026, 12, 28, 8)) == ("bob",)

    def test_override_times_are_local_across_a_change(self):
        """An override from Saturday 12:00 to Sunday 12:00 over 29 March lasts 23 hours."""
        r = rota(
            {
                **WEEKLY,
                "overrides": [
                    {"who": "carol", "from": "2026-03-28 12:00", "to": "2026-03-29 12:00"}
                ],
            }
        )
        (cover,) = [
            s
            for s in r.shifts(
                "weekly", local(AMSTERDAM, 2026, 3, 27), local(AMSTERDAM, 2026, 3, 31)
            )
            if s.who == ("carol",)
        ]
        assert cover.end - cover.start == 23 * HOUR

    def test_an_override_fills_a_gap(self):
        """An override on a shifts-only schedule covers its gap."""
        r = rota(
            {
                **WORKDAYS,
                "overrides": [
                    {"who": "carol", "from": "2026-12-07 17:00", "to": "2026-12-08 08:00"}
                ],
            }
        )
        monday = local(AMSTERDAM, 2026, 12, 7, 8)
        assert r.gaps("days", monday, local(AMSTERDAM, 2026, 12, 8, 17)) == []


class TestCoverage:
    """``shifts`` covers the stretch asked for; ``gaps`` names the stretches with nobody."""

    def test_shifts_are_contiguous_and_change_who_each_time(self):
        """Each stretch starts where the last ended; no two neighbours have the same people."""
        r = rota({**WEEKLY, **{"shifts": WORKDAYS["shifts"]}})
        start, end = local(AMSTERDAM, 2026, 3, 1), local(AMSTERDAM, 2026, 4, 15)
        shifts = r.shifts("weekly", start, end)
        assert shifts[0].start == start
        assert shifts[-1].end == end
        assert all(a.end == b.start for a, b in pairwise(shifts))
        assert all(a.who != b.who for a, b in pairwise(shifts))

    def test_an_empty_stretch_has_no_shifts(self):
        """``end <= start`` gives nothing."""
        moment = local(AMSTERDAM, 2026, 3, 1)
        assert rota(WEEKLY).shifts("weekly", moment, moment) == []

    def test_naive_times_are_refused(self):
        """Times must be aware."""
        with pytest.raises(ValueError, match="aware"):
            rota(WEEKLY).on_call("weekly", datetime(2026, 3, 1))  # noqa: DTZ001

    def test_an_unknown_schedule_is_a_key_error(self):
        """Only configured schedules have a rota."""
        with pytest.raises(KeyError):
            rota(WEEKLY).on_call("other", local(AMSTERDAM, 2026, 3, 1))


CALENDAR = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//envmon tests//EN
BEGIN:VEVENT
UID:weekly-alice
DTSTAMP:20260101T000000Z
SUMMARY:alice
DTSTART;TZID=Europe/Amsterdam:20260302T090000
DTEND;TZID=Europe/Amsterdam:20260303T090000
RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260501T000000Z
EXDATE;TZID=Europe/Amsterdam:20260316T090000
RDATE;TZID=Europe/Amsterdam:20260319T090000
END:VEVENT
BEGIN:VEVENT
UID:weekend-bob
DTSTAMP:20260101T000000Z
SUMMARY:Bob Smith
DTSTART;VALUE=DATE:20260328
DTEND;VALUE=DATE:20260330
END:VEVENT
BEGIN:VEVENT
UID:floating-carol
DTSTAMP:20260101T000000Z
SUMMARY: carol de vries
DTSTART:20260401T080000
DTEND:20260401T100000
END:VEVENT
BEGIN:VEVENT
UID:cancelled
DTSTAMP:20260101T000000Z
SUMMARY:carol
STATUS:CANCELLED
DTSTART:20260402T080000Z
DTEND:20260402T100000Z
END:VEVENT
END:VCALENDAR
"""


class TestICalendar:
    """An iCalendar file: each event's SUMMARY names who is on call during it."""

    def calendar_rota(self, tmp_path: Path, text: str = CALENDAR, **extra: Any) -> Rota:
        (tmp_path / "oncall.ics").write_text(text.replace("\n", "\r\n"), encoding="utf-8")
        return rota({"id": "cal", "ical": "oncall.ics", **extra}, base_dir=tmp_path)

    def test_a_weekly_event_keeps_its_local_time_across_the_change(self, tmp_path):
        """Monday 09:00 Amsterdam is 08:00 UTC before 29 March and 07:00 UTC after."""
        r = self.calendar_rota(tmp_path)
        turns = [
            s
            for s in r.shifts("cal", local(AMSTERDAM, 2026, 3, 21), local(AMSTERDAM, 2026, 4, 8))
            if s.who == ("alice",)
        ]
        assert [(s.start, s.end) for s in turns] == [
            (datetime(2026, 3, 23, 8, tzinfo=UTC), datetime(2026, 3, 24, 8, tzinfo=UTC)),
            (datetime(2026, 3, 30, 7, tzinfo=UTC), datetime(2026, 3, 31, 7, tzinfo=UTC)),
            (datetime(2026, 4, 6, 7, tzinfo=UTC), datetime(2026, 4, 7, 7, tzinfo=UTC)),
        ]

    def test_exdate_removes_and_rdate_adds_an_occurrence(self, tmp_path):
        """16 March is excluded; Thursday 19 March is added."""
        r = self.calendar_rota(tmp_path)
        assert r.on_call("cal", local(AMSTERDAM, 2026, 3, 9, 12)) == ("alice",)
        assert r.on_call("cal", local(AMSTERDAM, 2026, 3, 16, 12)) == ()
        assert r.on_call("cal", local(AMSTERDAM, 2026, 3, 19, 12)) == ("alice",)

    def test_an_all_day_event_runs_from_local_midnight_to_midnight(self, tmp_path):
        """28-29 March all day, named by the contact's name, in the schedule's zone."""
        r = self.calendar_rota(tmp_path)
        shifts = r.shifts(
            "cal", local(AMSTERDAM, 2026, 3, 27, 12), local(AMSTERDAM, 2026, 3, 30, 12)
        )
        (weekend,) = [s for s in shifts if s.who == ("bob",)]
        assert weekend.start == local(AMSTERDAM, 2026, 3, 28)
        assert weekend.end == local(AMSTERDAM, 2026, 3, 30)
        assert weekend.end - weekend.start == 47 * HOUR

    def test_a_floating_event_is_in_the_schedule_zone(self, tmp_path):
        """08:00 without a zone is 08:00 Amsterdam; a name matches whatever its case."""
        r = self.calendar_rota(tmp_path)
        assert r.on_call("cal", datetime(2026, 4, 1, 5, 59, tzinfo=UTC)) == ()
        assert r.on_call("cal", datetime(2026, 4, 1, 6, tzinfo=UTC)) == ("carol",)

    def test_a_cancelled_event_puts_nobody_on_call(self, tmp_path):
        """STATUS:CANCELLED is left out."""
        r = self.calendar_rota(tmp_path)
        assert r.on_call("cal", datetime(2026, 4, 2, 9, tzinfo=UTC)) == ()

    def test_the_gaps_between_events_are_found(self, tmp_path):
        """Between events nobody is on call."""
        r = self.calendar_rota(tmp_path)
        gaps = r.gaps("cal", local(AMSTERDAM, 2026, 3, 2, 9), local(AMSTERDAM, 2026, 3, 10, 9))
        assert gaps == [(local(AMSTERDAM, 2026, 3, 3, 9), local(AMSTERDAM, 2026, 3, 9, 9))]

    def test_shifts_win_over_the_calendar(self, tmp_path):
        """A weekly shift on a calendar schedule takes precedence."""
        r = self.calendar_rota(
            tmp_path, shifts=[{"who": "bob", "days": "mon", "from": "10:00", "to": "11:00"}]
        )
        assert r.on_call("cal", local(AMSTERDAM, 2026, 3, 9, 10, 30)) == ("bob",)
        assert r.on_call("cal", local(AMSTERDAM, 2026, 3, 9, 11)) == ("alice",)

    def test_a_summary_naming_nobody_is_refused_with_its_line(self, tmp_path):
        """An unknown contact names the file, the event and its line."""
        text = CALENDAR.replace("SUMMARY:Bob Smith", "SUMMARY:Dave")
        with pytest.raises(ConfigError) as caught:
            self.calendar_rota(tmp_path, text)
        assert caught.value.source == str(tmp_path / "oncall.ics")
        (issue,) = caught.value.issues
        assert issue.path == "VEVENT[1].SUMMARY"
        assert issue.line == text.splitlines().index("BEGIN:VEVENT", 4) + 1
        assert "'Dave' names no contact" in issue.message
        assert "alice, bob, carol" in issue.message

    def test_a_missing_file_is_named(self, tmp_path):
        """A file that cannot be read is a ConfigError naming it."""
        with pytest.raises(ConfigError) as caught:
            rota({"id": "cal", "ical": "missing.ics"}, base_dir=tmp_path)
        assert caught.value.source == str(tmp_path / "missing.ics")
        assert "cannot read the iCalendar file of schedule 'cal'" in caught.value.issues[0].message

    def test_a_file_that_is_not_a_calendar(self, tmp_path):
        """Something else than iCalendar is refused."""
        with pytest.raises(ConfigError) as caught:
            self.calendar_rota(tmp_path, "just some text\n")
        assert "not an iCalendar file" in caught.value.issues[0].message

    @pytest.mark.parametrize(
        ("old", "new", "message"),
        [
            ("DTSTART:20260401T080000", "DTSTART:soon", "VEVENT[2]: no usable start/end"),
            (
                "RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260501T000000Z",
                "RRULE:FREQ=SOMETIMES",
                "cannot expand the events",
            ),
            ("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//envmon tests//EN\n", "", "no VCALENDAR"),
        ],
    )
    def test_a_broken_calendar_is_refused_when_built(self, tmp_path, old, new, message):
        """What cannot be read is refused with the rota, not when someone is paged."""
        text = CALENDAR.replace(old, new)
        if not new:  # a file of events without their calendar
            text = text.split("END:VCALENDAR")[0].split("BEGIN:VEVENT", 2)
            text = "BEGIN:VEVENT" + text[1]
        with pytest.raises(ConfigError) as caught:
            self.calendar_rota(tmp_path, text)
        assert message in str(caught.value)
