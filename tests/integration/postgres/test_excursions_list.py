"""``envmon excursions list`` against a real PostgreSQL store."""

from __future__ import annotations

import json

from sqlalchemy import Engine
from typer.testing import CliRunner

from envmon.cli import app
from envmon.models import AlarmEvent
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.records import RecordStore
from excursions.timeline import TimelineStore
from tests.unit.excursions.test_records import core_events


def test_lists_records_and_alarms(owner_engine: Engine, pg_database: str) -> None:
    records = RecordStore(owner_engine, clock=FakeClock(DEFAULT_T0))
    timeline = TimelineStore(owner_engine)
    for event in core_events():
        if isinstance(event, AlarmEvent):
            timeline.apply(event)
        else:
            records.apply(event)
    runner = CliRunner()
    base = ["excursions", "list", "--db", pg_database, "--json"]

    listed = json.loads(runner.invoke(app, base).stdout)
    assert {item["kind"] for item in listed["items"]} == {"excursion", "data_gap"}
    assert all(item["start"].endswith("+00:00") for item in listed["items"])
    since = json.loads(runner.invoke(app, [*base, "--since", "2999-01-01T00:00:00Z"]).stdout)
    assert since["items"] == []
    alarms = json.loads(runner.invoke(app, [*base, "--kind", "alarm", "--level", "action"]).stdout)
    assert alarms["items"]
    assert {item["level"] for item in alarms["items"]} == {"action"}
