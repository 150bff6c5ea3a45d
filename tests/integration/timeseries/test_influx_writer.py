"""The InfluxDB writer against a real QuestDB: stored, deduplicated, dead-lettered, no loss.

QuestDB applies WAL writes asynchronously: every read-back polls with a deadline
(``wait_applied`` waits until the acknowledged transactions are visible).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from envmon.models import Level, Quality, Reading, SystemEventKind
from envmon.testing import DEFAULT_T0, make_spec
from envmon.timeutil import parse_ts, to_us
from stream.questdb import QuestDB
from stream.timeseries import schema as tsschema
from stream.timeseries.influxdb import InfluxWriter
from tests.integration.tswriting import Sinks, writer


def make_writer(server: QuestDB, sinks: Sinks, **kwargs: Any) -> InfluxWriter:
    return writer(server.url, "token-ignored-by-questdb", "envmon", "readings", sinks, **kwargs)


def rows(server: QuestDB, site: str, columns: str = "*") -> list[dict[str, Any]]:
    server.wait_applied(tsschema.MEASUREMENT)
    return server.sql_dicts(
        f"SELECT {columns} FROM {tsschema.MEASUREMENT} WHERE site = '{site}' ORDER BY time, sensor"
    )


async def eventually_count(
    server: QuestDB, site: str, expected: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll until the site has ``expected`` rows (WAL apply is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await asyncio.to_thread(rows, server, site)
        if len(found) == expected or loop.time() > deadline:
            return found
        await asyncio.sleep(0.05)


def line_stream(site: str, sensors: int, start: int, count: int) -> list[str]:
    """Lines of ``count`` readings, round-robin over sensors, 1 ms apart from ``start``."""
    out = []
    for i in range(start, start + count):
        reading = Reading(
            sensor_id=f"s{i % sensors}.temperature",
            value=i / 10,
            unit="degC",
            ts=DEFAULT_T0 + timedelta(milliseconds=i),
        )
        out.append(
            tsschema.to_line(
                tsschema.to_point(
                    reading, site=site, area="room", instrument="fr", parameter="temperature"
                )
            )
        )
    return out


class TestStored:
    """Points written through the writer read back with their tags, fields and times."""

    async def test_points_read_back(self, questdb, site):
        """Tags (escaped), value, quality, state and µs timestamps round-trip through SQL."""
        spec_a = make_spec("fridge-1.temperature", area="Grade B, room=1", parameter="temperature")
        spec_b = make_spec("inc-7.co2", area="Kühlraum µ", parameter="co2", unit="%")
        t0 = DEFAULT_T0 + timedelta(microseconds=123_457)
        readings = [
            (Reading(sensor_id=spec_a.sensor_id, value=4.25, unit="degC", ts=t0), spec_a, None),
            (
                Reading(
                    sensor_id=spec_a.sensor_id,
                    value=8.5,
                    unit="degC",
                    ts=t0 + timedelta(seconds=1),
                    quality=Quality.UNCERTAIN,
                ),
                spec_a,
                Level.ALERT,
            ),
            (
                Reading(
                    sensor_id=spec_b.sensor_id,
                    value=None,
                    unit="%",
                    ts=t0 + timedelta(seconds=2),
                    quality=Quality.BAD,
                ),
                spec_b,
                Level.ACTION,
            ),
        ]
        lines = [tsschema.reading_line(r, spec, site=site, state=lvl) for r, spec, lvl in readings]
        sinks = Sinks()
        async with make_writer(questdb, sinks) as writer:
            result = await writer.write(lines)
        assert (result.written, result.dead_lettered, result.requests) == (3, 0, 1)
        found = await eventually_count(questdb, site, 3)
        assert [
            {k: v for k, v in row.items() if k != "time"} | {"time": to_us(parse_ts(row["time"]))}
            for row in found
        ] == [
            {
                "site": site,
                "area": spec.area,
                "instrument": spec.instrument,
                "sensor": r.sensor_id,
                "parameter": spec.parameter,
                "unit": r.unit,
                "value": r.value,
                "quality": r.quality.value,
                "state": tsschema.state_code(lvl),
                "time": to_us(r.ts),
            }
            for r, spec, lvl in readings
        ]
        assert sinks.letters == []
        assert sinks.events == []

    async def test_batches_of_5000(self, questdb, site):
        """Batches of 5,000 points are stored completely, one request each."""
        sinks = Sinks()
        async with make_writer(questdb, sinks) as writer:
            for batch in range(4):
                result = await writer.write(line_stream(site, 50, batch * 5000, 5000))
                assert (result.written, result.requests) == (5000, 1)
        found = await eventually_count(questdb, site, 20_000)
        assert len(found) == 20_000


class TestIdempotent:
    """Writing the same points again (at-least-once delivery) stores each once."""

    async def test_same_batch_twice_stored_once(self, questdb, site):
        """A batch written twice leaves one row per point."""
        lines = line_stream(site, 5, 0, 500)
        sinks = Sinks()
        async with make_writer(questdb, sinks) as writer:
            await writer.write(lines)
            await writer.write(lines)
            assert writer.counters.written == 1000
        found = await asyncio.to_thread(rows, questdb, site, "sensor, time")
        assert len(found) == 500
        assert len({(r["sensor"], r["time"]) for r in found}) == 500

    async def test_rewrite_replaces(self, questdb, site):
        """A point written again with another value keeps the last value (upsert)."""
        reading = Reading(sensor_id="s.t", value=1.0, unit="degC", ts=DEFAULT_T0)
        first = tsschema.to_line(tsschema.to_point(reading, site=site, state=None))
        second = tsschema.to_line(
            tsschema.to_point(reading.model_copy(update={"value": 2.0}), site=site)
        )
        async with make_writer(questdb, Sinks()) as writer:
            await writer.write([first])
            await writer.write([second])
        found = await asyncio.to_thread(rows, questdb, site, "value")
        assert found == [{"value": 2.0}]


class TestRefused:
    """Points the server refuses go to the dead letter with its message; the rest is stored."""

    @pytest.mark.parametrize(
        ("replace", "message"),
        [
            (
                ("value=5.0,", 'value="five",'),
                "cast error from protocol type: STRING to column type: DOUBLE",
            ),
            (("state=0i", "state=0.5"), "cast error from protocol type: FLOAT to column type: INT"),
            (("state=0i", "state=99999999999i"), "out bounds of column type: INT"),
        ],
        ids=["string-value", "float-state", "state-out-of-range"],
    )
    async def test_bad_point_dead_lettered(self, questdb, site, replace, message):
        """One bad point among 200 is isolated by bisection; 199 are stored."""
        lines = line_stream(site, 4, 0, 200)
        bad_index = 50
        old, new = replace
        assert old in lines[bad_index]
        lines[bad_index] = lines[bad_index].replace(old, new)
        sinks = Sinks()
        async with make_writer(questdb, sinks) as writer:
            result = await writer.write(lines)
        assert (result.written, result.dead_lettered) == (199, 1)
        (letter,) = sinks.letters
        assert letter.payload == lines[bad_index]
        assert "HTTP 400" in letter.reason
        assert message in letter.reason
        found = await eventually_count(questdb, site, 199)
        assert len(found) == 199
        bad_ts = to_us(DEFAULT_T0 + timedelta(milliseconds=bad_index))
        assert bad_ts not in {to_us(parse_ts(r["time"])) for r in found}
        assert sinks.events == []


class TestOutage:
    """The server goes away during a stream of writes and comes back: nothing lost or doubled."""

    @pytest.mark.parametrize("how", ["stop", "kill"])
    async def test_stream_through_outage(self, own_questdb, site, how):
        """Every point of the stream is stored once; one outage and one restored event."""
        server: QuestDB = own_questdb
        sinks = Sinks()
        size = 400
        writer = make_writer(server, sinks, timeout_s=2.0)
        produced = 0
        enough = asyncio.Event()

        async def produce() -> None:
            # A paced, open-ended stream: it must still be running when the server goes
            # away (a fixed number of batches could all be written during a slow stop).
            nonlocal produced
            batch = 0
            while not enough.is_set():
                await writer.write(line_stream(site, 8, batch * size, size))
                produced += size  # the agent would commit its offsets here
                batch += 1
                await asyncio.sleep(0.005)

        async def wait_for(predicate: Callable[[], bool], what: str) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60  # five retries with backoff take ~25 s, more under load
            while not predicate():
                assert not producer.done(), f"the stream ended while waiting for {what}"
                assert loop.time() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.01)

        async with writer:
            producer = asyncio.create_task(produce())
            await wait_for(lambda: produced >= 5 * size, "five batches written")
            await asyncio.to_thread(server.stop if how == "stop" else server.kill)
            committed_at_outage = produced
            await wait_for(lambda: writer.counters.retries >= 5, "the writer retrying")
            assert writer.unavailable
            assert produced <= committed_at_outage + size  # no progress while the store is down
            await asyncio.to_thread(server.start)
            resumed_at = produced
            await wait_for(lambda: produced >= resumed_at + 5 * size, "five batches after")
            enough.set()
            await asyncio.wait_for(producer, 60)
        assert produced % size == 0
        assert writer.counters.written == produced
        assert sinks.letters == []
        assert [e.event for e in sinks.events] == [
            SystemEventKind.TIMESERIES_UNAVAILABLE,
            SystemEventKind.TIMESERIES_RESTORED,
        ]
        found = await eventually_count(server, site, produced)
        assert len(found) == produced
        assert len({(r["sensor"], r["time"]) for r in found}) == produced
        expected_times = {to_us(DEFAULT_T0 + timedelta(milliseconds=i)) for i in range(produced)}
        assert {to_us(parse_ts(r["time"])) for r in found} == expected_times
