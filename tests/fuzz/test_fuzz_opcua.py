"""Fuzzing the OPC-UA value mapping (``collectors.opcua.mapping.map_notification``): 100,000 values.

Seed ``SEED`` = 14 (issue 14), ``NOTIFICATIONS`` = 100,000 data values over the example
site's bindings (``deploy/examples/site.yaml``, °F among them) and hostile ones converting
particles/ft³, particles/L, K, ppm and °F. Each data value has a variant of any type (every
numeric type at and beyond its limits, 1e307 and 1.7e308 that overflow once converted, NaN,
±inf, text, bytes, dates, GUIDs, arrays, empty, and every other variant type holding text),
any status code (good, uncertain and bad
ones, info bits, reserved severity, random 32-bit values) and source and server timestamps
anywhere from year 1 to 9999, naive, in UTC or at ±23:59. A fifth of them go through
asyncua's binary encoding and back, as they would arrive from a server; the rest are built
by hand, as a lax or hostile stack might.

Invariants, for every value: the mapping never raises and logs nothing; a reading's value is
finite, or None with bad quality; its time is aware UTC, the receive time or a plausible
source/server time (from 2000 to a day ahead of the receive time); anything else is a dead
letter for the node with a reason of bounded length. A failure prints the seed and number.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from collectors.opcua.mapping import NodeBinding, build_bindings, map_notification
from collectors.pipeline import RawPayload
from envmon.config import load_site, parse_site
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.models import Quality, Reading
from envmon.timeutil import EARLIEST_TS, MAX_AHEAD
from tests.unit.config.test_example_site import EXAMPLE

from . import hostile
from .test_fuzz_mqtt import HOSTILE_SITE

SEED = 14
NOTIFICATIONS = 100_000
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
MAX_REASON_CHARS = 500
MAX_RAW_BYTES = 2_000

_INTEGER_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_STATUSES = (
    ua.StatusCodes.Good,
    ua.StatusCodes.GoodLocalOverride,
    ua.StatusCodes.UncertainInitialValue,
    ua.StatusCodes.UncertainSensorNotAccurate,
    ua.StatusCodes.UncertainLastUsableValue | 0x400,
    ua.StatusCodes.BadSensorFailure,
    ua.StatusCodes.BadCommunicationError,
    ua.StatusCodes.BadOutOfService | 0x480,
    0xC0000000,
)
_PROBES = (
    "is out of range in particles/m3",
    "is out of range in UTC",
    "is before 2000",
    "is more than a day ahead",
    "value is not numeric",
    "value is not finite",
    "value is not a number",
    "no value with status",
)


def _hostile_bindings() -> list[NodeBinding]:
    """Bindings converting every unit the site's channels allow."""
    site = parse_site(HOSTILE_SITE)
    nodes = [
        ("pc-1.particles_0_5um", "particles/ft3", "source"),
        ("pc-1.particles_5_0um", "particles/L", "server"),
        ("inc-1.temperature", "K", "source"),
        ("inc-1.co2", "ppm", "server"),
        ("inc-1.humidity", None, "source"),
        ("fr-1.temperature", "degF", "source"),
    ]
    config = OpcUaCollectorConfig.model_validate(
        {
            "id": "fuzz",
            "endpoint": "opc.tcp://127.0.0.1:4840",
            "nodes": [
                {"sensor_id": sensor, "node_id": f"ns=2;s={sensor}", "unit": unit,
                 "timestamp": timestamp}
                for sensor, unit, timestamp in nodes
            ],
        }
    )  # fmt: skip
    return build_bindings(config, site.sensor_map())


def _value(rng: random.Random) -> tuple[object, ua.VariantType | None]:
    """A variant's value and type: numeric types at and past their limits, and the rest."""
    roll = rng.random()
    if roll < 0.35:
        return hostile.number(rng), rng.choice([ua.VariantType.Double, ua.VariantType.Float])
    if roll < 0.6:
        vtype = rng.choice(list(_INTEGER_RANGES))
        low, high = _INTEGER_RANGES[vtype]
        value = rng.choice([low, high, 0, rng.randint(low, high), high + 1, low - 1, 10**400])
        return value, vtype
    if roll < 0.65:
        return rng.choice([True, False, 2]), ua.VariantType.Boolean
    if roll < 0.75:
        return None, None  # an empty variant
    kind = rng.randrange(11)  # built only when drawn: text and bytes cost time
    if kind == 0:
        return hostile.text(rng), ua.VariantType.String
    if kind == 1:
        return "42.5", ua.VariantType.String
    if kind == 2:
        return rng.randbytes(rng.randrange(300)), ua.VariantType.ByteString
    if kind == 3:
        return hostile.datetime_value(rng, NOW), ua.VariantType.DateTime
    if kind == 4:
        return uuid.UUID(int=rng.getrandbits(128)), ua.VariantType.Guid
    if kind == 5:
        return [hostile.number(rng) for _ in range(rng.randrange(4))], ua.VariantType.Double
    if kind == 6:
        return ua.StatusCode(ua.StatusCodes.Good), ua.VariantType.StatusCode
    if kind == 7:
        return ua.LocalizedText("x" * rng.randrange(1_000)), ua.VariantType.LocalizedText
    if kind == 8:
        return "1.5", ua.VariantType.Double  # a hand-built variant of the wrong Python type
    if kind == 9:
        return object(), ua.VariantType.Int32
    return hostile.text(rng), rng.choice(list(ua.VariantType))  # any type, text inside


def _status(rng: random.Random) -> int:
    if rng.random() < 0.8:
        return int(rng.choice(_STATUSES))
    return rng.getrandbits(32)


def _timestamp(rng: random.Random, received_at: datetime) -> datetime | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.2:
        return datetime(1601, 1, 1, tzinfo=UTC)  # OPC-UA's "no time"
    return hostile.datetime_value(rng, received_at)


def _data_value(rng: random.Random, received_at: datetime) -> ua.DataValue:
    value, vtype = _value(rng)
    variant = ua.Variant() if value is None else ua.Variant(value, vtype)
    data = ua.DataValue(
        variant,
        StatusCode=ua.StatusCode(_status(rng)),
        SourceTimestamp=_timestamp(rng, received_at),
        ServerTimestamp=_timestamp(rng, received_at),
    )
    if rng.random() < 0.2:  # as it arrives from a server: only what the wire can carry
        try:
            return struct_from_binary(ua.DataValue, Buffer(struct_to_binary(data)))
        except (ua.UaError, OverflowError, ValueError, TypeError, AttributeError, KeyError):
            pass  # cannot be encoded: keep the hand-built value
    return data


@pytest.fixture(scope="module")
def bindings() -> list[NodeBinding]:
    site = load_site(EXAMPLE)
    return build_bindings(site.collectors.opcua[0], site.sensor_map()) + _hostile_bindings()


def test_value_mapping(bindings: list[NodeBinding], caplog: pytest.LogCaptureFixture) -> None:
    """100,000 fuzzed data values hold every invariant and reach every outcome."""
    rng = random.Random(SEED)
    seen: Counter[str] = Counter()
    with caplog.at_level(logging.INFO):
        for number in range(NOTIFICATIONS):
            binding = rng.choice(bindings)
            received_at = NOW + timedelta(seconds=number)
            data = _data_value(rng, received_at)
            where = f"seed {SEED}, value {number}: {binding.address}, {data!r:.300}"
            mapped = map_notification(binding, data, received_at, "opcua:fuzz")
            if isinstance(mapped, Reading):
                seen["readings"] += 1
                assert (mapped.sensor_id, mapped.unit) == (binding.sensor_id, binding.unit), where
                if mapped.value is None:
                    assert mapped.quality is Quality.BAD, where
                    seen["bad readings without value"] += 1
                else:
                    assert type(mapped.value) is float, where
                    assert math.isfinite(mapped.value), where
                assert mapped.ts.utcoffset() == timedelta(0), where
                assert mapped.ts is received_at or (
                    EARLIEST_TS <= mapped.ts <= received_at + MAX_AHEAD
                ), where
            else:
                assert isinstance(mapped, RawPayload), where
                assert mapped.origin == binding.address, where
                assert 0 < len(mapped.reason) <= MAX_REASON_CHARS, where
                assert len(mapped.raw) <= MAX_RAW_BYTES, where
                for probe in _PROBES:
                    seen[probe] += probe in mapped.reason
    assert caplog.records == []
    assert seen["readings"] > 10_000, seen
    assert seen["bad readings without value"] > 100, seen
    for probe in _PROBES:
        assert seen[probe] > 0, (probe, seen)
