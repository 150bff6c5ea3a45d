"""Fault scenarios for the simulators: YAML timelines of scripted equipment faults.

```yaml
name: demo day
seed: 7
events:
  - at: 30s                     # offset from the simulation start (simulated time)
    instrument: ult-freezer-1
    fault: door_left_open
    duration: 20m
  - at: 1h
    instrument: incubator-2
    fault: co2_supply_exhausted
    duration: 40m
```

Faults: ``door_left_open``, ``compressor_failure``, ``co2_supply_exhausted``,
``particle_burst``, ``sensor_fault``, ``communication_loss``. ``channel`` (a parameter
name) narrows a ``sensor_fault`` or ``particle_burst`` to one channel; ``magnitude``
scales the fault (°C of warming, a factor for a burst).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from envmon.config.loader import parse_model
from envmon.config.types import ConfigModel, Duration, PositiveDuration, Slug, Text
from envmon.errors import ConfigError, ConfigIssue

FaultKind = Literal[
    "door_left_open",
    "compressor_failure",
    "co2_supply_exhausted",
    "particle_burst",
    "sensor_fault",
    "communication_loss",
]


class FaultEvent(ConfigModel):
    """One scripted fault on one instrument."""

    at: Duration
    instrument: Slug
    fault: FaultKind
    duration: PositiveDuration
    channel: Slug | None = None
    magnitude: float | None = Field(default=None, gt=0)

    @property
    def end(self) -> float:
        """Offset (s) at which the fault ends."""
        return self.at + self.duration


class Scenario(ConfigModel):
    """A named timeline of faults."""

    name: Text = "scenario"
    seed: int | None = None
    events: tuple[FaultEvent, ...] = ()


def load_scenario(path: Path | str, *, instruments: set[str] | None = None) -> Scenario:
    """Read and validate a scenario file; unknown instruments are errors when given."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read the file: {exc}")]) from None
    return parse_scenario(text, source, instruments=instruments)


def parse_scenario(
    text: str, source: str = "<scenario>", *, instruments: set[str] | None = None
) -> Scenario:
    """Validate scenario YAML text (see :func:`load_scenario`)."""
    scenario = parse_model(Scenario, text, source)
    if instruments is not None:
        issues = [
            ConfigIssue(f"events[{i}].instrument", f"unknown instrument {event.instrument!r}")
            for i, event in enumerate(scenario.events)
            if event.instrument not in instruments
        ]
        if issues:
            raise ConfigError(source, issues)
    return scenario
