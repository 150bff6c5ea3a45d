"""Sign-in sessions: token only hashed at rest, idle and absolute expiry, sign-out, disable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.db import AuditEntry, SessionRow
from excursions.sessions import ABSOLUTE, IDLE, Sessions
from excursions.users import AuthenticationError, UserStore

from .conftest import FAST_HASHER

PASSWORD = "operator password"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DEFAULT_T0)


@pytest.fixture
def sessions(engine: Engine, clock: FakeClock) -> Sessions:
    users = UserStore(engine, clock=clock, hasher=FAST_HASHER)
    users.add("olga", "Olga Example", "operator", PASSWORD, actor="admin", reason="test")
    return Sessions(engine, users, clock=clock)


def test_sign_in_use_and_sign_out(sessions: Sessions, engine: Engine) -> None:
    token, user = sessions.sign_in("olga", PASSWORD)
    assert user.role == "operator"
    assert sessions.user(token).username == "olga"
    with Session(engine) as session:
        stored = session.execute(select(SessionRow.token_hash)).scalar_one()
    assert token not in stored  # only the SHA-256 is kept
    assert len(stored) == 64
    sessions.sign_out(token)
    with pytest.raises(AuthenticationError, match="not signed in"):
        sessions.user(token)


def test_a_wrong_password_opens_no_session(sessions: Sessions, engine: Engine) -> None:
    with pytest.raises(AuthenticationError):
        sessions.sign_in("olga", "not the password")
    with Session(engine) as session:
        assert session.execute(select(SessionRow)).first() is None


def test_idle_expiry_and_use_keeping_it_alive(sessions: Sessions, clock: FakeClock) -> None:
    token, _ = sessions.sign_in("olga", PASSWORD)
    for _ in range(5):
        clock.advance(IDLE.total_seconds() - 1)
        sessions.user(token)  # used in time: still valid
    clock.advance(IDLE.total_seconds() + 1)
    with pytest.raises(AuthenticationError, match="ended"):
        sessions.user(token)
    with pytest.raises(AuthenticationError, match="not signed in"):
        sessions.user(token)  # it stays ended


def test_absolute_expiry_even_when_used(sessions: Sessions, clock: FakeClock) -> None:
    token, _ = sessions.sign_in("olga", PASSWORD)
    step, elapsed = IDLE / 2, timedelta(0)
    while elapsed + step <= ABSOLUTE:  # used every half idle period, up to the limit
        clock.advance(step.total_seconds())
        elapsed += step
        sessions.user(token)
    clock.advance(step.total_seconds())
    with pytest.raises(AuthenticationError, match="ended"):
        sessions.user(token)


@pytest.mark.parametrize("change", ["disable", "set_role", "reset_password"])
def test_a_disable_role_change_or_password_reset_ends_the_users_sessions(
    sessions: Sessions, change: str
) -> None:
    """Sessions opened before an admin's change are refused; other users' sessions go on."""
    token, _ = sessions.sign_in("olga", PASSWORD)
    sessions.users.add("vic", "Vic Example", "viewer", PASSWORD, actor="admin", reason="test")
    other, _ = sessions.sign_in("vic", PASSWORD)
    args = {"disable": (), "set_role": ("qa",), "reset_password": ("a new long password",)}
    getattr(sessions.users, change)("olga", *args[change], actor="admin", reason="because")
    with pytest.raises(AuthenticationError, match=r"not signed in|ended"):
        sessions.user(token)
    assert sessions.user(other).username == "vic"


def test_an_unknown_token_is_refused(sessions: Sessions) -> None:
    with pytest.raises(AuthenticationError, match="not signed in"):
        sessions.user("forged-token")


def test_sign_in_and_sign_out_are_audited_with_the_address(
    sessions: Sessions, engine: Engine
) -> None:
    """Signing in and out are in the audit trail: who, when, from which address."""
    token, _ = sessions.sign_in("olga", PASSWORD, client="192.0.2.10")
    sessions.sign_out(token, client="192.0.2.10")
    sessions.sign_out(token, client="192.0.2.10")  # already ended: nothing more
    with Session(engine) as session:
        entries = session.execute(
            select(AuditEntry).where(AuditEntry.action.in_(("sign_in", "sign_out")))
        ).scalars()
        seen = [(e.actor, e.action, e.record_type, e.record_id, e.new_value) for e in entries]
    assert seen == [
        ("olga", "sign_in", "user", "olga", '"192.0.2.10"'),
        ("olga", "sign_out", "user", "olga", '"192.0.2.10"'),
    ]
