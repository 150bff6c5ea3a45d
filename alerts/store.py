"""The alerting service's tables: incidents, their timers, the notification outbox and its attempts.

They live in the record store beside the QA records (one database, one set of Alembic
migrations: ``excursions/migrations``, revision 0008), so that an acknowledgement, the
audit entry that records it and the end of the escalation it stops are one transaction.

``alert_incidents``
    One row per thing a person must be told about: an excursion, a sensor's stale or
    faulty episode, a rate-of-change alarm, a component's outage. Its id is derived from
    what it is about and when it began (``incident_id``), so a redelivered opening event
    finds the row it already made. The row is also the incident's one timer: ``next_at``
    and ``next_kind`` say when the escalation takes its next step, when the next reminder
    is due, or when a maintenance window or a shelve ends (index ``ix_alert_incidents_next_at``:
    a tick reads only what is due, whatever the number of open incidents).

``alert_notifications``
    The outbox: one row per message to one person through one channel about one incident.
    Its id is a hash of the decision that made it (incident, purpose, cycle, step, person,
    channel), so making the same decision twice — a redelivered alarm, a second instance —
    adds nothing. The dispatcher claims due rows (``status`` pending, or sending with an
    expired lease) with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, sends rows that share a
    ``group_key`` as one message, and records the outcome.

``alert_attempts``
    One row per delivery attempt of a notification: when, whether the server took it and
    what it said (SMTP reply, HTTP status, error).

``alert_bus_outbox``
    What the service tells the bus (``Notification`` on ``envmon.notifications``: every
    attempt, acknowledgement and escalation), written in the transaction that decided it;
    the publisher sends the rows not yet ``published`` and marks them.

``alert_recipients``
    Who was paged about an incident on which channel: they are told when it clears.

``alert_events_seen``
    The SHA-256 of every alarm or system event already handled: a redelivered event is
    skipped (rows older than ``SEEN_RETENTION`` are pruned).

``alert_shelves``
    A shelve of an incident from the app: who, why, until when; ended early or by expiry.

``alert_link_uses``
    The acknowledge links that were used (their id): a link works once.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from excursions.db import Base, UtcDateTime

#: Namespace of incident ids (uuid5 of what the incident is about and when it began).
INCIDENT_NAMESPACE: Final = uuid.UUID("8d7c1f1e-4f0b-5c38-9a57-6f1a2b3c4d5e")
#: How long a handled event's hash is kept to recognise a redelivery.
SEEN_RETENTION: Final = timedelta(days=7)

# Incident states.
TRIGGERED: Final = "triggered"
ACKNOWLEDGED: Final = "acknowledged"
RESOLVED: Final = "resolved"

# What an incident is about.
EXCURSION: Final = "excursion"
STALE: Final = "stale"
SENSOR_FAULT: Final = "sensor_fault"
RATE_OF_CHANGE: Final = "rate_of_change"
SYSTEM: Final = "system"
KINDS: Final = (EXCURSION, STALE, SENSOR_FAULT, RATE_OF_CHANGE, SYSTEM)

# What an incident's timer does when it is due.
NEXT_STEP: Final = "step"
NEXT_REMINDER: Final = "reminder"
NEXT_UNSUPPRESS: Final = "unsuppress"
NEXT_UNSHELVE: Final = "unshelve"

# Notification states.
PENDING: Final = "pending"
SENDING: Final = "sending"
SENT: Final = "sent"
FAILED: Final = "failed"
SUPPRESSED: Final = "suppressed"
CANCELLED: Final = "cancelled"

# Why a notification is sent.
PAGE: Final = "page"
REMINDER: Final = "reminder"
CLEARED: Final = "cleared"


def incident_id(key: str, opened: datetime | None = None) -> str:
    """Return the id of the incident about ``key`` that began at ``opened``.

    An excursion's incident needs no time: the excursion id is unique already.
    """
    name = key if opened is None else f"{key}@{opened.isoformat()}"
    return str(uuid.uuid5(INCIDENT_NAMESPACE, name))


def notification_id(*parts: object) -> str:
    """Return the id of a notification: SHA-256 of the decision that made it."""
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()


class IncidentRow(Base):
    """An incident with its escalation state and its one timer (see the module docstring)."""

    __tablename__ = "alert_incidents"
    __table_args__ = (
        Index("ix_alert_incidents_next_at", "next_at"),
        Index("ix_alert_incidents_key_state", "key", "state"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(24))  # one of KINDS
    sensor_id: Mapped[str | None] = mapped_column(String(128))
    area: Mapped[str | None] = mapped_column(String(128), index=True)
    instrument: Mapped[str | None] = mapped_column(String(128))
    parameter: Mapped[str | None] = mapped_column(String(64))
    component: Mapped[str | None] = mapped_column(String(200))
    excursion_id: Mapped[str | None] = mapped_column(String(200), index=True)
    level: Mapped[str | None] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    event: Mapped[dict[str, Any]] = mapped_column(JSON)  # the newest event about it
    policy_id: Mapped[str] = mapped_column(String(64))
    route: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    ack_comment: Mapped[str | None] = mapped_column(Text)
    step: Mapped[int] = mapped_column(Integer, default=0)
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)  # escalation rounds begun (re-pages)
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_kind: Mapped[str | None] = mapped_column(String(16))
    suppressed_by: Mapped[str | None] = mapped_column(String(200))
    row_version: Mapped[int] = mapped_column(Integer, default=1)


class NotificationRow(Base):
    """One message to one person through one channel about one incident (the outbox)."""

    __tablename__ = "alert_notifications"
    __table_args__ = (
        Index("ix_alert_notifications_status_due_at", "status", "due_at"),
        Index("ix_alert_notifications_group_key", "group_key", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    contact_id: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer)
    group_key: Mapped[str] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    detail: Mapped[str] = mapped_column(Text, default="")


class AttemptRow(Base):
    """One delivery attempt of a notification and what the server answered."""

    __tablename__ = "alert_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(64), index=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text)


class BusOutboxRow(Base):
    """A message for the bus, decided in the same transaction as what it reports."""

    __tablename__ = "alert_bus_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class RecipientRow(Base):
    """Someone paged about an incident through a channel (told again when it clears)."""

    __tablename__ = "alert_recipients"

    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SeenEventRow(Base):
    """An alarm or system event already handled (its canonical hash)."""

    __tablename__ = "alert_events_seen"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ShelveRow(Base):
    """An incident shelved from the app: notifications stop until ``until``."""

    __tablename__ = "alert_shelves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    start: Mapped[datetime] = mapped_column(UtcDateTime)
    until: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LinkUseRow(Base):
    """An acknowledge link that was used: it works once."""

    __tablename__ = "alert_link_uses"

    link_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64))
    used_by: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime] = mapped_column(UtcDateTime)
