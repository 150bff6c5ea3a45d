"""The record store's consumer on a real Kafka: every record stored once, bad ones dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from devservers.kafka import KafkaBroker
from envmon.bus import DEADLETTER, EXCURSIONS, Message
from envmon.cli import app as cli
from envmon.commands.records import run_consume
from envmon.netutil import free_port
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import verify
from excursions.consumer import consume_records
from excursions.db import AuditEntry, ExcursionRow
from excursions.migrate import upgrade
from excursions.records import RecordStore
from stream.kafka.bus import KafkaBus
from tests.unit.excursions.test_records import core_records

from .pipeline import scrape
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


async def test_the_consumer_serves_its_counters_to_prometheus(
    kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    """envmon excursions consume's /metrics: messages stored, lag, when it last stored one."""
    port = free_port()
    settings = settings_for(kafka, topic_prefix, tmp_path / "w", records_metrics_port=port)
    await make_topics(settings)
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    upgrade(create_engine(url))
    records = core_records()
    bus = KafkaBus(settings.kafka_bootstrap, topic_prefix=settings.topic_prefix)
    await bus.start()
    try:
        await bus.publish(
            [Message(EXCURSIONS, r.sensor_id, r.model_dump_json().encode()) for r in records]
        )
    finally:
        await bus.stop()
    stop = asyncio.Event()
    stores: list[RecordStore] = []
    consumer = asyncio.create_task(run_consume(settings, url, stop=stop, store_out=stores))
    group = f"{settings.app_id}-records"
    metrics: dict[tuple[str, str], float] = {}
    try:
        async with asyncio.timeout(60):
            while True:
                await asyncio.sleep(0.2)
                with contextlib.suppress(OSError):  # not listening yet
                    metrics = await scrape(port)
                    stored = metrics.get(
                        ("envmon_consumer_messages_total", f"{group},{EXCURSIONS}")
                    )
                    if stored is not None and stored >= len(records):
                        break
    finally:
        stop.set()
        await consumer
    assert metrics[("envmon_records_applied_total", "")] == stores[0].applied > 0
    assert metrics[("envmon_consumer_lag", f"{group},{EXCURSIONS}")] == 0
    last = metrics[("envmon_consumer_last_message_timestamp_seconds", f"{group},{EXCURSIONS}")]
    assert time.time() - last < 60
    assert ("envmon_kafka_outage", "") in metrics
    assert ("process_resident_memory_bytes", "") in metrics
