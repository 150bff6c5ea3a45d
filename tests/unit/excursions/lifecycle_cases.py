"""The QA lifecycle's test cases: an assessment, the QA password and the signed steps.

Shared by the lifecycle tests on SQLite (here) and on PostgreSQL
(tests/integration/postgres) and by the tests of the pages and reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from excursions.db import AuditEntry, ExcursionRow

QA_PASSWORD = "qa password 123"
ASSESSMENT = {
    "impact_products": "CAR-T lot for patient 0042",
    "impact_batches": "B-0042",
    "impact_text": "Door open 6 min; product stayed below -150 °C per the probe.",
    "root_cause_category": "human_error",
    "conclusion": "No impact on product quality.",
}


def stored_row(engine: Engine, record_id: str) -> ExcursionRow:
    """Return the record's row as stored now."""
    with Session(engine) as session:
        row = session.get(ExcursionRow, record_id)
        assert row is not None
        return row


def version(engine: Engine, record_id: str) -> int:
    """Return the record's row version (what a form loaded now carries)."""
    return stored_row(engine, record_id).row_version


def newest_seq(engine: Engine) -> int | None:
    """Return the newest audit entry's sequence number (``None`` for an empty trail)."""
    with Session(engine) as session:
        return session.execute(select(AuditEntry.seq).order_by(AuditEntry.seq.desc())).scalar()


def sign(
    step: Callable[..., int],
    record_id: str,
    *,
    version: int,
    reason: str,
    password: str = QA_PASSWORD,
    meaning: str = "approved",
    signer: str = "quinn",
    **extra: Any,
) -> int:
    """Take a signed step (``life.close``, ``life.reopen``) as quinn with the QA password."""
    return step(
        record_id,
        signer=signer,
        password=password,
        meaning=meaning,
        reason=reason,
        version=version,
        **extra,
    )
