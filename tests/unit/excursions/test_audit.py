"""The audit trail on SQLite (the embedded default): chain, append-only, tamper detection.

The same migrations and checks run on PostgreSQL in tests/integration/postgres.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from excursions.audit import AuditTrail, Change, entry_hash, verify
from excursions.db import AuditEntry, Base
from excursions.migrate import current, downgrade, newest

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def fill(engine: Engine, n: int = 5) -> None:
    trail = AuditTrail(Clock())
    with Session(engine) as session, session.begin():
        for i in range(n):
            trail.append(
                session,
                actor="qa.jane",
                action="update",
                record_type="excursion",
                record_id=f"x{i}",
                changes=[Change("impact_text", "", f"assessment {i}")],
                reason="assessment",
            )


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    assert current(engine) == newest()
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_a_filled_chain_verifies(engine: Engine) -> None:
    fill(engine, 7)
    with Session(engine) as session:
        result = verify(session)
        first = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars().first()
    assert result.ok
    assert result.entries == 7
    assert first is not None
    assert first.at == T0 + timedelta(seconds=1)  # aware UTC, as written
    assert first.new_value == '"assessment 0"'


def test_one_entry_per_change_in_one_append(engine: Engine) -> None:
    trail = AuditTrail(Clock())
    with Session(engine) as session, session.begin():
        entries = trail.append(
            session,
            actor="system:consumer",
            action="create",
            record_type="excursion",
            record_id="x",
            changes=[Change("status", None, "open"), Change("peak", None, 9.5)],
        )
        seqs = [e.seq for e in entries]
        linked = entries[1].prev_hash == entries[0].hash
    assert seqs == [1, 2]
    assert linked
    with Session(engine) as session:
        assert verify(session).entries == 2


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_entries SET reason = 'x'", "DELETE FROM audit_entries"]
)
def test_changing_the_trail_is_refused(engine: Engine, statement: str) -> None:
    fill(engine, 2)
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    with Session(engine) as session:
        assert verify(session).entries == 2


def tamper(engine: Engine, statement: str) -> None:
    """What someone with the database file can do: drop the guard, then edit."""
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER audit_entries_no_update"))
        connection.execute(text("DROP TRIGGER audit_entries_no_delete"))
        connection.execute(text(statement))


@pytest.mark.parametrize(
    ("statement", "seq", "problem"),
    [
        ("UPDATE audit_entries SET new_value = '\"fine\"' WHERE seq = 3", 3, "content"),
        ("UPDATE audit_entries SET actor = 'qa.bob' WHERE seq = 1", 1, "content"),
        ("DELETE FROM audit_entries WHERE seq = 4", 4, "missing"),
        ("DELETE FROM audit_entries WHERE seq = 1", 1, "missing"),
        (
            "UPDATE audit_entries SET hash = 'f' || substr(hash, 2) WHERE seq = 2",
            2,
            "content",
        ),
    ],
    ids=["value-changed", "actor-changed", "entry-removed", "first-removed", "hash-rewritten"],
)
def test_verify_names_the_first_broken_entry(
    engine: Engine, statement: str, seq: int, problem: str
) -> None:
    fill(engine, 6)
    tamper(engine, statement)
    with Session(engine) as session:
        result = verify(session)
    assert not result.ok
    assert result.broken_seq == seq
    assert problem in result.problem


def test_a_rehashed_entry_breaks_the_next_link(engine: Engine) -> None:
    """Recomputing one entry's hash after an edit still breaks the chain at the next one."""
    fill(engine, 4)
    with Session(engine) as session:
        entry = session.get(AuditEntry, 2)
        assert entry is not None
        entry.new_value = '"rewritten"'
        forged = entry_hash(entry)
    tamper(
        engine,
        f"UPDATE audit_entries SET new_value = '\"rewritten\"', hash = '{forged}' WHERE seq = 2",
    )
    with Session(engine) as session:
        result = verify(session)
    assert result.broken_seq == 3
    assert "previous-hash" in result.problem


def test_downgrade_to_base_removes_everything(engine: Engine) -> None:
    downgrade(engine, "base")
    assert current(engine) is None
    with engine.connect() as connection:
        names = connection.execute(text("SELECT name FROM sqlite_master")).scalars().all()
    assert [n for n in names if "alembic" not in n] == []
