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
from typer.testing import CliRunner, Result

from devservers.postgres import PostgresServer
from envmon.cli import app as cli
from envmon.commands.audit import verify_store
from tests.unit.excursions.tampering import cut_tail, rewrite_chain, signed_store, tamper
from tests.unit.excursions.test_audit import fill

from .conftest import unique_name

SITE = Path(__file__).parents[3] / "deploy" / "examples" / "site.yaml"
VERIFY_ROUNDS = 20


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def verify_cli(engine: Engine, *extra: str) -> Result:
    return CliRunner().invoke(
        cli, ["audit", "verify", "--db", url_of(engine), "--site", str(SITE), *extra]
    )


def checkpoint_cli(engine: Engine, directory: Path) -> Result:
    return CliRunner().invoke(
        cli,
        [
            "audit",
            "checkpoint",
            "--db",
            url_of(engine),
            "--site",
            str(SITE),
            "--key-file",
            str(directory / "checkpoint.key"),
            "--checkpoints",
            str(directory / "checkpoints.jsonl"),
        ],
    )


def anchored_verify(engine: Engine, directory: Path) -> Result:
    return verify_cli(
        engine,
        "--checkpoints",
        str(directory / "checkpoints.jsonl"),
        "--public-key",
        str(directory / "checkpoint.key.pub"),
    )


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A directory with a new signing key (checkpoint.key, .pub)."""
    made = CliRunner().invoke(
        cli, ["audit", "keygen", "--key-file", str(tmp_path / "checkpoint.key")]
    )
    assert made.exit_code == 0, made.output
    return tmp_path


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
        fill(owner_engine, 20)
        cut_tail(owner_engine, 20 - removed)
        result = verify_cli(owner_engine)
        assert result.exit_code == 1, result.output
        first = 21 - removed
        missing = "entry 20 was" if removed == 1 else f"entries {first} to 20 were"
        assert f"BROKEN at entry {first}: the trail ends at entry {first - 1}" in result.output
        assert f"{missing} removed (a truncated tail)" in result.output

    def test_a_deleted_or_edited_head_is_named(self, owner_engine: Engine) -> None:
        fill(owner_engine, 4)
        tamper(owner_engine, "UPDATE audit_head SET hash = 'f' || substr(hash, 2)")
        edited = verify_cli(owner_engine)
        assert edited.exit_code == 1
        assert "the head's hash is not entry 4's" in edited.output
        tamper(owner_engine, "DELETE FROM audit_head")
        deleted = verify_cli(owner_engine)
        assert deleted.exit_code == 1
        assert "the head row is missing" in deleted.output

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
        self, owner_engine: Engine, keys: Path
    ) -> None:
        fill(owner_engine, 6)
        assert checkpoint_cli(owner_engine, keys).exit_code == 0
        rewrite_chain(owner_engine, 2, '"harmless"')
        assert verify_cli(owner_engine).exit_code == 0  # the chain alone cannot tell
        result = anchored_verify(owner_engine, keys)
        assert result.exit_code == 1, result.output
        assert "BROKEN at entry 1: entries 1 to 6 were rewritten" in result.output

    def test_a_tail_cut_below_a_checkpoint_is_named(self, owner_engine: Engine, keys: Path) -> None:
        fill(owner_engine, 15)
        assert checkpoint_cli(owner_engine, keys).exit_code == 0
        cut_tail(owner_engine, 5, head_too=True)
        result = anchored_verify(owner_engine, keys)
        assert result.exit_code == 1, result.output
        assert "entries 6 to 15 were removed" in result.output

    def test_a_tampered_checkpoint_fails(self, owner_engine: Engine, keys: Path) -> None:
        fill(owner_engine, 3)
        assert checkpoint_cli(owner_engine, keys).exit_code == 0
        file = keys / "checkpoints.jsonl"
        file.write_text(file.read_text().replace('"seq":3', '"seq":2'))
        result = anchored_verify(owner_engine, keys)
        assert result.exit_code == 1
        assert "line 1: its signature does not verify" in result.output

    def test_a_read_only_role_verifies_and_checkpoints(
        self, postgres: PostgresServer, owner_engine: Engine, keys: Path
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
            made = checkpoint_cli(reader, keys)
            assert made.exit_code == 0, made.output
            result = anchored_verify(reader, keys)
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
        result = verify_cli(app_engine)
        assert result.exit_code == 1, result.output
        assert expected in result.output
