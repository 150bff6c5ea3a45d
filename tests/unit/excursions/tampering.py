"""What someone holding the record store's database can do: helpers shared by the audit tests.

Used on SQLite here and on PostgreSQL in tests/integration/postgres: each switches the
guards off the way that database allows (dropping SQLite's triggers; a PostgreSQL
superuser's ``session_replication_role = replica``) and then edits rows by SQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, select, text

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import entry_hash
from excursions.db import AuditEntry
from excursions.lifecycle import Lifecycle
from excursions.users import UserStore

from .conftest import FAST_HASHER, stored_records
from .lifecycle_cases import QA_PASSWORD, sign, version

#: Only the fields closing needs.
ASSESSMENT = {
    "impact_text": "Door open 6 min; product stayed below -150 °C per the probe.",
    "root_cause_category": "human_error",
    "conclusion": "No impact on product quality.",
}


@contextlib.contextmanager
def unguarded(engine: Engine) -> Iterator[Connection]:
    """A transaction with every append-only guard switched off (as an attacker would)."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            names = connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            for name in list(names):
                connection.execute(text(f'DROP TRIGGER "{name}"'))
        yield connection


def tamper(engine: Engine, *statements: str, **params: Any) -> None:
    """Run SQL statements with the guards off."""
    with unguarded(engine) as connection:
        for statement in statements:
            connection.execute(text(statement), params)


def rewrite_chain(engine: Engine, seq: int, new_value: str) -> None:
    """Change entry ``seq``'s value and recompute its hash, every later one and the head.

    What the hash chain alone cannot catch: only a checkpoint signed before does.
    """
    with unguarded(engine) as connection:
        rows = connection.execute(
            select(AuditEntry.__table__).where(AuditEntry.seq >= seq).order_by(AuditEntry.seq)
        ).mappings()
        prev = connection.execute(
            select(AuditEntry.hash).where(AuditEntry.seq == seq - 1)
        ).scalar_one_or_none()
        previous = prev if prev is not None else "0" * 64
        for row in list(rows):
            entry = AuditEntry(**dict(row))
            if entry.seq == seq:
                entry.new_value = new_value
            entry.prev_hash = previous
            entry.hash = previous = entry_hash(entry)
            connection.execute(
                text(
                    "UPDATE audit_entries SET new_value = :new, prev_hash = :prev, hash = :hash"
                    " WHERE seq = :seq"
                ),
                {
                    "new": entry.new_value,
                    "prev": entry.prev_hash,
                    "hash": entry.hash,
                    "seq": entry.seq,
                },
            )
        connection.execute(text("UPDATE audit_head SET hash = :hash"), {"hash": previous})


def cut_tail(engine: Engine, keep: int, *, head_too: bool = False) -> None:
    """Delete the entries after ``keep``; with ``head_too`` set the head back onto ``keep``."""
    statements = ["DELETE FROM audit_entries WHERE seq > :keep"]
    if head_too:
        statements.append(
            "UPDATE audit_head SET seq = :keep,"
            " hash = (SELECT hash FROM audit_entries WHERE seq = :keep)"
        )
    tamper(engine, *statements, keep=keep)


def signed_store(engine: Engine) -> tuple[str, Lifecycle, UserStore]:
    """Store the fridge's records, three users, and close one excursion with a signature.

    Returns the signed record's id, the lifecycle and the user store.
    """
    clock = FakeClock(DEFAULT_T0)
    record_id = stored_records(engine, clock)
    users = UserStore(engine, clock=clock, hasher=FAST_HASHER)
    operator = users.add(
        "olga", "Olga Operator", "operator", "olga password 1", actor="admin", reason="t"
    )
    qa = users.add("quinn", "Quinn Reviewer", "qa", QA_PASSWORD, actor="admin", reason="t")
    users.add("mallory", "Mallory Forger", "viewer", "mallory password", actor="admin", reason="t")
    life = Lifecycle(engine, users, clock=clock)
    v = life.acknowledge(record_id, operator, "door closed", version=version(engine, record_id))
    v = life.start_review(record_id, qa, "review", version=v)
    v = life.assess(record_id, qa, ASSESSMENT, "assessment", version=v)
    sign(life.close, record_id, version=v, reason="reviewed and closed")
    return record_id, life, users


def last_seq(engine: Engine) -> int:
    """Return the newest entry's sequence number."""
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT max(seq) FROM audit_entries")).scalar_one())
