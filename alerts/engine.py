"""The alerting decisions: alarms into incidents, incidents into notifications and timers.

Everything here runs inside the caller's database transaction (a SQLAlchemy ``Session``)
and only reads and writes rows of ``alerts.store``: an event is handled, or a due timer
taken, in one transaction with every notification and timer it causes, so a crash leaves
either all of it or none (and the Kafka offset of the event is committed only after).
Nothing here sends anything: the dispatcher (``alerts.dispatcher``) sends what is due.

What opens and closes an incident (one per excursion; per sensor episode for stale data,
a sensor fault or a rate-of-change alarm; per component and condition for system events):

- ``raised`` / ``escalated`` with an excursion id: the excursion's incident. A rise from
  alert to action re-routes it at the new level and pages again from the first step, even
  if the alert was acknowledged. ``cleared``: resolved, everyone paged is told.
- ``stale`` / ``sensor_fault``: the sensor's episode; ``restored`` with that cause ends it.
- ``rate_of_change`` and the system event ``readings_missing`` have no end event: their
  incident resolves when acknowledged.
- system events: ``disconnected``, ``subscription_silent``, ``buffer_full``,
  ``buffer_stalled``, ``timeseries_unavailable`` open; their counterparts (``connected``,
  ``resubscribed``, ``buffer_ok``, ``buffer_flowing``, ``timeseries_restored``) resolve.

Escalation: step 0 of the routed policy notifies its targets (a schedule's current on-call,
a person, a team) on the chosen channels, then waits; each later step the same; after the
last, the steps run again up to ``repeat`` times. An acknowledgement (with a comment)
stops it; a reminder goes out every ``reminder`` while acknowledged and not cleared.
A maintenance window covering the incident's area, instrument or sensor suppresses its
pages (logged as suppressed notifications) until the window ends; a shelve from the app
does the same until it expires; both page again then if the incident is still open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from alerts.rota import Rota
from alerts.routing import SensorContext, route
from alerts.store import (
    ACKNOWLEDGED,
    CANCELLED,
    CLEARED,
    EXCURSION,
    NEXT_REMINDER,
    NEXT_STEP,
    NEXT_UNSHELVE,
    NEXT_UNSUPPRESS,
    PAGE,
    PENDING,
    RATE_OF_CHANGE,
    REMINDER,
    RESOLVED,
    SEEN_RETENTION,
    SENSOR_FAULT,
    STALE,
    SUPPRESSED,
    SYSTEM,
    TRIGGERED,
    BusOutboxRow,
    IncidentRow,
    NotificationRow,
    RecipientRow,
    SeenEventRow,
    ShelveRow,
    incident_id,
    notification_id,
)
from envmon.bus import NOTIFICATIONS
from envmon.config.alerting import AlertingConfig, PolicyConfig, StepConfig
from envmon.errors import EnvmonError
from envmon.models import (
    AlarmEvent,
    AlarmKind,
    Level,
    Notification,
    NotificationStatus,
    SystemEvent,
    SystemEventKind,
)
from envmon.timeutil import utcnow
from excursions.audit import AuditTrail, Change, canonical_hash

logger = logging.getLogger(__name__)

#: System events that open an incident, and the event that ends it (None: acknowledged ends it).
SYSTEM_OPENERS: Final[Mapping[SystemEventKind, SystemEventKind | None]] = {
    SystemEventKind.DISCONNECTED: SystemEventKind.CONNECTED,
    SystemEventKind.SUBSCRIPTION_SILENT: SystemEventKind.RESUBSCRIBED,
    SystemEventKind.BUFFER_FULL: SystemEventKind.BUFFER_OK,
    SystemEventKind.BUFFER_STALLED: SystemEventKind.BUFFER_FLOWING,
    SystemEventKind.TIMESERIES_UNAVAILABLE: SystemEventKind.TIMESERIES_RESTORED,
    SystemEventKind.READINGS_MISSING: None,
}
SYSTEM_CLOSERS: Final = {
    closer: opener for opener, closer in SYSTEM_OPENERS.items() if closer is not None
}
#: Incident kinds with no end event: acknowledging resolves them.
ENDLESS: Final = frozenset({RATE_OF_CHANGE, f"{SYSTEM}:{SystemEventKind.READINGS_MISSING}"})
_LEVEL_RANK: Final = {None: 0, Level.ALERT.value: 1, Level.ACTION.value: 2}
MAX_COMMENT: Final = 2_000
MIN_COMMENT: Final = 3
#: Due incident timers taken per tick (the rest wait for the next tick).
TICK_LIMIT: Final = 500


class IncidentError(EnvmonError):
    """An acknowledgement or shelve that cannot be done (the message says why)."""


class IncidentNotFoundError(IncidentError):
    """No incident has that id."""


class IncidentConflictError(IncidentError):
    """The incident is not in a state that allows it (already acknowledged, resolved, …)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One person on one channel."""

    contact_id: str
    channel_id: str


class AlertEngine:
    """Turns events and due timers into incidents and notification rows (no I/O but the session)."""

    def __init__(
        self,
        alerting: AlertingConfig,
        rota: Rota,
        sensors: Mapping[str, SensorContext],
        *,
        site_tz: ZoneInfo,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.alerting = alerting
        self.rota = rota
        self.sensors = sensors
        self.site_tz = site_tz
        self.clock = clock
        self.audit = AuditTrail(clock)
        self.window = timedelta(seconds=alerting.grouping.window)

    # ---- events -------------------------------------------------------------------------

    def handle(self, session: Session, event: AlarmEvent | SystemEvent) -> bool:
        """Apply one event; False if it was handled before (a redelivery) or needs nothing."""
        return self.handle_many(session, [event]) > 0

    def handle_many(self, session: Session, events: Sequence[AlarmEvent | SystemEvent]) -> int:
        """Apply events in order; return how many changed something.

        The rows a batch needs are read up front in a few queries (which events were seen,
        the excursions' incidents, locked), and nothing is flushed until the caller
        commits: a burst of a thousand alarms costs a handful of round trips, not
        thousands. What the batch itself adds is remembered in ``_Batch``.
        """
        batch = _batch(session)
        digests = [canonical_hash(event.model_dump(mode="json")) for event in events]
        known: set[str] = set()
        for chunk in _chunks(digests):
            known.update(
                session.scalars(select(SeenEventRow.hash).where(SeenEventRow.hash.in_(chunk)))
            )
        self._prefetch(session, batch, events)
        now = self.clock()
        changed = 0
        with session.no_autoflush:
            for event, digest in zip(events, digests, strict=True):
                if digest in known or digest in batch.seen:
                    continue
                batch.seen.add(digest)
                session.add(SeenEventRow(hash=digest, at=now))
                if isinstance(event, SystemEvent):
                    changed += self._system(session, event, now)
                else:
                    changed += self._alarm(session, event, now)
        return changed

    @staticmethod
    def _prefetch(
        session: Session, batch: _Batch, events: Sequence[AlarmEvent | SystemEvent]
    ) -> None:
        """Load (and lock) the incidents of the batch's excursions in one query."""
        wanted = {
            incident_id(f"excursion:{event.excursion_id}")
            for event in events
            if isinstance(event, AlarmEvent) and event.excursion_id is not None
        } - batch.by_id.keys()
        for chunk in _chunks(sorted(wanted)):
            found = session.scalars(
                select(IncidentRow).where(IncidentRow.id.in_(chunk)).with_for_update()
            ).all()
            for row in found:
                batch.by_id[row.id] = row
            batch.absent.update(set(chunk) - {row.id for row in found})

    def _incident(self, session: Session, key_id: str) -> IncidentRow | None:
        batch = _batch(session)
        if key_id in batch.by_id:
            return batch.by_id[key_id]
        if key_id in batch.absent:
            return None
        row = session.get(IncidentRow, key_id, with_for_update=True)
        if row is None:
            batch.absent.add(key_id)
        else:
            batch.by_id[key_id] = row
        return row

    def _alarm(self, session: Session, event: AlarmEvent, now: datetime) -> bool:
        kind = event.event
        sensor = event.sensor_id
        if kind in (AlarmKind.RAISED, AlarmKind.ESCALATED):
            if event.excursion_id is None:
                return self._open_or_update(session, f"alarm:{sensor}", EXCURSION, event, now)
            return self._excursion(session, event, now)
        if kind is AlarmKind.CLEARED:
            key = f"excursion:{event.excursion_id}" if event.excursion_id else f"alarm:{sensor}"
            return self._resolve(session, key, event, now)
        if kind is AlarmKind.STALE:
            return self._open_or_update(session, f"stale:{sensor}", STALE, event, now)
        if kind is AlarmKind.SENSOR_FAULT:
            return self._open_or_update(session, f"fault:{sensor}", SENSOR_FAULT, event, now)
        if kind is AlarmKind.RATE_OF_CHANGE:
            return self._open_or_update(session, f"roc:{sensor}", RATE_OF_CHANGE, event, now)
        if kind is AlarmKind.RESTORED:
            cause = "fault" if event.cause == "sensor_fault" else "stale"
            return self._resolve(session, f"{cause}:{sensor}", event, now)
        return False

    def _system(self, session: Session, event: SystemEvent, now: datetime) -> bool:
        if event.event in SYSTEM_OPENERS:
            key = f"system:{event.component}:{event.event.value}"
            return self._open_or_update(session, key, SYSTEM, event, now)
        opener = SYSTEM_CLOSERS.get(event.event)
        if opener is None:
            return False
        return self._resolve(session, f"system:{event.component}:{opener.value}", event, now)

    def _excursion(self, session: Session, event: AlarmEvent, now: datetime) -> bool:
        key = f"excursion:{event.excursion_id}"
        row = self._incident(session, incident_id(key))
        if row is None:
            self._open(session, key, EXCURSION, event, now, incident_id(key))
            return True
        if row.state == RESOLVED:
            return False  # an event older than the clear, delivered late
        row.event = event.model_dump(mode="json")
        row.updated_at = now
        new_level = event.level.value if event.level is not None else None
        if _LEVEL_RANK[new_level] <= _LEVEL_RANK[row.level]:
            return True
        # alert -> action: route at the new level and page again from the first step
        row.level = new_level
        row.route, row.policy_id = route(self.alerting, event, self.sensors)
        row.title = self._title(event)
        self._repage(session, row, now)
        return True

    def _open_or_update(
        self,
        session: Session,
        key: str,
        kind: str,
        event: AlarmEvent | SystemEvent,
        now: datetime,
    ) -> bool:
        row = self._open_row(session, key)
        if row is None:
            self._open(session, key, kind, event, now, incident_id(key, event.ts))
            return True
        row.event = event.model_dump(mode="json")
        row.updated_at = now
        return True

    def _open_row(self, session: Session, key: str) -> IncidentRow | None:
        """Return the open incident about ``key`` (None: none is open)."""
        if key.startswith("excursion:"):
            row = self._incident(session, incident_id(key))
            return row if row is not None and row.state != RESOLVED else None
        batch = _batch(session)
        if key in batch.open_by_key:
            held = batch.open_by_key[key]
            if held.state != RESOLVED:
                return held
        return session.scalars(
            select(IncidentRow)
            .where(IncidentRow.key == key, IncidentRow.state != RESOLVED)
            .order_by(IncidentRow.opened_at.desc())
            .limit(1)
            .with_for_update()
        ).first()

    def _open(
        self,
        session: Session,
        key: str,
        kind: str,
        event: AlarmEvent | SystemEvent,
        now: datetime,
        new_id: str,
    ) -> None:
        if self._incident(session, new_id) is not None:
            return  # opened and resolved before: this is a late copy of its first event
        index, policy = route(self.alerting, event, self.sensors)
        row = IncidentRow(
            id=new_id,
            key=key,
            **self._about(event, kind),
            title=self._title(event),
            event=event.model_dump(mode="json"),
            policy_id=policy,
            route=index,
            state=TRIGGERED,
            opened_at=now,
            updated_at=now,
            step=0,
            cycle=0,
            pages=1,
            reminders=0,
            row_version=1,
        )
        session.add(row)
        batch = _batch(session)
        batch.by_id[new_id] = row
        batch.absent.discard(new_id)
        batch.new_ids.add(new_id)
        batch.open_by_key[key] = row
        self._begin(session, row, now)

    def _about(self, event: AlarmEvent | SystemEvent, kind: str) -> dict[str, str | None]:
        """Return the incident's columns that say what it is about."""
        if isinstance(event, SystemEvent):
            return {"kind": f"{SYSTEM}:{event.event.value}", "component": event.component}
        sensor = self.sensors.get(event.sensor_id)
        return {
            "kind": kind,
            "sensor_id": event.sensor_id,
            "area": sensor.area if sensor else event.area,
            "instrument": sensor.instrument if sensor else None,
            "parameter": event.parameter,
            "excursion_id": event.excursion_id,
            "level": event.level.value if event.level else None,
        }

    def _resolve(
        self, session: Session, key: str, event: AlarmEvent | SystemEvent, now: datetime
    ) -> bool:
        row = self._open_row(session, key)
        if row is None:
            return False
        row.event = event.model_dump(mode="json")
        self._close(session, row, now)
        recipients = session.scalars(
            select(RecipientRow).where(RecipientRow.incident_id == row.id)
        ).all()
        for recipient in recipients:
            target = Target(recipient.contact_id, recipient.channel_id)
            self._notify(session, row, target, CLEARED, now, seq=(row.pages,))
        return True

    def _close(self, session: Session, row: IncidentRow, now: datetime) -> None:
        row.state = RESOLVED
        row.resolved_at = now
        row.updated_at = now
        row.next_at = None
        row.next_kind = None
        row.row_version += 1
        self._cancel_pending(session, row.id)

    # ---- escalation ---------------------------------------------------------------------

    def _begin(self, session: Session, row: IncidentRow, now: datetime) -> None:
        """Start the escalation from its first step (or log it suppressed in maintenance)."""
        row.step = 0
        row.cycle = 0
        window = self._maintenance(row, now)
        if window is not None:
            reason, end = window
            row.suppressed_by = reason
            for target in self._targets(self._policy(row).steps[0], now):
                self._notify(session, row, target, PAGE, now, status=SUPPRESSED)
            row.next_at, row.next_kind = end, NEXT_UNSUPPRESS
            logger.info("incident %s (%s): pages suppressed by %s", row.id, row.title, reason)
            return
        row.suppressed_by = None
        self._run_step(session, row, now)

    def _repage(self, session: Session, row: IncidentRow, now: datetime) -> None:
        """Page again from the first step (a rise to action, a shelve's end)."""
        row.state = TRIGGERED
        row.acknowledged_at = None
        row.acknowledged_by = None
        row.ack_comment = None
        row.pages += 1
        row.row_version += 1
        self._cancel_pending(session, row.id)
        self._begin(session, row, now)

    def _run_step(self, session: Session, row: IncidentRow, now: datetime) -> None:
        policy = self._policy(row)
        step = policy.steps[row.step]
        targets = self._targets(step, now)
        if not targets:
            logger.error(
                "incident %s (%s): step %d of policy %s has nobody to notify; going on",
                row.id,
                row.title,
                row.step + 1,
                policy.id,
            )
        for target in targets:
            self._notify(session, row, target, PAGE, now)
        if row.step > 0 or row.cycle > 0:
            detail = f"step {row.step + 1} of {len(policy.steps)}, round {row.cycle + 1}"
            session.add(
                outbox_row(row, NotificationStatus.ESCALATED, "escalation", _who(step), detail, now)
            )
        row.next_at = now + timedelta(seconds=step.wait) if targets else now
        row.next_kind = NEXT_STEP

    def tick(self, session: Session, *, limit: int = TICK_LIMIT) -> int:
        """Take every incident timer that is due (up to ``limit``); return how many."""
        now = self.clock()
        rows = session.scalars(
            select(IncidentRow)
            .where(IncidentRow.next_at <= now)
            .order_by(IncidentRow.next_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            self._due(session, row, now)
        return len(rows)

    def _due(self, session: Session, row: IncidentRow, now: datetime) -> None:
        kind = row.next_kind
        row.next_at = None
        row.next_kind = None
        if row.state == RESOLVED:
            return
        if kind == NEXT_STEP and row.state == TRIGGERED:
            self._advance(session, row, now)
        elif kind == NEXT_REMINDER and row.state == ACKNOWLEDGED:
            self._remind(session, row, now)
        elif kind == NEXT_UNSUPPRESS:
            if row.state == TRIGGERED:
                self._begin(session, row, now)
            else:
                row.suppressed_by = None
        elif kind == NEXT_UNSHELVE:
            session.execute(
                update(ShelveRow)
                .where(ShelveRow.incident_id == row.id, ShelveRow.ended_at.is_(None))
                .values(ended_at=now)
            )
            row.suppressed_by = None
            logger.info("incident %s (%s): shelve ended, paging again", row.id, row.title)
            self._repage(session, row, now)

    def _advance(self, session: Session, row: IncidentRow, now: datetime) -> None:
        policy = self._policy(row)
        row.step += 1
        if row.step >= len(policy.steps):
            row.step = 0
            row.cycle += 1
            if row.cycle > policy.repeat:
                row.step = len(policy.steps) - 1
                row.cycle = policy.repeat
                logger.error(
                    "incident %s (%s): escalation ended unacknowledged after %d round(s)",
                    row.id,
                    row.title,
                    policy.repeat + 1,
                )
                return
        row.updated_at = now
        self._run_step(session, row, now)

    def _remind(self, session: Session, row: IncidentRow, now: datetime) -> None:
        policy = self._policy(row)
        if policy.reminder is None:
            return
        row.reminders += 1
        for target in self._reminded(session, row):
            self._notify(session, row, target, REMINDER, now, seq=(row.pages, row.reminders))
        row.next_at = now + timedelta(seconds=policy.reminder)
        row.next_kind = NEXT_REMINDER

    def _reminded(self, session: Session, row: IncidentRow) -> list[Target]:
        """Return the acknowledger's channels if they are a contact, else everyone paged."""
        recipients = [
            Target(r.contact_id, r.channel_id)
            for r in session.scalars(select(RecipientRow).where(RecipientRow.incident_id == row.id))
        ]
        mine = [
            t
            for t in recipients
            if row.acknowledged_by is not None
            and self.alerting.contact(t.contact_id).user == row.acknowledged_by
        ]
        return mine or recipients

    # ---- people's actions ---------------------------------------------------------------

    def acknowledge(
        self, session: Session, incident: str, *, actor: str, comment: str, via: str = "app"
    ) -> IncidentRow:
        """Acknowledge an incident with a comment: its escalation stops (audited)."""
        text = _comment(comment)
        now = self.clock()
        row = self._row(session, incident)
        if row.state == RESOLVED:
            raise IncidentConflictError("this incident has already been resolved")
        if row.state == ACKNOWLEDGED:
            raise IncidentConflictError(
                f"this incident was already acknowledged by {row.acknowledged_by}"
            )
        old = row.state
        row.state = ACKNOWLEDGED
        row.acknowledged_at = now
        row.acknowledged_by = actor
        row.ack_comment = text
        changes = [Change("state", old, ACKNOWLEDGED), Change("via", None, via)]
        self._acted(session, row, now, actor, "acknowledge", changes, text)
        session.add(outbox_row(row, NotificationStatus.ACKNOWLEDGED, via, actor, text, now))
        if row.kind in ENDLESS:
            self._close(session, row, now)
            return row
        reminder = self._policy(row).reminder
        if row.suppressed_by is None or not row.suppressed_by.startswith("shelve:"):
            row.next_at = now + timedelta(seconds=reminder) if reminder else None
            row.next_kind = NEXT_REMINDER if reminder else None
        return row

    def shelve(
        self, session: Session, incident: str, *, actor: str, reason: str, until: datetime
    ) -> IncidentRow:
        """Stop an incident's notifications until ``until`` (audited); page again then if open."""
        text = _comment(reason)
        now = self.clock()
        longest = timedelta(seconds=self.alerting.shelving.max)
        if until <= now:
            raise IncidentConflictError("a shelve must end in the future")
        if until - now > longest:
            raise IncidentConflictError(
                f"a shelve may last at most {_hours(longest)} (site setting alerting.shelving.max)"
            )
        row = self._row(session, incident)
        if row.state == RESOLVED:
            raise IncidentConflictError("this incident has already been resolved")
        shelve = ShelveRow(incident_id=row.id, by=actor, reason=text, start=now, until=until)
        session.add(shelve)
        session.flush()
        row.suppressed_by = f"shelve:{shelve.id}"
        row.next_at, row.next_kind = until, NEXT_UNSHELVE
        changes = [Change("shelved_until", None, until.isoformat())]
        self._acted(session, row, now, actor, "shelve", changes, text)
        return row

    def _acted(
        self,
        session: Session,
        row: IncidentRow,
        now: datetime,
        actor: str,
        action: str,
        changes: list[Change],
        reason: str,
    ) -> None:
        """Finish a person's action on an incident: pending pages stop, the trail records it."""
        row.updated_at = now
        row.row_version += 1
        self._cancel_pending(session, row.id)
        self.audit.append(
            session,
            actor=actor,
            action=action,
            record_type="incident",
            record_id=row.id,
            changes=changes,
            reason=reason,
        )

    @staticmethod
    def _row(session: Session, incident: str) -> IncidentRow:
        row = session.get(IncidentRow, incident, with_for_update=True)
        if row is None:
            raise IncidentNotFoundError("no such incident")
        return row

    # ---- helpers ------------------------------------------------------------------------

    def _policy(self, row: IncidentRow) -> PolicyConfig:
        return self.alerting.policy(row.policy_id)

    def _targets(self, step: StepConfig, now: datetime) -> list[Target]:
        notify = step.notify
        if notify.schedule is not None:
            people: Sequence[str] = self.rota.on_call(notify.schedule, now)
        elif notify.team is not None:
            people = self.alerting.team(notify.team).members
        else:
            assert notify.contact is not None
            people = (notify.contact,)
        targets = []
        for person in dict.fromkeys(people):
            contact = self.alerting.contact(person)
            for channel in contact.channels:
                if not step.channels or channel.id in step.channels:
                    targets.append(Target(person, channel.id))
        return targets

    def _maintenance(self, row: IncidentRow, now: datetime) -> tuple[str, datetime] | None:
        for window in self.alerting.maintenance:
            scope = window.scope
            hit = (
                (row.area is not None and row.area in scope.area)
                or (row.instrument is not None and row.instrument in scope.instrument)
                or (row.sensor_id is not None and row.sensor_id in scope.sensor)
            )
            if hit and window.active(now, self.site_tz):
                end = window.end_after(now, self.site_tz)
                if end is not None:
                    return f"maintenance:{window.id}", end
        return None

    def _notify(
        self,
        session: Session,
        row: IncidentRow,
        target: Target,
        purpose: str,
        now: datetime,
        *,
        status: str = PENDING,
        seq: tuple[int, ...] | None = None,
    ) -> None:
        if seq is None:
            seq = (row.pages, row.cycle, row.step)
        marker = (status,) if status == SUPPRESSED else ()  # the page after it is another decision
        nid = notification_id(row.id, purpose, *marker, *seq, target.contact_id, target.channel_id)
        batch = _batch(session)
        if nid in batch.notifications:
            return
        if row.id not in batch.new_ids and session.get(NotificationRow, nid) is not None:
            return  # the same decision, made before
        batch.notifications.add(nid)
        group = f"{target.contact_id}|{target.channel_id}|{purpose}|{row.area or row.component}"
        due = now
        if self.window and status == PENDING:
            opened: datetime | None
            if group in batch.groups:
                opened = batch.groups[group]
            else:
                opened = session.scalar(
                    select(func.min(NotificationRow.due_at)).where(
                        NotificationRow.group_key == group,
                        NotificationRow.status == PENDING,
                        NotificationRow.due_at > now,
                    )
                )
            due = opened if opened is not None and opened > now else now + self.window
            batch.groups[group] = due
        session.add(
            NotificationRow(
                id=nid,
                incident_id=row.id,
                contact_id=target.contact_id,
                channel_id=target.channel_id,
                purpose=purpose,
                step=row.step,
                cycle=row.cycle,
                group_key=group,
                status=status,
                due_at=due,
                attempts=0,
                created_at=now,
                detail="suppressed: " + (row.suppressed_by or "") if status == SUPPRESSED else "",
            )
        )

    def paged(self, session: Session, row: IncidentRow, target: Target) -> None:
        """Note that ``target`` was sent a page about ``row`` (the dispatcher calls this).

        They are told when it clears; a page that went out after the clear (it was already
        on its way) is followed by the clear at once.
        """
        now = self.clock()
        batch = _batch(session)
        known = (row.id, target.contact_id, target.channel_id)
        if known in batch.recipients:
            pass
        elif row.id not in batch.recipients_loaded and session.get(RecipientRow, known) is not None:
            batch.recipients.add(known)
        else:
            batch.recipients.add(known)
            session.add(
                RecipientRow(
                    incident_id=row.id,
                    contact_id=target.contact_id,
                    channel_id=target.channel_id,
                    first_at=now,
                )
            )
        if row.state == RESOLVED:
            self._notify(session, row, target, CLEARED, now, seq=(row.pages,))

    @staticmethod
    def preload_recipients(session: Session, incidents: Sequence[str]) -> None:
        """Read who was paged about ``incidents`` in one query (for ``paged``)."""
        batch = _batch(session)
        for chunk in _chunks(sorted(set(incidents) - batch.recipients_loaded)):
            for recipient in session.scalars(
                select(RecipientRow).where(RecipientRow.incident_id.in_(chunk))
            ):
                batch.recipients.add(
                    (recipient.incident_id, recipient.contact_id, recipient.channel_id)
                )
            batch.recipients_loaded.update(chunk)

    @staticmethod
    def _cancel_pending(session: Session, incident: str) -> None:
        session.execute(
            update(NotificationRow)
            .where(
                NotificationRow.incident_id == incident,
                NotificationRow.status == PENDING,
                NotificationRow.purpose.in_((PAGE, REMINDER)),
            )
            .values(status=CANCELLED, detail="no longer needed")
        )

    def _title(self, event: AlarmEvent | SystemEvent) -> str:
        if isinstance(event, SystemEvent):
            return f"{event.component}: {event.event.value.replace('_', ' ')}"
        sensor = self.sensors.get(event.sensor_id)
        where = f"{sensor.instrument_name} {event.parameter}" if sensor else event.sensor_id
        area = f" in {sensor.area_name}" if sensor else ""
        what = {
            AlarmKind.STALE: "no data",
            AlarmKind.SENSOR_FAULT: "sensor fault",
            AlarmKind.RATE_OF_CHANGE: "changing too fast",
        }.get(event.event)
        if what is None:
            side = f" {event.direction.value}" if event.direction is not None else ""
            what = f"beyond its{side} limit" if event.level is not None else "alarm"
        return f"{where}{area}: {what}"[:300]

    def prune(self, session: Session) -> int:
        """Forget handled events older than ``SEEN_RETENTION``; return how many."""
        cutoff = self.clock() - SEEN_RETENTION
        result = session.execute(delete(SeenEventRow).where(SeenEventRow.at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)


@dataclass
class _Batch:
    """What one transaction of the engine has read and added (``session.info``).

    Nothing is flushed while a batch is handled, so rows added earlier in the same
    transaction are not visible to queries: they are looked up here instead.
    """

    seen: set[str] = field(default_factory=set)
    by_id: dict[str, IncidentRow] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    new_ids: set[str] = field(default_factory=set)
    open_by_key: dict[str, IncidentRow] = field(default_factory=dict)
    notifications: set[str] = field(default_factory=set)
    groups: dict[str, datetime] = field(default_factory=dict)
    recipients: set[tuple[str, str, str]] = field(default_factory=set)
    recipients_loaded: set[str] = field(default_factory=set)


_BATCH_KEY: Final = "alerts.engine.batch"
_CHUNK: Final = 500


def _batch(session: Session) -> _Batch:
    """Return the batch state of ``session``'s transaction (a new one per transaction)."""
    transaction = session.get_transaction()
    held = session.info.get(_BATCH_KEY)
    if held is None or held[0] is not transaction:
        held = session.info[_BATCH_KEY] = (transaction, _Batch())
    batch: _Batch = held[1]
    return batch


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def outbox_row(
    row: IncidentRow,
    status: NotificationStatus,
    channel: str,
    recipient: str,
    detail: str,
    now: datetime,
    attempt: int = 1,
) -> BusOutboxRow:
    """Return the bus message that reports ``status`` of ``row`` (a ``Notification``)."""
    event = row.event
    alarm = event.get("event") if event.get("kind") == "alarm" else None
    system = event.get("event") if event.get("kind") == "system" else None
    message = Notification(
        status=status,
        sensor_id=row.sensor_id or str(row.component or "envmon"),
        excursion_id=row.excursion_id,
        incident_id=row.id,
        alarm=AlarmKind(str(alarm)) if alarm else None,
        system=SystemEventKind(str(system)) if system else None,
        level=Level(row.level) if row.level else None,
        channel=channel[:40],
        recipient=recipient[:200] or "-",
        ts=now,
        attempt=attempt,
        detail=detail,
    )
    return BusOutboxRow(
        topic=NOTIFICATIONS,
        key=message.sensor_id,
        payload=message.model_dump(mode="json"),
        created_at=now,
        published=False,
    )


def _who(step: StepConfig) -> str:
    notify = step.notify
    if notify.schedule is not None:
        return f"schedule {notify.schedule}"
    if notify.team is not None:
        return f"team {notify.team}"
    return f"{notify.contact}"


def _comment(text: str) -> str:
    cleaned = text.strip()
    if len(cleaned) < MIN_COMMENT:
        raise IncidentConflictError(
            f"a comment of at least {MIN_COMMENT} characters is required: say what you are doing"
        )
    if len(cleaned) > MAX_COMMENT:
        raise IncidentConflictError(f"a comment may be at most {MAX_COMMENT} characters")
    return cleaned


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h"
