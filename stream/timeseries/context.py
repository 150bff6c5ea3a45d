"""The context series: what the dashboards draw beside the readings (``stream.timeseries.schema``).

A trend of readings alone cannot say which limits were in force (rooms with an occupancy
schedule switch between at-rest and in-operation limits), when alarms were raised, or
whether a channel is stale right now. The stream worker and the embedded processor write
four more measurements to the same store for that, with the readings' tags (``site``,
``area``, ``instrument``, ``sensor``, ``parameter``, ``unit``; written sorted, empty ones
left out) and the readings' timestamp precision (µs)::

    limits,area=A,…,unit=U alert_high=F,action_high=F,alert_low=F,action_low=F,occupancy="S" T
    status,area=A,…,unit=U code=Ni,value=F,last_reading=Ni T
    alarm,area=A,event=E,…,level=L,…,unit=U text="S",value=F,limit_value=F,excursion="S" T
    record,area=A,…,kind=K,…,unit=U id="S",level="S",direction="S",end_ms=Ni,peak=F,text="S" T

measurement ``limits`` — the limits in force, over **data time**
    One point per channel at the channel's first reading a processor sees, at every
    quarter hour (``LIMITS_EVERY_US``) of data time while its readings flow, and at the
    exact instant of every occupancy change, so a query grouped by time with
    ``fill(previous)`` that starts ``LIMITS_LOOKBACK`` before its range draws each limit
    as the step line it was (a point a minute would double the points of a channel read
    once a minute). Fields: the four limits (float; a limit that
    is not set is left out) and ``occupancy`` (``at_rest`` / ``in_operation``; ``""`` for
    a room without occupancy). A pure function of the site file and the time: repeating a
    point (a restart, a redelivery, two processors) writes the same values again. After a
    gap in the data the points of the gap are written from the next reading back, for at
    most ``LIMITS_BACKFILL_US``.

measurement ``status`` — the channel's state, over **processor time**
    What the processor holds now: one point per channel at every whole minute of its clock
    and whenever a batch or tick raises an event for the channel. Fields: ``code`` (0
    normal, 1 alert, 2 action — the level of the open excursion —, 3 stale, 4 sensor fault;
    ``STATUS_*``), ``value`` (the last good sample, left out before the first) and
    ``last_reading`` (the data time of the last reading, epoch milliseconds — Grafana's
    time unit; left out before the first). Stale is judged on the processor's clock, so
    this series is on that clock too: a site overview asks for its last minutes.

measurement ``alarm`` — alarm events, over data time (annotations)
    One point per ``AlarmEvent`` at its ``ts``; extra tags ``event`` (``raised``,
    ``escalated``, ``cleared``, ``stale``, ``restored``, ``sensor_fault``,
    ``rate_of_change``) and ``level`` (when there is one). Fields: ``text`` (a human
    sentence), ``value``, ``limit_value``, ``excursion`` (the record id) when known.

measurement ``record`` — excursion records and data gaps, over data time (region annotations)
    One point per record at its ``start``; every revision writes the same point again (same
    series and time), so the last revision's fields win. Extra tag ``kind``
    (``excursion`` / ``data_gap``). Fields: ``id``, ``text``, and for excursions ``level``,
    ``direction``, ``peak``; ``end_ms`` (epoch ms) once the record has ended.

Field types never change within a measurement (InfluxDB refuses a field written with
another type than its shard holds). ``ContextPoint`` is the store-neutral form;
``to_line`` makes its line of line protocol; ``ContextTrail`` decides when points are due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import isfinite
from typing import Final

from envmon.models import AlarmEvent, CoreEvent, DataGap, ExcursionRecord
from envmon.sensors import LimitSet, Occupancy, SensorSpec
from envmon.timeutil import to_us
from stream.core.state import SensorState
from stream.timeseries.schema import (
    TAG_AREA,
    TAG_INSTRUMENT,
    TAG_PARAMETER,
    TAG_SENSOR,
    TAG_SITE,
    TAG_UNIT,
    escape_measurement,
    escape_tag,
    format_float,
    quote_string,
)

LIMITS: Final = "limits"
STATUS: Final = "status"
ALARM: Final = "alarm"
RECORD: Final = "record"
MEASUREMENTS: Final = (LIMITS, STATUS, ALARM, RECORD)

TAG_EVENT: Final = "event"
TAG_LEVEL: Final = "level"
TAG_KIND: Final = "kind"

STATUS_NORMAL: Final = 0
STATUS_ALERT: Final = 1
STATUS_ACTION: Final = 2
STATUS_STALE: Final = 3
STATUS_FAULT: Final = 4
#: Human names of the status codes (dashboards map the codes to these).
STATUS_NAMES: Final = {
    STATUS_NORMAL: "normal",
    STATUS_ALERT: "alert",
    STATUS_ACTION: "action",
    STATUS_STALE: "stale",
    STATUS_FAULT: "fault",
}

MINUTE_US: Final = 60_000_000
#: The limits are written every quarter hour of data time (and at occupancy changes) ...
LIMITS_EVERY_US: Final = 15 * MINUTE_US
#: ... so a query that starts this much before its range finds the limits in force at its
#: start (InfluxQL duration).
LIMITS_LOOKBACK: Final = "30m"
#: After a gap, the limits of at most the last hour of it are written.
LIMITS_BACKFILL_US: Final = 60 * MINUTE_US
#: The status of every channel is written at every whole minute of the processor's clock.
STATUS_EVERY_US: Final = MINUTE_US

FieldValue = float | int | str


@dataclass(frozen=True, slots=True)
class ContextPoint:
    """One point of a context measurement: tags sorted by key, fields in a fixed order."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    ts_us: int

    def series(self) -> str:
        """Return the series key without escaping (``measurement,k=v,…``): a store's key."""
        return ",".join([self.measurement, *(f"{k}={v}" for k, v in self.tags if v)])


def to_line(point: ContextPoint) -> str:
    """Return the point as one line of line protocol (µs timestamp, no trailing newline)."""
    parts = [escape_measurement(point.measurement)]
    parts.extend(f"{escape_tag(k)}={escape_tag(v)}" for k, v in point.tags if v)
    fields = ",".join(f"{escape_tag(k)}={_field(v)}" for k, v in point.fields)
    return f"{','.join(parts)} {fields} {point.ts_us}"


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):  # pragma: no cover - no boolean field is defined
        raise TypeError("boolean fields are not part of the schema")
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return format_float(value)
    return quote_string(value)


def status_code(state: SensorState) -> int:
    """Return the ``status`` code of a channel's evaluation state."""
    if state.fault:
        return STATUS_FAULT
    if state.stale:
        return STATUS_STALE
    high, low = state.high, state.low
    return max(high.level if high.open else 0, low.level if low.open else 0)


def limits_in_force(spec: SensorSpec, ts_us: int) -> tuple[LimitSet, Occupancy | None, int]:
    """Return the channel's limits and occupancy at ``ts_us`` and when they next may change."""
    schedule = spec.schedule
    if schedule is None:
        return spec.rules.limits, None, 2**62
    occupancy, until = schedule.state_at(ts_us)
    by_occupancy = spec.rules.limits_by_occupancy
    limits = spec.rules.limits if by_occupancy is None else by_occupancy[occupancy]
    return limits, occupancy, until


class ContextTrail:
    """Decides which context points are due, for the channels of one site.

    ``reading(sensor_id, ts_us)`` is called for every evaluated reading, but costs a
    dictionary look-up and a comparison unless a ``limits`` point is due. ``events`` turns
    core events into ``alarm`` and ``record`` points; ``status`` gives the ``status`` points
    of the channels whose state changed or whose minute is due.
    """

    def __init__(self, specs: Iterable[SensorSpec], site: str = "") -> None:
        self.specs: dict[str, SensorSpec] = {spec.sensor_id: spec for spec in specs}
        self.site = site
        self._tags: dict[str, tuple[tuple[str, str], ...]] = {}
        #: sensor id → data time up to which its limits are written
        self._covered: dict[str, int] = {}
        #: sensor id → the data time at or after which its next limits point is due (the
        #: stream worker looks here before calling ``reading``)
        self.due: dict[str, int] = {}
        #: sensor id → the code of its last status point
        self._status: dict[str, int] = {}
        self._next_sweep = 0

    def tags(self, sensor_id: str) -> tuple[tuple[str, str], ...]:
        """Return a channel's tags (as the readings have them), sorted by key."""
        tags = self._tags.get(sensor_id)
        if tags is None:
            spec = self.specs.get(sensor_id)
            tags = self._tags[sensor_id] = (
                (TAG_AREA, spec.area if spec else ""),
                (TAG_INSTRUMENT, spec.instrument if spec else ""),
                (TAG_PARAMETER, spec.parameter if spec else ""),
                (TAG_SENSOR, sensor_id),
                (TAG_SITE, self.site or (spec.site if spec else "")),
                (TAG_UNIT, spec.unit if spec else ""),
            )
        return tags

    # -- limits ----------------------------------------------------------------------

    def reading(self, sensor_id: str, ts_us: int) -> list[ContextPoint]:
        """Return the ``limits`` points due with a reading at ``ts_us`` (most often none)."""
        due = self.due.get(sensor_id)
        if due is not None and ts_us < due:
            return []
        spec = self.specs.get(sensor_id)
        if spec is None:
            return []
        covered = self._covered.get(sensor_id)
        if covered is not None and ts_us <= covered:
            return []  # a late reading: its time is written already
        instants: list[int] = []
        if covered is None or ts_us - covered > LIMITS_BACKFILL_US:
            instants.append(ts_us)  # the first reading seen (or after a long gap)
            start = ts_us
        else:
            start = covered
        step = (start // LIMITS_EVERY_US + 1) * LIMITS_EVERY_US
        while step <= ts_us:
            instants.append(step)
            step += LIMITS_EVERY_US
        _limits, _occupancy, change = limits_in_force(spec, start)
        while change <= ts_us:
            instants.append(change)
            _limits, _occupancy, change = limits_in_force(spec, change)
        self._covered[sensor_id] = ts_us
        self.due[sensor_id] = min(step, change)
        return [self._limits_point(spec, at) for at in sorted(set(instants))]

    def _limits_point(self, spec: SensorSpec, ts_us: int) -> ContextPoint:
        limits, occupancy, _until = limits_in_force(spec, ts_us)
        fields: list[tuple[str, FieldValue]] = [
            (name, float(value))
            for name, value in (
                ("alert_high", limits.alert_high),
                ("action_high", limits.action_high),
                ("alert_low", limits.alert_low),
                ("action_low", limits.action_low),
            )
            if value is not None
        ]
        fields.append(("occupancy", occupancy.value if occupancy is not None else ""))
        return ContextPoint(LIMITS, self.tags(spec.sensor_id), tuple(fields), ts_us)

    # -- status ----------------------------------------------------------------------

    def status(
        self, now_us: int, states: Iterable[tuple[str, SensorState]], *, sweep: bool = False
    ) -> list[ContextPoint]:
        """Return ``status`` points at ``now_us`` for channels whose status changed.

        With ``sweep`` every channel given is written (``sweep`` decides when: once every
        ``STATUS_EVERY_US`` of the clock).
        """
        points: list[ContextPoint] = []
        known = self._status
        for sensor_id, state in states:
            code = status_code(state)
            if not sweep and known.get(sensor_id) == code:
                continue
            known[sensor_id] = code
            last = state.last_ts
            fields: list[tuple[str, FieldValue]] = [("code", code)]
            if state.last_good_ts is not None and isfinite(state.last_good_value):
                fields.append(("value", float(state.last_good_value)))
            if last is not None:
                fields.append(("last_reading", last // 1_000))
            points.append(ContextPoint(STATUS, self.tags(sensor_id), tuple(fields), now_us))
        return points

    def sweep_due(self, now_us: int) -> bool:
        """Tell whether a status sweep is due at ``now_us`` (and count it as done if so)."""
        if now_us < self._next_sweep:
            return False
        self._next_sweep = (now_us // STATUS_EVERY_US + 1) * STATUS_EVERY_US
        return True

    def sweep(
        self, now_us: int, states: Callable[[], Iterable[tuple[str, SensorState]]]
    ) -> list[ContextPoint]:
        """Return every channel's ``status`` point when a sweep is due, else nothing.

        ``states`` is called only then: a processor's tick pays nothing between sweeps.
        """
        return self.status(now_us, states(), sweep=True) if self.sweep_due(now_us) else []

    def after_events(
        self, now_us: int, events: Sequence[CoreEvent], state_of: Callable[[str], SensorState]
    ) -> list[ContextPoint]:
        """Return the points of core events and the new status of the channels they concern."""
        if not events:
            return []
        sensors = dict.fromkeys(event.sensor_id for event in events)
        return self.events(events) + self.status(now_us, ((s, state_of(s)) for s in sensors))

    # -- events ----------------------------------------------------------------------

    def events(self, events: Iterable[CoreEvent]) -> list[ContextPoint]:
        """Return the ``alarm`` and ``record`` points of core events."""
        points: list[ContextPoint] = []
        for event in events:
            if isinstance(event, AlarmEvent):
                points.append(self._alarm(event))
            elif isinstance(event, ExcursionRecord):
                points.append(self._excursion(event))
            elif isinstance(event, DataGap):
                points.append(self._gap(event))
        return points

    def _alarm(self, event: AlarmEvent) -> ContextPoint:
        tags = dict(self.tags(event.sensor_id))
        tags[TAG_EVENT] = event.event.value
        tags[TAG_LEVEL] = event.level.value if event.level is not None else ""
        fields: list[tuple[str, FieldValue]] = [("text", alarm_text(event, self.specs))]
        if event.value is not None and isfinite(event.value):
            fields.append(("value", float(event.value)))
        if event.limit is not None and isfinite(event.limit):
            fields.append(("limit_value", float(event.limit)))
        if event.excursion_id:
            fields.append(("excursion", event.excursion_id))
        return ContextPoint(ALARM, tuple(sorted(tags.items())), tuple(fields), to_us(event.ts))

    def _excursion(self, record: ExcursionRecord) -> ContextPoint:
        tags = dict(self.tags(record.sensor_id))
        tags[TAG_KIND] = "excursion"
        unit = self.specs[record.sensor_id].unit if record.sensor_id in self.specs else ""
        text = (
            f"{record.level.value.capitalize()} excursion, {record.direction.value}:"
            f" peak {_number(record.peak)} {unit}".rstrip()
        )
        fields: list[tuple[str, FieldValue]] = [
            ("id", record.id),
            ("text", text),
            ("level", record.level.value),
            ("direction", record.direction.value),
        ]
        if isfinite(record.peak):
            fields.append(("peak", float(record.peak)))
        if record.end is not None:
            fields.append(("end_ms", to_us(record.end) // 1_000))
        return ContextPoint(RECORD, tuple(sorted(tags.items())), tuple(fields), to_us(record.start))

    def _gap(self, gap: DataGap) -> ContextPoint:
        tags = dict(self.tags(gap.sensor_id))
        tags[TAG_KIND] = "data_gap"
        fields: list[tuple[str, FieldValue]] = [("id", gap.id), ("text", "Data gap: no readings")]
        if gap.end is not None:
            fields.append(("end_ms", to_us(gap.end) // 1_000))
        return ContextPoint(RECORD, tuple(sorted(tags.items())), tuple(fields), to_us(gap.start))


def _number(value: float) -> str:
    """Return a value as people read it: 4 significant digits, thousands separated."""
    if not isfinite(value):
        return str(value)
    if abs(value) >= 1_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


_EVENT_WORDS: Final = {
    "raised": "raised",
    "escalated": "escalated to action",
    "cleared": "cleared",
    "stale": "no data (stale)",
    "restored": "data restored",
    "sensor_fault": "sensor fault",
    "rate_of_change": "rate of change",
}


def alarm_text(event: AlarmEvent, specs: Mapping[str, SensorSpec]) -> str:
    """Return a one-line human text of an alarm event (an annotation's text)."""
    spec = specs.get(event.sensor_id)
    what = f"{spec.instrument} {spec.parameter}" if spec is not None else event.sensor_id
    words = _EVENT_WORDS.get(event.event.value, event.event.value)
    level = f"{event.level.value.capitalize()} " if event.level is not None else ""
    text = f"{level}{words}: {what}"
    if event.value is not None and isfinite(event.value):
        text += f" at {_number(event.value)} {event.unit}".rstrip()
    if event.limit is not None and isfinite(event.limit):
        text += f" (limit {_number(event.limit)})"
    return text
