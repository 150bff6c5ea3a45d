"""Alarm events and notifications stored once; a record's timeline merges them with people's
actions and signatures; the consumer dead-letters what is not an event."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from envmon.bus import ALARMS, DEADLETTER, EXCURSIONS, NOTIFICATIONS, InMemoryBus, Message
from envmon.models import (
    AlarmEvent,
    AlarmKind,
    DataGap,
    ExcursionRecord,
    Notification,
    NotificationStatus,
    SystemEvent,
    SystemEventKind,
)
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import verify
from excursions.consumer import consume_events
from excursions.db import ExcursionRow, TimelineEventRow
from excursions.lifecycle import Lifecycle
from excursions.records import RecordStore
from excursions.timeline import TimelineEntry, TimelineStore, event_id, timeline
from excursions.users import UserStore

from .conftest import FAST_HASHER, store_core_events
from .lifecycle_cases import ASSESSMENT, QA_PASSWORD, sign
from .test_records import core_events


def alarms() -> list[AlarmEvent]:
    return [e for e in core_events() if isinstance(e, AlarmEvent)]


def excursion_id() -> str:
    return next(e.id for e in core_events() if isinstance(e, ExcursionRecord))


def notification(status: NotificationStatus, minutes: float, **fields: object) -> Notification:
    raised = next(a for a in alarms() if a.event is AlarmKind.RAISED)
    values: dict[str, object] = {
        "status": status,
        "sensor_id": raised.sensor_id,
        "excursion_id": raised.excursion_id,
        "alarm": raised.event,
        "level": raised.level,
        "channel": "email",
        "recipient": "oncall@example.org",
        "ts": raised.ts + timedelta(minutes=minutes),
    }
    return Notification.model_validate(values | fields)


def stored(engine: Engine) -> tuple[RecordStore, TimelineStore]:
    return store_core_events(engine, FakeClock(DEFAULT_T0))


def entries_of(engine: Engine, record_id: str) -> list[TimelineEntry]:
    with Session(engine) as session:
        row = session.get(ExcursionRow, record_id)
        assert row is not None
        return timeline(session, row)


def test_each_event_is_stored_once_and_system_events_are_skipped(engine: Engine) -> None:
    _, events = stored(engine)
    n = len(alarms())
    assert n >= 4  # raised, escalated, cleared, stale, restored
    assert events.applied == n
    for event in alarms():  # delivered again
        assert not events.apply(event)
    system = SystemEvent(event=SystemEventKind.BUFFER_FULL, component="outbox", ts=DEFAULT_T0)
    assert not events.apply(system)
    assert (events.applied, events.ignored, events.skipped) == (n, n, 1)
    assert event_id(alarms()[0]) == event_id(alarms()[0].model_copy())
    with Session(engine) as session:
        count = select(func.count()).select_from(TimelineEventRow)
        assert session.execute(count).scalar_one() == n


def test_timeline_merges_alarms_notifications_actions_and_signatures(engine: Engine) -> None:
    stored(engine)
    clock = FakeClock(DEFAULT_T0 + timedelta(hours=2))
    events = TimelineStore(engine, clock=clock)
    events.apply(notification(NotificationStatus.SENT, 0.5))
    events.apply(notification(NotificationStatus.ACKNOWLEDGED, 3, detail="by SMS reply"))

    users = UserStore(engine, clock=clock, hasher=FAST_HASHER)
    olga = users.add(
        "olga", "Olga Operator", "operator", "olga password 123", actor="a", reason="t"
    )
    quinn = users.add("quinn", "Quinn QA", "qa", QA_PASSWORD, actor="a", reason="t")
    life = Lifecycle(engine, users, clock=clock)
    record_id = excursion_id()
    with Session(engine) as session:
        row = session.get(ExcursionRow, record_id)
        assert row is not None
        v = row.row_version
    clock.advance(60)
    v = life.acknowledge(record_id, olga, "Door closed by Olga", version=v)
    clock.advance(60)
    v = life.comment(record_id, olga, "Probe checked", version=v)
    clock.advance(60)
    v = life.start_review(record_id, quinn, "routine review", version=v)
    v = life.assess(record_id, quinn, ASSESSMENT, "assessed", version=v)
    clock.advance(60)
    sign(life.close, record_id, version=v, reason="no impact")

    entries = entries_of(engine, record_id)
    assert entries == sorted(entries, key=lambda e: e.at)
    kinds = [e.kind for e in entries]
    titles = [e.title for e in entries]
    assert titles[:2] == ["alarm raised", "notification sent (email)"]
    assert {"alarm escalated", "alarm cleared", "notification acknowledged (email)"} <= set(titles)
    assert titles[-6:] == [
        "acknowledged",
        "comment",
        "review started",
        "assessment recorded",
        "closed",
        "signed (approved)",
    ]
    assert kinds.count("signature") == 1
    by_title = {e.title: e for e in entries}
    assert by_title["acknowledged"].who == "olga"
    assert "Door closed by Olga" in by_title["acknowledged"].detail
    assert by_title["comment"].detail == "Probe checked"
    assert "Impact on products" in by_title["assessment recorded"].detail
    assert by_title["signed (approved)"].who == "Quinn QA"
    assert "by SMS reply" in by_title["notification acknowledged (email)"].detail
    assert "value" in by_title["alarm raised"].detail
    assert "alarm stale" not in titles  # the data gap's events belong to the gap


def test_a_data_gap_shows_the_sensors_stale_and_restored_events(engine: Engine) -> None:
    stored(engine)
    gap = next(e for e in core_events() if isinstance(e, DataGap) and e.end is not None)
    titles = [e.title for e in entries_of(engine, gap.id)]
    assert titles == ["alarm stale", "alarm restored"]


def test_timeline_events_are_append_only(engine: Engine) -> None:
    stored(engine)
    with engine.connect() as connection:
        for statement in (
            "UPDATE timeline_events SET event = 'cleared'",
            "DELETE FROM timeline_events",
        ):
            with pytest.raises(DatabaseError, match="append-only"):
                connection.execute(text(statement))


async def test_the_consumer_stores_events_and_dead_letters_the_rest(engine: Engine) -> None:
    bus = InMemoryBus()
    await bus.start()
    store = TimelineStore(engine, clock=FakeClock(DEFAULT_T0))
    letters: list[bytes] = []

    async def read_letters() -> None:
        async for message in bus.subscribe(DEADLETTER, "test"):
            letters.append(message.value)

    reader = asyncio.create_task(read_letters())
    consumers = [
        asyncio.create_task(consume_events(bus, store, topic)) for topic in (ALARMS, NOTIFICATIONS)
    ]
    await asyncio.sleep(0)
    system = SystemEvent(event=SystemEventKind.CONNECTED, component="mqtt", ts=DEFAULT_T0)
    sent = notification(NotificationStatus.SENT, 1)
    await bus.publish(
        [Message(ALARMS, a.sensor_id, a.model_dump_json().encode()) for a in alarms()]
        + [
            Message(ALARMS, "mqtt", system.model_dump_json().encode()),
            Message(ALARMS, "x", b'{"kind": "alarm", "event": "exploded"}'),
            Message(NOTIFICATIONS, sent.sensor_id, sent.model_dump_json().encode()),
            Message(NOTIFICATIONS, sent.sensor_id, sent.model_dump_json().encode()),
        ]
    )
    try:
        async with asyncio.timeout(10):
            while (
                store.applied + store.ignored + store.skipped + store.rejected < len(alarms()) + 4
            ):
                await asyncio.sleep(0.01)
            while not letters:
                await asyncio.sleep(0.01)
    finally:
        for task in (*consumers, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.stop()
    assert (store.applied, store.ignored, store.skipped, store.rejected) == (
        len(alarms()) + 1,
        1,
        1,
        1,
    )
    assert len(letters) == 1
    assert b"not an alarm or system event" in letters[0]
    with pytest.raises(ValueError, match="consume_events reads"):
        await consume_events(bus, store, EXCURSIONS)


def test_threads_writing_at_once_wait_for_each_other(engine: Engine) -> None:
    """The embedded store is written by the consumers' and the web app's threads at once."""
    records, events = RecordStore(engine), TimelineStore(engine)
    all_events = core_events()
    many = [
        notification(NotificationStatus.SENT, minutes, recipient=f"p{minutes}@example.org")
        for minutes in range(200)
    ]

    def store_records() -> None:
        for _ in range(20):
            for event in all_events:
                if not isinstance(event, AlarmEvent):
                    records.apply(event)

    def store_events() -> None:
        for event in many:
            events.apply(event)

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(store_records), pool.submit(store_events)]:
            future.result()  # raises "database is locked" if a writer did not wait
    assert events.applied == len(many)
    with Session(engine) as session:
        assert verify(session).ok
