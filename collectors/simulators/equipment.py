"""The simulated equipment value model shared by the MQTT and OPC-UA simulators.

Values are a deterministic function of (seed, sensor, time): the same seed gives the same
readings whenever and however often they are read, so simulators in different processes
agree and tests are reproducible. Each channel follows its equipment's physics closely
enough to look real — compressor cycles, incubator door openings, Poisson particle counts
for the room grade and occupancy — and the scenario's scripted faults bend them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from collectors.simulators.scenario import FaultEvent, Scenario
from envmon.config.schema import AreaConfig, InstrumentConfig, SiteConfig
from envmon.models import Quality
from envmon.sensors import LimitSet, SensorSpec
from envmon.timeutil import US_PER_S, to_us

AMBIENT_C: Final = 22.0
DEFAULT_SAMPLE_VOLUME_M3: Final = 0.0283  # 1 ft³: a 28.3 L/min counter over one minute
#: Mean particle concentration as a share of the limit in force (a clean, well-run room).
PARTICLE_MEAN_SHARE: Final = 0.015
COMPRESSOR_PERIOD_S: Final = 900.0
DOOR_PROBABILITY_PER_HOUR: Final = 0.5


@dataclass(frozen=True, slots=True)
class SimValue:
    """One simulated sample: a value in the site's unit (None when the sensor failed)."""

    value: float | None
    quality: Quality = Quality.GOOD


def _uniforms(seed: int, key: str, bucket: int) -> tuple[float, float]:
    """Return two uniforms in (0, 1), a stable function of their arguments."""
    digest = hashlib.blake2b(f"{seed}:{key}:{bucket}".encode(), digest_size=16).digest()
    a = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    b = (int.from_bytes(digest[8:], "big") + 0.5) / 2**64
    return a, b


def _gauss(seed: int, key: str, bucket: int) -> float:
    """Return a standard normal variate, a stable function of its arguments (Box-Muller)."""
    a, b = _uniforms(seed, key, bucket)
    return math.sqrt(-2.0 * math.log(a)) * math.cos(2.0 * math.pi * b)


def _poisson(seed: int, key: str, bucket: int, lam: float) -> int:
    """Return a Poisson variate with mean ``lam`` (normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(lam + math.sqrt(lam) * _gauss(seed, key, bucket)))
    limit = math.exp(-lam)
    k, p, i = 0, 1.0, 0
    while True:
        u, _ = _uniforms(seed, key, bucket * 64 + i)
        i += 1
        p *= u
        if p <= limit:
            return k
        k += 1


def setpoint(spec: SensorSpec, limits: LimitSet | None = None) -> float:
    """Return the value a healthy instrument holds for a channel (from its limits)."""
    lim = limits or spec.rules.limits
    high = lim.alert_high if lim.alert_high is not None else lim.action_high
    low = lim.alert_low if lim.alert_low is not None else lim.action_low
    if spec.parameter == "level":
        return 75.0
    if high is not None and low is not None:
        return (high + low) / 2
    if high is not None:
        return high - 10 if high <= 0 else high * PARTICLE_MEAN_SHARE
    if low is not None:
        return low + max(abs(low) * 0.1, 1.0)
    return 0.0


class SimInstrument:
    """One simulated instrument: reads every channel at a given (simulated) time."""

    def __init__(
        self,
        instrument: InstrumentConfig,
        area: AreaConfig,
        specs: list[SensorSpec],
        faults: Iterable[FaultEvent],
        *,
        seed: int,
        start_us: int,
    ) -> None:
        self.id = instrument.id
        self.kind = instrument.kind
        self.area = area.id
        self.name = instrument.name
        self.specs = specs
        self.sample_volume_m3 = instrument.sample_volume_m3 or DEFAULT_SAMPLE_VOLUME_M3
        self.faults = [f for f in faults if f.instrument == instrument.id]
        self._seed = seed
        self._start_us = start_us
        self._phase = _uniforms(seed, instrument.id, 0)[0]

    def connected(self, now: datetime) -> bool:
        """Return False while a scripted communication loss is under way."""
        t = self._elapsed(now)
        return not any(f.fault == "communication_loss" and f.at <= t < f.end for f in self.faults)

    def read(self, now: datetime) -> dict[str, SimValue]:
        """Return every channel's value at ``now``, keyed by sensor id."""
        ts_us = to_us(now)
        t = (ts_us - self._start_us) / US_PER_S
        out: dict[str, SimValue] = {}
        for spec in self.specs:
            if any(
                f.fault == "sensor_fault"
                and f.at <= t < f.end
                and (f.channel is None or f.channel == spec.parameter)
                for f in self.faults
            ):
                out[spec.sensor_id] = SimValue(None, Quality.BAD)
                continue
            out[spec.sensor_id] = SimValue(self._value(spec, ts_us, t))
        return out

    # ------------------------------------------------------------------ physics

    def _elapsed(self, now: datetime) -> float:
        return (to_us(now) - self._start_us) / US_PER_S

    def _limits_at(self, spec: SensorSpec, ts_us: int) -> LimitSet:
        by_state = spec.rules.limits_by_occupancy
        if by_state and spec.schedule is not None:
            state, _ = spec.schedule.state_at(ts_us)
            return by_state[state]
        return spec.rules.limits

    def _value(self, spec: SensorSpec, ts_us: int, t: float) -> float:
        bucket = ts_us // US_PER_S
        key = spec.sensor_id
        if spec.parameter.startswith("particles_"):
            return self._particles(spec, ts_us, t, bucket)
        sp = setpoint(spec)
        if spec.parameter == "level":
            # LN2 boils off about 2 %/day and is refilled to 80 % every week
            days = (ts_us / US_PER_S / 86_400.0) % 7
            return 80.0 - 2.0 * days + 0.05 * _gauss(self._seed, key, bucket)
        noise = {"temperature": 0.05, "co2": 0.02, "humidity": 0.4}.get(spec.parameter, 0.05)
        value = sp + noise * _gauss(self._seed, key, bucket)
        if spec.parameter == "temperature" and self.kind in {"freezer", "fridge"}:
            amplitude = 1.0 if sp < -50 else 0.4
            cycle = ((t / COMPRESSOR_PERIOD_S) + self._phase) % 1.0
            value += amplitude * (2 * abs(cycle - 0.5) - 0.5)
        if self.kind == "incubator":
            value += self._door_opening(spec.parameter, t)
        return self._apply_faults(spec, sp, value, t)

    def _particles(self, spec: SensorSpec, ts_us: int, t: float, bucket: int) -> float:
        limits = self._limits_at(spec, ts_us)
        limit = limits.action_high or limits.alert_high or 100_000.0
        mean_per_m3 = limit * PARTICLE_MEAN_SHARE
        for f in self.faults:
            if (
                f.fault == "particle_burst"
                and f.at <= t < f.end
                and (f.channel is None or f.channel == spec.parameter)
            ):
                mean_per_m3 = max(mean_per_m3, limit) * (f.magnitude or 3.0)
        volume = self.sample_volume_m3
        counts = _poisson(self._seed, spec.sensor_id, bucket, mean_per_m3 * volume)
        return counts / volume

    def _door_opening(self, parameter: str, t: float) -> float:
        """Return the dip of routine incubator door openings (they recover in minutes)."""
        hour = math.floor(t / 3600)
        effect = 0.0
        for h in (hour - 1, hour):
            u, v = _uniforms(self._seed, f"{self.id}:door", h)
            if u > DOOR_PROBABILITY_PER_HOUR:
                continue
            opened = h * 3600 + v * 3000
            since = t - opened
            if since < 0:
                continue
            depth, tau = {"temperature": (0.3, 300), "co2": (0.8, 240), "humidity": (6, 600)}.get(
                parameter, (0.0, 1.0)
            )
            if since < 45 * 60:  # the dip builds over the minute the door is open, then recovers
                effect -= depth * min(since / 60, 1.0) * math.exp(-max(since - 60, 0) / tau)
        return effect

    def _apply_faults(self, spec: SensorSpec, sp: float, value: float, t: float) -> float:
        for f in self.faults:
            if t < f.at:
                continue
            shaped = self._fault_shape(spec, f, sp, min(t, f.end) - f.at)
            if shaped is None:
                continue
            if t < f.end:
                value += shaped - sp
            else:  # recovery after the fault: back to normal with the equipment's time constant
                tau = 600.0 if spec.parameter == "temperature" else 300.0
                value += (shaped - sp) * math.exp(-(t - f.end) / tau)
        return value

    def _fault_shape(self, spec: SensorSpec, f: FaultEvent, sp: float, dt: float) -> float | None:
        """Return the value a fault drives a channel to after ``dt`` s (None: unaffected)."""
        p = spec.parameter
        if f.fault in {"door_left_open", "compressor_failure"} and p == "temperature":
            if self.kind == "incubator":
                return sp + (25.0 - sp) * (1 - math.exp(-dt / 1800))
            if f.fault == "compressor_failure":
                rate = 0.5 if sp < -50 else 0.2  # °C per minute without cooling
                return min(sp + rate * dt / 60 * (f.magnitude or 1.0), AMBIENT_C)
            tau = 3600.0 if sp < -50 else 1800.0
            return sp + (AMBIENT_C - sp) * (1 - math.exp(-dt / tau)) * (f.magnitude or 1.0)
        if self.kind == "incubator" and f.fault == "door_left_open":
            if p == "co2":
                return sp + (0.04 - sp) * (1 - math.exp(-dt / 600))
            if p == "humidity":
                return sp + (45.0 - sp) * (1 - math.exp(-dt / 900))
        if f.fault == "co2_supply_exhausted" and p == "co2":
            return sp + (0.04 - sp) * (1 - math.exp(-dt / 900))
        return None


class Simulation:
    """Every instrument of a site, simulated from ``start`` with a seed and a scenario."""

    def __init__(
        self,
        site: SiteConfig,
        *,
        start: datetime,
        scenario: Scenario | None = None,
        seed: int | None = None,
    ) -> None:
        self.site = site
        self.scenario = scenario or Scenario()
        self.seed = seed if seed is not None else (self.scenario.seed or 0)
        self.start = start
        start_us = to_us(start)
        by_instrument: dict[str, list[SensorSpec]] = {}
        for spec in site.sensors():
            by_instrument.setdefault(spec.instrument, []).append(spec)
        self._instruments = [
            SimInstrument(
                instrument,
                area,
                by_instrument.get(instrument.id, []),
                self.scenario.events,
                seed=self.seed,
                start_us=start_us,
            )
            for area in site.areas
            for instrument in area.instruments
        ]

    def instruments(self) -> list[SimInstrument]:
        """Return every simulated instrument in file order."""
        return list(self._instruments)

    def instrument(self, instrument_id: str) -> SimInstrument:
        """Return one simulated instrument by id."""
        for instrument in self._instruments:
            if instrument.id == instrument_id:
                return instrument
        raise KeyError(instrument_id)
