"""The record consumer across a PostgreSQL restart: it waits for the database, loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from devservers.postgres import PostgresServer
from envmon.bus import EXCURSIONS, InMemoryBus, Message
from excursions.audit import verify
from excursions.consumer import consume_records
from excursions.migrate import upgrade
from excursions.records import RecordStore
from tests.unit.excursions.test_records import core_records, rows

pytestmark = pytest.mark.timeout(120)


async def test_records_published_while_postgres_is_down_are_stored_after_it_returns(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The consumer retries the message it holds until PostgreSQL answers; every record lands."""
    engine = create_engine(own_postgres.create_database("records"))
    upgrade(engine)
    records = core_records()
    assert len(records) >= 3
    bus = InMemoryBus()
    store = RecordStore(engine)
    consumer = asyncio.create_task(consume_records(bus, store))
    message = [Message(EXCURSIONS, r.sensor_id, r.model_dump_json().encode()) for r in records]
    try:
        await bus.publish(message[:1])
        async with asyncio.timeout(30):
            while store.applied < 1:
                await asyncio.sleep(0.05)
        await asyncio.to_thread(own_postgres.stop)
        with caplog.at_level(logging.WARNING, logger="excursions.consumer"):
            await bus.publish(message[1:])
            await asyncio.sleep(3)  # several attempts fail meanwhile
            assert not consumer.done(), "the consumer must wait for the database, not end"
            await asyncio.to_thread(own_postgres.start)
            async with asyncio.timeout(60):
                while store.applied < len(records):
                    await asyncio.sleep(0.1)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    outage = [r.getMessage() for r in caplog.records if r.name == "excursions.consumer"]
    assert len(outage) == 2, outage  # one line when it starts, one when it ends
    assert "unavailable" in outage[0]
    assert "answers again" in outage[1]
    assert len(rows(engine)) == len({r.id for r in records})
    with Session(engine) as session:
        assert verify(session).ok
    engine.dispose()
