"""Throttling of failed sign-ins per client address (replaces the per-account lockout).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the login_throttle table."""
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", _TS, nullable=False),
        sa.Column("blocked_until", _TS, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_index(
        op.f("ix_login_throttle_username"), "login_throttle", ["username"], unique=False
    )
    op.create_index(
        op.f("ix_login_throttle_last_failure_at"),
        "login_throttle",
        ["last_failure_at"],
        unique=False,
    )


def downgrade() -> None:
    """Drop the login_throttle table."""
    op.drop_index(op.f("ix_login_throttle_last_failure_at"), table_name="login_throttle")
    op.drop_index(op.f("ix_login_throttle_username"), table_name="login_throttle")
    op.drop_table("login_throttle")
