"""The InfluxDB writer's rules: bisect refusals, retry outages, never lose.

``TestWriter*`` drive ``InfluxWriter`` through a scripted transport with a fake clock and a
recording sleep (nothing waits). ``TestInfluxClientTransport`` checks the real
influxdb-client transport against a small local aiohttp server that answers as InfluxDB
does (statuses, JSON error bodies, Retry-After, gzip).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence

import pytest
from aiohttp import web

from envmon.backoff import Backoff
from envmon.models import DeadLetter, SystemEvent, SystemEventKind
from envmon.netutil import free_port
from envmon.testing import FakeClock
from envmon.timeseries import PointsRejectedError, StoreUnavailableError
from stream.timeseries.influxdb import InfluxClientTransport, InfluxWriter


class ScriptedTransport:
    """Answers each request from a script; by default refuses lines containing 'bad'."""

    def __init__(self, failures: Sequence[Exception] = ()) -> None:
        self.failures = list(failures)  # raised, in order, by the first requests
        self.requests: list[list[str]] = []
        self.stored: list[str] = []
        self.closed = False

    async def post(self, lines: Sequence[str]) -> None:
        self.requests.append(list(lines))
        if self.failures:
            raise self.failures.pop(0)
        bad = [i for i, line in enumerate(lines) if "bad" in line]
        if bad:
            raise PointsRejectedError(400, f"error in line {bad[0] + 1}: cast error")
        self.stored.extend(lines)

    async def close(self) -> None:
        self.closed = True


class Recorder:
    """The writer's collaborators: dead letters, events, sleeps, a fake clock."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.events: list[SystemEvent] = []
        self.sleeps: list[float] = []
        self.clock = FakeClock()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def writer(self, transport: ScriptedTransport, **kwargs) -> InfluxWriter:
        options = {
            "dead_letter": self.letters.append,
            "on_event": self.events.append,
            "clock": self.clock,
            "sleep": self.sleep,
            "rng": lambda: 0.0,
            "transport": transport,
        }
        options.update(kwargs)
        return InfluxWriter("http://influx.test", "token", "org", "bucket", **options)


def lines(n: int, bad: Sequence[int] = ()) -> list[str]:
    bad_field, good_field = 'value="bad"', "value=1.0"
    return [f"reading,sensor=s{i} {bad_field if i in bad else good_field} {i}" for i in range(n)]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


class TestWriterStores:
    """Batches the server accepts."""

    async def test_one_request_per_batch(self, rec):
        """A good batch is one request, counted as written."""
        transport = ScriptedTransport()
        result = await rec.writer(transport).write(lines(5000))
        assert len(transport.requests) == 1
        assert len(transport.stored) == 5000
        assert (result.written, result.dead_lettered, result.retries) == (5000, 0, 0)

    async def test_empty_batch_sends_nothing(self, rec):
        """An empty batch returns at once without a request."""
        transport = ScriptedTransport()
        result = await rec.writer(transport).write([])
        assert transport.requests == []
        assert result.written == 0

    async def test_close_closes_transport(self, rec):
        """Leaving the context closes the transport."""
        transport = ScriptedTransport()
        async with rec.writer(transport) as writer:
            await writer.write(lines(1))
        assert transport.closed


class TestWriterRefusals:
    """Batches with points the server refuses (4xx)."""

    async def test_bisects_to_the_bad_point(self, rec):
        """One bad point is dead-lettered with the server's message; the rest is stored."""
        transport = ScriptedTransport()
        writer = rec.writer(transport)
        batch = lines(100, bad=[37])
        result = await writer.write(batch)
        assert sorted(transport.stored) == sorted(batch[:37] + batch[38:])
        assert transport.stored == batch[:37] + batch[38:]  # order kept
        assert [letter.payload for letter in rec.letters] == [batch[37]]
        letter = rec.letters[0]
        assert "HTTP 400" in letter.reason
        assert "cast error" in letter.reason
        assert letter.source == "timeseries.influx"
        assert letter.received_at == rec.clock.now
        assert (result.written, result.dead_lettered) == (99, 1)
        assert len(transport.requests) <= 2 * 7 + 1  # about two requests per halving
        assert rec.events == []  # a refusal is not an outage

    async def test_several_bad_points(self, rec):
        """Every bad point is isolated; nothing good is lost."""
        transport = ScriptedTransport()
        bad = [0, 1, 50, 99]
        batch = lines(100, bad=bad)
        result = await rec.writer(transport).write(batch)
        assert [letter.payload for letter in rec.letters] == [batch[i] for i in bad]
        assert len(transport.stored) == 96
        assert (result.written, result.dead_lettered) == (96, 4)

    async def test_all_bad(self, rec):
        """A batch of bad points ends entirely in the dead letter."""
        transport = ScriptedTransport()
        result = await rec.writer(transport).write(lines(8, bad=range(8)))
        assert result.dead_lettered == 8
        assert transport.stored == []

    async def test_async_dead_letter_sink_awaited(self, rec):
        """A coroutine dead-letter sink is awaited before write returns."""
        got: list[DeadLetter] = []

        async def sink(letter: DeadLetter) -> None:
            await asyncio.sleep(0)
            got.append(letter)

        await rec.writer(ScriptedTransport(), dead_letter=sink).write(lines(4, bad=[2]))
        assert len(got) == 1

    async def test_failing_dead_letter_sink_propagates(self, rec):
        """When the dead letter cannot be delivered, write raises (offsets stay uncommitted)."""

        def sink(letter: DeadLetter) -> None:
            raise RuntimeError("dead-letter topic down")

        with pytest.raises(RuntimeError, match="dead-letter topic down"):
            await rec.writer(ScriptedTransport(), dead_letter=sink).write(lines(2, bad=[0]))


class TestWriterOutages:
    """A store that cannot take points for a while."""

    async def test_retries_until_stored(self, rec):
        """5xx and network errors are retried with growing waits until the batch is stored."""
        failures = [StoreUnavailableError("HTTP 503: busy")] * 3 + [
            StoreUnavailableError("ClientConnectorError: refused")
        ] * 7
        transport = ScriptedTransport(failures)
        backoff = Backoff(initial_s=0.5, maximum_s=8.0, jitter=0.0)
        result = await rec.writer(transport, backoff=backoff).write(lines(10))
        assert len(transport.stored) == 10
        assert rec.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0]
        assert (result.retries, result.requests, result.written) == (10, 11, 10)
        assert rec.letters == []

    async def test_one_outage_event_and_one_restored(self, rec):
        """An outage emits one alarm event when it starts and one event when it ends."""
        transport = ScriptedTransport([StoreUnavailableError("HTTP 500: x")] * 4)
        writer = rec.writer(transport)
        await writer.write(lines(1))
        assert [e.event for e in rec.events] == [
            SystemEventKind.TIMESERIES_UNAVAILABLE,
            SystemEventKind.TIMESERIES_RESTORED,
        ]
        down, up = rec.events
        assert down.alarm
        assert not up.alarm
        assert "HTTP 500" in down.detail
        assert "4 retries" in up.detail
        assert up.ts > down.ts
        assert not writer.unavailable
        assert writer.counters.outages == 1

    async def test_outage_spans_calls(self, rec):
        """An outage that a cancelled write left open is closed by the next success."""
        transport = ScriptedTransport([StoreUnavailableError("HTTP 503")] * 1000)
        writer = rec.writer(transport)

        async def sleep_forever(seconds: float) -> None:
            await asyncio.Event().wait()

        writer._sleep = sleep_forever
        task = asyncio.create_task(writer.write(lines(3)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert writer.unavailable
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        transport.failures.clear()
        writer._sleep = rec.sleep
        await writer.write(lines(3))
        assert [e.event for e in rec.events] == [
            SystemEventKind.TIMESERIES_UNAVAILABLE,
            SystemEventKind.TIMESERIES_RESTORED,
        ]

    async def test_retry_after_honoured(self, rec):
        """A Retry-After longer than the backoff is waited, capped at the maximum."""
        transport = ScriptedTransport(
            [
                StoreUnavailableError("HTTP 429", retry_after=5.0),
                StoreUnavailableError("HTTP 503", retry_after=3600.0),
            ]
        )
        backoff = Backoff(initial_s=0.1, maximum_s=30.0, jitter=0.0)
        await rec.writer(transport, backoff=backoff).write(lines(1))
        assert rec.sleeps == [5.0, 30.0]

    async def test_jitter_shortens_waits(self, rec):
        """Jitter takes up to its fraction off each wait."""
        transport = ScriptedTransport([StoreUnavailableError("HTTP 503")] * 2)
        backoff = Backoff(initial_s=1.0, maximum_s=10.0, jitter=0.5)
        await rec.writer(transport, backoff=backoff, rng=lambda: 1.0).write(lines(1))
        assert rec.sleeps == [0.5, 1.0]

    async def test_async_event_sink_awaited(self, rec):
        """A coroutine event sink is awaited."""
        got: list[SystemEvent] = []

        async def sink(event: SystemEvent) -> None:
            got.append(event)

        transport = ScriptedTransport([StoreUnavailableError("HTTP 502")])
        await rec.writer(transport, on_event=sink).write(lines(1))
        assert len(got) == 2

    async def test_refusal_during_outage_ends_it(self, rec):
        """A refusal is an answer: the outage is over, and the bad point is dead-lettered."""
        transport = ScriptedTransport([StoreUnavailableError("HTTP 503")])
        await rec.writer(transport).write(lines(1, bad=[0]))
        assert [e.event for e in rec.events] == [
            SystemEventKind.TIMESERIES_UNAVAILABLE,
            SystemEventKind.TIMESERIES_RESTORED,
        ]
        assert len(rec.letters) == 1


class FakeInflux:
    """A local HTTP server answering /api/v2/write as InfluxDB does, one scripted status."""

    def __init__(self) -> None:
        self.status = 204
        self.body: dict[str, str] | None = None
        self.headers: dict[str, str] = {}
        self.delay_s = 0.0
        self.received: list[tuple[dict[str, str], dict[str, str], bytes]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append((dict(request.query), dict(request.headers), raw))
        if self.delay_s:
            with contextlib.suppress(TimeoutError):  # released early when the server stops
                await asyncio.wait_for(self._release.wait(), self.delay_s)
        text = json.dumps(self.body) if self.body is not None else None
        return web.Response(
            status=self.status,
            text=text,
            content_type="application/json" if text else None,
            headers=self.headers,
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v2/write", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def influx():
    server = FakeInflux()
    await server.start()
    yield server
    await server.stop()


class TestInfluxClientTransport:
    """influxdb-client's answers translated into the writer's errors."""

    async def test_gzip_precision_bucket(self, influx):
        """A write is one gzip request with precision=us, org and bucket."""
        transport = InfluxClientTransport(influx.url, "tok", "my-org", "my-bucket")
        batch = lines(1000)
        try:
            await transport.post(batch)
        finally:
            await transport.close()
        ((query, headers, body),) = influx.received  # aiohttp has decompressed the body
        assert query == {"org": "my-org", "bucket": "my-bucket", "precision": "us"}
        assert headers["Content-Encoding"] == "gzip"
        assert int(headers["Content-Length"]) < len(body) / 5
        assert headers["Authorization"] == "Token tok"
        assert body.decode() == "\n".join(batch)

    async def test_400_is_refusal_with_message(self, influx):
        """A 400 becomes PointsRejectedError carrying the server's JSON message."""
        influx.status = 400
        influx.body = {"code": "invalid", "message": 'partial write: field type conflict: "v"'}
        transport = InfluxClientTransport(influx.url, "t", "o", "b")
        try:
            with pytest.raises(PointsRejectedError) as caught:
                await transport.post(["m v=1.0 1"])
        finally:
            await transport.close()
        assert caught.value.status == 400
        assert caught.value.message == 'partial write: field type conflict: "v"'

    @pytest.mark.parametrize("status", [500, 503, 401, 403, 404, 429])
    async def test_retryable_statuses(self, influx, status):
        """5xx and the not-now 4xx statuses become StoreUnavailableError."""
        influx.status = status
        influx.body = {"code": "unavailable", "message": "try later"}
        influx.headers = {"Retry-After": "7"}
        transport = InfluxClientTransport(influx.url, "t", "o", "b")
        try:
            with pytest.raises(StoreUnavailableError) as caught:
                await transport.post(["m v=1.0 1"])
        finally:
            await transport.close()
        assert f"HTTP {status}" in str(caught.value)
        assert caught.value.retry_after == 7.0

    async def test_connection_refused(self):
        """No server listening is StoreUnavailableError."""
        transport = InfluxClientTransport(f"http://127.0.0.1:{free_port()}", "t", "o", "b")
        try:
            with pytest.raises(StoreUnavailableError):
                await transport.post(["m v=1.0 1"])
        finally:
            await transport.close()

    async def test_timeout(self, influx):
        """A server slower than the timeout is StoreUnavailableError."""
        influx.delay_s = 2.0
        transport = InfluxClientTransport(influx.url, "t", "o", "b", timeout_s=0.2)
        try:
            with pytest.raises(StoreUnavailableError):
                await transport.post(["m v=1.0 1"])
        finally:
            await transport.close()
