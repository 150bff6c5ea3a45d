"""The ``alerting:`` section: every issue with its YAML path and line; no secret echoed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from envmon.config import ConfigError, load_site, parse_site
from envmon.config.alerting import (
    AlertingConfig,
    AlertingConfigError,
    ContactChannelConfig,
    url_problem,
)
from envmon.errors import ConfigIssue
from tests.unit.alerts.sites import freezer_site

SECRET = "hunter2-Zq8"

SITE = (
    freezer_site(grade="C")
    + """\
  - id: fill-room
    name: Fill room
    grade: B
    instruments:
      - id: rs-1
        name: Room sensor 1
        kind: room_sensor
        channels:
          - {parameter: humidity, unit: "%RH", limits: {alert_high: 60, action_high: 65}}
"""
)

ALERTING = """\
  links: {base_url: "https://envmon.example.org", secret_env: LINK_SECRET}
  grouping: {window: 3s}
  shelving: {max: 4h}
  contacts:
    - id: alice
      name: Alice Jansen
      user: alice
      channels:
        - {id: email, url: "mailto://envmon:${SMTP_PASSWORD}@smtp.example.org:587?to=alice@example.org"}
        - {id: sms, url_env: ALICE_SMS_URL}
    - id: bob
      name: Bob Smith
      channels:
        - {id: email, url: "mailto://smtp.example.org?to=bob@example.org&from=envmon@example.org"}
    - id: ops-webhook
      name: Operations webhook
      channels:
        - {id: hook, url: "json://127.0.0.1:9000/envmon"}
  teams:
    - {id: facilities, name: Facilities, members: [alice, bob]}
  schedules:
    - id: cold-storage
      name: Cold storage on call
      timezone: Europe/Amsterdam
      rotation: {people: [alice, bob], start: 2026-01-05, every: 7d, handover: "09:00"}
      shifts:
        - {who: bob, days: mon-fri, from: "08:00", to: "17:00"}
      overrides:
        - {who: alice, from: "2026-12-24 18:00", to: "2026-12-27 08:00"}
  policies:
    - id: cold-storage-urgent
      steps:
        - {notify: {schedule: cold-storage}, channels: [sms, email], wait: 10m}
        - {notify: {team: facilities}, wait: 15m}
      repeat: 2
      reminder: 1h
    - id: facilities-default
      steps:
        - {notify: {contact: ops-webhook}}
  routes:
    - match:
        {area: [cold-room], grade: [C], instrument_kind: [freezer], parameter: [temperature],
         sensor: [frz-1.temperature], level: [action], alarm: [raised, escalated]}
      policy: cold-storage-urgent
    - match: {system: [disconnected, buffer_full]}
      policy: facilities-default
    - policy: facilities-default
  maintenance:
    - id: freezer-defrost
      reason: Annual defrost of freezer F-01
      scope: {instrument: [frz-1]}
      from: "2026-12-10 08:00"
      to: "2026-12-10 12:00"
    - id: weekly-clean
      reason: Weekly cleaning
      scope: {area: [fill-room]}
      weekly: {days: sat, from: "06:00", to: "08:00"}
  alertmanager:
    url: http://127.0.0.1:9093
    resend_every: 30s
"""


def site_text(alerting: str = ALERTING) -> str:
    """Return the test site with ``alerting`` as its (indented) section."""
    return f"{SITE}alerting:\n{alerting}"


def changed(old: str, new: str) -> str:
    """Return the site with one fragment of its alerting section replaced."""
    assert ALERTING.count(old) == 1, old
    return site_text(ALERTING.replace(old, new))


def issues_of(text: str) -> list[ConfigIssue]:
    """Parse ``text`` expecting a ConfigError; return its issues."""
    with pytest.raises(ConfigError) as caught:
        parse_site(text, source="site.yaml")
    return caught.value.issues


def only_issue(text: str) -> ConfigIssue:
    """Return the single issue of ``text``."""
    issues = issues_of(text)
    assert len(issues) == 1, issues
    return issues[0]


def line_of(text: str, fragment: str) -> int:
    """Return the 1-based number of the first line of ``text`` holding ``fragment``."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


class TestValidSection:
    """A complete section validates into the models the alerting service reads."""

    def test_the_complete_example_is_read(self):
        """Every part of the example is there, durations in seconds."""
        alerting = parse_site(site_text()).alerting
        assert alerting is not None
        assert alerting.links is not None
        assert alerting.links.base_url == "https://envmon.example.org"
        assert alerting.links.valid_for == 24 * 3600
        assert alerting.grouping.window == 3
        assert alerting.shelving.max == 4 * 3600
        assert [c.id for c in alerting.contacts] == ["alice", "bob", "ops-webhook"]
        assert alerting.contact("alice").user == "alice"
        assert alerting.team("facilities").members == ("alice", "bob")
        schedule = alerting.schedule("cold-storage")
        assert schedule.rotation is not None
        assert schedule.rotation.every_days == 7
        assert schedule.rotation.handover_time.isoformat() == "09:00:00"
        assert schedule.shifts[0].days == ("mon", "tue", "wed", "thu", "fri")
        assert schedule.overrides[0].start == datetime(2026, 12, 24, 18, 0)  # noqa: DTZ001
        policy = alerting.policy("cold-storage-urgent")
        assert [s.wait for s in policy.steps] == [600, 900]
        assert policy.steps[0].channels == ("sms", "email")
        assert (policy.repeat, policy.reminder) == (2, 3600)
        assert alerting.routes[0].match is not None
        assert alerting.routes[0].match.alarm == ("raised", "escalated")
        assert alerting.routes[-1].match is None
        assert alerting.maintenance[1].weekly[0].days == ("sat",)
        assert alerting.alertmanager is not None
        assert alerting.alertmanager.resend_every == 30

    def test_defaults(self):
        """Left out: links and forwarder off, 2 s grouping, 8 h shelving, 5 min steps."""
        alerting = parse_site(
            site_text(
                """\
  contacts: [{id: bob, name: Bob, channels: [{id: hook, url: "json://127.0.0.1:9000/x"}]}]
  policies: [{id: p, steps: [{notify: {contact: bob}}]}]
  routes: [{policy: p}]
"""
            )
        ).alerting
        assert alerting is not None
        assert alerting.links is None
        assert alerting.alertmanager is None
        assert (alerting.grouping.window, alerting.shelving.max) == (2, 8 * 3600)
        step = alerting.policy("p").steps[0]
        assert (step.wait, step.channels) == (300, ())
        assert (alerting.policy("p").repeat, alerting.policy("p").reminder) == (0, None)
        assert (alerting.teams, alerting.schedules, alerting.maintenance) == ((), (), ())

    def test_a_site_without_the_section(self):
        """The section is optional."""
        assert parse_site(SITE).alerting is None

    def test_single_values_stand_for_lists(self):
        """``area: cold-room`` is ``area: [cold-room]``; ``who: bob`` is ``who: [bob]``."""
        alerting = parse_site(
            changed("{area: [cold-room], grade: [C],", "{area: cold-room, grade: c,")
        ).alerting
        assert alerting is not None
        assert alerting.routes[0].match is not None
        assert alerting.routes[0].match.area == ("cold-room",)
        assert alerting.routes[0].match.grade == ("C",)
        assert alerting.schedule("cold-storage").shifts[0].who == ("bob",)

    def test_lookups_refuse_unknown_ids(self):
        """``contact()``, ``team()``, ``schedule()`` and ``policy()`` raise KeyError."""
        alerting = parse_site(site_text()).alerting
        assert alerting is not None
        for lookup in (alerting.contact, alerting.team, alerting.schedule, alerting.policy):
            with pytest.raises(KeyError):
                lookup("nobody")

    def test_route_schedules(self):
        """A route's schedules are those its policy's steps notify."""
        alerting = parse_site(site_text()).alerting
        assert alerting is not None
        assert alerting.route_schedules(alerting.routes[0]) == ("cold-storage",)
        assert alerting.route_schedules(alerting.routes[1]) == ()


# (old fragment, new fragment, YAML path, part of the message); the line is the new one's.
REFERENCE_CASES = [
    (
        "members: [alice, bob]",
        "members: [alice, bobb]",
        "alerting.teams[0].members[1]",
        "no contact 'bobb' in alerting.contacts; did you mean 'bob'?",
    ),
    (
        "people: [alice, bob]",
        "people: [alice, carol]",
        "alerting.schedules[0].rotation.people[1]",
        "no contact 'carol' in alerting.contacts",
    ),
    (
        "{who: bob, days",
        "{who: dave, days",
        "alerting.schedules[0].shifts[0].who",
        "no contact 'dave'",
    ),
    (
        "{who: alice, from",
        "{who: [alice, eve], from",
        "alerting.schedules[0].overrides[0].who[1]",
        "no contact 'eve'",
    ),
    (
        "{schedule: cold-storage}",
        "{schedule: cold-storag}",
        "alerting.policies[0].steps[0].notify.schedule",
        "no schedule 'cold-storag' in alerting.schedules; did you mean 'cold-storage'?",
    ),
    (
        "{team: facilities}",
        "{team: facility}",
        "alerting.policies[0].steps[1].notify.team",
        "no team 'facility' in alerting.teams",
    ),
    (
        "{contact: ops-webhook}",
        "{contact: ops}",
        "alerting.policies[1].steps[0].notify.contact",
        "no contact 'ops' in alerting.contacts",
    ),
    (
        "      policy: cold-storage-urgent",
        "      policy: cold-storage",
        "alerting.routes[0].policy",
        "no policy 'cold-storage' in alerting.policies",
    ),
    (
        "channels: [sms, email], wait",
        "channels: [sms, voice], wait",
        "alerting.policies[0].steps[0].channels[1]",
        "no channel 'voice' on alice, bob (channels: email, sms)",
    ),
    (
        "{area: [cold-room], grade",
        "{area: [cold-rooom], grade",
        "alerting.routes[0].match.area[0]",
        "no area 'cold-rooom' in this site; did you mean 'cold-room'?",
    ),
    (
        "grade: [C]",
        "grade: [A]",
        "alerting.routes[0].match.grade[0]",
        "no area of this site has grade A",
    ),
    (
        "grade: [C]",
        "grade: [E]",
        "alerting.routes[0].match.grade[0]",
        "must be one of A, B, C, D, got 'E'",
    ),
    (
        "instrument_kind: [freezer]",
        "instrument_kind: [incubator]",
        "alerting.routes[0].match.instrument_kind[0]",
        "no instrument of kind 'incubator' in this site",
    ),
    (
        "parameter: [temperature]",
        "parameter: [co2]",
        "alerting.routes[0].match.parameter[0]",
        "no parameter 'co2' in this site",
    ),
    (
        "sensor: [frz-1.temperature]",
        "sensor: [frz-2.temperature]",
        "alerting.routes[0].match.sensor[0]",
        "no sensor 'frz-2.temperature' in this site; did you mean 'frz-1.temperature'?",
    ),
    (
        "level: [action]",
        "level: [warning]",
        "alerting.routes[0].match.level[0]",
        "must be 'alert' or 'action'",
    ),
    (
        "alarm: [raised, escalated]",
        "alarm: [raised, cleared]",
        "alerting.routes[0].match.alarm[1]",
        "'cleared' ends an incident and is not routed; route the event it ends (raised)",
    ),
    (
        "alarm: [raised, escalated]",
        "alarm: [raised, exploded]",
        "alerting.routes[0].match.alarm[1]",
        "unknown alarm kind 'exploded'; use one of raised, escalated, stale, sensor_fault, "
        "rate_of_change",
    ),
    (
        "system: [disconnected, buffer_full]",
        "system: [connected]",
        "alerting.routes[1].match.system[0]",
        "'connected' ends an incident and is not routed; route the event it ends (disconnected)",
    ),
    (
        "scope: {instrument: [frz-1]}",
        "scope: {instrument: [frz-9]}",
        "alerting.maintenance[0].scope.instrument[0]",
        "no instrument 'frz-9' in this site",
    ),
    (
        "scope: {area: [fill-room]}",
        "scope: {area: [fill-room], sensor: [rs-1.temp]}",
        "alerting.maintenance[1].scope.sensor[0]",
        "no sensor 'rs-1.temp' in this site",
    ),
]


class TestReferences:
    """Every reference resolves, inside the section and into the site."""

    @pytest.mark.parametrize(("old", "new", "path", "message"), REFERENCE_CASES)
    def test_an_unknown_reference_is_refused_where_it_is_written(self, old, new, path, message):
        """The issue names the reference's YAML path and line."""
        text = changed(old, new)
        issue = only_issue(text)
        assert issue.path == path
        assert message in issue.message
        assert issue.line == line_of(text, new.strip())

    def test_a_reference_to_an_item_with_errors_of_its_own_is_not_refused_too(self):
        """A contact with a bad channel still exists for the team that names it."""
        text = changed(
            'url: "mailto://smtp.example.org?to=bob', 'url: "nope://smtp.example.org?to=bob'
        )
        issue = only_issue(text)
        assert issue.path == "alerting.contacts[1].channels[0].url"

    def test_every_problem_is_reported_at_once(self):
        """Errors in several lists come together, each at its own line."""
        text = site_text(
            ALERTING.replace("members: [alice, bob]", "members: [zed]")
            .replace("{team: facilities}", "{team: nobody}")
            .replace("      policy: cold-storage-urgent", "      policy: nothing")
        )
        assert [issue.path for issue in issues_of(text)] == [
            "alerting.teams[0].members[0]",
            "alerting.policies[0].steps[1].notify.team",
            "alerting.routes[0].policy",
        ]


# (old fragment, new fragment, YAML path, message); the line is the one holding ``line_at``.
STRUCTURE_CASES = [
    (
        "  teams:\n",
        "    - {id: bob, name: Bob again, channels: [{id: hook, url: 'json://h/x'}]}\n  teams:\n",
        "alerting.contacts[3].id",
        "duplicate contact id 'bob' (first used at contacts[1])",
        "Bob again",
    ),
    (
        "        - {id: sms, url_env: ALICE_SMS_URL}",
        "        - {id: email, url_env: ALICE_SMS_URL}",
        "alerting.contacts[0].channels[1].id",
        "duplicate channel id 'email' (first used at channels[0])",
        "{id: email, url_env",
    ),
    (
        "  routes:\n",
        "    - {id: facilities-default, steps: [{notify: {contact: bob}}]}\n  routes:\n",
        "alerting.policies[2].id",
        "duplicate policy id 'facilities-default' (first used at policies[1])",
        "{id: facilities-default, steps",
    ),
    (
        "    - id: weekly-clean",
        "    - id: freezer-defrost",
        "alerting.maintenance[1].id",
        "duplicate maintenance window id 'freezer-defrost' (first used at maintenance[0])",
        "- id: freezer-defrost\n      reason: Weekly",
    ),
    (
        "    - policy: facilities-default",
        "    - {match: {area: fill-room}, policy: facilities-default}",
        "alerting.routes[2].match",
        "the last route is the default route: leave out its match",
        "{match: {area: fill-room}",
    ),
    (
        "    - match: {system: [disconnected, buffer_full]}\n      policy: facilities-default\n",
        "    - policy: facilities-default\n",
        "alerting.routes[1]",
        "only the last route may leave out match",
        "- policy: facilities-default\n    - policy",
    ),
    (
        "    - match: {system: [disconnected, buffer_full]}",
        "    - match: {}",
        "alerting.routes[1].match",
        "give at least one key to match on (a route without match is the default route)",
        "match: {}",
    ),
    (
        "    - match: {system: [disconnected, buffer_full]}",
        "    - match: {system: [disconnected], area: [cold-room]}",
        "alerting.routes[1].match.system",
        "system events have no area: a route matches system events or alarms, not both",
        "system: [disconnected], area",
    ),
    (
        "{notify: {contact: ops-webhook}}",
        "{notify: {contact: ops-webhook, team: facilities}}",
        "alerting.policies[1].steps[0].notify",
        "give exactly one of schedule, contact or team",
        "ops-webhook, team",
    ),
    (
        "      timezone: Europe/Amsterdam\n      rotation: {people: [alice, bob], start: "
        '2026-01-05, every: 7d, handover: "09:00"}\n      shifts:\n        - {who: bob, days: '
        'mon-fri, from: "08:00", to: "17:00"}\n',
        "      timezone: Europe/Amsterdam\n",
        "alerting.schedules[0]",
        "give whom the schedule follows: a rotation or an ical file, and/or shifts",
        "- id: cold-storage",
    ),
    (
        "      timezone: Europe/Amsterdam\n",
        "      timezone: Europe/Amsterdam\n      ical: oncall.ics\n",
        "alerting.schedules[0].ical",
        "give either a rotation or an ical file, not both",
        "ical: oncall.ics",
    ),
    (
        "timezone: Europe/Amsterdam\n      rotation",
        "timezone: Europe/Amsterdm\n      rotation",
        "alerting.schedules[0].timezone",
        "unknown time zone 'Europe/Amsterdm'",
        "Europe/Amsterdm",
    ),
    (
        'every: 7d, handover: "09:00"',
        'every: 36h, handover: "09:00"',
        "alerting.schedules[0].rotation.every",
        "must be a whole number of days",
        "every: 36h",
    ),
    (
        'every: 7d, handover: "09:00"',
        'every: 7d, handover: "24:00"',
        "alerting.schedules[0].rotation.handover",
        "must be a time of day before 24:00",
        'handover: "24:00"',
    ),
    (
        "start: 2026-01-05",
        "start: 2026-1-5",
        "alerting.schedules[0].rotation.start",
        "must be a date 'YYYY-MM-DD', got '2026-1-5'",
        "start: 2026-1-5",
    ),
    (
        'days: mon-fri, from: "08:00", to: "17:00"',
        'days: mon-fri, from: "08:00", to: "08:00"',
        "alerting.schedules[0].shifts[0].to",
        "must differ from 'from'",
        'to: "08:00"',
    ),
    (
        "days: mon-fri,",
        "days: mon-fry,",
        "alerting.schedules[0].shifts[0].days",
        "unknown day 'mon-fry'",
        "mon-fry",
    ),
    (
        'to: "2026-12-27 08:00"',
        'to: "2026-12-24 17:00"',
        "alerting.schedules[0].overrides[0].to",
        "must be after 'from' (2026-12-24 18:00)",
        "2026-12-24 17:00",
    ),
    (
        'from: "2026-12-24 18:00"',
        'from: "2026-12-24T18:00+01:00"',
        "alerting.schedules[0].overrides[0].from",
        "must be a local time without a UTC offset",
        "T18:00+01:00",
    ),
    (
        '      to: "2026-12-10 12:00"\n',
        "",
        "alerting.maintenance[0].to",
        "is required with from",
        "- id: freezer-defrost",  # a missing key: the line of its mapping
    ),
    (
        '      to: "2026-12-10 12:00"\n',
        '      to: "2026-12-10 07:00"\n',
        "alerting.maintenance[0].to",
        "must be after 'from' (2026-12-10 08:00)",
        "2026-12-10 07:00",
    ),
    (
        '      to: "2026-12-10 12:00"\n',
        '      to: "2026-12-10 12:00"\n      weekly: {days: sat, from: "06:00", to: "07:00"}\n',
        "alerting.maintenance[0].weekly",
        "give either from/to (once) or weekly, not both",
        'to: "07:00"',
    ),
    (
        'weekly: {days: sat, from: "06:00", to: "08:00"}',
        'weekly: {days: mon-sun, from: "00:00", to: "24:00"}',
        "alerting.maintenance[1].weekly",
        "covers the whole week",
        "mon-sun",
    ),
    (
        "scope: {area: [fill-room]}",
        "scope: {}",
        "alerting.maintenance[1].scope",
        "give at least one of area, instrument or sensor",
        "scope: {}",
    ),
    (
        "secret_env: LINK_SECRET",
        "secret_env: link-secret",
        "alerting.links.secret_env",
        "must be the name of an environment variable",
        "link-secret",
    ),
    (
        'base_url: "https://envmon.example.org"',
        'base_url: "envmon.example.org"',
        "alerting.links.base_url",
        "must be an http(s) URL",
        'base_url: "envmon',
    ),
    (
        "url: http://127.0.0.1:9093",
        "url: 127.0.0.1:9093",
        "alerting.alertmanager.url",
        "must be an http(s) URL",
        "url: 127.0.0.1:9093",
    ),
    (
        "grouping: {window: 3s}",
        "grouping: {window: soon}",
        "alerting.grouping.window",
        "must be seconds as a number or a duration",
        "window: soon",
    ),
    (
        "      reminder: 1h\n",
        "      reminder: 1h\n      repeats: 2\n",
        "alerting.policies[0].repeats",
        "unknown key 'repeats'; did you mean 'repeat'?",
        "repeats: 2",
    ),
    (
        "{id: sms, url_env: ALICE_SMS_URL}",
        "{id: sms, url_env: 1ALICE}",
        "alerting.contacts[0].channels[1].url_env",
        "must be the name of an environment variable",
        "1ALICE",
    ),
    (
        "{id: sms, url_env: ALICE_SMS_URL}",
        "{id: sms}",
        "alerting.contacts[0].channels[1]",
        "give either url (an apprise URL) or url_env (a variable holding one)",
        "{id: sms}",
    ),
    (
        '{id: hook, url: "json://127.0.0.1:9000/envmon"}',
        '{id: hook, url: "json://127.0.0.1:9000/envmon", url_env: HOOK_URL}',
        "alerting.contacts[2].channels[0]",
        "give either url (an apprise URL) or url_env (a variable holding one)",
        "url_env: HOOK_URL",
    ),
    (
        '{id: hook, url: "json://127.0.0.1:9000/envmon"}',
        '{id: hook, url: "jsn://127.0.0.1:9000/envmon"}',
        "alerting.contacts[2].channels[0].url",
        "unknown apprise scheme 'jsn'://",
        "jsn://",
    ),
    (
        '{id: hook, url: "json://127.0.0.1:9000/envmon"}',
        '{id: hook, url: "json://"}',
        "alerting.contacts[2].channels[0].url",
        "apprise cannot read this json:// URL",
        'url: "json://"',
    ),
    (
        '{id: hook, url: "json://127.0.0.1:9000/envmon"}',
        '{id: hook, url: "127.0.0.1:9000/envmon"}',
        "alerting.contacts[2].channels[0].url",
        "must be an apprise URL such as",
        'url: "127.0.0.1',
    ),
    (
        "${SMTP_PASSWORD}",
        "${SMTP-PASSWORD}",
        "alerting.contacts[0].channels[0].url",
        "a ${...} placeholder must name an environment variable",
        "SMTP-PASSWORD",
    ),
    (
        "${SMTP_PASSWORD}",
        "${SMTP_PASSWORD",
        "alerting.contacts[0].channels[0].url",
        "has a '${' without its closing '}'",
        "${SMTP_PASSWORD@",
    ),
]


class TestStructure:
    """Ids are unique, routes end with the default one, values are well formed."""

    @pytest.mark.parametrize(("old", "new", "path", "message", "line_at"), STRUCTURE_CASES)
    def test_a_malformed_section_is_refused_where_it_is_wrong(
        self, old, new, path, message, line_at
    ):
        """The issue names the YAML path and the line at fault."""
        text = site_text(ALERTING.replace(old, new, 1))
        assert ALERTING.count(old) == 1, old
        issue = only_issue(text)
        assert issue.path == path
        assert message in issue.message
        first = line_at.split("\n", 1)[0]
        if "\n" in line_at:  # a fragment over lines: its first line where the rest follows
            start = text.index(line_at)
            assert issue.line == text.count("\n", 0, start) + 1
        else:
            assert issue.line == line_of(text, first)

    @pytest.mark.parametrize("missing", ["contacts", "policies", "routes"])
    def test_the_core_lists_are_required(self, missing):
        """Contacts, policies and routes must be given."""
        kept = "\n".join(
            line
            for line in (
                "  contacts: [{id: bob, name: Bob, channels: [{id: h, url: 'json://127.0.0.1/x'}]}]",
                "  policies: [{id: p, steps: [{notify: {contact: bob}}]}]",
                "  routes: [{policy: p}]",
            )
            if not line.startswith(f"  {missing}:")
        )
        issue = only_issue(site_text(kept + "\n"))
        assert (issue.path, issue.message) == (f"alerting.{missing}", "is required")
        assert issue.line == SITE.count("\n") + 1


class TestSecrets:
    """Passwords live in environment variables, and no message echoes one."""

    @pytest.mark.parametrize(
        ("url", "where"),
        [
            (f"mailto://envmon:{SECRET}@smtp.example.org:587?to=bob@example.org", "in it:"),
            (f"json://envmon:{SECRET}@127.0.0.1:9000/x", "in it:"),
            (f"json://envmon:pre${{PART}}{SECRET}@127.0.0.1:9000/x", "in it:"),
            (
                f"mailto://smtp.example.org?to=bob@example.org&pass={SECRET}",
                "in its 'pass' parameter",
            ),
        ],
    )
    def test_a_password_written_in_a_url_is_refused_unechoed(self, url, where):
        """The issue says to use ${NAME}; neither it nor the error holds the password."""
        text = changed(
            '{id: email, url: "mailto://smtp.example.org?to=bob@example.org&from=envmon@example.org"}',
            f'{{id: email, url: "{url}"}}',
        )
        with pytest.raises(ConfigError) as caught:
            parse_site(text, source="site.yaml")
        (issue,) = caught.value.issues
        assert issue.path == "alerting.contacts[1].channels[0].url"
        assert f"has a password written {where}" in issue.message
        assert "${NAME}" in issue.message
        assert issue.line == line_of(text, SECRET)
        assert SECRET not in str(caught.value)

    def test_a_placeholder_password_is_accepted(self):
        """``user:${NAME}@`` names the variable holding the password."""
        assert (
            url_problem("mailto://envmon:${SMTP_PASSWORD}@smtp.example.org?to=a@example.org")
            is None
        )

    def test_a_placeholder_token_is_accepted(self):
        """A token of a fixed format behind a placeholder is checked only when sent."""
        assert url_problem("tgram://${TELEGRAM_TOKEN}/${TELEGRAM_CHAT}") is None

    @pytest.mark.parametrize(
        "channel",
        [
            f'{{id: email, url: "jsn://u:{SECRET}@host/x"}}',
            f'{{id: email, url: "mailto://u:{SECRET}@smtp.example.org", url_env: X}}',
            f'{{id: email, url: "mailto://u:{SECRET}@smtp.example.org", colour: red}}',
        ],
    )
    def test_no_issue_about_a_channel_echoes_its_url(self, channel):
        """Whatever is wrong with a channel, its URL is not quoted."""
        text = changed(
            '{id: email, url: "mailto://smtp.example.org?to=bob@example.org&from=envmon@example.org"}',
            channel,
        )
        with pytest.raises(ConfigError) as caught:
            parse_site(text, source="site.yaml")
        assert SECRET not in str(caught.value)

    def test_a_pydantic_error_does_not_hold_the_url_either(self):
        """Validated directly, the refused URL is hidden from the ValidationError."""
        with pytest.raises(ValidationError) as caught:
            ContactChannelConfig.model_validate({"id": "x", "url": f"json://u:{SECRET}@h/x"})
        assert SECRET not in str(caught.value)


class TestResolveUrl:
    """A channel's URL is completed from the environment at send time."""

    def test_placeholders_are_filled_in(self):
        """Each ``${NAME}`` is replaced by its variable's value."""
        channel = ContactChannelConfig(id="hook", url="json://${HOOK_HOST}:9000/${HOOK_PATH}")
        url = channel.resolve_url({"HOOK_HOST": "127.0.0.1", "HOOK_PATH": "envmon"})
        assert url == "json://127.0.0.1:9000/envmon"

    def test_a_password_is_percent_encoded(self):
        """A password holding URL delimiters survives in the user information."""
        channel = ContactChannelConfig(id="mail", url="mailto://envmon:${PW}@smtp.example.org")
        assert channel.resolve_url({"PW": "p@ss/w:rd"}) == (
            "mailto://envmon:p%40ss%2Fw%3Ard@smtp.example.org"
        )

    def test_url_env_gives_the_whole_url(self):
        """``url_env`` names a variable holding the whole apprise URL."""
        channel = ContactChannelConfig(id="sms", url_env="ALICE_SMS_URL")
        assert channel.resolve_url({"ALICE_SMS_URL": "json://h/x"}) == "json://h/x"

    @pytest.mark.parametrize(
        ("channel", "variable"),
        [
            (ContactChannelConfig(id="mail", url="mailto://u:${PW}@smtp.example.org"), "PW"),
            (ContactChannelConfig(id="sms", url_env="ALICE_SMS_URL"), "ALICE_SMS_URL"),
        ],
    )
    def test_a_missing_variable_is_named(self, channel, variable):
        """The error names the variable and the channel, never another variable's value."""
        with pytest.raises(AlertingConfigError) as caught:
            channel.resolve_url({"OTHER": SECRET})
        assert variable in str(caught.value)
        assert channel.id in str(caught.value)
        assert SECRET not in str(caught.value)


AMSTERDAM = ZoneInfo("Europe/Amsterdam")


class TestMaintenanceWindows:
    """A window is active between its local times; ``end_after`` says when it ends."""

    def windows(self):
        alerting = parse_site(site_text()).alerting
        assert alerting is not None
        return alerting.maintenance

    def test_a_one_off_window_in_the_site_zone(self):
        """08:00-12:00 Amsterdam time is 07:00-11:00 UTC in December."""
        once = self.windows()[0]
        assert not once.active(datetime(2026, 12, 10, 6, 59, tzinfo=UTC), AMSTERDAM)
        assert once.active(datetime(2026, 12, 10, 7, 0, tzinfo=UTC), AMSTERDAM)
        assert once.end_after(datetime(2026, 12, 10, 9, tzinfo=UTC), AMSTERDAM) == datetime(
            2026, 12, 10, 11, tzinfo=UTC
        )
        assert once.end_after(datetime(2026, 12, 10, 11, tzinfo=UTC), AMSTERDAM) is None

    def test_a_weekly_window_follows_summer_time(self):
        """Saturday 06:00-08:00 local is 05:00-07:00 UTC in winter, 04:00-06:00 in summer."""
        weekly = self.windows()[1]
        winter = datetime(2026, 12, 12, 5, 30, tzinfo=UTC)  # a Saturday
        assert weekly.end_after(winter, AMSTERDAM) == datetime(2026, 12, 12, 7, tzinfo=UTC)
        summer = datetime(2026, 6, 13, 4, 30, tzinfo=UTC)  # a Saturday
        assert weekly.end_after(summer, AMSTERDAM) == datetime(2026, 6, 13, 6, tzinfo=UTC)
        assert not weekly.active(datetime(2026, 6, 13, 6, tzinfo=UTC), AMSTERDAM)
        assert not weekly.active(datetime(2026, 12, 14, 5, 30, tzinfo=UTC), AMSTERDAM)  # Monday


class TestAlertingFile:
    """``alerting: FILE`` reads the section from a file beside the site file."""

    def write(self, tmp_path: Path, alerting: str) -> Path:
        (tmp_path / "alerts.yaml").write_text(alerting, encoding="utf-8")
        site = tmp_path / "site.yaml"
        site.write_text(f"{SITE}alerting: alerts.yaml\n", encoding="utf-8")
        return site

    def test_the_section_is_read_from_the_file(self, tmp_path):
        """The site holds the same section as written inline."""
        section = "\n".join(line[2:] for line in ALERTING.splitlines()) + "\n"
        site = load_site(self.write(tmp_path, section))
        assert site.alerting == parse_site(site_text()).alerting

    def test_issues_name_the_file_and_its_line(self, tmp_path):
        """A bad reference in the file is located in that file."""
        section = "\n".join(line[2:] for line in ALERTING.splitlines()) + "\n"
        section = section.replace("members: [alice, bob]", "members: [alice, bobb]")
        with pytest.raises(ConfigError) as caught:
            load_site(self.write(tmp_path, section))
        (issue,) = caught.value.issues
        assert issue.file == str(tmp_path / "alerts.yaml")
        assert issue.path == "teams[0].members[1]"
        assert issue.line == line_of(section, "bobb")
        assert "no contact 'bobb'" in issue.message

    def test_yaml_problems_in_the_file_name_it(self, tmp_path):
        """A duplicate key in the file is reported with the file's name and line."""
        text = "contacts: []\npolicies: []\npolicies: []\nroutes: []\n"
        with pytest.raises(ConfigError) as caught:
            load_site(self.write(tmp_path, text))
        duplicate = [i for i in caught.value.issues if "duplicate key" in i.message]
        assert duplicate == [
            ConfigIssue(
                "policies",
                "duplicate key 'policies' (first defined at line 2)",
                3,
                1,
                str(tmp_path / "alerts.yaml"),
            )
        ]

    def test_a_file_that_is_not_yaml(self, tmp_path):
        """A syntax error names the file and its line."""
        with pytest.raises(ConfigError) as caught:
            load_site(self.write(tmp_path, "contacts: [\n  - x\n"))
        (issue,) = caught.value.issues
        assert (issue.file, issue.path) == (str(tmp_path / "alerts.yaml"), "")
        assert issue.message.startswith("invalid YAML")

    def test_a_missing_file(self, tmp_path):
        """A file that cannot be read is reported at the site's ``alerting`` key."""
        site = tmp_path / "site.yaml"
        site.write_text(f"{SITE}alerting: nowhere.yaml\n", encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_site(site)
        (issue,) = caught.value.issues
        assert issue.path == "alerting"
        assert issue.message.startswith("nowhere.yaml: cannot read the file")
        assert issue.line == SITE.count("\n") + 1

    def test_an_empty_file(self, tmp_path):
        """An empty file is refused, naming it."""
        with pytest.raises(ConfigError) as caught:
            load_site(self.write(tmp_path, "# nothing yet\n"))
        (issue,) = caught.value.issues
        assert (issue.file, issue.path) == (str(tmp_path / "alerts.yaml"), "")
        assert "the file is empty" in issue.message


class TestStandalone:
    """Validated on its own, the section checks its own references but not the site's."""

    def test_site_references_are_not_checked_without_a_site(self):
        """An area no site has is fine when there is no site to ask."""
        alerting = AlertingConfig.model_validate(
            {
                "contacts": [
                    {"id": "a", "name": "A", "channels": [{"id": "h", "url": "json://h/x"}]}
                ],
                "policies": [{"id": "p", "steps": [{"notify": {"contact": "a"}}]}],
                "routes": [{"match": {"area": "anywhere"}, "policy": "p"}, {"policy": "p"}],
            }
        )
        assert alerting.routes[0].match is not None

    def test_own_references_are_checked(self):
        """A route to an unknown policy is refused without a site too."""
        with pytest.raises(ValidationError) as caught:
            AlertingConfig.model_validate(
                {
                    "contacts": [
                        {"id": "a", "name": "A", "channels": [{"id": "h", "url": "json://h/x"}]}
                    ],
                    "policies": [{"id": "p", "steps": [{"notify": {"contact": "a"}}]}],
                    "routes": [{"policy": "q"}],
                }
            )
        errors = [e for e in caught.value.errors() if e["type"] != "too_short"]
        assert [e["loc"] for e in errors] == [("routes", 0, "policy")]
