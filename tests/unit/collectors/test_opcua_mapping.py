"""Tests of the OPC-UA notification mapping at the library boundary (asyncua values, no server)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asyncua import ua

from collectors.opcua.mapping import (
    NodeBinding,
    build_bindings,
    map_notification,
    quality_of,
    status_name,
)
from collectors.pipeline import RawPayload
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.models import Quality, Reading
from envmon.testing import make_spec
from envmon.timeutil import parse_ts

SOURCE_TS = parse_ts("2026-01-05T08:00:00Z")
SERVER_TS = parse_ts("2026-01-05T08:00:02Z")
RECEIVED = parse_ts("2026-01-05T08:00:03Z")


def binding(timestamp: str = "source", unit: str | None = None) -> NodeBinding:
    """The binding of one fridge temperature node (°C channel)."""
    config = OpcUaCollectorConfig.model_validate(
        {
            "id": "gw",
            "endpoint": "opc.tcp://127.0.0.1:4840",
            "nodes": [
                {"sensor_id": "fridge-1.temperature", "node_id": "ns=2;s=T", "unit": unit,
                 "timestamp": timestamp}
            ],
        }
    )  # fmt: skip
    return build_bindings(config, {"fridge-1.temperature": make_spec()})[0]


def data_value(
    value: object,
    vtype: ua.VariantType | None = None,
    status: int = 0,
    *,
    source: datetime | None = SOURCE_TS,
    server: datetime | None = SERVER_TS,
):
    """An asyncua DataValue as a notification carries it."""
    variant = ua.Variant(value, vtype) if value is not None else ua.Variant()
    return ua.DataValue(variant, StatusCode=ua.StatusCode(status), SourceTimestamp=source,
                        ServerTimestamp=server)  # fmt: skip


def mapped(dv, b: NodeBinding | None = None) -> Reading | RawPayload:
    return map_notification(b or binding(), dv, RECEIVED, "opcua:gw")


class TestQuality:
    @pytest.mark.parametrize(
        ("code", "quality"),
        [
            (ua.StatusCodes.Good, Quality.GOOD),
            (ua.StatusCodes.GoodLocalOverride, Quality.GOOD),
            (ua.StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN),
            (ua.StatusCodes.UncertainLastUsableValue | 0x400, Quality.UNCERTAIN),  # + info bits
            (ua.StatusCodes.BadSensorFailure, Quality.BAD),
            (ua.StatusCodes.BadCommunicationError, Quality.BAD),
            (0xC0000000, Quality.BAD),  # severity 11 is reserved: treated as bad
        ],
    )
    def test_severity_bits_decide(self, code, quality):
        """The two top bits of the StatusCode are the quality, whatever the sub-code."""
        assert quality_of(code) is quality

    def test_names_ignore_info_bits(self):
        """A StatusCode with info bits set is named by its code."""
        assert status_name(ua.StatusCodes.BadSensorFailure | 0x480) == "BadSensorFailure"


class TestMapNotification:
    def test_double_with_source_time(self):
        """A good Double becomes a good reading at the source time, in the channel's unit."""
        reading = mapped(data_value(4.25, ua.VariantType.Double))
        assert isinstance(reading, Reading)
        assert (reading.sensor_id, reading.value, reading.unit) == (
            "fridge-1.temperature",
            4.25,
            "degC",
        )
        assert (reading.ts, reading.received_at, reading.quality) == (
            SOURCE_TS,
            RECEIVED,
            Quality.GOOD,
        )
        assert reading.source == "opcua:gw"
        assert Reading.model_validate_json(reading.model_dump_json()) == reading

    @pytest.mark.parametrize(
        ("value", "vtype", "expected"),
        [
            (7, ua.VariantType.Int16, 7.0),
            (2**40, ua.VariantType.UInt64, float(2**40)),
            (1.5, ua.VariantType.Float, 1.5),
            (True, ua.VariantType.Boolean, 1.0),
        ],
    )
    def test_every_numeric_variant_becomes_a_float(self, value, vtype, expected):
        """Integers, floats and booleans (a door contact: 1/0) are numbers."""
        reading = mapped(data_value(value, vtype))
        assert isinstance(reading, Reading)
        assert reading.value == expected
        assert isinstance(reading.value, float)

    def test_server_timestamp_when_configured_and_fallbacks(self):
        """``server`` takes the server time; a missing one falls back to the other, then receipt."""
        assert mapped(data_value(1.0, ua.VariantType.Double), binding("server")).ts == SERVER_TS
        assert mapped(data_value(1.0, ua.VariantType.Double, source=None)).ts == SERVER_TS
        old = datetime(1601, 1, 1, tzinfo=UTC)  # OPC-UA's "no time"
        reading = mapped(data_value(1.0, ua.VariantType.Double, source=old, server=None))
        assert reading.ts == RECEIVED

    def test_naive_timestamps_are_taken_as_utc(self):
        """A timestamp without zone (some stacks) is UTC, and the reading's time is aware."""
        naive = datetime(2026, 1, 5, 8, 0)  # noqa: DTZ001 - what a lax stack hands over
        reading = mapped(data_value(1.0, ua.VariantType.Double, source=naive))
        assert reading.ts == SOURCE_TS

    def test_unit_conversion(self):
        """A node reporting °F gives °C readings."""
        reading = mapped(data_value(-4.0, ua.VariantType.Double), binding(unit="degF"))
        assert reading.value == pytest.approx(-20.0)
        assert reading.unit == "degC"

    def test_bad_status_keeps_a_numeric_value_and_drops_the_rest(self):
        """A bad sample is a bad reading: a number kept, text dropped, no dead letter."""
        bad = ua.StatusCodes.BadSensorFailure
        reading = mapped(data_value(-81.0, ua.VariantType.Double, bad))
        assert (reading.value, reading.quality) == (-81.0, Quality.BAD)
        reading = mapped(data_value("ERR", ua.VariantType.String, bad))
        assert (reading.value, reading.quality) == (None, Quality.BAD)
        reading = mapped(data_value(None, status=bad))
        assert (reading.value, reading.quality) == (None, Quality.BAD)

    @pytest.mark.parametrize(
        ("dv", "reason"),
        [
            (data_value("open", ua.VariantType.String), "value is not numeric (String: 'open')"),
            (
                data_value([1.0], ua.VariantType.Double),
                "value is not numeric (array of Double: [1.0])",
            ),
            (data_value(float("inf"), ua.VariantType.Double), "value is not finite (inf)"),
            (data_value(None), "no value with status Good"),
            (
                data_value(None, status=ua.StatusCodes.UncertainInitialValue),
                "no value with status UncertainInitialValue",
            ),
        ],
    )
    def test_unmappable_values_become_dead_letters(self, dv, reason):
        """What cannot be a number is a dead letter with the node, the reason and the raw value."""
        letter = mapped(dv)
        assert isinstance(letter, RawPayload)
        assert (letter.origin, letter.reason) == ("ns=2;s=T", reason)
        assert b'"sensor_id": "fridge-1.temperature"' in letter.raw

    def test_long_values_are_cut_in_the_dead_letter(self):
        """A huge text value is kept to a readable length."""
        letter = mapped(data_value("x" * 10_000, ua.VariantType.String))
        assert isinstance(letter, RawPayload)
        assert len(letter.raw) < 1_000


def particle_binding() -> NodeBinding:
    """The binding of a particle counter node reporting particles/ft³ (channel in /m³)."""
    config = OpcUaCollectorConfig.model_validate(
        {
            "id": "gw",
            "endpoint": "opc.tcp://127.0.0.1:4840",
            "nodes": [
                {"sensor_id": "pc-1.particles_0_5um", "node_id": "ns=2;s=P",
                 "unit": "particles/ft3"}
            ],
        }
    )  # fmt: skip
    spec = make_spec("pc-1.particles_0_5um", parameter="particles_0_5um", unit="particles/m3")
    return build_bindings(config, {spec.sensor_id: spec})[0]


class TestOverflowAndExtremeTimes:
    """Finite values that overflow once converted, and times no reading may carry (issue 14)."""

    def test_value_that_overflows_once_converted_is_a_dead_letter(self):
        """1e307 particles/ft³ is inf particles/m³: a dead letter, never a good inf."""
        letter = mapped(data_value(1e307, ua.VariantType.Double), particle_binding())
        assert isinstance(letter, RawPayload)
        assert letter.reason == "value 1e+307 is out of range in particles/m3"

    def test_bad_value_that_overflows_is_a_bad_reading_without_value(self):
        """With a bad status the overflowing value is dropped, the fault still reported."""
        dv = data_value(1e307, ua.VariantType.Double, ua.StatusCodes.BadSensorFailure)
        reading = mapped(dv, particle_binding())
        assert isinstance(reading, Reading)
        assert (reading.value, reading.quality) == (None, Quality.BAD)

    def test_convertible_values_still_read(self):
        """A large value that stays finite in the channel's unit is an ordinary reading."""
        reading = mapped(data_value(1e300, ua.VariantType.Double), particle_binding())
        assert isinstance(reading, Reading)
        assert reading.value == pytest.approx(1e300 / 0.3048**3)

    @pytest.mark.parametrize(
        ("source", "reason"),
        [
            (
                datetime.fromisoformat("9999-12-31T23:59:59-23:59"),
                "timestamp '9999-12-31T23:59:59-23:59' is out of range in UTC",
            ),
            (
                datetime.fromisoformat("1700-01-01T00:00:00+00:00"),
                "the source timestamp is before 2000 (1700-01-01T00:00:00Z): is the device "
                "clock set?",
            ),
            (
                datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                "the source timestamp is more than a day ahead of the receive time "
                "(9999-12-31T23:59:59Z)",
            ),
        ],
    )
    def test_unusable_times_are_dead_letters(self, source, reason):
        """A time UTC cannot hold, or one before 2000 or a day ahead, is refused with the reason."""
        letter = mapped(data_value(1.0, ua.VariantType.Double, source=source))
        assert isinstance(letter, RawPayload)
        assert letter.reason == reason

    @pytest.mark.parametrize(
        "value", [10**400, "1.0", object()], ids=["huge-int", "text", "object"]
    )
    def test_hand_built_variants_that_are_not_numbers(self, value):
        """A variant whose value does not convert to a float is a dead letter, not an error."""
        letter = mapped(ua.DataValue(ua.Variant(value, ua.VariantType.Int64)))
        assert isinstance(letter, RawPayload)
        assert letter.reason.startswith("value is not a number (Int64: ")
