"""Core records into the QA store: idempotent by id and revision, every change audited."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from envmon.models import AlarmEvent, CoreEvent, DataGap, ExcursionRecord, Reading
from envmon.testing import DEFAULT_T0, FakeClock, make_spec, readings
from excursions.audit import verify
from excursions.db import AuditEntry, ExcursionRow
from excursions.records import ACTOR, RecordStore
from stream.core.evaluator import Evaluator

FRIDGE = make_spec(alert_high=8, action_high=10, stale_after_s=600)


def core_records() -> list[ExcursionRecord | DataGap]:
    """A fridge going to alert, then action, back to normal; then silent for an hour."""
    return [e for e in core_events() if not isinstance(e, AlarmEvent)]


def core_readings() -> list[Reading]:
    """The fridge's readings behind ``core_events``: up to 12 °C, then silent for an hour."""
    values = [5, 9, 11, 12, 9.5, 7, 5, 5]
    late = DEFAULT_T0 + timedelta(minutes=len(values) + 60)
    return [*readings(FRIDGE.sensor_id, values), *readings(FRIDGE.sensor_id, [5], start=late)]


def core_events() -> list[CoreEvent]:
    """Everything the core emits for ``core_records``' fridge: alarms, records, the gap."""
    evaluator = Evaluator([FRIDGE])
    events: list[CoreEvent] = []
    for reading in core_readings():
        events += evaluator.process(reading)
    return events


def rows(engine: Engine) -> dict[str, ExcursionRow]:
    with Session(engine) as session:
        found = session.execute(select(ExcursionRow)).scalars().all()
        session.expunge_all()
    return {row.id: row for row in found}


def audit_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(AuditEntry)).scalar_one())


def test_records_stored_newest_revision_with_audit(engine: Engine) -> None:
    records = core_records()
    excursions = [r for r in records if isinstance(r, ExcursionRecord)]
    gaps = [r for r in records if isinstance(r, DataGap)]
    assert len({r.id for r in excursions}) >= 1
    assert len(excursions) > len({r.id for r in excursions})  # several revisions
    assert gaps
    store = RecordStore(engine, clock=FakeClock(DEFAULT_T0))
    for record in records:
        store.apply(record)
    stored = rows(engine)
    assert set(stored) == {r.id for r in records}
    for record in excursions:
        row = stored[record.id]
        assert row.core_revision >= record.revision
    final = {r.id: r for r in excursions}  # the last revision of each id
    for record_id, record in final.items():
        assert stored[record_id].record == record.model_dump(mode="json")
        assert stored[record_id].core_status == "closed"
        assert stored[record_id].qa_state == "open"
    with Session(engine) as session:
        assert verify(session).ok
        actors = set(session.execute(select(AuditEntry.actor)).scalars())
        actions = set(session.execute(select(AuditEntry.action)).scalars())
    assert actors == {ACTOR}
    assert actions == {"create", "update"}


def test_a_record_seen_twice_is_stored_once(engine: Engine) -> None:
    records = core_records()
    once = RecordStore(engine, clock=FakeClock(DEFAULT_T0))
    for record in records:
        once.apply(record)
    expected_rows = {k: (r.core_revision, r.record, r.row_version) for k, r in rows(engine).items()}
    expected_audit = audit_count(engine)
    # Every record again, and random earlier ones interleaved (at-least-once delivery).
    rnd = random.Random(4)
    again = RecordStore(engine, clock=FakeClock(DEFAULT_T0))
    for record in records:
        assert not again.apply(record)
        assert not again.apply(rnd.choice(records))
    assert again.applied == 0
    assert {k: (r.core_revision, r.record, r.row_version) for k, r in rows(engine).items()} == (
        expected_rows
    )
    assert audit_count(engine) == expected_audit


def test_an_older_revision_never_rewinds(engine: Engine) -> None:
    excursions = [r for r in core_records() if isinstance(r, ExcursionRecord)]
    newest, older = excursions[-1], excursions[0]
    assert newest.id == older.id
    assert newest.revision > older.revision
    store = RecordStore(engine, clock=FakeClock(DEFAULT_T0))
    assert store.apply(newest)
    assert not store.apply(older)
    assert rows(engine)[newest.id].core_revision == newest.revision


def test_a_data_gap_only_moves_from_open_to_closed(engine: Engine) -> None:
    gap = next(r for r in core_records() if isinstance(r, DataGap))
    closed = gap if gap.end is not None else gap.model_copy(update={"end": gap.start})
    opened = closed.model_copy(update={"end": None, "duration_s": None})
    store = RecordStore(engine, clock=FakeClock(DEFAULT_T0))
    assert store.apply(opened)
    assert store.apply(closed)
    assert not store.apply(opened)  # a late duplicate of the open gap
    row = rows(engine)[gap.id]
    assert row.end == closed.end
    assert row.core_status == "closed"
