"""The QA record store's tables (SQLAlchemy 2), the same on PostgreSQL and SQLite.

Production runs on PostgreSQL; the embedded default (``envmon demo``) on SQLite; both are
created by the same Alembic migrations (``excursions/migrations``, ``excursions.migrate``).

``excursion_records``
    One row per excursion or data gap, keyed by the core's deterministic id: the newest
    core revision (``core_revision``, the record as JSON), the QA lifecycle state and the
    QA fields. ``row_version`` increases with every change; a form carries the version it
    was loaded with, so a change made meanwhile is detected (optimistic concurrency).

``audit_entries``
    Append-only: who, what (record, field, old and new value), when (UTC, server clock)
    and why. Each entry carries a SHA-256 over its content and the previous entry's hash
    (``excursions.audit``). Triggers refuse UPDATE, DELETE and TRUNCATE on both
    databases; on PostgreSQL the application's role is also granted only SELECT and INSERT.

``timeline_events``
    Append-only: the alarm events and notifications the bus delivered, keyed by the
    SHA-256 of the event's canonical JSON (a repeat is stored once). An excursion's page
    shows them in its timeline beside the people's actions and the signatures.

``login_throttle``
    Failed sign-ins and signatures per client address and per (address, account), for the
    throttling of ``excursions.throttle``; rows of quiet addresses are deleted.

``audit_head``
    One row, created by the migrations: the sequence number and hash of the newest entry.
    Appending locks it (``FOR UPDATE``), which serialises appends so the chain never forks.
    Triggers refuse INSERT, DELETE (and TRUNCATE) and any UPDATE that does not move it
    forward onto an existing entry; ``verify`` compares the chain's end with it, so a
    removed tail shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from envmon.timeutil import NaiveTimestampError

#: Constraint names that are the same on every database (Alembic needs them).
NAMING: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
GENESIS_HASH: Final = "0" * 64
#: How long a SQLite writer waits for another's transaction to end.
SQLITE_BUSY_S: Final = 30.0


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every database (SQLite has no time zones: stored as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC (naive UTC on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise NaiveTimestampError(f"timestamp {value!r} has no UTC offset")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: object, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the database gave."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def store_engine(url: str, *, snapshot: bool = False) -> Engine:
    """Return an engine for the record store; on SQLite, transactions that serialise.

    Python's sqlite3 driver defers ``BEGIN`` until the first write, so the reads of a
    check-then-write (the newest revision held, the audit head, a form's row version) would
    run outside the transaction, and two writers could both pass the check. On SQLite every
    transaction therefore begins ``IMMEDIATE``: it takes the write lock first (waiting up
    to ``SQLITE_BUSY_S`` for another writer), then reads and writes under it. Reading
    sessions queue behind writers too: fine at the embedded default's scale. PostgreSQL
    needs none of this (it locks with ``FOR UPDATE``).

    ``snapshot`` is for long readers (``envmon audit verify``): each transaction reads one
    consistent state without blocking the writers — a deferred ``BEGIN`` in WAL mode on
    SQLite, a read-only REPEATABLE READ transaction on PostgreSQL.
    """
    engine = create_engine(url)
    if engine.dialect.name != "sqlite":
        if snapshot:
            return engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        return engine
    begin = "BEGIN" if snapshot else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401 - DB-API
        dbapi_connection.isolation_level = None  # no deferred BEGIN by the driver
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_S * 1000)}")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Base(DeclarativeBase):
    """The declarative base of the store's tables (one naming convention)."""

    metadata = MetaData(naming_convention=NAMING)


class ExcursionRow(Base):
    """An excursion or data gap with its QA state (see the module docstring)."""

    __tablename__ = "excursion_records"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # excursion | data_gap
    sensor_id: Mapped[str] = mapped_column(String(128), index=True)
    area: Mapped[str] = mapped_column(String(128), index=True)
    instrument: Mapped[str] = mapped_column(String(128), default="")
    parameter: Mapped[str] = mapped_column(String(64))
    level: Mapped[str | None] = mapped_column(String(16))
    core_revision: Mapped[int] = mapped_column(Integer)
    core_status: Mapped[str] = mapped_column(String(16))  # open | closed (the core's view)
    start: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    qa_state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    impact_products: Mapped[str] = mapped_column(Text, default="")
    impact_batches: Mapped[str] = mapped_column(Text, default="")
    impact_text: Mapped[str] = mapped_column(Text, default="")
    root_cause_category: Mapped[str] = mapped_column(String(40), default="")
    root_cause_text: Mapped[str] = mapped_column(Text, default="")
    deviation_ref: Mapped[str] = mapped_column(String(100), default="")
    capa_ref: Mapped[str] = mapped_column(String(100), default="")
    conclusion: Mapped[str] = mapped_column(Text, default="")
    row_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """One append-only audit entry (see ``excursions.audit`` for the hash chain)."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_record", "record_type", "record_id"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(40))
    record_type: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[str] = mapped_column(String(200))
    field: Mapped[str | None] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)  # JSON text
    new_value: Mapped[str | None] = mapped_column(Text)  # JSON text
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The newest entry's sequence number and hash; locked to serialise appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


class UserRow(Base):
    """A local user of the QA app (``excursions.users``); the password only as argon2."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SignatureRow(Base):
    """An electronic signature: who, meaning, when, and the hash of what was signed."""

    __tablename__ = "signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(20))  # close | reopen
    signer: Mapped[str] = mapped_column(String(64))
    printed_name: Mapped[str] = mapped_column(String(200))
    meaning: Mapped[str] = mapped_column(String(20))  # reviewed | approved
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    content_hash: Mapped[str] = mapped_column(String(64))
    audit_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class SessionRow(Base):
    """A sign-in session; the browser holds the token, the database only its SHA-256."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class TimelineEventRow(Base):
    """An alarm event or notification from the bus (append-only, idempotent by content)."""

    __tablename__ = "timeline_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the event
    kind: Mapped[str] = mapped_column(String(20))  # alarm | notification
    event: Mapped[str] = mapped_column(String(32))
    sensor_id: Mapped[str] = mapped_column(String(128), index=True)
    excursion_id: Mapped[str | None] = mapped_column(String(200), index=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LoginThrottleRow(Base):
    """Failed sign-ins of one client address, or of one account from one address.

    ``username`` is None for the address's own counter (``excursions.throttle``).
    """

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    client: Mapped[str] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
