"""The dispatcher: sends the notifications that are due, records every attempt, retries.

One round (``dispatch``):

1. *claim*, in a short transaction: due rows of ``alert_notifications`` (pending with
   ``due_at`` passed, or sending with an expired lease: their sender died) are marked
   ``sending`` with a lease and this instance's name. On PostgreSQL the rows are chosen
   with ``FOR UPDATE SKIP LOCKED``, so two instances never claim the same row; on SQLite
   the transaction holds the database's write lock. A claimed page whose incident was
   acknowledged or resolved meanwhile is cancelled instead.
2. *send*, outside any transaction: rows of one group (one person, one channel, one
   purpose, one area) become one message through apprise (``alerts.delivery``); when
   more than ``STORM_GROUPS`` areas are due for one person at once (an alarm storm),
   their rows become one message.
3. *record*, in a transaction: one ``alert_attempts`` row per notification with the
   server's answer, the row ``sent``, or back to ``pending`` with a back-off
   (``RETRY_BASE_S`` doubling up to ``RETRY_MAX_S``) or ``failed`` after
   ``max_attempts``; every attempt is also reported on ``envmon.notifications`` through
   the bus outbox.

A sender killed between 2 and 3 leaves its rows ``sending``: they are sent again once the
lease has passed. That is the one case in which a person can get a message twice (the
server took it, the record of it was lost): at-least-once at the mail server, never a
silent loss.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from alerts.delivery import Message, Notifier, Outcome
from alerts.engine import AlertEngine, Target, outbox_row
from alerts.links import LinkSigner
from alerts.messages import IncidentView, compose
from alerts.store import (
    ACKNOWLEDGED,
    CANCELLED,
    FAILED,
    PAGE,
    PENDING,
    REMINDER,
    RESOLVED,
    SENDING,
    SENT,
    AttemptRow,
    IncidentRow,
    NotificationRow,
)
from envmon.config.alerting import AlertingConfig
from envmon.errors import EnvmonError
from envmon.models import NotificationStatus
from envmon.timeutil import utcnow

logger = logging.getLogger(__name__)

#: How long a claim holds (longer than any send's timeout).
DEFAULT_LEASE_S: Final = 120.0
DEFAULT_BATCH: Final = 2_000
DEFAULT_MAX_ATTEMPTS: Final = 8
DEFAULT_CONCURRENCY: Final = 32
#: More areas than this due at once for one person: one message for all of them.
STORM_GROUPS: Final = 3
RETRY_BASE_S: Final = 5.0
RETRY_MAX_S: Final = 300.0


def retry_delay(attempts: int, base_s: float = RETRY_BASE_S, max_s: float = RETRY_MAX_S) -> float:
    """Return the wait before the next attempt after ``attempts`` failed ones."""
    return float(min(base_s * 2.0 ** max(attempts - 1, 0), max_s))


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification this instance sends now."""

    id: str
    incident_id: str
    contact_id: str
    channel_id: str
    purpose: str
    group_key: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Claimed notifications of one group: one message."""

    rows: tuple[Claimed, ...]
    views: tuple[IncidentView, ...]


class Dispatcher:
    """Claims, sends and records due notifications (see the module docstring)."""

    def __init__(
        self,
        db: Engine,
        engine: AlertEngine,
        notifier: Notifier,
        *,
        site_name: str,
        site_tz: ZoneInfo,
        instance: str,
        signer: LinkSigner | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
        lease_s: float = DEFAULT_LEASE_S,
        batch: int = DEFAULT_BATCH,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry_base_s: float = RETRY_BASE_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.db = db
        self.engine = engine
        self.alerting: AlertingConfig = engine.alerting
        self.notifier = notifier
        self.site_name = site_name
        self.site_tz = site_tz
        self.instance = instance[:64]
        self.signer = signer
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.lease = timedelta(seconds=lease_s)
        self.batch = batch
        self.max_attempts = max_attempts
        self._gate = asyncio.Semaphore(concurrency)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.sent = 0
        self.failed = 0
        self.cancelled = 0

    async def dispatch(self) -> int:
        """Send every notification due now (one round); return how many were attempted."""
        batches = await asyncio.to_thread(self.claim)
        if not batches:
            return 0
        results = await asyncio.gather(*(self._send(batch) for batch in batches))
        await asyncio.to_thread(self.record, list(zip(batches, results, strict=True)))
        return sum(len(batch.rows) for batch in batches)

    def claim(self) -> list[Batch]:
        """Mark the due notifications as this instance's and group them into messages."""
        now = self.clock()
        with Session(self.db) as session, session.begin():
            rows = session.scalars(
                select(NotificationRow)
                .where(
                    or_(
                        (NotificationRow.status == PENDING) & (NotificationRow.due_at <= now),
                        (NotificationRow.status == SENDING) & (NotificationRow.lease_until < now),
                    )
                )
                .order_by(NotificationRow.due_at)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            incidents = {
                row.id: row
                for row in session.scalars(
                    select(IncidentRow).where(IncidentRow.id.in_({row.incident_id for row in rows}))
                )
            }
            groups: dict[str, list[Claimed]] = {}
            for row in rows:
                incident = incidents.get(row.incident_id)
                if incident is None or _moot(row, incident):
                    row.status = CANCELLED
                    row.detail = "no longer needed"
                    self.cancelled += 1
                    continue
                row.status = SENDING
                row.lease_until = now + self.lease
                row.claimed_by = self.instance
                row.attempts += 1
                groups.setdefault(row.group_key, []).append(
                    Claimed(
                        row.id,
                        row.incident_id,
                        row.contact_id,
                        row.channel_id,
                        row.purpose,
                        row.group_key,
                        row.attempts,
                    )
                )
            return [
                Batch(
                    tuple(claimed),
                    tuple(_view(incidents[c.incident_id]) for c in _unique(claimed)),
                )
                for claimed in _storms_merged(list(groups.values()))
            ]

    async def _send(self, batch: Batch) -> Outcome:
        first = batch.rows[0]
        try:
            channel = self.alerting.contact(first.contact_id).channel(first.channel_id)
            url = channel.resolve_url(self.environ)
        except KeyError:
            return Outcome(False, "the contact or channel is no longer in the configuration")
        except EnvmonError as exc:
            return Outcome(False, str(exc))
        message = self.message(batch)
        async with self._gate:
            try:
                return await self.notifier.send(url, message)
            except Exception as exc:
                logger.exception("sending a notification failed unexpectedly")
                return Outcome(False, f"internal error: {type(exc).__name__}")

    def message(self, batch: Batch) -> Message:
        """Return the message for a batch (links signed now)."""
        first = batch.rows[0]
        now = self.clock()
        links: dict[str, str] = {}
        base = self.alerting.links.base_url if self.alerting.links is not None else None
        if self.signer is not None and base and first.purpose in (PAGE, REMINDER):
            for view in batch.views:
                token = self.signer.make(view.id, first.contact_id, now)
                links[view.id] = f"{str(base).rstrip('/')}/incidents/ack/{token}"
        composed = compose(
            first.purpose,
            batch.views,
            site_name=self.site_name,
            tz=self.site_tz,
            links=links,
            app_url=str(base) if base else None,
        )
        return Message(title=composed.title, body=composed.body)

    def record(self, results: Sequence[tuple[Batch, Outcome]]) -> None:
        """Store each attempt's outcome; schedule a retry or give up on failures."""
        now = self.clock()
        ids = [claimed.id for batch, _ in results for claimed in batch.rows]
        with Session(self.db) as session, session.begin(), session.no_autoflush:
            rows: dict[str, NotificationRow] = {}
            incidents: dict[str, IncidentRow] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows.update(
                    (row.id, row)
                    for row in session.scalars(
                        select(NotificationRow)
                        .where(NotificationRow.id.in_(chunk))
                        .with_for_update()
                    )
                )
            wanted = sorted({row.incident_id for row in rows.values()})
            for start in range(0, len(wanted), 500):
                incidents.update(
                    (row.id, row)
                    for row in session.scalars(
                        select(IncidentRow).where(IncidentRow.id.in_(wanted[start : start + 500]))
                    )
                )
            self.engine.preload_recipients(session, wanted)
            for batch, outcome in results:
                for claimed in batch.rows:
                    row = rows.get(claimed.id)
                    if row is None or row.status != SENDING or row.claimed_by != self.instance:
                        continue  # the lease passed and another instance took it over
                    session.add(
                        AttemptRow(
                            notification_id=row.id,
                            incident_id=row.incident_id,
                            attempt=claimed.attempt,
                            at=now,
                            ok=outcome.ok,
                            detail=outcome.detail[:1000],
                        )
                    )
                    row.detail = outcome.detail[:1000]
                    row.lease_until = None
                    incident = incidents.get(row.incident_id)
                    if outcome.ok:
                        row.status = SENT
                        row.sent_at = now
                        self.sent += 1
                        if incident is not None and row.purpose == PAGE:
                            self.engine.paged(
                                session, incident, Target(row.contact_id, row.channel_id)
                            )
                    elif claimed.attempt >= self.max_attempts:
                        row.status = FAILED
                        self.failed += 1
                        logger.error(
                            "notification to %s via %s failed %d times, giving up: %s",
                            row.contact_id,
                            row.channel_id,
                            claimed.attempt,
                            outcome.detail,
                        )
                    else:
                        row.status = PENDING
                        delay = retry_delay(claimed.attempt, self.retry_base_s, self.retry_max_s)
                        row.due_at = now + timedelta(seconds=delay)
                        logger.warning(
                            "notification to %s via %s failed (attempt %d), retrying: %s",
                            row.contact_id,
                            row.channel_id,
                            claimed.attempt,
                            outcome.detail,
                        )
                    if incident is not None:
                        session.add(
                            outbox_row(
                                incident,
                                NotificationStatus.SENT
                                if outcome.ok
                                else NotificationStatus.FAILED,
                                row.channel_id,
                                row.contact_id,
                                f"{row.purpose}: {outcome.detail}"[:500],
                                now,
                                claimed.attempt,
                            )
                        )


def _storms_merged(groups: list[list[Claimed]]) -> list[list[Claimed]]:
    """Merge one person's groups into one message when more than ``STORM_GROUPS`` are due.

    Grouping is per area; in an alarm storm across many areas (a power cut, a site-wide
    network loss) one person would otherwise get a message per area at once. Beyond
    ``STORM_GROUPS`` areas they get one message per channel naming everything.
    """
    by_person: dict[tuple[str, str, str], list[list[Claimed]]] = {}
    for group in groups:
        first = group[0]
        by_person.setdefault((first.contact_id, first.channel_id, first.purpose), []).append(group)
    merged: list[list[Claimed]] = []
    for person_groups in by_person.values():
        if len(person_groups) > STORM_GROUPS:
            merged.append([claimed for group in person_groups for claimed in group])
        else:
            merged.extend(person_groups)
    return merged


def _moot(row: NotificationRow, incident: IncidentRow) -> bool:
    """Whether a page or reminder is no longer needed (acknowledged or resolved meanwhile)."""
    if row.purpose == PAGE:
        return incident.state in (ACKNOWLEDGED, RESOLVED)
    if row.purpose == REMINDER:
        return incident.state == RESOLVED
    return False


def _unique(claimed: list[Claimed]) -> list[Claimed]:
    seen: dict[str, Claimed] = {}
    for item in claimed:
        seen.setdefault(item.incident_id, item)
    return list(seen.values())


def _view(row: IncidentRow) -> IncidentView:
    return IncidentView(
        id=row.id,
        kind=row.kind,
        title=row.title,
        level=row.level,
        state=row.state,
        opened_at=row.opened_at,
        event=row.event,
    )
