"""The audit head protected like the entries; rows older than this vouched for by the trail.

The head row is created here (no longer by the first append) and triggers then refuse its
INSERT, DELETE, TRUNCATE and any UPDATE that does not move it forward onto an existing
entry, for every role. Then one ``baseline`` entry (actor ``system:migration``) is
appended for each row the trail did not yet vouch for in full: a record's core digest, a
user's password fingerprint, a signature's content hash (``excursions.integrity``), so
that ``envmon audit verify`` can check every row, including those written before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import insert, select, text

from envmon.timeutil import utcnow
from excursions.audit import encode_value, entry_hash
from excursions.db import GENESIS_HASH, AuditEntry, ExcursionRow, SignatureRow, UserRow
from excursions.integrity import BASELINE_ACTION, BASELINE_ACTOR, SIGNATURE_RECORD
from excursions.records import CORE_DIGEST_FIELD, core_digest
from excursions.users import FINGERPRINT_FIELD, RECORD_TYPE, password_fingerprint

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REASON = "revision 0006: the audit trail vouches for rows written before it"

_PG_HEAD_GUARD = """
CREATE FUNCTION envmon_audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq > OLD.seq
       AND NEW.hash = (SELECT hash FROM audit_entries WHERE seq = NEW.seq) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_head only moves forward onto an existing entry: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
_SQLITE_HEAD_GUARDS = (
    "CREATE TRIGGER audit_head_no_insert BEFORE INSERT ON audit_head"
    " BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward: INSERT refused'); END",
    "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head"
    " BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward: DELETE refused'); END",
    "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head"
    " WHEN NEW.id IS NOT OLD.id OR NEW.seq <= OLD.seq"
    " OR NEW.hash IS NOT (SELECT hash FROM audit_entries WHERE seq = NEW.seq)"
    " BEGIN SELECT RAISE(ABORT,"
    " 'audit_head only moves forward onto an existing entry: UPDATE refused'); END",
)


def _create_head() -> None:
    """Create the head row if no append made it yet (on the newest entry, or the genesis)."""
    bind = op.get_bind()
    if bind.execute(text("SELECT 1 FROM audit_head WHERE id = 1")).first() is not None:
        return
    newest = bind.execute(
        text("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
    ).first()
    seq, hash_ = (newest[0], newest[1]) if newest is not None else (0, GENESIS_HASH)
    bind.execute(
        text("INSERT INTO audit_head (id, seq, hash) VALUES (1, :seq, :hash)"),
        {"seq": seq, "hash": hash_},
    )


#: The columns ``core_digest`` reads (named: a later revision may add others to the table).
_CORE_COLUMNS = (
    ExcursionRow.id,
    ExcursionRow.kind,
    ExcursionRow.sensor_id,
    ExcursionRow.area,
    ExcursionRow.instrument,
    ExcursionRow.parameter,
    ExcursionRow.level,
    ExcursionRow.core_revision,
    ExcursionRow.core_status,
    ExcursionRow.start,
    ExcursionRow.end,
    ExcursionRow.record,
)


def _baseline() -> None:
    """Append a baseline entry for every row the trail does not vouch for in full yet.

    Written with this revision's own statements (not ``AuditTrail``, whose models may gain
    columns in later revisions); only the chain's hash (``entry_hash``) is shared.
    """
    bind = op.get_bind()
    wanted: list[tuple[str, str, str, str]] = []
    for values in bind.execute(select(*_CORE_COLUMNS).order_by(ExcursionRow.id)).mappings():
        row = ExcursionRow(**values)  # transient: only read by core_digest
        wanted.append((row.kind, row.id, CORE_DIGEST_FIELD, core_digest(row)))
    for username, password_hash in bind.execute(
        select(UserRow.username, UserRow.password_hash).order_by(UserRow.username)
    ):
        wanted.append(
            (RECORD_TYPE, username, FINGERPRINT_FIELD, password_fingerprint(password_hash))
        )
    for audit_seq, signed_hash in bind.execute(
        select(SignatureRow.audit_seq, SignatureRow.content_hash).order_by(SignatureRow.id)
    ):
        wanted.append((SIGNATURE_RECORD, str(audit_seq), "content_hash", signed_hash))
    if not wanted:
        return
    seq, prev_hash = bind.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
    at = utcnow()
    for record_type, record_id, field, value in wanted:
        seq += 1
        entry = AuditEntry(
            seq=seq,
            at=at,
            actor=BASELINE_ACTOR,
            action=BASELINE_ACTION,
            record_type=record_type,
            record_id=record_id,
            field=field,
            old_value=None,
            new_value=encode_value(value),
            reason=_REASON,
            prev_hash=prev_hash,
        )
        entry.hash = prev_hash = entry_hash(entry)
        bind.execute(
            insert(AuditEntry).values({name: getattr(entry, name) for name in _ENTRY_COLUMNS})
        )
    bind.execute(
        text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
        {"seq": seq, "hash": prev_hash},
    )


_ENTRY_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "record_type",
    "record_id",
    "field",
    "old_value",
    "new_value",
    "reason",
    "prev_hash",
    "hash",
)


def upgrade() -> None:
    """Create and guard the head row, then write the baseline entries."""
    _create_head()
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_HEAD_GUARD)
        op.execute(
            "CREATE TRIGGER audit_head_forward_only BEFORE INSERT OR UPDATE OR DELETE"
            " ON audit_head FOR EACH ROW EXECUTE FUNCTION envmon_audit_head_forward_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head"
            " FOR EACH STATEMENT EXECUTE FUNCTION envmon_audit_append_only()"
        )
    elif dialect == "sqlite":
        for statement in _SQLITE_HEAD_GUARDS:
            op.execute(statement)
    _baseline()


def downgrade() -> None:
    """Drop the head's triggers (the head row and the baseline entries stay: append-only)."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER audit_head_no_truncate ON audit_head")
        op.execute("DROP TRIGGER audit_head_forward_only ON audit_head")
        op.execute("DROP FUNCTION envmon_audit_head_forward_only()")
    elif dialect == "sqlite":
        for name in ("no_insert", "no_delete", "forward_only"):
            op.execute(f"DROP TRIGGER audit_head_{name}")
