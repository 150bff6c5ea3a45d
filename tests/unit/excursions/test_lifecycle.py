"""The QA lifecycle: roles, reasons, stale forms, signatures bound to the signed content."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import verify
from excursions.db import AuditEntry
from excursions.lifecycle import (
    MAX_COMMENT,
    ClosedRecordError,
    Lifecycle,
    LifecycleError,
    NotAllowedError,
    SigningBlockedError,
    StaleRecordError,
)
from excursions.users import MAX_FAILED, User, UserStore

from .conftest import FAST_HASHER, stored_records
from .lifecycle_cases import ASSESSMENT, QA_PASSWORD, newest_seq, sign, stored_row, version


@pytest.fixture
def setup(engine: Engine) -> tuple[Lifecycle, str, dict[str, User]]:
    clock = FakeClock(DEFAULT_T0)
    record_id = stored_records(engine, clock)
    users = UserStore(engine, clock=clock, hasher=FAST_HASHER)
    people = {}
    for name, role in [("olga", "operator"), ("quinn", "qa"), ("vic", "viewer")]:
        password = QA_PASSWORD if role == "qa" else f"{name} password 123"
        people[role] = users.add(
            name, name.title() + " Example", role, password, actor="admin", reason="test user"
        )
    return Lifecycle(engine, users, clock=clock), record_id, people


def state(engine: Engine, record_id: str) -> str:
    return stored_row(engine, record_id).qa_state


def to_review(life: Lifecycle, engine: Engine, record_id: str, people: dict[str, User]) -> int:
    v = life.acknowledge(
        record_id,
        people["operator"],
        "Door closed, QA informed",
        version=version(engine, record_id),
    )
    v = life.start_review(record_id, people["qa"], "review", version=v)
    return life.assess(record_id, people["qa"], ASSESSMENT, "assessment", version=v)


def test_the_whole_lifecycle_with_signatures(
    setup: tuple[Lifecycle, str, dict[str, User]], engine: Engine
) -> None:
    life, record_id, people = setup
    v = to_review(life, engine, record_id, people)
    v = sign(life.close, record_id, version=v, reason="assessed, no impact")
    assert state(engine, record_id) == "closed"
    (signed,) = life.signatures(record_id)
    s = signed.signature
    assert (s.signer, s.printed_name, s.meaning, s.action) == (
        "quinn",
        "Quinn Example",
        "approved",
        "close",
    )
    assert signed.covers_current_content
    assert signed.signature.signed_at.tzinfo is not None

    v = sign(
        life.reopen, record_id, version=v, reason="new data from the probe", meaning="reviewed"
    )
    first, second = life.signatures(record_id)
    assert not first.covers_current_content  # the content it signed has changed since
    assert second.covers_current_content
    assert state(engine, record_id) == "reopened"
    with Session(engine) as session:
        assert verify(session).ok
        actions = list(
            session.execute(
                select(AuditEntry.action, AuditEntry.actor, AuditEntry.reason)
                .where(AuditEntry.record_id == record_id, AuditEntry.actor != "system:records")
                .order_by(AuditEntry.seq)
            )
        )
    assert [a for a, _, _ in actions] == [
        "acknowledge",
        "start_review",
        *["assess"] * len(ASSESSMENT),
        "close",
        "close",
        "reopen",
        "reopen",
    ]
    assert all(reason for _, _, reason in actions)


def test_a_viewer_and_an_operator_cannot_review_or_sign(
    setup: tuple[Lifecycle, str, dict[str, User]], engine: Engine
) -> None:
    life, record_id, people = setup
    v = version(engine, record_id)
    with pytest.raises(NotAllowedError, match="viewer"):
        life.acknowledge(record_id, people["viewer"], "x", version=v)
    v = life.acknowledge(record_id, people["operator"], "seen", version=v)
    with pytest.raises(NotAllowedError, match="operator"):
        life.start_review(record_id, people["operator"], "x", version=v)
    v = life.start_review(record_id, people["qa"], "review", version=v)
    v = life.assess(record_id, people["qa"], ASSESSMENT, "assessment", version=v)
    with pytest.raises(NotAllowedError, match="operator"):
        sign(
            life.close,
            record_id,
            version=v,
            reason="x",
            signer="olga",
            password="olga password 123",
        )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("overlong_comment", "at most 4000"),
        ("wrong_password", "wrong user id or password"),
        ("bad_meaning", "meaning"),
        ("missing_reason", "reason is required"),
        ("bad_root_cause", "root_cause_category: one of"),
        ("unknown_field", "not a QA field"),
        ("forged_id", "no record 'forged"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    setup: tuple[Lifecycle, str, dict[str, User]], engine: Engine, call: str, message: str
) -> None:
    life, record_id, people = setup
    v = to_review(life, engine, record_id, people)
    before = newest_seq(engine)
    qa = people["qa"]
    actions = {
        "overlong_comment": lambda: life.comment(record_id, qa, "x" * (MAX_COMMENT + 1), version=v),
        "wrong_password": lambda: sign(
            life.close, record_id, version=v, reason="r", password="wrong!"
        ),
        "bad_meaning": lambda: sign(life.close, record_id, version=v, reason="r", meaning="ok"),
        "missing_reason": lambda: sign(life.close, record_id, version=v, reason=" "),
        "bad_root_cause": lambda: life.assess(
            record_id, qa, {"root_cause_category": "gremlins"}, "r", version=v
        ),
        "unknown_field": lambda: life.assess(record_id, qa, {"qa_state": "closed"}, "r", version=v),
        "forged_id": lambda: life.comment("forged-id-123", qa, "x", version=v),
    }
    with pytest.raises(LifecycleError, match=message):
        actions[call]()
    assert state(engine, record_id) == "under_review"
    assert version(engine, record_id) == v
    after = newest_seq(engine)
    if call != "wrong_password":
        assert after == before
    assert life.signatures(record_id) == []


def test_a_stale_form_is_refused(
    setup: tuple[Lifecycle, str, dict[str, User]], engine: Engine
) -> None:
    life, record_id, people = setup
    loaded = version(engine, record_id)
    life.comment(record_id, people["operator"], "first", version=loaded)
    with pytest.raises(StaleRecordError, match="changed since the page was loaded"):
        life.acknowledge(record_id, people["operator"], "second", version=loaded)
    assert state(engine, record_id) == "open"


def test_closing_needs_the_assessment_and_an_ended_excursion(
    setup: tuple[Lifecycle, str, dict[str, User]], engine: Engine
) -> None:
    life, record_id, people = setup
    v = life.acknowledge(record_id, people["operator"], "seen", version=version(engine, record_id))
    v = life.start_review(record_id, people["qa"], "review", version=v)
    with pytest.raises(LifecycleError, match="fill in impact_text, root_cause_category"):
        sign(life.close, record_id, version=v, reason="r")


def test_signatures_cannot_be_edited(
    setup: tuple[Lifecycle, str, dict[str, User]], engine: Engine
) -> None:
    life, record_id, people = setup
    v = to_review(life, engine, record_id, people)
    sign(life.close, record_id, version=v, reason="ok")
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as connection:
        connection.execute(text("UPDATE signatures SET meaning = 'reviewed'"))


def test_a_closed_record_accepts_nothing_but_reopen(
    setup: tuple[Lifecycle, str, dict[str, User]], engine: Engine
) -> None:
    """Comments on a closed, signed record are refused by the lifecycle; reopening works."""
    life, record_id, people = setup
    v = to_review(life, engine, record_id, people)
    v = sign(life.close, record_id, version=v, reason="no impact")
    before = newest_seq(engine)
    for user in (people["operator"], people["qa"]):
        with pytest.raises(ClosedRecordError, match=r"closed and signed.*reopen"):
            life.comment(record_id, user, "added after the signature", version=v)
    after = newest_seq(engine)
    assert after == before
    assert version(engine, record_id) == v
    (signed,) = life.signatures(record_id)
    assert signed.covers_current_content
    v = sign(life.reopen, record_id, version=v, reason="new information", meaning="reviewed")
    life.comment(record_id, people["operator"], "the new information", version=v)


def test_failed_signatures_are_audited_and_five_block_signing(
    setup: tuple[Lifecycle, str, dict[str, User]], engine: Engine
) -> None:
    """Each wrong signature password is audited; the fifth in a row blocks signing a while."""
    life, record_id, people = setup
    v = to_review(life, engine, record_id, people)
    for _ in range(MAX_FAILED - 1):
        with pytest.raises(LifecycleError, match="wrong user id or password"):
            sign(life.close, record_id, version=v, reason="r", password="wrong!", client="10.1.1.1")
    with pytest.raises(SigningBlockedError, match="signed out") as blocked:
        sign(life.close, record_id, version=v, reason="r", password="wrong!", client="10.1.1.1")
    assert blocked.value.ends_session
    with pytest.raises(SigningBlockedError, match="try again after"):
        sign(life.close, record_id, version=v, reason="r", client="10.1.1.1")
    assert state(engine, record_id) == "under_review"
    with Session(engine) as session:
        failed = list(
            session.execute(
                select(AuditEntry.actor, AuditEntry.record_id, AuditEntry.reason).where(
                    AuditEntry.action == "signature_failed"
                )
            )
        )
    assert failed == [("system:login", "quinn", f"wrong password; close {record_id}")] * MAX_FAILED
