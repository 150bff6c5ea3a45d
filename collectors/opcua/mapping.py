"""Where an OPC-UA data value becomes a reading: node bindings, values, timestamps, quality.

``build_bindings`` binds each configured node to its sensor (unit conversion, settings);
``map_notification`` turns one ``DataValue`` into a ``Reading`` or a dead letter. Pure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from asyncua import ua

from collectors.opcua.errors import OpcUaSetupError
from collectors.pipeline import RawPayload
from envmon.config.opcua import NodeConfig, OpcUaCollectorConfig, ResolvedNodeSettings
from envmon.models import Quality, Reading
from envmon.sensors import SensorSpec
from envmon.timeutil import EARLIEST_TS, MAX_AHEAD, TimestampRangeError, as_utc, implausible
from envmon.units import Conversion, UnitError, conversion

_MIN_DATETIME_YEAR: Final = 1602  # OPC-UA's "no timestamp" is 1601-01-01
_DEAD_LETTER_VALUE_CHARS: Final = 200
_PY_NUMBERS: Final = (float, int, bool)  # what asyncua decodes numeric variants to
_NUMERIC_TYPES: Final = frozenset(
    {
        ua.VariantType.Boolean,
        ua.VariantType.SByte,
        ua.VariantType.Byte,
        ua.VariantType.Int16,
        ua.VariantType.UInt16,
        ua.VariantType.Int32,
        ua.VariantType.UInt32,
        ua.VariantType.Int64,
        ua.VariantType.UInt64,
        ua.VariantType.Float,
        ua.VariantType.Double,
    }
)


def quality_of(status: int) -> Quality:
    """Map an OPC-UA StatusCode to a quality by its severity bits (good/uncertain/bad)."""
    severity = (status >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def status_name(status: int) -> str:
    """Return the symbolic name of a StatusCode (info bits ignored), e.g. ``BadSensorFailure``."""
    name: str = ua.status_codes.get_name_and_doc(status & 0xFFFF0000)[0]
    return name


@dataclass(frozen=True, slots=True)
class NodeBinding:
    """What the collector knows about one bound node: its sensor, unit and settings."""

    handle: int
    sensor_id: str
    address: str
    unit: str
    conversion: Conversion
    settings: ResolvedNodeSettings
    node: NodeConfig

    @property
    def use_source_timestamp(self) -> bool:
        """True when the reading's time is the source timestamp (else the server's)."""
        return self.settings.timestamp == "source"


class _UnmappableError(Exception):
    """A notification value that cannot become a reading (internal)."""


def _number(variant: ua.Variant | None) -> float | None:
    """Return a variant's value as a float, None for an empty variant; raise if not numeric."""
    if variant is None or variant.VariantType == ua.VariantType.Null or variant.Value is None:
        return None
    if variant.is_array or variant.VariantType not in _NUMERIC_TYPES:
        kind = "array of " if variant.is_array else ""
        raise _UnmappableError(
            f"value is not numeric ({kind}{variant.VariantType.name}: {_short(variant.Value)})"
        )
    raw = variant.Value
    try:
        if type(raw) not in _PY_NUMBERS and not isinstance(raw, int | float):
            raise TypeError(raw)  # a variant built by hand rather than decoded
        value = float(raw)  # OverflowError: an int beyond any Double (hand-built too)
    except (TypeError, OverflowError):
        raise _UnmappableError(
            f"value is not a number ({variant.VariantType.name}: {_short(raw)})"
        ) from None
    if not math.isfinite(value):
        raise _UnmappableError(f"value is not finite ({value})")
    return value


def _short(value: object) -> str:
    text = repr(value)
    if len(text) > _DEAD_LETTER_VALUE_CHARS:
        return text[: _DEAD_LETTER_VALUE_CHARS - 1] + "…"
    return text


def data_timestamp(dt: datetime | None) -> datetime | None:
    """Return a DataValue timestamp in UTC, None for OPC-UA's "no time".

    Raises ``TimestampRangeError`` for an aware time that UTC cannot hold.
    """
    if dt is None or dt.year < _MIN_DATETIME_YEAR:
        return None
    tz = dt.tzinfo
    if tz is UTC:  # as asyncua decodes them
        return dt
    return dt.replace(tzinfo=UTC) if tz is None else as_utc(dt)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def map_notification(
    binding: NodeBinding, data: ua.DataValue, received_at: datetime, source: str
) -> Reading | RawPayload:
    """Turn one monitored item's ``DataValue`` into a ``Reading``, or a dead letter if it can't be.

    A bad StatusCode gives a bad reading (the value kept when numeric and finite in the
    channel's unit, dropped when not); an empty value with a good status and a non-numeric
    value with a usable status are dead letters, and so is a value with a usable status that
    overflows once converted. The time is the chosen timestamp, else the other one, else
    ``received_at``; a time before 2000 or over a day ahead of ``received_at`` is a dead
    letter, as on MQTT.
    """
    status = data.StatusCode.value if data.StatusCode is not None else 0
    quality = quality_of(status)
    try:
        value = _number(data.Value)
        if value is None and quality is not Quality.BAD:
            raise _UnmappableError(f"no value with status {status_name(status)}")
        if value is not None:
            converted = binding.conversion(value)
            # A finite Double can overflow on the way (1e308 particles/ft3 in /m3): an inf
            # would travel as "no value" with a good status and be judged as nothing.
            if not math.isfinite(converted):
                raise _UnmappableError(f"value {value!r} is out of range in {binding.unit}")
            value = converted
    except _UnmappableError as exc:
        if quality is not Quality.BAD:
            return _dead_letter(binding, data, str(exc))
        value = None
    try:
        source_ts = data_timestamp(data.SourceTimestamp)
        server_ts = data_timestamp(data.ServerTimestamp)
    except TimestampRangeError as exc:
        return _dead_letter(binding, data, str(exc))
    if binding.use_source_timestamp:
        ts = source_ts or server_ts or received_at
    else:
        ts = server_ts or source_ts or received_at
    if ts is not received_at and (ts < EARLIEST_TS or ts - received_at > MAX_AHEAD):
        which = "source" if ts is source_ts else "server"
        why = implausible(ts, received_at)  # the same test, worded
        return _dead_letter(binding, data, f"the {which} timestamp {why}")
    # Readings are built without re-validation: the sensor id was validated with the site,
    # the value is a finite float and the timestamps are aware UTC datetimes (see above).
    return Reading.trusted(
        sensor_id=binding.sensor_id,
        value=value,
        unit=binding.unit,
        ts=ts,
        received_at=received_at,
        quality=quality,
        source=source,
    )


def _dead_letter(binding: NodeBinding, data: ua.DataValue, reason: str) -> RawPayload:
    status = data.StatusCode.value if data.StatusCode is not None else 0
    variant = data.Value
    raw = {
        "sensor_id": binding.sensor_id,
        "node": binding.address,
        "status": status_name(status),
        "variant_type": variant.VariantType.name if variant is not None else None,
        "value": _short(variant.Value) if variant is not None else None,
        "source_timestamp": _iso(data.SourceTimestamp),
        "server_timestamp": _iso(data.ServerTimestamp),
    }
    return RawPayload(binding.address, json.dumps(raw).encode(), reason)


def build_bindings(
    config: OpcUaCollectorConfig, specs: Mapping[str, SensorSpec]
) -> list[NodeBinding]:
    """Bind each configured node to its sensor; raise ``OpcUaSetupError`` for what cannot be."""
    bindings: list[NodeBinding] = []
    for index, node in enumerate(config.nodes):
        spec = specs.get(node.sensor_id)
        where = f"collectors.opcua[{config.id}].nodes[{index}]"
        if spec is None:
            raise OpcUaSetupError(f"{where}: no sensor {node.sensor_id!r} in the site")
        try:
            to_channel = conversion(node.unit or spec.unit, spec.unit)
        except UnitError as exc:
            raise OpcUaSetupError(f"{where}: {exc}") from None
        bindings.append(
            NodeBinding(
                handle=index + 1,
                sensor_id=node.sensor_id,
                address=node.address,
                unit=spec.unit,
                conversion=to_channel,
                settings=config.settings(node),
                node=node,
            )
        )
    return bindings


def unknown_handle(item: ua.MonitoredItemNotification, subscription_id: int) -> RawPayload:
    """Dead-letter a notification whose client handle is no bound node."""
    origin = f"subscription {subscription_id} handle {item.ClientHandle}"
    data = item.Value
    raw = {
        "subscription": subscription_id,
        "client_handle": item.ClientHandle,
        "value": _short(data.Value.Value) if data.Value is not None else None,
    }
    return RawPayload(
        origin, json.dumps(raw).encode(), "notification for an unknown monitored item"
    )
