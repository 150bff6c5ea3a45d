"""Which escalation policy an alarm or system event goes to: the first route that matches.

A route's ``match`` names values per key (area, grade, instrument kind, parameter, sensor,
level, alarm kind, system event); an event matches when, for every key given, its value is
one of those named. An alarm has no system event and a system event has no area, sensor or
level, so a route that names ``system`` matches only system events and one that names any
of the others only alarms. The last route matches everything (the configuration insists).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envmon.config.alerting import AlertingConfig, MatchConfig
from envmon.config.schema import SiteConfig
from envmon.models import AlarmEvent, SystemEvent


@dataclass(frozen=True, slots=True)
class SensorContext:
    """What the site file says about a sensor, for routing and for the words of a page."""

    sensor_id: str
    area: str
    area_name: str
    grade: str | None
    instrument: str
    instrument_name: str
    instrument_kind: str
    parameter: str
    unit: str


def site_context(site: SiteConfig) -> dict[str, SensorContext]:
    """Return every sensor of the site with its area, grade and instrument, by sensor id."""
    found: dict[str, SensorContext] = {}
    for area in site.areas:
        for instrument in area.instruments:
            for channel in instrument.channels:
                sensor_id = channel.sensor_id or f"{instrument.id}.{channel.channel_id}"
                found[sensor_id] = SensorContext(
                    sensor_id=sensor_id,
                    area=area.id,
                    area_name=area.name,
                    grade=area.grade,
                    instrument=instrument.id,
                    instrument_name=instrument.name,
                    instrument_kind=instrument.kind,
                    parameter=channel.parameter,
                    unit=channel.unit,
                )
    return found


def _matches(
    match: MatchConfig, event: AlarmEvent | SystemEvent, sensor: SensorContext | None
) -> bool:
    if isinstance(event, SystemEvent):
        if match.area or match.grade or match.instrument_kind or match.parameter:
            return False
        if match.sensor or match.level or match.alarm:
            return False
        return not match.system or event.event.value in match.system
    if match.system:
        return False
    area = sensor.area if sensor is not None else event.area
    checks: tuple[tuple[tuple[str, ...], str | None], ...] = (
        (match.area, area),
        (match.grade, sensor.grade if sensor is not None else None),
        (match.instrument_kind, sensor.instrument_kind if sensor is not None else None),
        (match.parameter, event.parameter),
        (match.sensor, event.sensor_id),
        (match.level, event.level.value if event.level is not None else None),
        (match.alarm, event.event.value),
    )
    return all(not wanted or (value is not None and value in wanted) for wanted, value in checks)


def route(
    alerting: AlertingConfig,
    event: AlarmEvent | SystemEvent,
    sensors: Mapping[str, SensorContext],
) -> tuple[int, str]:
    """Return the index of the first route that matches ``event`` and its policy id."""
    sensor = sensors.get(event.sensor_id) if isinstance(event, AlarmEvent) else None
    for index, candidate in enumerate(alerting.routes):
        if candidate.match is None or _matches(candidate.match, event, sensor):
            return index, candidate.policy
    # unreachable with a validated configuration: its last route matches everything
    last = len(alerting.routes) - 1
    return last, alerting.routes[last].policy
