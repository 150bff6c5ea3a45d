"""The InfluxDB adapter of the time-series port: ``InfluxWriter`` and ``InfluxSeriesReader``.

**Writing.** ``InfluxWriter.write(lines)`` sends one batch of line-protocol lines
(``stream.timeseries.schema``) with influxdb-client's asyncio write API (gzip,
``precision=us``) and returns only when every line is either stored (2xx) or dead-lettered
(refused with 4xx):

- **Refused (400, 413, 422, any other 4xx not listed below).** The batch is split in
  halves and each half written again, down to the single lines the server refuses; those
  go to ``dead_letter`` as a ``DeadLetter`` whose reason is the server's status and
  message, the rest is stored. (QuestDB refuses a request with one bad line whole;
  InfluxDB 2 stores the good lines of a "partial write" and refuses the request —
  writing them again is harmless because a point is identified by its series and time.)
- **Unavailable (5xx, 401, 403, 404, 408, 429, timeouts, connection errors).** The same
  request is retried forever with capped exponential backoff and jitter (honouring a
  ``Retry-After`` header). The first failure emits one ``timeseries_unavailable``
  ``SystemEvent`` (an alarm); the first success after it one ``timeseries_restored``.
  401/403/404 are configuration faults (token, organisation, bucket), not bad points:
  dead-lettering good readings because of them would lose data.

The caller (the stream worker) commits its consumer offsets only after ``write``
returned, so while the store is down it simply stops taking readings and catches up
afterwards: nothing is lost, and nothing is buffered but the one batch being written.
Cancelling ``write`` (shutdown) is safe for the same reason — the uncommitted batch is
delivered again. ``write`` calls are serialised.

Time is injectable: ``clock`` stamps events and dead letters, ``sleep`` waits between
retries, ``rng`` draws the jitter — unit tests never sleep. ``transport`` replaces the
HTTP client (``WriteTransport``; the real one is ``InfluxClientTransport``). Transports
raise the port's ``PointsRejectedError`` and ``StoreUnavailableError``
(``envmon.timeseries``); the writer handles them.

**Reading.** ``InfluxSeriesReader`` is the port's ``SeriesReader`` over Flux
(influxdb-client's synchronous query API). ``query(sensor_id, start, end)``: one sensor's
readings in ``[start, end)``, oldest first. ``latest(sensor_ids, since)``: each sensor's
newest point since ``since`` in one Flux query (``last()`` of the ``value`` and the
``quality`` field of each series, pushed down to the storage); a point without a ``value``
(a sensor fault) is newer than the last value: the reading is then the quality's point with
value ``None``, never an older value. The same Flux runs on InfluxDB 2.x (bucket name,
organisation, token) and on 1.8's compatibility API (``db/rp`` bucket). Every string
placed in a query is a Flux string literal with backslash, double quote and ``${``
escaped (``flux_string``), so a sensor id or site cannot change the query. InfluxDB 1.8's
storage returns the points at ``range``'s ``stop`` too (2.x does not): a second filter
``_time < stop`` makes the range half-open on both. Failures raise the port's
``TimeSeriesQueryError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, Self, TypeVar, cast

import aiohttp
import urllib3
from influxdb_client.client.flux_csv_parser import FluxCsvParserException, FluxQueryException
from influxdb_client.client.flux_table import TableList
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from isal import igzip

from envmon.backoff import Backoff
from envmon.models import DeadLetter, Quality, Reading, SystemEvent, SystemEventKind
from envmon.timeseries import (
    PointsRejectedError,
    StoreUnavailableError,
    TimeSeriesQueryError,
    TimeSeriesWriteError,
)
from envmon.timeutil import format_ts, from_us, to_us, utcnow
from stream.timeseries import schema as tsschema

logger = logging.getLogger(__name__)

DEFAULT_COMPONENT: Final = "timeseries.influx"
DEFAULT_TIMEOUT_S: Final = 10.0
#: HTTP statuses that say "not now" rather than "not this point": retried, never dead-lettered.
RETRY_STATUSES: Final = frozenset({401, 403, 404, 408, 429})
_MAX_MESSAGE: Final = 2000
_T = TypeVar("_T")
#: The lines carry µs timestamps. WritePrecision is a class of str constants, typed as such.
_PRECISION: Final = cast(WritePrecision, WritePrecision.US)
#: Compression level of request bodies (ISA-L's igzip, levels 0-3; bench/RESULTS.md has the
#: measurements against zlib and influxdb-client's fixed level 9). The body is standard gzip.
GZIP_LEVEL: Final = 1
assert _PRECISION == tsschema.PRECISION
#: ``Reading.source`` of the readings read back from InfluxDB.
SOURCE: Final = "influxdb"
DEFAULT_QUERY_TIMEOUT_S: Final = 10.0
_FLUX_ESCAPES: Final = str.maketrans({"\\": "\\\\", '"': '\\"'})
#: The qualities a point may carry; any other reads back as bad (``latest``).
_QUALITIES: Final = frozenset(q.value for q in Quality)

DeadLetterSink = Callable[[DeadLetter], Awaitable[None] | None]
EventSink = Callable[[SystemEvent], Awaitable[None] | None]


class WriteTransport(Protocol):
    """Sends one request of line-protocol lines; raises the port's write errors."""

    async def post(self, lines: Sequence[str]) -> None:
        """Write the lines in one request (µs precision); return once the server took them."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...


@dataclass(slots=True)
class WriterCounters:
    """What the writer has done since it was made (for metrics and tests)."""

    written: int = 0
    dead_lettered: int = 0
    retries: int = 0
    requests: int = 0
    rejected_requests: int = 0
    outages: int = 0


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one ``write``: every line was either stored or dead-lettered."""

    written: int
    dead_lettered: int
    retries: int
    requests: int


class InfluxClientTransport:
    """``WriteTransport`` over influxdb-client's ``InfluxDBClientAsync`` (aiohttp, gzip).

    The client is made by ``open`` (the stream worker calls it when it starts) or else by
    the first ``post``; either needs a running event loop (aiohttp). The body is gzip'd here
    with ISA-L (``isal.igzip``) at level ``GZIP_LEVEL`` in a worker thread (it releases the
    GIL), and sent through the client's generated ``WriteService`` with ``Content-Encoding:
    gzip`` (the client's own gzip would run at level 9 on the event loop).
    """

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        gzip: bool = True,
    ) -> None:
        self.url = url
        self.org = org
        self.bucket = bucket
        self._token = token
        self._timeout_ms = int(timeout_s * 1000)
        self._gzip = gzip
        self._client: InfluxDBClientAsync | None = None
        self._service: WriteService | None = None

    def open(self) -> WriteService:
        """Make the HTTP client now (idempotent), e.g. before readings are waiting.

        Making it builds an SSL context (tens of milliseconds of CPU, even for ``http``),
        which the first write would otherwise do on the event loop.
        """
        if self._service is None:
            self._client = InfluxDBClientAsync(
                url=self.url,
                token=self._token,
                org=self.org,
                timeout=self._timeout_ms,
                enable_gzip=False,  # compressed here (see the class docstring)
            )
            self._service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]
        return self._service

    async def post(self, lines: Sequence[str]) -> None:
        """Write the lines in one gzip request with ``precision=us``."""
        service = self.open()
        body = "\n".join(lines).encode()
        if self._gzip:
            body = await asyncio.to_thread(igzip.compress, body, GZIP_LEVEL)
        try:
            await service.post_write_async(  # type: ignore[no-untyped-call]
                org=self.org,
                bucket=self.bucket,
                body=body,
                precision=_PRECISION,
                content_encoding="gzip" if self._gzip else "identity",
                content_type="text/plain; charset=utf-8",
            )
        except ApiException as exc:
            raise _translate(exc) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def close(self) -> None:
        """Close the HTTP session."""
        client, self._client = self._client, None
        self._service = None
        if client is not None:
            close: Callable[[], Awaitable[None]] = client.close  # the client leaves it untyped
            await close()


def _translate(exc: ApiException) -> TimeSeriesWriteError:
    status = int(exc.status or 0)
    message = api_message(exc)
    if status >= 500 or status in RETRY_STATUSES or status < 400:
        return StoreUnavailableError(f"HTTP {status}: {message}", _retry_after(exc))
    return PointsRejectedError(status, message)


def api_message(exc: ApiException) -> str:
    """Return the server's message of a refused request, not its JSON.

    InfluxDB 2 and QuestDB send ``{"message": ...}``, InfluxDB 1.8 ``{"error": ...}``.
    """
    raw = getattr(exc, "message", None) or exc.body or exc.reason or ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    text = str(raw).strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        text = str(parsed.get("message") or parsed.get("error") or text).strip()
    return text[:_MAX_MESSAGE]


def _retry_after(exc: ApiException) -> float | None:
    value = getattr(exc, "retry_after", None)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the backoff applies


class InfluxWriter:
    """Writes batches of line-protocol lines to InfluxDB; see the module docstring."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        dead_letter: DeadLetterSink,
        on_event: EventSink | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        backoff: Backoff | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        gzip: bool = True,
        component: str = DEFAULT_COMPONENT,
        transport: WriteTransport | None = None,
    ) -> None:
        self.url = url
        self.bucket = bucket
        self.component = component
        self.counters = WriterCounters()
        self._transport: WriteTransport = transport or InfluxClientTransport(
            url, token, org, bucket, timeout_s=timeout_s, gzip=gzip
        )
        self._dead_letter = dead_letter
        self._on_event = on_event
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._backoff = backoff or Backoff()
        self._lock = asyncio.Lock()
        self._outage_since: datetime | None = None
        self._outage_retries = 0

    @property
    def unavailable(self) -> bool:
        """True from the first failed request of an outage until a request succeeds."""
        return self._outage_since is not None

    async def write(self, lines: Sequence[str]) -> WriteResult:
        """Store every line or dead-letter it; retry while the store is unavailable.

        Returns the counts of this call. Only ``CancelledError`` (and an exception of the
        dead-letter or event sink) ends it early, with the batch not fully stored.
        """
        async with self._lock:
            before = dataclasses.replace(self.counters)
            if lines:
                await self._write(list(lines))
            c = self.counters
            return WriteResult(
                written=c.written - before.written,
                dead_lettered=c.dead_lettered - before.dead_lettered,
                retries=c.retries - before.retries,
                requests=c.requests - before.requests,
            )

    async def _write(self, lines: list[str]) -> None:
        # Iterative bisection: a stack of sub-batches, first half on top (keeps order).
        pending = [lines]
        while pending:
            batch = pending.pop()
            try:
                await self._post(batch)
            except PointsRejectedError as exc:
                if len(batch) == 1:
                    await self._reject(batch[0], exc)
                else:
                    middle = len(batch) // 2
                    pending.append(batch[middle:])
                    pending.append(batch[:middle])
                continue
            self.counters.written += len(batch)

    async def _post(self, batch: list[str]) -> None:
        """Send one request until the server answers it with 2xx or a refusal."""
        attempt = 0
        while True:
            self.counters.requests += 1
            try:
                await self._transport.post(batch)
            except StoreUnavailableError as exc:
                attempt += 1
                await self._unavailable(exc)
                delay = self._backoff.delay(attempt, self._rng)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self._backoff.maximum_s))
                logger.debug("%s: retry %d in %.2f s: %s", self.component, attempt, delay, exc)
                self.counters.retries += 1
                self._outage_retries += 1
                await self._sleep(delay)
                continue
            except PointsRejectedError:
                self.counters.rejected_requests += 1
                await self._restored()
                raise
            await self._restored()
            return

    async def _reject(self, line: str, exc: PointsRejectedError) -> None:
        logger.warning("%s: point refused (%s): %s", self.component, exc, line[:200])
        letter = DeadLetter.of(
            source=self.component,
            origin=f"{self.url} bucket {self.bucket}",
            reason=f"time-series store refused the point: {exc}",
            raw=line.encode("utf-8"),
            received_at=self._clock(),
        )
        await _call(self._dead_letter, letter)
        self.counters.dead_lettered += 1

    async def _unavailable(self, exc: StoreUnavailableError) -> None:
        if self._outage_since is not None:
            return
        self._outage_since = self._clock()
        self._outage_retries = 0
        self.counters.outages += 1
        detail = f"{self.url}: {exc}; holding the batch and retrying"
        logger.error("%s: time-series store unavailable: %s", self.component, detail)
        await self._emit(SystemEventKind.TIMESERIES_UNAVAILABLE, detail, alarm=True)

    async def _restored(self) -> None:
        since = self._outage_since
        if since is None:
            return
        self._outage_since = None
        seconds = (self._clock() - since).total_seconds()
        detail = (
            f"{self.url}: writing again after {seconds:.1f} s and {self._outage_retries} retries"
        )
        logger.warning("%s: time-series store restored: %s", self.component, detail)
        await self._emit(SystemEventKind.TIMESERIES_RESTORED, detail, alarm=False)

    async def _emit(self, kind: SystemEventKind, detail: str, *, alarm: bool) -> None:
        if self._on_event is None:
            return
        event = SystemEvent(
            event=kind, component=self.component, ts=self._clock(), alarm=alarm, detail=detail
        )
        await _call(self._on_event, event)

    def open(self) -> None:
        """Make the HTTP client now if the transport can (it is made on first use anyway)."""
        open_transport = getattr(self._transport, "open", None)
        if open_transport is not None:
            open_transport()

    async def close(self) -> None:
        """Close the HTTP client; idempotent."""
        await self._transport.close()

    async def __aenter__(self) -> InfluxWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _call(sink: Callable[[_T], Awaitable[None] | None], item: _T) -> None:
    """Call a sink that may be a plain function or a coroutine function."""
    result = sink(item)
    if inspect.isawaitable(result):
        await result


# --- reading ---------------------------------------------------------------------------


def flux_string(text: str) -> str:
    r"""Return ``text`` as a Flux string literal: quoted, with ``\``, ``"`` and ``${`` escaped."""
    return '"' + text.translate(_FLUX_ESCAPES).replace("${", "\\${") + '"'


def flux_time(dt: datetime) -> str:
    """Return an aware datetime as a Flux time literal (UTC, µs)."""
    return format_ts(from_us(to_us(dt)))


def readings_query(
    bucket: str, sensor_id: str, start: datetime, end: datetime, *, site: str | None = None
) -> str:
    """Return the Flux query of one sensor's readings in ``[start, end)`` (the point schema).

    The range is half-open as the port's ``query`` is; the fields ``value`` and
    ``quality`` are pivoted into one row per point, and the ``unit`` tag comes along.
    """
    s = tsschema
    predicate = (
        f"r._measurement == {flux_string(s.MEASUREMENT)}"
        f" and r.{s.TAG_SENSOR} == {flux_string(sensor_id)}"
    )
    if site is not None:
        predicate += f" and r.{s.TAG_SITE} == {flux_string(site)}"
    predicate += (
        f" and (r._field == {flux_string(s.FIELD_VALUE)}"
        f" or r._field == {flux_string(s.FIELD_QUALITY)})"
    )
    keep = ", ".join(flux_string(c) for c in ("_time", s.FIELD_VALUE, s.FIELD_QUALITY, s.TAG_UNIT))
    stop = flux_time(end)
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(start)}, stop: {stop})\n"
        f"  |> filter(fn: (r) => {predicate})\n"
        # InfluxDB 1.8's storage includes the points at ``stop``; 2.x does not. A filter of
        # its own, so that 2.x still pushes the one above down to its storage.
        f"  |> filter(fn: (r) => r._time < {stop})\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        f"  |> keep(columns: [{keep}])\n"
    )


def latest_query(
    bucket: str, sensor_ids: Collection[str], since: datetime, *, site: str | None = None
) -> str:
    """Return the Flux query of each sensor's newest ``value`` and ``quality`` since ``since``.

    One row per series and field (``last()`` of each table, which the storage answers
    without reading the series); a sensor whose unit tag changed has a series per unit, and
    the caller keeps the newest. ``sensor_ids`` must not be empty.
    """
    s = tsschema
    sensors = " or ".join(f"r.{s.TAG_SENSOR} == {flux_string(x)}" for x in sorted(sensor_ids))
    predicate = f"r._measurement == {flux_string(s.MEASUREMENT)}"
    if site is not None:
        predicate += f" and r.{s.TAG_SITE} == {flux_string(site)}"
    predicate += (
        f" and (r._field == {flux_string(s.FIELD_VALUE)}"
        f" or r._field == {flux_string(s.FIELD_QUALITY)})"
        f" and ({sensors})"
    )
    keep = ", ".join(
        flux_string(c) for c in ("_time", "_value", "_field", s.TAG_SENSOR, s.TAG_UNIT)
    )
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(since)})\n"
        f"  |> filter(fn: (r) => {predicate})\n"
        "  |> last()\n"
        f"  |> keep(columns: [{keep}])\n"
    )


class InfluxSeriesReader:
    """Reads one sensor's readings back from InfluxDB 2.x or 1.8 with Flux (the port's ``query``).

    ``site`` restricts every query to that site's points (sensor ids are unique within a
    site). Thread-safe: the QA app may query from several worker threads.
    """

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
        site: str | None = None,
    ) -> None:
        self.url = url
        self.org = org
        self.bucket = bucket
        self.site = site
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))
        self._query_api = self._client.query_api()

    def query(self, sensor_id: str, start: datetime, end: datetime) -> list[Reading]:
        """Return the readings of one sensor with ``start <= ts < end``, oldest first.

        A point without a ``value`` field (no value, a sensor fault) reads back with value
        ``None``; a point without a ``unit`` tag with unit ``""``.
        """
        if to_us(start) >= to_us(end):
            return []
        tables = self._run(readings_query(self.bucket, sensor_id, start, end, site=self.site))
        found: list[tuple[datetime, Reading]] = []
        for table in tables:
            for record in table.records:
                values: dict[str, Any] = record.values
                found.append(self._reading(sensor_id, values))
        found.sort(key=lambda pair: pair[0])
        return [reading for _, reading in found]

    def _run(self, flux: str) -> TableList:
        """Run a Flux query; raise ``TimeSeriesQueryError`` naming the URL and bucket."""
        try:
            return self._query_api.query(flux, org=self.org)
        except ApiException as exc:
            raise TimeSeriesQueryError(
                f"{self.url} bucket {self.bucket}: HTTP {exc.status}: {api_message(exc)}"
            ) from exc
        except FluxQueryException as exc:
            raise TimeSeriesQueryError(
                f"{self.url} bucket {self.bucket}: query failed: {exc.message}"
            ) from exc
        except FluxCsvParserException as exc:
            raise TimeSeriesQueryError(f"{self.url}: unreadable answer: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TimeSeriesQueryError(
                f"{self.url}: time-series store unreachable: {type(exc).__name__}: {exc}"
            ) from exc

    def latest(self, sensor_ids: Collection[str], since: datetime) -> dict[str, Reading]:
        """Return each sensor's newest reading with ``ts >= since`` (none: left out).

        The newest point's ``quality`` and, if that point has one, its ``value`` (else
        ``None``: a fault); a quality that is not one of ``Quality``'s reads back as ``bad``.
        """
        wanted = set(sensor_ids)
        if not wanted:
            return {}
        tables = self._run(latest_query(self.bucket, wanted, since, site=self.site))
        # sensor → field → (time, value, unit) of the newest row of that field
        newest: dict[str, dict[str, tuple[datetime, Any, str]]] = {}
        for table in tables:
            for record in table.records:
                values: dict[str, Any] = record.values
                sensor, field, ts = (
                    values.get(k) for k in (tsschema.TAG_SENSOR, "_field", "_time")
                )
                if not (sensor in wanted and isinstance(field, str) and isinstance(ts, datetime)):
                    continue
                fields = newest.setdefault(str(sensor), {})
                held = fields.get(field)
                if held is None or ts > held[0]:
                    fields[field] = (
                        ts.astimezone(UTC),
                        values.get("_value"),
                        values.get(tsschema.TAG_UNIT) or "",
                    )
        return {
            sensor: reading
            for sensor, fields in newest.items()
            if (reading := self._newest(sensor, fields)) is not None
        }

    def _newest(
        self, sensor_id: str, fields: dict[str, tuple[datetime, Any, str]]
    ) -> Reading | None:
        """Return the reading of a sensor's newest point from its fields' newest rows."""
        ts = max(at for at, _, _ in fields.values())
        value_row = fields.get(tsschema.FIELD_VALUE)
        quality_row = fields.get(tsschema.FIELD_QUALITY)
        value = value_row[1] if value_row is not None and value_row[0] == ts else None
        quality = quality_row[1] if quality_row is not None and quality_row[0] == ts else None
        unit = next(row[2] for row in fields.values() if row[0] == ts)
        try:
            return Reading(
                sensor_id=sensor_id,
                value=None if value is None else float(value),
                unit=unit,
                ts=ts,
                quality=Quality(quality) if quality in _QUALITIES else Quality.BAD,
                source=SOURCE,
            )
        except (ValueError, TypeError) as exc:  # a point no writer of ours makes
            logger.warning("%s: newest point of %r unreadable: %s", self.url, sensor_id, exc)
            return None

    def _reading(self, sensor_id: str, values: dict[str, Any]) -> tuple[datetime, Reading]:
        ts = values.get("_time")
        if not isinstance(ts, datetime):
            raise TimeSeriesQueryError(
                f"{self.url} bucket {self.bucket}: a point of {sensor_id!r} without _time"
            )
        ts = ts.astimezone(UTC)
        try:
            value = values.get(tsschema.FIELD_VALUE)
            reading = Reading(
                sensor_id=sensor_id,
                value=None if value is None else float(value),
                unit=values.get(tsschema.TAG_UNIT) or "",
                ts=ts,
                quality=Quality(str(values.get(tsschema.FIELD_QUALITY))),
                source=SOURCE,
            )
        except (ValueError, TypeError) as exc:
            raise TimeSeriesQueryError(
                f"{self.url} bucket {self.bucket}: a point of {sensor_id!r} at {ts} is not"
                f" a reading of stream.timeseries.schema: {exc}"
            ) from exc
        return ts, reading

    def close(self) -> None:
        """Close the HTTP connections; idempotent."""
        self._client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
