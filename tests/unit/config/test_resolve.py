"""Tests of resolving the site schema into SensorSpecs the evaluation core runs on."""

from __future__ import annotations

import pytest

from envmon.config import SiteConfig, WeeklySchedule, parse_site
from envmon.sensors import ChannelRules, FixedOccupancy, LimitSet, Occupancy, SensorSpec
from envmon.testing import site_yaml

from .sites import load, particle_room

REST, OPERATION = Occupancy.AT_REST, Occupancy.IN_OPERATION
SCHEDULE = "{schedule: {in_operation: [{days: [mon-fri], from: '07:00', to: '19:00'}]}}"


def only_sensor(site: SiteConfig) -> SensorSpec:
    """Return the single sensor of a site."""
    [spec] = site.sensors()
    return spec


def limits_of(**kwargs: str) -> LimitSet:
    """Resolve one particle channel built by ``particle_room`` and return its limits."""
    rules = only_sensor(load(particle_room(**kwargs))).rules
    assert rules.limits_by_occupancy is None
    return rules.limits


class TestResolveSite:
    """``SiteConfig.sensors()`` applies defaults, grade limits and occupancy."""

    @pytest.mark.parametrize(
        ("grade", "state", "parameter", "action"),
        [
            ("A", "at_rest", "particles_0_5um", 3_520),
            ("A", "in_operation", "particles_0_5um", 3_520),
            ("A", "at_rest", "particles_5_0um", 29),
            ("A", "in_operation", "particles_5_0um", 29),
            ("B", "at_rest", "particles_0_5um", 3_520),
            ("B", "at_rest", "particles_5_0um", 29),
            ("B", "in_operation", "particles_0_5um", 352_000),
            ("B", "in_operation", "particles_5_0um", 2_930),
            ("C", "at_rest", "particles_0_5um", 352_000),
            ("C", "at_rest", "particles_5_0um", 2_930),
            ("C", "in_operation", "particles_0_5um", 3_520_000),
            ("C", "in_operation", "particles_5_0um", 29_300),
            ("D", "at_rest", "particles_0_5um", 3_520_000),
            ("D", "at_rest", "particles_5_0um", 29_300),
        ],
    )
    def test_grade_defaults(self, grade, state, parameter, action):
        """A particle channel's action limit defaults from grade and fixed occupancy."""
        limits = limits_of(grade=grade, occupancy=state, parameter=parameter)
        assert limits.action_high == action
        assert limits.alert_high == round(action * 0.8)
        assert limits.alert_low is None
        assert limits.action_low is None

    def test_grade_d_in_operation_has_no_limits(self):
        """Grade D in operation has no default limit at all."""
        assert limits_of(grade="D", occupancy="in_operation").is_empty()

    def test_grade_is_case_insensitive(self):
        """``grade: b`` is grade B."""
        assert limits_of(grade="b").action_high == 3_520

    @pytest.mark.parametrize(
        ("iso", "parameter", "action"),
        [
            ("5", "particles_0_5um", 3_520),
            ("7", "particles_0_5um", 352_000),
            ("8", "particles_5_0um", 29_300),
            ("{at_rest: 7, in_operation: 8}", "particles_0_5um", 352_000),
        ],
    )
    def test_iso_class_defaults(self, iso, parameter, action):
        """An ISO class gives Cn = 10^N·(0.1/D)^2.08 for the at-rest state."""
        assert limits_of(grade=None, iso_class=iso, parameter=parameter).action_high == action

    def test_iso_class_per_state(self):
        """An ISO class given per state gives occupancy-dependent limits."""
        room = particle_room(
            grade=None, iso_class="{at_rest: 7, in_operation: 8}", occupancy=SCHEDULE
        )
        by_state = only_sensor(load(room)).rules.limits_by_occupancy
        assert by_state is not None
        assert by_state[REST].action_high == 352_000
        assert by_state[OPERATION].action_high == 3_520_000

    def test_unclassified_room_has_no_particle_defaults(self):
        """A room with neither grade nor ISO class gets no particle limits by default."""
        assert limits_of(grade=None).is_empty()

    def test_site_alert_fraction(self):
        """The site's particle_alert_fraction sets the default alert limit."""
        site = load(particle_room(grade="B"), site="site: {name: S, particle_alert_fraction: 0.5}")
        assert only_sensor(site).rules.limits.alert_high == 1_760

    def test_area_alert_fraction_beats_site(self):
        """An area's particle_alert_fraction overrides the site's."""
        site = load(
            particle_room(grade="B", area_extra="particle_alert_fraction: 0.7"),
            site="site: {name: S, particle_alert_fraction: 0.5}",
        )
        assert only_sensor(site).rules.limits.alert_high == 2_464

    def test_channel_alert_fraction_beats_area(self):
        """A channel's alert_fraction overrides the area's and the site's."""
        site = load(
            particle_room(
                grade="B",
                area_extra="particle_alert_fraction: 0.7",
                channel_extra="alert_fraction: 0.9",
            ),
            site="site: {name: S, particle_alert_fraction: 0.5}",
        )
        assert only_sensor(site).rules.limits.alert_high == 3_168

    def test_alert_fraction_one_means_no_alert(self):
        """A fraction of 1 leaves the channel with an action limit only."""
        limits = limits_of(grade="B", channel_extra="alert_fraction: 1")
        assert limits == LimitSet(action_high=3_520)

    def test_explicit_action_overrides_default(self):
        """An explicit action limit replaces the grade default; the alert follows it."""
        assert limits_of(grade="B", limits="{action_high: 2000}") == LimitSet(
            alert_high=1_600, action_high=2_000
        )

    def test_explicit_alert_overrides_only_the_alert(self):
        """An explicit alert limit keeps the grade's action limit (key by key)."""
        assert limits_of(grade="B", limits="{alert_high: 1000}") == LimitSet(
            alert_high=1_000, action_high=3_520
        )

    def test_explicit_null_removes_a_limit(self):
        """``alert_high: null`` removes the derived alert limit."""
        assert limits_of(grade="B", limits="{alert_high: null}") == LimitSet(action_high=3_520)

    def test_explicit_limits_apply_in_both_states(self):
        """Explicit particle limits in a scheduled room make the limits state-independent."""
        rules = only_sensor(
            load(particle_room(grade="B", occupancy=SCHEDULE, limits="{action_high: 10000}"))
        ).rules
        assert rules.limits_by_occupancy is None
        assert rules.limits == LimitSet(alert_high=8_000, action_high=10_000)

    def test_scheduled_room_limits_by_occupancy(self):
        """A scheduled grade B room gets limits per state and a WeeklySchedule."""
        spec = only_sensor(load(particle_room(grade="B", occupancy=SCHEDULE)))
        assert spec.rules.limits_by_occupancy == {
            REST: LimitSet(alert_high=2_816, action_high=3_520),
            OPERATION: LimitSet(alert_high=281_600, action_high=352_000),
        }
        assert spec.rules.limits == LimitSet(alert_high=2_816, action_high=3_520)
        assert isinstance(spec.schedule, WeeklySchedule)
        assert spec.schedule.timezone == "Europe/Amsterdam"

    def test_scheduled_grade_d_in_operation_is_empty(self):
        """In a scheduled grade D room the in-operation limits are empty."""
        spec = only_sensor(load(particle_room(grade="D", occupancy=SCHEDULE)))
        assert spec.rules.limits_by_occupancy is not None
        assert spec.rules.limits_by_occupancy[OPERATION].is_empty()
        assert spec.rules.limits_by_occupancy[REST].action_high == 3_520_000

    def test_scheduled_grade_a_has_plain_limits(self):
        """Grade A limits are the same in both states, so no per-state limits are needed."""
        spec = only_sensor(load(particle_room(grade="A", occupancy=SCHEDULE)))
        assert spec.rules.limits_by_occupancy is None
        assert isinstance(spec.schedule, WeeklySchedule)

    def test_schedule_timezone_override(self):
        """A schedule may name its own time zone."""
        schedule = SCHEDULE.replace("{in_operation", "{timezone: Asia/Tokyo, in_operation")
        spec = only_sensor(load(particle_room(grade="B", occupancy=schedule)))
        assert isinstance(spec.schedule, WeeklySchedule)
        assert spec.schedule.timezone == "Asia/Tokyo"

    def test_fixed_occupancy(self):
        """A fixed occupancy gives plain limits for that state and a FixedOccupancy."""
        spec = only_sensor(load(particle_room(grade="C", occupancy="in_operation")))
        assert spec.schedule == FixedOccupancy(OPERATION)
        assert spec.rules.limits.action_high == 3_520_000

    def test_default_occupancy_is_at_rest(self):
        """A room without occupancy is at rest."""
        room = particle_room(grade="B").replace("occupancy: at_rest", "")
        assert only_sensor(load(room)).schedule == FixedOccupancy(REST)

    def test_rules_and_durations(self):
        """Rules resolve with durations in float seconds."""
        room = particle_room(
            limits="{delay: 1h30m, stale_after: 5m, consecutive: 2, deadband: 50, "
            "rate_of_change_per_min: 1000, bad_after: 3}"
        )
        rules = only_sensor(load(room)).rules
        assert rules == ChannelRules(
            limits=LimitSet(alert_high=2_816, action_high=3_520),
            delay_s=5400.0,
            consecutive=2,
            deadband=50.0,
            rate_of_change_per_min=1000.0,
            stale_after_s=300.0,
            bad_after=3,
        )
        assert isinstance(rules.delay_s, float)
        assert isinstance(rules.stale_after_s, float)

    def test_rule_defaults_when_unset(self):
        """Without any rule the channel has no delay, deadband or timeouts."""
        rules = only_sensor(load(particle_room())).rules
        assert (rules.delay_s, rules.deadband, rules.consecutive, rules.stale_after_s) == (
            0.0,
            0.0,
            None,
            None,
        )

    def test_defaults_layers(self):
        """Channel beats defaults.parameters beats defaults.all, key by key."""
        defaults = """
        defaults:
          all: {stale_after: 5m, bad_after: 3, delay: 30s}
          parameters:
            particles_0_5um: {stale_after: 3m, deadband: 100, action_high: 9999}
        """
        site = load(particle_room(grade=None, limits="{delay: 0}"), defaults=defaults)
        rules = only_sensor(site).rules
        assert rules.stale_after_s == 180.0
        assert rules.bad_after == 3
        assert rules.delay_s == 0.0
        assert rules.deadband == 100.0
        assert rules.limits == LimitSet(alert_high=7_999, action_high=9_999)

    def test_grade_default_beats_parameter_defaults(self):
        """The room grade is more specific than a site-wide parameter default."""
        defaults = "defaults:\n  parameters:\n    particles_0_5um: {action_high: 9999}"
        site = load(particle_room(grade="B"), defaults=defaults)
        assert only_sensor(site).rules.limits.action_high == 3_520

    def test_parameter_defaults_for_other_channels(self):
        """Parameter defaults give limits to non-particle channels too."""
        areas = """
        - id: cold
          name: Cold store
          instruments:
            - id: fridge-1
              name: Fridge
              kind: fridge
              channels:
                - {parameter: temperature, unit: degC}
                - {parameter: temperature, id: door-probe, unit: degC, limits: {action_low: 0}}
        """
        defaults = (
            "defaults:\n  parameters:\n"
            "    temperature: {alert_high: 7, action_high: 8, alert_low: 3, action_low: 2}"
        )
        specs = load(areas, defaults=defaults).sensors()
        assert specs[0].rules.limits == LimitSet(7, 8, 3, 2)
        assert specs[1].rules.limits == LimitSet(7, 8, 3, 0)

    def test_sensor_ids(self):
        """Sensor ids default to ``<instrument>.<channel id or parameter>``."""
        areas = """
        - id: prep
          name: Prep
          instruments:
            - id: incubator-1
              name: Incubator
              kind: incubator
              channels:
                - {parameter: temperature, unit: degC}
                - {parameter: temperature, id: door, unit: degC}
                - {parameter: co2, sensor_id: "legacy/INC1:CO2", unit: "%"}
        """
        site = load(areas)
        assert [spec.sensor_id for spec in site.sensors()] == [
            "incubator-1.temperature",
            "incubator-1.door",
            "legacy/INC1:CO2",
        ]
        spec = site.sensor_map()["incubator-1.door"]
        assert (spec.area, spec.instrument, spec.instrument_kind, spec.parameter, spec.unit) == (
            "prep",
            "incubator-1",
            "incubator",
            "temperature",
            "degC",
        )
        assert (spec.site, spec.area_name) == ("Test site", "Prep")

    def test_sensors_in_file_order(self):
        """Sensors come out in file order across areas and instruments."""
        second = (
            particle_room(grade="C").replace("id: room", "id: room-2").replace("id: pc", "id: pc-2")
        )
        site = load(particle_room() + second)
        assert [spec.sensor_id for spec in site.sensors()] == [
            "pc.particles_0_5um",
            "pc-2.particles_0_5um",
        ]

    def test_site_accessors(self):
        """Site name, time zone and areas are at hand."""
        site = load(particle_room())
        assert site.name == "Test site"
        assert site.timezone == "Europe/Amsterdam"
        assert site.tzinfo.key == "Europe/Amsterdam"
        assert site.area("room").classification == "grade B"
        with pytest.raises(KeyError):
            site.area("nope")

    def test_default_timezone_is_utc(self):
        """Without a time zone the site runs on UTC."""
        assert parse_site(site_yaml(particle_room(), site="site: {name: S}")).timezone == "UTC"

    def test_models_are_frozen(self):
        """Configuration objects cannot be changed after loading."""
        site = load(particle_room())
        with pytest.raises(ValueError, match="frozen"):
            site.site.name = "Other"  # type: ignore[misc]
