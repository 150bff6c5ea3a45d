"""The time-series writer's contract against both servers it writes to: QuestDB and InfluxDB 1.8.

Every test runs once per server (the ``store`` fixture): points are stored with their tags,
fields and µs times, writing them again stores each once, a point the server refuses is
dead-lettered while the rest is stored, and a stream through an outage loses and doubles
nothing. QuestDB applies writes asynchronously (WAL): every read-back polls with a deadline.
Rows are read with each server's own query language (SQL, InfluxQL), not through envmon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from devservers.influxdb import InfluxDB
from devservers.questdb import QuestDB
from envmon.models import Level, Quality, Reading, SystemEventKind
from envmon.testing import DEFAULT_T0, eventually, make_spec
from envmon.timeutil import parse_ts, to_us
from stream.timeseries import schema as tsschema
from stream.timeseries.influxdb import InfluxWriter
from tests.integration.tswriting import Sinks, writer

SERVERS = ["questdb", "influxdb"]


@dataclass
class Store:
    """A running server as the writer sees it, with a way to read its rows back."""

    server: QuestDB | InfluxDB

    def writer(self, sinks: Sinks, **kwargs: Any) -> InfluxWriter:
        server = self.server
        if isinstance(server, QuestDB):
            return writer(
                server.url, "token-ignored-by-questdb", "envmon", "readings", sinks, **kwargs
            )
        return writer(server.url, server.token, server.org, server.bucket, sinks, **kwargs)

    def rows(self, site: str) -> list[dict[str, Any]]:
        """Every point of ``site``, oldest first, its time in epoch µs."""
        server, m = self.server, tsschema.MEASUREMENT
        if isinstance(server, QuestDB):
            server.wait_applied(m)
            found = server.sql_dicts(f"SELECT * FROM {m} WHERE site = '{site}'")
        else:
            (result,) = server.influxql(f'SELECT * FROM "{m}" WHERE "site" = \'{site}\'')
            found = [
                dict(zip(series["columns"], values, strict=True))
                for series in result.get("series", [])
                for values in series["values"]
            ]
        for row in found:
            row["time"] = to_us(parse_ts(row["time"]))
        return sorted(found, key=lambda row: (row["time"], row["sensor"]))

    def count(self, site: str) -> int:
        """How many points ``site`` has."""
        server, m = self.server, tsschema.MEASUREMENT
        if isinstance(server, QuestDB):
            server.wait_applied(m)
            ((n,),) = server.sql(f"SELECT count() FROM {m} WHERE site = '{site}'")
            return int(n)
        quality = tsschema.FIELD_QUALITY
        (result,) = server.influxql(
            f'SELECT count("{quality}") FROM "{m}" WHERE "site" = \'{site}\''
        )
        series = result.get("series")
        return int(series[0]["values"][0][1]) if series else 0


@pytest.fixture(params=SERVERS)
def store(request: pytest.FixtureRequest) -> Store:
    """The session's server of each kind."""
    return Store(request.getfixturevalue(request.param))


@pytest.fixture(params=SERVERS)
def own_store(request: pytest.FixtureRequest) -> Store:
    """A server of each kind for this test alone (it may stop, kill and restart it)."""
    return Store(request.getfixturevalue(f"own_{request.param}"))


async def eventually_rows(
    store: Store, site: str, expected: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll until the site has ``expected`` points (QuestDB applies writes asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await asyncio.to_thread(store.rows, site)
        if len(found) == expected or loop.time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def eventually_count(store: Store, site: str, expected: int, timeout: float = 30.0) -> int:
    """Poll until the site has ``expected`` points; return how many it has."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await asyncio.to_thread(store.count, site)
        if found == expected or loop.time() > deadline:
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

    async def test_points_read_back(self, store, site):
        """Tags (escaped), value, no value, quality, state and µs timestamps round-trip."""
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
        async with store.writer(sinks) as writer:
            result = await writer.write(lines)
        assert (result.written, result.dead_lettered, result.requests) == (3, 0, 1)
        found = await eventually_rows(store, site, 3)
        assert found == [
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

    async def test_batches_of_5000(self, store, site):
        """Batches of 5,000 points are stored completely, one request each."""
        sinks = Sinks()
        async with store.writer(sinks) as writer:
            for batch in range(4):
                result = await writer.write(line_stream(site, 50, batch * 5000, 5000))
                assert (result.written, result.requests) == (5000, 1)
        assert await eventually_count(store, site, 20_000) == 20_000


class TestIdempotent:
    """Writing the same points again (at-least-once delivery) stores each once."""

    async def test_same_batch_twice_stored_once(self, store, site):
        """A batch written twice leaves one point per sensor and time."""
        lines = line_stream(site, 5, 0, 500)
        sinks = Sinks()
        async with store.writer(sinks) as writer:
            await writer.write(lines)
            await writer.write(lines)
            assert writer.counters.written == 1000
            assert writer.counters.dead_lettered == 0
        assert sinks.letters == []
        assert sinks.events == []
        found = await eventually_rows(store, site, 500)
        assert len(found) == 500
        assert {(r["sensor"], r["time"]) for r in found} == {
            (f"s{i % 5}.temperature", to_us(DEFAULT_T0 + timedelta(milliseconds=i)))
            for i in range(500)
        }
        assert await asyncio.to_thread(store.count, site) == 500

    async def test_rewrite_replaces(self, store, site):
        """A point written again with another value and quality keeps the last (upsert)."""
        reading = Reading(sensor_id="s.t", value=1.0, unit="degC", ts=DEFAULT_T0)
        second = reading.model_copy(update={"value": 2.0, "quality": Quality.UNCERTAIN})
        async with store.writer(Sinks()) as writer:
            await writer.write(
                [tsschema.to_line(tsschema.to_point(reading, site=site, state=None))]
            )
            await writer.write([tsschema.to_line(tsschema.to_point(second, site=site))])
        found = await asyncio.to_thread(store.rows, site)
        assert [(r["sensor"], r["time"], r["value"], r["quality"], r["unit"]) for r in found] == [
            ("s.t", to_us(DEFAULT_T0), 2.0, "uncertain", "degC")
        ]


#: (server, replace in the bad line, the server's message): QuestDB refuses a request with
#: one bad line whole; InfluxDB stores the rest and refuses a field of another type.
REFUSALS = [
    (
        "questdb",
        ("value=5.0,", 'value="five",'),
        "cast error from protocol type: STRING to column type: DOUBLE",
    ),
    (
        "questdb",
        ("state=0i", "state=0.5"),
        "cast error from protocol type: FLOAT to column type: INT",
    ),
    ("questdb", ("state=0i", "state=99999999999i"), "out bounds of column type: INT"),
    ("influxdb", ("value=5.0,", 'value="five",'), "field type conflict"),
    ("influxdb", ("state=0i", "state=0.5"), "field type conflict"),
]


class TestRefused:
    """Points the server refuses go to the dead letter with its message; the rest is stored."""

    @pytest.mark.parametrize(
        ("server", "replace", "message"),
        REFUSALS,
        ids=[
            "questdb-string-value",
            "questdb-float-state",
            "questdb-state-out-of-range",
            "influxdb-string-value",
            "influxdb-float-state",
        ],
    )
    async def test_bad_point_dead_lettered(self, request, site, server, replace, message):
        """One bad point among 200 is isolated by bisection; 199 are stored."""
        store = Store(request.getfixturevalue(server))
        sinks = Sinks()
        async with store.writer(sinks) as writer:
            # The fields' types (float value, int state): InfluxDB's come with the first point.
            assert (await writer.write(line_stream(site, 4, 1000, 4))).written == 4
            lines = line_stream(site, 4, 0, 200)
            bad_index = 50
            old, new = replace
            assert old in lines[bad_index]
            lines[bad_index] = lines[bad_index].replace(old, new)
            result = await writer.write(lines)
        assert (result.written, result.dead_lettered) == (199, 1)
        (letter,) = sinks.letters
        assert letter.payload == lines[bad_index]
        assert "HTTP 400" in letter.reason
        assert message in letter.reason
        assert '{"error"' not in letter.reason  # the server's message, not its JSON
        assert sinks.events == []
        end = to_us(DEFAULT_T0 + timedelta(milliseconds=200))
        found = [r for r in await eventually_rows(store, site, 203) if r["time"] < end]
        assert len(found) == 199
        bad_ts = to_us(DEFAULT_T0 + timedelta(milliseconds=bad_index))
        assert bad_ts not in {r["time"] for r in found}


class TestOutage:
    """The server goes away during a stream of writes and comes back: nothing lost or doubled."""

    @pytest.mark.parametrize("how", ["stop", "kill"])
    async def test_stream_through_outage(self, own_store, site, how):
        """Every point of the stream is stored once; one outage and one restored event."""
        server = own_store.server
        sinks = Sinks()
        size = 400
        writer = own_store.writer(sinks, timeout_s=2.0)
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
            def going(condition: Callable[[], bool] = predicate) -> bool:
                assert not producer.done(), f"the stream ended while waiting for {what}"
                return condition()

            # Five retries with back-off take ~25 s, more under load.
            await eventually(going, what=what, timeout=60, interval=0.01)

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
        found = await eventually_rows(own_store, site, produced)
        assert len(found) == produced
        assert len({(r["sensor"], r["time"]) for r in found}) == produced
        expected_times = {to_us(DEFAULT_T0 + timedelta(milliseconds=i)) for i in range(produced)}
        assert {r["time"] for r in found} == expected_times
