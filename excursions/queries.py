"""Read models of the record store: the filtered, paginated list and a record's detail."""

from __future__ import annotations

from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from envmon.display import Display
from excursions.db import AuditEntry, ExcursionRow
from excursions.lifecycle import QA_FIELDS, signatures_of
from excursions.timeline import timeline

MAX_PAGE_SIZE: Final = 200
#: The highest page number asked for (beyond the last page the list is empty).
MAX_PAGE: Final = 1_000_000
#: The most open records ``open_records`` returns.
MAX_OPEN: Final = 500


@dataclass(frozen=True, slots=True)
class Filters:
    """What the excursion list is narrowed to (all optional)."""

    area: str | None = None
    instrument: str | None = None
    parameter: str | None = None
    level: str | None = None
    state: str | None = None
    start_from: datetime | None = None
    start_to: datetime | None = None
    sensor: str | None = None  #: one channel's records (the status page links to them)
    kind: str | None = None  #: ``excursion`` or ``data_gap``


class ReadModel:
    """A read model: ``as_dict`` is its JSON form (the API's and ``--json``'s), fields in order."""

    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a dict in their order (nested read models as dicts too)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


def _plain(value: object) -> object:
    if isinstance(value, ReadModel):
        return value.as_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class RecordSummary(ReadModel):
    """What the list shows of a record."""

    id: str
    kind: str  #: ``excursion`` or ``data_gap``
    sensor_id: str
    area: str
    instrument: str
    parameter: str
    level: str | None
    start: datetime
    end: datetime | None
    core_status: str  #: the core's view: ``open`` or ``closed``
    qa_state: str
    peak: float | None
    unit: str | None

    @classmethod
    def of_row(cls, row: ExcursionRow) -> RecordSummary:
        """Return the summary of a stored record."""
        return cls(**_summary_fields(row))


def _summary_fields(row: ExcursionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "sensor_id": row.sensor_id,
        "area": row.area,
        "instrument": row.instrument,
        "parameter": row.parameter,
        "level": row.level,
        "start": row.start,
        "end": row.end,
        "core_status": row.core_status,
        "qa_state": row.qa_state,
        "peak": row.record.get("peak"),
        "unit": row.record.get("unit"),
    }


@dataclass(frozen=True, slots=True)
class OpenRecord(RecordSummary):
    """A record still going on, as the live status page lists it."""

    direction: str | None = None


@dataclass(frozen=True, slots=True)
class AuditItem(ReadModel):
    """One audit entry of a record (values as the stored JSON text)."""

    seq: int
    at: datetime
    actor: str
    action: str
    field: str | None
    old: str | None
    new: str | None
    reason: str | None

    @classmethod
    def of_entry(cls, e: AuditEntry) -> AuditItem:
        """Return the read model of a stored audit entry (a record's or an incident's)."""
        return cls(e.seq, e.at, e.actor, e.action, e.field, e.old_value, e.new_value, e.reason)


@dataclass(frozen=True, slots=True)
class SignatureItem(ReadModel):
    """A signature as the record shows it: in UTC and in the site's zone, and if it covers."""

    signer: str
    printed_name: str
    meaning: str
    action: str
    signed_at: datetime
    signed_at_site: str
    site_timezone: str
    covers_current_content: bool
    matches_audit_trail: bool


@dataclass(frozen=True, slots=True)
class TimelineItem(ReadModel):
    """One line of the record's timeline, its time also in the site's zone."""

    at: datetime
    kind: str
    title: str
    who: str
    detail: str
    at_site: str


@dataclass(frozen=True, slots=True)
class RecordDetail(RecordSummary):
    """A record with its QA fields, signatures, timeline and audit trail."""

    record: dict[str, Any] = dataclass_field(default_factory=dict)  #: as the core last sent it
    row_version: int = 0
    qa: dict[str, str] = dataclass_field(default_factory=dict)
    audit: tuple[AuditItem, ...] = ()
    signatures: tuple[SignatureItem, ...] = ()
    timeline: tuple[TimelineItem, ...] = ()


def list_records(
    engine: Engine, filters: Filters, *, page: int = 1, page_size: int = 50
) -> tuple[int, list[RecordSummary]]:
    """Return the number of matching records and one page of them, newest start first."""
    if not 1 <= page <= MAX_PAGE or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"1 <= page <= {MAX_PAGE} and 1 <= page_size <= {MAX_PAGE_SIZE}")
    query = select(ExcursionRow)
    for column, value in (
        (ExcursionRow.area, filters.area),
        (ExcursionRow.instrument, filters.instrument),
        (ExcursionRow.parameter, filters.parameter),
        (ExcursionRow.level, filters.level),
        (ExcursionRow.qa_state, filters.state),
        (ExcursionRow.sensor_id, filters.sensor),
        (ExcursionRow.kind, filters.kind),
    ):
        if value:
            query = query.where(column == value)
    if filters.start_from is not None:
        query = query.where(ExcursionRow.start >= filters.start_from)
    if filters.start_to is not None:
        query = query.where(ExcursionRow.start < filters.start_to)
    with Session(engine) as session:
        total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        offset = (page - 1) * page_size
        if offset >= total:
            return int(total), []  # past the last page: no offset the database cannot hold
        rows = session.execute(
            query.order_by(ExcursionRow.start.desc(), ExcursionRow.id)
            .offset(offset)
            .limit(page_size)
        ).scalars()
        return int(total), [RecordSummary.of_row(row) for row in rows]


#: The list filters whose values ``distinct_values`` offers.
DISTINCT: Final = ("area", "instrument", "parameter", "sensor_id")


def distinct_values(engine: Engine) -> dict[str, list[str]]:
    """Return the distinct areas, instruments, parameters and sensor ids the store holds.

    What the list's filters offer when the app runs without the site configuration.
    """
    found: dict[str, list[str]] = {}
    with Session(engine) as session:
        for name in DISTINCT:
            column = getattr(ExcursionRow, name)
            rows = session.execute(select(column).distinct().order_by(column)).scalars()
            found[name] = [str(v) for v in rows if v]
    return found


def open_records(engine: Engine, *, limit: int = MAX_OPEN) -> list[OpenRecord]:
    """Return the excursions and data gaps still going on (the core's ``open``), newest first.

    What the live status page shows as open alarms: each as the list shows it, with the
    excursion's ``direction``; at most ``limit`` (an alarm storm is not a page of thousands).
    """
    with Session(engine) as session:
        rows = session.execute(
            select(ExcursionRow)
            .where(ExcursionRow.core_status == "open")
            .order_by(ExcursionRow.start.desc(), ExcursionRow.id)
            .limit(limit)
        ).scalars()
        return [
            OpenRecord(**_summary_fields(row), direction=row.record.get("direction"))
            for row in rows
        ]


def record_detail(
    engine: Engine,
    record_id: str,
    site_zone: ZoneInfo | None = None,
    display: Display | None = None,
) -> RecordDetail | None:
    """Return a record with its QA fields, signatures, timeline and audit trail (None: no id).

    The audit trail is the record's own: entries of its type and id (a user, say, may have
    the same id as an excursion).

    A signature's time is given in UTC and, as ``signed_at_site``, in the site's zone;
    ``display`` writes the timeline's values (the site's digits).
    """
    zone = site_zone or ZoneInfo("UTC")
    with Session(engine) as session:
        row = session.get(ExcursionRow, record_id)
        if row is None:
            return None
        entries = session.execute(
            select(AuditEntry)
            .where(AuditEntry.record_type == row.kind, AuditEntry.record_id == record_id)
            .order_by(AuditEntry.seq)
        ).scalars()
        audit = tuple(AuditItem.of_entry(e) for e in entries)
        signed = signatures_of(session, row)
        signatures = tuple(
            SignatureItem(
                sig.signature.signer,
                sig.signature.printed_name,
                sig.signature.meaning,
                sig.signature.action,
                sig.signature.signed_at,
                sig.signature.signed_at.astimezone(zone).isoformat(),
                zone.key,
                sig.covers_current_content,
                sig.matches_audit_trail,
            )
            for sig in signed
        )
        lines = tuple(
            TimelineItem(
                e.at,
                e.kind,
                e.title,
                e.who,
                e.detail,
                e.at.astimezone(zone).isoformat(timespec="seconds"),
            )
            for e in timeline(session, row, signed, display)
        )
        return RecordDetail(
            **_summary_fields(row),
            record=row.record,
            row_version=row.row_version,
            qa={name: getattr(row, name) for name in QA_FIELDS},
            audit=audit,
            signatures=signatures,
            timeline=lines,
        )


def core_record(engine: Engine, record_id: str) -> dict[str, Any] | None:
    """Return one record as the core last sent it (None: no such id)."""
    with Session(engine) as session:
        found: dict[str, Any] | None = session.execute(
            select(ExcursionRow.record).where(ExcursionRow.id == record_id)
        ).scalar_one_or_none()
        return found


def core_records(engine: Engine, kind: str) -> list[dict[str, Any]]:
    """Return every record of ``kind`` (``excursion``, ``data_gap``) as the core last sent it.

    Oldest start first: the newest core revision of each, as published on the bus.
    """
    with Session(engine) as session:
        rows = session.execute(
            select(ExcursionRow.record)
            .where(ExcursionRow.kind == kind)
            .order_by(ExcursionRow.start, ExcursionRow.id)
        ).scalars()
        return list(rows)


def count_records(engine: Engine, kind: str) -> int:
    """Return how many records of ``kind`` the store holds."""
    with Session(engine) as session:
        query = select(func.count()).select_from(ExcursionRow).where(ExcursionRow.kind == kind)
        return int(session.execute(query).scalar_one())
