"""UTC timestamps: parsing, formatting and the integer-microsecond form used by the core.

The evaluation core keeps time as integer microseconds since the Unix epoch (UTC): exact,
cheap to compare, and serialisable without loss. Everything at the edges is a timezone-aware
``datetime`` in UTC.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final

from pydantic_core import TzInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
_ZERO: Final = timedelta(0)
US_PER_S = 1_000_000


#: Reading times before this are refused at the collectors: a device clock never set.
EARLIEST_TS: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: Reading times further ahead of the receive time than this are refused at the collectors.
MAX_AHEAD: Final = timedelta(days=1)
#: Characters of a bad timestamp quoted in an error (never the whole input).
_QUOTED: Final = 40


class NaiveTimestampError(ValueError):
    """A timestamp without a UTC offset: ambiguous, so refused."""


class TimestampRangeError(ValueError):
    """A timestamp whose UTC time lies outside what a ``datetime`` holds (years 1 to 9999)."""


def parse_ts(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries an offset (or ``Z``) into UTC.

    Raises ``ValueError``: ``NaiveTimestampError`` without an offset,
    ``TimestampRangeError`` when the offset moves it out of range
    (``9999-12-31T23:59:59-23:59``), a plain ``ValueError`` when it is not ISO 8601.
    """
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise NaiveTimestampError(f"timestamp {text[:_QUOTED]!r} has no UTC offset")
    return as_utc(dt)


def as_utc(dt: datetime) -> datetime:
    """Return an aware datetime in UTC; raise ``TimestampRangeError`` if UTC cannot hold it."""
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # an extreme offset next to year 1 or 9999
        raise TimestampRangeError(
            f"timestamp {dt.isoformat()[:_QUOTED]!r} is out of range in UTC"
        ) from None


def implausible(ts: datetime, received_at: datetime) -> str | None:
    """Say why a reading time from a device cannot be used, or return None if it can.

    Before 2000 means a device clock never set; more than ``MAX_AHEAD`` after the receive
    time, a clock far ahead. Fed to the core, either would be late for ever or push its
    watermark into the future. Both arguments are aware datetimes.
    """
    if ts < EARLIEST_TS:
        return f"is before 2000 ({format_ts(ts)}): is the device clock set?"
    if ts - received_at > MAX_AHEAD:
        return f"is more than a day ahead of the receive time ({format_ts(ts)})"
    return None


#: Fixed-offset tzinfo types: their offset does not depend on the date.
_FIXED_OFFSET_TYPES: Final = (timezone, TzInfo)
#: The last zero-offset tzinfo object seen and the epoch as a datetime in it (see to_us).
_utc_epoch: tuple[tzinfo, datetime] = (UTC, EPOCH)


def to_us(dt: datetime) -> int:
    """Convert an aware datetime to integer microseconds since the epoch.

    Readings decoded by pydantic carry its own UTC ``TzInfo``, whose ``utcoffset`` costs
    more than the rest of the conversion: for a datetime in the last zero-offset tzinfo
    seen, the epoch is taken in that same tzinfo object, and CPython subtracts two
    datetimes with the same tzinfo without asking it for offsets. The stream worker
    converts every reading it handles.
    """
    global _utc_epoch  # noqa: PLW0603 (a one-entry cache)
    tz = dt.tzinfo
    if tz is _utc_epoch[0]:
        return (dt - _utc_epoch[1]) // ONE_US
    if tz is None:
        raise NaiveTimestampError(f"timestamp {dt!r} has no UTC offset")
    if type(tz) in _FIXED_OFFSET_TYPES and dt.utcoffset() == _ZERO:
        _utc_epoch = (tz, EPOCH.replace(tzinfo=tz))
    return (dt - EPOCH) // ONE_US


def parse_ts_us(text: str) -> int:
    """Parse an ISO 8601 timestamp with offset straight to epoch microseconds."""
    return to_us(parse_ts(text))


def from_us(us: int) -> datetime:
    """Convert epoch microseconds back to an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def format_us(us: int) -> str:
    """Format epoch microseconds as ISO 8601 UTC with a ``Z`` suffix."""
    return format_ts(from_us(us))


def format_ts(dt: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a ``Z`` suffix."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utcnow() -> datetime:
    """Return the current wall-clock time in UTC (only for edges, never the core)."""
    return datetime.now(UTC)


class ScaledClock:
    """Simulated time: starts at ``start`` and runs ``speed`` times faster than real time.

    ``envmon demo`` runs the example site at, say, 30× so that a 10-minute freezer delay
    passes in 20 seconds; every component reads this one clock. Made ``paused``, it stays at
    ``start`` until ``resume``: the demo sets everything up first, so that no simulated
    minute of its scenario passes before the collectors listen.
    """

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        paused: bool = False,
    ) -> None:
        if start.tzinfo is None:
            raise NaiveTimestampError("the clock's start must carry a UTC offset")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._monotonic = monotonic
        self._origin: float | None = None if paused else monotonic()

    def resume(self) -> None:
        """Let a clock made ``paused`` (it reads ``start`` until then) run from ``start`` on."""
        if self._origin is None:
            self._origin = self._monotonic()

    def __call__(self) -> datetime:
        """Return the current simulated time."""
        if self._origin is None:
            return self.start
        return self.start + timedelta(seconds=(self._monotonic() - self._origin) * self.speed)

    def real_seconds(self, simulated_s: float) -> float:
        """Return how many real seconds ``simulated_s`` simulated seconds take."""
        return simulated_s / self.speed
