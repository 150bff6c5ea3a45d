"""Tests of the embedded stream processor and the embedded SQLite stores."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from envmon.bus import ALARMS, DEADLETTER, EXCURSIONS, READINGS, InMemoryBus, Message
from envmon.models import AlarmEvent, DeadLetter, ExcursionRecord, Reading
from envmon.testing import DEFAULT_T0, FakeClock, make_spec, readings
from excursions.consumer import consume_records
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.queries import core_records
from excursions.records import RecordStore
from stream.embedded import StreamProcessor
from stream.timeseries.sqlite import SqliteTimeSeries

SID = "fridge-1.temperature"


def as_messages(values) -> list[Message]:
    return [
        Message(READINGS, r.sensor_id, r.model_dump_json().encode()) for r in readings(SID, values)
    ]


async def take(bus: InMemoryBus, topic: str, n: int) -> list[bytes]:
    out = []
    async with asyncio.timeout(5):
        async for m in bus.subscribe(topic, "test"):
            out.append(m.value)
            if len(out) == n:
                return out
    return out


class TestStreamProcessor:
    async def test_readings_become_alarms_and_records(self, tmp_path):
        """Readings on the bus come out as alarm events and excursion records."""
        bus = InMemoryBus()
        store = SqliteTimeSeries(tmp_path / "ts.sqlite3")
        proc = StreamProcessor(bus, [make_spec(alert_high=8)], store=store, clock=FakeClock())
        await proc.handle(as_messages([5, 9, 5]))
        alarms = [AlarmEvent.model_validate_json(v) for v in await take(bus, ALARMS, 2)]
        assert [a.event for a in alarms] == ["raised", "cleared"]
        records = [ExcursionRecord.model_validate_json(v) for v in await take(bus, EXCURSIONS, 2)]
        assert [r.status for r in records] == ["open", "closed"]
        assert store.count() == 3

    async def test_context_series_are_stored_beside_the_readings(self, tmp_path):
        """The embedded processor writes limits, status, alarms and records (context series)."""
        bus = InMemoryBus()
        store = SqliteTimeSeries(tmp_path / "ts.sqlite3")
        clock = FakeClock(DEFAULT_T0 + timedelta(minutes=20))
        spec = make_spec(alert_high=8, action_high=10)
        proc = StreamProcessor(bus, [spec], store=store, clock=clock, site="plant-a")
        await proc.handle(as_messages([5, 9, 5] + [5] * 15))  # a minute apart, 18 minutes
        window = (DEFAULT_T0 - timedelta(hours=1), DEFAULT_T0 + timedelta(hours=1))
        limits = store.context("limits", SID, *window)
        assert [at for at, _ in limits] == [DEFAULT_T0, DEFAULT_T0 + timedelta(minutes=15)]
        assert limits[0][1] == {"alert_high": 8.0, "action_high": 10.0, "occupancy": ""}
        alarms = store.context("alarm", SID, *window)
        assert [at - DEFAULT_T0 for at, _ in alarms] == [timedelta(minutes=1), timedelta(minutes=2)]
        assert alarms[0][1]["text"].startswith("Alert raised")
        (record,) = store.context("record", SID, *window)  # one point, its revisions merged
        assert record[0] == DEFAULT_T0 + timedelta(minutes=1)
        assert "end_ms" in record[1]
        now = clock()
        status = store.context("status", SID, now, now + timedelta(seconds=1))
        assert [fields["code"] for _, fields in status][-1] == 0  # normal again, now
        assert status[-1][1]["value"] == 5.0

    async def test_bad_message_goes_to_dead_letter(self):
        """An undecodable message or an unknown sensor ends in the dead letter."""
        bus = InMemoryBus()
        proc = StreamProcessor(bus, [make_spec()], clock=FakeClock())
        other = Reading(sensor_id="nope.t", value=1, ts=DEFAULT_T0)
        await proc.handle(
            [
                Message(READINGS, "x", b"{broken"),
                Message(READINGS, "nope.t", other.model_dump_json().encode()),
            ]
        )
        letters = [DeadLetter.model_validate_json(v) for v in await take(bus, DEADLETTER, 2)]
        assert letters[0].reason.startswith("invalid reading")
        assert letters[1].reason == "unknown sensor 'nope.t'"
        assert proc.rejected == 2

    async def test_clock_tick_raises_stale(self):
        """A silent sensor raises its stale alarm on the clock tick, without other data."""
        bus = InMemoryBus()
        clock = FakeClock()
        proc = StreamProcessor(bus, [make_spec(stale_after_s=60)], clock=clock, tick_s=0.01)
        await proc.handle(as_messages([5]))
        await proc.start()
        clock.advance(120)
        alarm = AlarmEvent.model_validate_json((await take(bus, ALARMS, 1))[0])
        await proc.stop()
        assert alarm.event == "stale"
        assert alarm.ts == DEFAULT_T0 + timedelta(seconds=60)


class TestSqliteTimeSeries:
    def test_write_is_idempotent(self, tmp_path):
        """The same reading written twice is stored once."""
        store = SqliteTimeSeries(tmp_path / "ts.sqlite3")
        batch = list(readings(SID, [1.0, 2.0, None]))
        store.write(batch)
        store.write(batch)
        assert store.count() == 3
        got = store.query(SID, DEFAULT_T0, DEFAULT_T0 + timedelta(hours=1))
        assert got == batch


class TestRecordsFromTheEmbeddedBus:
    async def test_the_record_store_takes_the_processors_records(self, tmp_path):
        """The record store's consumer stores what the embedded processor publishes."""
        bus = InMemoryBus()
        engine = store_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
        upgrade(engine)
        store = RecordStore(engine)
        proc = StreamProcessor(bus, [make_spec(alert_high=8)], clock=FakeClock())
        consumer = asyncio.create_task(consume_records(bus, store))
        await proc.handle(as_messages([9, 5]))
        async with asyncio.timeout(5):
            while [r["status"] for r in core_records(engine, "excursion")] != ["closed"]:
                await asyncio.sleep(0.01)
        consumer.cancel()
        (stored,) = core_records(engine, "excursion")
        assert stored["end"] is not None
        engine.dispose()
