"""The live terminal view of ``envmon demo``: every room, instrument and channel with its state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from envmon.config import SiteConfig
from envmon.models import AlarmEvent, Reading, SystemEvent
from envmon.timeutil import format_ts
from stream.core.state import SensorState

_STYLE = {
    "OK": "bold green",
    "ALERT": "bold yellow",
    "ACTION": "bold white on red",
    "STALE": "bold magenta",
    "FAULT": "bold magenta",
    "waiting": "dim",
}


def sensor_state(state: SensorState) -> str:
    """Return the one-word state of a sensor for the view."""
    if state.stale:
        return "STALE"
    if state.fault:
        return "FAULT"
    level = max(
        state.high.level if state.high.open else 0, state.low.level if state.low.open else 0
    )
    if level:
        return "ACTION" if level == 2 else "ALERT"
    return "OK" if state.last_ts is not None else "waiting"


def render(
    site: SiteConfig,
    *,
    now: datetime,
    speed: float,
    states: Mapping[str, SensorState],
    last: Mapping[str, Reading],
    recent: Sequence[AlarmEvent | SystemEvent],
    counters: Mapping[str, Mapping[str, int]],
    excursions: int,
    buffered: int,
    app_url: str | None = None,
    pages: Sequence[tuple[datetime, str, str]] = (),
) -> RenderableType:
    """Build the whole screen."""
    header = Text.assemble(
        (f"{site.name}", "bold"),
        f"   simulated time {format_ts(now.replace(microsecond=0))} ({speed:g}× real time)   ",
        f"excursions {excursions}   buffered {buffered}",
        f"   QA app {app_url} (passwords printed above)" if app_url else "",
    )
    table = Table(expand=True, show_edge=False, pad_edge=False)
    for name in ("area", "instrument", "channel", "value", "state"):
        table.add_column(name, justify="right" if name == "value" else "left", no_wrap=True)
    previous_area = ""
    for spec in site.sensors():
        state = sensor_state(states[spec.sensor_id])
        reading = last.get(spec.sensor_id)
        if reading is None:
            value = "—"
        elif reading.value is None:
            value = f"({reading.quality.value})"
        else:
            value = f"{reading.value:,.4g} {spec.unit}"
        table.add_row(
            spec.area if spec.area != previous_area else "",
            spec.instrument,
            spec.parameter,
            value,
            Text(state, style=_STYLE[state]),
        )
        previous_area = spec.area
    alarms = Table(expand=True, show_edge=False, pad_edge=False)
    for name in ("time (UTC)", "event", "sensor / component", "level", "value"):
        alarms.add_column(name, no_wrap=True)
    for event in list(recent)[-12:]:
        if isinstance(event, AlarmEvent):
            alarms.add_row(
                f"{event.ts:%H:%M:%S}",
                event.event.value,
                event.sensor_id,
                event.level.value if event.level else "",
                "" if event.value is None else f"{event.value:,.4g}",
            )
        else:
            alarms.add_row(f"{event.ts:%H:%M:%S}", event.event.value, event.component, "", "")
    totals = "   ".join(
        f"{name}: " + ", ".join(f"{k} {v:,}" for k, v in values.items() if v)
        for name, values in counters.items()
    )
    parts: list[RenderableType] = [Panel(header), table, Panel(alarms, title="recent alarms")]
    if pages:
        sent = Table(expand=True, show_edge=False, pad_edge=False)
        for name in ("time (UTC)", "to", "page"):
            sent.add_column(name, no_wrap=True, overflow="ellipsis")
        for at, to, subject in list(pages)[-6:]:
            sent.add_row(f"{at:%H:%M:%S}", to, subject)
        parts.append(Panel(sent, title="pages sent (embedded mail server)"))
    parts.append(Text(totals, style="dim"))
    return Group(*parts)
