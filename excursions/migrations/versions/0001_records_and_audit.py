"""Excursion records, the append-only audit trail and its head.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)

_PG_APPEND_ONLY = """
CREATE FUNCTION envmon_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_entries is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    """Create the tables and the triggers that keep the audit trail append-only."""
    op.create_table(
        "excursion_records",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("sensor_id", sa.String(128), nullable=False),
        sa.Column("area", sa.String(128), nullable=False),
        sa.Column("instrument", sa.String(128), nullable=False),
        sa.Column("parameter", sa.String(64), nullable=False),
        sa.Column("level", sa.String(16), nullable=True),
        sa.Column("core_revision", sa.Integer(), nullable=False),
        sa.Column("core_status", sa.String(16), nullable=False),
        sa.Column("start", _TS, nullable=False),
        sa.Column("end", _TS, nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("qa_state", sa.String(20), nullable=False),
        sa.Column("impact_products", sa.Text(), nullable=False),
        sa.Column("impact_batches", sa.Text(), nullable=False),
        sa.Column("impact_text", sa.Text(), nullable=False),
        sa.Column("root_cause_category", sa.String(40), nullable=False),
        sa.Column("root_cause_text", sa.Text(), nullable=False),
        sa.Column("deviation_ref", sa.String(100), nullable=False),
        sa.Column("capa_ref", sa.String(100), nullable=False),
        sa.Column("conclusion", sa.Text(), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_excursion_records")),
    )
    for column in ("sensor_id", "area", "start", "qa_state"):
        op.create_index(
            op.f(f"ix_excursion_records_{column}"), "excursion_records", [column], unique=False
        )
    op.create_table(
        "audit_entries",
        sa.Column("seq", _ID, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("record_type", sa.String(40), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("field", sa.String(64), nullable=True),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_entries_hash")),
    )
    op.create_index("ix_audit_entries_record", "audit_entries", ["record_type", "record_id"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", _ID, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_APPEND_ONLY)
        op.execute(
            "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries"
            " FOR EACH ROW EXECUTE FUNCTION envmon_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries"
            " FOR EACH STATEMENT EXECUTE FUNCTION envmon_audit_append_only()"
        )
    elif dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_entries_no_{verb.lower()} BEFORE {verb} ON audit_entries"
                f" BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only: {verb} refused'); END"
            )


def downgrade() -> None:
    """Drop everything (only for tests and development: the trail is a GMP record)."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER audit_entries_no_truncate ON audit_entries")
        op.execute("DROP TRIGGER audit_entries_append_only ON audit_entries")
        op.execute("DROP FUNCTION envmon_audit_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER audit_entries_no_update")
        op.execute("DROP TRIGGER audit_entries_no_delete")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_entries_record", table_name="audit_entries")
    op.drop_table("audit_entries")
    for column in ("sensor_id", "area", "start", "qa_state"):
        op.drop_index(op.f(f"ix_excursion_records_{column}"), table_name="excursion_records")
    op.drop_table("excursion_records")
