"""The audit trail: append-only entries chained by SHA-256, its head, and the check of both.

Every entry's ``hash`` is SHA-256 over the canonical JSON of its content — sequence
number, time, actor, action, record, field, old and new value, reason — and the previous
entry's hash (``GENESIS_HASH`` for the first). Changing, removing or reordering any entry
therefore breaks the chain at that entry, which ``verify`` names. Appends lock the single
``audit_head`` row so that concurrent writers cannot fork the chain; sequence numbers are
assigned here (head + 1), not by the database, so they are contiguous and a deleted entry
shows as a gap. The head is written after the entries it points to (the database's
triggers let it move only forward, onto an existing entry), and ``verify`` compares the
chain's end with it, so removing the newest entries shows as a truncated tail.

Someone who can write the tables with the triggers switched off can still rewrite an
entry and recompute every later hash and the head: that is caught only by an anchor
outside the database, a signed checkpoint (``excursions.checkpoints``), which ``verify``
takes as an ``Anchor``.

Values are stored as JSON text (``old_value``/``new_value``), so any JSON value can be
recorded and is hashed exactly as stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from envmon.errors import EnvmonError
from envmon.timeutil import utcnow
from excursions.db import GENESIS_HASH, AuditEntry, AuditHead

#: The head row's key (there is only one; the migrations create it).
HEAD_ID: Final = 1
#: Entries read per round trip by ``verify``.
VERIFY_CHUNK: Final = 2_000


class AuditError(EnvmonError):
    """The trail cannot be appended to (its head is missing: the store was tampered with)."""


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
            select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID).with_for_update()
        ).one_or_none()
        if head is None:
            raise AuditError(
                "the audit trail's head row is missing: run envmon db upgrade on a new store;"
                " on an existing one it was deleted outside the application (envmon audit verify)"
            )
        seq, prev_hash = head.seq, head.hash
        at = self.clock()
        entries = []
        for change in changes or [Change(None, None, None)]:
            seq += 1
            entry = AuditEntry(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                record_type=record_type,
                record_id=record_id,
                field=change.field,
                old_value=encode_value(change.old),
                new_value=encode_value(change.new),
                reason=reason,
                prev_hash=prev_hash,
            )
            entry.hash = prev_hash = entry_hash(entry)
            session.add(entry)
            entries.append(entry)
        # The entries first: the head's trigger lets it move only onto an existing entry.
        session.flush()
        session.execute(
            update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=seq, hash=prev_hash)
        )
        return entries


@dataclass(frozen=True, slots=True)
class Anchor:
    """An entry the chain must still hold unchanged: a signed checkpoint's sequence and hash."""

    seq: int
    hash: str
    label: str  # how a message names it, e.g. "the checkpoint of 2026-11-25T08:00Z (line 3)"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing ``verify`` found wrong: what it concerns, the first entry concerned, why."""

    subject: str
    text: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``verify`` found: the intact entries, the head, the anchors held, the problems."""

    entries: int
    problems: tuple[Problem, ...] = ()
    head_seq: int | None = None
    anchored_seq: int | None = None  #: the newest entry a matching anchor vouches for
    anchors_checked: int = 0
    last_hash: str = GENESIS_HASH  #: the hash of the last entry read

    @property
    def ok(self) -> bool:
        """Whether chain, head and anchors are intact."""
        return not self.problems

    @property
    def broken_seq(self) -> int | None:
        """The first entry concerned by a problem (None: intact, or no entry named)."""
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    @property
    def problem(self) -> str:
        """The text of the problem about the first entry concerned ("" when intact)."""
        first = self.first
        return first.text if first is not None else ""

    @property
    def first(self) -> Problem | None:
        """The problem about the first entry concerned (or the first found)."""
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: (p.seq is None, p.seq or 0))


def entries_text(first: int, last: int) -> str:
    """Return "entry 7" or "entries 7 to 9"."""
    return f"entry {first}" if first == last else f"entries {first} to {last}"


def were(first: int, last: int, what: str) -> str:
    """Return "entry 7 was removed" or "entries 7 to 9 were removed" (``what``: removed...)."""
    return f"{entries_text(first, last)} {'was' if first == last else 'were'} {what}"


def _in_order(session: Session, after: int = 0) -> Iterator[AuditEntry]:
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


class _Walk:
    """The state of one walk along the chain (see ``verify``)."""

    def __init__(self, anchors: Iterable[Anchor], start: Anchor | None) -> None:
        self.problems: list[Problem] = []
        self.anchors = sorted(anchors, key=lambda a: a.seq)
        self.anchors_checked = 0
        self.good = start  # the newest anchor the chain matched so far
        self.anchor_broken = False
        self.chain_broken = False
        self.intact = 0
        self.last_seq = start.seq if start else 0
        self.last_hash = start.hash if start else GENESIS_HASH
        self.expected_seq = self.last_seq + 1

    def entry(self, entry: AuditEntry) -> None:
        if not self.chain_broken:
            self._link(entry)
        while self.anchors and self.anchors[0].seq < entry.seq:
            anchor = self.anchors.pop(0)
            if anchor.seq > self.last_seq:  # between the previous entry and this one
                self._anchor_failed(
                    anchor, f"entry {anchor.seq}, which {anchor.label} vouches for, is missing"
                )
        while self.anchors and self.anchors[0].seq == entry.seq:
            self._anchor(self.anchors.pop(0), entry.hash)
        self.last_seq, self.last_hash = entry.seq, entry.hash

    def _link(self, entry: AuditEntry) -> None:
        seq = self.expected_seq
        if entry.seq != seq:
            removed = were(seq, entry.seq - 1, "removed")
            self._broken(seq, f"{removed} (missing; the next is {entry.seq})")
        elif entry.prev_hash != self.last_hash:
            self._broken(seq, "its previous-hash does not match the entry before it")
        elif entry_hash(entry) != entry.hash:
            self._broken(seq, "its content does not match its hash")
        else:
            self.intact += 1
            self.expected_seq += 1

    def _broken(self, seq: int, text: str) -> None:
        self.chain_broken = True
        self.problems.append(Problem(f"entry {seq}", text, seq))

    def _anchor(self, anchor: Anchor, found_hash: str) -> None:
        self.anchors_checked += 1
        if found_hash == anchor.hash:
            if not self.anchor_broken:
                self.good = anchor
            return
        since = self.good.seq + 1 if self.good else 1
        matched = f"; entry {self.good.seq} matches {self.good.label}" if self.good else ""
        self._anchor_failed(
            anchor,
            f"{were(since, anchor.seq, 'rewritten')}: entry {anchor.seq}'s hash is not"
            f" the one {anchor.label} vouches for{matched}",
            since,
        )

    def _anchor_failed(self, anchor: Anchor, text: str, seq: int | None = None) -> None:
        if not self.anchor_broken:  # the later anchors of a rewritten chain all fail too
            self.anchor_broken = True
            self.problems.append(Problem("checkpoint", text, anchor.seq if seq is None else seq))

    def finish(self, head: AuditHead | None) -> None:
        last = self.last_seq
        for anchor in self.anchors:  # beyond the last entry
            if anchor.seq == 0 and anchor.hash == GENESIS_HASH:
                self.anchors_checked += 1
                continue
            self._anchor_failed(
                anchor,
                f"the trail ends at entry {last}, but {anchor.label} vouches for entry"
                f" {anchor.seq}: {were(last + 1, anchor.seq, 'removed')}",
                last + 1,
            )
        if head is None:
            self.problems.append(
                Problem("audit head", "the head row is missing (deleted outside the application)")
            )
        elif head.seq > last:
            self.problems.append(
                Problem(
                    "audit head",
                    f"the trail ends at entry {last} but its head says {head.seq}:"
                    f" {were(last + 1, head.seq, 'removed')} (a truncated tail)",
                    last + 1,
                )
            )
        elif head.seq < last:
            self.problems.append(
                Problem(
                    "audit head",
                    f"the head says {head.seq} but the trail goes on to entry {last}:"
                    " the head was set back outside the application",
                    head.seq + 1,
                )
            )
        elif head.hash != self.last_hash:
            self.problems.append(
                Problem(
                    "audit head",
                    f"the head's hash is not entry {last}'s: the head was changed"
                    " outside the application",
                    last,
                )
            )


def verify(
    session: Session, anchors: Iterable[Anchor] = (), *, start: Anchor | None = None
) -> Verification:
    """Check the chain, its head and the ``anchors``; name what was changed or removed.

    The chain is walked from its first entry (or from ``start``, an anchor already
    checked: its entry must still have its hash) to its last; the first entry that is
    missing, moved or altered is named. The head must point at the last entry: a head
    beyond it means the newest entries were removed. Every anchor's entry must still have
    the anchor's hash: a chain rewritten with recomputed hashes, or cut below an anchor,
    fails naming the entries since the newest anchor that still matched. Run it inside one
    snapshot (``store_engine(url, snapshot=True)``) while the application appends.
    """
    head = session.get(AuditHead, HEAD_ID)
    walk = _Walk(anchors, start)
    after = 0
    if start is not None and start.seq > 0:
        found = session.get(AuditEntry, start.seq)
        if found is None or found.hash != start.hash:
            state = "is missing" if found is None else "has another hash"
            walk.problems.append(
                Problem(
                    "checkpoint",
                    f"entry {start.seq}, which {start.label} vouches for, {state}:"
                    f" the trail was rewritten or cut at or before entry {start.seq}",
                    start.seq,
                )
            )
            return Verification(0, tuple(walk.problems), head.seq if head else None)
        after = start.seq
    for entry in _in_order(session, after):
        walk.entry(entry)
    walk.finish(head)
    return Verification(
        walk.intact,
        tuple(walk.problems),
        head.seq if head else None,
        walk.good.seq if walk.good else None,
        walk.anchors_checked,
        walk.last_hash,
    )
