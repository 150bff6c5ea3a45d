"""The bus port: how readings, alarms, excursions and dead letters travel between packages.

``Bus`` is the small interface every engine implements: the in-process ``InMemoryBus``
here (the embedded default) and the Kafka adapter in ``stream/kafka``. Messages are
bytes with an optional key (the sensor id for readings, so one sensor's readings stay in
order on one partition).

Errors::

    BusError
     └── BusUnavailableError   the bus cannot take messages now; retry later
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from envmon.errors import EnvmonError

READINGS: Final = "envmon.readings"
ALARMS: Final = "envmon.alarms"
EXCURSIONS: Final = "envmon.excursions"
DEADLETTER: Final = "envmon.deadletter"
NOTIFICATIONS: Final = "envmon.notifications"
ALL_TOPICS: Final = (READINGS, ALARMS, EXCURSIONS, DEADLETTER, NOTIFICATIONS)
#: Signed checkpoints of the QA record store's audit trail (``excursions.checkpoints``): one
#: partition (in order), kept for ever (``AUDIT_TOPIC_CONFIG``); not among ``ALL_TOPICS``,
#: which are partitioned by sensor.
AUDIT: Final = "envmon.audit"
AUDIT_TOPIC_CONFIG: Final = {
    "cleanup.policy": "delete",
    "retention.ms": "-1",
    "retention.bytes": "-1",
}
DEFAULT_QUEUE_SIZE: Final = 10_000
#: The most messages ``subscribe_batches`` yields at once.
DEFAULT_BATCH: Final = 1_000


class BusError(EnvmonError):
    """Base class of bus failures."""


class BusUnavailableError(BusError):
    """The bus cannot take messages now (down, refusing, or full); the caller retries."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message on the bus."""

    topic: str
    key: str | None
    value: bytes


class Bus(Protocol):
    """Publish/subscribe with at-least-once delivery and per-key order."""

    async def start(self) -> None:
        """Connect; idempotent."""
        ...

    async def stop(self) -> None:
        """Flush and disconnect; idempotent."""
        ...

    async def publish(self, messages: list[Message]) -> None:
        """Publish messages in order; return once the bus has them (raise if it cannot)."""
        ...

    def subscribe(self, topic: str, group: str) -> AsyncIterator[Message]:
        """Yield the messages of ``topic`` for consumer ``group``, in publish order."""
        ...

    def subscribe_batches(self, topic: str, group: str) -> AsyncIterator[list[Message]]:
        """Yield what is there in batches: a batch counts as consumed when the next is asked for.

        For consumers that store a whole batch in one transaction (one commit, not one
        per message); the per-key order is kept within and across batches.
        """
        ...


@dataclass
class InMemoryBus:
    """The embedded bus: bounded asyncio queues in one process.

    Each (topic, group) gets its own queue; a publisher waits while a subscriber's queue is
    full (back-pressure instead of loss). Messages published to a topic before any group
    subscribed to it are kept for the first subscriber, up to the same bound.
    """

    queue_size: int = DEFAULT_QUEUE_SIZE
    _queues: dict[str, dict[str, asyncio.Queue[Message]]] = field(default_factory=dict)
    _backlog: dict[str, asyncio.Queue[Message]] = field(default_factory=dict)
    published: int = 0

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    async def publish(self, messages: list[Message]) -> None:
        """Put each message on every subscribed group's queue (waiting while full)."""
        for message in messages:
            groups = self._queues.get(message.topic)
            if groups:
                for queue in groups.values():
                    if queue.full():
                        await queue.put(message)
                    else:
                        queue.put_nowait(message)  # without a coroutine per message
            else:
                backlog = self._backlog.setdefault(message.topic, asyncio.Queue(self.queue_size))
                await backlog.put(message)
            self.published += 1

    def _queue(self, topic: str, group: str) -> asyncio.Queue[Message]:
        groups = self._queues.setdefault(topic, {})
        queue = groups.get(group)
        if queue is None:
            backlog = self._backlog.pop(topic, None)
            queue = groups[group] = (
                backlog if backlog is not None else asyncio.Queue(self.queue_size)
            )
        return queue

    async def subscribe(self, topic: str, group: str) -> AsyncIterator[Message]:
        """Yield messages of ``topic`` for ``group`` forever."""
        queue = self._queue(topic, group)
        while True:
            yield await queue.get()

    async def subscribe_batches(
        self, topic: str, group: str, max_messages: int = DEFAULT_BATCH
    ) -> AsyncIterator[list[Message]]:
        """Yield every message waiting for ``group`` on ``topic`` at once (at least one)."""
        queue = self._queue(topic, group)
        while True:
            batch = [await queue.get()]
            while len(batch) < max_messages and not queue.empty():
                batch.append(queue.get_nowait())
            yield batch

    def pending(self, topic: str, group: str) -> int:
        """Return how many messages wait for ``group`` on ``topic``."""
        return self._queue(topic, group).qsize()
