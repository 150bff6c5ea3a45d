"""``envmon db upgrade`` and ``envmon audit verify`` on a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from envmon.cli import app
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.records import RecordStore

from .test_records import core_records


def test_upgrade_verify_tamper_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store' / 'records.sqlite3'}"
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    assert "revision 0001 (was empty)" in result.output
    engine = create_engine(url)
    store = RecordStore(engine, clock=FakeClock(DEFAULT_T0))
    for record in core_records():
        store.apply(record)

    result = runner.invoke(app, ["audit", "verify", "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    intact = json.loads(result.output)
    assert intact["ok"] is True
    assert intact["entries_checked"] > 5

    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER audit_entries_no_update"))
        connection.execute(text("UPDATE audit_entries SET new_value = '1.0' WHERE seq = 4"))
    engine.dispose()
    result = runner.invoke(app, ["audit", "verify", "--db", url])
    assert result.exit_code == 1
    assert "BROKEN at entry 4" in result.output
    assert "3 entries before it are intact" in result.output
