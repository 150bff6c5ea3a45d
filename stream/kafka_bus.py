"""The Kafka engine of the bus port (``envmon.bus.Bus``), on aiokafka.

The collectors' buffers publish through it when ``ENVMON_BUS=kafka``; tests and tools read
topics through ``subscribe``. The stream worker itself consumes with faust
(``stream.worker``), not through this class.

- **Durable before it returns.** ``publish`` sends a batch and waits until every message is
  acknowledged by all in-sync replicas (``acks=all``) of an idempotent producer, so the
  Outbox deletes only what Kafka holds. Keys are the sensor ids: Kafka's default
  partitioner (murmur2, the same in Java and aiokafka) keeps each sensor on one partition
  and the stream worker's table co-partitioned with it.
- **Unavailable, not stuck.** A broker that is down, a timeout or any Kafka error during a
  publish raises ``BusUnavailableError`` within ``publish_timeout_s``; the producer is
  closed and built anew on the next attempt (an aiokafka producer that lost its broker
  does not always recover by itself). The Outbox keeps the batch and retries; what was
  partly delivered is sent again (at least once, in order per sensor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from envmon.bus import BusUnavailableError, Message

logger = logging.getLogger(__name__)

DEFAULT_PUBLISH_TIMEOUT_S: Final = 15.0
_LINGER_MS: Final = 5
_MAX_BATCH_BYTES: Final = 1 << 20


class KafkaBus:
    """Publish/subscribe on a Kafka cluster (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "envmon",
        topic_prefix: str = "",
        publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.topic_prefix = topic_prefix
        self.publish_timeout_s = publish_timeout_s
        self.published = 0
        self.failures = 0
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect the producer; raise ``BusUnavailableError`` if Kafka cannot be reached."""
        await self._ensure_producer()

    async def stop(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError, asyncio.TimeoutError):
                await producer.stop()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=_LINGER_MS,
            max_batch_size=_MAX_BATCH_BYTES,
            request_timeout_ms=int(self.publish_timeout_s * 1000),
        )
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise BusUnavailableError(f"kafka {self.bootstrap}: {exc!r}") from exc
        self._producer = producer
        return producer

    async def publish(self, messages: list[Message]) -> None:
        """Publish in order; return once all in-sync replicas have every message."""
        if not messages:
            return
        producer = await self._ensure_producer()
        prefix = self.topic_prefix
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                futures = [
                    await producer.send(
                        prefix + m.topic,
                        m.value,
                        key=None if m.key is None else m.key.encode(),
                    )
                    for m in messages
                ]
                await asyncio.gather(*futures)
        except (KafkaError, OSError, TimeoutError) as exc:
            self.failures += 1
            logger.warning("kafka publish failed (%r); the producer is rebuilt", exc)
            await self.stop()
            raise BusUnavailableError(f"kafka {self.bootstrap}: {exc!r}") from exc
        self.published += len(messages)

    async def subscribe(self, topic: str, group: str) -> AsyncIterator[Message]:
        """Yield the messages of ``topic`` for ``group``, committing what was consumed.

        Offsets are committed after each fetched batch was taken by the caller (when it
        asks for the next message), so a crash repeats at most one batch.
        """
        consumer = AIOKafkaConsumer(
            self.topic_prefix + topic,
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=1_000)
                for records in batches.values():
                    for record in records:
                        key = None if record.key is None else bytes(record.key).decode()
                        yield Message(topic, key, bytes(record.value))
                if batches:
                    await consumer.commit()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
