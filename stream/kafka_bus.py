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
  publish raises ``BusUnavailableError`` within about ``2 × publish_timeout_s``; the
  Outbox keeps the batch and offers it again. The same producer stays (it reconnects by
  itself) and what it still has in flight is awaited, not sent twice, so each sensor's
  readings arrive in order across an outage (see ``publish``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Final, NoReturn

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from envmon.bus import BusUnavailableError, Message

logger = logging.getLogger(__name__)

DEFAULT_PUBLISH_TIMEOUT_S: Final = 15.0
_LINGER_MS: Final = 5
_MAX_BATCH_BYTES: Final = 1 << 20
_MAX_PENDING: Final = 100_000


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
        # Messages of failed attempts still in flight (or delivered since), by content.
        self._pending: dict[tuple[str, str | None, bytes], asyncio.Future[Any]] = {}

    async def start(self) -> None:
        """Connect the producer; raise ``BusUnavailableError`` if Kafka cannot be reached."""
        await self._ensure_producer()

    async def stop(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _close(producer, self.publish_timeout_s)

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
            await _close(producer, self.publish_timeout_s)
            raise BusUnavailableError(f"kafka {self.bootstrap}: {exc!r}") from exc
        self._producer = producer
        return producer

    async def publish(self, messages: list[Message]) -> None:
        """Publish in order; return once all in-sync replicas have every message.

        After a failed attempt (``BusUnavailableError``) the caller offers the same batch
        again. Messages of the failed attempt that are still in flight or were delivered
        meanwhile are not sent a second time: the one producer keeps retrying them in
        order, and this call waits for them. So a sensor's readings reach Kafka in order
        even across an outage (a new producer, or a blind re-send, would put a batch's
        late deliveries after its re-sent copies).
        """
        if not messages:
            return
        producer = await self._ensure_producer()
        prefix = self.topic_prefix
        # Only after a failed attempt are messages looked up by content (hashing every
        # message of every batch would be work on the hot path for the rare case).
        pending = self._pending
        sent: list[tuple[Message, asyncio.Future[Any]]] = []
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                for m in messages:
                    future = pending.pop((m.topic, m.key, m.value), None) if pending else None
                    if future is None or (future.done() and _failed(future)):
                        future = await producer.send(
                            prefix + m.topic,
                            m.value,
                            key=None if m.key is None else m.key.encode(),
                        )
                    sent.append((m, future))
        except (KafkaError, OSError, TimeoutError) as exc:
            self._failed_attempt(sent, exc)
        # asyncio.wait, unlike gather, leaves the futures running when it times out.
        done, waiting = await asyncio.wait([f for _, f in sent], timeout=self.publish_timeout_s)
        errors = [f.exception() for f in done if _failed(f)]
        if waiting or errors:
            self._failed_attempt(sent, errors[0] if errors else TimeoutError("no acknowledgement"))
        self.published += len(messages)

    def _failed_attempt(
        self, sent: list[tuple[Message, asyncio.Future[Any]]], exc: BaseException | None
    ) -> NoReturn:
        """Remember what is still in flight (or delivered since) for the next attempt."""
        self.failures += 1
        pending = self._pending
        if len(pending) > _MAX_PENDING:  # the caller moved on to other messages
            pending.clear()
        for m, future in sent:
            if not (future.done() and _failed(future)):  # failed ones are sent again
                pending[(m.topic, m.key, m.value)] = future
        logger.warning("kafka publish failed (%r); the batch will be offered again", exc)
        raise BusUnavailableError(f"kafka {self.bootstrap}: {exc!r}") from exc

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
        try:  # from the start: a start that fails half-way leaves connections open
            await consumer.start()
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


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.cancelled() or future.exception() is not None


async def _close(producer: AIOKafkaProducer, timeout: float) -> None:
    """Stop a producer; one whose broker is gone would wait for its batches forever."""
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        async with asyncio.timeout(timeout):
            await producer.stop()
