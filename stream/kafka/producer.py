"""The stream worker's Kafka producer: many records sent as one record batch per partition.

The worker sends, for every batch of readings, the alarms and records it produced and the
new state of every sensor the batch touched (hundreds of changelog records). aiokafka's
``send`` costs tens of microseconds a record in Python (serialisers, partitioner, the
accumulator's per-record path, a future each), and its default partitioner hashes each key
with a pure-Python murmur2. ``BatchProducer.send`` instead groups the records by
topic-partition and appends them to aiokafka's record-batch builder (its C extension), one
batch — one future — per partition, and remembers each key's partition.

- **Durable before the future resolves.** The producer is idempotent with ``acks=all``:
  a batch's future resolves once every in-sync replica has it; records of one partition
  keep the order in which they were given, also across calls.
- **The partition of a key** is Kafka's default partitioner's (murmur2 of the key over the
  topic's partitions, as the collectors' producers and the Java client use), so a sensor's
  alarms, records and state go to the partition of its readings. A record without a key
  goes to a random partition. A record may also name its partition.

A record larger than ``MAX_RECORD_BYTES`` is refused (``ValueError``) before anything of its
call is queued; other errors are aiokafka's (``KafkaError``). The worker treats any as fatal.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

#: Largest record batch sent at once (and so the largest record: a sensor state is < 1 KiB).
MAX_BATCH_BYTES: Final = 1 << 20
#: Largest key + value: a batch's header and a record's framing take the rest.
MAX_RECORD_BYTES: Final = MAX_BATCH_BYTES - 1024
#: Keys whose partition is remembered before the memory starts over (sensors of a site).
MAX_KEYS: Final = 100_000
DEFAULT_REQUEST_TIMEOUT_S: Final = 30.0


class Record(NamedTuple):
    """One record to send; ``partition`` None means the key's partition."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


def key_partition(key: bytes, partitions: int) -> int:
    """Return the partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class BatchProducer:
    """An idempotent ``acks=all`` producer that sends records grouped in record batches."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "envmon-stream",
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.sent = 0  #: records handed to Kafka (acknowledged or in flight)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_BATCH_BYTES + 4096,
            request_timeout_ms=int(request_timeout_s * 1000),
        )
        self._partitions: dict[str, int] = {}  # topic → number of partitions
        self._key_partitions: dict[tuple[str, bytes], int] = {}

    async def start(self) -> None:
        """Connect to the cluster."""
        await self._producer.start()

    async def stop(self) -> None:
        """Send what is queued and close."""
        await self._producer.stop()

    async def send(self, records: Iterable[Record]) -> list[asyncio.Future[Any]]:
        """Queue the records; return one future per record batch, done once it is durable.

        Returns as soon as the batches are queued (after waiting for room in the queue of a
        partition that still has a batch waiting to be sent).
        """
        groups: dict[tuple[str, int], list[Record]] = {}
        for record in records:
            size = len(record.value) + len(record.key or b"")
            if size > MAX_RECORD_BYTES:  # refused before anything of this call is queued
                raise ValueError(
                    f"a record of {size} bytes for {record.topic} exceeds the largest "
                    f"record ({MAX_RECORD_BYTES} bytes)"
                )
            partition = record.partition
            if partition is None:
                partition = await self._partition_of(record.topic, record.key)
            group = groups.get((record.topic, partition))
            if group is None:
                groups[(record.topic, partition)] = group = []
            group.append(record)
        futures: list[asyncio.Future[Any]] = []
        producer = self._producer
        for (topic, partition), group in groups.items():
            builder = producer.create_batch()
            for record in group:
                if builder.append(timestamp=None, key=record.key, value=record.value) is None:
                    # The batch is full: send it and start the next with this record.
                    futures.append(await self._send_batch(builder, topic, partition))
                    builder = producer.create_batch()
                    builder.append(timestamp=None, key=record.key, value=record.value)
            futures.append(await self._send_batch(builder, topic, partition))
            self.sent += len(group)
        return futures

    async def _send_batch(
        self, builder: BatchBuilder, topic: str, partition: int
    ) -> asyncio.Future[Any]:
        builder.close()  # nothing else may join it (aiokafka's send() could)
        future: asyncio.Future[Any] = await self._producer.send_batch(
            builder, topic, partition=partition
        )
        return future

    async def _partition_of(self, topic: str, key: bytes | None) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = len(await self._producer.partitions_for(topic))
        if key is None:
            return random.randrange(count)  # noqa: S311 (spreading load, not a secret)
        partition = self._key_partitions.get((topic, key))
        if partition is None:
            if len(self._key_partitions) >= MAX_KEYS:
                self._key_partitions.clear()
            partition = self._key_partitions[(topic, key)] = key_partition(key, count)
        return partition
