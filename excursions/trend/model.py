"""The trend chart of a record's sensor: windows, the ``Trend`` model, decimation, event marks.

``trend_window`` says which readings to fetch; ``build_trend`` turns them into a ``Trend``
(decimated runs keeping each bucket's minimum and maximum, bad-quality markers, limit
lines, the shaded excursion or gap, the peak, event marks, ticks, the colours);
``trend_json`` hands it to the page's interactive chart. ``excursions.trend.layout`` lays
it out for the SVG and PDF renderers.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from envmon.display import Display, format_value, unit_label
from envmon.models import Quality, Reading
from envmon.timeutil import NaiveTimestampError, parse_ts
from envmon.units import is_count

#: Padding of the window on each side of the record: half its duration, within these bounds.
MIN_PADDING: Final = timedelta(minutes=15)
MAX_PADDING: Final = timedelta(hours=12)
#: The windows a reviewer can ask for: the record's own (``None``), or so much either side.
WINDOWS: Final[Mapping[str, timedelta | None]] = {
    "record": None,
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "3d": timedelta(days=3),
}
#: A wider window never spans more than this (unless the record itself is longer).
MAX_WINDOW: Final = timedelta(days=7)
DEFAULT_MAX_POINTS: Final = 1000
#: A pause longer than this many median sampling intervals breaks the line.
GAP_FACTOR: Final = 3.0
#: Time-axis steps, finest first; the finest giving at most ``MAX_TIME_TICKS`` ticks wins.
TIME_STEPS: Final = tuple(
    timedelta(seconds=s)
    for s in (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
)
MAX_TIME_TICKS: Final = 8
TARGET_VALUE_TICKS: Final = 5
#: Room above and below the data, limits and peak, as a fraction of their span.
Y_MARGIN: Final = 0.05
EMPTY_TEXT: Final = "no readings stored for this period"

SERIES_COLOUR: Final = "#1f3a93"  # dark blue
ALERT_COLOUR: Final = "#d98e04"  # amber
ACTION_COLOUR: Final = "#c62828"  # red
EXCURSION_FILL: Final = "#fbe1e1"  # light red
GAP_FILL: Final = "#e4e4e4"  # light grey
BAD_QUALITY_COLOUR: Final = "#6d3a9c"  # purple: neither a limit nor the series
CROSSED_COLOUR: Final = "#444444"  # the start: the limit crossed (before any delay)
GAP_MARK_COLOUR: Final = "#555555"  # a data gap's stale and restored events
PEAK_COLOUR: Final = "#222222"  # neutral: the peak of an alert-level excursion is not "action"
GRID_COLOUR: Final = "#e2e2e2"
AXIS_COLOUR: Final = "#777777"
TEXT_COLOUR: Final = "#222222"
BACKGROUND: Final = "#ffffff"
#: Each event mark's colour and dash pattern.
MARK_STYLE: Final[Mapping[str, tuple[str, tuple[float, ...]]]] = {
    "crossed": (CROSSED_COLOUR, (2.0, 2.0)),
    "alert": (ALERT_COLOUR, (4.0, 2.0)),
    "action": (ACTION_COLOUR, (4.0, 2.0)),
    "stale": (GAP_MARK_COLOUR, (2.0, 2.0)),
    "restored": (GAP_MARK_COLOUR, (4.0, 2.0)),
}

_LIMIT_KEYS: Final[tuple[tuple[Literal["alert", "action"], Literal["high", "low"], str], ...]] = (
    ("action", "high", "action_high"),
    ("alert", "high", "alert_high"),
    ("alert", "low", "alert_low"),
    ("action", "low", "action_low"),
)
#: Alarm events that say a level was reached, and how the mark of each is called.
_LEVEL_EVENTS: Final = ("raised", "escalated")
_MARK_TEXT: Final[Mapping[str, str]] = {
    "crossed": "limit crossed",
    "alert": "alert level reached",
    "action": "action level reached",
    "stale": "data-gap alarm",
    "restored": "data restored",
}
# English month names, whatever the process locale (strftime's %b follows it).
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
#: More than any daylight-saving shift: how far past the end (in wall time) ticks are sought.
_DST_MARGIN: Final = timedelta(hours=3)


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One drawn point of the series."""

    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class BadQualityMark:
    """A bad-quality reading; without a value (``None``) it is marked on the bottom axis."""

    ts: datetime
    value: float | None


@dataclass(frozen=True, slots=True)
class LimitLine:
    """A horizontal limit line: ``label`` reads e.g. "action high 8 °C"."""

    value: float
    kind: Literal["alert", "action"]
    side: Literal["high", "low"]
    label: str


@dataclass(frozen=True, slots=True)
class Span:
    """The shaded period: the excursion or the data gap (an open one runs to the window's end)."""

    start: datetime
    end: datetime
    kind: Literal["excursion", "data_gap"]
    label: str
    open: bool


@dataclass(frozen=True, slots=True)
class EventMark:
    """A moment on the time axis: the limit crossed, a level reached, a data-gap event.

    ``kind`` is ``crossed`` (the record's start), ``alert`` or ``action`` (the alarm of
    that level raised: after the rule's delay or consecutive count), ``stale`` or
    ``restored`` (a data gap's events); ``short`` is drawn at the line, ``label`` (with
    the time in the site's zone) is its full text.
    """

    ts: datetime
    kind: Literal["crossed", "alert", "action", "stale", "restored"]
    short: str
    label: str


@dataclass(frozen=True, slots=True)
class LegendEntry:
    """One line of the legend: what a mark's colour and kind mean."""

    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class PeakMark:
    """The record's peak as the core measured it."""

    ts: datetime
    value: float
    label: str


@dataclass(frozen=True, slots=True)
class TimeTick:
    """A time-axis tick, labelled in the site's time zone."""

    ts: datetime
    label: str


@dataclass(frozen=True, slots=True)
class ValueTick:
    """A value-axis tick at a nice number."""

    value: float
    label: str


@dataclass(frozen=True, slots=True)
class Trend:
    """Everything both renderings draw, in data units (times aware UTC, values in ``unit``).

    ``runs`` are the connected pieces of the series; ``readings`` counts the readings in the
    window and ``points`` those drawn (fewer when decimated, which ``note`` then says).
    ``window`` names the window asked for (a key of ``WINDOWS``); ``display`` writes its
    values (``digits`` after the point, ``None``: by the value's size; ``count``: whole).
    """

    title: str
    caption: str
    note: str
    unit: str
    zone: str
    x_range: tuple[datetime, datetime]
    y_range: tuple[float, float]
    runs: tuple[tuple[TrendPoint, ...], ...]
    bad_quality: tuple[BadQualityMark, ...]
    limits: tuple[LimitLine, ...]
    span: Span | None
    peak: PeakMark | None
    time_ticks: tuple[TimeTick, ...]
    value_ticks: tuple[ValueTick, ...]
    readings: int
    points: int
    empty: bool
    marks: tuple[EventMark, ...] = ()
    legend: tuple[LegendEntry, ...] = ()
    window: str = "record"
    raw_unit: str = ""
    digits: int | None = None
    limits_note: str = ""

    @property
    def decimated(self) -> bool:
        """Whether fewer points are drawn than there are good values."""
        return bool(self.note)

    def x_fraction(self, ts: datetime) -> float:
        """Return where ``ts`` lies across the time range (0 at its start, 1 at its end)."""
        start, end = self.x_range
        return (ts - start) / (end - start)

    def y_fraction(self, value: float) -> float:
        """Return where ``value`` lies up the value range (0 at the bottom, 1 at the top)."""
        low, high = self.y_range
        return (value - low) / (high - low)


def trend_window(
    record: Mapping[str, Any], now: datetime, window: str = "record"
) -> tuple[datetime, datetime]:
    """Return the period ``[from, to)`` whose readings the chart of ``record`` needs.

    The record's own window (``"record"``) runs from before the record's start to after
    its end (an open record: to ``now``), padded on each side by half the record's
    duration, at least 15 minutes and at most 12 hours: a short excursion shows its
    surroundings, a long one still fills most of the chart. A wider window (``"6h"``,
    ``"24h"``, ``"3d"``) pads each side by that much, but spans at most ``MAX_WINDOW``
    and never less than the record's own window. ``to`` is never after ``now`` — unless
    the record itself ends later (a clock ahead of the app's), since the whole record is
    always inside the window. Both bounds are aware UTC; naive times (in ``record`` or
    ``now``) are refused, an unknown ``window`` raises ``ValueError``.
    """
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: one of {', '.join(WINDOWS)}")
    start, end = _record_period(record, now)
    padding = min(max((end - start) / 2, MIN_PADDING), MAX_PADDING)
    wider = WINDOWS[window]
    if wider is not None:
        room = (MAX_WINDOW - (end - start)) / 2
        padding = max(min(wider, room), padding)
    return start - padding, max(min(end + padding, _utc(now, "now")), end)


def build_trend(
    record: Mapping[str, Any],
    readings: Sequence[Reading],
    window: tuple[datetime, datetime],
    *,
    zone: ZoneInfo,
    max_points: int = DEFAULT_MAX_POINTS,
    display: Display | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    limits: Mapping[str, Any] | None = None,
    limits_note: str = "",
    window_name: str = "record",
) -> Trend:
    """Build the chart of ``record`` from its sensor's ``readings`` in ``window``.

    ``display`` writes the values (default: the zone's, each parameter's digits);
    ``events`` are the record's alarm events (``ts``, ``event``, ``level``: each level's
    first ``raised`` or ``escalated`` is marked, and a data gap's ``stale`` and
    ``restored``); ``limits`` replace the record's own (a data gap holds none: the caller
    gives the sensor's, and says where they come from in ``limits_note``).

    Readings outside the window are ignored; the time range is the window, widened if
    needed to hold the whole record and its peak. With more good values than
    ``max_points``, each run is reduced to the minimum and the maximum of every one of
    ``max_points // 2`` time buckets, in time order, so the output has at most
    ``max_points`` points plus two for each run break. The value range holds the drawn
    values, the limits and the peak, not bad-quality values (a faulty probe's −9999 would
    flatten the chart): their markers are kept on the plot's edge.
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    x_start, x_end = _utc(window[0], "window start"), _utc(window[1], "window end")
    record_start, record_end = _record_period(record, x_end)
    kind: Literal["excursion", "data_gap"] = (
        "data_gap" if record.get("kind") == "data_gap" else "excursion"
    )
    peak = _peak(record)
    x_start = min(x_start, record_start, *([peak[0]] if peak else []))
    x_end = max(x_end, record_end, *([peak[0]] if peak else []))
    if x_end <= x_start:
        x_end = x_start + MIN_PADDING
    inside = sorted((r for r in readings if x_start <= r.ts <= x_end), key=lambda r: r.ts)
    raw_unit = str(record.get("unit") or next((r.unit for r in inside if r.unit), ""))
    unit = unit_label(raw_unit)
    shown = display or Display(zone)
    sensor = str(record.get("sensor_id") or "") or None
    digits = shown.digits(sensor, str(record.get("parameter") or ""), raw_unit)

    def quantity(value: float) -> str:
        return format_value(value, raw_unit, digits)

    # The hot path (10⁵ readings) works on parallel lists of floats, indexed like ``inside``.
    times = [r.ts.timestamp() for r in inside]
    values = [math.nan if r.value is None else r.value for r in inside]
    runs = _runs(inside, times, values)
    good = sum(len(run) for run in runs)
    bad = [i for i, r in enumerate(inside) if r.quality is Quality.BAD]
    decimated = good > max_points
    bucket_of = _Buckets(x_start.timestamp(), x_end.timestamp(), max_points // 2)
    if decimated:
        runs = [_min_max(run, times, values, bucket_of) for run in runs]
    if len(inside) > max_points:
        bad = _first_per_bucket(bad, times, bucket_of)
    points = sum(len(run) for run in runs)

    in_force = record.get("limits") if limits is None else limits
    limit_lines = _limit_lines(in_force or {}, quantity)
    drawn = [values[i] for run in runs for i in run]
    drawn += [line.value for line in limit_lines]
    if peak is not None:
        drawn.append(peak[1])
    y_range, value_ticks = _value_axis(drawn)

    span_end = record_end if record.get("end") is not None else x_end
    span = Span(
        start=record_start,
        end=span_end,
        kind=kind,
        label=("data gap" if kind == "data_gap" else "excursion")
        + (" (open)" if record.get("end") is None else ""),
        open=record.get("end") is None,
    )
    peak_mark = (
        PeakMark(ts=peak[0], value=peak[1], label=f"peak {quantity(peak[1])}")
        if peak is not None
        else None
    )
    return Trend(
        title=_title(record, kind),
        caption=_caption(record, unit, zone, x_start, x_end),
        note=(
            f"{points:,} of {good:,} values drawn: the minimum and maximum of each interval"
            if decimated
            else ""
        ),
        unit=unit,
        zone=zone.key,
        x_range=(x_start, x_end),
        y_range=y_range,
        runs=tuple(tuple(TrendPoint(inside[i].ts, values[i]) for i in run) for run in runs),
        bad_quality=tuple(
            BadQualityMark(inside[i].ts, values[i] if math.isfinite(values[i]) else None)
            for i in bad
        ),
        limits=tuple(limit_lines),
        span=span,
        peak=peak_mark,
        time_ticks=_time_ticks(x_start, x_end, zone),
        value_ticks=value_ticks,
        readings=len(inside),
        points=points,
        empty=not inside,
        marks=(event_marks := _event_marks(kind, record_start, events, shown)),
        legend=_legend(kind, event_marks, limit_lines, bool(bad), peak_mark is not None),
        window=window_name,
        raw_unit=raw_unit,
        digits=digits,
        limits_note=limits_note,
    )


# --- building -------------------------------------------------------------------------------


def _utc(value: object, what: str) -> datetime:
    """Return ``value`` (an aware datetime or an ISO 8601 string with offset) in UTC."""
    if isinstance(value, str):
        return parse_ts(value)
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime or an ISO 8601 string, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveTimestampError(f"{what} {value!r} has no UTC offset")
    return value.astimezone(UTC)


def _record_period(record: Mapping[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """Return the record's start and end (``now`` while open; never before the start)."""
    start = _utc(record["start"], "start")
    end_value = record.get("end")
    end = _utc(now, "now") if end_value is None else _utc(end_value, "end")
    return start, max(start, end)


def _peak(record: Mapping[str, Any]) -> tuple[datetime, float] | None:
    """Return the record's peak time and value, if it has a finite one."""
    value, ts = record.get("peak"), record.get("peak_ts")
    if ts is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return _utc(ts, "peak_ts"), float(value)


def _runs(readings: Sequence[Reading], times: list[float], values: list[float]) -> list[list[int]]:
    """Split time-ordered readings into runs (lists of indices) of drawable values.

    A run breaks at a missing or non-finite value, at bad quality, and where two readings
    are further apart than ``GAP_FACTOR`` median sampling intervals.
    """
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    max_step = GAP_FACTOR * statistics.median(steps) if steps else math.inf
    runs: list[list[int]] = []
    current: list[int] = []
    last = -math.inf
    for i, reading in enumerate(readings):
        drawable = reading.quality is not Quality.BAD and math.isfinite(values[i])
        if current and (not drawable or times[i] - last > max_step):
            runs.append(current)
            current = []
        if drawable:
            current.append(i)
            last = times[i]
    if current:
        runs.append(current)
    return runs


@dataclass(frozen=True, slots=True)
class _Buckets:
    """Equal time buckets over ``[start, end]`` (epoch seconds): which one holds a time."""

    start: float
    end: float
    count: int

    def __call__(self, t: float) -> int:
        index = int((t - self.start) / (self.end - self.start) * self.count)
        return index if index < self.count else self.count - 1


def _min_max(
    run: list[int], times: list[float], values: list[float], bucket_of: _Buckets
) -> list[int]:
    """Keep the minimum and the maximum of each time bucket of a run, in time order."""
    kept: list[int] = []
    current, low, high = bucket_of(times[run[0]]), run[0], run[0]
    for i in run[1:]:
        bucket = bucket_of(times[i])
        if bucket != current:
            kept += sorted({low, high})
            current, low, high = bucket, i, i
        elif values[i] < values[low]:
            low = i
        elif values[i] > values[high]:
            high = i
    kept += sorted({low, high})
    return kept


def _first_per_bucket(indices: list[int], times: list[float], bucket_of: _Buckets) -> list[int]:
    """Keep the first reading of each time bucket: markers closer than that overlap anyway."""
    seen: set[int] = set()
    kept: list[int] = []
    for i in indices:
        bucket = bucket_of(times[i])
        if bucket not in seen:
            seen.add(bucket)
            kept.append(i)
    return kept


def _limit_lines(limits: Mapping[str, Any], quantity: Callable[[float], str]) -> list[LimitLine]:
    """Return the limits in force as lines, action high first."""
    lines: list[LimitLine] = []
    for kind, side, key in _LIMIT_KEYS:
        value = limits.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            label = f"{kind} {side} {quantity(value)}"
            lines.append(LimitLine(float(value), kind, side, label))
    return lines


def _event_marks(
    kind: str, start: datetime, events: Sequence[Mapping[str, Any]], shown: Display
) -> tuple[EventMark, ...]:
    """Return the record's moments: the limit crossed, each level's first alarm; gap events.

    An excursion starts when the limit is crossed; its alarm of a level is raised after
    the rule's delay or consecutive count, so the two marks tell the delay apart. A data
    gap has its ``stale`` and ``restored`` events instead.
    """
    marks: list[EventMark] = []
    if kind == "excursion":
        marks.append(_event_mark(start, "crossed", shown))
    seen: set[str] = set()
    for event in sorted(events, key=lambda e: _utc(e["ts"], "event ts")):
        name, level = str(event.get("event") or ""), str(event.get("level") or "")
        which = ""
        if kind == "excursion" and name in _LEVEL_EVENTS and level in ("alert", "action"):
            which = level
        elif kind == "data_gap" and name in ("stale", "restored"):
            which = name
        if which and which not in seen:
            seen.add(which)
            marks.append(_event_mark(_utc(event["ts"], "event ts"), which, shown))
    return tuple(sorted(marks, key=lambda m: m.ts))


def _event_mark(ts: datetime, kind: str, shown: Display) -> EventMark:
    text = _MARK_TEXT[kind]
    short = {"crossed": "crossed", "alert": "alert", "action": "action"}.get(kind, text)
    return EventMark(ts, kind, short, f"{text} {shown.time(ts)}")  # type: ignore[arg-type]


def _legend(
    kind: str,
    marks: Sequence[EventMark],
    limits: Sequence[LimitLine],
    bad: bool,
    peak: bool,
) -> tuple[LegendEntry, ...]:
    """Say what the chart's marks mean: only those it draws."""
    entries = [LegendEntry(kind, "data gap" if kind == "data_gap" else "excursion")]
    entries += [
        LegendEntry(f"limit-{k}", f"{k} limit")
        for k in ("alert", "action")
        if any(line.kind == k for line in limits)
    ]
    meaning = {
        "crossed": "limit crossed (record start)",
        "alert": "alert level reached (after the rule's delay)",
        "action": "action level reached (after the rule's delay)",
        "stale": "data-gap alarm raised",
        "restored": "data restored",
    }
    for name in dict.fromkeys(m.kind for m in marks):
        entries.append(LegendEntry(f"mark-{name}", meaning[name]))
    if peak:
        entries.append(LegendEntry("peak", "peak"))
    if bad:
        entries.append(LegendEntry("bad-quality", "bad-quality reading"))
    return tuple(entries)


def _nice_step(raw: float) -> tuple[float, int]:
    """Return a step of 1, 2, 2.5 or 5 × 10ⁿ not below ``raw``, and the decimals it needs."""
    exponent = math.floor(math.log10(raw))
    mantissa = next(m for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * 10.0**exponent >= raw * 0.999999)
    if mantissa == 10.0:
        mantissa, exponent = 1.0, exponent + 1
    extra = 1 if mantissa == 2.5 else 0  # 2.5, 0.25: one decimal more than the power of ten
    return mantissa * 10.0**exponent, max(0, extra - exponent)


def _value_axis(values: Iterable[float]) -> tuple[tuple[float, float], tuple[ValueTick, ...]]:
    """Return a y range holding ``values`` with a margin, and nice ticks within it."""
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = high - low
    if span == 0:
        span = abs(high) * 0.1 or 1.0
        low, high = low - span / 2, high + span / 2
    low, high = low - span * Y_MARGIN, high + span * Y_MARGIN
    step, decimals = _nice_step((high - low) / TARGET_VALUE_TICKS)
    first, last = math.ceil(low / step), math.floor(high / step)
    ticks = tuple(
        ValueTick(k * step, format_value(k * step, "", decimals)) for k in range(first, last + 1)
    )
    return (low, high), ticks


def _time_step(span: timedelta) -> timedelta:
    for step in TIME_STEPS:
        if span / step <= MAX_TIME_TICKS:
            return step
    return timedelta(days=math.ceil(span / timedelta(days=1) / MAX_TIME_TICKS))


def _time_ticks(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[TimeTick, ...]:
    """Return ticks at round local times (06:00, 06:15, … or local midnights) in the range.

    The grid is in the site's wall-clock time. A local time that does not exist (spring
    forward) gets no tick; one that occurs twice (fall back) gets a tick at each
    occurrence, labelled with the zone's abbreviation ("02:30 CEST", "02:30 CET"), so the
    ticks increase and no label is ambiguous. A label carries the date at the first tick
    and wherever the local date changes.
    """
    step = _time_step(end - start)
    # Naive wall-clock times; the margin reaches the repeated hour of a fall-back transition.
    first = start.astimezone(zone).replace(tzinfo=None) - _DST_MARGIN
    last = end.astimezone(zone).replace(tzinfo=None) + _DST_MARGIN
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    if step < timedelta(days=1):
        wall = midnight + (first - midnight) // step * step
    else:
        wall = midnight - timedelta(days=midnight.toordinal() % step.days)
    twice: dict[datetime, bool] = {}  # tick instant -> whether its wall time occurs twice
    while wall <= last:
        instants = {_instant(wall, zone, fold) for fold in (0, 1)} - {None}
        for instant in instants:
            if instant is not None and start <= instant <= end:
                twice[instant] = len(instants) > 1
        wall += step
    ticks: list[TimeTick] = []
    previous: datetime | None = None
    for instant in sorted(twice):
        local = instant.astimezone(zone)
        day = f"{local.day:02d} {_MONTHS[local.month - 1]}"
        if step >= timedelta(days=1):
            label = day
        else:
            label = f"{local.hour:02d}:{local.minute:02d}"
            if previous is None or previous.date() != local.date():
                label = f"{day} {label}"
        if twice[instant]:
            label = f"{label} {local.tzname()}"
        ticks.append(TimeTick(instant, label))
        previous = local
    return tuple(ticks)


def _instant(wall: datetime, zone: ZoneInfo, fold: int) -> datetime | None:
    """Return the UTC instant of a naive local time in ``zone`` (None: it does not exist)."""
    instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
    return instant if instant.astimezone(zone).replace(tzinfo=None) == wall else None


def _title(record: Mapping[str, Any], kind: str) -> str:
    if kind == "data_gap":
        what = "Data gap"
    else:
        detail = " ".join(str(record[k]) for k in ("level", "direction") if record.get(k))
        what = f"Excursion ({detail})" if detail else "Excursion"
    where = [str(record[k]) for k in ("parameter", "instrument", "area") if record.get(k)] or [
        str(record.get("sensor_id", ""))
    ]
    return f"{what} — {' · '.join(where)}"


def _caption(
    record: Mapping[str, Any], unit: str, zone: ZoneInfo, start: datetime, end: datetime
) -> str:
    """Say what is drawn: sensor, parameter and unit, the period in the site's zone.

    Each end of the period carries the zone's abbreviation (CET, CEST): across a
    daylight-saving change the two differ, and a local time alone can be ambiguous.
    """
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    end_format = "%H:%M %Z" if local_end.date() == local_start.date() else "%Y-%m-%d %H:%M %Z"
    period = f"{local_start:%Y-%m-%d %H:%M %Z} – {local_end.strftime(end_format)} ({zone.key})"
    parameter = str(record.get("parameter") or "value")
    sensor = str(record.get("sensor_id") or "")
    parts = [sensor, f"{parameter} in {unit}" if unit else parameter, period]
    return " · ".join(p for p in parts if p)


def _epoch(ts: datetime) -> float:
    return ts.timestamp()


def zone_offsets(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[float, int, str]]:
    """Return the site zone's UTC offsets over ``[start, end]``: ``(from, seconds, name)``.

    The first entry holds at ``start``; each further one from the instant its offset (a
    daylight-saving change) takes effect, found to the minute. The page's chart writes its
    times with these, so they read like ``Display.time`` whatever the browser's zone.
    """

    def at(t: datetime) -> tuple[int, str]:
        local = t.astimezone(zone)
        offset = local.utcoffset()
        return int(offset.total_seconds()) if offset else 0, local.tzname() or zone.key

    found = [(start.timestamp(), *at(start))]
    step, t = timedelta(hours=1), start
    while t < end:
        nxt = min(t + step, end)
        if at(nxt) != found[-1][1:]:
            low, high = t, nxt  # the change lies in (low, high]: narrow it to the minute
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                low, high = (mid, high) if at(mid) == found[-1][1:] else (low, mid)
            found.append((high.timestamp(), *at(high)))
        t = nxt
    return found


def trend_json(trend: Trend) -> dict[str, Any]:
    """Return the trend for the page's interactive chart (times in epoch seconds, UTC).

    The series is one list of times and one of values, ``None`` where a run breaks (the
    chart never joins across it); every label is the one the SVG and the PDF draw, and
    ``offsets`` (``zone_offsets``) let the chart write times in the site's zone.
    """
    times: list[float] = []
    values: list[float | None] = []
    for run in trend.runs:
        if times:
            times.append(times[-1])  # a break: the chart lifts its pen here
            values.append(None)
        for point in run:
            times.append(_epoch(point.ts))
            values.append(point.value)
    span = trend.span
    return {
        "window": trend.window,
        "windows": list(WINDOWS),
        "title": trend.title,
        "caption": trend.caption,
        "note": trend.note,
        "limits_note": trend.limits_note,
        "unit": trend.unit,
        "digits": trend.digits,
        "count": is_count(trend.raw_unit),
        "zone": trend.zone,
        "offsets": [list(o) for o in zone_offsets(*trend.x_range, ZoneInfo(trend.zone))],
        "x_range": [_epoch(t) for t in trend.x_range],
        "y_range": list(trend.y_range),
        "readings": trend.readings,
        "points": trend.points,
        "decimated": trend.decimated,
        "empty": trend.empty,
        "series": {"t": times, "v": values},
        "bad_quality": [{"t": _epoch(b.ts), "v": b.value} for b in trend.bad_quality],
        "limits": [
            {"kind": x.kind, "side": x.side, "value": x.value, "label": x.label}
            for x in trend.limits
        ],
        "span": None
        if span is None
        else {
            "kind": span.kind,
            "start": _epoch(span.start),
            "end": _epoch(span.end),
            "label": span.label,
            "open": span.open,
        },
        "peak": None
        if trend.peak is None
        else {"t": _epoch(trend.peak.ts), "value": trend.peak.value, "label": trend.peak.label},
        "marks": [
            {"t": _epoch(m.ts), "kind": m.kind, "short": m.short, "label": m.label}
            for m in trend.marks
        ],
        "legend": [{"kind": e.kind, "text": e.text} for e in trend.legend],
        "colours": {
            "series": SERIES_COLOUR,
            "alert": ALERT_COLOUR,
            "action": ACTION_COLOUR,
            "excursion": EXCURSION_FILL,
            "data_gap": GAP_FILL,
            "bad_quality": BAD_QUALITY_COLOUR,
            "peak": PEAK_COLOUR,
            "grid": GRID_COLOUR,
            "axis": AXIS_COLOUR,
            "text": TEXT_COLOUR,
            "marks": {kind: colour for kind, (colour, _dash) in MARK_STYLE.items()},
        },
    }
