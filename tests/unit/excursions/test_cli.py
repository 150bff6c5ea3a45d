"""``envmon db upgrade`` and ``envmon audit verify`` on a SQLite store."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from envmon.cli import app
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.migrate import newest
from excursions.records import RecordStore

from .test_records import core_records


def test_upgrade_verify_tamper_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store' / 'records.sqlite3'}"
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    assert f"revision {newest()} (was empty)" in result.output
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


def test_users_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    add = ["users", "add", "jane", "--name", "Jane Doe", "--role", "qa", "--db", url]
    result = runner.invoke(
        app, [*add, "--reason", "new reviewer", "--password-stdin"], input="a long secret 1\n"
    )
    assert result.exit_code == 0, result.output
    assert "user jane added (qa)" in result.output
    again = runner.invoke(
        app, [*add, "--reason", "again", "--password-stdin"], input="a long secret 1\n"
    )
    assert again.exit_code == 2
    assert "refused: username 'jane' is taken" in again.output
    weak = runner.invoke(
        app,
        ["users", "reset-password", "jane", "--reason", "r", "--password-stdin", "--db", url],
        input="short\n",
    )
    assert weak.exit_code == 2
    assert "at least 12" in weak.output
    result = runner.invoke(app, ["users", "disable", "jane", "--reason", "left", "--db", url])
    assert result.exit_code == 0, result.output
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT action, actor, reason FROM audit_entries ORDER BY seq")
        ).all()
    engine.dispose()
    assert rows[-1][0] == "set_disabled"
    assert rows[-1][1].startswith("cli:")
    assert rows[-1][2] == "left"
    verify = runner.invoke(app, ["audit", "verify", "--db", url])
    assert verify.exit_code == 0
    assert f"{len(rows)} entries" in verify.output


def test_db_grant_is_for_postgresql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    result = CliRunner().invoke(app, ["db", "grant", "envmon_app", "--db", url])
    assert result.exit_code == 2
    assert "roles are a PostgreSQL feature" in result.output


def test_the_cli_actor_is_the_os_account_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LOGNAME and USER are the caller's to set: the trail names the effective uid's account."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory")
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    add = ["users", "add", "jane", "--name", "Jane Doe", "--role", "qa", "--db", url]
    result = runner.invoke(
        app, [*add, "--reason", "r", "--password-stdin"], input="a long secret 1\n"
    )
    assert result.exit_code == 0, result.output
    engine = create_engine(url)
    with engine.connect() as connection:
        actors = set(connection.execute(text("SELECT actor FROM audit_entries")).scalars())
    engine.dispose()
    assert actors == {f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"}


@pytest.mark.parametrize(
    "command",
    [
        [
            "users",
            "add",
            "bob",
            "--name",
            "Bob",
            "--role",
            "viewer",
            "--reason",
            "new",
            "--password-stdin",
        ],
        ["users", "disable", "bob", "--reason", "left"],
        ["audit", "verify"],
    ],
)
def test_a_store_never_created_is_named_and_not_created(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "records.sqlite3"
    result = CliRunner().invoke(
        app, [*command, "--db", f"sqlite:///{path}"], input="Secret-pass-123!\n"
    )
    assert result.exit_code == 2
    assert "no record store at" in result.output
    assert "envmon db upgrade" in result.output
    assert "Traceback" not in result.output
    assert not path.exists()


def test_a_store_never_migrated_says_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    with create_engine(f"sqlite:///{path}").begin() as connection:
        connection.execute(text("CREATE TABLE unrelated (a INTEGER)"))
    result = CliRunner().invoke(
        app,
        [
            "users",
            "add",
            "bob",
            "--name",
            "Bob B",
            "--role",
            "viewer",
            "--reason",
            "new",
            "--password-stdin",
            "--db",
            f"sqlite:///{path}",
        ],
        input="Secret-pass-123!\n",
    )
    assert result.exit_code == 2
    assert "run envmon db upgrade first" in result.output
    assert "Traceback" not in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("envmon ")
