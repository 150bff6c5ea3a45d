"""An excursion's timeline: alarms and notifications from the bus, people's actions, signatures.

The stream processor publishes alarm events on ``envmon.alarms`` and the alerting service
what it did about them (sent, failed, acknowledged, escalated) on ``envmon.notifications``.
``TimelineStore`` keeps both in the append-only ``timeline_events`` table, keyed by the
SHA-256 of the event's canonical JSON, so an event delivered twice is stored once. System
events (collectors, buffers, writers) share the alarms topic but are not about a record:
they are counted and skipped.

``timeline`` merges, for one record, oldest first: its alarm events and notifications (by
excursion id; for a data gap, the sensor's ``stale`` and ``restored`` events within the
gap), the actions people took (from the audit trail: acknowledgements, comments, review,
assessment, closing and reopening, with their reasons) and the signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Annotated, Final

import orjson
from pydantic import Field, TypeAdapter
from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from envmon.display import Display, label
from envmon.models import AlarmEvent, AlarmKind, Notification, SystemEvent
from envmon.timeutil import utcnow
from excursions.audit import canonical_hash
from excursions.db import AuditEntry, ExcursionRow, TimelineEventRow
from excursions.lifecycle import Signed, signatures_of

#: What the alarms and notifications topics carry.
EVENT: Final = TypeAdapter[AlarmEvent | SystemEvent | Notification](
    Annotated[AlarmEvent | SystemEvent | Notification, Field(discriminator="kind")]
)
#: A data gap's own events: they carry no excursion id.
GAP_EVENTS: Final = (AlarmKind.STALE.value, AlarmKind.RESTORED.value)
#: Actions of the audit trail shown in the timeline, with their titles.
ACTION_TITLES: Final = {
    "acknowledge": "acknowledged",
    "comment": "comment",
    "start_review": "review started",
    "assess": "assessment recorded",
    "close": "closed",
    "reopen": "reopened",
}
_SLACK: Final = timedelta(seconds=1)


def event_id(event: AlarmEvent | Notification) -> str:
    """Return an event's key: the SHA-256 of its canonical JSON (equal events, equal keys)."""
    return canonical_hash(event.model_dump(mode="json"))


class TimelineStore:
    """Stores alarm events and notifications once each (see the module docstring)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self.applied = 0
        self.ignored = 0  #: repeats
        self.skipped = 0  #: system events (not about a record)
        self.rejected = 0  #: messages that were not events (dead-lettered by the consumer)

    def apply(self, event: AlarmEvent | SystemEvent | Notification) -> bool:
        """Store an alarm event or notification unless already stored; True if stored."""
        if isinstance(event, SystemEvent):
            self.skipped += 1
            return False
        key = event_id(event)
        row = TimelineEventRow(
            id=key,
            kind=event.kind,
            event=event.event.value if isinstance(event, AlarmEvent) else event.status.value,
            sensor_id=event.sensor_id,
            excursion_id=event.excursion_id,
            ts=event.ts,
            payload=event.model_dump(mode="json"),
            received_at=self.clock(),
        )
        try:
            with Session(self.engine) as session, session.begin():
                if session.get(TimelineEventRow, key) is not None:
                    self.ignored += 1
                    return False
                session.add(row)
        except IntegrityError:  # another consumer stored the same event meanwhile
            self.ignored += 1
            return False
        self.applied += 1
        return True


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of the timeline."""

    at: datetime
    kind: str  # alarm | notification | action | signature
    title: str
    who: str
    detail: str


def timeline(
    session: Session,
    row: ExcursionRow,
    signatures: list[Signed] | None = None,
    display: Display | None = None,
) -> list[TimelineEntry]:
    """Return a loaded record's timeline, oldest first (see the module docstring).

    ``signatures`` are the record's (``signatures_of``), if the caller has them already;
    ``display`` writes the details' values (the site's digits; default: by size).
    """
    shown = display or Display()
    entries = [*_bus_events(session, row, shown), *_actions(session, row.kind, row.id)]
    entries += [
        TimelineEntry(
            s.signature.signed_at,
            "signature",
            f"signed ({s.signature.meaning})",
            s.signature.printed_name,
            f"{label(s.signature.action)}; signed by {s.signature.printed_name}"
            f" ({s.signature.signer}), meaning {label(s.signature.meaning).lower()}"
            + ("" if s.covers_current_content else "; no longer covers the current content"),
        )
        for s in (signatures_of(session, row) if signatures is None else signatures)
    ]
    order = {"alarm": 0, "notification": 1, "action": 2, "signature": 3}
    return sorted(entries, key=lambda e: (e.at, order[e.kind]))


def _bus_events(session: Session, row: ExcursionRow, shown: Display) -> list[TimelineEntry]:
    query = select(TimelineEventRow).where(TimelineEventRow.excursion_id == row.id)
    if row.kind == "data_gap":
        in_gap = (TimelineEventRow.sensor_id == row.sensor_id) & (
            TimelineEventRow.event.in_(GAP_EVENTS)
            & (TimelineEventRow.kind == "alarm")
            & (TimelineEventRow.ts >= row.start - _SLACK)
        )
        if row.end is not None:
            in_gap &= TimelineEventRow.ts <= row.end + _SLACK
        query = select(TimelineEventRow).where(or_(TimelineEventRow.excursion_id == row.id, in_gap))
    found = session.execute(query.order_by(TimelineEventRow.ts)).scalars()
    return [_describe(event, shown) for event in found]


def _describe(row: TimelineEventRow, shown: Display) -> TimelineEntry:
    p = row.payload
    if row.kind == "notification":
        level = f", {p['level']}" if p.get("level") else ""
        about = p.get("alarm") or p.get("system") or "-"
        detail = f"alarm {about}{level}; attempt {p.get('attempt', 1)}"
        if p.get("detail"):
            detail += f"; {p['detail']}"
        return TimelineEntry(
            row.ts,
            "notification",
            f"notification {row.event} ({p['channel']})",
            str(p["recipient"]),
            detail,
        )
    parts = [label(str(p[k])).lower() for k in ("level", "direction") if p.get(k)]
    unit = str(p.get("unit") or "")
    for key in ("value", "limit"):
        if isinstance(p.get(key), int | float):
            written = shown.value(float(p[key]), unit, sensor=row.sensor_id)
            parts.append(f"{key} {written}")
    for key in ("cause", "detail"):
        if p.get(key):
            parts.append(str(p[key]))
    return TimelineEntry(row.ts, "alarm", f"alarm {row.event}", "system", "; ".join(parts))


def _actions(session: Session, record_type: str, record_id: str) -> list[TimelineEntry]:
    """People's actions from the audit trail, one entry per action (its fields together)."""
    found = session.execute(
        select(AuditEntry)
        .where(
            AuditEntry.record_type == record_type,
            AuditEntry.record_id == record_id,
            AuditEntry.action.in_(tuple(ACTION_TITLES)),
        )
        .order_by(AuditEntry.seq)
    ).scalars()
    return [
        _action(list(group))
        for _key, group in groupby(found, key=lambda e: (e.at, e.actor, e.action, e.reason))
    ]


def _action(group: list[AuditEntry]) -> TimelineEntry:
    first = group[0]
    fields = [e.field for e in group if e.field not in (None, "qa_state", "signature", "comment")]
    detail = [_text(e.new_value) for e in group if e.field == "comment"]
    if fields:
        detail.append("changed: " + ", ".join(label(f) for f in fields))
    if first.reason and first.action != "comment" and first.reason not in detail:
        detail.append(f"reason: {first.reason}")
    return TimelineEntry(
        first.at, "action", ACTION_TITLES[first.action], first.actor, "; ".join(detail)
    )


def _text(value: str | None) -> str:
    """Return the text an audit entry holds as JSON."""
    if value is None:
        return ""
    decoded = orjson.loads(value)
    return decoded if isinstance(decoded, str) else value
