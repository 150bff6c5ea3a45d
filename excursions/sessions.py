"""Sign-in sessions of the QA app: random tokens, idle and absolute expiry, sign-out.

The browser keeps a random token (``secrets.token_urlsafe``, 256 bits); the database
keeps only its SHA-256, so a copy of the database does not give anyone a session. A
session ends after ``IDLE`` without use or ``ABSOLUTE`` after sign-in, whichever comes
first, at sign-out, when an admin disables the user, changes their role or resets their
password (``UserStore.change`` ends them), and when its user is disabled, no longer exists
or has a password newer than the session (checked on every use). Times come from the
injectable clock. Signing in and out are audited (actor: the user; with the client's
address).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from envmon.timeutil import utcnow
from excursions.audit import Change
from excursions.db import SessionRow, UserRow
from excursions.throttle import LOCAL_CLIENT
from excursions.users import RECORD_TYPE, AuthenticationError, User, UserStore

IDLE: Final = timedelta(minutes=15)
ABSOLUTE: Final = timedelta(hours=8)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Creates, checks and ends sessions (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        users: UserStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        idle: timedelta = IDLE,
        absolute: timedelta = ABSOLUTE,
    ) -> None:
        self.engine = engine
        self.users = users
        self.clock = clock
        self.idle = idle
        self.absolute = absolute

    def sign_in(
        self, username: str, password: str, *, client: str = LOCAL_CLIENT
    ) -> tuple[str, User]:
        """Authenticate and open a session; return its token (for the cookie) and the user.

        The sign-in is audited with the client's address (failures by ``authenticate``).
        """
        user = self.users.authenticate(username, password, client=client)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            session.add(
                SessionRow(
                    token_hash=_digest(token), username=user.username, created_at=now, last_seen=now
                )
            )
            self._audit(session, user.username, "sign_in", client)
        return token, user

    def user(self, token: str, *, touch: bool = True) -> User:
        """Return the session's user (current role) and note the use; raise if it ended.

        ``touch=False`` checks without noting a use: a page's own polling (the live status
        page) is not the person at the keyboard, so it must not keep the session from
        ending when idle.
        """
        now = self.clock()
        found: User | None = None
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, _digest(token), with_for_update=True)
            if row is None or row.ended_at is not None:
                raise AuthenticationError("not signed in")
            account = session.execute(
                select(UserRow).where(UserRow.username == row.username)
            ).scalar_one_or_none()
            expired = now - row.last_seen > self.idle or now - row.created_at > self.absolute
            # A session older than the password never survives it, whatever path set it.
            stale = account is not None and row.created_at < account.password_changed_at
            if expired or stale or account is None or account.disabled:
                row.ended_at = now  # kept: the block commits before the error below
            else:
                if touch:
                    row.last_seen = now
                found = User(account.username, account.full_name, account.role)
        if found is None:
            raise AuthenticationError("the session has ended: sign in again")
        return found

    def sign_out(
        self, token: str, *, client: str = LOCAL_CLIENT, reason: str | None = None
    ) -> None:
        """End the session, audited (nothing happens for an unknown or ended one)."""
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, _digest(token), with_for_update=True)
            if row is not None and row.ended_at is None:
                row.ended_at = self.clock()
                self._audit(session, row.username, "sign_out", client, reason)

    def _audit(
        self, session: Session, username: str, action: str, client: str, reason: str | None = None
    ) -> None:
        self.users.trail.append(
            session,
            actor=username,
            action=action,
            record_type=RECORD_TYPE,
            record_id=username,
            changes=[Change("client", None, client)],
            reason=reason,
        )
