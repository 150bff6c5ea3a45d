"""The alerting service's tables: incidents, the notification outbox, attempts, shelves.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the alert_* tables (alerts/store.py)."""
    op.create_table(
        "alert_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_attempts")),
    )
    op.create_index(
        op.f("ix_alert_attempts_incident_id"), "alert_attempts", ["incident_id"], unique=False
    )
    op.create_index(
        op.f("ix_alert_attempts_notification_id"),
        "alert_attempts",
        ["notification_id"],
        unique=False,
    )
    op.create_table(
        "alert_bus_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_bus_outbox")),
    )
    op.create_index(
        op.f("ix_alert_bus_outbox_published"), "alert_bus_outbox", ["published"], unique=False
    )
    op.create_table(
        "alert_events_seen",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_alert_events_seen")),
    )
    op.create_index(op.f("ix_alert_events_seen_at"), "alert_events_seen", ["at"], unique=False)
    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("sensor_id", sa.String(length=128), nullable=True),
        sa.Column("area", sa.String(length=128), nullable=True),
        sa.Column("instrument", sa.String(length=128), nullable=True),
        sa.Column("parameter", sa.String(length=64), nullable=True),
        sa.Column("component", sa.String(length=200), nullable=True),
        sa.Column("excursion_id", sa.String(length=200), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("policy_id", sa.String(length=64), nullable=False),
        sa.Column("route", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("acknowledged_at", _TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("ack_comment", sa.Text(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("next_at", _TS, nullable=True),
        sa.Column("next_kind", sa.String(length=16), nullable=True),
        sa.Column("suppressed_by", sa.String(length=200), nullable=True),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_incidents")),
    )
    op.create_index(op.f("ix_alert_incidents_area"), "alert_incidents", ["area"], unique=False)
    op.create_index(
        op.f("ix_alert_incidents_excursion_id"), "alert_incidents", ["excursion_id"], unique=False
    )
    op.create_index(
        "ix_alert_incidents_key_state", "alert_incidents", ["key", "state"], unique=False
    )
    op.create_index("ix_alert_incidents_next_at", "alert_incidents", ["next_at"], unique=False)
    op.create_index(
        op.f("ix_alert_incidents_opened_at"), "alert_incidents", ["opened_at"], unique=False
    )
    op.create_index(op.f("ix_alert_incidents_state"), "alert_incidents", ["state"], unique=False)
    op.create_table(
        "alert_link_uses",
        sa.Column("link_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("used_by", sa.String(length=64), nullable=False),
        sa.Column("used_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("link_id", name=op.f("pk_alert_link_uses")),
    )
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("group_key", sa.String(length=400), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", _TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("sent_at", _TS, nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
    )
    op.create_index(
        "ix_alert_notifications_group_key",
        "alert_notifications",
        ["group_key", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_alert_notifications_incident_id"),
        "alert_notifications",
        ["incident_id"],
        unique=False,
    )
    op.create_index(
        "ix_alert_notifications_status_due_at",
        "alert_notifications",
        ["status", "due_at"],
        unique=False,
    )
    op.create_table(
        "alert_recipients",
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("first_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint(
            "incident_id", "contact_id", "channel_id", name=op.f("pk_alert_recipients")
        ),
    )
    op.create_table(
        "alert_shelves",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("start", _TS, nullable=False),
        sa.Column("until", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_shelves")),
    )
    op.create_index(
        op.f("ix_alert_shelves_incident_id"), "alert_shelves", ["incident_id"], unique=False
    )


def downgrade() -> None:
    """Drop the alert_* tables."""
    op.drop_index(op.f("ix_alert_shelves_incident_id"), table_name="alert_shelves")
    op.drop_table("alert_shelves")
    op.drop_table("alert_recipients")
    op.drop_index("ix_alert_notifications_status_due_at", table_name="alert_notifications")
    op.drop_index(op.f("ix_alert_notifications_incident_id"), table_name="alert_notifications")
    op.drop_index("ix_alert_notifications_group_key", table_name="alert_notifications")
    op.drop_table("alert_notifications")
    op.drop_table("alert_link_uses")
    op.drop_index(op.f("ix_alert_incidents_state"), table_name="alert_incidents")
    op.drop_index(op.f("ix_alert_incidents_opened_at"), table_name="alert_incidents")
    op.drop_index("ix_alert_incidents_next_at", table_name="alert_incidents")
    op.drop_index("ix_alert_incidents_key_state", table_name="alert_incidents")
    op.drop_index(op.f("ix_alert_incidents_excursion_id"), table_name="alert_incidents")
    op.drop_index(op.f("ix_alert_incidents_area"), table_name="alert_incidents")
    op.drop_table("alert_incidents")
    op.drop_index(op.f("ix_alert_events_seen_at"), table_name="alert_events_seen")
    op.drop_table("alert_events_seen")
    op.drop_index(op.f("ix_alert_bus_outbox_published"), table_name="alert_bus_outbox")
    op.drop_table("alert_bus_outbox")
    op.drop_index(op.f("ix_alert_attempts_notification_id"), table_name="alert_attempts")
    op.drop_index(op.f("ix_alert_attempts_incident_id"), table_name="alert_attempts")
    op.drop_table("alert_attempts")
