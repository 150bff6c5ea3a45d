"""The audit trail's head, its signed checkpoints and the rows it vouches for, on SQLite.

Each tampering is done as someone holding the database would: guards switched off, rows
edited by SQL. The same runs on a real PostgreSQL in tests/integration/postgres.
"""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pypdf
import pytest
from jinja2 import Environment, PackageLoader
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from envmon.bus import AUDIT, InMemoryBus
from envmon.cli import app
from envmon.commands.audit import publish_checkpoint
from envmon.config import load_site
from envmon.display import Display
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import AuditTrail, Change, verify
from excursions.checkpoints import Checkpoint, load_public_keys
from excursions.db import AuditHead, store_engine
from excursions.migrate import upgrade
from excursions.queries import RecordDetail, record_detail
from excursions.report import write_report
from excursions.users import UserStore
from stream.timeseries.sink import site_id

from .audit_cli import (
    SITE,
    Keys,
    broken,
    check_truncated_tail_is_named,
    tampered_signed_store,
    url_of,
    verify_cli,
)
from .conftest import FAST_HASHER
from .tampering import cut_tail, rewrite_chain, signed_store, tamper
from .test_audit import fill

SITE_ID = site_id(load_site(SITE))


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys.made(tmp_path)


class TestTheHead:
    """Item 1: the newest entries cannot be removed unnoticed."""

    @pytest.mark.parametrize("removed", [1, 10])
    def test_a_truncated_tail_is_named(self, engine: Engine, removed: int) -> None:
        """DELETE of the newest entries (triggers dropped) fails naming the missing range."""
        check_truncated_tail_is_named(engine, removed)

    def test_a_deleted_head_is_named(self, engine: Engine) -> None:
        fill(engine, 3)
        tamper(engine, "DELETE FROM audit_head")
        output = broken(verify_cli(engine))
        assert "the head row is missing" in output

    def test_an_edited_head_is_named(self, engine: Engine) -> None:
        fill(engine, 3)
        tamper(
            engine, "UPDATE audit_head SET hash = (SELECT hash FROM audit_entries WHERE seq = 1)"
        )
        output = broken(verify_cli(engine))
        assert "the head's hash is not entry 3's" in output

    def test_a_head_set_back_is_named(self, engine: Engine) -> None:
        fill(engine, 5)
        tamper(
            engine,
            "UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit_entries WHERE seq = 2)",
        )
        output = broken(verify_cli(engine))
        assert "BROKEN at entry 3: the head says 2 but the trail goes on to entry 5" in output

    @pytest.mark.parametrize(
        "statement",
        [
            "DELETE FROM audit_head",
            "INSERT INTO audit_head (id, seq, hash) VALUES (2, 0, 'x')",
            "UPDATE audit_head SET seq = seq - 1,"
            " hash = (SELECT hash FROM audit_entries WHERE seq = 2)",
            "UPDATE audit_head SET hash = 'f' || substr(hash, 2)",
            "UPDATE audit_head SET seq = seq + 1",
        ],
        ids=["delete", "insert", "set-back", "rehash", "beyond-the-last-entry"],
    )
    def test_the_head_only_moves_forward_onto_an_entry(
        self, engine: Engine, statement: str
    ) -> None:
        fill(engine, 3)
        refused = pytest.raises(DatabaseError, match="audit_head only moves forward")
        with refused, engine.begin() as connection:
            connection.execute(text(statement))
        assert verify_cli(engine).exit_code == 0

    def test_appends_move_the_head_through_the_guard(self, engine: Engine) -> None:
        fill(engine, 3)
        fill(engine, 4)
        result = verify_cli(engine, "--json")
        assert result.exit_code == 0, result.output
        found = json.loads(result.output)
        assert (found["entries_checked"], found["head_seq"]) == (7, 7)

    def test_verify_reads_a_snapshot_without_blocking_writers(self, engine: Engine) -> None:
        """Appends during a verify neither wait for it nor look like a head set back."""
        fill(engine, 3)
        reader = store_engine(url_of(engine), snapshot=True)
        try:
            with Session(reader) as session, session.begin():
                assert session.get(AuditHead, 1) is not None  # the snapshot starts here
                fill(engine, 2)  # another writer, meanwhile: not blocked by the reader
                result = verify(session)
        finally:
            reader.dispose()
        assert (result.ok, result.entries, result.head_seq) == (True, 3, 3)
        assert verify_cli(engine).exit_code == 0

    def test_a_never_migrated_store_is_refused_without_a_traceback(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty.sqlite3"
        empty.touch()
        result = CliRunner().invoke(app, ["audit", "verify", "--db", f"sqlite:///{empty}"])
        assert result.exit_code == 2
        assert "record store at revision empty" in result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)

    def test_a_missing_store_is_refused_and_not_created(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere" / "records.sqlite3"
        result = CliRunner().invoke(app, ["audit", "verify", "--db", f"sqlite:///{missing}"])
        assert result.exit_code == 2
        assert "no record store at" in result.output
        assert not missing.exists()


class TestCheckpoints:
    """Item 2: signed checkpoints anchor the chain outside the database."""

    def test_keygen_makes_a_private_key_only_its_owner_reads(self, keys: Keys) -> None:
        assert stat.S_IMODE(keys.key.stat().st_mode) == 0o600
        assert stat.S_IMODE(keys.public.stat().st_mode) == 0o644
        assert len(load_public_keys(keys.public)) == 1
        again = keys.keygen()
        assert again.exit_code == 2
        assert "refusing to overwrite" in again.output

    def test_a_key_others_may_read_is_refused(self, keys: Keys, engine: Engine) -> None:
        fill(engine, 2)
        keys.key.chmod(0o644)
        result = keys.checkpoint(engine)
        assert result.exit_code == 2
        assert "chmod 600" in result.output
        assert not keys.file.exists()

    def test_checkpoints_verify(self, keys: Keys, engine: Engine) -> None:
        fill(engine, 3)
        assert keys.checkpoint(engine).exit_code == 0
        fill(engine, 2)
        made = keys.checkpoint(engine)
        assert made.exit_code == 0, made.output
        lines = keys.file.read_text().splitlines()
        assert [Checkpoint.model_validate_json(line).seq for line in lines] == [3, 5]
        assert Checkpoint.model_validate_json(lines[0]).site == SITE_ID
        fill(engine, 1)
        result = keys.verify(engine)
        assert result.exit_code == 0, result.output
        assert "anchored: 2 of 2 checkpoints verified" in result.output
        assert "vouches for entry 5; entries 6 to 6 await the next" in result.output

    def test_a_rewritten_chain_passes_the_chain_but_not_the_checkpoint(
        self, keys: Keys, engine: Engine
    ) -> None:
        """An entry changed with every later hash and the head recomputed is caught."""
        fill(engine, 3)
        assert keys.checkpoint(engine).exit_code == 0
        fill(engine, 3)
        assert keys.checkpoint(engine).exit_code == 0
        rewrite_chain(engine, 5, '"harmless"')
        assert verify_cli(engine).exit_code == 0  # the chain alone cannot tell
        output = broken(keys.verify(engine))
        assert "BROKEN at entry 4: entries 4 to 6 were rewritten" in output
        assert "entry 3 matches the checkpoint of" in output

    def test_a_tail_cut_below_a_checkpoint_is_named(self, keys: Keys, engine: Engine) -> None:
        """Entries removed and the head set back to match: only the checkpoint tells."""
        fill(engine, 8)
        assert keys.checkpoint(engine).exit_code == 0
        cut_tail(engine, 5, head_too=True)
        assert verify_cli(engine).exit_code == 0  # chain and head agree
        output = broken(keys.verify(engine))
        assert "the trail ends at entry 5, but the checkpoint of" in output
        assert "entries 6 to 8 were removed" in output

    @pytest.mark.parametrize(
        ("edit", "why"),
        [
            (lambda c: {**c, "seq": c["seq"] - 1}, "signature does not verify"),
            (
                lambda c: {**c, "sig": ("B" if c["sig"][0] == "A" else "A") + c["sig"][1:]},
                "signature",
            ),
            (lambda c: {**c, "key": "ed25519:0123456789abcdef"}, "unknown key"),
            (lambda c: {**c, "seq": "3"}, "not a checkpoint"),
        ],
        ids=["seq", "signature", "key", "malformed"],
    )
    def test_a_tampered_checkpoint_fails(
        self, keys: Keys, engine: Engine, edit: object, why: str
    ) -> None:
        fill(engine, 3)
        assert keys.checkpoint(engine).exit_code == 0
        line = json.loads(keys.file.read_text())
        assert callable(edit)
        keys.file.write_text(json.dumps(edit(line)) + "\n")
        output = broken(keys.verify(engine))
        assert "checkpoints.jsonl, line 1" in output
        assert why in output
        refused = broken(keys.checkpoint(engine))  # nothing is signed on top of it either
        assert "the newest checkpoint" in refused

    def test_a_checkpoint_of_another_site_fails(self, keys: Keys, engine: Engine) -> None:
        fill(engine, 2)
        assert keys.checkpoint(engine).exit_code == 0
        made = Checkpoint.model_validate_json(keys.file.read_text())
        other = keys.sign(site="another-site", seq=made.seq, hash_=made.hash)
        keys.file.write_text(other.line() + "\n")
        output = broken(keys.verify(engine))
        assert "a checkpoint of site 'another-site'" in output

    def test_no_checkpoint_is_signed_over_a_rewritten_chain(
        self, keys: Keys, engine: Engine
    ) -> None:
        fill(engine, 4)
        assert keys.checkpoint(engine).exit_code == 0
        before = keys.file.read_text()
        rewrite_chain(engine, 2, '"harmless"')
        refused = broken(keys.checkpoint(engine))
        assert "checkpoint REFUSED" in refused
        assert "has another hash" in refused
        assert keys.file.read_text() == before

    def test_a_stale_checkpoint_fails_when_asked(self, keys: Keys, engine: Engine) -> None:
        fill(engine, 1)
        assert keys.checkpoint(engine).exit_code == 0
        assert keys.verify(engine, "--max-checkpoint-age", "60").exit_code == 0
        line = keys.file.read_text()
        made = Checkpoint.model_validate_json(line)
        old = keys.sign(site=SITE_ID, seq=made.seq, hash_=made.hash)
        keys.file.write_text(old.line() + "\n")
        output = broken(keys.verify(engine, "--max-checkpoint-age", "60"))
        assert "is the checkpoint timer running?" in output

    def test_keys_can_be_rotated(self, keys: Keys, engine: Engine, tmp_path: Path) -> None:
        fill(engine, 2)
        assert keys.checkpoint(engine).exit_code == 0
        old_public = keys.public.read_text()
        for path in (keys.key, keys.public):
            path.unlink()
        assert keys.keygen().exit_code == 0
        fill(engine, 2)
        keyring = tmp_path / "keyring.pem"
        keyring.write_text(old_public + keys.public.read_text())
        rotated = keys.checkpoint(engine, "--public-key", str(keyring))
        assert rotated.exit_code == 0, rotated.output
        result = verify_cli(engine, "--checkpoints", str(keys.file), "--public-key", str(keyring))
        assert result.exit_code == 0, result.output
        assert "anchored: 2 of 2 checkpoints verified" in result.output

    async def test_a_checkpoint_is_published_as_its_line(self, keys: Keys) -> None:
        made = keys.sign(site=SITE_ID, seq=7, hash_="a" * 64)
        bus = InMemoryBus()
        await bus.start()
        queue = bus.subscribe(AUDIT, "test")
        await publish_checkpoint(bus, made)
        message = await anext(queue)
        assert (message.key, message.value.decode()) == (SITE_ID, made.line())
        await bus.stop()


class TestRowsUnderTheChain:
    """Item 2: signatures, records' QA fields and users changed by SQL are named."""

    def test_an_untouched_store_verifies(self, engine: Engine) -> None:
        signed_store(engine)
        result = verify_cli(engine)
        assert result.exit_code == 0, result.output
        assert "rows checked against the trail: 2 records, 3 users, 1 signatures" in result.output

    def test_a_forged_signature_is_named_and_covers_nothing(self, engine: Engine) -> None:
        """The printed name and signer of a signature changed: verify names both fields."""
        record_id, life, _ = signed_store(engine)
        tamper(engine, "UPDATE signatures SET printed_name = 'Mallory Forger', signer = 'mallory'")
        output = broken(verify_cli(engine))
        assert f"signature 1 (close of {record_id}, entry" in output
        assert "signer is 'mallory' but the audit trail says 'quinn'" in output
        assert "printed_name is 'Mallory Forger' but the audit trail says 'Quinn Reviewer'" in (
            output
        )
        (shown,) = life.signatures(record_id)
        assert (shown.covers_current_content, shown.matches_audit_trail) == (False, False)

    def test_page_and_report_say_a_forged_signature_does_not_match_the_trail(
        self, engine: Engine
    ) -> None:
        """What QA reads names the forgery, not a record that merely changed since signing."""
        record_id, _, _ = signed_store(engine)
        tamper(engine, "UPDATE signatures SET printed_name = 'Mallory Forger', signer = 'mallory'")
        detail = record_detail(engine, record_id)
        assert detail is not None
        (signature,) = detail.signatures
        assert signature.matches_audit_trail is False
        html = Environment(
            loader=PackageLoader("excursions.web", "templates"), autoescape=True
        ).get_template("detail.html")
        assert "does not match its audit-trail entry" in _covers_cell(html, detail)
        pdf = io.BytesIO()
        write_report(detail, pdf, site_name="Test site", display=Display(), printed_at=DEFAULT_T0)
        text = " ".join(page.extract_text() for page in pypdf.PdfReader(pdf).pages)
        assert "does not match its audit-trail entry" in " ".join(text.split())

    @pytest.mark.parametrize(
        ("statement", "expected"),
        [
            (
                "UPDATE signatures SET content_hash = 'f' || substr(content_hash, 2)",
                "content_hash is",
            ),
            ("UPDATE signatures SET meaning = 'reviewed'", "meaning is 'reviewed'"),
            ("DELETE FROM signatures", "whose row is missing"),
            (
                "INSERT INTO signatures (record_id, action, signer, printed_name, meaning,"
                " signed_at, content_hash, audit_seq) SELECT record_id, action, signer,"
                " printed_name, meaning, signed_at, content_hash, audit_seq - 1 FROM signatures",
                "is not a signature",
            ),
        ],
        ids=["content-hash", "meaning", "deleted", "added"],
    )
    def test_other_signature_changes_are_named(
        self, engine: Engine, statement: str, expected: str
    ) -> None:
        output = tampered_signed_store(engine, statement)
        assert expected in output

    @pytest.mark.parametrize(
        ("statement", "expected"),
        [
            (
                "UPDATE excursion_records SET impact_text = 'No impact at all: the door was shut"
                " before anything could warm up.' WHERE qa_state = 'closed'",
                "impact_text differs from the value the audit trail last recorded",
            ),
            (
                "UPDATE excursion_records SET root_cause_category = 'sensor_fault'"
                " WHERE qa_state = 'closed'",
                "root_cause_category is 'sensor_fault' but the audit trail last recorded (entry",
            ),
            (
                "UPDATE excursion_records SET qa_state = 'open' WHERE qa_state = 'closed'",
                "qa_state is 'open' but the audit trail last recorded",
            ),
            (
                "UPDATE excursion_records SET capa_ref = 'CAPA-1' WHERE kind = 'data_gap'",
                "capa_ref is 'CAPA-1' but the audit trail ever recorded ''",
            ),
            (
                "UPDATE excursion_records SET level = 'alert' WHERE kind = 'excursion'",
                "its core content (record, level, status, times) is not what",
            ),
            ("DELETE FROM excursion_records WHERE kind = 'data_gap'", "deleted outside"),
        ],
        ids=["qa-text", "qa-choice", "qa-state", "never-set", "core", "deleted"],
    )
    def test_a_record_changed_by_sql_is_named(
        self, engine: Engine, statement: str, expected: str
    ) -> None:
        output = tampered_signed_store(engine, statement)
        assert expected in output
        assert "Door open" not in output  # long texts are not echoed

    @pytest.mark.parametrize(
        ("statement", "expected"),
        [
            (
                "UPDATE users SET role = 'qa' WHERE username = 'mallory'",
                "user mallory: role is 'qa' but the audit trail last recorded (entry",
            ),
            (
                "UPDATE users SET disabled = 1 WHERE username = 'olga'",
                "user olga: disabled is True but the audit trail ever recorded False",
            ),
            (
                "UPDATE users SET password_hash = (SELECT password_hash FROM users"
                " WHERE username = 'mallory') WHERE username = 'quinn'",
                "user quinn: its password hash differs from the value the audit trail last",
            ),
            (
                "INSERT INTO users (username, full_name, role, password_hash, disabled,"
                " failed_logins, password_changed_at, created_at, updated_at)"
                " SELECT 'eve', 'Eve', 'qa', password_hash, disabled, 0, password_changed_at,"
                " created_at, updated_at FROM users WHERE username = 'quinn'",
                "user eve: not in the audit trail: created outside the application",
            ),
            ("DELETE FROM users WHERE username = 'olga'", "user olga: created in the audit trail"),
        ],
        ids=["role", "disabled", "password-hash", "inserted", "deleted"],
    )
    def test_a_user_changed_by_sql_is_named(
        self, engine: Engine, statement: str, expected: str
    ) -> None:
        output = tampered_signed_store(engine, statement)
        assert expected in output
        assert "$argon2" not in output

    def test_a_rehash_at_sign_in_is_audited(self, engine: Engine) -> None:
        """New argon2 parameters rehash the password at sign-in: the trail follows."""
        signed_store(engine)
        stronger = type(FAST_HASHER)(time_cost=2, memory_cost=16, parallelism=1)
        users = UserStore(engine, clock=FakeClock(DEFAULT_T0), hasher=stronger)
        users.authenticate("quinn", "qa password 123")
        result = verify_cli(engine)
        assert result.exit_code == 0, result.output
        with engine.connect() as connection:
            action = connection.execute(
                text("SELECT action FROM audit_entries ORDER BY seq DESC LIMIT 1")
            ).scalar_one()
        assert action == "rehash_password"


class TestRevision0006:
    """Rows written before revision 0006 are vouched for by its baseline entries."""

    def test_older_rows_get_baseline_entries(self, tmp_path: Path) -> None:
        engine = store_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
        upgrade(engine, "0005")
        legacy_store(engine)
        upgrade(engine)
        result = verify_cli(engine, "--json")
        assert result.exit_code == 0, result.output
        with engine.connect() as connection:
            baseline = connection.execute(
                text(
                    "SELECT record_type, field FROM audit_entries WHERE action = 'baseline'"
                    " AND actor = 'system:migration' ORDER BY seq"
                )
            ).all()
        assert [tuple(b) for b in baseline] == [
            ("excursion", "core_sha256"),
            ("user", "password_fingerprint"),
            ("signature", "content_hash"),
        ]
        tamper(engine, "UPDATE signatures SET content_hash = 'f' || substr(content_hash, 2)")
        output = broken(verify_cli(engine))
        assert "content_hash is" in output


def legacy_store(engine: Engine) -> None:
    """Write one record, user and signature with the entries revision 0005's code wrote."""

    from excursions.db import ExcursionRow, SignatureRow, UserRow
    from excursions.lifecycle import content_hash

    at = DEFAULT_T0
    with engine.begin() as connection:  # 0005 had no head row until the first append
        connection.execute(
            text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64}
        )
    trail = AuditTrail(FakeClock(at))
    with Session(engine) as session, session.begin():
        session.add(
            UserRow(
                username="quinn",
                full_name="Quinn Reviewer",
                role="qa",
                password_hash=FAST_HASHER.hash("qa password 123"),
                disabled=False,
                failed_logins=0,
                password_changed_at=at,
                created_at=at,
                updated_at=at,
            )
        )
        trail.append(
            session,
            actor="admin",
            action="create",
            record_type="user",
            record_id="quinn",
            changes=[
                Change("full_name", None, "Quinn Reviewer"),
                Change("role", None, "qa"),
                Change("password", None, "(set)"),
            ],
            reason="t",
        )
        row = ExcursionRow(
            id="x1",
            kind="excursion",
            sensor_id="fridge-1.temperature",
            area="cold-store",
            instrument="fridge-1",
            parameter="temperature",
            level="action",
            core_revision=3,
            core_status="closed",
            start=at,
            end=at,
            record={"id": "x1", "peak": 9.5},
            qa_state="closed",
            impact_products="",
            impact_batches="",
            impact_text="",
            root_cause_category="",
            root_cause_text="",
            deviation_ref="",
            capa_ref="",
            conclusion="",
            row_version=2,
            created_at=at,
            updated_at=at,
        )
        session.add(row)
        trail.append(
            session,
            actor="system:records",
            action="create",
            record_type="excursion",
            record_id="x1",
            changes=[Change("core_status", None, "closed"), Change("level", None, "action")],
        )
        entries = trail.append(
            session,
            actor="quinn",
            action="close",
            record_type="excursion",
            record_id="x1",
            changes=[
                Change("qa_state", "open", "closed"),
                Change("signature", None, "Quinn Reviewer, approved"),
            ],
            reason="closed",
        )
        session.add(
            SignatureRow(
                record_id="x1",
                action="close",
                signer="quinn",
                printed_name="Quinn Reviewer",
                meaning="approved",
                signed_at=entries[-1].at,
                content_hash=content_hash(row),
                audit_seq=entries[-1].seq,
            )
        )


def test_a_signature_still_shows_as_signed(engine: Engine) -> None:
    """The signature's manifest in the trail leaves what the page shows unchanged."""
    record_id, life, _ = signed_store(engine)
    (signed,) = life.signatures(record_id)
    assert (
        signed.signature.printed_name,
        signed.signature.meaning,
        signed.covers_current_content,
    ) == (
        "Quinn Reviewer",
        "approved",
        True,
    )
    assert signed.matches_audit_trail


def _covers_cell(template: Any, detail: RecordDetail) -> str:
    """Render the signatures table's covers cell (the template's own markup)."""
    source = template.environment.loader.get_source(template.environment, "detail.html")[0]
    start = source.index("{% if s.covers_current_content %}")
    end = source.index("{% endif %}", start) + len("{% endif %}")
    cell = "{% for s in r.signatures %}" + source[start:end] + "{% endfor %}"
    return str(template.environment.from_string(cell).render(r=detail))
