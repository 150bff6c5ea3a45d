"""Tests of site file validation: every issue, with its YAML path and line."""

from __future__ import annotations

import textwrap

import pytest

from envmon.config import ConfigError, load_site, parse_site
from envmon.errors import ConfigIssue
from envmon.testing import site_yaml

from .sites import particle_room

# Two areas; the second area's first instrument has three channels and the third
# channel's action_high is below its alert_high.
CROSS_FIELD = """\
site:
  name: Test site
areas:
  - id: room-a
    name: Room A
  - id: room-b
    name: Room B
    instruments:
      - id: inc-1
        name: Incubator 1
        kind: incubator
        channels:
          - parameter: temperature
            unit: degC
          - parameter: co2
            unit: "%"
          - parameter: humidity
            unit: "%RH"
            limits:
              alert_high: 95
              action_high: 90
"""


def issues_of(text: str) -> list[ConfigIssue]:
    """Parse ``text`` expecting a ConfigError; return its issues."""
    with pytest.raises(ConfigError) as caught:
        parse_site(text, source="site.yaml")
    assert caught.value.source == "site.yaml"
    return caught.value.issues


def rendered(text: str) -> list[str]:
    """Return the issues of ``text`` as ``line N: path: message`` strings."""
    return [str(issue) for issue in issues_of(text)]


def only_issue(text: str) -> ConfigIssue:
    """Return the single issue of ``text``."""
    issues = issues_of(text)
    assert len(issues) == 1, issues
    return issues[0]


def line_containing(text: str, fragment: str) -> int:
    """Return the 1-based number of the first line of ``text`` containing ``fragment``."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def room_sensor(limits: str) -> str:
    """An ``areas:`` block with one temperature channel carrying ``limits``."""
    return f"""
    - id: room
      name: Room
      instruments:
        - id: rs
          name: Room sensor
          kind: room_sensor
          channels:
            - parameter: temperature
              unit: degC
              limits: {limits}
    """


class TestParseSiteErrors:
    """``parse_site`` reports every problem as a ConfigIssue with YAML path and line."""

    def test_cross_field_issue_names_path_and_line(self):
        """An action limit below its alert limit is reported on the action_high key."""
        issue = only_issue(CROSS_FIELD)
        assert issue.path == "areas[1].instruments[0].channels[2].limits.action_high"
        assert issue.line == 21
        assert issue.message.startswith("must be above alert_high")
        assert str(issue).startswith(
            "line 21: areas[1].instruments[0].channels[2].limits.action_high: "
            "must be above alert_high"
        )

    def test_all_issues_are_listed_at_once(self):
        """Several independent mistakes are reported together, in line order."""
        text = (
            CROSS_FIELD.replace("kind: incubator", "kind: incubatr").replace(
                "name: Room A", "name: Room A\n    grade: E"
            )
            + "    colour: blue\n"
        )
        lines = rendered(text)
        assert len(lines) == 4
        assert lines[0].startswith("line 6: areas[0].grade: must be 'A', 'B', 'C' or 'D'")
        assert lines[1].startswith("line 12: areas[1].instruments[0].kind: must be")
        assert "(got 'incubatr')" in lines[1]
        assert lines[2].startswith(
            "line 22: areas[1].instruments[0].channels[2].limits.action_high"
        )
        assert lines[3] == "line 23: areas[1].colour: unknown key 'colour'; expected one of: " + (
            "id, name, grade, iso_class, occupancy, particle_alert_fraction, instruments"
        )
        assert [issue.line for issue in issues_of(text)] == [6, 12, 22, 23]

    def test_config_error_message_lists_issues(self):
        """The exception text names the source and every issue."""
        with pytest.raises(ConfigError, match=r"site.yaml: 1 error in the configuration") as caught:
            parse_site(CROSS_FIELD, source="site.yaml")
        assert "limits.action_high" in str(caught.value)

    def test_duplicate_keys(self):
        """A key written twice is an error on the second occurrence."""
        text = CROSS_FIELD.replace(
            "action_high: 90", "action_high: 99\n              alert_high: 96"
        )
        issue = only_issue(text)
        assert issue.path == "areas[1].instruments[0].channels[2].limits.alert_high"
        assert issue.line == 22
        assert issue.message == "duplicate key 'alert_high' (first defined at line 20)"

    def test_unknown_key_suggests_the_closest(self):
        """A misspelt key is refused with a suggestion."""
        issue = only_issue(site_yaml(room_sensor("{alert_hihg: 25}")))
        assert issue.path == "areas[0].instruments[0].channels[0].limits.alert_hihg"
        assert issue.message == "unknown key 'alert_hihg'; did you mean 'alert_high'?"

    @pytest.mark.parametrize(
        ("snippet", "path"),
        [
            ("site: {name: S, colour: red}", "site.colour"),
            ("site: {name: S}\nextra: 1", "extra"),
        ],
    )
    def test_unknown_keys_anywhere(self, snippet, path):
        """Unknown keys are refused at every level."""
        issue = only_issue(site_yaml(room_sensor("{}"), site=snippet))
        assert issue.path == path
        assert issue.message.startswith(f"unknown key {path.rsplit('.', 1)[-1]!r}")

    @pytest.mark.parametrize(
        ("limits", "key"),
        [
            ("{delay: 5 minutes}", "delay"),
            ("{delay: -5}", "delay"),
            ("{delay: 1x}", "delay"),
            ("{stale_after: 0}", "stale_after"),
            ("{stale_after: true}", "stale_after"),
        ],
    )
    def test_bad_durations(self, limits, key):
        """Durations that are not seconds or ``30s``/``5m``/``1h30m`` strings are refused."""
        issue = only_issue(site_yaml(room_sensor(limits)))
        assert issue.path == f"areas[0].instruments[0].channels[0].limits.{key}"
        assert issue.line == 12
        assert "must be" in issue.message

    @pytest.mark.parametrize(
        ("limits", "key", "message"),
        [
            ("{alert_high: 25, alert_low: 26}", "alert_low", "must be below alert_high (25)"),
            ("{action_high: 25, alert_low: 25}", "alert_low", "must be below action_high (25)"),
            ("{alert_low: 19, action_low: 19.5}", "action_low", "must be below alert_low (19)"),
            ("{alert_high: 25, action_low: 30}", "action_low", "must be below alert_high (25)"),
            ("{alert_high: 25, action_high: 25}", "action_high", "must be above alert_high (25)"),
            ("{deadband: -0.1}", "deadband", "must be greater than or equal to 0 (got -0.1)"),
            ("{consecutive: 0}", "consecutive", "must be greater than or equal to 1 (got 0)"),
            ("{consecutive: 1.5}", "consecutive", "must be a valid integer (got 1.5)"),
            ("{bad_after: 0}", "bad_after", "must be greater than or equal to 1 (got 0)"),
            ("{rate_of_change_per_min: 0}", "rate_of_change_per_min", "must be greater than 0"),
            ("{alert_high: '25'}", "alert_high", "must be a valid number (got '25')"),
            ("{alert_high: .nan}", "alert_high", "must be a finite number"),
        ],
    )
    def test_limit_checks_land_on_the_field(self, limits, key, message):
        """Each limit rule is reported on the key that breaks it."""
        issue = only_issue(site_yaml(room_sensor(limits)))
        assert issue.path == f"areas[0].instruments[0].channels[0].limits.{key}"
        assert issue.message.startswith(message)

    def test_yaml_syntax_error(self):
        """Text that is not YAML gives one issue with the line of the problem."""
        issue = only_issue("site:\n  name: [unclosed\nareas: []\n")
        assert issue.message.startswith("invalid YAML")
        assert issue.line == 3

    def test_empty_file(self):
        """An empty file is an error, not an empty site."""
        assert "empty" in only_issue("").message

    def test_not_a_mapping(self):
        """A site file must be a mapping."""
        issue = only_issue("- a\n- b\n")
        assert issue.path == ""
        assert issue.message.startswith("must be a mapping")

    def test_missing_required_fields(self):
        """Missing required keys are named with the line of their parent."""
        text = "site: {}\nareas:\n  - id: a\n    instruments:\n      - id: x\n        kind: other\n"
        lines = rendered(text)
        assert lines == [
            "line 1: site.name: is required",
            "line 3: areas[0].name: is required",
            "line 5: areas[0].instruments[0].name: is required",
            "line 5: areas[0].instruments[0].channels: is required",
        ]

    def test_empty_lists_refused(self):
        """A site needs areas; an instrument needs channels."""
        assert rendered("site: {name: S}\nareas: []\n") == [
            "line 2: areas: must have at least 1 item(s)"
        ]

    def test_unknown_timezone(self):
        """Time zones must be IANA names."""
        issue = only_issue(
            site_yaml(room_sensor("{}"), site="site: {name: S, timezone: Mars/Olympus}")
        )
        assert issue.path == "site.timezone"
        assert issue.line == 1
        assert "unknown time zone 'Mars/Olympus'" in issue.message

    def test_timezone_name_too_long_for_a_file_name(self):
        """A very long zone name (an OSError when looked up as a file) is an issue, cut short."""
        zone = "x" * 5_000
        issue = only_issue(
            site_yaml(room_sensor("{}"), site=f"site: {{name: S, timezone: {zone}}}")
        )
        assert issue.path == "site.timezone"
        assert issue.message.startswith("unknown time zone 'xxxx")
        assert len(issue.message) < 400

    @pytest.mark.parametrize("fraction", ["0", "1.5", "-0.2"])
    def test_alert_fraction_range(self, fraction):
        """The particle alert fraction must be in (0, 1]."""
        issue = only_issue(
            site_yaml(
                room_sensor("{}"), site=f"site: {{name: S, particle_alert_fraction: {fraction}}}"
            )
        )
        assert issue.path == "site.particle_alert_fraction"

    def test_ids_must_be_slugs(self):
        """Ids are letters, digits, '-', '_' and '.'."""
        issue = only_issue(site_yaml(room_sensor("{}").replace("id: room", "id: the room")))
        assert issue.path == "areas[0].id"
        assert "must be an id" in issue.message

    def test_duplicate_area_ids(self):
        """Area ids are unique; the second use is the error."""
        text = site_yaml(room_sensor("{}") + "- {id: room, name: Again}\n")
        issue = only_issue(text)
        assert issue.path == "areas[1].id"
        assert issue.message == "duplicate area id 'room' (first used at areas[0].id, line 3)"

    def test_duplicate_instrument_ids_across_areas(self):
        """Instrument ids are unique across the whole site."""
        second = room_sensor("{}").replace("id: room", "id: room-2")
        issues = issues_of(site_yaml(room_sensor("{}") + second))
        paths = [issue.path for issue in issues]
        assert "areas[1].instruments[0].id" in paths
        assert "areas[1].instruments[0].channels[0].parameter" in paths  # same sensor id too

    def test_duplicate_sensor_ids(self):
        """Two channels resolving to the same sensor id are refused on the second."""
        areas = """
        - id: room
          name: Room
          instruments:
            - id: rs
              name: Room sensor
              kind: room_sensor
              channels:
                - {parameter: temperature, unit: degC}
                - {parameter: temperature, unit: degC}
                - {parameter: humidity, sensor_id: rs.temperature, unit: "%RH"}
        """
        issues = issues_of(site_yaml(areas))
        assert [(issue.path, issue.line) for issue in issues] == [
            ("areas[0].instruments[0].channels[1].parameter", 11),
            ("areas[0].instruments[0].channels[2].sensor_id", 12),
        ]
        assert "duplicate sensor id 'rs.temperature'" in issues[0].message

    def test_grade_and_iso_class_are_exclusive(self):
        """A room has a grade or an ISO class, not both."""
        issue = only_issue(site_yaml(particle_room(grade="B", area_extra="iso_class: 7")))
        assert issue.path == "areas[0].iso_class"
        assert issue.message == "give either grade or iso_class, not both"

    @pytest.mark.parametrize(
        ("iso", "path"),
        [
            ("10", "areas[0].iso_class"),
            ("{at_rest: 7, in_operation: 5}", "areas[0].iso_class.in_operation"),
            ("{at_rest: 5}", "areas[0].iso_class.in_operation"),
        ],
    )
    def test_iso_class_checks(self, iso, path):
        """ISO classes are 1–9 and a room is not cleaner in operation than at rest."""
        issue = only_issue(site_yaml(particle_room(grade=None, iso_class=iso)))
        assert issue.path == path

    def test_particle_unit(self):
        """Particle channels count particles per cubic metre."""
        issue = only_issue(site_yaml(particle_room().replace("unit: particles/m3", "unit: counts")))
        assert issue.path == "areas[0].instruments[0].channels[0].unit"
        assert "'particles/m3'" in issue.message

    def test_alert_fraction_only_for_particles(self):
        """A channel alert fraction makes sense only for particle channels."""
        text = site_yaml(
            room_sensor("{}").replace("unit: degC", "unit: degC\n              alert_fraction: 0.5")
        )
        issue = only_issue(text)
        assert issue.path == "areas[0].instruments[0].channels[0].alert_fraction"

    def test_sample_volume_only_for_counters(self):
        """Only particle counters have a sample volume."""
        text = site_yaml(
            room_sensor("{}").replace(
                "kind: room_sensor", "kind: room_sensor\n          sample_volume_m3: 0.1"
            )
        )
        issue = only_issue(text)
        assert issue.path == "areas[0].instruments[0].sample_volume_m3"

    @pytest.mark.parametrize(
        ("occupancy", "path", "message"),
        [
            (
                "sometimes",
                "areas[0].occupancy",
                "must be 'at_rest' or 'in_operation' (got 'sometimes')",
            ),
            ("{}", "areas[0].occupancy", "must be 'at_rest', 'in_operation' or {schedule"),
            (
                "{schedule: {in_operation: [{days: [mon], from: '07:00', to: '25:00'}]}}",
                "areas[0].occupancy.schedule.in_operation[0].to",
                "must be a time of day between 00:00 and 24:00",
            ),
            (
                "{schedule: {in_operation: [{days: [mon, funday], from: '07:00', to: '19:00'}]}}",
                "areas[0].occupancy.schedule.in_operation[0].days",
                "unknown day 'funday'",
            ),
            (
                "{schedule: {in_operation: [{days: [mon], from: '24:00', to: '19:00'}]}}",
                "areas[0].occupancy.schedule.in_operation[0].from",
                "must be less than or equal to 1439",
            ),
            (
                "{schedule: {in_operation: [{days: [mon], from: 700, to: '19:00'}]}}",
                "areas[0].occupancy.schedule.in_operation[0].from",
                "must be a time of day",
            ),
            (
                "{schedule: {timezone: Nowhere/Land, "
                "in_operation: [{days: [mon], from: '07:00', to: '19:00'}]}}",
                "areas[0].occupancy.schedule.timezone",
                "unknown time zone",
            ),
            (
                "{schedule: {in_operation: []}}",
                "areas[0].occupancy.schedule.in_operation",
                "must have at least 1",
            ),
        ],
    )
    def test_occupancy_checks(self, occupancy, path, message):
        """Occupancy is a state or a weekly schedule of valid days and times."""
        issue = only_issue(site_yaml(particle_room(occupancy=occupancy)))
        assert issue.path == path
        assert issue.message.startswith(message)

    def test_conflict_with_grade_default(self):
        """An explicit alert limit above the grade's default action limit is refused."""
        text = site_yaml(particle_room(grade="A", limits="{alert_high: 5000}"))
        issue = only_issue(text)
        assert issue.path == "areas[0].instruments[0].channels[0].limits.alert_high"
        assert issue.line == line_containing(text, "alert_high: 5000")
        assert issue.message == (
            "must be below action_high (3,520, grade A at rest, EU GMP Annex 1 Table 5)"
        )

    def test_conflict_in_one_state_names_the_state(self):
        """In a scheduled room a conflict that exists in one state says which."""
        schedule = "{schedule: {in_operation: [{days: [mon-fri], from: '07:00', to: '19:00'}]}}"
        issue = only_issue(
            site_yaml(
                particle_room(
                    grade="B", occupancy=schedule, limits="{action_high: 100000}"
                ).replace("action_high: 100000", "alert_high: 100000")
            )
        )
        assert issue.path == "areas[0].instruments[0].channels[0].limits.alert_high"
        assert "grade B at rest" in issue.message

    def test_conflict_with_parameter_defaults(self):
        """A channel limit contradicting the parameter defaults is refused on the channel."""
        text = site_yaml(
            room_sensor("{action_high: 25}"),
            defaults="defaults:\n  parameters:\n    temperature: {alert_high: 30}",
        )
        issue = only_issue(text)
        assert issue.path == "areas[0].instruments[0].channels[0].limits.action_high"
        assert (
            issue.message == "must be above alert_high (30, from defaults.parameters.temperature)"
        )


class TestLoadSite:
    """``load_site`` reads a file and reports problems under the file's name."""

    def test_reads_a_file(self, tmp_path):
        """A valid file loads into a SiteConfig."""
        path = tmp_path / "site.yaml"
        path.write_text(site_yaml(room_sensor("{}")), encoding="utf-8")
        assert load_site(path).name == "Test site"
        assert load_site(str(path)).timezone == "Europe/Amsterdam"

    def test_missing_file(self, tmp_path):
        """A missing file is a ConfigError naming the file."""
        path = tmp_path / "nope.yaml"
        with pytest.raises(ConfigError) as caught:
            load_site(path)
        assert caught.value.source == str(path)
        assert "cannot read the file" in caught.value.issues[0].message

    def test_not_utf8(self, tmp_path):
        """Bytes that are not UTF-8 are an issue, not a crash."""
        path = tmp_path / "site.yaml"
        path.write_bytes(b"site: {name: \xff}\n")
        with pytest.raises(ConfigError, match="not UTF-8"):
            load_site(path)

    def test_not_utf8_names_the_line(self, tmp_path):
        """The issue for bytes that are not UTF-8 names their line."""
        path = tmp_path / "site.yaml"
        path.write_bytes(b"site:\n  name: ok\n  timezone: \xff\n")
        with pytest.raises(ConfigError) as caught:
            load_site(path)
        (issue,) = caught.value.issues
        assert issue.line == 3
        assert issue.message == "the file is not UTF-8 text (invalid start byte at byte 29)"

    def test_control_characters_name_the_line(self):
        """A character YAML refuses (NUL) is one issue on its line, without PyYAML's position."""
        with pytest.raises(ConfigError) as caught:
            parse_site("site:\n  name: a\x00b\n")
        (issue,) = caught.value.issues
        assert (issue.line, issue.message) == (
            2,
            "invalid YAML: unacceptable character #x0000: control characters are not allowed",
        )

    def test_issues_name_the_file(self, tmp_path):
        """Issues raised while loading carry the file path as source."""
        path = tmp_path / "bad.yaml"
        path.write_text(textwrap.dedent(CROSS_FIELD), encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_site(path)
        assert caught.value.source == str(path)
        assert caught.value.issues[0].line == 21
