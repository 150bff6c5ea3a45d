"""Resolved sensor specifications: what the evaluation core needs to know about a channel.

The site configuration (``envmon.config``) is what people write; a ``SensorSpec`` is what
it resolves to after defaults (room grade, occupancy, alert fraction) have been applied.
The evaluation core depends only on this module, never on the YAML schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Occupancy(StrEnum):
    """Occupancy state of a cleanroom (EU GMP Annex 1 distinguishes the two)."""

    AT_REST = "at_rest"
    IN_OPERATION = "in_operation"


@dataclass(frozen=True, slots=True)
class LimitSet:
    """Alert and action limits, high and low side; ``None`` where a limit is not set."""

    alert_high: float | None = None
    action_high: float | None = None
    alert_low: float | None = None
    action_low: float | None = None

    def is_empty(self) -> bool:
        """Return True when no limit at all is set."""
        return (
            self.alert_high is None
            and self.action_high is None
            and self.alert_low is None
            and self.action_low is None
        )


@dataclass(frozen=True, slots=True)
class ChannelRules:
    """Every evaluation rule of one channel, resolved.

    ``limits`` are in force at all times unless ``limits_by_occupancy`` is given, in which
    case the limits follow the room's occupancy (from the sensor's ``schedule``) at the
    time of each sample. ``delay_s``, ``consecutive`` and ``deadband`` apply to both levels
    and both sides.
    """

    limits: LimitSet = field(default_factory=LimitSet)
    limits_by_occupancy: Mapping[Occupancy, LimitSet] | None = None
    delay_s: float = 0.0
    consecutive: int | None = None
    deadband: float = 0.0
    rate_of_change_per_min: float | None = None
    stale_after_s: float | None = None
    bad_after: int | None = None


class OccupancySchedule(Protocol):
    """Tells the occupancy of a room at an instant (epoch microseconds, UTC)."""

    def state_at(self, ts_us: int) -> tuple[Occupancy, int]:
        """Return the state at ``ts_us`` and the first instant (µs) it may change."""
        ...


@dataclass(frozen=True, slots=True)
class FixedOccupancy:
    """An occupancy that never changes."""

    state: Occupancy

    def state_at(self, ts_us: int) -> tuple[Occupancy, int]:
        """Return the fixed state, valid forever."""
        return self.state, 2**62


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One channel of one instrument in one area: identity, unit and resolved rules."""

    sensor_id: str
    area: str
    instrument: str
    instrument_kind: str
    parameter: str
    unit: str
    rules: ChannelRules
    site: str = ""
    area_name: str = ""
    schedule: OccupancySchedule | None = None
