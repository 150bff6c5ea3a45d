"""``envmon alerts check SITE``: who is on call now and next, which policy each route pages.

Loads the site (a configuration error propagates as ``ConfigError`` for the caller to
report), builds the rota (reading any iCalendar file) and prints, per schedule, who is on
call now and every hand-over of the coming days, in the schedule's zone; then, per route,
its policy and the schedules, teams and contacts the policy notifies. The exit code is 1
when a schedule a route pages has nobody on call at some time in those days (every such
stretch is named), else 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from alerts.rota import Rota
from envmon.config import load_site
from envmon.config.alerting import AlertingConfig, MatchConfig, RouteConfig, StepConfig

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_GAPS: Final = 1
DEFAULT_DAYS: Final = 14
_DASH: Final = "–"
_MIN_TEXT_WIDTH: Final = 20


def run_check(site_path: Path, *, now: datetime, days: int = DEFAULT_DAYS, console: Console) -> int:
    """Print the on-call picture of the next ``days`` days from ``now``; return the exit code.

    Returns 1 (``EXIT_GAPS``) when a schedule used by a route has nobody on call in that
    time, or when the site has no ``alerting:`` section; 0 otherwise.
    """
    site = load_site(site_path)
    alerting = site.alerting
    if alerting is None:
        console.print(
            f"{escape(str(site_path))}: the site file has no alerting: section, so nobody is "
            "paged (see deploy/examples/site.yaml)"
        )
        return EXIT_GAPS
    rota = Rota.from_config(alerting, site_tz=site.tzinfo, base_dir=site_path.parent)
    end = now + timedelta(days=days)
    paged_by = _routes_by_schedule(alerting)
    _indented(console, f"[bold]{escape(site.name)}[/]: alerting configuration valid", 0)
    console.print(f"now {_when(now, site.tzinfo)}")
    gaps: list[tuple[str, datetime, datetime]] = []
    for schedule in alerting.schedules:
        shifts = rota.shifts(schedule.id, now, end)
        zone = rota.timezone(schedule.id)
        console.print()
        title = f"Schedule [bold]{escape(schedule.id)}[/]"
        if schedule.name:
            title += f" {_DASH} {escape(schedule.name)}"
        console.print(f"{title} ({zone.key})")
        routes = paged_by.get(schedule.id, [])
        used = ", ".join(map(str, routes))
        used = f"route{'s' if len(routes) > 1 else ''} {used}" if routes else "no route"
        _indented(console, f"paged by {used}", 2)
        _indented(console, f"on call now: {_who(alerting, shifts[0].who)}", 2)
        if len(shifts) == 1:
            console.print(f"  no hand-over in the next {days} day(s)")
        else:
            console.print(f"  hand-overs in the next {days} day(s):")
        for shift in shifts[1:]:
            _indented(console, f"{_when(shift.start, zone)}  {_who(alerting, shift.who)}", 4)
        if routes:
            gaps.extend((schedule.id, s.start, s.end) for s in shifts if not s.who)
    console.print()
    console.print("[bold]Routes[/] (the first that matches wins)")
    for number, route in enumerate(alerting.routes, start=1):
        matches, targets = _route(alerting, route)
        _indented(console, f"{number}. {matches}", 2, hang=5)
        _indented(console, f"notifies {targets}", 5)
    console.print()
    if not gaps:
        console.print(
            f"Every schedule a route pages has someone on call for the next {days} day(s)."
        )
        return EXIT_OK
    console.print(f"[bold red]Nobody on call[/] in a schedule a route pages ({len(gaps)}):")
    for schedule_id, start, stop in gaps:
        zone = rota.timezone(schedule_id)
        tail = " (end of the check)" if stop >= end else ""
        stretch = f"{_when(start, zone)} {_DASH} {_when(stop, zone)}{tail}"
        _indented(console, f"{escape(schedule_id)}: {stretch}", 2)
    return EXIT_GAPS


def _when(moment: datetime, zone: ZoneInfo) -> str:
    """Format an instant in a zone, the zone named: ``2026-12-07 09:00 CET``."""
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def _who(alerting: AlertingConfig, who: Sequence[str]) -> str:
    """Name the people on call (``Alice Jansen (alice)``), or nobody, in red."""
    if not who:
        return "[red]nobody[/]"
    return ", ".join(f"{escape(alerting.contact(c).name)} ({escape(c)})" for c in who)


def _routes_by_schedule(alerting: AlertingConfig) -> dict[str, list[int]]:
    """Return, per schedule, the numbers (from 1) of the routes whose policy pages it."""
    found: dict[str, list[int]] = {}
    for number, route in enumerate(alerting.routes, start=1):
        for schedule_id in alerting.route_schedules(route):
            found.setdefault(schedule_id, []).append(number)
    return found


def _indented(console: Console, markup: str, indent: int, *, hang: int | None = None) -> None:
    """Print ``markup`` indented by ``indent`` columns, wrapped lines by ``hang`` (or alike)."""
    hang = indent if hang is None else hang
    lines = Text.from_markup(markup).wrap(console, max(console.width - hang, _MIN_TEXT_WIDTH))
    for number, line in enumerate(lines):
        line.rstrip()
        console.print(Text(" " * (hang if number else indent)) + line, soft_wrap=True)


def _route(alerting: AlertingConfig, route: RouteConfig) -> tuple[str, str]:
    """Describe a route (markup): what it matches and its policy; whom that notifies."""
    matches = "everything else" if route.match is None else _match(route.match)
    steps = alerting.policy(route.policy).steps
    targets = ", ".join(dict.fromkeys(_target(step) for step in steps))
    return f"{escape(matches)} → policy [bold]{escape(route.policy)}[/]", escape(targets)


def _match(match: MatchConfig) -> str:
    """Render a match: ``area cold-room; alarm raised, escalated``."""
    parts = [
        f"{name.replace('_', ' ')} {', '.join(values)}"
        for name in type(match).model_fields
        if (values := getattr(match, name))
    ]
    return "; ".join(parts)


def _target(step: StepConfig) -> str:
    notify = step.notify
    if notify.schedule is not None:
        return f"schedule {notify.schedule}"
    if notify.team is not None:
        return f"team {notify.team}"
    return f"contact {notify.contact}"
