"""The overview's record-store panel: its SQL on a real, migrated PostgreSQL, read-only."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, text
from typer.testing import CliRunner

from dashboards.generate import OPEN_RECORDS_SQL
from devservers.postgres import PostgresServer
from envmon.cli import app as cli
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.records import RecordStore
from tests.unit.excursions.test_records import core_records

from .conftest import unique_name


def test_open_records_panel_lists_what_qa_has_not_closed(
    postgres: PostgresServer, owner_engine: Engine, app_engine: Engine
) -> None:
    store = RecordStore(app_engine, clock=FakeClock(DEFAULT_T0))
    records = core_records()
    for record in records:
        store.apply(record)
    # Grafana's role, as docs/operations.md says: envmon db grant ROLE --read-only
    role, password = unique_name("envmon_grafana"), "grafana-secret-1"
    postgres.create_role(role, password)
    owner_url = owner_engine.url.render_as_string(hide_password=False)
    granted = CliRunner().invoke(cli, ["db", "grant", role, "--read-only", "--db", owner_url])
    assert granted.exit_code == 0, granted.output
    database = owner_engine.url.database
    assert database is not None
    grafana = create_engine(postgres.url_for(database, user=role, password=password))
    try:
        with grafana.connect() as connection:
            rows = connection.execute(text(OPEN_RECORDS_SQL)).mappings().all()
    finally:
        grafana.dispose()
    assert len(rows) == len({r.id for r in records})
    assert {row["QA state"] for row in rows} == {"open"}
    assert list(rows[0]) == [
        "Start",
        "End",
        "Area",
        "Instrument",
        "Channel",
        "Kind",
        "Level",
        "QA state",
    ]
    starts = [row["Start"] for row in rows]
    assert starts == sorted(starts, reverse=True)
    assert all(start.tzinfo is not None for start in starts)
