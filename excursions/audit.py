"""The audit trail: append-only entries chained by SHA-256, and the check of the chain.

Every entry's ``hash`` is SHA-256 over the canonical JSON of its content — sequence
number, time, actor, action, record, field, old and new value, reason — and the previous
entry's hash (``GENESIS_HASH`` for the first). Changing, removing or reordering any entry
therefore breaks the chain at that entry, which ``verify`` names. Appends lock the single
``audit_head`` row so that concurrent writers cannot fork the chain; sequence numbers are
assigned here (head + 1), not by the database, so they are contiguous and a deleted entry
shows as a gap.

Values are stored as JSON text (``old_value``/``new_value``), so any JSON value can be
recorded and is hashed exactly as stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from envmon.timeutil import utcnow
from excursions.db import GENESIS_HASH, AuditEntry, AuditHead

#: The head row's key (there is only one).
HEAD_ID: Final = 1
#: Entries read per round trip by ``verify``.
VERIFY_CHUNK: Final = 2_000


def encode_value(value: object) -> str | None:
    """Return a value as the JSON text the trail stores (``None`` stays absent)."""
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def canonical_hash(content: object) -> str:
    """Return the SHA-256 (hex) of a JSON value in canonical form (sorted keys, no spaces)."""
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """Return the SHA-256 (hex) of an entry's content and its ``prev_hash``."""
    content = {
        "seq": entry.seq,
        "at": entry.at.isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "record_type": entry.record_type,
        "record_id": entry.record_id,
        "field": entry.field,
        "old": entry.old_value,
        "new": entry.new_value,
        "reason": entry.reason,
        "prev": entry.prev_hash,
    }
    return canonical_hash(content)


@dataclass(frozen=True, slots=True)
class Change:
    """One field of one record changing (or being created: ``old`` is None)."""

    field: str | None
    old: object
    new: object


class AuditTrail:
    """Appends entries in the caller's transaction; the caller commits."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock

    def append(
        self,
        session: Session,
        *,
        actor: str,
        action: str,
        record_type: str,
        record_id: str,
        changes: list[Change] | None = None,
        reason: str | None = None,
    ) -> list[AuditEntry]:
        """Add one entry per change (one without a field when there are none)."""
        head = session.execute(
            select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
        ).scalar_one_or_none()
        if head is None:
            head = AuditHead(id=HEAD_ID, seq=0, hash=GENESIS_HASH)
            session.add(head)
        at = self.clock()
        entries = []
        for change in changes or [Change(None, None, None)]:
            entry = AuditEntry(
                seq=head.seq + 1,
                at=at,
                actor=actor,
                action=action,
                record_type=record_type,
                record_id=record_id,
                field=change.field,
                old_value=encode_value(change.old),
                new_value=encode_value(change.new),
                reason=reason,
                prev_hash=head.hash,
            )
            entry.hash = entry_hash(entry)
            session.add(entry)
            head.seq, head.hash = entry.seq, entry.hash
            entries.append(entry)
        session.flush()
        return entries


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``verify`` found: how many entries it checked and the first broken one."""

    entries: int
    broken_seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        """Whether the whole chain is intact."""
        return self.broken_seq is None


def _in_order(session: Session) -> Iterator[AuditEntry]:
    after = 0
    while True:
        chunk = (
            session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(VERIFY_CHUNK)
            )
            .scalars()
            .all()
        )
        if not chunk:
            return
        yield from chunk
        after = chunk[-1].seq
        session.expunge_all()


def verify(session: Session) -> Verification:
    """Check the whole chain; name the first entry that was changed, removed or moved."""
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    for entry in _in_order(session):
        if entry.seq != expected_seq:
            return Verification(
                count, expected_seq, f"entry {expected_seq} is missing (next is {entry.seq})"
            )
        if entry.prev_hash != prev_hash:
            return Verification(
                count, entry.seq, "its previous-hash does not match the entry before it"
            )
        if entry_hash(entry) != entry.hash:
            return Verification(count, entry.seq, "its content does not match its hash")
        prev_hash, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    return Verification(count)
