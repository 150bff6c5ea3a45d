"""The worker's batch producer against a real broker: partitions, order, batch splitting."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from devservers.kafka import KafkaBroker
from stream.kafka.producer import (
    MAX_BATCH_BYTES,
    MAX_RECORD_BYTES,
    BatchProducer,
    Record,
    key_partition,
)
from stream.kafka.topics import create_topics

PARTITIONS = 3


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    """Read ``count`` records of ``topic`` from the start: (partition, key, value)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[tuple[int, bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(out) < count:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    out += [(tp.partition, r.key or b"", r.value or b"") for r in records]
    finally:
        await consumer.stop()
    return out


async def test_records_land_on_their_keys_partitions_in_order_across_split_batches(
    kafka: KafkaBroker, topic_prefix: str
) -> None:
    """More than one batch's worth of records: every record once, per key in order."""
    topic = f"{topic_prefix}.out"
    await create_topics(kafka.bootstrap, {topic: PARTITIONS})
    value_size = 10_000
    per_key = 2 * MAX_BATCH_BYTES // value_size // 4  # the group of a partition splits
    keys = [f"sensor-{i}".encode() for i in range(8)]
    records = [
        Record(topic, key, b"%s:%06d:" % (key, n) + b"x" * value_size)
        for n in range(per_key)
        for key in keys
    ]
    producer = BatchProducer(kafka.bootstrap)
    await producer.start()
    try:
        futures = await producer.send(records[: len(records) // 2])
        futures += await producer.send(records[len(records) // 2 :])
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert producer.sent == len(records)
    assert len(futures) > PARTITIONS * 2  # batches were split at MAX_BATCH_BYTES

    got = await read_all(kafka.bootstrap, topic, len(records))
    assert len(got) == len(records)
    for key in keys:
        mine = [(partition, value) for partition, k, value in got if k == key]
        assert {partition for partition, _ in mine} == {key_partition(key, PARTITIONS)}
        assert [value for _, value in mine] == [r.value for r in records if r.key == key]


async def test_an_explicit_partition_wins_and_a_record_too_large_is_refused(
    kafka: KafkaBroker, topic_prefix: str
) -> None:
    """A record that cannot fit a batch is refused before anything of its call is sent."""
    topic = f"{topic_prefix}.out"
    await create_topics(kafka.bootstrap, {topic: PARTITIONS})
    key = b"fridge-1"
    other = (key_partition(key, PARTITIONS) + 1) % PARTITIONS
    producer = BatchProducer(kafka.bootstrap)
    await producer.start()
    try:
        await asyncio.gather(*await producer.send([Record(topic, key, b"v", other)]))
        too_large = Record(topic, key, b"x" * MAX_RECORD_BYTES, other)
        with pytest.raises(ValueError, match=rf"{len(key) + MAX_RECORD_BYTES} bytes for {topic}"):
            await producer.send([Record(topic, key, b"w", other), too_large])
    finally:
        await producer.stop()
    assert await read_all(kafka.bootstrap, topic, 1) == [(other, key, b"v")]
