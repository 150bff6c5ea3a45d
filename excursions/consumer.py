"""The record store's consumers: records, alarms and notifications from the bus, stored once.

Works on either bus engine (``envmon.bus.Bus``): the in-process bus of the embedded
default or Kafka (``stream.kafka.bus.KafkaBus``, whose offsets are committed only after the
caller took the batch, so a crash repeats at most one batch — which the stores ignore: a
record is applied only if it is newer than the one held, an event only if not yet stored).
A message that is not what its topic carries goes to ``envmon.deadletter`` with the
validation error; the consumer goes on. While the database does not answer (a PostgreSQL
restart, a network break) the consumer retries the same message with back-off, logging one
warning when the outage starts and one line when it ends: nothing is skipped, and no
offset moves past a message that was not stored.

- ``consume_records``: ``envmon.excursions`` (excursion records and data gaps) into
  ``RecordStore``;
- ``consume_events``: ``envmon.alarms`` and ``envmon.notifications`` into
  ``TimelineStore`` (system events on the alarms topic are skipped, not dead-lettered).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError

from envmon.bus import ALARMS, DEADLETTER, EXCURSIONS, NOTIFICATIONS, Bus, Message
from envmon.models import DeadLetter
from envmon.timeutil import utcnow
from excursions.records import RECORD, RecordStore
from excursions.timeline import EVENT, TimelineStore

GROUP: Final = "envmon-records"
EVENTS_GROUP: Final = "envmon-timeline"
COMPONENT: Final = "record-consumer"
#: What each topic the record store reads carries, for the dead letter's reason.
WHAT: Final = {
    EXCURSIONS: "an excursion record or data gap",
    ALARMS: "an alarm or system event",
    NOTIFICATIONS: "a notification",
}

#: Back-off between attempts while the database is unavailable.
RETRY_INITIAL_S: Final = 0.5
RETRY_MAX_S: Final = 10.0

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_T_contra = TypeVar("_T_contra", contravariant=True)


class _Store(Protocol[_T_contra]):
    rejected: int

    def apply(self, item: _T_contra, /) -> bool: ...


async def _consume(
    bus: Bus,
    topic: str,
    group: str,
    adapter: TypeAdapter[_T],
    store: _Store[_T],
    clock: Callable[[], datetime],
) -> None:
    async for message in bus.subscribe(topic, group):
        try:
            item = adapter.validate_json(message.value)
        except ValidationError as exc:
            await dead_letter(bus, COMPONENT, message, f"not {WHAT[topic]}", exc, clock())
            store.rejected += 1
            continue
        await until_stored(topic, functools.partial(asyncio.to_thread, store.apply, item))


async def dead_letter(
    bus: Bus, component: str, message: Message, what: str, exc: ValidationError, now: datetime
) -> None:
    """Put a message that is not ``what`` its topic carries on ``envmon.deadletter``.

    The reason names the first field at fault and the rule, never the value.
    """
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    letter = DeadLetter.of(
        component, message.topic, f"{what}: {where}: {first['msg']}", message.value, now
    )
    await bus.publish([Message(DEADLETTER, message.key, letter.model_dump_json().encode())])


async def until_stored(what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``attempt`` until the database takes it (it is unavailable, not wrong, meanwhile).

    One warning, naming ``what``, when the outage starts and one line when it ends; the
    back-off doubles from ``RETRY_INITIAL_S`` to ``RETRY_MAX_S``. Used by every consumer
    that writes the record store (records, timeline, the alerting service).
    """
    delay, failing_since = RETRY_INITIAL_S, None
    while True:
        try:
            result = await attempt()
        except (OperationalError, InterfaceError) as exc:
            if failing_since is None:
                failing_since = asyncio.get_running_loop().time()
                logger.warning(
                    "%s: the record store is unavailable (%s); retrying until it answers",
                    what,
                    type(exc.orig or exc).__name__,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            continue
        if failing_since is not None:
            logger.warning(
                "%s: the record store answers again after %.0f s",
                what,
                asyncio.get_running_loop().time() - failing_since,
            )
        return result


async def consume_records(
    bus: Bus,
    store: RecordStore,
    *,
    group: str = GROUP,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Store every record published on ``envmon.excursions``, forever (cancel to stop)."""
    await _consume(bus, EXCURSIONS, group, RECORD, store, clock)


async def consume_events(
    bus: Bus,
    store: TimelineStore,
    topic: str,
    *,
    group: str = EVENTS_GROUP,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Store every alarm event or notification published on ``topic``, forever."""
    if topic not in (ALARMS, NOTIFICATIONS):
        raise ValueError(f"consume_events reads {ALARMS} or {NOTIFICATIONS}, not {topic}")
    await _consume(bus, topic, group, EVENT, store, clock)
