"""The Kafka engine of the bus port (``envmon.bus.Bus``), on aiokafka.

The collectors' buffers publish through it when ``ENVMON_BUS=kafka``; tests and tools read
topics through ``subscribe``. The stream worker itself consumes with faust
(``stream.kafka.app``), not through this class.

- **Durable before it returns.** ``publish`` sends a batch and waits until every message is
  acknowledged by all in-sync replicas (``acks=all``) of an idempotent producer, so the
  Outbox deletes only what Kafka holds. Keys are the sensor ids: Kafka's default
  partitioner (murmur2, the same in Java and aiokafka) keeps each sensor on one partition
  and the stream worker's table co-partitioned with it.
- **Unavailable, not stuck.** A broker that is down, a timeout or any Kafka error during a
  publish raises ``BusUnavailableError`` within about ``2 × publish_timeout_s``; the
  Outbox keeps the batch and offers it again.
- **In order across an outage, and never stuck on a broken producer.** While a publish
  only times out, the producer stays: it still holds the messages and retries them itself,
  in order, and the next attempt awaits them instead of sending them twice. Any other
  failure replaces the producer (a new producer id): a batch that failed has spent its
  sequence number, and an idempotent producer's every later batch to that partition is
  then refused as ``OutOfOrderSequenceNumber`` for ever (aio-libs/aiokafka#1017: a batch
  that waits longer than the request timeout for a partition leader during a broker
  restart is failed after its sequence was assigned); so is a producer fenced, unknown to
  the broker, or whose sender died, and one that has had nothing acknowledged for
  ``replace_after_s``. The old producer is closed first (its sender stopped, its
  connections closed); only then does the next attempt send, through the new one, what
  the old one had not got acknowledged, in the original order. A message the old one
  delivered without an acknowledgement may so arrive twice (consumers are idempotent);
  none arrives after a newer one of its key.

One publisher at a time: concurrent ``publish`` calls are serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError

from envmon.bus import DEFAULT_BATCH, BusUnavailableError, Message
from envmon.timeutil import utcnow

logger = logging.getLogger(__name__)

DEFAULT_PUBLISH_TIMEOUT_S: Final = 15.0
#: A producer that has had nothing acknowledged for this long is replaced (seconds).
DEFAULT_REPLACE_AFTER_S: Final = 60.0
#: How long ``stop`` lets the producer flush before it closes it anyway (seconds).
STOP_FLUSH_S: Final = 5.0
_LINGER_MS: Final = 5
_MAX_BATCH_BYTES: Final = 1 << 20
_MAX_PENDING: Final = 100_000


@dataclass
class SubscriptionStats:
    """What one ``subscribe`` (topic and group) has read, for the metrics endpoint."""

    topic: str
    group: str
    handled: int = 0  #: messages the caller took and finished with (asked for the next)
    lag: int = 0  #: messages on the broker not yet fetched, as of the last fetch
    last_handled_at: datetime | None = None


class KafkaBus:
    """Publish/subscribe on a Kafka cluster (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "envmon",
        topic_prefix: str = "",
        publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S,
        replace_after_s: float = DEFAULT_REPLACE_AFTER_S,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.topic_prefix = topic_prefix
        self.publish_timeout_s = publish_timeout_s
        self.replace_after_s = replace_after_s
        self.published = 0  #: messages acknowledged
        self.failures = 0  #: failed publish attempts
        self.replacements = 0  #: producers replaced by a new one (see the module docstring)
        self.last_published_at: datetime | None = None  #: when a publish last succeeded
        self.subscriptions: dict[tuple[str, str], SubscriptionStats] = {}
        self._clock = clock
        self._monotonic = monotonic
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        # Messages of failed attempts still in flight (or delivered since), by content.
        self._pending: dict[tuple[str, str | None, bytes], asyncio.Future[Any]] = {}
        # Since when the current producer has held messages it got no acknowledgement for.
        self._unacked_since: float | None = None
        self._failing_since: float | None = None  # the first failed attempt of a run
        self._failed_attempts = 0  # in the current run of failures

    async def start(self) -> None:
        """Connect the producer; raise ``BusUnavailableError`` if Kafka cannot be reached."""
        await self._ensure_producer()

    async def stop(self) -> None:
        """Flush (for a few seconds at most) and close the producer.

        What it has not delivered by then is still in the caller's buffer: a stopping
        service does not wait for a broker that is away (systemd would kill it).
        """
        producer, self._producer = self._producer, None
        if producer is not None:
            await _close(producer, min(self.publish_timeout_s, STOP_FLUSH_S))

    @property
    def failing(self) -> bool:
        """True from a failed publish attempt until one succeeds."""
        return self._failing_since is not None

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
        meanwhile are not sent a second time: while the producer is kept it still retries
        them in order, and this call waits for them; once it was replaced, what it
        delivered is skipped and the rest is sent by the new one (see the module docstring).
        """
        if not messages:
            return
        async with self._lock:
            await self._publish(messages)

    async def _publish(self, messages: list[Message]) -> None:
        try:
            producer = await self._ensure_producer()
        except BusUnavailableError as exc:
            self._failed(exc.__cause__ or exc)
            raise
        prefix = self.topic_prefix
        # Only after a failed attempt are messages looked up by content (hashing every
        # message of every batch would be work on the hot path for the rare case).
        pending = self._pending
        sent: list[tuple[Message, asyncio.Future[Any]]] = []
        problem: BaseException | None = None
        replace = False
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
        except (KafkaTimeoutError, TimeoutError) as exc:  # the producer waits for room
            problem = exc
        except (KafkaError, OSError) as exc:  # closed, fenced, its sender dead: replace it
            problem, replace = exc, True
        if problem is None:
            # asyncio.wait, unlike gather, leaves the futures running when it times out.
            done, waiting = await asyncio.wait(
                [f for _, f in sent],
                timeout=self.publish_timeout_s,
                return_when=asyncio.FIRST_EXCEPTION,
            )
            errors = [f.exception() for f in done if _failed(f)]
            if errors:  # a batch failed: its sequence number is spent (module docstring)
                problem, replace = errors[0] or KafkaError("cancelled"), True
            elif waiting:
                problem = TimeoutError(f"no acknowledgement within {self.publish_timeout_s:g} s")
        if problem is None:
            self._succeeded(len(messages))
            return
        self._remember(sent)
        now = self._monotonic()
        if self._unacked_since is None:
            self._unacked_since = now
        elif now - self._unacked_since >= self.replace_after_s:
            replace = True  # whatever it is waiting for, it has not come for too long
        if replace:
            await self._replace(producer, problem)
        self._failed(problem)
        raise BusUnavailableError(f"kafka {self.bootstrap}: {problem!r}") from problem

    def _remember(self, sent: list[tuple[Message, asyncio.Future[Any]]]) -> None:
        """Keep what is still in flight (or delivered since) for the next attempt."""
        pending = self._pending
        if len(pending) > _MAX_PENDING:  # the caller moved on to other messages
            pending.clear()
        for m, future in sent:
            if not (future.done() and _failed(future)):  # failed ones are sent again
                pending[(m.topic, m.key, m.value)] = future

    async def _replace(self, producer: AIOKafkaProducer, problem: BaseException) -> None:
        """Close ``producer`` for good; the next attempt makes a new one (new producer id)."""
        self.replacements += 1
        self._producer = None
        self._unacked_since = None
        logger.warning(
            "kafka producer replaced after %r: a new producer (new producer id) sends what "
            "it had not got acknowledged, in order, once it is closed",
            problem,
        )
        await _close(producer, self.publish_timeout_s)
        # Only what it delivered is skipped next time; everything else is sent again.
        self._pending = {
            key: future
            for key, future in self._pending.items()
            if future.done() and not _failed(future)
        }

    def _succeeded(self, count: int) -> None:
        self.published += count
        self.last_published_at = self._clock()
        self._unacked_since = None
        if self._failing_since is not None:
            logger.info(
                "kafka %s takes messages again (%d failed attempt(s) over %.0f s)",
                self.bootstrap,
                self._failed_attempts,
                self._monotonic() - self._failing_since,
            )
            self._failing_since = None
            self._failed_attempts = 0

    def _failed(self, problem: BaseException) -> None:
        """Count a failed attempt; log the first of a run (the buffer retries the rest)."""
        self.failures += 1
        self._failed_attempts += 1
        if self._failing_since is None:
            self._failing_since = self._monotonic()
            logger.warning(
                "kafka publish failed (%r); the messages wait in the buffer and are offered "
                "again until Kafka takes them",
                problem,
            )
        else:
            logger.debug("kafka publish failed again (%r)", problem)

    async def subscribe(self, topic: str, group: str) -> AsyncIterator[Message]:
        """Yield the messages of ``topic`` for ``group``, committing what was consumed.

        Offsets are committed after each fetched batch was taken by the caller (when it
        asks for the next message), so a crash repeats at most one batch. What was taken
        and the lag are counted in ``subscriptions[(topic, group)]``.
        """
        stats = self.subscriptions[(topic, group)] = SubscriptionStats(topic, group)
        lags: dict[Any, int] = {}
        consumer = self._consumer(topic, group)
        try:  # from the start: a start that fails half-way leaves connections open
            await consumer.start()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=1_000)
                for tp, records in batches.items():
                    if records:
                        highwater = consumer.highwater(tp)
                        if highwater is not None:
                            lags[tp] = max(0, highwater - records[-1].offset - 1)
                stats.lag = sum(lags.values())
                for records in batches.values():
                    for record in records:
                        key = None if record.key is None else bytes(record.key).decode()
                        yield Message(topic, key, bytes(record.value))
                        stats.handled += 1  # the caller asked for the next: done with it
                        stats.last_handled_at = self._clock()
                if batches:
                    await consumer.commit()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _consumer(self, topic: str, group: str) -> AIOKafkaConsumer:
        """Return a consumer of ``topic`` for ``group`` that commits only when told to."""
        return AIOKafkaConsumer(
            self.topic_prefix + topic,
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def subscribe_batches(
        self, topic: str, group: str, max_messages: int = DEFAULT_BATCH
    ) -> AsyncIterator[list[Message]]:
        """Yield each fetch of ``topic`` for ``group`` as one batch, committing what was taken.

        A batch's offsets are committed when the caller asks for the next batch, so a crash
        repeats at most the batch in hand (per-partition order is kept inside a batch).
        """
        stats = self.subscriptions[(topic, group)] = SubscriptionStats(topic, group)
        consumer = self._consumer(topic, group)
        try:
            await consumer.start()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=max_messages)
                batch = [
                    Message(
                        topic,
                        None if record.key is None else bytes(record.key).decode(),
                        bytes(record.value),
                    )
                    for records in batches.values()
                    for record in records
                ]
                if not batch:
                    continue
                yield batch
                stats.handled += len(batch)
                stats.last_handled_at = self._clock()
                try:
                    await consumer.commit()
                except CommitFailedError:  # a rebalance: the new owner gets the batch again
                    logger.warning("%s: offsets not committed (group %s rebalanced)", topic, group)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.cancelled() or future.exception() is not None


async def _close(producer: AIOKafkaProducer, timeout: float) -> None:
    """Stop a producer for good: flush within ``timeout``, else stop its sender.

    ``stop`` waits until every queued batch is delivered, for ever with the broker gone.
    After ``timeout`` the producer's sender task is cancelled (aiokafka's own ``stop`` then
    closes its connections) and what it still held is failed: after this returns, it sends
    nothing more (so a new producer's copies cannot be overtaken by its late batches).
    """
    stopping = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait([stopping], timeout=timeout)
    if not done:
        sender = getattr(producer, "_sender", None)  # aiokafka has no public way to abort
        task = getattr(sender, "sender_task", None)
        if task is not None:
            task.cancel()
        done, _ = await asyncio.wait([stopping], timeout=timeout)
    if not done:
        stopping.cancel()
        logger.error("a kafka producer did not stop within %.0f s", 2 * timeout)
    elif not stopping.cancelled() and stopping.exception() is not None:
        logger.debug("closing a kafka producer: %r", stopping.exception())
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is not None:  # resolve what it never delivered: nobody waits for ever
        accumulator.fail_all(KafkaError("the producer was closed"))
