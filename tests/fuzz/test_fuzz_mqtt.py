"""Fuzzing the MQTT decoder (``collectors.mqtt.mapping.MessageDecoder``): 120,000 payloads.

Seed ``SEED`` = 14 (issue 14), ``PAYLOADS`` = 120,000 messages split over two decoders: the
example site's bindings (``deploy/examples/site.yaml``) and hostile ones covering every
payload format (JSON, plain number), timestamp format (ISO 8601, epoch s, epoch ms, receive
time), quality mapping (per payload and per channel, text and numbers), cumulative counters
and every unit conversion, including a sample volume so small that counts overflow.
Payloads are shaped like the real ones with hostile values (edges of every numeric type,
1e307 counts, ISO times at ±23:59 next to year 1 and 9999, epoch times beyond any datetime),
raw JSON the parser must refuse (``NaN``, ``1e400``, deep nesting, invalid UTF-8), plain
numbers and random bytes, on known, unknown and odd topics, some retained.

Invariants, for every message: the decoder never raises and never falls into its catch-all
(``internal_errors`` stays 0); every reading's value is finite, or None with bad quality; its
timestamps are aware UTC; a message yields readings, or a dead letter with a reason of
bounded length, or nothing only where that is the rule (retained without a timestamp, a
counter's baseline or duplicate); and the log stays within a fixed number of lines whatever
the number of messages. A failure prints the seed and message number to reproduce it.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from collectors.mqtt.mapping import MAX_LOGGED_INTERNAL_ERRORS, MessageDecoder
from envmon.config import SiteConfig, load_site, parse_site
from envmon.models import Quality
from tests.unit.collectors.sites import PARTICLES_M3, PC_1, instrument, mqtt_site
from tests.unit.config.test_example_site import EXAMPLE

from . import hostile

SEED = 14
PAYLOADS = 120_000
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
#: Longest dead-letter reason allowed: a few bounded sentences per channel.
MAX_REASON_CHARS = 1_500

HOSTILE_SITE = mqtt_site(
    PC_1,
    instrument(
        "pc-tiny",
        "Counter with a tiny sample volume",
        "particle_counter",
        PARTICLES_M3,
        sample_volume_m3="1.0e-300",
    ),
    instrument(
        "inc-1", "Incubator", "incubator", {"temperature": "degC", "co2": "%", "humidity": "%RH"}
    ),
    instrument("fr-1", "Fridge", "fridge", {"temperature": "degC"}),
    site="site: {name: Fuzz}",
    mqtt="""
        - id: fuzz
          max_payload_bytes: 2048
          bindings:
            - topic: f/+instrument/particles
              sensor_id: "{instrument}.{channel}"
              payload:
                timestamp: {path: ts, format: iso8601}
                quality: {path: status, good: [ok, 0, true], uncertain: [purge], bad: [fault, 1]}
                channels:
                  particles_0_5um: {path: counts.0_5um, unit: counts}
                  particles_5_0um: {path: counts.5_0um, unit: counts}
            - topic: f/+instrument/counter
              sensor_id: "{instrument}.{channel}"
              payload:
                timestamp: {path: t, format: epoch_s}
                channels:
                  particles_0_5um: {path: n.0, unit: counts, cumulative: true}
                  particles_5_0um:
                    path: n.1
                    unit: particles/ft3
                    cumulative: true
                    quality: {path: q, bad: [err], otherwise: good}
            - topic: f/+instrument/incubator
              sensor_id: "{instrument}.{channel}"
              payload:
                timestamp: {path: meta.time_ms, format: epoch_ms}
                quality: {path: meta.status, good: [0], bad: [2], otherwise: uncertain}
                channels:
                  temperature: {path: t_k, unit: K}
                  co2: {path: sensors.0.ppm, unit: ppm}
                  humidity: {path: rh}
            - topic: f/+instrument/fahrenheit
              sensor_id: "{instrument}.temperature"
              payload: {format: number, channels: {t: {unit: degF}}}
            - topic: f/+instrument/liters
              sensor_id: "{instrument}.particles_0_5um"
              payload:
                channels:
                  n: {unit: particles/L, cumulative: true}
    """,
)

#: (topic template, instrument ids that exist, payload kind) per hostile binding.
HOSTILE_TOPICS = (
    ("f/{}/particles", ("pc-1", "pc-tiny"), "particles"),
    ("f/{}/counter", ("pc-1", "pc-tiny"), "counter"),
    ("f/{}/incubator", ("inc-1",), "incubator"),
    ("f/{}/fahrenheit", ("fr-1", "inc-1"), "number"),
    ("f/{}/liters", ("pc-1", "pc-tiny"), "liters"),
)
EXAMPLE_TOPICS = (
    (
        "cgt/{}/particles",
        ("isolator-1/pc-isolator-1", "grade-b-room/pc-grade-b", "grade-d-corridor/pc-grade-d"),
        "example-particles",
    ),
    (
        "cgt/{}/incubator",
        ("grade-c-prep/incubator-1", "grade-c-prep/incubator-3"),
        "example-incubator",
    ),
    ("cgt/{}/climate", ("grade-c-prep/rs-grade-c",), "example-climate"),
)


def _encode(rng: random.Random, document: object) -> bytes:
    """Encode as JSON the way a device might: compact, spaced, NaN tokens, escaped text."""
    if rng.random() < 0.5:
        try:
            return orjson.dumps(document)
        except (TypeError, orjson.JSONEncodeError):  # >64-bit ints, lone surrogates
            pass
    return json.dumps(document, allow_nan=True).encode()


def _counts(rng: random.Random) -> object:
    if rng.random() < 0.8:
        return {"0_5um": _field(rng), "5_0um": _field(rng)}
    return hostile.json_value(rng, NOW)


def _field(rng: random.Random) -> object:
    """A channel's field: mostly a number, sometimes anything; rarely missing (None here)."""
    if rng.random() < 0.75:
        return hostile.number(rng)
    return hostile.json_value(rng, NOW)


def _epoch(rng: random.Random, scale: float) -> object:
    roll = rng.random()
    if roll < 0.5:
        return (NOW.timestamp() + rng.uniform(-86_400, 86_400)) * scale
    if roll < 0.8:
        return hostile.number(rng)
    return hostile.json_value(rng, NOW)


def _quality(rng: random.Random) -> object:
    return rng.choice(["ok", "fault", "purge", 0, 1, 2, True, None, "", "OK", 1.0, [0]])


def _shaped(rng: random.Random, kind: str, sequence: int) -> bytes:
    """A payload shaped like the binding expects, with hostile values."""
    doc: dict[str, object]
    if kind in ("particles", "example-particles"):
        doc = {"ts": hostile.iso_text(rng, NOW), "status": _quality(rng), "counts": _counts(rng)}
    elif kind == "counter":
        # Mostly increasing sample times so the counters step, with resets and duplicates.
        t = NOW.timestamp() + sequence if rng.random() < 0.8 else _epoch(rng, 1)
        doc = {"t": t, "n": [_field(rng), _field(rng)], "q": rng.choice(["ok", "err", 5])}
    elif kind == "incubator":
        meta = {"time_ms": _epoch(rng, 1000), "status": _quality(rng)}
        doc = {
            "meta": meta,
            "t_k": _field(rng),
            "sensors": [{"ppm": _field(rng)}],
            "rh": _field(rng),
        }
    elif kind == "example-incubator":
        doc = {
            "ts": hostile.iso_text(rng, NOW),
            "status": _quality(rng),
            "temperature_c": _field(rng),
            "co2_ppm": _field(rng),
            "rh_pct": _field(rng),
        }
    elif kind == "example-climate":
        doc = {"ts": hostile.iso_text(rng, NOW), "t_f": _field(rng), "rh": _field(rng)}
    elif kind == "liters":
        doc = {"n": _field(rng)}
    else:  # a plain number
        return _number_text(rng)
    for key in list(doc):
        if rng.random() < 0.05:
            del doc[key]  # a missing field
    return _encode(rng, doc)


def _number_text(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return repr(hostile.number(rng)).encode()
    return rng.choice(
        [b" 39.2\n", b"1e309", b"-1e400", b"1" * 400, b"1" * 5_000, b"0x10", b"1_000", b"+.5",
         b"\xd9\xa1\xd9\xa2", b"12 C", b"", b"nan", b"-inf", b"1e-400", b"." * 3]
    )  # fmt: skip


def _raw_json(rng: random.Random) -> bytes:
    """JSON text a parser must refuse or that nests or repeats oddly."""
    depth = rng.choice([10, 200, 1_100])
    return rng.choice(
        [
            b'{"ts": "2026-11-25T08:00:00Z", "counts": {"0_5um": NaN, "5_0um": Infinity}}',
            b'{"ts": "2026-11-25T08:00:00Z", "counts": {"0_5um": 1e400, "5_0um": -1e400}}',
            b'{"counts": {"0_5um": 1}, "counts": {"0_5um": 2}, "ts": "2026-11-25T08:00:00Z"}',
            b'{"n": 1' + b"0" * 400 + b"}",
            b'{"t_f": "\\ud800", "ts": "2026-11-25T08:00:00Z"}',
            b'{"ts": "2026-11-25T08:00:00Z\xff\xfe", "t_f": 1}',
            b"\xef\xbb\xbf{}",
            b"[" * depth + b"]" * depth,
            b'{"a":' * depth + b"1" + b"}" * depth,
            b'{"ts": "2026-11-25T08:00:00Z", "t_f": 5',
        ]
    )


def _message(
    rng: random.Random, topics: tuple[tuple[str, tuple[str, ...], str], ...], sequence: int
) -> tuple[str | None, bytes, bool, bytes]:
    """Return (topic, payload, retain, raw topic) of one fuzzed message."""
    template, instruments, kind = rng.choice(topics)
    roll = rng.random()
    if roll < 0.85:
        topic: str | None = template.format(rng.choice(instruments))
    elif roll < 0.9:
        topic = template.format("nobody/here" if "/" in instruments[0] else "nobody")
    elif roll < 0.95:
        topic = rng.choice(["", "#", "+", "f//particles", "x" * 5_000, hostile.text(rng)])
    else:
        topic = None  # not valid UTF-8
    roll = rng.random()
    if roll < 0.8:
        payload = _shaped(rng, kind, sequence)
    elif roll < 0.9:
        payload = _raw_json(rng)
    elif roll < 0.95:
        payload = _encode(rng, hostile.json_value(rng, NOW))
    else:
        payload = rng.randbytes(rng.randrange(3_000))
    return topic, payload, rng.random() < 0.05, b"f/\xff\xfe"


def _may_yield_nothing(decoder: MessageDecoder, topic: str, retain: bool) -> bool:
    """True for a message that may rightly give neither readings nor a dead letter."""
    for binding in decoder.bindings:
        if binding.pattern.match(topic) is not None:
            cumulative = any(channel.cumulative for channel in binding.channels)
            return cumulative or (retain and binding.ts is None)
    return False


class _Lines(logging.Handler):
    """Counts log records at INFO and above."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@pytest.fixture
def log_lines() -> Iterator[_Lines]:
    handler = _Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.setLevel(old_level)
        root.removeHandler(handler)


def _check(
    site: SiteConfig,
    topics: tuple,
    count: int,
    seed: int,
    probes: tuple[str, ...],
) -> Counter[str]:
    """Decode ``count`` fuzzed messages (the site's first decoder), hold every invariant, count."""
    decoder = MessageDecoder(site.collectors.mqtt[0], site, source="mqtt:fuzz")
    rng = random.Random(seed)
    sensors = site.sensor_map()
    seen: Counter[str] = Counter()
    for sequence in range(count):
        topic, payload, retain, raw_topic = _message(rng, topics, sequence)
        received_at = NOW + timedelta(seconds=sequence)
        where = f"seed {seed}, message {sequence}: topic {topic!r:.80}, payload {payload!r:.200}"
        out = decoder.decode(topic, payload, received_at, retain=retain, raw_topic=raw_topic)
        seen["readings"] += len(out.readings)
        seen["bad readings"] += sum(r.quality is Quality.BAD for r in out.readings)
        if out.failure is not None:
            for probe in probes:
                seen[probe] += probe in out.failure.reason
        for reading in out.readings:
            if reading.value is None:
                assert reading.quality is Quality.BAD, where
            else:
                assert type(reading.value) is float, where
                assert math.isfinite(reading.value), where
            assert reading.ts.tzinfo is not None, where
            assert reading.ts.utcoffset() == timedelta(0), where
            assert reading.received_at == received_at, where
            assert reading.unit == sensors[reading.sensor_id].unit, where
        if out.failure is not None:
            assert out.failure.reason, where
            assert len(out.failure.reason) <= MAX_REASON_CHARS, where
            assert len(out.failure.raw) <= decoder.max_payload_bytes, where
        elif not out.readings:
            assert topic is not None, where
            assert _may_yield_nothing(decoder, topic, retain), where
        assert decoder.internal_errors == 0, where
    return seen


def _assert_reached(seen: Counter[str], probes: tuple[str, ...]) -> None:
    """The fuzz reached the outcomes it is meant to probe (not only garbage in, garbage out)."""
    assert seen["readings"] > 10_000, seen
    assert seen["bad readings"] > 1_000, seen
    for probe in probes:
        assert seen[probe] > 0, (probe, seen)


def test_example_site_bindings(log_lines: _Lines) -> None:
    """The example site's decoder holds every invariant over 60,000 fuzzed messages."""
    site = load_site(EXAMPLE)
    probes = (
        "is out of range in particles/m3",
        "is out of range in UTC",
        "is more than a day ahead",
        "invalid JSON",
        "unknown topic",
        "unknown sensor",
    )
    seen = _check(site, EXAMPLE_TOPICS, PAYLOADS // 2, SEED, probes)
    assert log_lines.count <= MAX_LOGGED_INTERNAL_ERRORS
    _assert_reached(seen, probes)


def test_hostile_bindings(log_lines: _Lines) -> None:
    """Every payload format, timestamp format, quality mapping, counter and unit: 60,000."""
    site = parse_site(HOSTILE_SITE)
    probes = (
        "is out of range in particles/m3",
        "timestamp field 't' is out of range",
        "timestamp field 'meta.time_ms' is out of range",
        "oversized payload",
        "payload is not a plain number",
        "value out of range",
        "topic is not valid UTF-8",
    )
    seen = _check(site, HOSTILE_TOPICS, PAYLOADS // 2, SEED + 1, probes)
    # One line per counter's first reset at most, and a bounded number of tracebacks.
    assert log_lines.count <= len(site.sensor_map()) + MAX_LOGGED_INTERNAL_ERRORS
    _assert_reached(seen, probes)
