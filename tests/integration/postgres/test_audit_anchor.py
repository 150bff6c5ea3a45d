"""The audit trail's head, checkpoints and rows on a real PostgreSQL 15 (Debian's packages).

A superuser can switch every trigger off (``session_replication_role = replica``): what
then remains is what ``envmon audit verify`` names, with and without signed checkpoints.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from devservers.postgres import PostgresServer
from envmon.cli import app as cli
from envmon.commands.audit import verify_store
from tests.unit.excursions.audit_cli import (
    Keys,
    broken,
    check_truncated_tail_is_named,
    url_of,
    verify_cli,
)
from tests.unit.excursions.tampering import cut_tail, rewrite_chain, signed_store, tamper
from tests.unit.excursions.test_audit import fill

from .conftest import unique_name

VERIFY_ROUNDS = 20


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys.made(tmp_path)


class TestTheHead:
    """Item 1 on PostgreSQL."""

    @pytest.mark.parametrize(
        "statement",
        [
            "DELETE FROM audit_head",
            "TRUNCATE audit_head",
            "INSERT INTO audit_head (id, seq, hash) VALUES (2, 0, 'x')",
            "UPDATE audit_head SET seq = seq - 1,"
            " hash = (SELECT hash FROM audit_entries WHERE seq = 2)",
            "UPDATE audit_head SET hash = 'f' || substr(hash, 2)",
        ],
        ids=["delete", "truncate", "insert", "set-back", "rehash"],
    )
    def test_even_the_owner_cannot_move_the_head_back(
        self, owner_engine: Engine, statement: str
    ) -> None:
        fill(owner_engine, 3)
        with (
            pytest.raises(DBAPIError, match=r"audit_head only moves forward|append-only"),
            owner_engine.begin() as connection,
        ):
            connection.execute(text(statement))
        assert verify_cli(owner_engine).exit_code == 0

    @pytest.mark.parametrize(
        ("statement", "refusal"),
        [
            ("DELETE FROM audit_head", "permission denied"),
            ("INSERT INTO audit_head (id, seq, hash) VALUES (2, 0, 'x')", "permission denied"),
            ("TRUNCATE audit_head", "permission denied"),
            (
                "UPDATE audit_head SET seq = seq - 1,"
                " hash = (SELECT hash FROM audit_entries WHERE seq = 2)",
                "audit_head only moves forward",
            ),
        ],
        ids=["delete", "insert", "truncate", "set-back"],
    )
    def test_the_app_role_cannot_either(
        self, app_engine: Engine, statement: str, refusal: str
    ) -> None:
        fill(app_engine, 3)  # appends move the head forward through the guard
        with pytest.raises(DBAPIError, match=refusal), app_engine.begin() as connection:
            connection.execute(text(statement))
        assert verify_cli(app_engine).exit_code == 0

    @pytest.mark.parametrize("removed", [1, 10])
    def test_a_truncated_tail_is_named(self, owner_engine: Engine, removed: int) -> None:
        check_truncated_tail_is_named(owner_engine, removed)

    def test_a_deleted_or_edited_head_is_named(self, owner_engine: Engine) -> None:
        fill(owner_engine, 4)
        tamper(owner_engine, "UPDATE audit_head SET hash = 'f' || substr(hash, 2)")
        edited = broken(verify_cli(owner_engine))
        assert "the head's hash is not entry 4's" in edited
        tamper(owner_engine, "DELETE FROM audit_head")
        deleted = broken(verify_cli(owner_engine))
        assert "the head row is missing" in deleted

    def test_verify_reads_one_snapshot_while_the_app_appends(self, app_engine: Engine) -> None:
        """Entries committed during a verify are not mistaken for a head set back."""
        fill(app_engine, 3)
        stop = threading.Event()

        def append() -> None:
            while not stop.is_set():
                fill(app_engine, 1)

        writer = threading.Thread(target=append)
        writer.start()
        try:
            results = [verify_store(url_of(app_engine)).chain for _ in range(VERIFY_ROUNDS)]
        finally:
            stop.set()
            writer.join()
        assert [r.problems for r in results] == [()] * VERIFY_ROUNDS
        assert results[-1].entries > results[0].entries  # the writer did append meanwhile


class TestCheckpoints:
    """Item 2 on PostgreSQL: what only a signed checkpoint catches."""

    def test_a_rewritten_chain_is_caught_by_the_checkpoint(
        self, owner_engine: Engine, keys: Keys
    ) -> None:
        fill(owner_engine, 6)
        assert keys.checkpoint(owner_engine).exit_code == 0
        rewrite_chain(owner_engine, 2, '"harmless"')
        assert verify_cli(owner_engine).exit_code == 0  # the chain alone cannot tell
        output = broken(keys.verify(owner_engine))
        assert "BROKEN at entry 1: entries 1 to 6 were rewritten" in output

    def test_a_tail_cut_below_a_checkpoint_is_named(self, owner_engine: Engine, keys: Keys) -> None:
        fill(owner_engine, 15)
        assert keys.checkpoint(owner_engine).exit_code == 0
        cut_tail(owner_engine, 5, head_too=True)
        output = broken(keys.verify(owner_engine))
        assert "entries 6 to 15 were removed" in output

    def test_a_tampered_checkpoint_fails(self, owner_engine: Engine, keys: Keys) -> None:
        fill(owner_engine, 3)
        assert keys.checkpoint(owner_engine).exit_code == 0
        keys.file.write_text(keys.file.read_text().replace('"seq":3', '"seq":2'))
        output = broken(keys.verify(owner_engine))
        assert "line 1: its signature does not verify" in output

    def test_a_read_only_role_verifies_and_checkpoints(
        self, postgres: PostgresServer, owner_engine: Engine, keys: Keys
    ) -> None:
        """``envmon db grant --read-only``: what the checkpoint timer needs, and no more."""
        signed_store(owner_engine)
        role, password = unique_name("envmon_audit"), "audit-secret-1"
        postgres.create_role(role, password)
        granted = CliRunner().invoke(
            cli, ["db", "grant", role, "--read-only", "--db", url_of(owner_engine)]
        )
        assert granted.exit_code == 0, granted.output
        database = owner_engine.url.database
        assert database is not None
        reader = create_engine(postgres.url_for(database, user=role, password=password))
        try:
            made = keys.checkpoint(reader)
            assert made.exit_code == 0, made.output
            result = keys.verify(reader)
            assert result.exit_code == 0, result.output
            assert "2 records, 3 users, 1 signatures" in result.output
            with pytest.raises(DBAPIError, match="permission denied"), reader.begin() as conn:
                conn.execute(text("UPDATE users SET role = 'admin'"))
        finally:
            reader.dispose()


class TestRowsUnderTheChain:
    """Item 2 on PostgreSQL: rows changed by SQL are named by verify."""

    def test_the_whole_lifecycle_as_the_app_role_verifies(self, app_engine: Engine) -> None:
        signed_store(app_engine)
        result = verify_cli(app_engine)
        assert result.exit_code == 0, result.output

    @pytest.mark.parametrize(
        ("statement", "expected"),
        [
            (
                "UPDATE signatures SET printed_name = 'Mallory Forger', signer = 'mallory'",
                "printed_name is 'Mallory Forger' but the audit trail says 'Quinn Reviewer'",
            ),
            (
                "UPDATE excursion_records SET root_cause_category = 'sensor_fault'"
                " WHERE qa_state = 'closed'",
                "root_cause_category is 'sensor_fault' but the audit trail last recorded",
            ),
            (
                "UPDATE users SET role = 'qa' WHERE username = 'mallory'",
                "user mallory: role is 'qa' but the audit trail last recorded",
            ),
        ],
        ids=["signature", "qa-field", "user-role"],
    )
    def test_a_row_changed_by_sql_is_named(
        self, app_engine: Engine, owner_engine: Engine, statement: str, expected: str
    ) -> None:
        signed_store(app_engine)
        if "signatures" in statement:  # append-only: only with the triggers off
            tamper(owner_engine, statement)
        else:  # the application's role itself may write these tables
            with app_engine.begin() as connection:
                connection.execute(text(statement))
        output = broken(verify_cli(app_engine))
        assert expected in output
