"""Excursion records and data gaps from the bus into the QA record store, idempotently.

The evaluation core emits each excursion several times (opened, updated with a new peak
or level, closed) with an increasing ``revision``, and the bus delivers at least once. The
store applies a revision only if it is newer than the one it holds, so a record seen twice
is stored once and a late duplicate never rewinds it; a data gap (no revision) moves only
from open to closed. Every change writes audit entries — one per field that changed, by
the actor ``system:records`` — in the same transaction as the change, and one
(``core_sha256``) with the digest of everything the core decides about the row
(``core_digest``), so that ``envmon audit verify`` names a row changed outside the
application.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import TypeAdapter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from envmon.models import DataGap, ExcursionRecord
from envmon.timeutil import utcnow
from excursions.audit import AuditTrail, Change, canonical_hash
from excursions.db import ExcursionRow
from excursions.policy import QAState

ACTOR: Final = "system:records"
#: The audit field holding ``core_digest`` of the row after the change.
CORE_DIGEST_FIELD: Final = "core_sha256"
#: Decodes what the stream processor publishes on ``envmon.excursions``.
RECORD: Final = TypeAdapter(ExcursionRecord | DataGap)
#: The core's fields that QA reads in the audit trail when they change.
AUDITED: Final = (
    "core_status",
    "level",
    "end",
    "duration_s",
    "peak",
    "peak_ts",
    "time_beyond_limit_s",
    "integral_beyond_limit",
    "samples",
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def core_digest(row: ExcursionRow) -> str:
    """Return the SHA-256 of what the core decides about a row (the record and its columns)."""
    return canonical_hash(
        {
            "id": row.id,
            "kind": row.kind,
            "sensor_id": row.sensor_id,
            "area": row.area,
            "instrument": row.instrument,
            "parameter": row.parameter,
            "level": row.level,
            "core_revision": row.core_revision,
            "core_status": row.core_status,
            "start": _iso(row.start),
            "end": _iso(row.end),
            "record": row.record,
        }
    )


def _snapshot(row: ExcursionRow) -> dict[str, Any]:
    record = row.record
    return {
        "core_status": row.core_status,
        "level": row.level,
        "end": record.get("end"),
        "duration_s": record.get("duration_s"),
        "peak": record.get("peak"),
        "peak_ts": record.get("peak_ts"),
        "time_beyond_limit_s": record.get("time_beyond_limit_s"),
        "integral_beyond_limit": record.get("integral_beyond_limit"),
        "samples": record.get("samples"),
    }


class RecordStore:
    """Applies core records to ``excursion_records`` with their audit entries."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self.trail = AuditTrail(clock)
        self.applied = 0
        self.ignored = 0
        self.rejected = 0  #: messages that were not records (dead-lettered by the consumer)

    def apply(self, record: ExcursionRecord | DataGap) -> bool:
        """Store the record if it is new or newer; return whether anything changed."""
        with Session(self.engine) as session, session.begin():
            row = session.get(ExcursionRow, record.id, with_for_update=True)
            if row is None:
                row = self._create(session, record)
                changes = [Change(field, None, value) for field, value in _snapshot(row).items()]
                digest = Change(CORE_DIGEST_FIELD, None, core_digest(row))
                self._audit(
                    session, "create", row, [*(c for c in changes if c.new is not None), digest]
                )
            elif self._newer(row, record):
                before, digest_before = _snapshot(row), core_digest(row)
                self._update(row, record)
                after = _snapshot(row)
                changes = [
                    Change(field, before[field], after[field])
                    for field in AUDITED
                    if before[field] != after[field]
                ]
                changes.append(Change(CORE_DIGEST_FIELD, digest_before, core_digest(row)))
                self._audit(session, "update", row, changes)
            else:
                self.ignored += 1
                return False
        self.applied += 1
        return True

    @staticmethod
    def _newer(row: ExcursionRow, record: ExcursionRecord | DataGap) -> bool:
        if isinstance(record, ExcursionRecord):
            return record.revision > row.core_revision
        return record.end is not None and row.end is None

    def _create(self, session: Session, record: ExcursionRecord | DataGap) -> ExcursionRow:
        now = self.clock()
        row = ExcursionRow(
            id=record.id,
            kind=record.kind,
            sensor_id=record.sensor_id,
            area=record.area,
            instrument=record.instrument if isinstance(record, ExcursionRecord) else "",
            parameter=record.parameter,
            qa_state=QAState.OPEN.value,
            impact_products="",
            impact_batches="",
            impact_text="",
            root_cause_category="",
            root_cause_text="",
            deviation_ref="",
            capa_ref="",
            conclusion="",
            row_version=0,
            created_at=now,
            updated_at=now,
        )
        self._update(row, record)
        session.add(row)
        return row

    def _update(self, row: ExcursionRow, record: ExcursionRecord | DataGap) -> None:
        if isinstance(record, ExcursionRecord):
            row.level = record.level.value
            row.core_revision = record.revision
            row.core_status = record.status.value
        else:
            row.level = None
            row.core_revision = 1 if record.end is not None else 0
            row.core_status = "closed" if record.end is not None else "open"
        row.start = record.start
        row.end = record.end
        row.record = record.model_dump(mode="json")
        row.row_version += 1
        row.updated_at = self.clock()

    def _audit(
        self, session: Session, action: str, row: ExcursionRow, changes: list[Change]
    ) -> None:
        self.trail.append(
            session,
            actor=ACTOR,
            action=action,
            record_type=row.kind,
            record_id=row.id,
            changes=changes or None,
        )
