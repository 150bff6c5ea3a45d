"""The record store's consumer: excursion records and data gaps from the bus, stored once.

Works on either bus engine (``envmon.bus.Bus``): the in-process bus of the embedded
default or Kafka (``stream.kafka_bus.KafkaBus``, whose offsets are committed only after the
caller took the batch, so a crash repeats at most one batch — which the store ignores, as it
applies a record only if it is newer than the one it holds). A message that is not a valid
record goes to ``envmon.deadletter`` with the validation error; the consumer goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Final

from pydantic import ValidationError

from envmon.bus import DEADLETTER, EXCURSIONS, Bus, Message
from envmon.models import DeadLetter
from envmon.timeutil import utcnow
from excursions.records import RECORD, RecordStore

GROUP: Final = "envmon-records"
COMPONENT: Final = "record-consumer"


async def consume_records(
    bus: Bus,
    store: RecordStore,
    *,
    group: str = GROUP,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Store every record published on ``envmon.excursions``, forever (cancel to stop)."""
    async for message in bus.subscribe(EXCURSIONS, group):
        try:
            record = RECORD.validate_json(message.value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "message"
            letter = DeadLetter.of(
                COMPONENT,
                EXCURSIONS,
                f"not an excursion record or data gap: {where}: {first['msg']}",
                message.value,
                clock(),
            )
            await bus.publish([Message(DEADLETTER, message.key, letter.model_dump_json().encode())])
            store.rejected += 1
            continue
        await asyncio.to_thread(store.apply, record)
