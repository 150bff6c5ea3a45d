"""From MQTT messages to readings or dead letters (collectors.mqtt.mapping), without a broker."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.mqtt.mapping import MessageDecoder
from collectors.mqtt.wire import decode_publish
from envmon.config import parse_site
from envmon.models import Quality
from envmon.units import FT3_IN_M3

from .sites import FRIDGE_1, INC_1, PC_1, mqtt_site

SCALARS = st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20)


def CONTAINERS(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:  # noqa: N802
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4
    )


NOW = datetime(2026, 1, 5, 8, 0, 30, tzinfo=UTC)
TS = "2026-01-05T08:00:00Z"

SITE = mqtt_site(
    PC_1,
    INC_1,
    FRIDGE_1,
    mqtt="""
        - id: broker
          max_payload_bytes: 1000
          bindings:
            - topic: cgt/+area/+instrument/particles
              sensor_id: "{instrument}.{channel}"
              payload:
                timestamp: {path: ts, format: iso8601}
                quality: {path: status, good: [ok], uncertain: [purge], bad: [fault]}
                channels:
                  particles_0_5um: {path: counts.0_5um, unit: counts}
                  particles_5_0um: {path: counts.5_0um, unit: counts}
            - topic: cgt/+area/+instrument/incubator
              sensor_id: "{instrument}.{channel}"
              payload:
                timestamp: {path: time_ms, format: epoch_ms}
                channels:
                  temperature: {path: temp_f, unit: degF}
                  co2: {path: sensors.0.ppm, unit: ppm}
            - topic: lab/+instrument/temperature
              sensor_id: "{instrument}.temperature"
              payload: {format: number, channels: {t: {unit: degF}}}
            - topic: counters/+instrument
              sensor_id: "{instrument}.{channel}"
              payload:
                timestamp: {path: t, format: epoch_s}
                channels:
                  particles_0_5um: {path: n, unit: particles/ft3, cumulative: true}
    """,
)


@pytest.fixture
def decoder() -> MessageDecoder:
    site = parse_site(SITE)
    return MessageDecoder(site.collectors.mqtt[0], site, source="mqtt:broker")


def particles(**fields: object) -> bytes:
    body: dict[str, object] = {"ts": TS, "status": "ok", "counts": {"0_5um": 100, "5_0um": 2}}
    body.update(fields)
    return orjson.dumps(body)


class TestJsonPayloads:
    """JSON payloads with several channels, field paths and unit conversion."""

    def test_one_message_several_readings(self, decoder):
        """A particle counter message yields both channels, normalised to particles/m³."""
        out = decoder.decode("cgt/room/pc-1/particles", particles(), NOW)
        assert out.failure is None
        assert out.binding == 0
        by_id = {r.sensor_id: r for r in out.readings}
        assert by_id["pc-1.particles_0_5um"].value == pytest.approx(100 / 0.0283)
        assert by_id["pc-1.particles_5_0um"].value == pytest.approx(2 / 0.0283)
        reading = by_id["pc-1.particles_0_5um"]
        assert reading.unit == "particles/m3"
        assert reading.ts == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        assert reading.received_at == NOW
        assert reading.source == "mqtt:broker"
        assert reading.quality is Quality.GOOD

    def test_epoch_ms_timestamp_array_path_and_conversions(self, decoder):
        """°F becomes °C, ppm becomes %, and a path may index an array."""
        payload = orjson.dumps(
            {"time_ms": 1_767_600_000_000, "temp_f": 98.6, "sensors": [{"ppm": 50_000}]}
        )
        out = decoder.decode("cgt/room/inc-1/incubator", payload, NOW)
        by_id = {r.sensor_id: r for r in out.readings}
        assert by_id["inc-1.temperature"].value == pytest.approx(37.0)
        assert by_id["inc-1.co2"].value == pytest.approx(5.0)
        assert by_id["inc-1.co2"].ts == datetime.fromtimestamp(1_767_600_000, UTC)

    def test_quality_field(self, decoder):
        """The status field sets the quality; an unlisted value is uncertain."""
        bad = decoder.decode("cgt/room/pc-1/particles", particles(status="fault"), NOW)
        assert {r.quality for r in bad.readings} == {Quality.BAD}
        odd = decoder.decode("cgt/room/pc-1/particles", particles(status="??"), NOW)
        assert {r.quality for r in odd.readings} == {Quality.UNCERTAIN}

    def test_null_value_is_a_bad_reading(self, decoder):
        """A null channel value is a reading without a value, of bad quality."""
        out = decoder.decode(
            "cgt/room/pc-1/particles", particles(counts={"0_5um": None, "5_0um": 1}), NOW
        )
        reading = next(r for r in out.readings if r.sensor_id == "pc-1.particles_0_5um")
        assert reading.value is None
        assert reading.quality is Quality.BAD
        assert out.failure is None

    def test_missing_field_keeps_the_other_channels(self, decoder):
        """A missing channel field is dead-lettered; the present channel still reads."""
        out = decoder.decode("cgt/room/pc-1/particles", particles(counts={"0_5um": 5}), NOW)
        assert [r.sensor_id for r in out.readings] == ["pc-1.particles_0_5um"]
        assert out.failure is not None
        assert "missing field 'counts.5_0um'" in out.failure.reason
        assert out.failure.origin == "cgt/room/pc-1/particles"


class TestNumberPayloads:
    """Plain-number payloads."""

    def test_number(self, decoder):
        """A plain number is one reading, converted, stamped with the receive time."""
        out = decoder.decode("lab/fridge-1/temperature", b" 39.2\n", NOW)
        (reading,) = out.readings
        assert reading.sensor_id == "fridge-1.temperature"
        assert reading.value == pytest.approx(4.0)
        assert reading.ts == NOW

    @pytest.mark.parametrize("payload", [b"", b"nan", b"inf", b"1_000", b"0x10", b"12 C", b"1e999"])
    def test_not_a_number(self, decoder, payload):
        """Anything but a finite decimal number is dead-lettered."""
        out = decoder.decode("lab/fridge-1/temperature", payload, NOW)
        assert out.readings == []
        assert out.failure is not None


class TestBadMessages:
    """Every way a message can fail ends in a dead letter with the reason."""

    @pytest.mark.parametrize(
        ("topic", "payload", "reason"),
        [
            ("cgt/room/pc-1/particles", b"{not json", "invalid JSON"),
            ("cgt/room/pc-1/particles", b"[1, 2]", "payload is a JSON list, expected an object"),
            ("cgt/room/pc-1/particles", particles(ts=12), "is a number, expected an ISO 8601"),
            ("cgt/room/pc-1/particles", particles(ts="yesterday"), "not ISO 8601"),
            ("cgt/room/pc-1/particles", particles(ts="2026-01-05T08:00:00"), "no UTC offset"),
            ("cgt/room/pc-1/particles", particles(ts="1970-01-01T00:00:00Z"), "before 2000"),
            ("cgt/room/pc-1/particles", particles(ts="2027-01-01T00:00:00Z"), "a day ahead"),
            (
                "cgt/room/pc-1/particles",
                particles(counts={"0_5um": "12", "5_0um": 1}),
                "is a string, expected a number",
            ),
            (
                "cgt/room/pc-1/particles",
                particles(counts={"0_5um": True, "5_0um": 1}),
                "is a boolean, expected a number",
            ),
            ("cgt/room/pc-9/particles", particles(), "unknown sensor 'pc-9.particles_0_5um'"),
            ("cgt/room/pc-1/status", particles(), "unknown topic"),
            ("cgt/room/pc-1/particles", b"x" * 1001, "oversized payload: 1,001 bytes"),
        ],
    )
    def test_reasons(self, decoder, topic, payload, reason):
        """The dead letter keeps the topic, the raw payload and says why."""
        out = decoder.decode(topic, payload, NOW)
        assert out.failure is not None
        assert reason in out.failure.reason
        assert out.failure.origin == topic
        assert out.failure.raw == payload[:1000]

    def test_invalid_utf8_topic(self, decoder):
        """A topic that is not UTF-8 is dead-lettered under its escaped bytes."""
        out = decoder.decode(None, b"1", NOW, raw_topic=b"lab/\xff")
        assert out.failure is not None
        assert out.failure.origin == "lab/\\xff"

    def test_oversized_payload_on_an_invalid_topic_is_cut_too(self, decoder):
        """The dead letter of a topic that is not UTF-8 keeps max_payload_bytes at most."""
        out = decoder.decode(None, b"x" * 5_000, NOW, raw_topic=b"lab/\xff")
        assert out.failure is not None
        assert out.failure.raw == b"x" * 1000
        assert out.failure.reason.startswith("topic is not valid UTF-8; oversized payload")

    def test_retained_message_without_a_timestamp_is_skipped(self, decoder):
        """A retained value stamped with the receive time would look fresh: it is skipped."""
        out = decoder.decode("lab/fridge-1/temperature", b"39.2", NOW, retain=True)
        assert out.readings == []
        assert out.failure is None
        kept = decoder.decode("cgt/room/pc-1/particles", particles(), NOW, retain=True)
        assert len(kept.readings) == 2

    @settings(max_examples=500, deadline=None)
    @given(
        topic=st.sampled_from(
            ["cgt/room/pc-1/particles", "cgt/r/inc-1/incubator", "lab/fridge-1/temperature", "x"]
        ),
        payload=st.one_of(
            st.binary(max_size=1200),
            st.recursive(SCALARS, CONTAINERS, max_leaves=20).map(lambda v: json.dumps(v).encode()),
            st.fixed_dictionaries(  # shaped like the real thing, wrong in the details
                {
                    "ts": st.one_of(st.just(TS), st.text(max_size=30), st.integers(), st.none()),
                    "status": st.one_of(st.sampled_from(["ok", "fault", "purge"]), SCALARS),
                    "counts": st.dictionaries(st.sampled_from(["0_5um", "5_0um"]), SCALARS),
                    "time_ms": st.one_of(st.integers(), st.floats()),
                    "temp_f": SCALARS,
                }
            ).map(lambda v: json.dumps(v).encode()),
        ),
    )
    def test_fuzz_never_raises(self, topic, payload):
        """Any payload on any topic gives readings or a reasoned dead letter, never an error."""
        site = parse_site(SITE)
        decoder = MessageDecoder(site.collectors.mqtt[0], site, source="mqtt:broker")
        out = decoder.decode(topic, payload, NOW)
        assert out.readings or out.failure is not None
        if out.failure is not None:
            assert out.failure.reason
            assert out.failure.raw == payload[:1000]
        for reading in out.readings:
            assert reading.ts.tzinfo is not None


class TestCumulativeChannels:
    """Counters since the device started become per-interval counts."""

    def counter(self, decoder, n, seconds):
        payload = orjson.dumps({"t": 1_767_600_000 + seconds, "n": n})
        return decoder.decode("counters/pc-1", payload, NOW + timedelta(seconds=seconds))

    def test_baseline_then_differences(self, decoder):
        """The first sample sets the baseline; then each sample reads its interval's count."""
        assert self.counter(decoder, 1000, 0).readings == []
        (reading,) = self.counter(decoder, 1100, 60).readings
        assert reading.value == pytest.approx(100 / FT3_IN_M3)
        assert reading.quality is Quality.GOOD

    def test_reset(self, decoder):
        """A counter that went down was reset: the new count is read, as uncertain."""
        self.counter(decoder, 1000, 0)
        (reading,) = self.counter(decoder, 30, 60).readings
        assert reading.value == pytest.approx(30 / FT3_IN_M3)
        assert reading.quality is Quality.UNCERTAIN

    def test_redelivered_duplicate(self, decoder):
        """A redelivered sample (same time) reads nothing and does not disturb the counter."""
        self.counter(decoder, 1000, 0)
        self.counter(decoder, 1100, 60)
        assert self.counter(decoder, 1100, 60).readings == []
        (reading,) = self.counter(decoder, 1150, 120).readings
        assert reading.value == pytest.approx(50 / FT3_IN_M3)


class TestOverflowAndExtremeTimes:
    """Finite input that overflows on the way, and timestamps no datetime can hold (issue 14)."""

    def test_count_that_overflows_once_converted_is_dead_lettered(self, decoder):
        """1e307 counts per 0.0283 m³ is inf particles/m³: a dead letter, never a good inf."""
        out = decoder.decode(
            "cgt/room/pc-1/particles", particles(counts={"0_5um": 1e307, "5_0um": 2}), NOW
        )
        assert [r.sensor_id for r in out.readings] == ["pc-1.particles_5_0um"]
        assert out.failure is not None
        assert "channel 'particles_0_5um': value 1e+307 is out of range in particles/m3" in (
            out.failure.reason
        )

    def test_counter_difference_that_overflows_is_dead_lettered(self, decoder):
        """Two finite counter values whose difference is inf give a dead letter, not a reading."""
        TestCumulativeChannels().counter(decoder, -1.7e308, 0)
        out = TestCumulativeChannels().counter(decoder, 1.7e308, 60)
        assert out.readings == []
        assert out.failure is not None
        assert "out of range" in out.failure.reason

    def test_null_value_is_bad_whatever_the_status_says(self, decoder):
        """A null value stated 'uncertain' is still bad: there is no value to judge."""
        payload = particles(status="purge", counts={"0_5um": None, "5_0um": 1})
        out = decoder.decode("cgt/room/pc-1/particles", payload, NOW)
        by_id = {r.sensor_id: r for r in out.readings}
        assert by_id["pc-1.particles_0_5um"].value is None
        assert by_id["pc-1.particles_0_5um"].quality is Quality.BAD
        assert by_id["pc-1.particles_5_0um"].quality is Quality.UNCERTAIN

    @pytest.mark.parametrize(
        "ts", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z"]
    )
    def test_extreme_iso_offsets_are_a_validation_failure(self, decoder, caplog, ts):
        """A time outside the datetime range in UTC is dead-lettered with the reason, quietly."""
        with caplog.at_level(logging.DEBUG, logger="collectors"):
            out = decoder.decode("cgt/room/pc-1/particles", particles(ts=ts), NOW)
        assert out.readings == []
        assert out.failure is not None
        assert out.failure.reason.startswith("timestamp field 'ts' is ")
        assert "internal error" not in out.failure.reason
        assert caplog.records == []
        assert decoder.internal_errors == 0

    @pytest.mark.parametrize("ms", [2**63 - 1, -(2**63), 1.7e308, -1.7e308])
    def test_extreme_epoch_numbers_are_a_validation_failure(self, decoder, ms):
        """An epoch time far outside the datetime range is dead-lettered as out of range."""
        payload = orjson.dumps({"time_ms": ms, "temp_f": 50, "sensors": [{"ppm": 1}]})
        out = decoder.decode("cgt/room/inc-1/incubator", payload, NOW)
        assert out.readings == []
        assert out.failure is not None
        assert "timestamp field 'time_ms' is out of range" in out.failure.reason

    def test_a_decoder_failure_is_logged_once_per_place(self, decoder, caplog, monkeypatch):
        """The same internal failure on every message writes one traceback, not one each."""

        def broken(*_args: object) -> object:
            raise OverflowError("date value out of range")

        monkeypatch.setattr("collectors.mqtt.mapping._timestamp", broken)
        with caplog.at_level(logging.INFO, logger="collectors"):
            outs = [decoder.decode("cgt/room/pc-1/particles", particles(), NOW) for _ in range(100)]
        assert all(
            o.failure is not None
            and o.failure.reason == "internal error: OverflowError: date value out of range"
            for o in outs
        )
        assert decoder.internal_errors == 100
        assert [r.levelno for r in caplog.records] == [logging.ERROR]

    def test_counter_resets_do_not_write_a_line_each(self, decoder, caplog):
        """A counter reset on every message logs once at INFO; the readings say uncertain."""
        with caplog.at_level(logging.INFO, logger="collectors"):
            for step in range(50):
                TestCumulativeChannels().counter(decoder, 1000 - step * 10, step)
        assert len(caplog.records) == 1


class TestDecodePublish:
    """The direct PUBLISH packet decoder of the MQTT adapter."""

    @staticmethod
    def packet(topic: bytes, payload: bytes, mid: int | None, properties: bytes | None) -> bytes:
        body = len(topic).to_bytes(2, "big") + topic
        if mid is not None:
            body += mid.to_bytes(2, "big")
        if properties is not None:
            body += bytes([len(properties)]) + properties
        return body + payload

    def test_mqtt_311_qos1(self):
        """Topic, packet id, payload and flags of an MQTT 3.1.1 QoS 1 PUBLISH."""
        message = decode_publish(0x3B, self.packet(b"a/b", b"42", 7, None), v5=False)
        assert (message.topic, message.payload, message.mid, message.qos) == ("a/b", b"42", 7, 1)
        assert message.retain
        assert message.dup

    def test_mqtt_5_properties_are_skipped(self):
        """MQTT 5 properties (here a message expiry interval) do not end up in the payload."""
        props = b"\x02\x00\x00\x00\x3c"
        message = decode_publish(0x32, self.packet(b"t", b"{}", 1, props), v5=True)
        assert message.payload == b"{}"
        assert message.mid == 1

    def test_qos0_has_no_packet_id(self):
        """A QoS 0 PUBLISH carries no packet identifier."""
        message = decode_publish(0x30, self.packet(b"t", b"x", None, None), v5=False)
        assert (message.qos, message.mid, message.payload) == (0, 0, b"x")

    @pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x09ab", b"\x00\x01t\x00"])
    def test_malformed(self, body):
        """Truncated packets raise ValueError."""
        with pytest.raises(ValueError, match="malformed"):
            decode_publish(0x32, body, v5=True)
