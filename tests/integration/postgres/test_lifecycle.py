"""The QA lifecycle on a real PostgreSQL, as the application's role: signed closing and
reopening, stale forms, row locks between concurrent reviewers, sessions and throttling,
and records and alarms consumed from the bus twice but stored once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from envmon.bus import ALARMS, EXCURSIONS, InMemoryBus, Message
from envmon.models import AlarmEvent
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import verify
from excursions.consumer import consume_events, consume_records
from excursions.db import AuditEntry, ExcursionRow, LoginThrottleRow, TimelineEventRow
from excursions.lifecycle import Lifecycle, StaleRecordError
from excursions.records import RecordStore
from excursions.sessions import Sessions
from excursions.timeline import TimelineStore, timeline
from excursions.users import MAX_FAILED, AuthenticationError, ThrottledError, User, UserStore
from tests.unit.excursions.conftest import FAST_HASHER, stored_excursion
from tests.unit.excursions.lifecycle_cases import ASSESSMENT, QA_PASSWORD, sign, version
from tests.unit.excursions.test_records import core_events

pytestmark = pytest.mark.timeout(120)
PASSWORD = "a long password 1"


def people(users: UserStore) -> dict[str, User]:
    return {
        "operator": users.add("olga", "Olga Example", "operator", PASSWORD, actor="a", reason="t"),
        "qa": users.add("quinn", "Quinn Example", "qa", QA_PASSWORD, actor="a", reason="t"),
        "qa2": users.add("rita", "Rita Example", "qa", PASSWORD, actor="a", reason="t"),
    }


def test_the_whole_lifecycle_as_the_app_role(app_engine: Engine) -> None:
    clock = FakeClock(DEFAULT_T0 + timedelta(hours=1))
    record_id, users = stored_excursion(app_engine, clock)
    who = people(users)
    life = Lifecycle(app_engine, users, clock=clock)
    v = life.acknowledge(
        record_id, who["operator"], "door closed", version=version(app_engine, record_id)
    )
    v = life.comment(record_id, who["operator"], "probe checked", version=v)
    v = life.start_review(record_id, who["qa"], "routine review", version=v)
    v = life.assess(record_id, who["qa"], ASSESSMENT, "assessed", version=v)
    with pytest.raises(StaleRecordError):  # a form loaded before the assessment
        sign(life.close, record_id, version=v - 1, reason="stale")
    v = sign(life.close, record_id, version=v, reason="no impact")
    v = sign(life.reopen, record_id, version=v, reason="new probe data", meaning="reviewed")

    first, second = life.signatures(record_id)
    assert not first.covers_current_content
    assert second.covers_current_content
    with Session(app_engine) as session:
        assert verify(session).ok
        row = session.get(ExcursionRow, record_id)
        assert row is not None
        assert row.qa_state == "reopened"
        titles = [e.title for e in timeline(session, row)]
    assert titles[0] == "alarm raised"
    for title in ("acknowledged", "comment", "assessment recorded", "closed", "reopened"):
        assert title in titles
    assert titles.count("signed (approved)") == titles.count("signed (reviewed)") == 1


def test_two_reviewers_at_once_one_wins_the_other_is_stale(app_engine: Engine) -> None:
    """Both load version v and comment at the same moment: PostgreSQL's row lock lets one
    through; the other sees the new version and is refused, changing nothing."""
    clock = FakeClock(DEFAULT_T0 + timedelta(hours=1))
    record_id, users = stored_excursion(app_engine, clock)
    who = people(users)
    life = Lifecycle(app_engine, users, clock=clock)
    v = version(app_engine, record_id)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def comment(user: User, text: str) -> None:
        barrier.wait()
        try:
            life.comment(record_id, user, text, version=v)
            outcomes.append("done")
        except StaleRecordError:
            outcomes.append("stale")

    threads = [
        threading.Thread(target=comment, args=(who["qa"], "first")),
        threading.Thread(target=comment, args=(who["qa2"], "second")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["done", "stale"]
    assert version(app_engine, record_id) == v + 1
    with Session(app_engine) as session:
        comments = session.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "comment")
        ).scalar_one()
        assert comments == 1
        assert verify(session).ok


def test_sessions_and_throttling_as_the_app_role(app_engine: Engine) -> None:
    """Sessions expire; failures block one address for one account (the app role may)."""
    clock = FakeClock(DEFAULT_T0)
    users = UserStore(app_engine, clock=clock, hasher=FAST_HASHER)
    people(users)
    sessions = Sessions(app_engine, users, clock=clock)
    token, user = sessions.sign_in("olga", PASSWORD, client="192.0.2.1")
    assert sessions.user(token).username == user.username == "olga"
    clock.advance(16 * 60)  # idle longer than the timeout
    with pytest.raises(AuthenticationError):
        sessions.user(token)
    for _ in range(MAX_FAILED):
        with pytest.raises(AuthenticationError):
            users.authenticate("quinn", "wrong password!", client="192.0.2.66")
    with pytest.raises(ThrottledError):  # blocked there now, even with the right password
        users.authenticate("quinn", QA_PASSWORD, client="192.0.2.66")
    assert users.authenticate("quinn", QA_PASSWORD, client="192.0.2.2").username == "quinn"
    with Session(app_engine) as session:
        blocks = session.execute(select(AuditEntry).where(AuditEntry.action == "block")).scalars()
        assert [(e.actor, e.record_id) for e in blocks] == [("system:login", "quinn")]
        assert verify(session).ok


def test_first_failures_from_a_new_address_at_once(app_engine: Engine) -> None:
    """Concurrent first attempts from one address create its counter once and count each."""
    users = UserStore(app_engine, clock=FakeClock(DEFAULT_T0), hasher=FAST_HASHER)
    people(users)
    errors: list[BaseException] = []

    def attempt(username: str) -> None:
        try:
            users.authenticate(username, "wrong password!", client="198.51.100.9")
        except AuthenticationError:
            pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(f"user{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with Session(app_engine) as session:
        counted = session.execute(
            select(LoginThrottleRow.failures).where(LoginThrottleRow.key == "198.51.100.9")
        ).scalar_one()
    assert counted == 8


async def test_records_and_alarms_consumed_twice_are_stored_once(app_engine: Engine) -> None:
    events = core_events()
    messages = [
        Message(
            ALARMS if isinstance(e, AlarmEvent) else EXCURSIONS,
            e.sensor_id,
            e.model_dump_json().encode(),
        )
        for e in events
    ]
    bus = InMemoryBus()
    records = RecordStore(app_engine, clock=FakeClock(DEFAULT_T0))
    timeline_store = TimelineStore(app_engine, clock=FakeClock(DEFAULT_T0))
    consumers = [
        asyncio.create_task(consume_records(bus, records)),
        asyncio.create_task(consume_events(bus, timeline_store, ALARMS)),
    ]
    await asyncio.sleep(0)
    await bus.publish([*messages, *messages])  # at least once: everything again
    alarms = sum(isinstance(e, AlarmEvent) for e in events)
    try:
        async with asyncio.timeout(30):
            while (
                records.applied + records.ignored + timeline_store.applied + timeline_store.ignored
                < 2 * len(events)
            ):
                await asyncio.sleep(0.02)
    finally:
        for task in consumers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert (timeline_store.applied, timeline_store.ignored) == (alarms, alarms)
    with Session(app_engine) as session:
        stored = session.execute(select(func.count()).select_from(TimelineEventRow)).scalar_one()
        assert stored == alarms
        ids = {e.id for e in events if not isinstance(e, AlarmEvent)}
        rows = session.execute(select(func.count()).select_from(ExcursionRow)).scalar_one()
        assert rows == len(ids)
        assert verify(session).ok
