"""Tests of the simulated equipment model and fault scenarios."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from collectors.simulators.equipment import Simulation
from collectors.simulators.scenario import load_scenario, parse_scenario
from envmon.config import load_site
from envmon.errors import ConfigError
from envmon.models import Quality
from envmon.timeutil import parse_ts

SITE = load_site(Path(__file__).parents[3] / "deploy" / "examples" / "site.yaml")
T0 = parse_ts("2026-01-05T08:00:00Z")  # a Monday, grade B in operation
INSTRUMENTS = {i.id for a in SITE.areas for i in a.instruments}


def read(sim: Simulation, minutes: float) -> dict:
    out = {}
    for instrument in sim.instruments():
        out.update(instrument.read(T0 + timedelta(minutes=minutes)))
    return out


class TestSimulation:
    def test_every_channel_is_simulated_within_limits(self):
        """With no faults every channel reads inside its alert limits."""
        sim = Simulation(SITE, start=T0, seed=1)
        for minute in range(0, 120, 7):
            values = read(sim, minute)
            assert set(values) == {s.sensor_id for s in SITE.sensors()}
            for spec in SITE.sensors():
                value = values[spec.sensor_id].value
                assert value is not None
                lim = spec.rules.limits
                if lim.action_high is not None and not spec.rules.limits_by_occupancy:
                    assert value < lim.action_high, spec.sensor_id
                if lim.action_low is not None:
                    assert value > lim.action_low, spec.sensor_id

    def test_deterministic_for_a_seed(self):
        """The same seed and time give the same values, in any order of reading."""
        a = Simulation(SITE, start=T0, seed=5)
        b = Simulation(SITE, start=T0, seed=5)
        assert read(a, 30) == read(b, 30)
        read(a, 10)
        assert read(a, 31) == read(b, 31)
        assert read(a, 30) != read(Simulation(SITE, start=T0, seed=6), 30)

    def test_particle_counts_are_whole_counts_per_sample_volume(self):
        """Particle values are integer counts divided by the sample volume."""
        sim = Simulation(SITE, start=T0, seed=1)
        counter = sim.instrument("pc-isolator-1")
        value = counter.read(T0)["pc-isolator-1.particles_0_5um"].value
        assert value is not None
        assert (
            abs(value * counter.sample_volume_m3 - round(value * counter.sample_volume_m3)) < 1e-6
        )


class TestFaults:
    SCENARIO = parse_scenario(
        """
        name: test
        events:
          - {at: 10m, instrument: ult-freezer-1, fault: door_left_open, duration: 20m}
          - {at: 10m, instrument: incubator-2, fault: co2_supply_exhausted, duration: 40m}
          - {at: 10m, instrument: pc-grade-b, fault: particle_burst, duration: 5m}
          - {at: 10m, instrument: fridge-1, fault: sensor_fault, duration: 5m}
          - {at: 10m, instrument: fridge-2, fault: communication_loss, duration: 5m}
        """,
        instruments=INSTRUMENTS,
    )

    def test_faults_drive_values_out_of_limits_and_back(self):
        """Door open, CO2 exhausted and a burst cross the action limits, then recover."""
        sim = Simulation(SITE, start=T0, scenario=self.SCENARIO, seed=2)
        during = read(sim, 29)
        assert during["ult-freezer-1.temperature"].value > -60
        assert during["incubator-2.co2"].value < 4
        assert read(sim, 12)["pc-grade-b.particles_0_5um"].value > 352_000
        after = read(sim, 120)
        assert after["ult-freezer-1.temperature"].value < -70
        assert after["incubator-2.co2"].value > 4.5

    def test_sensor_fault_gives_bad_quality(self):
        """A sensor fault reads as bad quality with no value."""
        sim = Simulation(SITE, start=T0, scenario=self.SCENARIO, seed=2)
        value = read(sim, 12)["fridge-1.temperature"]
        assert value.quality is Quality.BAD
        assert value.value is None

    def test_communication_loss(self):
        """An instrument is disconnected exactly during its communication loss."""
        sim = Simulation(SITE, start=T0, scenario=self.SCENARIO, seed=2)
        fridge = sim.instrument("fridge-2")
        assert fridge.connected(T0 + timedelta(minutes=9))
        assert not fridge.connected(T0 + timedelta(minutes=12))
        assert fridge.connected(T0 + timedelta(minutes=15))


class TestScenarioFile:
    def test_errors_name_path_and_line(self, tmp_path):
        """A bad scenario is refused with every problem located."""
        bad = tmp_path / "s.yaml"
        bad.write_text(
            "events:\n"
            "  - {at: 1m, instrument: ult-freezer-1, fault: meltdown, duration: 1m}\n"
            "  - {at: soon, instrument: nowhere, fault: sensor_fault, duration: 1m}\n"
        )
        with pytest.raises(ConfigError) as err:
            load_scenario(bad, instruments=INSTRUMENTS)
        text = str(err.value)
        assert "s.yaml:2:" in text
        assert "events[0].fault" in text
        assert "s.yaml:3:6: events[1].at" in text

    def test_unknown_instrument(self):
        """A fault on an instrument the site does not have is refused."""
        with pytest.raises(ConfigError, match=r"events\[0\].instrument: unknown instrument"):
            parse_scenario(
                "events: [{at: 0, instrument: x, fault: sensor_fault, duration: 1}]",
                instruments=INSTRUMENTS,
            )
