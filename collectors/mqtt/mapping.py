"""Where an MQTT message becomes readings: topic → binding → sensor ids, payload → values.

``MessageDecoder.decode`` takes a topic, a payload and the receive time and returns the
readings and, when something could not be used, one ``RawPayload`` for the dead letter
with every reason (a message can do both). It never raises on bad input; its only state is
the counter state of cumulative channels and a per-topic cache of what the topic resolves to.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import orjson

from collectors.pipeline import RawPayload
from envmon.config.mqtt import (
    ChannelMapping,
    MqttBindingConfig,
    MqttCollectorConfig,
    QualityConfig,
    TimestampConfig,
)
from envmon.config.schema import SiteConfig
from envmon.models import Quality, Reading
from envmon.sensors import SensorSpec
from envmon.timeutil import (
    EARLIEST_TS,
    MAX_AHEAD,
    NaiveTimestampError,
    TimestampRangeError,
    as_utc,
    implausible,
    to_us,
)
from envmon.topics import CHANNEL, IdTemplate, TopicPattern
from envmon.units import Conversion, CounterDelta, UnitError, conversion

logger = logging.getLogger(__name__)

#: Distinct failures of the decoder itself logged with their traceback (then only counted).
MAX_LOGGED_INTERNAL_ERRORS: Final = 20
#: Characters of an exception's message kept in an internal error's dead-letter reason.
_REASON_CHARS: Final = 200
_SHORT_CHARS: Final = 40
#: Distinct topics remembered with their resolved sensors (the cache restarts when full).
TOPIC_CACHE_SIZE: Final = 10_000
_NUMBER: Final = re.compile(rb"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")
_MISSING: Final = object()
_QUALITY: Final = {"good": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}
_GOOD: Final = Quality.GOOD


@dataclass(slots=True)
class Decoded:
    """What one message became: readings, and a dead letter if anything failed."""

    readings: list[Reading] = field(default_factory=list)
    failure: RawPayload | None = None
    binding: int | None = None  # index of the binding the topic matched


class _QualityRule:
    """Reading quality from one payload field."""

    __slots__ = ("otherwise", "path", "table")

    def __init__(self, config: QualityConfig) -> None:
        self.path = tuple(config.path.split("."))
        self.table = {text: _QUALITY[name] for text, name in config.lookup().items()}
        self.otherwise = _QUALITY[config.otherwise]

    def quality(self, document: object) -> Quality:
        """Return the quality the payload states."""
        value = _lookup(document, self.path)
        if value is _MISSING or value is None or isinstance(value, dict | list):
            return self.otherwise
        return self.table.get(str(value), self.otherwise)


class _TimestampRule:
    """Reading time from one payload field."""

    __slots__ = ("format", "key", "name", "path")

    def __init__(self, config: TimestampConfig) -> None:
        self.name = config.path
        self.path = tuple(config.path.split("."))
        self.key = self.path[0] if len(self.path) == 1 else None
        self.format = config.format


class _Channel:
    """One channel of a binding, compiled."""

    __slots__ = ("cumulative", "key", "name", "path", "quality", "unit")

    def __init__(
        self, name: str, mapping: ChannelMapping, payload_quality: _QualityRule | None
    ) -> None:
        self.name = name
        self.path = tuple((mapping.path or name).split("."))
        self.key = self.path[0] if len(self.path) == 1 else None  # fast path: a top-level field
        self.unit = mapping.unit
        self.cumulative = mapping.cumulative
        self.quality = (
            _QualityRule(mapping.quality) if mapping.quality is not None else payload_quality
        )


class _Binding:
    """One binding, compiled."""

    __slots__ = ("channels", "index", "is_json", "pattern", "sample_volume_m3", "template", "ts")

    def __init__(self, index: int, config: MqttBindingConfig) -> None:
        self.index = index
        self.pattern: TopicPattern = config.pattern
        self.template: IdTemplate = config.template
        self.is_json = config.payload.format == "json"
        ts = config.payload.timestamp
        self.ts = _TimestampRule(ts) if ts is not None else None
        self.sample_volume_m3 = config.sample_volume_m3
        quality = _QualityRule(config.payload.quality) if config.payload.quality else None
        self.channels = [_Channel(n, m, quality) for n, m in config.payload.channel_items()]


class _Target:
    """A channel of a topic resolved: the sensor it feeds and how to convert, or why not."""

    __slots__ = ("channel", "convert", "error", "sensor_id", "unit")

    def __init__(
        self,
        channel: _Channel,
        sensor_id: str,
        unit: str = "",
        convert: Conversion | None = None,
        error: str | None = None,
    ) -> None:
        self.channel = channel
        self.sensor_id = sensor_id
        self.unit = unit
        self.convert = convert  # None: the value is already in the sensor's unit
        self.error = error


class _Plan:
    """Everything about a topic that does not depend on the payload."""

    __slots__ = ("binding", "targets")

    def __init__(self, binding: _Binding, targets: list[_Target]) -> None:
        self.binding = binding
        self.targets = targets


class MessageDecoder:
    """Maps the messages of one MQTT connection onto the site's sensors."""

    def __init__(self, config: MqttCollectorConfig, site: SiteConfig, *, source: str) -> None:
        self.config = config
        self.source = source
        self.max_payload_bytes = config.max_payload_bytes
        self.bindings = [_Binding(i, b) for i, b in enumerate(config.bindings)]
        self.sensors: dict[str, SensorSpec] = site.sensor_map()
        self._volumes = {
            instrument.id: instrument.sample_volume_m3
            for area in site.areas
            for instrument in area.instruments
        }
        self._plans: dict[str, _Plan | None] = {}
        self.counters = CounterDelta()
        #: Messages the decoder itself failed on (each dead-lettered as an internal error).
        self.internal_errors = 0
        self._logged_errors: set[tuple[str, str, int]] = set()
        self._logged_resets: set[str] = set()

    def decode(
        self,
        topic: str | None,
        payload: bytes,
        received_at: datetime,
        *,
        retain: bool = False,
        raw_topic: bytes = b"",
    ) -> Decoded:
        """Turn one message into readings and/or a dead letter (never raises on bad input)."""
        if received_at.tzinfo is None:  # a programming error (the clock), not bad input
            raise NaiveTimestampError("received_at must carry a UTC offset")
        if len(payload) > self.max_payload_bytes:  # whatever the topic: the dead letter too
            origin = topic if topic is not None else _escaped(raw_topic)
            invalid = "topic is not valid UTF-8; " if topic is None else ""
            return _fail(
                origin,
                payload[: self.max_payload_bytes],
                f"{invalid}oversized payload: {len(payload):,} bytes exceed max_payload_bytes "
                f"{self.max_payload_bytes:,} (kept the first {self.max_payload_bytes:,})",
            )
        if topic is None:
            return _fail(_escaped(raw_topic), payload, "topic is not valid UTF-8")
        try:
            plan = self._plans[topic]
        except KeyError:
            plan = self._plan(topic)
        if plan is None:
            return _fail(topic, payload, "unknown topic: no binding matches it")
        binding = plan.binding
        if retain and binding.ts is None:
            # A retained message is the broker's stored last value, possibly hours old;
            # stamped with the receive time it would pass for a fresh sample.
            logger.debug("skipping retained message on %s (no payload timestamp)", topic)
            return Decoded(binding=binding.index)
        try:
            return self._decode(plan, topic, payload, received_at)
        except Exception as exc:  # a decoder bug must not stop the collector
            self._internal_error(topic, exc)
            reason = f"internal error: {type(exc).__name__}: {str(exc)[:_REASON_CHARS]}"
            return _fail(topic, payload, reason, binding.index)

    def _internal_error(self, topic: str, exc: Exception) -> None:
        """Log a failure of the decoder itself: with its traceback once per place, then counted.

        Every message of a hostile or broken device can hit the same bug: a traceback per
        message would flood the log. The dead letter still records each one.
        """
        self.internal_errors += 1
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = ("", 0) if frame is None else (frame.tb_frame.f_code.co_filename, frame.tb_lineno)
        key = (type(exc).__name__, *where)
        if key in self._logged_errors or len(self._logged_errors) >= MAX_LOGGED_INTERNAL_ERRORS:
            logger.debug("decoding a message on %.200s failed again: %r", topic, exc)
            return
        self._logged_errors.add(key)
        logger.error(
            "decoding a message on %.200s failed (dead-lettered; the same failure again is "
            "only counted)",
            topic,
            exc_info=exc,
        )

    # ------------------------------------------------------------------ steps

    def _plan(self, topic: str) -> _Plan | None:
        """Resolve a topic not seen before (and remember it)."""
        plan: _Plan | None = None
        for binding in self.bindings:
            segments = binding.pattern.match(topic)
            if segments is not None:
                targets = []
                for channel in binding.channels:
                    segments[CHANNEL] = channel.name
                    targets.append(
                        self._target(binding, channel, binding.template.render(segments))
                    )
                plan = _Plan(binding, targets)
                break
        if len(self._plans) >= TOPIC_CACHE_SIZE:
            self._plans.clear()
        self._plans[topic] = plan
        return plan

    def _target(self, binding: _Binding, channel: _Channel, sensor_id: str) -> _Target:
        spec = self.sensors.get(sensor_id)
        if spec is None:
            return _Target(
                channel, sensor_id, error=f"channel {channel.name!r}: unknown sensor {sensor_id!r}"
            )
        volume = binding.sample_volume_m3 or self._volumes.get(spec.instrument)
        try:
            convert = conversion(channel.unit or spec.unit, spec.unit, sample_volume_m3=volume)
        except UnitError as exc:
            return _Target(
                channel, sensor_id, error=f"channel {channel.name!r} → {sensor_id}: {exc}"
            )
        return _Target(channel, sensor_id, spec.unit, None if convert.is_identity else convert)

    def _decode(self, plan: _Plan, topic: str, payload: bytes, received_at: datetime) -> Decoded:
        binding = plan.binding
        document: dict[str, object] = {}
        number: float = 0.0
        if binding.is_json:
            try:
                parsed_json = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                return _fail(topic, payload, f"invalid JSON: {exc}", binding.index)
            if type(parsed_json) is not dict:
                return _fail(
                    topic,
                    payload,
                    f"payload is a JSON {_json_type(parsed_json)}, expected an object",
                    binding.index,
                )
            document = parsed_json
        else:
            parsed_number = _parse_number(payload)
            if isinstance(parsed_number, str):
                return _fail(topic, payload, parsed_number, binding.index)
            number = parsed_number

        if binding.ts is None:
            ts = received_at
        else:
            parsed = _timestamp(document, binding.ts, received_at)
            if isinstance(parsed, str):
                return _fail(topic, payload, parsed, binding.index)
            ts = parsed

        readings: list[Reading] = []
        isfinite = math.isfinite
        reasons: list[str] | None = None
        for target in plan.targets:
            if target.error is not None:
                reasons = [*(reasons or ()), target.error]
                continue
            channel = target.channel
            raw: object
            if not binding.is_json:
                raw = number
            elif channel.key is not None:
                raw = document.get(channel.key, _MISSING)
            else:
                raw = _lookup(document, channel.path)
            value: float | None
            kind = type(raw)
            if kind is float or kind is int:
                value = float(raw)  # type: ignore[arg-type]
                if not math.isfinite(value):
                    reasons = [*(reasons or ()), f"channel {channel.name!r}: value out of range"]
                    continue
            elif raw is None:
                value = None
            elif raw is _MISSING:
                reasons = [
                    *(reasons or ()),
                    f"channel {channel.name!r}: missing field {'.'.join(channel.path)!r}",
                ]
                continue
            else:
                reasons = [
                    *(reasons or ()),
                    f"channel {channel.name!r}: field {'.'.join(channel.path)!r} is a "
                    f"{_json_type(raw)}, expected a number",
                ]
                continue
            if value is None:
                quality = Quality.BAD  # whatever the payload says: there is nothing to judge
            else:
                quality = _GOOD
                if channel.quality is not None and binding.is_json:
                    quality = channel.quality.quality(document)
                if channel.cumulative:
                    delta, reset = self.counters.step(target.sensor_id, value, to_us(ts))
                    if delta is None:
                        continue  # the counter's baseline, or a duplicate: no interval yet
                    value = delta
                    if reset:
                        self._reset(target.sensor_id, topic)
                        if quality is _GOOD:
                            quality = Quality.UNCERTAIN
                convert = target.convert
                if convert is not None:
                    value = convert(value)
                # A finite field can overflow on the way (1e307 counts per 0.0283 m³, the
                # difference of two huge counter values): inf would read as "no value".
                if (convert is not None or channel.cumulative) and not isfinite(value):
                    reasons = [
                        *(reasons or ()),
                        f"channel {channel.name!r}: value {_short(raw)} is out of range "
                        f"in {target.unit}",
                    ]
                    continue
            # Built without re-validation, as the OPC-UA collector does: the sensor id was
            # validated with the site, the value is a finite float (or None) and ts and
            # received_at are aware UTC datetimes (checked above). Validation cost ~7 µs a
            # reading on the collector's hot path, model_construct ~3 µs, this ~0.9 µs.
            readings.append(
                Reading.trusted(
                    sensor_id=target.sensor_id,
                    value=value,
                    unit=target.unit,
                    ts=ts,
                    received_at=received_at,
                    quality=quality,
                    source=self.source,
                )
            )
        if reasons is None:
            return Decoded(readings, None, binding.index)
        return Decoded(readings, RawPayload(topic, payload, "; ".join(reasons)), binding.index)

    def _reset(self, sensor_id: str, topic: str) -> None:
        """Log a counter reset: the first of each sensor at INFO, the rest at DEBUG.

        A device that restarts with every message must not write a line per message; each
        reset also marks its reading uncertain.
        """
        if sensor_id in self._logged_resets:
            logger.debug("counter of %s was reset (%.200s)", sensor_id, topic)
            return
        self._logged_resets.add(sensor_id)  # bounded: the sensors of the site
        logger.info(
            "counter of %s was reset (%.200s); later resets are logged at DEBUG",
            sensor_id,
            topic,
        )


# ---------------------------------------------------------------------- helpers


def _fail(origin: str, payload: bytes, reason: str, binding: int | None = None) -> Decoded:
    return Decoded(failure=RawPayload(origin, payload, reason), binding=binding)


def _escaped(raw_topic: bytes) -> str:
    """Name a topic that is not UTF-8 by its bytes, escaped."""
    return raw_topic.decode("utf-8", "backslashreplace")


def _lookup(document: object, path: Sequence[str]) -> object:
    """Follow a dotted path through objects (keys) and arrays (indices)."""
    current = document
    for key in path:
        if isinstance(current, dict):
            current = current.get(key, _MISSING)
            if current is _MISSING:
                return _MISSING
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return _MISSING
    return current


def _short(value: object) -> str:
    """Quote a payload value in a reason, cut short."""
    text = repr(value)
    return text if len(text) <= _SHORT_CHARS else text[: _SHORT_CHARS - 1] + "…"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _parse_number(payload: bytes) -> float | str:
    """Return a plain-number payload's value, or the reason it is not one."""
    if not _NUMBER.match(payload):
        shown = payload[:40].decode("utf-8", "replace")
        return f"payload is not a plain number: {shown!r}"
    try:
        value = float(payload)
    except (ValueError, OverflowError):
        return "payload is not a plain number"
    if not math.isfinite(value):
        return "value out of range"
    return value


def _timestamp(
    document: dict[str, object], rule: _TimestampRule, received_at: datetime
) -> datetime | str:
    """Return the payload's timestamp (UTC) or the reason it cannot be used."""
    raw = document.get(rule.key, _MISSING) if rule.key is not None else _lookup(document, rule.path)
    ts: datetime
    if type(raw) is str and rule.format == "iso8601":
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            return f"timestamp field {rule.name!r} is not ISO 8601: {raw[:40]!r}"
        if ts.tzinfo is not UTC:
            if ts.tzinfo is None or ts.utcoffset() is None:
                return f"timestamp field {rule.name!r} has no UTC offset: {raw[:40]!r}"
            try:
                ts = as_utc(ts)
            except TimestampRangeError:  # 9999-12-31T23:59:59-23:59 is in year 10000 UTC
                return f"timestamp field {rule.name!r} is out of range in UTC: {raw[:40]!r}"
    elif raw is _MISSING:
        return f"timestamp field {rule.name!r} is missing"
    elif rule.format == "iso8601" or isinstance(raw, bool) or not isinstance(raw, int | float):
        expected = "an ISO 8601 string" if rule.format == "iso8601" else f"a number ({rule.format})"
        return f"timestamp field {rule.name!r} is a {_json_type(raw)}, expected {expected}"
    else:
        try:
            seconds = raw / 1000 if rule.format == "epoch_ms" else raw
            ts = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return f"timestamp field {rule.name!r} is out of range: {_short(raw)}"
    if ts < EARLIEST_TS or ts - received_at > MAX_AHEAD:  # the same test as implausible()
        return f"timestamp field {rule.name!r} {implausible(ts, received_at)}"
    return ts
