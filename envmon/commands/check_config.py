"""``envmon check-config``: validate a site file and show every channel's resolved limits."""

from __future__ import annotations

import json
import sys
from itertools import groupby
from pathlib import Path
from typing import Final

from rich.table import Table

from envmon.config import AreaConfig, ConfigError, SiteConfig, load_site
from envmon.config.formatting import format_duration, format_number
from envmon.config.schedule import WEEKDAYS, WeeklyWindow
from envmon.display import unit_label
from envmon.rendering import print_config_error, print_tables
from envmon.sensors import ChannelRules, LimitSet, Occupancy, SensorSpec

EXIT_OK: Final = 0
EXIT_INVALID: Final = 2
LIMIT_JSON_KEYS: Final = (
    "alert_high",
    "action_high",
    "alert_low",
    "action_low",
    "delay_s",
    "consecutive",
    "deadband",
    "rate_of_change_per_min",
    "stale_after_s",
)
"""The keys of every ``limits`` object in the JSON output, in this order."""

_STATE_LABEL: Final = {Occupancy.AT_REST: "at rest", Occupancy.IN_OPERATION: "in operation"}


def run(file: Path, *, json_output: bool) -> int:
    """Validate ``file``; print the resolved limits (table or JSON) and return an exit code.

    Returns 0 when the file is valid, 2 (after printing every issue to stderr, one per
    line as ``file:line:column: path: message``) when it is not or cannot be read.
    """
    try:
        site = load_site(file)
        sensors = site.sensors()
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_INVALID
    if json_output:
        sys.stdout.write(json.dumps(channel_records(site, sensors), indent=2) + "\n")
    else:
        _print_tables(site, sensors)
    return EXIT_OK


def channel_records(site: SiteConfig, sensors: list[SensorSpec]) -> list[dict[str, object]]:
    """Return one JSON-ready record per channel with its resolved limits and rules."""
    records: list[dict[str, object]] = []
    for spec in sensors:
        area = site.area(spec.area)
        rules = spec.rules
        record: dict[str, object] = {
            "sensor_id": spec.sensor_id,
            "area": spec.area,
            "instrument": spec.instrument,
            "instrument_kind": spec.instrument_kind,
            "parameter": spec.parameter,
            "unit": spec.unit,
            "occupancy": area.occupancy.state or "schedule",
            "limits": limits_record(rules.limits, rules),
            "bad_after": rules.bad_after,
        }
        if rules.limits_by_occupancy is not None:
            record["limits_by_occupancy"] = {
                str(state): limits_record(limits, rules)
                for state, limits in rules.limits_by_occupancy.items()
            }
        records.append(record)
    return records


def limits_record(limits: LimitSet, rules: ChannelRules) -> dict[str, object]:
    """Return the ``limits`` object of the JSON output: exactly ``LIMIT_JSON_KEYS``."""
    return {
        "alert_high": limits.alert_high,
        "action_high": limits.action_high,
        "alert_low": limits.alert_low,
        "action_low": limits.action_low,
        "delay_s": rules.delay_s,
        "consecutive": rules.consecutive,
        "deadband": rules.deadband,
        "rate_of_change_per_min": rules.rate_of_change_per_min,
        "stale_after_s": rules.stale_after_s,
    }


def _print_tables(site: SiteConfig, sensors: list[SensorSpec]) -> None:
    """Print the areas and the resolved limits of every channel as rich tables."""
    areas, channels = _areas_table(site), _channels_table(site, sensors)
    print_tables(areas, channels)


def _areas_table(site: SiteConfig) -> Table:
    table = Table(title=f"{site.name} — areas (time zone {site.timezone})", title_justify="left")
    for header in ("Area", "Name", "Classification", "Occupancy", "Instruments"):
        table.add_column(header, no_wrap=header == "Area")
    for area in site.areas:
        table.add_row(
            area.id,
            area.name,
            area.classification,
            _occupancy_text(area, site.timezone),
            str(len(area.instruments)),
        )
    return table


def _channels_table(site: SiteConfig, sensors: list[SensorSpec]) -> Table:
    table = Table(
        title=f"{site.name} — resolved limits of {len(sensors)} channels", title_justify="left"
    )
    headers = (
        "Sensor id",
        "Area",
        "Instrument",
        "Parameter",
        "Unit",
        "Occupancy",
        "Alert\nhigh",
        "Action\nhigh",
        "Alert\nlow",
        "Action\nlow",
        "Delay",
        "Consec.",
        "Dead-\nband",
        "Rate\n/min",
        "Stale\nafter",
        "Bad\nafter",
    )
    for header in headers:
        numeric = header.startswith(("Alert", "Action", "Dead", "Rate"))
        table.add_column(header, no_wrap=True, justify="right" if numeric else "left")
    for area_id, group in groupby(sensors, key=lambda spec: spec.area):
        specs = list(group)
        for index, spec in enumerate(specs):
            rules = spec.rules
            if rules.limits_by_occupancy is None:
                states: list[tuple[str, LimitSet]] = [("any", rules.limits)]
            else:
                states = [
                    (_STATE_LABEL[state], limits)
                    for state, limits in rules.limits_by_occupancy.items()
                ]
            for row, (occupancy, limits) in enumerate(states):
                last = index == len(specs) - 1 and row == len(states) - 1
                table.add_row(
                    spec.sensor_id,
                    area_id,
                    spec.instrument,
                    spec.parameter,
                    unit_label(spec.unit),
                    occupancy,
                    _number(limits.alert_high),
                    _number(limits.action_high),
                    _number(limits.alert_low),
                    _number(limits.action_low),
                    format_duration(rules.delay_s),
                    _number(rules.consecutive),
                    _number(rules.deadband),
                    _number(rules.rate_of_change_per_min),
                    "—" if rules.stale_after_s is None else format_duration(rules.stale_after_s),
                    _number(rules.bad_after),
                    end_section=last,
                )
    return table


def _occupancy_text(area: AreaConfig, site_timezone: str) -> str:
    """Describe an area's occupancy: a fixed state, or the weekly in-operation windows."""
    schedule = area.occupancy.schedule
    if schedule is None:
        return _STATE_LABEL[Occupancy(area.occupancy.state or Occupancy.AT_REST)]
    parts = []
    for window in schedule.in_operation:
        days = _day_ranges(window.windows())
        parts.append(f"{days} {_hhmm(window.start)}–{_hhmm(window.end)}")
    return f"in operation {'; '.join(parts)} ({schedule.timezone or site_timezone})"


def _day_ranges(windows: list[WeeklyWindow]) -> str:
    """Compress weekdays into ranges: ``mon–fri``, ``mon, wed``."""
    days = sorted({window.weekday for window in windows})
    ranges: list[str] = []
    start = previous = days[0]
    for day in [*days[1:], None]:
        if day is not None and day == previous + 1:
            previous = day
            continue
        ranges.append(
            WEEKDAYS[start] if start == previous else f"{WEEKDAYS[start]}–{WEEKDAYS[previous]}"
        )
        if day is not None:
            start = previous = day
    return ", ".join(ranges)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _number(value: float | None) -> str:
    return "—" if value is None else format_number(value)
