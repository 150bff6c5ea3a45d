"""Users: argon2 passwords, roles, lockout after failed logins, every change audited."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Literal

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import verify
from excursions.db import AuditEntry, UserRow
from excursions.migrate import current, newest
from excursions.throttle import ACCOUNT_RULE, CLIENT_RULE, client_key
from excursions.users import (
    MAX_FAILED,
    UNKNOWN_USER,
    AuthenticationError,
    ThrottledError,
    UserError,
    UserStore,
    password_fingerprint,
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
        ("create", "password_fingerprint", f'"{password_fingerprint(row.password_hash)}"'),
    ]
    assert {(e.actor, e.reason) for e in entries} == {("admin.ann", "new QA reviewer")}
    assert all(PASSWORD not in (e.new_value or "") for e in entries)
    assert all(row.password_hash not in (e.new_value or "") for e in entries)


@pytest.mark.parametrize("wrong", ["", "correct horse", "Correct horse battery"])
def test_wrong_passwords_are_refused(users: UserStore, wrong: str) -> None:
    with pytest.raises(AuthenticationError):
        users.authenticate("jane", wrong)


def test_unknown_user_gets_the_same_answer(users: UserStore) -> None:
    with pytest.raises(AuthenticationError, match="unknown user, wrong password"):
        users.authenticate("nobody", PASSWORD)


def test_repeated_failures_block_that_address_for_that_account_for_a_while(
    users: UserStore, clock: FakeClock, engine: Engine
) -> None:
    """Five wrong passwords in a row from one address block it for the account, 15 minutes."""
    here = "10.0.0.1"
    for _ in range(MAX_FAILED - 1):
        with pytest.raises(AuthenticationError):
            users.authenticate("jane", "wrong password!", client=here)
    users.authenticate("jane", PASSWORD, client=here)  # a success resets the count
    for _ in range(MAX_FAILED):
        with pytest.raises(AuthenticationError):
            users.authenticate("jane", "wrong password!", client=here)
    with pytest.raises(ThrottledError, match="for this user id from your address"):
        users.authenticate("jane", PASSWORD, client=here)  # blocked: even the right password
    block = trail(engine)[-1]
    assert (block.actor, block.action, block.field) == ("system:login", "block", "blocked_until")
    assert block.reason == f"{MAX_FAILED} failed attempts for user id 'jane' from {here}"
    clock.advance((ACCOUNT_RULE.first + timedelta(seconds=1)).total_seconds())
    assert users.authenticate("jane", PASSWORD, client=here).username == "jane"


def test_nobody_can_lock_another_person_out(users: UserStore) -> None:
    """Failures from one address do not block the account from another one."""
    for _ in range(MAX_FAILED * 2):
        with pytest.raises(AuthenticationError):
            users.authenticate("jane", "a guess 12345", client="10.0.0.66")
    assert users.authenticate("jane", PASSWORD, client="10.0.0.7").username == "jane"
    assert users.list()[0]["locked"] is True  # from somewhere, for a while


def test_guessing_across_many_accounts_is_slowed_per_address(
    users: UserStore, clock: FakeClock
) -> None:
    """A few guesses on each of many accounts: after the free ones, doubling delays."""
    for name in ("ann", "bob", "cid", "dan", "eve", "fay"):
        users.add(name, name.title(), "viewer", PASSWORD, actor="admin.ann", reason="test")
    attacker = client_key("2001:db8:1:2::66")
    names = iter(["ann", "bob", "cid", "dan", "eve", "fay"] * 10)
    for _ in range(CLIENT_RULE.free):
        with pytest.raises(AuthenticationError) as refused:
            users.authenticate(next(names), "a guess 12345", client=attacker)
        assert not isinstance(refused.value, ThrottledError)
    for delay in (1, 2, 4, 8):  # seconds: each failure past the free ones doubles the wait
        with pytest.raises(AuthenticationError) as refused:
            users.authenticate(next(names), "a guess 12345", client=attacker)
        assert not isinstance(refused.value, ThrottledError)
        neighbour = client_key("2001:db8:1:2::77")  # the same /64: the same host
        with pytest.raises(ThrottledError):
            users.authenticate(next(names), "a guess 12345", client=neighbour)
        clock.advance(delay - 0.001)
        with pytest.raises(ThrottledError):
            users.authenticate("ann", PASSWORD, client=attacker)  # even a right password waits
        clock.advance(0.001)
    elsewhere = client_key("2001:db8:1:3::1")
    assert users.authenticate("ann", PASSWORD, client=elsewhere).username == "ann"


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        (None, "local"),
        ("testclient", "testclient"),
    ],
)
def test_attempts_are_counted_per_address_and_ipv6_per_64(host: str | None, key: str) -> None:
    """An IPv6 host usually holds a whole /64: it counts as one address."""
    assert client_key(host) == key


class CountingHasher(PasswordHasher):
    """argon2 with cheap parameters that counts the verifications and hashes."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0
        self.hashed = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hashed += 1
        return super().hash(password, salt=salt)


def test_every_refusal_costs_one_argon2_verification(engine: Engine, clock: FakeClock) -> None:
    """Unknown, wrong, disabled, blocked elsewhere or right: one verify each (no timing oracle)."""
    hasher = CountingHasher()
    users = UserStore(engine, clock=clock, hasher=hasher)
    users.add("jane", "Jane Doe", "qa", PASSWORD, actor="admin.ann", reason="test")
    users.add("dave", "Dave Doe", "qa", PASSWORD, actor="admin.ann", reason="test")
    users.disable("dave", actor="admin.ann", reason="left")
    for _ in range(MAX_FAILED):
        with pytest.raises(AuthenticationError):
            users.authenticate("jane", "wrong password!", client="10.0.0.66")
    attempts = [
        ("nobody", PASSWORD),  # unknown user
        ("jane", "wrong password!"),  # wrong password (the account is blocked elsewhere)
        ("dave", PASSWORD),  # disabled, right password
        ("jane", PASSWORD),  # right
    ]
    for username, password in attempts:
        hasher.verified = hasher.hashed = 0
        with contextlib.suppress(AuthenticationError):
            users.authenticate(username, password, client="10.0.0.7")
        assert (hasher.verified, hasher.hashed) == (1, 0), username


def test_failed_attempts_are_audited_without_the_typed_unknown_name(
    users: UserStore, engine: Engine
) -> None:
    """A wrong password and an unknown user id are audited with the address and the reason."""
    with pytest.raises(AuthenticationError):
        users.authenticate("jane", "wrong password!", client="10.0.0.5")
    with pytest.raises(AuthenticationError):
        users.authenticate("my secret pass", "x", client="10.0.0.5")
    wrong, unknown = trail(engine)[-2:]
    assert (wrong.actor, wrong.action, wrong.record_id, wrong.reason) == (
        "system:login",
        "sign_in_failed",
        "jane",
        "wrong password",
    )
    assert (wrong.field, wrong.new_value) == ("client", '"10.0.0.5"')
    assert (unknown.record_id, unknown.reason) == (UNKNOWN_USER, "unknown user")
    assert all("my secret" not in str(vars(e)) for e in trail(engine))


def test_an_admin_reset_clears_the_accounts_blocks(users: UserStore) -> None:
    """A user blocked at their own desk can sign in again after an admin's reset."""
    for _ in range(MAX_FAILED):
        with pytest.raises(AuthenticationError):
            users.authenticate("jane", "wrong password!", client="10.0.0.5")
    users.reset_password("jane", "a new long password", actor="admin.ann", reason="forgot")
    assert users.authenticate("jane", "a new long password", client="10.0.0.5").role == "qa"


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
    entries = [e for e in trail(engine)[4:] if e.actor == "admin.ann"]
    changes = [(e.action, e.field, e.old_value, e.new_value, e.reason) for e in entries[:-1]]
    assert changes == [
        ("set_role", "role", '"qa"', '"operator"', "moved to production"),
        ("set_disabled", "disabled", "false", "true", "left the company"),
        ("set_disabled", "disabled", "true", "false", "came back"),
        ("reset_password", "password", '"(set)"', '"(set)"', "forgot it"),
    ]
    fingerprint = entries[-1]  # of the new hash, written with the reset
    assert (fingerprint.action, fingerprint.field) == ("reset_password", "password_fingerprint")
    assert fingerprint.old_value != fingerprint.new_value
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
