"""A real Kafka broker with aiokafka and faust-streaming: round trips, restarts, table recovery.

What this spike found (Kafka 4.3.1 from Maven Central, aiokafka 0.14.0, faust-streaming
0.15.3, Python 3.11, Java 17):

- Kafka 4.x works with a current aiokafka: aiokafka negotiates API versions and still
  has the versions Kafka 4 kept (KIP-896 removed only the oldest ones). 3.9.1, 4.1.1,
  4.3.1 and 4.4.0 all passed the same round trip and faust run; aiokafka 0.12 and 0.13
  did the plain round trip against 4.3.1 too.
- Broker (measured on 2 cores, partly loaded): first start 3-6 s (about 1 s of it is
  formatting the storage), start after a SIGTERM stop 2.5-4.5 s, SIGTERM stop 0.4-0.6 s,
  start after SIGKILL ~12 s (the controller first waits broker.session.timeout.ms, 9 s,
  to fence the dead incarnation). About 200 MB resident with -Xmx512m and the serial GC.
  This module runs in ~45 s (three broker JVMs: the session one and two own_kafka).
- faust runs in the test's own event loop, no conflict with pytest-asyncio: build the
  ``faust.App`` inside the test (it binds to the running loop), ``await app.start()``,
  wait until ``app.consumer.assignment()`` is non-empty, ``not app.rebalancing`` and
  ``app.tables.recovery.completed`` is set, then ``await app.stop()`` (which commits).
  ``app.main()`` and ``faust.Worker`` are for a process of their own (mode's Worker
  calls ``loop.run_until_complete`` and installs signal handlers). As a separate process
  ``app.main()`` with the CLI ``worker --without-web --loglevel=info --logfile=F`` works:
  "Ready" in the log marks the start and SIGTERM stops it cleanly (exit 0, offsets
  committed). See faust_counter.py for both ways.
- Settings that matter: ``web_enabled=False`` (else an aiohttp server on port 6066);
  ``datadir`` (else "<app id>-data" appears in the current directory, even with the
  memory store); ``topic_replication_factor=1`` and ``topic_partitions`` (for the topics
  faust creates itself: changelogs, repartition and ``__assignor-__leader``);
  ``producer_acks=-1``; ``consumer_auto_offset_reset="earliest"`` (a new group must read
  what was produced before it joined); ``broker_commit_interval``/``broker_commit_every``;
  ``table_standby_replicas=0`` with one worker; a table's ``partitions`` must equal its
  source topic's (else the first update raises PartitionsMismatch inside the agent: the
  agent dies, the app keeps running with an empty table).
- faust creates only its internal topics; the source topics must exist, and the broker
  has ``auto.create.topics.enable=false`` so a missing one fails instead of appearing
  with one partition. ``stream.kafka.topics.create_topics`` creates them.
- Timings: in-process ``app.start()`` plus ready ~1.1 s; a second app with the same id
  recovers a table of a few keys from its changelog in ~1.1 s; ``app.stop()`` ~0.02 s; a
  worker subprocess logs "Ready" ~1.8 s after it was spawned.
- A table's changelog has JSON keys and values (``"s0"`` -> ``20``), whatever the source
  topic's key serializer: read it with ``orjson.loads`` on both.
- The first consumer of a fresh broker logs GroupCoordinatorNotAvailable a few times
  while ``__consumer_offsets`` is created; aiokafka retries on its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError
from aiokafka.structs import TopicPartition

from devservers.kafka import KafkaBroker, probe_metadata, render_config
from devservers.versions import REPO_ROOT
from envmon.testing import eventually
from stream.kafka.topics import TopicsError, create_topics, delete_topics

from .faust_counter import make_app, wait_ready

pytestmark = pytest.mark.timeout(180)

Record = tuple[str, bytes]


async def produce(bootstrap: str, topic: str, records: Iterable[Record]) -> int:
    """Send (key, value) records with acks=all and idempotence; return how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent = 0
    try:
        batch = [await producer.send(topic, value, key=key.encode()) for key, value in records]
        for future in batch:
            await future
            sent += 1
    finally:
        await producer.stop()
    return sent


async def consume(
    bootstrap: str, topic: str, group: str, count: int, *, commit: bool = True, timeout: float = 30
) -> list[tuple[str, bytes]]:
    """Read ``count`` records as member of ``group`` (committing them); return (key, value)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=count,
    )
    await consumer.start()
    got: list[tuple[str, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=count - len(got))
            for messages in batches.values():
                got += [(m.key.decode(), m.value) for m in messages]
        if commit:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


def readings(sensors: int, per_sensor: int, start: int = 0) -> list[Record]:
    """Return JSON readings, ``per_sensor`` for each of ``sensors`` sensors, interleaved."""
    return [
        (f"s{s}", orjson.dumps({"sensor_id": f"s{s}", "seq": i, "value": 20.0 + i}))
        for i in range(start, start + per_sensor)
        for s in range(sensors)
    ]


class TestBroker:
    """The shared broker: metadata, topics and an aiokafka round trip."""

    def test_serves_metadata_listing_itself(self, kafka: KafkaBroker):
        """A Metadata request returns the one broker on its port and the controller id."""
        info = probe_metadata(kafka.host, kafka.port)
        assert [(b.node_id, b.port) for b in info.brokers] == [(1, kafka.port)]
        assert info.controller_id == 1
        assert info.cluster_id

    async def test_round_trip_keeps_order_per_key(self, kafka: KafkaBroker, topic_prefix: str):
        """Records produced with acks=all come back once each, in order within each key."""
        topic = f"{topic_prefix}.readings"
        await kafka.create_topics({topic: 3})
        sent = readings(sensors=5, per_sensor=40)
        assert await produce(kafka.bootstrap, topic, sent) == 200

        got = await consume(kafka.bootstrap, topic, f"{topic_prefix}.g", 200)

        assert sorted(got) == sorted(sent)
        for sensor in {key for key, _ in sent}:
            seqs = [orjson.loads(v)["seq"] for k, v in got if k == sensor]
            assert seqs == list(range(40))

    async def test_topics_are_not_created_on_first_use(self, kafka: KafkaBroker, topic_prefix):
        """Producing to a topic nobody created fails: auto.create.topics.enable is off."""
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, request_timeout_ms=2000)
        await producer.start()
        try:
            with pytest.raises(UnknownTopicOrPartitionError):
                await producer.send_and_wait(f"{topic_prefix}.missing", b"x")
        finally:
            await producer.stop()

    async def test_create_and_delete_topics(self, kafka: KafkaBroker, topic_prefix: str):
        """Topics get the partitions asked for; creating one twice fails unless exist_ok."""
        names = {f"{topic_prefix}.a": 4, f"{topic_prefix}.b": 1}
        await create_topics(kafka.bootstrap, names, config={"retention.ms": "3600000"})
        await create_topics(kafka.bootstrap, names, exist_ok=True)
        with pytest.raises(TopicsError, match="TopicAlreadyExists"):
            await kafka.create_topics({f"{topic_prefix}.a": 4})

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(list(names))
        finally:
            await admin.close()
        assert {t["topic"]: len(t["partitions"]) for t in described} == names

        await delete_topics(kafka.bootstrap, names)
        await kafka.delete_topics(names)  # deleting what is gone is fine by default
        with pytest.raises(TopicsError, match="UnknownTopicOrPartition"):
            await kafka.delete_topics(names, missing_ok=False)


class TestRestart:
    """A broker of the test's own, stopped or killed and started again on the same data."""

    async def test_stop_start_keeps_records_and_committed_offsets(self, own_kafka, topic_prefix):
        """After SIGTERM and a start, the records and the group's committed offsets are there."""
        topic, group = f"{topic_prefix}.readings", f"{topic_prefix}.g"
        await own_kafka.create_topics({topic: 2})
        await produce(own_kafka.bootstrap, topic, readings(sensors=2, per_sensor=25))
        first = await consume(own_kafka.bootstrap, topic, group, 30)
        assert len(first) == 30

        own_kafka.stop()
        assert not own_kafka.running
        own_kafka.start()

        await produce(own_kafka.bootstrap, topic, readings(sensors=2, per_sensor=5, start=25))
        rest = await consume(own_kafka.bootstrap, topic, group, 30)
        assert sorted(first + rest) == sorted(readings(sensors=2, per_sensor=30))
        consumer = AIOKafkaConsumer(bootstrap_servers=own_kafka.bootstrap, group_id=group)
        await consumer.start()
        try:
            committed = [await consumer.committed(TopicPartition(topic, p)) for p in (0, 1)]
        finally:
            await consumer.stop()
        assert sum(c or 0 for c in committed) == 60

    async def test_acknowledged_records_survive_a_kill(self, own_kafka, topic_prefix):
        """Records acknowledged with acks=all are still there after SIGKILL and a start."""
        topic = f"{topic_prefix}.readings"
        await own_kafka.create_topics({topic: 2})
        sent = readings(sensors=4, per_sensor=25)
        await produce(own_kafka.bootstrap, topic, sent)

        own_kafka.kill()
        own_kafka.start()

        got = await consume(own_kafka.bootstrap, topic, f"{topic_prefix}.g", 100)
        assert sorted(got) == sorted(sent)

    def test_same_directory_keeps_the_controller_port(self, own_kafka: KafkaBroker):
        """A new runner on an existing directory reuses its quorum address and its data."""
        own_kafka.stop()
        again = KafkaBroker(own_kafka.directory, own_kafka.port)
        assert again.controller_port == own_kafka.controller_port
        with again:
            assert probe_metadata(again.host, again.port).controller_id == 1


class TestConfig:
    """The broker configuration written from deploy/kafka/server.properties."""

    def test_config_keeps_the_shipped_settings(self, tmp_path: Path):
        """The rendered config keeps the single-node settings and replaces the listeners."""
        text = render_config(tmp_path, 19092, 19093, extra={"log.retention.ms": "1000"})
        lines = text.splitlines()
        assert "offsets.topic.replication.factor=1" in lines
        assert "auto.create.topics.enable=false" in lines
        assert "group.initial.rebalance.delay.ms=0" in lines
        assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in lines
        assert f"log.dirs={(tmp_path / 'data').resolve()}" in lines
        assert lines[-1] == "log.retention.ms=1000"


class TestFaust:
    """faust-streaming agents and tables on the real broker."""

    async def test_table_recovers_from_its_changelog(self, kafka, topic_prefix, tmp_path):
        """A second app with the same id rebuilds the table and does not count twice."""
        topic = f"{topic_prefix}.readings"
        await kafka.create_topics({topic: 2})
        app, counts = make_app(f"{topic_prefix}-app", kafka.bootstrap, topic, tmp_path / "one")
        started = time.monotonic()
        await app.start()
        try:
            await wait_ready(app)
            print(f"faust app ready after {time.monotonic() - started:.2f} s")
            await produce(kafka.bootstrap, topic, readings(sensors=3, per_sensor=20))
            await eventually(
                lambda: sum(counts.values()) >= 60, what="60 records counted", timeout=30
            )
            assert dict(counts.items()) == {"s0": 20, "s1": 20, "s2": 20}
        finally:
            await app.stop()

        again, recovered = make_app(f"{topic_prefix}-app", kafka.bootstrap, topic, tmp_path / "two")
        started = time.monotonic()
        await again.start()
        try:
            await wait_ready(again)
            print(f"faust app recovered after {time.monotonic() - started:.2f} s")
            assert dict(recovered.items()) == {"s0": 20, "s1": 20, "s2": 20}
            await produce(kafka.bootstrap, topic, readings(sensors=3, per_sensor=1, start=20))
            await eventually(
                lambda: sum(recovered.values()) >= 63, what="63 records recovered", timeout=30
            )
            await asyncio.sleep(1)  # anything counted twice would show up by now
            assert dict(recovered.items()) == {"s0": 21, "s1": 21, "s2": 21}
        finally:
            await again.stop()

    async def test_worker_process_hands_over_to_an_app(self, kafka, topic_prefix, tmp_path):
        """A faust worker subprocess counts; after SIGTERM an app with its id recovers the table."""
        topic, app_id = f"{topic_prefix}.readings", f"{topic_prefix}-app"
        await kafka.create_topics({topic: 2})
        logfile = tmp_path / "worker.log"
        env = {
            **os.environ,
            "FAUST_COUNTER_ID": app_id,
            "FAUST_COUNTER_BOOTSTRAP": kafka.bootstrap,
            "FAUST_COUNTER_TOPIC": topic,
            "FAUST_COUNTER_DATADIR": str(tmp_path / "worker"),
        }
        command = [
            sys.executable,
            "-m",
            "tests.integration.kafka.faust_counter",
            "worker",
            "--without-web",
            "--loglevel=info",
            f"--logfile={logfile}",
        ]
        started = time.monotonic()
        with (tmp_path / "worker.out").open("wb") as out:  # faust prints a banner there
            worker = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out
            )
        try:
            await eventually(
                lambda: logfile.exists() and "Ready" in logfile.read_text(errors="replace"),
                what="the faust worker's Ready line",
                timeout=60,
            )
            print(f"faust worker ready after {time.monotonic() - started:.2f} s")
            await produce(kafka.bootstrap, topic, readings(sensors=2, per_sensor=15))
            changelog = f"{app_id}-counts-changelog"
            latest = await read_changelog(kafka.bootstrap, changelog, {"s0": 15, "s1": 15})
            assert latest == {"s0": 15, "s1": 15}
        finally:
            worker.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(worker.wait, 60)
        assert code == 0, logfile.read_text(errors="replace")[-3000:]

        app, counts = make_app(app_id, kafka.bootstrap, topic, tmp_path / "app")
        await app.start()
        try:
            await wait_ready(app)
            assert dict(counts.items()) == {"s0": 15, "s1": 15}
            await produce(kafka.bootstrap, topic, readings(sensors=2, per_sensor=1, start=15))
            await eventually(
                lambda: sum(counts.values()) >= 32, what="32 records counted", timeout=30
            )
            await asyncio.sleep(1)
            assert dict(counts.items()) == {"s0": 16, "s1": 16}
        finally:
            await app.stop()


async def read_changelog(
    bootstrap: str, topic: str, expected: dict[str, int], timeout: float = 30
) -> dict[str, int]:
    """Read a faust table's changelog until its latest values equal ``expected``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    latest: dict[str, int] = {}
    try:
        deadline = time.monotonic() + timeout
        while latest != expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for m in messages:
                    # The table's keys and values are JSON (the source topic's keys are raw).
                    latest[orjson.loads(m.key)] = orjson.loads(m.value)
    finally:
        await consumer.stop()
    return latest
