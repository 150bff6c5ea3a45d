"""Outages with real servers: the time-series server and the Kafka broker stop and return."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from devservers.kafka import KafkaBroker
from devservers.questdb import QuestDB
from envmon.bus import READINGS
from envmon.commands.stream_worker import build_worker
from envmon.config import load_site
from envmon.models import SystemEventKind
from envmon.testing import eventually
from envmon.timeutil import parse_ts
from stream.kafka.bus import KafkaBus
from stream.kafka.topics import create_topics
from stream.timeseries.sink import site_id
from tests.integration.mqtt.helpers import Harness, messages

from .faust_counter import wait_ready
from .test_worker import SITE, make_topics, publish, scenario_csv, settings_for

pytestmark = pytest.mark.timeout(240)


def stored_points(server: QuestDB, site: str) -> tuple[int, int]:
    """Return (points, distinct sensor+time pairs) of ``site`` in QuestDB."""
    try:
        server.wait_applied("reading", timeout=5)
        ((n,),) = server.sql(f"SELECT count() FROM reading WHERE site = '{site}'")
        ((distinct,),) = server.sql(
            f"SELECT count() FROM (SELECT DISTINCT sensor, time FROM reading WHERE site = '{site}')"
        )
    except Exception:
        return -1, -1
    return int(n), int(distinct)


class TestTimeSeriesOutage:
    async def test_questdb_down_stops_the_worker_and_everything_is_stored_once(
        self,
        kafka: KafkaBroker,
        own_questdb: QuestDB,
        topic_prefix: str,
        tmp_path: Path,
    ) -> None:
        """While the store is down the worker takes no new readings; then every one is stored."""
        readings = scenario_csv(tmp_path / "day.csv")
        split = next(i for i, r in enumerate(readings) if r.ts >= parse_ts("2026-01-05T09:00Z"))
        settings = settings_for(
            kafka,
            topic_prefix,
            tmp_path / "worker",
            timeseries="influx",
            influx_url=own_questdb.url,
            batch_max=500,
        )
        await make_topics(settings)
        site = load_site(SITE)
        slug = site_id(site)
        worker = build_worker(settings, site)
        worker.on_fatal = lambda _exc: None
        await worker.app.start()
        try:
            await wait_ready(worker.app)
            await publish(settings, readings[:split])
            await eventually(
                lambda: asyncio.to_thread(lambda: stored_points(own_questdb, slug)[0] >= split),
                what="the first part stored",
                timeout=90,
            )
            await asyncio.to_thread(own_questdb.stop)  # the worker's loop keeps running
            await publish(settings, readings[split:])
            async with asyncio.timeout(60):
                while not any(
                    e.event is SystemEventKind.TIMESERIES_UNAVAILABLE for e in worker.events
                ):
                    await asyncio.sleep(0.1)
            batches, taken = worker.batches, worker.readings
            await asyncio.sleep(2.0)  # an observation window: nothing may move in it
            assert (worker.batches, worker.readings) == (batches, taken)
            assert taken < len(readings)
            await asyncio.to_thread(own_questdb.start)
            await eventually(
                lambda: asyncio.to_thread(
                    lambda: stored_points(own_questdb, slug)[0] >= len(readings)
                ),
                what="every reading",
                timeout=90,
            )
            async with asyncio.timeout(30):
                while worker.readings < len(readings):
                    await asyncio.sleep(0.1)
        finally:
            await worker.app.stop()
            await worker.sink.close()
        assert worker.fatal is None
        assert stored_points(own_questdb, slug) == (len(readings), len(readings))
        kinds = [e.event for e in worker.events]
        assert kinds == [
            SystemEventKind.TIMESERIES_UNAVAILABLE,
            SystemEventKind.TIMESERIES_RESTORED,
        ]


async def read_readings(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return out


class TestKafkaOutage:
    async def test_broker_down_while_mqtt_keeps_coming_loses_nothing(
        self,
        own_kafka: KafkaBroker,
        mosquitto,
        topic_prefix: str,
        tmp_path: Path,
    ) -> None:
        """Kafka stops while MQTT readings keep coming: buffered, then all delivered in order."""
        topic = f"{topic_prefix}.{READINGS}"
        await create_topics(own_kafka.bootstrap, {topic: 4})
        harness = Harness(mosquitto, tmp_path)
        collector = await harness.started()
        outbox = harness.buffer()
        bus = KafkaBus(own_kafka.bootstrap, topic_prefix=f"{topic_prefix}.", publish_timeout_s=3)
        forwarder = asyncio.create_task(outbox.forward(bus))
        try:
            await harness.publish(messages(harness.prefix, range(1_000)))
            async with asyncio.timeout(60):
                while outbox.stats.forwarded < 1_000:
                    await asyncio.sleep(0.05)
            await asyncio.to_thread(own_kafka.stop)  # the collector's loop keeps running
            await harness.publish(messages(harness.prefix, range(1_000, 3_000)))
            async with asyncio.timeout(60):
                while collector.counters.readings < 3_000:
                    await asyncio.sleep(0.05)
            assert len(outbox) == 2_000  # every reading since the stop waits on disk
            async with asyncio.timeout(30):  # the forwarder sees the bus refuse
                while outbox.stats.publish_failures < 1:
                    await asyncio.sleep(0.1)
            assert len(outbox) == 2_000
            await asyncio.to_thread(own_kafka.start)
            async with asyncio.timeout(120):
                while len(outbox):
                    await asyncio.sleep(0.1)
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            await bus.stop()
            await harness.close()
        got = await read_readings(own_kafka.bootstrap, topic, 3_000)
        seqs = [int(r["value"]) for r in got]
        assert set(seqs) == set(range(3_000))  # none lost
        by_sensor: dict[str, list[int]] = defaultdict(list)
        for reading in got:
            by_sensor[reading["sensor_id"]].append(int(reading["value"]))
        for sensor, values in by_sensor.items():
            assert values == sorted(set(values)), f"{sensor}: out of order or repeated"
        assert len(seqs) == 3_000  # in-flight messages were awaited, not sent twice
