"""Tests that the shipped example site file loads and holds the suite it describes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from envmon.config import SiteConfig, WeeklySchedule, load_site
from envmon.sensors import FixedOccupancy, Occupancy

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "site.yaml"


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site(EXAMPLE)


class TestExampleSite:
    """``deploy/examples/site.yaml`` is valid and realistic."""

    def test_site(self, site):
        """The site is named and runs on Amsterdam time."""
        assert site.name
        assert site.timezone == "Europe/Amsterdam"

    def test_areas(self, site):
        """Grades A–D plus a non-classified cold store."""
        grades = {area.id: area.grade for area in site.areas}
        assert grades == {
            "isolator-1": "A",
            "grade-b-room": "B",
            "grade-c-prep": "C",
            "grade-d-corridor": "D",
            "cold-store": None,
        }

    def test_instrument_kinds(self, site):
        """Four particle counters, three incubators, three freezers, two fridges, one dewar."""
        kinds = Counter(instrument.kind for area in site.areas for instrument in area.instruments)
        assert kinds == Counter(
            particle_counter=4, incubator=3, freezer=3, fridge=2, ln2_dewar=1, room_sensor=1
        )

    def test_particle_counters_have_both_sizes(self, site):
        """Every particle counter counts ≥0.5 µm and ≥5.0 µm particles."""
        for area in site.areas:
            for instrument in area.instruments:
                if instrument.kind == "particle_counter":
                    assert {c.parameter for c in instrument.channels} == {
                        "particles_0_5um",
                        "particles_5_0um",
                    }
                    assert instrument.sample_volume_m3 is not None

    def test_expected_sensor_ids(self, site):
        """Sensor ids are readable and stable."""
        ids = set(site.sensor_map())
        for expected in (
            "pc-isolator-1.particles_0_5um",
            "pc-isolator-1.particles_5_0um",
            "pc-grade-b.particles_0_5um",
            "pc-grade-c.particles_5_0um",
            "pc-grade-d.particles_0_5um",
            "rs-grade-c.temperature",
            "rs-grade-c.humidity",
            "incubator-1.temperature",
            "incubator-2.co2",
            "incubator-3.humidity",
            "ult-freezer-1.temperature",
            "ult-freezer-2.temperature",
            "freezer-20-1.temperature",
            "fridge-1.temperature",
            "fridge-2.temperature",
            "ln2-dewar-1.temperature",
            "ln2-dewar-1.level",
        ):
            assert expected in ids
        assert len(site.sensors()) == 26

    def test_grade_a_limits(self, site):
        """The isolator uses the Annex 1 grade A limits and acts on every sample."""
        spec = site.sensor_map()["pc-isolator-1.particles_5_0um"]
        assert spec.rules.limits.action_high == 29
        assert spec.rules.limits.alert_high == 15
        assert spec.rules.consecutive == 1

    def test_grade_b_follows_schedule(self, site):
        """The grade B room's limits follow a Mon–Fri 07:00–19:00 schedule."""
        spec = site.sensor_map()["pc-grade-b.particles_0_5um"]
        assert isinstance(spec.schedule, WeeklySchedule)
        by_state = spec.rules.limits_by_occupancy
        assert by_state is not None
        assert by_state[Occupancy.AT_REST].action_high == 3_520
        assert by_state[Occupancy.IN_OPERATION].action_high == 352_000

    def test_grade_d_has_site_limit_in_operation(self, site):
        """The corridor holds a site-defined in-operation limit (Annex 1 sets none)."""
        spec = site.sensor_map()["pc-grade-d.particles_0_5um"]
        assert spec.schedule == FixedOccupancy(Occupancy.IN_OPERATION)
        assert spec.rules.limits.action_high == 3_520_000

    def test_cold_storage(self, site):
        """Freezers, fridges and the dewar have storage limits and door-opening delays."""
        sensors = site.sensor_map()
        ult = sensors["ult-freezer-1.temperature"].rules
        assert ult.limits.action_high == -60
        assert ult.rate_of_change_per_min is not None
        fridge = sensors["fridge-2.temperature"].rules
        assert (fridge.limits.action_low, fridge.limits.action_high) == (2, 8)
        assert fridge.delay_s > 0
        assert sensors["ln2-dewar-1.temperature"].rules.limits.action_high == -135
        assert sensors["ln2-dewar-1.level"].rules.limits.action_low == 20
        assert all(
            spec.area == "cold-store"
            for spec in sensors.values()
            if spec.instrument_kind in ("freezer", "fridge", "ln2_dewar")
        )

    def test_incubators(self, site):
        """Incubators run at 37 °C and 5 % CO2 in the grade C preparation room."""
        sensors = site.sensor_map()
        for n in (1, 2, 3):
            temperature = sensors[f"incubator-{n}.temperature"]
            assert temperature.area == "grade-c-prep"
            assert temperature.rules.limits.alert_low < 37 < temperature.rules.limits.alert_high  # type: ignore[operator]
            co2 = sensors[f"incubator-{n}.co2"].rules.limits
            assert co2.alert_low < 5 < co2.alert_high  # type: ignore[operator]

    def test_every_stale_timeout_set(self, site):
        """Every channel detects communication loss and sensor faults."""
        for spec in site.sensors():
            assert spec.rules.stale_after_s is not None
            assert spec.rules.bad_after is not None

    def test_every_limit_line_is_commented(self):
        """Each line inside a ``limits:`` block says why, in a YAML comment."""
        in_limits = None
        uncommented = []
        for number, line in enumerate(EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
            indent = len(line) - len(line.lstrip())
            if in_limits is not None and line.strip() and indent <= in_limits:
                in_limits = None
            if in_limits is not None and line.strip() and "#" not in line:
                uncommented.append(number)
            if re.match(r"^\s*limits:\s*$", line):
                in_limits = indent
        assert uncommented == []
