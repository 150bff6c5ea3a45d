"""The time-series port: how readings are written to and read back from the series store.

``SeriesWriter`` is what the stream worker writes every evaluated reading through;
``SeriesReader`` is what the QA app and the status page read with. The adapters live in
``stream.timeseries`` (InfluxDB, SQLite, the worker's sinks); packages that only read
(``excursions``, ``dashboards``) depend on this module alone.

Writes are idempotent: a point is identified by its series and time, so at-least-once
delivery never stores a reading twice.

Errors::

    TimeSeriesError
     ├── TimeSeriesWriteError
     │    ├── PointsRejectedError    the server refused the points (4xx): status, message
     │    └── StoreUnavailableError  the server cannot take points now (5xx, network): retry
     └── TimeSeriesQueryError        a query failed: server unreachable, HTTP error, bad point
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from envmon.errors import EnvmonError
from envmon.models import Reading

#: What a writer keeps of a reading until it is written (``SeriesWriter.encode``): called
#: with the reading, its source time in epoch µs and its channel's state code after it was
#: evaluated (0 normal, 1 alert, 2 action).
Encode = Callable[[Reading, int, int], object]
#: What a writer keeps of a context point (limits, status, alarms, records) until written.
EncodeContext = Callable[[Any], object]


class TimeSeriesError(EnvmonError):
    """Base class of time-series store failures."""


class TimeSeriesWriteError(TimeSeriesError):
    """Base class of time-series write failures."""


class PointsRejectedError(TimeSeriesWriteError):
    """The server refused the points (4xx): writing them again cannot succeed."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")


class StoreUnavailableError(TimeSeriesWriteError):
    """The server cannot take points now (5xx, timeout, no connection): retry later.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TimeSeriesQueryError(TimeSeriesError):
    """Readings could not be read from the time-series store (the message names its URL)."""


class SeriesWriter(Protocol):
    """Where the stream worker writes every reading; ``write`` returns once they are stored."""

    def encode(self, reading: Reading, ts_us: int, code: int) -> object:
        """Return what ``write`` needs of an evaluated reading (called as it is evaluated)."""
        ...

    @property
    def encode_context(self) -> EncodeContext | None:
        """What ``write`` needs of a context point, or None: the writer keeps no context."""
        ...

    async def start(self) -> None:
        """Get ready to write (connections), before the first readings arrive."""
        ...

    @property
    def unavailable(self) -> bool:
        """True while a write is failing and being retried (the store is down)."""
        ...

    async def write(self, points: Sequence[Any]) -> None:
        """Store the encoded points (idempotently), retrying while the store is down."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class SeriesReader(Protocol):
    """Reads stored readings: one sensor over a range, and the newest of many sensors."""

    def query(self, sensor_id: str, start: datetime, end: datetime) -> Sequence[Reading]:
        """Return the readings of ``sensor_id`` with ``start <= ts < end``, oldest first."""
        ...

    def latest(self, sensor_ids: Collection[str], since: datetime) -> Mapping[str, Reading]:
        """Return each sensor's newest reading with ``ts >= since``, by sensor id.

        A sensor with no reading since then is left out. A stored quality the adapter
        cannot read comes back as ``bad`` (a quality not known to be good is not good).
        """
        ...
