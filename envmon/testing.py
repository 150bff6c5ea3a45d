"""Test helpers shipped with envmon: spec and reading-scenario builders, a fake clock.

Users writing their own integration tests need these too (compare ``structlog.testing``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from envmon.models import Quality, Reading
from envmon.sensors import ChannelRules, LimitSet, SensorSpec
from envmon.timeutil import format_ts, parse_ts

DEFAULT_T0 = parse_ts("2026-01-05T08:00:00Z")


def make_spec(
    sensor_id: str = "fridge-1.temperature",
    *,
    area: str = "cold-store",
    parameter: str = "temperature",
    unit: str = "degC",
    alert_high: float | None = None,
    action_high: float | None = None,
    alert_low: float | None = None,
    action_low: float | None = None,
    delay_s: float = 0.0,
    consecutive: int | None = None,
    deadband: float = 0.0,
    rate_of_change_per_min: float | None = None,
    stale_after_s: float | None = None,
    bad_after: int | None = None,
) -> SensorSpec:
    """Build a ``SensorSpec`` with the given rules and harmless defaults for the rest."""
    return SensorSpec(
        sensor_id=sensor_id,
        area=area,
        instrument=sensor_id.split(".", maxsplit=1)[0],
        instrument_kind="fridge",
        parameter=parameter,
        unit=unit,
        rules=ChannelRules(
            limits=LimitSet(
                alert_high=alert_high,
                action_high=action_high,
                alert_low=alert_low,
                action_low=action_low,
            ),
            delay_s=delay_s,
            consecutive=consecutive,
            deadband=deadband,
            rate_of_change_per_min=rate_of_change_per_min,
            stale_after_s=stale_after_s,
            bad_after=bad_after,
        ),
    )


def readings(
    sensor_id: str,
    values: Iterable[float | None],
    *,
    start: datetime = DEFAULT_T0,
    every: timedelta = timedelta(seconds=60),
    quality: Quality = Quality.GOOD,
) -> Iterator[Reading]:
    """Yield one reading per value at a regular interval; ``None`` means a bad sample."""
    ts = start
    for value in values:
        yield Reading(
            sensor_id=sensor_id,
            value=value,
            ts=ts,
            quality=Quality.BAD if value is None else quality,
        )
        ts += every


@dataclass
class FakeClock:
    """An injectable clock that only moves when told to."""

    now: datetime = field(default=DEFAULT_T0)

    def __call__(self) -> datetime:
        """Return the current fake time."""
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


#: Shapes an injected fault: seconds since the fault started → value.
Shape = Callable[[float], float]


def nominal_value(spec: SensorSpec, limits: LimitSet | None = None) -> float:
    """Return a comfortable in-limit value for a channel (the middle of its alert band)."""
    lim = limits or spec.rules.limits
    if spec.rules.limits_by_occupancy:
        lim = min(
            spec.rules.limits_by_occupancy.values(),
            key=lambda s: s.action_high if s.action_high is not None else math.inf,
        )
    high = lim.alert_high if lim.alert_high is not None else lim.action_high
    low = lim.alert_low if lim.alert_low is not None else lim.action_low
    if high is not None and low is not None:
        return (high + low) / 2
    if high is not None:
        return high * 0.1 if high > 0 else high - 10
    if low is not None:
        return low + abs(low) * 0.5 + 1
    return 0.0


@dataclass
class _Fault:
    sensor_id: str
    start: datetime
    end: datetime
    shape: Shape


class ScenarioBuilder:
    """Builds a deterministic stream of readings for a whole site, with scripted faults.

    Every sensor reports its nominal value (with a little seeded noise) at a fixed interval;
    ``fault`` replaces a sensor's value between two instants by a shape of elapsed seconds.
    """

    def __init__(
        self,
        specs: Iterable[SensorSpec],
        *,
        start: datetime = DEFAULT_T0,
        every: timedelta = timedelta(seconds=60),
        seed: int = 1,
    ) -> None:
        self.specs = list(specs)
        self.start = start
        self.every = every
        self.seed = seed
        self._faults: list[_Fault] = []
        self._silent: list[tuple[str, datetime, datetime]] = []

    def fault(self, sensor_id: str, start: datetime, end: datetime, shape: Shape) -> None:
        """Replace ``sensor_id``'s values in [start, end) by ``shape(seconds since start)``."""
        if sensor_id not in {s.sensor_id for s in self.specs}:
            raise KeyError(f"unknown sensor {sensor_id!r}")
        self._faults.append(_Fault(sensor_id, start, end, shape))

    def silence(self, sensor_id: str, start: datetime, end: datetime) -> None:
        """Send nothing from ``sensor_id`` in [start, end) (a communication loss)."""
        self._silent.append((sensor_id, start, end))

    def rows(self, duration: timedelta) -> Iterator[tuple[str, datetime, float]]:
        """Yield (sensor_id, ts, value) in time order for ``duration``."""
        rnd = random.Random(self.seed)  # noqa: S311 - seeded noise for reproducible data
        nominal = {s.sensor_id: nominal_value(s) for s in self.specs}
        noise = {s.sensor_id: abs(nominal[s.sensor_id]) * 0.002 + 0.01 for s in self.specs}
        ts = self.start
        end = self.start + duration
        while ts < end:
            for spec in self.specs:
                sid = spec.sensor_id
                if any(s == sid and a <= ts < b for s, a, b in self._silent):
                    continue
                value = nominal[sid] + rnd.uniform(-1, 1) * noise[sid]
                for f in self._faults:
                    if f.sensor_id == sid and f.start <= ts < f.end:
                        value = f.shape((ts - f.start).total_seconds())
                yield sid, ts, value
            ts += self.every

    def write_csv(self, path: Path, duration: timedelta) -> int:
        """Write the readings as ``sensor_id,ts,value`` CSV; return the number of rows."""
        n = 0
        with path.open("w", encoding="utf-8") as fh:
            fh.write("sensor_id,ts,value\n")
            for sid, ts, value in self.rows(duration):
                fh.write(f"{sid},{format_ts(ts)},{value:.4g}\n")
                n += 1
        return n


def ramp(start_value: float, peak_value: float, rise_s: float, fall_s: float) -> Shape:
    """Return a shape rising linearly to ``peak_value`` in ``rise_s`` and back in ``fall_s``."""

    def shape(t: float) -> float:
        if t <= rise_s:
            return start_value + (peak_value - start_value) * t / rise_s
        return peak_value + (start_value - peak_value) * min(1.0, (t - rise_s) / fall_s)

    return shape
