"""How values, units, times and durations are written for people: pages, messages, reports.

One place for the QA app's pages (records, incidents, live status) and the alerting
messages, so that a value or a time reads the same everywhere: values rounded with their
unit (``−80.3 °C``, ``3,520 particles/m³``), times in the site's zone to the second with
the zone named (``2026-01-05 09:00:12 CET``), spans in words (``1 h 30 min``, ``12 min
ago``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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


#: Digits after the decimal point per parameter, unless a channel sets ``decimals``.
DEFAULT_DECIMALS: Final = {
    "temperature": 1,
    "humidity": 1,
    "co2": 1,
    "o2": 1,
    "level": 0,
    "pressure": 1,
    "differential_pressure": 1,
}
#: The most digits after the decimal point a channel may ask for.
MAX_DECIMALS: Final = 6


def default_decimals(parameter: str, unit: str = "") -> int | None:
    """Return the digits a parameter is shown with (None: by the value's size).

    Particle counts are whole; the parameters in ``DEFAULT_DECIMALS`` have their digits.
    """
    if parameter.startswith("particles") or is_count(unit):
        return 0
    return DEFAULT_DECIMALS.get(parameter)


def format_value(value: float, unit: str = "", decimals: int | None = None) -> str:
    """Return a value rounded for reading, with its unit (``-80.3 °C``, ``3,520 particles/m³``).

    ``decimals`` digits after the point when given; otherwise three significant digits or
    more (whole numbers from 1,000), particle counts whole. A minus sign, not a hyphen.
    """
    if not math.isfinite(value):
        return f"{value} {unit_label(unit)}".rstrip()
    if decimals is None:
        size = abs(value)
        decimals = 0 if size >= 1000 or is_count(unit) else 1 if size >= 10 else 2
    text = f"{value:,.{decimals}f}"
    if float(text.replace(",", "")) == 0:  # no "−0.0"
        text = text.lstrip("-")
    text = text.replace("-", "−")
    return f"{text} {unit_label(unit)}".rstrip()


def format_time(at: datetime, tz: ZoneInfo) -> str:
    """Return a time in the site's zone to the second, with the zone named."""
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def format_seconds(seconds: float) -> str:
    """Return a measured duration for people (``44 s``, ``2 min 44 s``, ``2 d 3 h``).

    To the second under an hour, to the minute under a day, to the hour beyond; a duration
    under a second reads ``< 1 s`` (``0 s`` when it is zero).
    """
    if seconds <= 0:
        return "0 s"
    if seconds < 1:
        return "< 1 s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if whole < 86400:
        return duration_text(timedelta(seconds=whole))
    hours = round(whole / 3600)
    days, rest = divmod(hours, 24)
    return f"{days} d {rest} h" if rest else f"{days} d"


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


#: Human labels of the states, levels, kinds and fields people read; others are derived
#: (``under_review`` → ``Under review``).
LABELS: Final = {
    "data_gap": "Data gap",
    "excursion": "Excursion",
    "under_review": "Under review",
    "qa_state": "QA state",
    "co2": "CO₂",
    "o2": "O₂",
    "particles_0_5um": "Particles ≥ 0.5 µm",
    "particles_5_0um": "Particles ≥ 5.0 µm",
    "particles_0_3um": "Particles ≥ 0.3 µm",
    "particles_1_0um": "Particles ≥ 1.0 µm",
    "particles_10um": "Particles ≥ 10 µm",
    "particles_25um": "Particles ≥ 25 µm",
    "ln2": "LN₂",
    "capa_ref": "CAPA reference",
    "deviation_ref": "Deviation reference",
    "impact_products": "Impact on products",
    "impact_batches": "Impact on batches",
    "impact_text": "Impact assessment",
    "root_cause_category": "Root cause category",
    "root_cause_text": "Root cause",
    "core_status": "Excursion status",
    "peak_ts": "Peak time",
    "duration_s": "Duration",
    "time_beyond_limit_s": "Time beyond limit",
    "core_sha256": "Core record (SHA-256)",
}


def label(name: str | None) -> str:
    """Return a state, level, kind, parameter or field name as people read it."""
    if not name:
        return ""
    if name in LABELS:
        return LABELS[name]
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _as_time(at: datetime | str) -> datetime:
    """Return a stored time (aware datetime or ISO text, ``Z`` allowed) as an aware datetime."""
    value = at if isinstance(at, datetime) else datetime.fromisoformat(at.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Display:
    """How one site writes values, times and durations: pages, PDF, CLI and demo share it.

    ``decimals`` maps a sensor id to its digits after the point (a channel's ``decimals``,
    else its parameter's default); a value of a sensor not in it falls back to its
    parameter's default, then to the value's size.
    """

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    decimals: Mapping[str, int] = field(default_factory=dict)

    def digits(
        self, sensor: str | None = None, parameter: str | None = None, unit: str = ""
    ) -> int | None:
        """Return the digits after the point a sensor's (or parameter's) values are shown with."""
        if sensor is not None and sensor in self.decimals:
            return self.decimals[sensor]
        return default_decimals(parameter or "", unit)

    def value(
        self,
        value: float | None,
        unit: str = "",
        *,
        sensor: str | None = None,
        parameter: str | None = None,
    ) -> str:
        """Return a value rounded for its sensor with its unit; ``—`` for none."""
        if value is None:
            return "—"
        return format_value(value, unit, self.digits(sensor, parameter, unit))

    def time(self, at: datetime | str | None) -> str:
        """Return a time in the site's zone to the second with the zone named; ``—`` for none."""
        return "—" if at is None else format_time(_as_time(at), self.zone)

    def utc(self, at: datetime | str | None) -> str:
        """Return a time in UTC to the second (``2026-01-05 08:00:12 UTC``); ``—`` for none."""
        return "—" if at is None else format_time(_as_time(at), ZoneInfo("UTC"))

    def duration(self, seconds: float | None) -> str:
        """Return a measured duration (``2 min 44 s``); ``—`` for none."""
        return "—" if seconds is None else format_seconds(seconds)

    def label(self, name: str | None) -> str:
        """Return a name as people read it (``under_review`` → ``Under review``)."""
        return label(name)
