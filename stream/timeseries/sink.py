"""The stream worker's time-series writers: the port's ``SeriesWriter`` for each store.

``InfluxSink`` (InfluxDB or QuestDB, as line protocol through ``InfluxWriter``),
``SqliteSink`` (the embedded default) and ``NullSink`` (``timeseries: none``). The worker
encodes each reading with the sink's ``encode`` as it evaluates it and hands the encoded
points to ``write``, which returns once they are stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from envmon.config import SiteConfig
from envmon.models import DeadLetter, Reading, SystemEvent
from envmon.settings import Settings
from envmon.timeseries import EncodeContext
from stream.timeseries.context import ContextPoint
from stream.timeseries.context import to_line as context_line
from stream.timeseries.influxdb import InfluxWriter
from stream.timeseries.schema import LineEncoder
from stream.timeseries.sqlite import SqliteTimeSeries


class WorkerOutputs(Protocol):
    """Where a sink reports what the worker publishes: refused points and store outages."""

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Publish a dead letter."""
        ...

    async def system_event(self, event: SystemEvent) -> None:
        """Publish an event about the worker itself."""
        ...


def site_id(site: SiteConfig) -> str:
    """Return the site's id for the time series: its name as a lowercase slug."""
    return site.site_id


class InfluxSink:
    """Readings as line protocol (``stream.timeseries.schema``) through the InfluxDB writer."""

    def __init__(self, settings: Settings, site: SiteConfig) -> None:
        self.specs = {spec.sensor_id: spec for spec in site.sensors()}
        self.site_id = site_id(site)
        self.encoder = LineEncoder(self.specs, site=self.site_id)
        self.encoder.prepare()
        #: The reading's line, called for every reading the worker evaluates.
        self.encode: Callable[[Reading, int, int], str] = self.encoder.encode
        #: A context point's line (limits, status, alarms, records: ``stream.timeseries.context``).
        self.encode_context: Callable[[ContextPoint], str] = context_line
        self.worker: WorkerOutputs | None = None
        self.writer = InfluxWriter(
            settings.influx_url,
            settings.influx_token.get_secret_value(),
            settings.influx_org,
            settings.influx_bucket,
            dead_letter=self._dead_letter,
            on_event=self._event,
            timeout_s=settings.influx_timeout_s,
        )

    async def _dead_letter(self, letter: DeadLetter) -> None:
        if self.worker is None:
            raise RuntimeError("InfluxSink used before it was attached to a worker")
        await self.worker.dead_letter(letter)

    async def _event(self, event: SystemEvent) -> None:
        if self.worker is not None:
            await self.worker.system_event(event)

    async def write(self, points: Sequence[str]) -> None:
        """Write the lines; returns once each is stored or dead-lettered."""
        if points:
            await self.writer.write(points)

    async def start(self) -> None:
        """Make the HTTP client before the first readings wait for it."""
        self.writer.open()

    @property
    def unavailable(self) -> bool:
        """True from the first failed write of an outage until a write succeeds."""
        return self.writer.unavailable

    async def close(self) -> None:
        """Close the writer's HTTP client."""
        await self.writer.close()


class SqliteSink:
    """The embedded default: readings into ``SqliteTimeSeries``."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteTimeSeries(path)

    def encode(self, reading: Reading, ts_us: int, code: int) -> Reading:
        """Keep the reading (the table has its own columns)."""
        return reading

    @property
    def encode_context(self) -> EncodeContext:
        """Keep the context point as it is (``SqliteTimeSeries.write_context``)."""
        return _same

    async def start(self) -> None:
        """Nothing to prepare: the database is open."""

    @property
    def unavailable(self) -> bool:
        """A local file: never reported down (a failure is fatal)."""
        return False

    async def write(self, points: Sequence[Reading | ContextPoint]) -> None:
        """Store the readings and context points in a worker thread."""
        if points:
            await asyncio.to_thread(self.store.write_mixed, points)

    async def close(self) -> None:
        """Close the database."""
        self.store.close()


class NullSink:
    """No time-series store (``timeseries: none``)."""

    def encode(self, reading: Reading, ts_us: int, code: int) -> None:
        """Keep nothing."""

    @property
    def encode_context(self) -> None:
        """Keep no context either."""

    async def start(self) -> None:
        """Nothing to prepare."""

    @property
    def unavailable(self) -> bool:
        """Never down."""
        return False

    async def write(self, points: Sequence[None]) -> None:
        """Store nothing."""

    async def close(self) -> None:
        """Nothing to close."""


def _same(point: ContextPoint) -> ContextPoint:
    return point
