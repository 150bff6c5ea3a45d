"""How values, units, times and durations are written for people: pages, messages, reports.

One place for the QA app's pages (records, incidents, live status) and the alerting
messages, so that a value or a time reads the same everywhere: values rounded with their
unit (``−80.3 °C``, ``3,520 particles/m³``), times in the site's zone to the second with
the zone named (``2026-01-05 09:00:12 CET``), spans in words (``1 h 30 min``, ``12 min
ago``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from envmon.units import is_count

#: How units are written for people.
UNIT_LABELS: Final = {
    "degC": "°C",
    "degF": "°F",
    "percent": "%",
    "pct": "%",
    "particles/m3": "particles/m³",
    "m3": "m³",
}


def unit_label(unit: str) -> str:
    """Return a unit as people write it (``degC`` → ``°C``)."""
    return UNIT_LABELS.get(unit, unit)


def format_value(value: float, unit: str = "") -> str:
    """Return a value rounded for reading, with its unit (``-80.3 °C``, ``3,520 particles/m³``).

    Three significant digits or more (whole numbers from 1,000); particle counts whole.
    """
    size = abs(value)
    digits = 0 if size >= 1000 or is_count(unit) else 1 if size >= 10 else 2
    text = f"{value:,.{digits}f}".replace("-", "−")
    return f"{text} {unit_label(unit)}".rstrip()


def format_time(at: datetime, tz: ZoneInfo) -> str:
    """Return a time in the site's zone to the second, with the zone named."""
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def duration_text(span: timedelta) -> str:
    """Return a duration for people (``8 h``, ``1 h 30 min``, ``45 min``)."""
    minutes = round(span.total_seconds() / 60)
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"


def relative(at: datetime, now: datetime, *, seconds: bool = False) -> str:
    """Return how far ``at`` is from ``now`` (``12 min ago``, ``in 8 min``, ``just now``).

    Within a minute it is ``just now`` (``in less than a minute``), or with ``seconds``
    the seconds (``42 s ago``): a live page shows a reading age in seconds.
    """
    offset = (at - now).total_seconds()
    size = abs(offset)
    if size < 60:
        if seconds and int(size) >= 1:
            return f"{int(size)} s ago" if offset < 0 else f"in {int(size)} s"
        return "just now" if offset <= 0 or seconds else "in less than a minute"
    if size < 3600:
        text = f"{round(size / 60)} min"
    elif size < 2 * 86400:
        text = duration_text(timedelta(minutes=round(size / 60)))
    else:
        text = f"{round(size / 86400)} days"
    return f"{text} ago" if offset < 0 else f"in {text}"
