"""Resolution of the site schema into ``SensorSpec``s: defaults, room-grade limits, occupancy.

Each limit value and rule of a channel comes from the most specific place that sets it:

1. the channel's own ``limits`` (an explicit ``null`` removes a limit);
2. for particle channels, the action limit from the area's grade (EU GMP Annex 1) or
   ISO class (ISO 14644-1) for the occupancy state;
3. ``defaults.parameters.<parameter>``;
4. ``defaults.all`` (rules only, no limit values).

A particle channel without an alert limit from 1 or 3 gets one at the alert fraction
(channel ``alert_fraction`` > area ``particle_alert_fraction`` > site
``particle_alert_fraction``) of its action limit. Limits that only conflict once these
layers are combined are reported as problems on the channel's path.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from envmon.config.formatting import format_number
from envmon.config.particles import alert_from_action, grade_limit, iso_class_limit
from envmon.config.yamlsource import YamlPath, render_path
from envmon.models import SENSOR_ID_PATTERN
from envmon.sensors import (
    ChannelRules,
    FixedOccupancy,
    LimitSet,
    Occupancy,
    OccupancySchedule,
    SensorSpec,
)

if TYPE_CHECKING:
    from envmon.config.schema import AreaConfig, ChannelConfig, SiteConfig

LIMIT_KEYS: Final = ("alert_high", "action_high", "alert_low", "action_low")
RULE_KEYS: Final = (
    "delay",
    "consecutive",
    "deadband",
    "rate_of_change_per_min",
    "stale_after",
    "bad_after",
)
_ASCENDING: Final = ("action_low", "alert_low", "alert_high", "action_high")
_SENSOR_ID = re.compile(SENSOR_ID_PATTERN)
_STATE_LABEL: Final = {Occupancy.AT_REST: "at rest", Occupancy.IN_OPERATION: "in operation"}


@dataclass(frozen=True, slots=True)
class ResolveProblem:
    """A conflict that only shows once defaults are applied, located by YAML path."""

    path: YamlPath
    message: str

    @property
    def rendered_path(self) -> str:
        """The path as people read it."""
        return render_path(self.path)


@dataclass(frozen=True, slots=True)
class _Sourced:
    """A resolved limit value and the YAML path that set it (None for built-in defaults)."""

    value: float | None
    origin: YamlPath | None
    label: str


def resolve_site(site: SiteConfig) -> tuple[list[SensorSpec], list[ResolveProblem]]:
    """Resolve every channel of ``site`` in file order; also return conflicts found."""
    specs: list[SensorSpec] = []
    problems: dict[tuple[YamlPath, str], ResolveProblem] = {}
    for area_index, area in enumerate(site.areas):
        schedule: OccupancySchedule
        fixed = area.occupancy.fixed
        states: tuple[Occupancy, ...]
        if fixed is not None:
            schedule, states = FixedOccupancy(fixed), (fixed,)
        else:
            assert area.occupancy.schedule is not None
            schedule = area.occupancy.schedule.build(site.site.timezone)
            states = (Occupancy.AT_REST, Occupancy.IN_OPERATION)
        for instrument_index, instrument in enumerate(area.instruments):
            for channel_index, channel in enumerate(instrument.channels):
                path: YamlPath = (
                    "areas",
                    area_index,
                    "instruments",
                    instrument_index,
                    "channels",
                    channel_index,
                )
                sensor_id = channel.sensor_id or f"{instrument.id}.{channel.channel_id}"
                if not _SENSOR_ID.match(sensor_id):
                    problem = ResolveProblem(
                        path, f"sensor id {sensor_id!r} is too long; give a shorter sensor_id"
                    )
                    problems[(problem.path, problem.message)] = problem
                by_state: dict[Occupancy, LimitSet] = {}
                for state in states:
                    sourced = _limits(site, area, channel, state, path)
                    for problem in _conflicts(sourced, path, state, len(states) > 1):
                        problems.setdefault((problem.path, problem.message), problem)
                    by_state[state] = LimitSet(**{key: sourced[key].value for key in LIMIT_KEYS})
                rules = _rules(site, channel)
                first = by_state[states[0]]
                if all(limits == first for limits in by_state.values()):
                    rules = replace(rules, limits=first)
                else:
                    # ``limits`` holds the stricter at-rest set for any reader that ignores
                    # the schedule; the core follows ``limits_by_occupancy``.
                    rules = replace(
                        rules, limits=by_state[Occupancy.AT_REST], limits_by_occupancy=by_state
                    )
                specs.append(
                    SensorSpec(
                        sensor_id=sensor_id,
                        area=area.id,
                        instrument=instrument.id,
                        instrument_kind=instrument.kind,
                        parameter=channel.parameter,
                        unit=channel.unit,
                        rules=rules,
                        site=site.site.name,
                        area_name=area.name,
                        schedule=schedule,
                    )
                )
    return specs, list(problems.values())


def _rules(site: SiteConfig, channel: ChannelConfig) -> ChannelRules:
    """Resolve the non-limit rules of a channel (channel > parameter defaults > all)."""
    layers = [channel.limits.explicit()]
    parameter_defaults = site.defaults.parameters.get(channel.parameter)
    if parameter_defaults is not None:
        layers.append(parameter_defaults.explicit())
    layers.append(site.defaults.all.explicit())
    chosen: dict[str, object] = {}
    for key in RULE_KEYS:
        for layer in layers:
            if key in layer:
                chosen[key] = layer[key]
                break
    return ChannelRules(
        delay_s=_as_float(chosen.get("delay")) or 0.0,
        consecutive=_as_int(chosen.get("consecutive")),
        deadband=_as_float(chosen.get("deadband")) or 0.0,
        rate_of_change_per_min=_as_float(chosen.get("rate_of_change_per_min")),
        stale_after_s=_as_float(chosen.get("stale_after")),
        bad_after=_as_int(chosen.get("bad_after")),
    )


def _limits(
    site: SiteConfig, area: AreaConfig, channel: ChannelConfig, state: Occupancy, path: YamlPath
) -> dict[str, _Sourced]:
    """Resolve the four limit values of a channel in one occupancy state, with origins."""
    explicit = channel.limits.explicit()
    parameter_defaults = site.defaults.parameters.get(channel.parameter)
    defaults = parameter_defaults.explicit() if parameter_defaults is not None else {}
    defaults_path: YamlPath = ("defaults", "parameters", channel.parameter)
    room_default = particle_default(area, channel, state)
    resolved: dict[str, _Sourced] = {}
    for key in LIMIT_KEYS:
        if key in explicit:
            resolved[key] = _Sourced(_as_float(explicit[key]), (*path, "limits", key), "")
        elif key == "action_high" and room_default is not None:
            resolved[key] = _Sourced(room_default[0], None, room_default[1])
        elif key in defaults:
            resolved[key] = _Sourced(
                _as_float(defaults[key]),
                (*defaults_path, key),
                "from " + render_path(defaults_path),
            )
        else:
            resolved[key] = _Sourced(None, None, "")
    action = resolved["action_high"].value
    if (
        channel.particle_size_um is not None
        and "alert_high" not in explicit
        and ("alert_high" not in defaults and action is not None)
    ):
        fraction = alert_fraction(site, area, channel)
        resolved["alert_high"] = _Sourced(
            alert_from_action(action, fraction), None, f"{fraction:g} × action_high"
        )
    return resolved


def particle_default(
    area: AreaConfig, channel: ChannelConfig, state: Occupancy
) -> tuple[float, str] | None:
    """Return the default action limit of a particle channel and where it comes from."""
    size = channel.particle_size_um
    if size is None:
        return None
    if area.grade is not None:
        limit = grade_limit(area.grade, state, size)
        if limit is None:
            return None
        return float(limit), f"grade {area.grade} {_STATE_LABEL[state]}, EU GMP Annex 1 Table 5"
    if area.iso_class is not None:
        iso = area.iso_class.for_state(state)
        return iso_class_limit(iso, size), f"ISO {iso} {_STATE_LABEL[state]}, ISO 14644-1"
    return None


def alert_fraction(site: SiteConfig, area: AreaConfig, channel: ChannelConfig) -> float:
    """Return the particle alert fraction: channel > area > site."""
    if channel.alert_fraction is not None:
        return channel.alert_fraction
    if area.particle_alert_fraction is not None:
        return area.particle_alert_fraction
    return site.site.particle_alert_fraction


def _conflicts(
    sourced: dict[str, _Sourced], path: YamlPath, state: Occupancy, scheduled: bool
) -> list[ResolveProblem]:
    """Return problems where resolved limits are not strictly ascending (low to high)."""
    present = [(key, sourced[key]) for key in _ASCENDING if sourced[key].value is not None]
    problems: list[ResolveProblem] = []
    for (lower_key, lower), (upper_key, upper) in itertools.pairwise(present):
        assert lower.value is not None
        assert upper.value is not None
        if lower.value < upper.value:
            continue
        when = f" when {_STATE_LABEL[state]}" if scheduled else ""
        if upper.origin is not None and (lower.origin is None or upper.label == ""):
            where, message = upper.origin, _relation("above", lower_key, lower)
        elif lower.origin is not None:
            where, message = lower.origin, _relation("below", upper_key, upper)
        else:  # pragma: no cover - built-in defaults never conflict with each other
            where, message = (*path, "limits"), f"{lower_key} must be below {upper_key}"
        if when and _STATE_LABEL[state] in message:
            when = ""
        problems.append(ResolveProblem(where, message + when))
    return problems


def _relation(side: str, other_key: str, other: _Sourced) -> str:
    assert other.value is not None
    origin = f", {other.label}" if other.label else ""
    return f"must be {side} {other_key} ({format_number(other.value)}{origin})"


def _as_float(value: object) -> float | None:
    if value is None:
        return None
    assert isinstance(value, int | float)
    return float(value)


def _as_int(value: object) -> int | None:
    if value is None:
        return None
    assert isinstance(value, int)
    return value
