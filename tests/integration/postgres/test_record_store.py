"""The QA record store on a real PostgreSQL: migrations, idempotent records, audit protection."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from envmon.models import AlarmEvent
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import verify
from excursions.db import AuditEntry, Base, ExcursionRow
from excursions.migrate import current, downgrade, newest, upgrade
from excursions.records import RecordStore
from tests.unit.excursions.conftest import store_core_events
from tests.unit.excursions.test_records import core_events, core_records

#: The alarm events among what the core emits for the fridge.
ALARMS = sum(isinstance(e, AlarmEvent) for e in core_events())


def count(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        records = session.execute(select(func.count()).select_from(ExcursionRow)).scalar_one()
        audit = session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    return int(records), int(audit)


def test_migrations_create_exactly_the_models_and_go_back(owner_engine: Engine) -> None:
    assert current(owner_engine) == newest()
    with owner_engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    downgrade(owner_engine, "base")
    assert current(owner_engine) is None
    upgrade(owner_engine)
    assert current(owner_engine) == newest()


def test_records_applied_twice_are_stored_once(app_engine: Engine) -> None:
    records = core_records()
    store = RecordStore(app_engine, clock=FakeClock(DEFAULT_T0))
    for record in records:
        store.apply(record)
    once = count(app_engine)
    again = RecordStore(app_engine, clock=FakeClock(DEFAULT_T0))
    for record in records:
        assert not again.apply(record)
    assert count(app_engine) == once
    assert once[0] == len({r.id for r in records})
    with Session(app_engine) as session:
        result = verify(session)
    assert result.ok
    assert result.entries == once[1]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET reason = 'edited'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
        "UPDATE signatures SET meaning = 'approved'",
        "DELETE FROM signatures",
        "UPDATE timeline_events SET event = 'cleared'",
        "DELETE FROM timeline_events",
    ],
)
def test_the_app_role_cannot_change_the_trail(app_engine: Engine, statement: str) -> None:
    _, events = store_core_events(app_engine, FakeClock(DEFAULT_T0))
    assert events.applied == ALARMS  # the app role may insert events
    before = count(app_engine)
    with pytest.raises(DBAPIError, match="permission denied"), app_engine.begin() as conn:
        conn.execute(text(statement))
    assert count(app_engine) == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET reason = 'edited'",
        "DELETE FROM audit_entries",
        "UPDATE timeline_events SET event = 'cleared'",
        "TRUNCATE timeline_events",
    ],
)
def test_even_the_owner_is_refused_by_the_trigger(owner_engine: Engine, statement: str) -> None:
    _, events = store_core_events(owner_engine, FakeClock(DEFAULT_T0))
    assert events.applied == ALARMS
    with pytest.raises(DBAPIError, match="append-only"), owner_engine.begin() as conn:
        conn.execute(text(statement))


def test_a_superuser_edit_is_caught_by_verify(owner_engine: Engine) -> None:
    """A superuser can switch the triggers off; the hash chain still names the entry."""
    store = RecordStore(owner_engine, clock=FakeClock(DEFAULT_T0))
    for record in core_records():
        store.apply(record)
    with owner_engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))  # triggers off
        conn.execute(text("UPDATE audit_entries SET new_value = '7.5' WHERE seq = 3"))
    with Session(owner_engine) as session:
        result = verify(session)
    assert result.broken_seq == 3
    assert "content" in result.problem
