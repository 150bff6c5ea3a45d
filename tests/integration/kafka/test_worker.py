"""The stream worker on a real Kafka: the same results as ``envmon replay``, recovery, sharing."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from typer.testing import CliRunner

from devservers.kafka import KafkaBroker
from envmon.bus import ALARMS, ALL_TOPICS, EXCURSIONS, READINGS, Message
from envmon.cli import app as cli
from envmon.config import load_site
from envmon.models import Reading, SystemEvent, SystemEventKind
from envmon.settings import Settings
from envmon.testing import EXAMPLE_SCENARIO_DURATION, eventually, example_scenario
from envmon.timeutil import parse_ts
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.queries import core_records
from excursions.records import RECORD, RecordStore
from stream.kafka.app import StreamWorker
from stream.kafka.bus import KafkaBus
from stream.kafka.effects import WorkerStoppedError
from stream.kafka.intake import Batch
from stream.kafka.topics import create_topics
from stream.timeseries.context import ContextPoint
from stream.timeseries.sink import SqliteSink

from .faust_counter import wait_ready

pytestmark = pytest.mark.timeout(240)

SITE = Path(__file__).parents[3] / "deploy" / "examples" / "site.yaml"
PARTITIONS = 4


def settings_for(kafka: KafkaBroker, prefix: str, data_dir: Path, **extra: Any) -> Settings:
    # No metrics endpoints unless a test asks: several workers of a test share a host.
    for port in ("collect_metrics_port", "worker_metrics_port", "records_metrics_port"):
        extra.setdefault(port, 0)
    return Settings(
        site=SITE,
        bus="kafka",
        kafka_bootstrap=kafka.bootstrap,
        kafka_partitions=PARTITIONS,
        app_id=prefix,
        topic_prefix=f"{prefix}.",
        data_dir=data_dir,
        tick_s=0,  # historical data: the data's own times drive stale detection, as in replay
        **extra,
    )


async def make_topics(settings: Settings) -> None:
    await create_topics(
        settings.kafka_bootstrap, {settings.topic(t): PARTITIONS for t in ALL_TOPICS}
    )


def scenario_csv(path: Path) -> list[Reading]:
    """Write the example site's scripted day as CSV and return the same rows as readings."""
    example_scenario(load_site(SITE).sensors()).write_csv(path, EXAMPLE_SCENARIO_DURATION)
    with path.open(encoding="utf-8") as fh:
        return [
            Reading(sensor_id=row["sensor_id"], ts=parse_ts(row["ts"]), value=float(row["value"]))
            for row in csv.DictReader(fh)
        ]


def replay(data: Path, out: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        cli, ["replay", "--config", str(SITE), "--input", str(data), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def scripted_day(
    tmp_path: Path,
) -> tuple[list[Reading], list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the example day's readings and what replay makes of them (alarms, records)."""
    readings = scenario_csv(tmp_path / "day.csv")
    expected = replay(tmp_path / "day.csv", tmp_path / "events.jsonl")
    alarms = [e for e in expected if e["kind"] == "alarm"]
    return readings, alarms, [e for e in expected if e["kind"] != "alarm"]


async def publish(settings: Settings, readings: list[Reading]) -> None:
    bus = KafkaBus(settings.kafka_bootstrap, topic_prefix=settings.topic_prefix)
    await bus.start()
    try:
        for i in range(0, len(readings), 2_000):
            chunk = readings[i : i + 2_000]
            await bus.publish([Message(READINGS, r.sensor_id, r.to_json()) for r in chunk])
    finally:
        await bus.stop()


async def read_topic(settings: Settings, name: str, *, until: int, idle_s: float = 1.5) -> list:
    """Read a whole topic from the start: until ``until`` records, then until idle."""
    consumer = AIOKafkaConsumer(
        settings.topic(name),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 120
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                out += [json.loads(r.value) for r in records]
            if batches:
                quiet_since = time.monotonic()
            elif len(out) >= until and time.monotonic() - quiet_since > idle_s:
                break
    finally:
        await consumer.stop()
    return out


def canonical(events: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in events)


def final_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep what replay writes: closed excursion records and ended data gaps, once each."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["kind"], record["id"])
        rank = (record.get("end") is not None, record.get("revision", 0))
        held = latest.get(key)
        if held is None or rank >= (held.get("end") is not None, held.get("revision", 0)):
            latest[key] = record
    return [r for r in latest.values() if r.get("end") is not None]


def in_process(
    kind: type[StreamWorker], settings: Settings, tmp_path: Path, sink: SqliteSink | None = None
) -> StreamWorker:
    sink = sink or SqliteSink(tmp_path / "ts.sqlite3")
    return kind(settings, load_site(SITE).sensors(), sink, on_fatal=lambda _e: None)


@contextlib.asynccontextmanager
async def running(worker: StreamWorker) -> AsyncIterator[StreamWorker]:
    """Start an in-process worker, wait until it holds its partitions, stop it after."""
    await worker.app.start()
    try:
        await wait_ready(worker.app)
        yield worker
    finally:
        await worker.app.stop()
        await worker.sink.close()


async def until_handled(worker: StreamWorker, count: int, timeout: float = 90) -> None:
    async with asyncio.timeout(timeout):
        while worker.readings < count:
            await asyncio.sleep(0.1)


class TestSameResultsAsReplay:
    async def test_scripted_day_through_kafka_equals_replay(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """The example day produced to Kafka gives replay's alarms and records, no more."""
        readings, expected_alarms, expected_records = scripted_day(tmp_path)
        assert len(expected_alarms) >= 10
        assert len(expected_records) >= 4

        settings = settings_for(kafka, topic_prefix, tmp_path / "worker")
        await make_topics(settings)
        await publish(settings, readings)
        async with running(in_process(StreamWorker, settings, tmp_path)) as worker:
            alarms = await read_topic(settings, ALARMS, until=len(expected_alarms))
            records = await read_topic(settings, EXCURSIONS, until=len(expected_records))
            await until_handled(worker, len(readings))
        assert worker.fatal is None
        assert worker.readings == len(readings)
        assert worker.first_fetch is not None  # what the benchmark times from
        assert worker.rejected == 0
        assert canonical(alarms) == canonical(expected_alarms)
        assert canonical(final_records(records)) == canonical(expected_records)
        assert SqliteSink(tmp_path / "ts.sqlite3").store.count() == len(readings)
        # Stopped: nothing may make a producer again (it would never be stopped).
        late = SystemEvent(
            event=SystemEventKind.TIMESERIES_RESTORED,
            component="test",
            ts=parse_ts("2026-01-05T00:00Z"),
        )
        with pytest.raises(WorkerStoppedError):
            await worker.system_event(late)
        assert worker.producer is None


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "envmon.cli", "stream", "worker", "--loglevel", "info"],
            env={**os.environ, **settings.as_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stored_readings(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
    except sqlite3.OperationalError:  # the worker has not created the table yet
        return 0


class TestWorkerKilled:
    # A restarted worker once lost a few dozen readings about one run in four: faust
    # acknowledged records its stream skipped across the rebalance (stream/kafka/offsets.py).
    # The worker now owns the readings' offsets; this test is the regression guard.
    async def test_sigkill_mid_excursion_recovers_state_and_closes_once(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """SIGKILL while the freezer door excursion is open: restarted, nothing lost or doubled."""
        readings, expected_alarms, expected_records = scripted_day(tmp_path)
        # The freezer's excursion opens at 07:07 and closes at 07:41: stop the first half
        # at 07:25, in the middle of it.
        split = next(i for i, r in enumerate(readings) if r.ts >= parse_ts("2026-01-05T07:25Z"))
        settings = settings_for(kafka, topic_prefix, tmp_path / "worker")
        await make_topics(settings)
        ts_db = settings.data_dir / "timeseries.sqlite3"
        log = tmp_path / "worker.log"

        await publish(settings, readings[:split])
        first = start_worker(settings, log)
        try:

            async def first_half_done() -> bool:
                assert first.poll() is None, log.read_text()[-3000:]
                return stored_readings(ts_db) >= split

            await eventually(
                first_half_done,
                what="the first worker to store the first half",
                timeout=90,
                interval=0.2,
            )
            records = await read_topic(settings, EXCURSIONS, until=1, idle_s=0.5)
            assert any(
                r["sensor_id"] == "ult-freezer-1.temperature" and r["status"] == "open"
                for r in records
            ), "the freezer excursion should be open when the worker is killed"
        finally:
            first.kill()  # SIGKILL: no commit, no clean shutdown
            first.wait(10)
        assert first.returncode == -signal.SIGKILL

        await publish(settings, readings[split:])
        second = start_worker(settings, log)
        try:

            async def all_stored() -> bool:
                assert second.poll() is None, log.read_text()[-3000:]
                return stored_readings(ts_db) >= len(readings)

            await eventually(
                all_stored,
                what="the second worker to store every reading",
                timeout=120,
                interval=0.2,
            )
            alarms = await read_topic(settings, ALARMS, until=len(expected_alarms))
            records = await read_topic(settings, EXCURSIONS, until=len(expected_records))
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)

        assert stored_readings(ts_db) == len(readings)
        # Every alarm of replay arrived; a repeat after the kill is allowed (at least once)
        # but carries the same content, so a consumer de-duplicating by content sees each once.
        assert sorted(set(canonical(alarms))) == canonical(expected_alarms)
        # The stored output (the idempotent record store) closes the excursion exactly once.
        engine = store_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
        upgrade(engine)
        store = RecordStore(engine)
        for record in records:
            store.apply(RECORD.validate_python(record))
        freezer = [
            r
            for r in core_records(engine, "excursion")
            if r["sensor_id"] == "ult-freezer-1.temperature"
        ]
        assert len(freezer) == 1
        assert freezer[0]["status"] == "closed"
        closes = {
            json.dumps(r, sort_keys=True)
            for r in records
            if r["sensor_id"] == "ult-freezer-1.temperature" and r["status"] == "closed"
        }
        assert len(closes) == 1  # sent at most again identically, never as a second record
        assert canonical(final_records(records)) == canonical(expected_records)
        engine.dispose()


class SkippingWorker(StreamWorker):
    """Loses records on their way to ``handle`` once, as faust's stream did across a rebalance.

    faust dropped (and acknowledged) records it had fetched under an older consumer
    generation; here five records of partition 0 vanish from one batch the same way.
    """

    skipped: list[int]

    async def handle(self, batch: Batch) -> None:
        if not hasattr(self, "skipped"):
            first = next((records for p, records in batch.parts if p == 0), [])
            if len(first) >= 20:
                self.skipped = [r.offset for r in first[3:8]]
                lost = set(self.skipped)
                parts = [
                    (p, [r for r in records if p != 0 or r.offset not in lost])
                    for p, records in batch.parts
                ]
                batch = Batch(batch.epoch, parts)
        await super().handle(batch)


class TestOwnedOffsets:
    async def test_records_lost_before_handle_are_sought_back(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A hole in a partition's offsets is never committed over: the worker seeks back."""
        readings, expected_alarms, expected_records = scripted_day(tmp_path)
        settings = settings_for(kafka, topic_prefix, tmp_path / "worker")
        await make_topics(settings)
        await publish(settings, readings)
        async with running(in_process(SkippingWorker, settings, tmp_path)) as worker:
            await until_handled(worker, len(readings))
            alarms = await read_topic(settings, ALARMS, until=len(expected_alarms))
            records = await read_topic(settings, EXCURSIONS, until=len(expected_records))
        assert worker.fatal is None
        assert len(worker.skipped) == 5
        assert worker.offsets.gaps >= 1
        assert worker.readings == len(readings)
        assert SqliteSink(tmp_path / "ts.sqlite3").store.count() == len(readings)
        assert canonical(alarms) == canonical(expected_alarms)
        assert canonical(final_records(records)) == canonical(expected_records)
        assert await committed(settings) == await end_offsets(settings)

    async def test_records_deleted_before_any_worker_read_them_raise_an_alarm(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A real hole (retention passed the committed offset) is named, then passed."""
        readings, _alarms, _records = scripted_day(tmp_path)
        settings = settings_for(kafka, topic_prefix, tmp_path / "worker")
        await make_topics(settings)
        await publish(settings, readings)
        readings_topic = settings.topic(READINGS)
        tp = TopicPartition(readings_topic, 0)
        # The group had read partition 0 up to offset 10 when retention deleted up to 100.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=offsets_group(settings),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: 10})
        finally:
            await consumer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            assert (await admin.delete_records({tp: RecordsToDelete(100)})) == {tp: 100}
        finally:
            await admin.close()

        # 0..9 were handled by the group before, 10..99 are gone: the rest is handled.
        handled = len(readings) - 100
        async with running(in_process(StreamWorker, settings, tmp_path)) as worker:
            await until_handled(worker, handled)
            events = await read_topic(settings, ALARMS, until=1)
        assert worker.fatal is None
        assert worker.readings == handled
        assert SqliteSink(tmp_path / "ts.sqlite3").store.count() == handled
        (missing,) = [e for e in events if e.get("event") == "readings_missing"]
        assert missing["alarm"] is True
        assert f"{readings_topic} partition 0: offsets 10..99 cannot be read" in missing["detail"]
        assert "90 readings" in missing["detail"]
        assert await committed(settings) == await end_offsets(settings)


def offsets_group(settings: Settings) -> str:
    return f"{settings.app_id}-readings"  # StreamWorker.offsets_group


async def committed(settings: Settings) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(offsets_group(settings))
    finally:
        await admin.close()
    topic = settings.topic(READINGS)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def end_offsets(settings: Settings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(READINGS), p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


class RecordingSink(SqliteSink):
    """The SQLite sink, noting how many points (and of them readings) each write carried."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[int] = []
        self.readings = 0

    async def write(self, points: Sequence[Reading | ContextPoint]) -> None:
        self.writes.append(len(points))
        self.readings += sum(1 for point in points if isinstance(point, Reading))
        await super().write(points)


class TestCheckpoints:
    async def test_states_and_offsets_saved_per_checkpoint_series_written_in_batches(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Checkpoints, not batches, commit; caught up, the worker checkpoints at once."""
        readings, expected_alarms, _ = scripted_day(tmp_path)
        settings = settings_for(
            kafka,
            topic_prefix,
            tmp_path / "worker",
            batch_max=100,
            checkpoint_interval_s=60,  # never due here: only "caught up" can checkpoint
            timeseries_batch_max=250,
        )
        await make_topics(settings)
        await publish(settings, readings)
        sink = RecordingSink(tmp_path / "ts.sqlite3")
        async with running(in_process(StreamWorker, settings, tmp_path, sink)) as worker:
            await until_handled(worker, len(readings), timeout=60)
            alarms = await read_topic(settings, ALARMS, until=len(expected_alarms))
        assert worker.fatal is None
        assert worker.readings == len(readings)
        assert worker.batches >= len(readings) // 100
        assert 1 <= worker.checkpoints < worker.batches / 10
        assert sink.readings == len(readings)
        assert max(sink.writes) <= 250  # readings and context points (stream.timeseries.context)
        assert SqliteSink(tmp_path / "ts.sqlite3").store.count() == len(readings)
        assert await committed(settings) == await end_offsets(settings)
        assert canonical(alarms) == canonical(expected_alarms)
        # Every sensor's last state reached the changelog: a new worker starts from it.
        changelog = worker.table.changelog_topic.get_topic_name()
        keys = {key for key, _ in await read_raw(settings.kafka_bootstrap, changelog)}
        assert keys == {r.sensor_id.encode() for r in readings}


async def read_raw(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Read a whole topic from the start until it has been quiet for a second."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        while batches := await consumer.getmany(timeout_ms=1_000):
            out += [(r.key, r.value) for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return out
