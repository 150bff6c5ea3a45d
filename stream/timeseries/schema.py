"""The one time-series schema of envmon: how a reading becomes a line of line protocol.

Every store that speaks the InfluxDB v2 write API (InfluxDB 2.x / 3.x in production,
QuestDB in the tests) receives exactly this shape, and the Grafana dashboards query it::

    reading,area=A,instrument=I,parameter=P,sensor=S,site=SITE,unit=U value=V,quality="Q",state=Ni T

    e.g. (one line)
    reading,area=cold-store,instrument=fridge-1,parameter=temperature,sensor=fridge-1.temp,
    site=plant-a,unit=degC value=4.2,quality="good",state=0i 1767600000000000

measurement ``reading``
    Constant (``MEASUREMENT``). One measurement for every parameter: a dashboard selects a
    channel by tags, and a new parameter needs no new table.

tags (the series identity; written sorted by key, as InfluxDB recommends)
    ``site``        the site id of the configuration
    ``area``        the area / room id
    ``instrument``  the instrument id
    ``sensor``      the sensor (channel) id — unique within a site
    ``parameter``   what is measured (``temperature``, ``particles_0_5um``, …)
    ``unit``        the unit of ``value`` after normalisation (``degC``, ``1/m3``, …)

    A tag whose value is empty (a dimensionless channel has no unit) is left out of the
    line, as line protocol does not allow empty tag values: SQL stores show it as NULL.

fields
    ``value``    float — the reading's value. **Left out** when the reading has no value
                 (``None``: bad quality, sensor fault) or a non-finite one (NaN, ±inf, which
                 InfluxDB refuses): the point still records the time, the quality and the
                 state, so a fault shows on the trend as a gap with ``quality="bad"``.
    ``quality``  string — the ``Quality`` value: ``good``, ``uncertain`` or ``bad``.
    ``state``    integer — the channel's alarm state when the reading was evaluated:
                 0 normal, 1 alert, 2 action (``STATE_NORMAL`` / ``STATE_ALERT`` /
                 ``STATE_ACTION``).

timestamp
    The reading's source time (``Reading.ts``), UTC, as integer **microseconds** since the
    Unix epoch; writers send ``precision=us`` (``PRECISION``). Readings carry microseconds,
    so nothing is lost, and the lines are three digits shorter than with nanoseconds.
    In SQL stores (QuestDB, InfluxDB 3) the column is called ``time`` (``TIME_COLUMN``).

Beside the readings the processors write four context series for the dashboards (limits in
force, channel status, alarm events, records): ``stream.timeseries.context`` defines and documents
them.

Identity: a point is identified by its series (the tags) and its timestamp, so writing the
same reading twice stores it once — InfluxDB overwrites, QuestDB's readings table is
created with ``DEDUP UPSERT KEYS(time, site, sensor)`` (``devservers.questdb``). At-least-once
delivery from the bus therefore never duplicates a point.

Escaping follows the line protocol reference: in tag keys, tag values and field keys a
comma, an equals sign and a space are escaped with a backslash; in the measurement a comma
and a space; in string field values a double quote and a backslash. Line protocol cannot
carry a line break in a tag value at all, nor a tag value ending in a backslash: ``to_line``
raises ``ValueError`` for those (the site configuration never produces them).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import isfinite
from typing import Final

from envmon.models import Level, Quality, Reading
from envmon.sensors import SensorSpec
from envmon.timeutil import EPOCH, to_us

MEASUREMENT: Final = "reading"
TAG_SITE: Final = "site"
TAG_AREA: Final = "area"
TAG_INSTRUMENT: Final = "instrument"
TAG_SENSOR: Final = "sensor"
TAG_PARAMETER: Final = "parameter"
TAG_UNIT: Final = "unit"
#: The tag keys in the order they are written (sorted).
TAG_KEYS: Final = (TAG_AREA, TAG_INSTRUMENT, TAG_PARAMETER, TAG_SENSOR, TAG_SITE, TAG_UNIT)
FIELD_VALUE: Final = "value"
FIELD_QUALITY: Final = "quality"
FIELD_STATE: Final = "state"
#: Name of the timestamp column in SQL stores (QuestDB, InfluxDB 3).
TIME_COLUMN: Final = "time"
#: Timestamp precision of the lines, as the v2 write API's ``precision`` parameter spells it.
PRECISION: Final = "us"

STATE_NORMAL: Final = 0
STATE_ALERT: Final = 1
STATE_ACTION: Final = 2
_STATE_OF_LEVEL: Final = {None: STATE_NORMAL, Level.ALERT: STATE_ALERT, Level.ACTION: STATE_ACTION}

# str.translate tables: one pass per value instead of one replace per special character.
_TAG_ESCAPES: Final = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_MEASUREMENT_ESCAPES: Final = str.maketrans({",": "\\,", " ": "\\ "})
_STRING_ESCAPES: Final = str.maketrans({'"': '\\"', "\\": "\\\\"})


def state_code(level: Level | None) -> int:
    """Return the ``state`` field for an alarm level (``None`` is normal)."""
    return _STATE_OF_LEVEL[level]


@dataclass(frozen=True, slots=True)
class Point:
    """One reading in the time-series schema: tags, fields and a µs timestamp."""

    site: str
    area: str
    instrument: str
    sensor: str
    parameter: str
    unit: str
    value: float | None
    quality: Quality
    state: int
    ts_us: int

    def tags(self) -> dict[str, str]:
        """Return the tags by key, in the order they are written (empty ones included)."""
        return {
            TAG_AREA: self.area,
            TAG_INSTRUMENT: self.instrument,
            TAG_PARAMETER: self.parameter,
            TAG_SENSOR: self.sensor,
            TAG_SITE: self.site,
            TAG_UNIT: self.unit,
        }


def to_point(
    reading: Reading,
    spec: SensorSpec | None = None,
    *,
    site: str = "",
    area: str = "",
    instrument: str = "",
    parameter: str = "",
    state: Level | None = None,
) -> Point:
    """Place a reading in the schema.

    Area, instrument and parameter come from ``spec`` unless given as strings (a string
    wins); the site is ``site`` or else ``spec.site``; the unit is the reading's, or else the
    spec's. ``state`` is the channel's alarm level after this reading (``None``: normal).
    """
    if spec is not None:
        site = site or spec.site
        area = area or spec.area
        instrument = instrument or spec.instrument
        parameter = parameter or spec.parameter
    return Point(
        site=site,
        area=area,
        instrument=instrument,
        sensor=reading.sensor_id,
        parameter=parameter,
        unit=reading.unit or (spec.unit if spec is not None else ""),
        value=reading.value,
        quality=reading.quality,
        state=state_code(state),
        ts_us=to_us(reading.ts),
    )


def escape_tag(text: str) -> str:
    """Escape a tag key, tag value or field key (comma, equals sign, space)."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"line protocol cannot carry a line break in a tag: {text!r}")
    if text.endswith("\\"):
        raise ValueError(f"line protocol cannot carry a tag ending in a backslash: {text!r}")
    return text.translate(_TAG_ESCAPES)


def escape_measurement(text: str) -> str:
    """Escape a measurement name (comma, space)."""
    return text.translate(_MEASUREMENT_ESCAPES)


def quote_string(text: str) -> str:
    """Return a string field value in double quotes, with quotes and backslashes escaped."""
    return '"' + text.translate(_STRING_ESCAPES) + '"'


_QUALITY_FIELDS: Final = {quality: quote_string(quality.value) for quality in Quality}


def format_float(value: float) -> str:
    """Format a float field value exactly (shortest repr that reads back the same)."""
    return repr(float(value))


def to_line(point: Point, measurement: str = MEASUREMENT) -> str:
    """Return the point as one line of line protocol (no trailing newline, µs timestamp).

    ``measurement`` is for tests and migrations only; the schema's is ``reading``.
    """
    series = series_key(
        measurement,
        point.area,
        point.instrument,
        point.parameter,
        point.sensor,
        point.site,
        point.unit,
    )
    value = point.value
    quality = _QUALITY_FIELDS.get(point.quality) or quote_string(str(point.quality))
    if value is not None and isfinite(value):
        return (
            f"{series} {FIELD_VALUE}={format_float(value)},{FIELD_QUALITY}={quality},"
            f"{FIELD_STATE}={int(point.state)}i {point.ts_us}"
        )
    return f"{series} {FIELD_QUALITY}={quality},{FIELD_STATE}={int(point.state)}i {point.ts_us}"


@functools.lru_cache(maxsize=65_536)
def series_key(measurement: str, *tag_values: str) -> str:
    """Return the escaped ``measurement,tag=value,…`` prefix (tag values in ``TAG_KEYS`` order).

    Cached: a sensor's series is the same for every one of its readings.
    """
    parts = [escape_measurement(measurement)]
    for key, tag_value in zip(TAG_KEYS, tag_values, strict=True):
        if tag_value:
            parts.append(f"{key}={escape_tag(tag_value)}")
    return ",".join(parts)


def reading_line(
    reading: Reading,
    spec: SensorSpec | None = None,
    *,
    site: str = "",
    state: Level | None = None,
) -> str:
    """Return the line of a reading in one step (``to_line(to_point(...))``)."""
    return to_line(to_point(reading, spec, site=site, state=state))


class LineEncoder:
    """Lines of one site's readings, each sensor's series prefix computed once.

    ``line(reading, state)`` is the same text as ``reading_line(reading, specs.get(id),
    site=site, state=state)`` without building a ``Point`` (a property test checks the
    equality). ``encode(reading, ts_us, code)`` is the stream worker's form: it has the
    reading's microseconds and state code already, and encodes every reading it handles.
    """

    #: Cached prefixes before the cache starts over (sensors of one site).
    MAX_SERIES: Final = 100_000
    #: Cached value texts before the cache starts over. Instruments report with a fixed
    #: resolution (0.01 °C, whole particle counts), so a site's values repeat, and
    #: ``repr(float)`` is ~40 % of a line's cost.
    MAX_VALUES: Final = 65_536

    def __init__(self, specs: Mapping[str, SensorSpec], site: str = "") -> None:
        self._specs = specs
        self._site = site
        # sensor id → (unit, "<series> value=", "<series> ") of the last unit seen
        self._series: dict[str, tuple[str, str, str]] = {}
        # quality → per state code ',quality="Q",state=Ni ' (the fields after the value)
        self._tails: dict[Quality, tuple[str, str, str]] = {}
        # finite value → its text (repr: the shortest text that reads back as the same float)
        self._values: dict[float, str] = {}

    def prepare(self) -> None:
        """Compute every known sensor's series prefix now (its spec's unit), not on first use."""
        for sensor_id, spec in self._specs.items():
            if sensor_id not in self._series:
                self._series_of(
                    Reading.trusted(sensor_id, None, spec.unit, EPOCH, None, Quality.GOOD, "")
                )

    def line(self, reading: Reading, state: Level | None = None) -> str:
        """Return the reading's line (no trailing newline, µs timestamp)."""
        return self.encode(reading, to_us(reading.ts), _STATE_OF_LEVEL[state])

    def encode(self, reading: Reading, ts_us: int, code: int) -> str:
        """Return the line of a reading whose ``to_us(ts)`` and state code are known.

        The one implementation of the line. The stream worker calls it for every reading
        as it evaluates it and keeps the line (a ``str``, which the garbage collector does
        not track) instead of the reading until the batch is written.
        """
        entry = self._series.get(reading.sensor_id)
        if entry is None or entry[0] != reading.unit:
            entry = self._series_of(reading)
        quality = reading.quality
        tail = (self._tails.get(quality) or self._tails_of(quality))[code]
        value = reading.value
        if value is not None:
            text = self._values.get(value)  # NaN is never found: NaN != NaN
            if text is None and isfinite(value):
                text = self._value_text(value)
            if text is not None:
                return f"{entry[1]}{text}{tail}{ts_us}"
        return f"{entry[2]}{tail[1:]}{ts_us}"  # no value field (None, NaN, ±inf)

    def _value_text(self, value: float) -> str:
        text = repr(float(value))
        if value:  # not 0.0: -0.0 == 0.0 would find the other's text
            values = self._values
            if len(values) >= self.MAX_VALUES:
                values.clear()
            values[value] = text
        return text

    def encode_all(self, points: Iterable[tuple[Reading, int, int]]) -> list[str]:
        """Return the lines of ``(reading, ts_us, code)`` points."""
        encode = self.encode
        return [encode(reading, ts_us, code) for reading, ts_us, code in points]

    def _tails_of(self, quality: Quality) -> tuple[str, str, str]:
        text = _QUALITY_FIELDS.get(quality) or quote_string(str(quality))
        # Indexed by the state code itself: the codes are 0, 1, 2.
        normal, alert, action = (
            f",{FIELD_QUALITY}={text},{FIELD_STATE}={code}i "
            for code in (STATE_NORMAL, STATE_ALERT, STATE_ACTION)
        )
        tails = self._tails[quality] = (normal, alert, action)
        return tails

    def _series_of(self, reading: Reading) -> tuple[str, str, str]:
        spec = self._specs.get(reading.sensor_id)
        point = to_point(reading, spec, site=self._site)
        series = series_key(
            MEASUREMENT,
            point.area,
            point.instrument,
            point.parameter,
            point.sensor,
            point.site,
            point.unit,
        )
        if len(self._series) >= self.MAX_SERIES:
            self._series.clear()
        entry = self._series[reading.sensor_id] = (
            reading.unit,
            f"{series} {FIELD_VALUE}=",
            f"{series} ",
        )
        return entry
