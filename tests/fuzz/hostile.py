"""Hostile values shared by the fuzz harnesses: what a broken or malicious device sends.

Every generator takes a seeded ``random.Random`` so that a run is reproducible from its seed.
"""

from __future__ import annotations

import math
import random
import string
import sys
from datetime import UTC, datetime, timedelta, timezone

#: Numbers at and beyond the edges: type limits, overflow once scaled, subnormals, NaN, inf.
NUMBERS: tuple[float | int, ...] = (
    0,
    -0.0,
    1,
    -1,
    4.25,
    -80.5,
    3_520_000,
    1e-320,
    5e-324,
    1e300,
    1e307,
    -1e307,
    1.7e308,
    -1.7e308,
    sys.float_info.max,
    -sys.float_info.max,
    2**31 - 1,
    -(2**31),
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    math.inf,
    -math.inf,
    math.nan,
)

#: Aware datetimes in UTC and at extreme offsets, naive ones, and the edges of the range.
_OFFSETS = (
    UTC,
    timezone(timedelta(hours=23, minutes=59)),
    timezone(-timedelta(hours=23, minutes=59)),
    timezone(timedelta(hours=5, minutes=30)),
)


def number(rng: random.Random) -> float | int:
    """Return a hostile or ordinary number."""
    if rng.random() < 0.5:
        return rng.choice(NUMBERS)
    return rng.uniform(-1e6, 1e6) if rng.random() < 0.8 else rng.uniform(-1e308, 1e308)


def text(rng: random.Random, max_size: int = 30) -> str:
    """Return text that may hold control characters, surrogates and non-ASCII letters."""
    alphabet = string.printable + "µ°−ü中\u0000\u202e\ud800\udfff\ufeff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(max_size + 1)))


def datetime_value(rng: random.Random, now: datetime) -> datetime:
    """Return a datetime anywhere from year 1 to 9999, aware or naive, plausible or not."""
    roll = rng.random()
    if roll < 0.7:
        dt = now + timedelta(seconds=rng.uniform(-7 * 86_400, 2 * 86_400))
    elif roll < 0.75:
        dt = rng.choice([datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)])
    else:
        dt = datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), tzinfo=UTC)
        dt += timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(10**6))
    tz = rng.choice(_OFFSETS)
    if rng.random() < 0.1:
        return dt.replace(tzinfo=None)
    if rng.random() < 0.3:
        return dt.replace(tzinfo=tz)  # the same wall time at another offset: may leave UTC
    try:
        return dt.astimezone(tz)
    except OverflowError:
        return dt


def iso_text(rng: random.Random, now: datetime) -> str:
    """Return an ISO 8601 timestamp, or something that looks like one."""
    roll = rng.random()
    if roll < 0.8:
        return datetime_value(rng, now).isoformat()
    if roll < 0.9:
        return rng.choice(
            [
                "9999-12-31T23:59:59-23:59",
                "0001-01-01T00:00:00+23:59",
                "9999-12-31T23:59:59.999999+00:00",
                "1970-01-01T00:00:00Z",
                "2026-01-05T08:00:00",
                "2026-13-45T25:61:61Z",
                "2026-01-05T08:00:00+24:00",
                "2026-01-05T08:00:00Z" + "0" * 50,
                "",
                "yesterday",
            ]
        )
    return text(rng)


def json_value(rng: random.Random, now: datetime, depth: int = 0) -> object:
    """Return any JSON-able value: numbers, text, booleans, null, nested lists and objects."""
    roll = rng.random()
    if roll < 0.35:
        value = number(rng)
        return value if isinstance(value, int) or math.isfinite(value) else str(value)
    if roll < 0.45:
        return rng.choice([None, True, False])
    if roll < 0.6:
        return iso_text(rng, now)
    if roll < 0.7:
        return text(rng)
    if depth > 3:
        return rng.random()
    if roll < 0.85:
        return [json_value(rng, now, depth + 1) for _ in range(rng.randrange(4))]
    return {text(rng, 6): json_value(rng, now, depth + 1) for _ in range(rng.randrange(4))}
