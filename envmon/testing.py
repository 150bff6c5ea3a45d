"""Test helpers shipped with envmon: spec and reading-scenario builders, a fake clock.

Users writing their own integration tests need these too (compare ``structlog.testing``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from envmon.models import Quality, Reading
from envmon.sensors import ChannelRules, LimitSet, SensorSpec
from envmon.timeutil import parse_ts

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
        instrument=sensor_id.split(".")[0],
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
