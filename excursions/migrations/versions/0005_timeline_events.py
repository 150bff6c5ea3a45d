"""Alarm events and notifications for the excursion timeline (append-only).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_TABLE = "timeline_events"


def upgrade() -> None:
    """Create the timeline events table; like the audit trail it refuses UPDATE and DELETE."""
    op.create_table(
        _TABLE,
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("sensor_id", sa.String(128), nullable=False),
        sa.Column("excursion_id", sa.String(200), nullable=True),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeline_events")),
    )
    for column in ("sensor_id", "excursion_id", "ts"):
        op.create_index(op.f(f"ix_{_TABLE}_{column}"), _TABLE, [column], unique=False)
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            f"CREATE TRIGGER {_TABLE}_append_only BEFORE UPDATE OR DELETE ON {_TABLE}"
            " FOR EACH ROW EXECUTE FUNCTION envmon_audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_truncate BEFORE TRUNCATE ON {_TABLE}"
            " FOR EACH STATEMENT EXECUTE FUNCTION envmon_audit_append_only()"
        )
    elif dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {_TABLE}_no_{verb.lower()} BEFORE {verb} ON {_TABLE}"
                f" BEGIN SELECT RAISE(ABORT, '{_TABLE} are append-only: {verb} refused'); END"
            )


def downgrade() -> None:
    """Drop the timeline events table and its triggers."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(f"DROP TRIGGER {_TABLE}_no_truncate ON {_TABLE}")
        op.execute(f"DROP TRIGGER {_TABLE}_append_only ON {_TABLE}")
    elif dialect == "sqlite":
        op.execute(f"DROP TRIGGER {_TABLE}_no_update")
        op.execute(f"DROP TRIGGER {_TABLE}_no_delete")
    for column in ("ts", "excursion_id", "sensor_id"):
        op.drop_index(op.f(f"ix_{_TABLE}_{column}"), table_name=_TABLE)
    op.drop_table(_TABLE)
