"""``envmon alerts check``: who is on call now and next, the routes, and coverage gaps."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from envmon.commands.alerts_check import EXIT_GAPS, EXIT_OK, run_check
from envmon.errors import ConfigError
from tests.unit.alerts.sites import freezer_site

NOW = datetime(2026, 12, 20, 10, 0, tzinfo=UTC)  # a Sunday, 11:00 in Amsterdam

SITE = freezer_site(grade="C")

ALERTING = """\
alerting:
  contacts:
    - id: alice
      name: Alice Jansen
      channels: [{id: email, url: "mailto://envmon:${SMTP_PASSWORD}@smtp.example.org?to=a@example.org"}]
    - id: bob
      name: Bob Smith
      channels: [{id: sms, url_env: BOB_SMS_URL}]
    - id: carol
      name: Carol de Vries
      channels: [{id: hook, url: "json://127.0.0.1:9000/envmon"}]
  teams: [{id: facilities, members: [alice, bob]}]
  schedules:
    - id: cold-storage
      name: Cold storage on call
      rotation: {people: [alice, bob], start: 2026-01-05, every: 7d, handover: "09:00"}
      overrides: [{who: carol, from: "2026-12-24 18:00", to: "2026-12-27 08:00"}]
    - id: office
      name: Office hours
      shifts: [{who: carol, days: mon-fri, from: "08:00", to: "17:00"}]
  policies:
    - id: cold
      steps:
        - {notify: {schedule: cold-storage}, wait: 10m}
        - {notify: {team: facilities}}
    - id: office
      steps: [{notify: {schedule: office}}]
    - id: default
      steps: [{notify: {contact: carol}}]
  routes:
    - {match: {area: cold-room, alarm: [raised, escalated]}, policy: cold}
%(office_route)s    - {policy: default}
"""


def write_site(tmp_path: Path, *, office_routed: bool) -> Path:
    office_route = (
        "    - {match: {system: disconnected}, policy: office}\n" if office_routed else ""
    )
    path = tmp_path / "site.yaml"
    path.write_text(SITE + ALERTING % {"office_route": office_route}, encoding="utf-8")
    return path


def check(path: Path, days: int = 14, now: datetime = NOW) -> tuple[int, str]:
    """Run the check at ``now`` on an 80-column console; return the code and the output."""
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None, highlight=False)
    code = run_check(path, now=now, days=days, console=console)
    return code, out.getvalue()


class TestRunCheck:
    """The check prints the on-call picture and fails on a gap a route depends on."""

    def test_a_covered_site_passes(self, tmp_path):
        """Every routed schedule has someone: exit 0, with the hand-overs in local time."""
        code, out = check(write_site(tmp_path, office_routed=False))
        assert code == EXIT_OK
        assert out.startswith("Test site: alerting configuration valid\nnow 2026-12-20 11:00 CET\n")
        assert "Schedule cold-storage – Cold storage on call (Europe/Amsterdam)" in out
        assert "  on call now: Bob Smith (bob)" in out
        handovers = [
            "    2026-12-21 09:00 CET  Alice Jansen (alice)",
            "    2026-12-24 18:00 CET  Carol de Vries (carol)",
            "    2026-12-27 08:00 CET  Alice Jansen (alice)",
            "    2026-12-28 09:00 CET  Bob Smith (bob)",
        ]
        assert "\n".join(handovers) in out
        assert "Every schedule a route pages has someone on call for the next 14 day(s)." in out

    def test_routes_name_their_policy_and_whom_it_notifies(self, tmp_path):
        """Each route shows what it matches, its policy, and the schedules and teams paged."""
        _, out = check(write_site(tmp_path, office_routed=True))
        assert "  1. area cold-room; alarm raised, escalated → policy cold\n" in out
        assert "     notifies schedule cold-storage, team facilities\n" in out
        assert "  2. system disconnected → policy office\n" in out
        assert "  3. everything else → policy default\n     notifies contact carol\n" in out

    def test_an_unrouted_schedule_with_gaps_does_not_fail(self, tmp_path):
        """A schedule no route pages may have gaps; it is listed as paged by no route."""
        code, out = check(write_site(tmp_path, office_routed=False))
        assert code == EXIT_OK
        assert "Schedule office – Office hours (Europe/Amsterdam)\n  paged by no route\n" in out
        assert "  on call now: nobody" in out

    def test_a_routed_schedule_with_gaps_fails_naming_every_stretch(self, tmp_path):
        """Office hours paged by a route leave nights and weekends uncovered: exit 1."""
        code, out = check(write_site(tmp_path, office_routed=True), days=3)
        assert code == EXIT_GAPS
        assert "Nobody on call in a schedule a route pages (3):" in out
        assert "  office: 2026-12-20 11:00 CET – 2026-12-21 08:00 CET\n" in out
        assert "  office: 2026-12-21 17:00 CET – 2026-12-22 08:00 CET\n" in out
        assert "  office: 2026-12-22 17:00 CET – 2026-12-23 08:00 CET\n" in out

    def test_a_gap_running_past_the_checked_days_says_so(self, tmp_path):
        """A gap still open at the end of the days checked is marked as such."""
        monday_evening = datetime(2026, 12, 21, 19, 0, tzinfo=UTC)
        code, out = check(write_site(tmp_path, office_routed=True), days=1, now=monday_evening)
        assert code == EXIT_GAPS
        assert out.endswith(
            "Nobody on call in a schedule a route pages (2):\n"
            "  office: 2026-12-21 20:00 CET – 2026-12-22 08:00 CET\n"
            "  office: 2026-12-22 17:00 CET – 2026-12-22 20:00 CET (end of the check)\n"
        )

    def test_the_output_fits_80_columns(self, tmp_path):
        """No line is wider than an 80-column terminal."""
        _, out = check(write_site(tmp_path, office_routed=True))
        assert max(len(line) for line in out.splitlines()) <= 80

    def test_times_are_shown_in_the_schedule_zone(self, tmp_path):
        """A New York schedule shows New York times, its zone named."""
        path = write_site(tmp_path, office_routed=False)
        path.write_text(
            path.read_text().replace(
                "      name: Office hours\n",
                "      name: Office hours\n      timezone: America/New_York\n",
            )
        )
        _, out = check(path, days=2)
        assert "Schedule office – Office hours (America/New_York)" in out
        assert "    2026-12-21 08:00 EST  Carol de Vries (carol)" in out

    def test_an_icalendar_file_beside_the_site_is_read(self, tmp_path):
        """An ``ical:`` path is relative to the site file."""
        path = write_site(tmp_path, office_routed=True)
        (tmp_path / "office.ics").write_text(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:1\r\n"
            "DTSTAMP:20260101T000000Z\r\nSUMMARY:Carol de Vries\r\n"
            "DTSTART;VALUE=DATE:20261201\r\nDTEND;VALUE=DATE:20270201\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n"
        )
        path.write_text(
            path.read_text().replace(
                '      shifts: [{who: carol, days: mon-fri, from: "08:00", to: "17:00"}]',
                "      ical: office.ics",
            )
        )
        code, out = check(path)
        assert code == EXIT_OK
        assert "Schedule office – Office hours (Europe/Amsterdam)" in out
        assert "no hand-over in the next 14 day(s)" in out

    def test_a_site_without_alerting_fails(self, tmp_path):
        """Without an alerting section nobody is paged: exit 1 saying so."""
        path = tmp_path / "site.yaml"
        path.write_text(SITE, encoding="utf-8")
        code, out = check(path)
        assert code == EXIT_GAPS
        assert "the site file has no alerting: section, so nobody is paged" in " ".join(out.split())

    def test_a_configuration_error_propagates(self, tmp_path):
        """An invalid file raises ConfigError for the caller to report."""
        path = write_site(tmp_path, office_routed=False)
        path.write_text(path.read_text().replace("policy: cold}", "policy: colder}"))
        with pytest.raises(ConfigError) as caught:
            check(path)
        assert [issue.path for issue in caught.value.issues] == ["alerting.routes[0].policy"]
