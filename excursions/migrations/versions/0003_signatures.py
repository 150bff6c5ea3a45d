"""Electronic signatures (append-only, bound to the signed content's hash).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the signatures table; like the audit trail it refuses UPDATE and DELETE."""
    op.create_table(
        "signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("printed_name", sa.String(200), nullable=False),
        sa.Column("meaning", sa.String(20), nullable=False),
        sa.Column("signed_at", _TS, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column(
            "audit_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signatures")),
    )
    op.create_index(op.f("ix_signatures_record_id"), "signatures", ["record_id"], unique=False)
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE TRIGGER signatures_append_only BEFORE UPDATE OR DELETE ON signatures"
            " FOR EACH ROW EXECUTE FUNCTION envmon_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER signatures_no_truncate BEFORE TRUNCATE ON signatures"
            " FOR EACH STATEMENT EXECUTE FUNCTION envmon_audit_append_only()"
        )
    elif dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER signatures_no_{verb.lower()} BEFORE {verb} ON signatures"
                f" BEGIN SELECT RAISE(ABORT, 'signatures are append-only: {verb} refused'); END"
            )


def downgrade() -> None:
    """Drop the signatures table and its triggers."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER signatures_no_truncate ON signatures")
        op.execute("DROP TRIGGER signatures_append_only ON signatures")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER signatures_no_update")
        op.execute("DROP TRIGGER signatures_no_delete")
    op.drop_index(op.f("ix_signatures_record_id"), table_name="signatures")
    op.drop_table("signatures")
