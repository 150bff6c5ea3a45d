"""The site-wide audit trail as the QA app shows it: pages of entries, filters, the chain's state.

``trail_page`` returns one page of entries, newest first, filtered on a record (its type
and id), an actor and/or an action, each entry with its actor's printed name and, for an
excursion or data gap, the record's instrument and parameter. ``trail_choices`` returns
the values the filters offer (the distinct actors and actions; the records most recently
written, bounded). Values are decoded from the JSON the trail stores.

``ChainMonitor`` tells whether the hash chain and its head are intact
(``excursions.audit.verify``) without walking the whole chain on every request: a full
walk at most every ``full_every``, and in between only the entries appended since the
last intact walk, checked from that walk's last entry on. A chain found broken is walked
in full on every request until it is repaired (it is not cached as good). Checkpoints and
the rows against the trail are checked by ``envmon audit verify``, not here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import Engine, and_, func, select
from sqlalchemy.orm import Session

from envmon.timeutil import utcnow
from excursions.audit import HEAD_ID, Anchor, Verification, verify
from excursions.db import AuditEntry, AuditHead, ExcursionRow, UserRow

#: The record types that are excursion records (their page is ``/excursions/{id}``).
RECORD_KINDS: Final = ("excursion", "data_gap")
#: The most records the record filter offers (the most recently written ones).
MAX_RECORD_CHOICES: Final = 500
#: The most actors or actions a filter offers.
MAX_CHOICES: Final = 1_000
#: How often the whole chain is walked again (in between: only what was appended).
FULL_EVERY: Final = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class TrailFilters:
    """What the trail page is filtered on (None: not filtered on it)."""

    record_type: str | None = None
    record_id: str | None = None
    actor: str | None = None
    action: str | None = None


@dataclass(frozen=True, slots=True)
class TrailEntry:
    """One audit entry as the page shows it (values decoded from their JSON)."""

    seq: int
    at: datetime
    actor: str
    actor_name: str | None  #: the actor's printed name (None: a system actor or unknown)
    action: str
    record_type: str
    record_id: str
    instrument: str | None  #: of an excursion record (None: another kind of record)
    parameter: str | None
    field: str | None
    old: object
    new: object
    reason: str | None
    #: The values as stored (JSON text) and, for an excursion or data gap, its sensor and
    #: unit: what the pages need to write the core's values as they write them elsewhere.
    old_stored: str | None = None
    new_stored: str | None = None
    sensor_id: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class RecordChoice:
    """A record the record filter offers."""

    record_type: str
    record_id: str
    instrument: str | None = None
    parameter: str | None = None


@dataclass(frozen=True, slots=True)
class TrailChoices:
    """The values the filters offer."""

    records: list[RecordChoice]
    actors: list[str]
    actions: list[str]


def decoded(text: str | None) -> object:
    """Return a stored value (JSON text) as the value it was (None stays None)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # not written by the trail: shown as stored
        return text


def _where(filters: TrailFilters) -> list[Any]:
    conditions: list[Any] = []
    if filters.record_type is not None:
        conditions.append(AuditEntry.record_type == filters.record_type)
    if filters.record_id is not None:
        conditions.append(AuditEntry.record_id == filters.record_id)
    if filters.actor is not None:
        conditions.append(AuditEntry.actor == filters.actor)
    if filters.action is not None:
        conditions.append(AuditEntry.action == filters.action)
    return conditions


def trail_page(
    engine: Engine, filters: TrailFilters, *, page: int, page_size: int
) -> tuple[int, list[TrailEntry]]:
    """Return how many entries match and those of page ``page`` (from 1), newest first."""
    conditions = _where(filters)
    record = and_(ExcursionRow.id == AuditEntry.record_id, AuditEntry.record_type.in_(RECORD_KINDS))
    query = (
        select(
            AuditEntry,
            UserRow.full_name,
            ExcursionRow.instrument,
            ExcursionRow.parameter,
            ExcursionRow.sensor_id,
            ExcursionRow.record,
        )
        .outerjoin(UserRow, UserRow.username == AuditEntry.actor)
        .outerjoin(ExcursionRow, record)
        .where(*conditions)
        .order_by(AuditEntry.seq.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    with Session(engine) as session:
        total = session.execute(
            select(func.count()).select_from(AuditEntry).where(*conditions)
        ).scalar_one()
        entries = [
            TrailEntry(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                actor_name=name,
                action=entry.action,
                record_type=entry.record_type,
                record_id=entry.record_id,
                instrument=instrument,
                parameter=parameter,
                field=entry.field,
                old=decoded(entry.old_value),
                new=decoded(entry.new_value),
                reason=entry.reason,
                old_stored=entry.old_value,
                new_stored=entry.new_value,
                sensor_id=sensor_id,
                unit=(core or {}).get("unit"),
            )
            for entry, name, instrument, parameter, sensor_id, core in session.execute(query).all()
        ]
    return int(total), entries


def trail_choices(engine: Engine) -> TrailChoices:
    """Return the distinct actors and actions, and the records most recently written."""
    newest = func.max(AuditEntry.seq)
    with Session(engine) as session:
        records = session.execute(
            select(AuditEntry.record_type, AuditEntry.record_id)
            .group_by(AuditEntry.record_type, AuditEntry.record_id)
            .order_by(newest.desc())
            .limit(MAX_RECORD_CHOICES)
        ).all()
        ids = [record_id for kind, record_id in records if kind in RECORD_KINDS]
        about = {
            row.id: (row.instrument, row.parameter)
            for row in session.execute(
                select(ExcursionRow.id, ExcursionRow.instrument, ExcursionRow.parameter).where(
                    ExcursionRow.id.in_(ids)
                )
            ).all()
        }
        actors = session.execute(
            select(AuditEntry.actor).distinct().order_by(AuditEntry.actor).limit(MAX_CHOICES)
        ).scalars()
        actions = session.execute(
            select(AuditEntry.action).distinct().order_by(AuditEntry.action).limit(MAX_CHOICES)
        ).scalars()
        choices = [
            RecordChoice(kind, record_id, *about.get(record_id, (None, None)))
            if kind in RECORD_KINDS
            else RecordChoice(kind, record_id)
            for kind, record_id in records
        ]
        return TrailChoices(
            sorted(choices, key=lambda c: (c.record_type, c.record_id)), list(actors), list(actions)
        )


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """What the last check of the chain found.

    ``entries``: the entries found intact (all of them when ``ok``); ``last_seq`` and
    ``last_at``: the chain's newest entry; ``problem`` and ``broken_seq``: the first thing
    found wrong and the entry it concerns (None: none named, e.g. a missing head row).
    """

    ok: bool
    entries: int
    last_seq: int | None
    last_at: datetime | None
    checked_at: datetime
    problem: str = ""
    broken_seq: int | None = None


@dataclass(frozen=True, slots=True)
class _Good:
    seq: int
    hash: str
    entries: int
    walked_at: datetime  #: when the whole chain was last walked


class ChainMonitor:
    """Checks the audit chain for the pages (see the module docstring); thread-safe."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        full_every: timedelta = FULL_EVERY,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.full_every = full_every
        self._good: _Good | None = None
        self._lock = threading.Lock()

    def status(self) -> ChainStatus:
        """Return the chain's state now (incrementally when a recent full walk was intact)."""
        with self._lock, Session(self.engine) as session:
            now = self.clock()
            head = session.get(AuditHead, HEAD_ID)
            good = self._good
            if good is not None and head is not None and now - good.walked_at < self.full_every:
                if (head.seq, head.hash) == (good.seq, good.hash):
                    return self._result(session, head.seq, good.entries, now)
                since = verify(session, start=Anchor(good.seq, good.hash, "the previous check"))
                if since.ok and since.head_seq is not None:
                    self._good = _Good(
                        since.head_seq,
                        since.last_hash,
                        good.entries + since.entries,
                        good.walked_at,
                    )
                    return self._result(session, since.head_seq, self._good.entries, now)
            checked = verify(session)
            if checked.ok and checked.head_seq is not None:
                self._good = _Good(checked.head_seq, checked.last_hash, checked.entries, now)
                return self._result(session, checked.head_seq, checked.entries, now)
            self._good = None
            return self._broken(session, checked, now)

    @staticmethod
    def _newest_at(session: Session, seq: int) -> datetime | None:
        entry = session.get(AuditEntry, seq)
        return entry.at if entry is not None else None

    def _result(self, session: Session, seq: int, entries: int, now: datetime) -> ChainStatus:
        last = seq if seq > 0 else None
        at = self._newest_at(session, seq) if last is not None else None
        return ChainStatus(True, entries, last, at, now)

    def _broken(self, session: Session, checked: Verification, now: datetime) -> ChainStatus:
        first = checked.first
        problem = f"{first.subject}: {first.text}" if first is not None else "not intact"
        last = session.execute(select(func.max(AuditEntry.seq))).scalar_one_or_none()
        at = self._newest_at(session, int(last)) if last is not None else None
        return ChainStatus(False, checked.entries, last, at, now, problem, checked.broken_seq)


def record_key(record_type: str, record_id: str) -> str:
    """Return how the record filter names a record (``type:id``; types hold no colon)."""
    return f"{record_type}:{record_id}"


def split_record_key(text: str) -> tuple[str, str] | None:
    """Return the (type, id) a record filter names, or None if it names none."""
    kind, colon, record_id = text.partition(":")
    return (kind, record_id) if colon and kind and record_id else None


def shown_value(value: object) -> str:
    """Return a decoded value as text (strings as they are, other values as JSON)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
