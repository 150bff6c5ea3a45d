"""The store's rows against the audit trail: records, users and signatures as the trail says.

The hash chain (``excursions.audit``) proves the trail; this proves that the rows the
application shows are what the trail last recorded, so a row changed outside the
application (by SQL, with the database's rights) is named:

- each record's QA state and QA fields are the newest values the trail set (``open`` and
  empty before any), and its core content is what the newest ``core_sha256`` entry
  vouches for (``excursions.records.core_digest``); a record the trail never created, or
  one it created that is gone, is named too;
- each user's full name, role, disabled flag and ``password_fingerprint`` (a hash of the
  password hash) are the newest the trail set; likewise for users that appear or vanish;
- each signature row is what the audit entry written with it says (signer, printed name,
  meaning, action, record, time, content hash), and every signature the trail records
  has its row.

Rows written before revision 0006 are vouched for by the ``baseline`` entries that
migration wrote (``system:migration``). The checks read the newest entry of each field per
record with one grouped query per chunk of rows, so memory stays bounded by the chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from excursions.audit import Problem, encode_value
from excursions.db import AuditEntry, ExcursionRow, SignatureRow, UserRow
from excursions.lifecycle import (
    QA_FIELDS,
    SIGNATURE_FIELD,
    expected_signature,
    signature_mismatches,
)
from excursions.policy import SIGNED_ACTIONS, QAState
from excursions.records import CORE_DIGEST_FIELD, core_digest
from excursions.users import FINGERPRINT_FIELD, RECORD_TYPE, password_fingerprint

RECORD_KINDS: Final = ("excursion", "data_gap")
#: The record fields whose newest value in the trail must be the row's.
RECORD_FIELDS: Final = ("qa_state", *QA_FIELDS, CORE_DIGEST_FIELD)
#: What a record's QA fields are before the trail set them.
RECORD_DEFAULTS: Final[dict[str, object]] = {
    "qa_state": QAState.OPEN.value,
    **dict.fromkeys(QA_FIELDS, ""),
}
USER_FIELDS: Final = ("full_name", "role", "disabled", FINGERPRINT_FIELD)
USER_DEFAULTS: Final[dict[str, object]] = {"disabled": False}
#: The action and actor of the entries migration 0006 wrote for rows older than it.
BASELINE_ACTION: Final = "baseline"
BASELINE_ACTOR: Final = "system:migration"
#: The record type of a signature's baseline entry (its record id: the signature's entry).
SIGNATURE_RECORD: Final = "signature"
CHUNK: Final = 500
#: Problems kept for the report; the rest are counted.
MAX_PROBLEMS: Final = 1_000
_SHOWN: Final = 60


@dataclass(slots=True)
class RowCheck:
    """What ``check_rows`` read and found."""

    records: int = 0
    users: int = 0
    signatures: int = 0
    problems: list[Problem] = field(default_factory=list)
    more: int = 0  #: problems beyond ``MAX_PROBLEMS``, counted only

    def add(self, subject: str, text: str, seq: int | None = None) -> None:
        """Keep a problem (or count it once ``MAX_PROBLEMS`` are kept)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(subject, text, seq))
        else:
            self.more += 1


def check_rows(session: Session) -> RowCheck:
    """Compare every record, user and signature row with what the trail last recorded."""
    found = RowCheck()
    _check_records(session, found)
    _check_users(session, found)
    _check_signatures(session, found)
    return found


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _chunks(session: Session, column: Any, query: Any) -> Iterator[Sequence[Any]]:  # noqa: ANN401 - any mapped column and select
    """Yield the rows of ``query`` in chunks, keyed on the unique ``column``."""
    after = None
    while True:
        page = query if after is None else query.where(column > after)
        rows = session.execute(page.order_by(column).limit(CHUNK)).scalars().all()
        if not rows:
            return
        yield rows
        after = getattr(rows[-1], column.key)
        session.expunge_all()


def _newest(
    session: Session, types: Sequence[str], ids: Sequence[str], fields: Sequence[str]
) -> dict[tuple[str, str, str], AuditEntry]:
    """Return the newest entry per (record type, record id, field) of these records."""
    newest = (
        select(func.max(AuditEntry.seq))
        .where(
            AuditEntry.record_type.in_(types),
            AuditEntry.record_id.in_(ids),
            AuditEntry.field.in_(fields),
        )
        .group_by(AuditEntry.record_type, AuditEntry.record_id, AuditEntry.field)
    )
    entries = session.execute(select(AuditEntry).where(AuditEntry.seq.in_(newest))).scalars()
    return {(e.record_type, e.record_id, e.field or ""): e for e in entries}


def _compare(
    found: RowCheck,
    subject: str,
    name: str,
    current: object,
    entry: AuditEntry | None,
    default: object,
    *,
    secret: bool = False,
) -> None:
    """Name a field whose value is not the trail's newest (or the default, with no entry)."""
    if entry is not None:
        if encode_value(current) == entry.new_value:
            return
        where = f"the audit trail last recorded (entry {entry.seq})"
        expected = None if entry.new_value is None else orjson.loads(entry.new_value)
        seq: int | None = entry.seq
    else:
        if current == default:
            return
        where, expected, seq = "the audit trail ever recorded", default, None
    if secret or (isinstance(current, str) and len(current) > _SHOWN):
        text = f"{name} differs from the value {where}"  # long texts and secrets not shown
    else:
        text = f"{name} is {_shown(current)} but {where} {_shown(expected)}"
    found.add(subject, f"{text}: changed outside the application", seq)


def _check_records(session: Session, found: RowCheck) -> None:
    for rows in _chunks(session, ExcursionRow.id, select(ExcursionRow)):
        newest = _newest(session, RECORD_KINDS, [r.id for r in rows], RECORD_FIELDS)
        for row in rows:
            found.records += 1
            subject = f"{row.kind} {row.id}"
            digest = newest.get((row.kind, row.id, CORE_DIGEST_FIELD))
            if digest is None:
                found.add(subject, "not in the audit trail: written outside the application")
                continue
            for name in RECORD_FIELDS:
                entry = newest.get((row.kind, row.id, name))
                if name == CORE_DIGEST_FIELD:
                    if encode_value(core_digest(row)) != entry_value(entry):
                        found.add(
                            subject,
                            "its core content (record, level, status, times) is not what the"
                            f" audit trail last recorded (entry {digest.seq}): changed outside"
                            " the application",
                            digest.seq,
                        )
                else:
                    _compare(found, subject, name, getattr(row, name), entry, RECORD_DEFAULTS[name])
    _vanished(
        session,
        found,
        RECORD_KINDS,
        exists(select(ExcursionRow.id).where(ExcursionRow.id == AuditEntry.record_id)),
    )


def entry_value(entry: AuditEntry | None) -> str | None:
    """Return an entry's new value as stored (None without an entry)."""
    return None if entry is None else entry.new_value


def _check_users(session: Session, found: RowCheck) -> None:
    for rows in _chunks(session, UserRow.username, select(UserRow)):
        newest = _newest(session, (RECORD_TYPE,), [r.username for r in rows], USER_FIELDS)
        for row in rows:
            found.users += 1
            subject = f"user {row.username}"
            if (RECORD_TYPE, row.username, "role") not in newest:
                found.add(subject, "not in the audit trail: created outside the application")
                continue
            for name in USER_FIELDS:
                entry = newest.get((RECORD_TYPE, row.username, name))
                if name != FINGERPRINT_FIELD:
                    _compare(
                        found, subject, name, getattr(row, name), entry, USER_DEFAULTS.get(name)
                    )
                elif entry is None:
                    found.add(subject, "its password hash is not vouched for by the trail")
                else:
                    current = password_fingerprint(row.password_hash)
                    _compare(found, subject, "its password hash", current, entry, None, secret=True)
    _vanished(
        session,
        found,
        (RECORD_TYPE,),
        exists(select(UserRow.id).where(UserRow.username == AuditEntry.record_id)),
    )


def _vanished(session: Session, found: RowCheck, types: Sequence[str], present: Any) -> None:  # noqa: ANN401 - an EXISTS clause
    """Name what the trail created that is no longer in its table."""
    gone = session.execute(
        select(AuditEntry.record_type, AuditEntry.record_id, func.min(AuditEntry.seq))
        .where(AuditEntry.action == "create", AuditEntry.record_type.in_(types), ~present)
        .group_by(AuditEntry.record_type, AuditEntry.record_id)
        .order_by(func.min(AuditEntry.seq))
        .limit(MAX_PROBLEMS)
    ).all()
    for record_type, record_id, seq in gone:
        found.add(
            f"{record_type} {record_id}",
            f"created in the audit trail (entry {seq}) but missing from the store:"
            " deleted outside the application",
            seq,
        )


def _check_signatures(session: Session, found: RowCheck) -> None:
    for rows in _chunks(session, SignatureRow.id, select(SignatureRow)):
        seqs = [r.audit_seq for r in rows]
        entries = {
            e.seq: e
            for e in session.execute(select(AuditEntry).where(AuditEntry.seq.in_(seqs))).scalars()
        }
        baseline = {
            e.record_id: e
            for e in session.execute(
                select(AuditEntry).where(
                    AuditEntry.record_type == SIGNATURE_RECORD,
                    AuditEntry.action == BASELINE_ACTION,
                    AuditEntry.record_id.in_([str(s) for s in seqs]),
                )
            ).scalars()
        }
        for row in rows:
            found.signatures += 1
            _check_signature(found, row, entries.get(row.audit_seq), baseline)
    doubled = session.execute(
        select(SignatureRow.audit_seq)
        .group_by(SignatureRow.audit_seq)
        .having(func.count() > 1)
        .order_by(SignatureRow.audit_seq)
        .limit(MAX_PROBLEMS)
    ).scalars()
    for seq in doubled:
        found.add(
            f"signature of entry {seq}",
            "more than one signature row claims this entry: added outside the application",
            seq,
        )
    missing = session.execute(
        select(AuditEntry.seq, AuditEntry.record_id)
        .where(
            AuditEntry.field == SIGNATURE_FIELD,
            AuditEntry.action.in_([a.value for a in SIGNED_ACTIONS]),
            ~exists(select(SignatureRow.id).where(SignatureRow.audit_seq == AuditEntry.seq)),
        )
        .order_by(AuditEntry.seq)
        .limit(MAX_PROBLEMS)
    ).all()
    for seq, record_id in missing:
        found.add(
            f"signature of entry {seq}",
            f"the audit trail records a signature of {record_id} whose row is missing:"
            " deleted outside the application",
            seq,
        )


def _check_signature(
    found: RowCheck, row: SignatureRow, entry: AuditEntry | None, baseline: dict[str, AuditEntry]
) -> None:
    subject = f"signature {row.id} ({row.action} of {row.record_id}, entry {row.audit_seq})"
    expected = expected_signature(entry) if entry is not None else None
    if expected is None:
        found.add(
            subject,
            f"audit entry {row.audit_seq} is not a signature: added outside the application",
            row.audit_seq,
        )
        return
    if "content_hash" not in expected:  # written before revision 0006
        vouched = baseline.get(str(row.audit_seq))
        if vouched is None or vouched.new_value is None:
            found.add(subject, "its content hash is not vouched for by the trail", row.audit_seq)
        else:
            expected["content_hash"] = orjson.loads(vouched.new_value)
    for name in signature_mismatches(row, expected):
        found.add(
            subject,
            f"{name} is {_shown(getattr(row, name))} but the audit trail says"
            f" {_shown(expected[name])}: changed outside the application",
            row.audit_seq,
        )
