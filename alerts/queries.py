"""Read models of the incidents pages and API: open incidents, one incident, recent ones.

Everything here only reads ``alerts.store`` (and the audit trail's entries about
incidents) and returns frozen dataclasses with UTC datetimes; the pages put the times
in the site's zone. Names of people, schedules, teams and maintenance windows come from
the site's ``alerting:`` section when it is given (a contact removed from it since is
shown by its id).

What an open incident says: its state, what it is about, since when, who acknowledged it
(when, with what comment), who was paged on which channel and how the newest attempt went
(the server's answer), when the escalation takes its next step and which, and whether
a maintenance window or a shelve holds its pages back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from alerts.store import (
    NEXT_REMINDER,
    NEXT_STEP,
    NEXT_UNSHELVE,
    NEXT_UNSUPPRESS,
    RATE_OF_CHANGE,
    RESOLVED,
    TRIGGERED,
    AttemptRow,
    IncidentRow,
    NotificationRow,
    ShelveRow,
)
from envmon.config.alerting import AlertingConfig, StepConfig
from envmon.display import format_value
from excursions.db import AuditEntry
from excursions.queries import AuditItem

#: The audit trail's record type of incidents (``AlertEngine`` writes it).
RECORD_TYPE: Final = "incident"
#: Open incidents shown at most (the rest are counted).
DEFAULT_OPEN_LIMIT: Final = 200
#: How far back the resolved incidents go, and how many are shown at most.
DEFAULT_RECENT_DAYS: Final = 7
DEFAULT_RECENT_LIMIT: Final = 100
#: Notifications of one incident shown at most (its newest; a long escalation has many).
DEFAULT_NOTIFICATION_LIMIT: Final = 500


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt and what the server answered."""

    attempt: int
    at: datetime
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Paged:
    """One person on one channel: the newest message about the incident and how it went."""

    contact_id: str
    contact_name: str
    channel_id: str
    purpose: str
    status: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    last_attempt: Attempt | None
    detail: str


@dataclass(frozen=True, slots=True)
class NextAction:
    """What the incident's timer does next, and when."""

    at: datetime
    kind: str  #: ``step``, ``reminder``, ``unsuppress``, ``unshelve`` (``alerts.store``)
    text: str  #: in words: "step 2 of 2: team Facilities (email)"


@dataclass(frozen=True, slots=True)
class Shelve:
    """A shelve of the incident from the app."""

    by: str
    reason: str
    start: datetime
    until: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class Suppression:
    """What holds the incident's pages back now."""

    kind: str  #: ``maintenance`` or ``shelve``
    text: str  #: the maintenance window's reason, or the shelve's
    by: str | None  #: who shelved it
    until: datetime | None


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    """An incident as the list and the top of its page show it."""

    id: str
    state: str
    kind: str
    title: str
    area: str | None
    instrument: str | None
    sensor_id: str | None
    parameter: str | None
    component: str | None
    level: str | None
    excursion_id: str | None
    measurement: str | None  #: the newest value against its limit, rounded with units
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_comment: str | None
    policy_id: str
    step: int  #: the step taken last (0-based)
    steps: int  #: the policy's number of steps (0: the policy is no longer configured)
    cycle: int  #: the round (0-based)
    rounds: int  #: the policy's number of rounds (``repeat`` + 1)
    pages: int  #: escalation rounds begun (2 after a rise to action or a shelve's end)
    next: NextAction | None
    suppressed: Suppression | None
    paged: tuple[Paged, ...]
    row_version: int


@dataclass(frozen=True, slots=True)
class NotificationItem:
    """One message to one person on one channel, with every attempt at delivering it."""

    id: str
    contact_id: str
    contact_name: str
    channel_id: str
    purpose: str
    step: int
    cycle: int
    status: str
    created_at: datetime
    due_at: datetime
    sent_at: datetime | None
    detail: str
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    """One incident with its notifications and attempts (in time order), shelves and audit."""

    incident: IncidentSummary
    notifications: tuple[NotificationItem, ...]
    notifications_total: int
    shelves: tuple[Shelve, ...]
    audit: tuple[AuditItem, ...]


@dataclass(frozen=True, slots=True)
class OpenIncidents:
    """The open incidents (those needing attention first) and how many there are."""

    total: int
    items: tuple[IncidentSummary, ...]


def measurement(row: IncidentRow) -> str | None:
    """Return the newest value against its limit (``−68.0 °C (limit −70.0 °C)``), if any."""
    event = row.event
    value, limit = event.get("value"), event.get("limit")
    if row.kind == RATE_OF_CHANGE or not isinstance(value, int | float):
        detail = event.get("detail")
        return str(detail) if detail else None
    unit = str(event.get("unit") or "")
    text = format_value(float(value), unit)
    if isinstance(limit, int | float):
        text += f" (limit {format_value(float(limit), unit)})"
    return text


class _Names:
    """Names of the configured people, schedules, teams, windows (ids when unknown)."""

    def __init__(self, alerting: AlertingConfig | None) -> None:
        self.alerting = alerting

    def contact(self, contact_id: str) -> str:
        if self.alerting is None:
            return contact_id
        try:
            return self.alerting.contact(contact_id).name
        except KeyError:  # no longer configured
            return contact_id

    def step(self, step: StepConfig) -> str:
        notify = step.notify
        if notify.schedule is not None:
            who = f"on call for {self._schedule(notify.schedule)}"
        elif notify.team is not None:
            who = f"team {self._team(notify.team)}"
        else:
            who = self.contact(str(notify.contact))
        return f"{who} ({', '.join(step.channels)})" if step.channels else who

    def _schedule(self, schedule_id: str) -> str:
        try:
            name = self.alerting.schedule(schedule_id).name if self.alerting else None
        except KeyError:
            name = None
        return name or schedule_id

    def _team(self, team_id: str) -> str:
        try:
            name = self.alerting.team(team_id).name if self.alerting else None
        except KeyError:
            name = None
        return name or team_id

    def maintenance(self, window_id: str) -> str:
        if self.alerting is not None:
            for window in self.alerting.maintenance:
                if window.id == window_id:
                    return f"{window.reason} ({window.id})"
        return window_id

    def steps(self, policy_id: str) -> tuple[tuple[StepConfig, ...], int]:
        """Return a policy's steps and its number of rounds (none if it is not configured)."""
        if self.alerting is None:
            return (), 0
        try:
            policy = self.alerting.policy(policy_id)
        except KeyError:
            return (), 0
        return tuple(policy.steps), policy.repeat + 1


def _next(row: IncidentRow, names: _Names) -> NextAction | None:
    """Say what the incident's timer does when it is due."""
    if row.next_at is None or row.state == RESOLVED:
        return None
    kind = row.next_kind or ""
    if kind == NEXT_STEP:
        steps, rounds = names.steps(row.policy_id)
        if not steps:
            text = "next escalation step"
        else:
            step, cycle = row.step + 1, row.cycle
            if step >= len(steps):
                step, cycle = 0, cycle + 1
            if cycle >= rounds:
                text = "the escalation ends: nobody more to page"
            else:
                text = f"step {step + 1} of {len(steps)}: {names.step(steps[step])}"
                if rounds > 1:
                    text += f" (round {cycle + 1} of {rounds})"
    elif kind == NEXT_REMINDER:
        who = f"{row.acknowledged_by}" if row.acknowledged_by else "everyone paged"
        text = f"reminder to {who} (acknowledged, not cleared)"
    elif kind == NEXT_UNSUPPRESS:
        text = "the maintenance window ends: paging starts if still open"
    elif kind == NEXT_UNSHELVE:
        text = "the shelve ends: pages again from the first step if still open"
    else:
        text = kind
    return NextAction(at=row.next_at, kind=kind, text=text)


def _suppression(
    row: IncidentRow, shelves: Mapping[int, ShelveRow], names: _Names
) -> Suppression | None:
    reason = row.suppressed_by
    if not reason or row.state == RESOLVED:
        return None
    kind, _, key = reason.partition(":")
    if kind == "shelve" and key.isdigit() and int(key) in shelves:
        shelve = shelves[int(key)]
        return Suppression("shelve", shelve.reason, shelve.by, shelve.until)
    if kind == "maintenance":
        until = row.next_at if row.next_kind == NEXT_UNSUPPRESS else None
        return Suppression("maintenance", names.maintenance(key), None, until)
    return Suppression(kind, key or reason, None, None)


def _attempt(row: AttemptRow) -> Attempt:
    return Attempt(attempt=row.attempt, at=row.at, ok=row.ok, detail=row.detail)


def _paged(
    notifications: Sequence[NotificationRow],
    newest_attempt: Mapping[str, AttemptRow],
    names: _Names,
) -> tuple[Paged, ...]:
    """Return one entry per person and channel: their newest page or reminder."""
    newest: dict[tuple[str, str], NotificationRow] = {}
    for row in notifications:
        if row.purpose not in ("page", "reminder"):
            continue
        pair = (row.contact_id, row.channel_id)
        known = newest.get(pair)
        if known is None or (row.created_at, row.id) > (known.created_at, known.id):
            newest[pair] = row
    found = []
    for (contact, channel), row in sorted(newest.items(), key=lambda kv: kv[1].created_at):
        attempt = newest_attempt.get(row.id)
        found.append(
            Paged(
                contact_id=contact,
                contact_name=names.contact(contact),
                channel_id=channel,
                purpose=row.purpose,
                status=row.status,
                created_at=row.created_at,
                sent_at=row.sent_at,
                attempts=row.attempts,
                last_attempt=_attempt(attempt) if attempt is not None else None,
                detail=row.detail,
            )
        )
    return tuple(found)


def _summaries(
    session: Session, rows: Sequence[IncidentRow], names: _Names
) -> list[IncidentSummary]:
    """Return the summaries of ``rows`` (three queries, whatever their number)."""
    ids = [row.id for row in rows]
    if not ids:
        return []
    notifications = session.scalars(
        select(NotificationRow).where(
            NotificationRow.incident_id.in_(ids),
            NotificationRow.purpose.in_(("page", "reminder")),
        )
    ).all()
    newest_attempt: dict[str, AttemptRow] = {}
    for attempt in session.scalars(select(AttemptRow).where(AttemptRow.incident_id.in_(ids))):
        known = newest_attempt.get(attempt.notification_id)
        if known is None or (attempt.at, attempt.id) > (known.at, known.id):
            newest_attempt[attempt.notification_id] = attempt
    shelve_ids = [
        int(row.suppressed_by.partition(":")[2])
        for row in rows
        if row.suppressed_by
        and row.suppressed_by.startswith("shelve:")
        and row.suppressed_by.partition(":")[2].isdigit()
    ]
    shelves = (
        {s.id: s for s in session.scalars(select(ShelveRow).where(ShelveRow.id.in_(shelve_ids)))}
        if shelve_ids
        else {}
    )
    by_incident: dict[str, list[NotificationRow]] = {}
    for notification in notifications:
        by_incident.setdefault(notification.incident_id, []).append(notification)
    return [
        _summary(row, by_incident.get(row.id, []), newest_attempt, shelves, names) for row in rows
    ]


def _summary(
    row: IncidentRow,
    notifications: Sequence[NotificationRow],
    newest_attempt: Mapping[str, AttemptRow],
    shelves: Mapping[int, ShelveRow],
    names: _Names,
) -> IncidentSummary:
    steps, rounds = names.steps(row.policy_id)
    return IncidentSummary(
        id=row.id,
        state=row.state,
        kind=row.kind,
        title=row.title,
        area=row.area,
        instrument=row.instrument,
        sensor_id=row.sensor_id,
        parameter=row.parameter,
        component=row.component,
        level=row.level,
        excursion_id=row.excursion_id,
        measurement=measurement(row),
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        ack_comment=row.ack_comment,
        policy_id=row.policy_id,
        step=row.step,
        steps=len(steps),
        cycle=row.cycle,
        rounds=rounds,
        pages=row.pages,
        next=_next(row, names),
        suppressed=_suppression(row, shelves, names),
        paged=_paged(notifications, newest_attempt, names),
        row_version=row.row_version,
    )


def open_incidents(
    engine: Engine, alerting: AlertingConfig | None = None, *, limit: int = DEFAULT_OPEN_LIMIT
) -> OpenIncidents:
    """Return the open incidents: unacknowledged first, then newest first (up to ``limit``)."""
    names = _Names(alerting)
    with Session(engine) as session:
        total = session.scalar(
            select(func.count()).select_from(IncidentRow).where(IncidentRow.state != RESOLVED)
        )
        rows = session.scalars(
            select(IncidentRow)
            .where(IncidentRow.state != RESOLVED)
            .order_by(
                case((IncidentRow.state == TRIGGERED, 0), else_=1),
                IncidentRow.opened_at.desc(),
                IncidentRow.id,
            )
            .limit(limit)
        ).all()
        return OpenIncidents(int(total or 0), tuple(_summaries(session, rows, names)))


def recently_resolved(
    engine: Engine,
    alerting: AlertingConfig | None = None,
    *,
    now: datetime,
    days: int = DEFAULT_RECENT_DAYS,
    limit: int = DEFAULT_RECENT_LIMIT,
) -> tuple[IncidentSummary, ...]:
    """Return the incidents resolved in the last ``days`` days, newest first (up to ``limit``)."""
    names = _Names(alerting)
    since = now - timedelta(days=days)
    with Session(engine) as session:
        rows = session.scalars(
            select(IncidentRow)
            .where(IncidentRow.state == RESOLVED, IncidentRow.resolved_at >= since)
            .order_by(IncidentRow.resolved_at.desc(), IncidentRow.id)
            .limit(limit)
        ).all()
        return tuple(_summaries(session, rows, names))


def incident_detail(
    engine: Engine,
    incident_id: str,
    alerting: AlertingConfig | None = None,
    *,
    notification_limit: int = DEFAULT_NOTIFICATION_LIMIT,
) -> IncidentDetail | None:
    """Return one incident with its notifications, attempts, shelves and audit (None: no id)."""
    names = _Names(alerting)
    with Session(engine) as session:
        row = session.get(IncidentRow, incident_id)
        if row is None:
            return None
        (summary,) = _summaries(session, [row], names)
        total = session.scalar(
            select(func.count())
            .select_from(NotificationRow)
            .where(NotificationRow.incident_id == incident_id)
        )
        notifications = list(
            session.scalars(
                select(NotificationRow)
                .where(NotificationRow.incident_id == incident_id)
                .order_by(NotificationRow.created_at.desc(), NotificationRow.id)
                .limit(notification_limit)
            )
        )
        notifications.sort(key=lambda n: (n.created_at, n.due_at, n.contact_id, n.channel_id))
        attempts: dict[str, list[Attempt]] = {}
        for attempt in session.scalars(
            select(AttemptRow)
            .where(AttemptRow.incident_id == incident_id)
            .order_by(AttemptRow.at, AttemptRow.id)
        ):
            attempts.setdefault(attempt.notification_id, []).append(_attempt(attempt))
        shelves = session.scalars(
            select(ShelveRow).where(ShelveRow.incident_id == incident_id).order_by(ShelveRow.start)
        ).all()
        audit = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.record_type == RECORD_TYPE, AuditEntry.record_id == incident_id)
            .order_by(AuditEntry.seq)
        ).all()
        return IncidentDetail(
            incident=summary,
            notifications=tuple(
                NotificationItem(
                    id=n.id,
                    contact_id=n.contact_id,
                    contact_name=names.contact(n.contact_id),
                    channel_id=n.channel_id,
                    purpose=n.purpose,
                    step=n.step,
                    cycle=n.cycle,
                    status=n.status,
                    created_at=n.created_at,
                    due_at=n.due_at,
                    sent_at=n.sent_at,
                    detail=n.detail,
                    attempts=tuple(attempts.get(n.id, ())),
                )
                for n in notifications
            ),
            notifications_total=int(total or 0),
            shelves=tuple(
                Shelve(by=s.by, reason=s.reason, start=s.start, until=s.until, ended_at=s.ended_at)
                for s in shelves
            ),
            audit=tuple(AuditItem.of_entry(e) for e in audit),
        )
