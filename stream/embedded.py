"""The embedded stream processor: readings from the bus through the core, events back out.

One asyncio task consumes ``envmon.readings``, evaluates each reading with the same
``Evaluator`` as ``envmon replay``, publishes alarm events to ``envmon.alarms`` and
excursion records and data gaps to ``envmon.excursions``, and writes the readings to the
time-series store. Silence is judged on the injectable clock: a reading counts as heard
when it is handled, and the clock moves on after a batch once nothing more waits on the
bus, and with a tick between readings, so a silent sensor raises its communication-loss
alarm without waiting for other data while readings that arrive behind the clock (a
burst, a drained buffer, a backlog after a stall) are judged in their own data time.
Proofs of life (``ProofOfLife`` on the readings topic) reach the core as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Final

from pydantic import ValidationError

from envmon.bus import ALARMS, DEADLETTER, EXCURSIONS, READINGS, Bus, InMemoryBus, Message
from envmon.models import (
    AlarmEvent,
    CoreEvent,
    DeadLetter,
    ProofOfLife,
    Reading,
    decode_readings_message,
    names_proof_of_life,
)
from envmon.sensors import SensorSpec
from envmon.timeutil import to_us, utcnow
from stream.core.evaluator import Evaluator, UnknownSensorError
from stream.timeseries.context import ContextPoint, ContextTrail
from stream.timeseries.sqlite import SqliteTimeSeries

logger = logging.getLogger(__name__)

DEFAULT_GROUP: Final = "envmon-stream"
DEFAULT_TICK_S: Final = 1.0
MAX_BATCH: Final = 500

EventListener = Callable[[CoreEvent], None]


class StreamProcessor:
    """Runs the evaluation core on the bus (the embedded engine)."""

    def __init__(
        self,
        bus: Bus,
        specs: Iterable[SensorSpec],
        *,
        store: SqliteTimeSeries | None = None,
        clock: Callable[[], datetime] = utcnow,
        tick_s: float = DEFAULT_TICK_S,
        group: str = DEFAULT_GROUP,
        listener: EventListener | None = None,
        site: str = "",
    ) -> None:
        specs = list(specs)
        self.bus = bus
        self.evaluator = Evaluator(specs)
        self.evaluator.hold = True  # the clock moves once what waits is read (see handle)
        self.store = store
        self.clock = clock
        self.tick_s = tick_s
        self.group = group
        self.listener = listener
        #: The context series (``stream.timeseries.context``), written beside the readings.
        self.trail = ContextTrail(specs, site) if store is not None else None
        self.readings = 0
        self.proofs = 0
        self.rejected = 0
        self.last: dict[str, Reading] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = False
        self._handling = False

    async def start(self) -> None:
        """Start consuming readings and ticking the clock."""
        self._tasks = [
            asyncio.create_task(self._consume(), name="stream-consume"),
            asyncio.create_task(self._tick(), name="stream-tick"),
        ]

    async def stop(self) -> None:
        """Stop both tasks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _consume(self) -> None:
        stream = self.bus.subscribe(READINGS, self.group)
        self._subscribed = True
        async for message in stream:
            await self.handle([message])

    def _waiting(self) -> bool:
        """Tell whether readings wait on the bus for this processor (a backlog)."""
        bus = self.bus
        return (
            self._subscribed
            and isinstance(bus, InMemoryBus)
            and bus.pending(READINGS, self.group) > 0
        )

    async def handle(self, messages: Sequence[Message]) -> None:
        """Evaluate a batch of reading messages and publish what they cause."""
        self._handling = True
        try:
            await self._handle(messages)
        finally:
            self._handling = False

    async def _handle(self, messages: Sequence[Message]) -> None:
        out: list[Message] = []
        readings: list[Reading] = []
        context: list[ContextPoint] = []
        trail = self.trail
        now_us = to_us(self.clock())
        for message in messages:
            try:
                item = decode_readings_message(message.value)
                events = self.evaluator.process(item, now_us)
            except (ValidationError, UnknownSensorError) as exc:
                self.rejected += 1
                what = "proof of life" if names_proof_of_life(message.value) else "reading"
                reason = (
                    f"unknown sensor {exc.args[0]!r}"
                    if isinstance(exc, UnknownSensorError)
                    else f"invalid {what}: {exc.errors(include_url=False)[0]['msg']}"
                )
                letter = DeadLetter.of("stream", message.topic, reason, message.value, self.clock())
                out.append(Message(DEADLETTER, message.key, letter.model_dump_json().encode()))
                continue
            out.extend(self._encode(events))
            if trail is not None:
                if isinstance(item, Reading):
                    context += trail.reading(item.sensor_id, to_us(item.ts))
                if events:
                    context += self._context(events, now_us)
            if isinstance(item, ProofOfLife):
                self.proofs += 1  # evidence of life, not a sample: not stored, not "last"
                continue
            self.readings += 1
            self.last[item.sensor_id] = item
            readings.append(item)
        if not self._waiting():  # read up to now: a silence until now is real
            events = self.evaluator.advance(now_us)
            out.extend(self._encode(events))
            context += self._context(events, now_us, sweep=True)
        if self.store is not None and readings:
            await asyncio.to_thread(self.store.write, readings)
        await self._write_context(context)
        if out:
            await self.bus.publish(out)

    def _context(
        self, events: Sequence[CoreEvent], now_us: int, *, sweep: bool = False
    ) -> list[ContextPoint]:
        """Return the context points of events, and every channel's status when due."""
        trail = self.trail
        if trail is None:
            return []
        evaluator = self.evaluator
        points = trail.after_events(now_us, events, evaluator.state_of)
        if sweep:
            points += trail.sweep(
                now_us, lambda: ((sid, evaluator.state_of(sid)) for sid in evaluator.sensor_ids)
            )
        return points

    async def _write_context(self, points: list[ContextPoint]) -> None:
        store = self.store
        if points and store is not None:
            await asyncio.to_thread(store.write_context, points)

    async def tick(self) -> None:
        """Advance the core to the clock's time once: stale-data alarms of silent sensors.

        Not while readings are being handled or wait on the bus: they may be the very ones
        the tick would call missing.
        """
        if self._handling or self._waiting():
            return
        now_us = to_us(self.clock())
        events = self.evaluator.advance(now_us)
        await self._write_context(self._context(events, now_us, sweep=True))
        if events:
            await self.bus.publish(self._encode(events))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self.tick()

    def _encode(self, events: Iterable[CoreEvent]) -> list[Message]:
        out: list[Message] = []
        for event in events:
            if self.listener is not None:
                self.listener(event)
            topic = ALARMS if isinstance(event, AlarmEvent) else EXCURSIONS
            out.append(Message(topic, event.sensor_id, event.model_dump_json().encode()))
        return out
