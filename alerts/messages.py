"""The words of a page: title and body of one message about one or more incidents.

Every message names the site, says what happened in human terms (instrument, parameter,
value and limit with their units, rounded), when (in the site's time zone, named) and what
to do: one acknowledge link per incident when links are configured. Grouped messages list
every incident of the group (a burst on ten particle counters is one message naming ten).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from envmon.display import format_time, format_value
from envmon.timeutil import parse_ts

PURPOSE_WORDS: Final = {
    "page": "",
    "reminder": "Reminder: ",
    "cleared": "Cleared: ",
}
#: Incidents listed one by one in a message; the rest are counted.
MAX_LISTED: Final = 25
KIND_WORDS: Final = {
    "stale": "no data",
    "sensor_fault": "sensor fault",
    "rate_of_change": "changing too fast",
}


@dataclass(frozen=True, slots=True)
class IncidentView:
    """What a message needs to know about an incident."""

    id: str
    kind: str
    title: str
    level: str | None
    state: str
    opened_at: datetime
    event: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Composed:
    """A message's title and body."""

    title: str
    body: str


def describe(view: IncidentView, tz: ZoneInfo) -> str:
    """Return one line about an incident: what, value against limit, since when."""
    event = view.event
    parts = [view.title]
    unit = str(event.get("unit") or "")
    value, limit = event.get("value"), event.get("limit")
    if isinstance(value, int | float) and view.kind != "rate_of_change":
        measured = f"{format_value(float(value), unit)}"
        if isinstance(limit, int | float):
            measured += f" (limit {format_value(float(limit), unit)})"
        parts.append(measured)
    elif event.get("detail"):
        parts.append(str(event["detail"]))
    ts = event.get("ts")
    since = parse_ts(ts) if isinstance(ts, str) else view.opened_at
    parts.append(f"since {format_time(since, tz)}")
    return " — ".join(parts)


def compose(
    purpose: str,
    views: Sequence[IncidentView],
    *,
    site_name: str,
    tz: ZoneInfo,
    links: Mapping[str, str],
    app_url: str | None,
) -> Composed:
    """Return the message about ``views`` (one or more incidents of one group)."""
    prefix = PURPOSE_WORDS.get(purpose, "")
    first = views[0]
    level = f"{first.level.upper()} " if first.level and purpose != "cleared" else ""
    if len(views) == 1:
        title = f"{prefix}{level}{first.title} — {site_name}"
    else:
        more = f"{first.title} and {len(views) - 1} more"
        title = f"{prefix}{level}{len(views)} alarms: {more} — {site_name}"
    lines = [f"{site_name}: {_headline(purpose, len(views))}", ""]
    for view in views[:MAX_LISTED]:
        lines.append(f"• {describe(view, tz)}")
        if purpose != "cleared" and view.id in links:
            lines.append(f"  Acknowledge: {links[view.id]}")
    if len(views) > MAX_LISTED:
        lines.append(f"… and {len(views) - MAX_LISTED} more: see the incidents page")
    if app_url:
        lines += ["", f"Open incidents: {app_url.rstrip('/')}/incidents"]
    lines += ["", "Sent by envmon. Acknowledging stops the escalation; a comment is required."]
    if purpose == "cleared":
        lines[-1] = "Sent by envmon. Nothing more is needed for the page; QA reviews the record."
    return Composed(title=title[:250], body="\n".join(lines))


def _headline(purpose: str, count: int) -> str:
    alarms = "an alarm needs" if count == 1 else f"{count} alarms need"
    if purpose == "cleared":
        return "the alarm has cleared" if count == 1 else f"{count} alarms have cleared"
    if purpose == "reminder":
        return f"{alarms} attention still (acknowledged, not cleared)"
    return f"{alarms} attention"
