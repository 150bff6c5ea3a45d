"""The alerting service: alarms from the bus in, pages out, escalation driven from the store.

Four loops share one record store (``alerts.store``):

- *intake*: each fetched batch of ``envmon.alarms`` (consumer group ``<app_id>-alerts``)
  is handled by ``AlertEngine.handle_many`` in one transaction; only then is the next
  batch asked for, so the bus commits its offsets after the decisions are stored. A message that is
  not an alarm or system event goes to ``envmon.deadletter``. While the database does not
  answer, the same message is retried with back-off (nothing is skipped).
- *timers*: ``AlertEngine.tick`` takes the incidents whose timer is due (next step,
  reminder, end of maintenance or shelve); once an hour the hashes of handled events
  older than their retention (7 days) are forgotten, so that table stays bounded.
- *dispatch*: ``Dispatcher.dispatch`` sends what is due.
- *publish*: the bus outbox (``alert_bus_outbox``) goes to ``envmon.notifications``.

Any number of instances may run against one PostgreSQL store: timers and notifications
are claimed with ``FOR UPDATE SKIP LOCKED``, decisions have deterministic ids, and the
Kafka group splits the alarms between them. ``stop()`` (SIGTERM) ends the loops after the
step in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final, Protocol

import orjson
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from alerts.dispatcher import Dispatcher
from alerts.engine import AlertEngine
from alerts.store import RESOLVED, BusOutboxRow, IncidentRow
from envmon.bus import ALARMS, Bus, BusError, Message
from envmon.models import AlarmEvent, SystemEvent
from envmon.timeutil import utcnow
from excursions.consumer import dead_letter, until_stored

logger = logging.getLogger(__name__)

COMPONENT: Final = "alerts"
GROUP_SUFFIX: Final = "-alerts"
#: How often the timers, the dispatcher and the publisher look for due work.
DEFAULT_POLL_S: Final = 0.2
#: Outbox rows published per round.
PUBLISH_BATCH: Final = 500
#: Pause of a loop after the database or bus failed (it logs once per outage).
LOOP_RETRY_S: Final = 2.5
#: How often handled events older than their retention are forgotten.
PRUNE_EVERY_S: Final = 3_600.0

EVENT: Final[TypeAdapter[AlarmEvent | SystemEvent]] = TypeAdapter(AlarmEvent | SystemEvent)


class Forwarder(Protocol):
    """What the service needs of an Alertmanager forwarder (``alerts.alertmanager``)."""

    async def observe(self, event: AlarmEvent | SystemEvent) -> None:
        """Take note of an event (no I/O)."""

    async def tick(self, now: datetime) -> None:
        """Post what is due."""

    async def close(self) -> None:
        """Release the connection."""


class AlertService:
    """Runs the four loops (see the module docstring)."""

    def __init__(
        self,
        *,
        bus: Bus,
        db: Engine,
        engine: AlertEngine,
        dispatcher: Dispatcher,
        group: str,
        clock: Callable[[], datetime] = utcnow,
        poll_s: float = DEFAULT_POLL_S,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.bus = bus
        self.db = db
        self.engine = engine
        self.dispatcher = dispatcher
        self.group = group
        self.clock = clock
        self.poll_s = poll_s
        self.forwarder = forwarder
        self.handled = 0
        self.repeats = 0
        self.rejected = 0
        self.published = 0
        self._pruned_at: datetime | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Run until ``stop()``; a loop that fails ends the others and raises."""
        tasks = [
            asyncio.create_task(self._intake(), name="alerts-intake"),
            asyncio.create_task(self._loop(self.timers, "timers"), name="alerts-timers"),
            asyncio.create_task(self._loop(self.dispatch, "dispatch"), name="alerts-dispatch"),
            asyncio.create_task(self._loop(self.publish, "publish"), name="alerts-publish"),
        ]
        if self.forwarder is not None:
            await self._replay_open()
            tasks.append(
                asyncio.create_task(self._loop(self.forward, "forward"), name="alerts-forward")
            )
        stopper = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in (*tasks, stopper):
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
            if self.forwarder is not None:
                await self.forwarder.close()

    def stop(self) -> None:
        """Ask the loops to end (after the step in hand)."""
        self._stopping.set()

    # ---- one step of each loop (tests call these directly) ------------------------------

    async def handle(self, *events: AlarmEvent | SystemEvent) -> int:
        """Handle events in one transaction (retried while the database is away).

        Return how many changed something (the others were repeats).
        """
        changed = await until_stored(ALARMS, lambda: asyncio.to_thread(self._handle, events))
        if self.forwarder is not None:
            for event in events:
                await self.forwarder.observe(event)
        self._wake.set()
        return changed

    def _handle(self, events: tuple[AlarmEvent | SystemEvent, ...]) -> int:
        try:
            with Session(self.db) as session, session.begin():
                changed = self.engine.handle_many(session, events)
        except IntegrityError:  # another instance handled one of them meanwhile
            if len(events) > 1:  # one at a time, that one is skipped
                return sum(self._handle((event,)) for event in events)
            changed = 0
        self.handled += changed
        self.repeats += len(events) - changed
        return changed

    async def timers(self) -> int:
        """Take the due incident timers."""
        return await asyncio.to_thread(self._timers)

    def _timers(self) -> int:
        with Session(self.db) as session, session.begin():
            due = self.engine.tick(session)
        now = self.clock()
        if self._pruned_at is None or (now - self._pruned_at).total_seconds() >= PRUNE_EVERY_S:
            with Session(self.db) as session, session.begin():
                self.engine.prune(session)
            self._pruned_at = now
        return due

    async def dispatch(self) -> int:
        """Send the due notifications."""
        return await self.dispatcher.dispatch()

    async def forward(self) -> int:
        """Post what is due to Alertmanager (its own loop: a slow one holds up nothing else)."""
        if self.forwarder is not None:
            await self.forwarder.tick(self.clock())
        return 0

    async def _replay_open(self) -> None:
        """Tell the forwarder the open incidents (its state is in memory; offsets moved on)."""
        assert self.forwarder is not None
        events = await asyncio.to_thread(self._open_events)
        for event in events:
            await self.forwarder.observe(event)

    def _open_events(self) -> list[AlarmEvent | SystemEvent]:
        with Session(self.db) as session:
            rows = session.scalars(
                select(IncidentRow.event).where(IncidentRow.state != RESOLVED)
            ).all()
        found = []
        for payload in rows:
            with contextlib.suppress(ValidationError):
                found.append(EVENT.validate_python(payload))
        return found

    async def publish(self) -> int:
        """Publish the bus outbox; return how many messages went out."""
        rows = await asyncio.to_thread(self._unpublished)
        if not rows:
            return 0
        await self.bus.publish([Message(row[1], row[2], row[3]) for row in rows])
        await asyncio.to_thread(self._mark_published, [row[0] for row in rows])
        self.published += len(rows)
        return len(rows)

    def _unpublished(self) -> list[tuple[int, str, str, bytes]]:
        # the payloads are a model's JSON dump already (``outbox_row``): no second validation
        with Session(self.db) as session:
            rows = session.scalars(
                select(BusOutboxRow)
                .where(BusOutboxRow.published.is_(False))
                .order_by(BusOutboxRow.id)
                .limit(PUBLISH_BATCH)
            ).all()
            return [
                (
                    row.id,
                    row.topic,
                    row.key,
                    orjson.dumps(row.payload),
                )
                for row in rows
            ]

    def _mark_published(self, ids: list[int]) -> None:
        with Session(self.db) as session, session.begin():
            session.execute(
                update(BusOutboxRow).where(BusOutboxRow.id.in_(ids)).values(published=True)
            )

    async def step(self) -> None:
        """One round of timers, dispatch and publish (tests drive the service with this)."""
        await self.timers()
        await self.dispatch()
        await self.publish()

    # ---- loops ---------------------------------------------------------------------------

    async def _intake(self) -> None:
        async for batch in self.bus.subscribe_batches(ALARMS, self.group):
            events = []
            for message in batch:
                try:
                    events.append(EVENT.validate_json(message.value))
                except ValidationError as exc:
                    reason = "not an alarm or system event"
                    await dead_letter(self.bus, COMPONENT, message, reason, exc, self.clock())
                    self.rejected += 1
            if events:
                await self.handle(*events)
            if self._stopping.is_set():
                return

    async def _loop(self, step: Callable[[], Awaitable[int]], name: str) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                busy = await step()
            except (OperationalError, InterfaceError, BusError) as exc:
                if not failing:
                    logger.warning("%s: %s unavailable; retrying", name, type(exc).__name__)
                failing, busy = True, 0
                await asyncio.sleep(LOOP_RETRY_S)
                continue
            if failing:
                logger.warning("%s: running again", name)
                failing = False
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
