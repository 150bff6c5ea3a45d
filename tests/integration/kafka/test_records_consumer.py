"""The record store's consumer on a real Kafka: every record stored once, bad ones dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from envmon.bus import DEADLETTER, EXCURSIONS, Message
from envmon.cli import app as cli
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import verify
from excursions.consumer import consume_records
from excursions.db import AuditEntry, ExcursionRow
from excursions.migrate import upgrade
from excursions.records import RecordStore
from stream.kafka_broker import KafkaBroker
from stream.kafka_bus import KafkaBus
from tests.unit.excursions.test_records import core_records

from .test_worker import make_topics, read_topic, settings_for

pytestmark = pytest.mark.timeout(120)


async def test_records_delivered_twice_are_stored_once(
    kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka, topic_prefix, tmp_path / "w")
    await make_topics(settings)
    records = core_records()
    messages = [Message(EXCURSIONS, r.sensor_id, r.model_dump_json().encode()) for r in records]
    bad = Message(EXCURSIONS, "fridge-1.temperature", b'{"kind": "excursion", "id": 7}')
    bus = KafkaBus(settings.kafka_bootstrap, topic_prefix=settings.topic_prefix)
    await bus.start()
    try:
        await bus.publish([*messages, bad, *messages])  # at-least-once: everything again

        # What storing each record once gives, for comparison.
        reference = create_engine(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
        upgrade(reference)
        direct = RecordStore(reference, clock=FakeClock(DEFAULT_T0))
        for record in records:
            direct.apply(record)

        engine = create_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
        upgrade(engine)
        store = RecordStore(engine, clock=FakeClock(DEFAULT_T0))
        consumer = asyncio.create_task(consume_records(bus, store))
        try:
            async with asyncio.timeout(60):
                while store.applied + store.ignored + store.rejected < 2 * len(records) + 1:
                    await asyncio.sleep(0.05)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
    finally:
        await bus.stop()

    assert store.rejected == 1
    assert store.applied == direct.applied
    for db in (engine, reference):
        with Session(db) as session:
            assert verify(session).ok
    with Session(engine) as session, Session(reference) as expected:
        for table in (ExcursionRow, AuditEntry):
            count = select(func.count()).select_from(table)
            assert session.execute(count).scalar_one() == expected.execute(count).scalar_one()
    letters = await read_topic(settings, DEADLETTER, until=1)
    assert len(letters) == 1
    assert letters[0]["origin"] == EXCURSIONS
    assert "not an excursion record or data gap" in letters[0]["reason"]


def test_the_command_refuses_the_in_process_bus_and_an_unmigrated_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    monkeypatch.setenv("ENVMON_BUS", "memory")
    result = CliRunner().invoke(cli, ["excursions", "consume", "--db", url])
    assert result.exit_code == 2
    assert "set bus: kafka" in result.output
    monkeypatch.setenv("ENVMON_BUS", "kafka")
    result = CliRunner().invoke(cli, ["excursions", "consume", "--db", url])
    assert result.exit_code == 2
    assert "run envmon db upgrade first" in result.output
