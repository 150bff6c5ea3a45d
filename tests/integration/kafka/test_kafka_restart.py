"""Kafka restarting under a running collector: nothing stuck, lost, reordered, or flooding.

Issue 14 item 0: after a broker restart the collector's idempotent producer was out of
step (``OutOfOrderSequenceNumber`` for ever, aio-libs/aiokafka#1017), the buffer never
drained until the collector was restarted by hand, nothing said so, and aiokafka logged
every reconnect attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from collectors.buffer import Outbox
from devservers.kafka import KafkaBroker
from devservers.mosquitto import Mosquitto
from envmon.bus import ALARMS, READINGS, BusUnavailableError, Message
from envmon.commands.collect import run_collect
from envmon.models import SystemEvent, SystemEventKind
from envmon.netutil import free_port
from envmon.settings import Settings
from envmon.testing import eventually
from stream.kafka.bus import KafkaBus
from stream.kafka.topics import create_topics
from tests.integration.mqtt.helpers import site_yaml

from .pipeline import (
    MqttFeed,
    ReadingFeed,
    broker_outage,
    count_readings,
    read_topic,
    scrape,
)
from .test_worker import make_topics, publish, scenario_csv, settings_for, start_worker

pytestmark = pytest.mark.timeout(420)


class TestProducerReplacement:
    async def test_a_spent_sequence_number_replaces_the_producer(
        self, kafka: KafkaBroker, topic_prefix: str
    ) -> None:
        """A batch the broker refused spends its sequence number: a new producer goes on.

        The old producer's every later batch to that partition would be refused as out of
        order for ever (what a batch expiring during a broker restart does).
        """
        topic = f"{topic_prefix}.{READINGS}"
        await create_topics(kafka.bootstrap, {topic: 1}, config={"max.message.bytes": "2000"})
        bus = KafkaBus(kafka.bootstrap, topic_prefix=f"{topic_prefix}.", publish_timeout_s=5)
        first = Message(READINGS, "s", b"first")
        try:
            await bus.publish([first])  # the broker now expects this producer's next sequence
            with pytest.raises(BusUnavailableError, match="MessageSizeTooLarge"):
                await bus.publish([Message(READINGS, "s", b"x" * 5_000)])
            batch = [Message(READINGS, "s", f"{i}".encode()) for i in range(100)]
            async with asyncio.timeout(60):
                while True:  # as the buffer does: the same batch again until it is taken
                    try:
                        await bus.publish(batch)
                        break
                    except BusUnavailableError:
                        await asyncio.sleep(0.5)
        finally:
            await bus.stop()
        assert bus.replacements == 1
        values = await read_topic(kafka.bootstrap, topic, idle_s=1)
        assert values == [first.value] + [m.value for m in batch]


class TestKafkaRestartUnderCollect:
    async def test_every_reading_arrives_in_order_and_the_log_stays_short(
        self,
        own_kafka: KafkaBroker,
        mosquitto: Mosquitto,
        topic_prefix: str,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Kafka down 20 s while MQTT readings flow: all forwarded after, no restart, no flood."""
        caplog.set_level(logging.INFO)
        prefix = topic_prefix
        site = tmp_path / "site.yaml"
        text = site_yaml(prefix, mosquitto.port).replace(
            "collectors:\n",
            "collectors:\n"
            + textwrap.indent(
                f"buffer: {{path: {tmp_path / 'buffer.sqlite3'}, stall_alarm_after: 10s}}\n",
                "  ",
            ),
            1,
        )
        site.write_text(text)
        metrics_port = free_port()
        settings = Settings(
            bus="kafka",
            site=site,
            kafka_bootstrap=own_kafka.bootstrap,
            topic_prefix=f"{prefix}.",
            data_dir=tmp_path / "data",
            collect_metrics_port=metrics_port,
        )
        total, rate = 16_000, 400.0
        stop = asyncio.Event()
        collect = asyncio.create_task(run_collect(settings, stop=stop))
        feed = MqttFeed(mosquitto, prefix, total=total, rate=rate)
        try:
            async with asyncio.timeout(60):
                while not any("collecting:" in r.getMessage() for r in caplog.records):
                    assert not collect.done(), collect
                    await asyncio.sleep(0.1)
            feed.start()
            async with asyncio.timeout(30):
                while feed.published < 2_000:
                    await asyncio.sleep(0.1)
            async with broker_outage(own_kafka, 20):
                down_at = feed.published
            back = time.monotonic()
            await feed.wait(timeout=180)
            metrics = {}
            async with asyncio.timeout(120):  # bounded: the buffer drains after the broker is back
                while metrics.get(("envmon_buffer_messages", "readings"), 1) > 0:
                    await asyncio.sleep(0.5)
                    metrics = await scrape(metrics_port)
            drained_s = time.monotonic() - back

            async def alarms() -> list[SystemEvent]:
                topic = settings.topic(ALARMS)
                values = await read_topic(own_kafka.bootstrap, topic, idle_s=0.5)
                return [SystemEvent.model_validate_json(v) for v in values]

            async with asyncio.timeout(30):  # the stall's end follows the readings at once
                while SystemEventKind.BUFFER_FLOWING not in [e.event for e in await alarms()]:
                    await asyncio.sleep(0.5)
        finally:
            stop.set()
            await collect
        lines = [f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records]
        assert down_at < total  # readings kept coming while Kafka was down
        count = count_readings(
            await read_topic(own_kafka.bootstrap, settings.topic(READINGS)), total
        )
        print(f"readings: {count}; buffer drained {drained_s:.1f} s after Kafka was back")
        assert count.missing == []
        assert count.out_of_order == {}
        assert drained_s < 90
        assert metrics[("envmon_collector_readings_total", "mqtt:test")] == total
        assert metrics[("envmon_buffer_forwarded_total", "readings")] >= total

        # The stall was told on envmon.alarms, then its end, through the events' own path.
        kinds = [e.event for e in await alarms() if e.component == "buffer"]
        assert kinds == [SystemEventKind.BUFFER_STALLED, SystemEventKind.BUFFER_FLOWING]

        print(f"{len(lines)} log lines:\n" + "\n".join(line[:200] for line in lines))
        assert len(lines) < 40, "\n".join(lines)


#: What aiokafka logs at every attempt while a broker is away (the flood of issue 14).
FLOOD = (
    "Unable connect to node",
    "Unable to update metadata",
    "Failed fetch messages",
    "Group Coordinator Request failed",
    "Got error produce response",
)


class TestKafkaRestartUnderWorker:
    async def test_the_worker_goes_on_quietly_and_its_metrics_say_so(
        self, own_kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """envmon stream worker across a 20-s Kafka outage: one summary, every reading handled."""
        metrics_port = free_port()
        settings = settings_for(
            own_kafka, topic_prefix, tmp_path / "worker", worker_metrics_port=metrics_port
        )
        await make_topics(settings)
        readings = scenario_csv(tmp_path / "day.csv")
        half = len(readings) // 2
        await publish(settings, readings[:half])
        log = tmp_path / "worker.log"
        worker = start_worker(settings, log)

        async def handled(count: int) -> bool:
            assert worker.poll() is None, log.read_text()[-3000:]
            try:
                metrics = await scrape(metrics_port)
            except OSError:  # not listening yet
                return False
            return metrics[("envmon_worker_readings_total", "")] >= count

        try:
            await eventually(
                lambda: handled(half), what="the first half handled", timeout=120, interval=0.2
            )

            async def settled() -> bool:  # a start's transient errors are an outage too
                return (await scrape(metrics_port))[("envmon_kafka_outage", "")] == 0

            await eventually(settled, what="no outage going on", timeout=60, interval=0.2)
            before = len(log.read_text().splitlines())
            async with broker_outage(own_kafka, 20):
                pass
            await publish(settings, readings[half:])
            await eventually(
                lambda: handled(len(readings)),
                what="every reading handled",
                timeout=120,
                interval=0.2,
            )
            after = log.read_text().splitlines()[before:]

            async def caught_up() -> bool:
                metrics = await scrape(metrics_port)
                lags = [v for (name, _), v in metrics.items() if name == "envmon_worker_lag"]
                return bool(lags) and sum(lags) == 0

            await eventually(caught_up, what="no lag", timeout=30, interval=0.2)
            metrics = await scrape(metrics_port)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(worker.wait, 60)
        assert code == 0, log.read_text()[-3000:]
        assert metrics[("envmon_worker_readings_total", "")] == len(readings)
        written = metrics[("envmon_worker_last_timeseries_write_timestamp_seconds", "")]
        assert time.time() - written < 60
        flood = [line for line in after if any(text in line for text in FLOOD)]
        print(f"{len(after)} log lines during and after the outage:\n" + "\n".join(after))
        assert len(flood) <= 3, f"{len(flood)} lines: " + "\n".join(flood[:20])
        assert any("kafka: connection trouble" in line for line in after)
        assert len(after) < 40
        assert metrics[("envmon_kafka_outages_total", "")] >= 1


class TestFrozenBroker:
    async def test_a_producer_without_acknowledgements_is_replaced_in_order(
        self, own_kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A broker frozen (SIGSTOP) with batches in flight: replaced, nothing lost or reordered.

        The old producer's requests may still be in the frozen broker's socket buffers when
        it is closed; whatever it had not got acknowledged is sent again by the new one.
        """
        topic = f"{topic_prefix}.{READINGS}"
        await create_topics(own_kafka.bootstrap, {topic: 4})
        outbox = Outbox(tmp_path / "buffer.sqlite3")
        bus = KafkaBus(
            own_kafka.bootstrap,
            topic_prefix=f"{topic_prefix}.",
            publish_timeout_s=2,
            replace_after_s=5,
        )
        total = 9_000
        feed = ReadingFeed(outbox, total, rate=300)
        forwarder = asyncio.create_task(outbox.forward(bus))
        pid = own_kafka.pid
        assert pid is not None
        try:
            feed.start()
            async with asyncio.timeout(30):
                while feed.put < 1_500:
                    await asyncio.sleep(0.1)
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(15)
            finally:
                os.kill(pid, signal.SIGCONT)
            await feed.wait()
            async with asyncio.timeout(120):
                while len(outbox):
                    await asyncio.sleep(0.2)
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            await bus.stop()
            outbox.close()
        count = count_readings(await read_topic(own_kafka.bootstrap, topic), total)
        print(f"readings: {count}; {bus.replacements} producer(s) replaced")
        assert bus.replacements >= 1
        assert count.missing == []
        assert count.out_of_order == {}
