"""Users: argon2 passwords, roles, lockout after failed logins, every change audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import verify
from excursions.db import AuditEntry, UserRow
from excursions.migrate import current, newest
from excursions.users import (
    LOCKOUT,
    MAX_FAILED,
    AuthenticationError,
    UserError,
    UserStore,
)

from .conftest import FAST_HASHER

PASSWORD = "correct horse battery"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DEFAULT_T0)


@pytest.fixture
def users(engine: Engine, clock: FakeClock) -> UserStore:
    store = UserStore(engine, clock=clock, hasher=FAST_HASHER)
    store.add("jane", "Jane Doe", "qa", PASSWORD, actor="admin.ann", reason="new QA reviewer")
    return store


def trail(engine: Engine) -> list[AuditEntry]:
    with Session(engine) as session:
        entries = list(session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())
        session.expunge_all()
    return entries


def test_migrated_to_users(engine: Engine) -> None:
    assert current(engine) == newest() >= "0002"


def test_login_with_the_right_password(users: UserStore) -> None:
    user = users.authenticate("jane", PASSWORD)
    assert (user.username, user.full_name, user.role) == ("jane", "Jane Doe", "qa")


def test_only_an_argon2_hash_is_stored_and_the_trail_never_holds_it(
    users: UserStore, engine: Engine
) -> None:
    with Session(engine) as session:
        row = session.execute(select(UserRow)).scalar_one()
        assert row.password_hash.startswith("$argon2id$")
        assert PASSWORD not in row.password_hash
    entries = trail(engine)
    assert [(e.action, e.field, e.new_value) for e in entries] == [
        ("create", "full_name", '"Jane Doe"'),
        ("create", "role", '"qa"'),
        ("create", "password", '"(set)"'),
    ]
    assert {(e.actor, e.reason) for e in entries} == {("admin.ann", "new QA reviewer")}
    assert all(PASSWORD not in (e.new_value or "") for e in entries)


@pytest.mark.parametrize("wrong", ["", "correct horse", "Correct horse battery"])
def test_wrong_passwords_are_refused(users: UserStore, wrong: str) -> None:
    with pytest.raises(AuthenticationError):
        users.authenticate("jane", wrong)


def test_unknown_user_gets_the_same_answer(users: UserStore) -> None:
    with pytest.raises(AuthenticationError, match="unknown user, wrong password"):
        users.authenticate("nobody", PASSWORD)


def test_repeated_failures_lock_the_account_for_a_while(
    users: UserStore, clock: FakeClock, engine: Engine
) -> None:
    for _ in range(MAX_FAILED - 1):
        with pytest.raises(AuthenticationError):
            users.authenticate("jane", "wrong password!")
    users.authenticate("jane", PASSWORD)  # a success resets the count
    for _ in range(MAX_FAILED):
        with pytest.raises(AuthenticationError):
            users.authenticate("jane", "wrong password!")
    with pytest.raises(AuthenticationError):
        users.authenticate("jane", PASSWORD)  # locked: even the right password
    lock = trail(engine)[-1]
    assert (lock.actor, lock.action, lock.field) == ("system:login", "lock", "locked_until")
    clock.advance((LOCKOUT + timedelta(seconds=1)).total_seconds())
    assert users.authenticate("jane", PASSWORD).username == "jane"


def test_disable_enable_role_and_reset_are_audited_with_reasons(
    users: UserStore, engine: Engine
) -> None:
    users.set_role("jane", "operator", actor="admin.ann", reason="moved to production")
    users.disable("jane", actor="admin.ann", reason="left the company")
    with pytest.raises(AuthenticationError):
        users.authenticate("jane", PASSWORD)
    users.enable("jane", actor="admin.ann", reason="came back")
    users.reset_password("jane", "another long secret", actor="admin.ann", reason="forgot it")
    with pytest.raises(AuthenticationError):
        users.authenticate("jane", PASSWORD)
    assert users.authenticate("jane", "another long secret").role == "operator"
    changes = [(e.action, e.field, e.old_value, e.new_value, e.reason) for e in trail(engine)[3:]]
    assert changes == [
        ("set_role", "role", '"qa"', '"operator"', "moved to production"),
        ("set_disabled", "disabled", "false", "true", "left the company"),
        ("set_disabled", "disabled", "true", "false", "came back"),
        ("reset_password", "password", '"(set)"', '"(set)"', "forgot it"),
    ]
    with Session(engine) as session:
        assert verify(session).ok


@pytest.mark.parametrize(
    ("username", "name", "role", "password", "reason", "message"),
    [
        ("jane", "Jane Two", "qa", PASSWORD, "x", "taken"),
        ("Bad Name", "B", "qa", PASSWORD, "x", "username"),
        ("bob", "Bob", "superuser", PASSWORD, "x", "role 'superuser'"),
        ("bob", "Bob", "qa", "short", "x", "at least 12"),
        ("bob", "  ", "qa", PASSWORD, "x", "full name"),
        ("bob", "Bob", "qa", PASSWORD, "  ", "reason is required"),
    ],
)
def test_bad_user_changes_are_refused_and_change_nothing(
    users: UserStore,
    engine: Engine,
    username: str,
    name: str,
    role: str,
    password: str,
    reason: str,
    message: str,
) -> None:
    before = len(trail(engine))
    with pytest.raises(UserError, match=message):
        users.add(username, name, role, password, actor="admin.ann", reason=reason)
    assert len(trail(engine)) == before


def test_changes_to_unknown_users_and_no_op_changes_are_refused(users: UserStore) -> None:
    with pytest.raises(UserError, match="no user 'bob'"):
        users.disable("bob", actor="admin.ann", reason="x")
    with pytest.raises(UserError, match="already"):
        users.set_role("jane", "qa", actor="admin.ann", reason="x")


def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(
    users: UserStore, engine: Engine
) -> None:
    """Whoever asks (here the command line), one enabled admin always remains."""
    users.add("ann", "Ann Admin", "admin", PASSWORD, actor="cli:root", reason="first admin")
    before = len(trail(engine))
    with pytest.raises(UserError, match="last enabled admin"):
        users.set_role("ann", "qa", actor="cli:root", reason="x")
    with pytest.raises(UserError, match="last enabled admin"):
        users.disable("ann", actor="cli:root", reason="x")
    assert len(trail(engine)) == before
    users.add("bob", "Bob Admin", "admin", PASSWORD, actor="cli:root", reason="second admin")
    users.disable("bob", actor="ann", reason="on leave")
    with pytest.raises(UserError, match="last enabled admin"):
        users.set_role("ann", "viewer", actor="cli:root", reason="x")  # bob is disabled
    users.enable("bob", actor="ann", reason="back")
    users.set_role("ann", "qa", actor="bob", reason="moved to QA")  # bob remains


def test_a_combined_change_is_all_or_nothing(users: UserStore, engine: Engine) -> None:
    """Every part of a change is checked before anything is written."""
    before = len(trail(engine))
    with pytest.raises(UserError, match="at least 12"):
        users.change("jane", role="operator", password="short", actor="admin.ann", reason="x")
    with pytest.raises(UserError, match="already"):
        users.change("jane", role="operator", disabled=False, actor="admin.ann", reason="x")
    assert len(trail(engine)) == before
    assert users.authenticate("jane", PASSWORD).role == "qa"
