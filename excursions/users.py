"""Local users of the QA app: roles, argon2 passwords, lockout, every change audited.

Roles (what each may do is enforced by the lifecycle and the web app):

``viewer``    read records
``operator``  acknowledge and comment
``qa``        review, sign, close, reopen
``admin``     manage users — not records

Passwords are stored only as argon2id hashes (argon2-cffi's defaults, rehashed when those
change). ``MAX_FAILED`` wrong passwords in a row lock the account for ``LOCKOUT``; a
correct password then fails too until the time has passed. Every change to a user — created,
role changed, disabled, enabled, password reset, locked — writes audit entries with the
acting person and the reason; the password never appears in the trail, only that it changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from envmon.errors import EnvmonError
from envmon.timeutil import utcnow
from excursions.audit import AuditTrail, Change
from excursions.db import SessionRow, UserRow

ROLES: Final = ("viewer", "operator", "qa", "admin")
USERNAME: Final = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD: Final = 12
MAX_FAILED: Final = 5
LOCKOUT: Final = timedelta(minutes=15)
RECORD_TYPE: Final = "user"
#: What the trail says instead of a password.
PASSWORD_SET: Final = "(set)"  # noqa: S105 - a marker in the audit trail, not a password


class UserError(EnvmonError):
    """A user change was refused; the message says why (nothing was changed)."""


class AuthenticationError(EnvmonError):
    """Login refused: unknown user, wrong password, disabled or locked (not said which)."""


@dataclass(frozen=True, slots=True)
class User:
    """What the app knows about a signed-in user."""

    username: str
    full_name: str
    role: str


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise UserError("password: no leading or trailing spaces")


def end_sessions(session: Session, username: str, now: datetime) -> None:
    """End every open session of ``username`` (in the caller's transaction)."""
    session.execute(
        update(SessionRow)
        .where(SessionRow.username == username, SessionRow.ended_at.is_(None))
        .values(ended_at=now)
    )


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise UserError("a reason is required for every change to a user")
    return reason


class UserStore:
    """Users in the record store's database (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self.trail = AuditTrail(clock)

    def add(
        self, username: str, full_name: str, role: str, password: str, *, actor: str, reason: str
    ) -> User:
        """Create a user; refuse a taken or malformed name, an unknown role, a weak password."""
        if not USERNAME.match(username):
            raise UserError(
                f"username {username!r}: 2-64 characters, lowercase letters, digits, . _ -"
                ", starting with a letter"
            )
        full_name = full_name.strip()
        if not full_name:
            raise UserError("full name: required (it is printed on signatures)")
        self._check_role(role)
        _check_password(password)
        reason = _check_reason(reason)
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            if session.execute(select(UserRow.id).where(UserRow.username == username)).first():
                raise UserError(f"username {username!r} is taken")
            session.add(
                UserRow(
                    username=username,
                    full_name=full_name,
                    role=role,
                    password_hash=self.hasher.hash(password),
                    disabled=False,
                    failed_logins=0,
                    locked_until=None,
                    password_changed_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            self.trail.append(
                session,
                actor=actor,
                action="create",
                record_type=RECORD_TYPE,
                record_id=username,
                changes=[
                    Change("full_name", None, full_name),
                    Change("role", None, role),
                    Change("password", None, PASSWORD_SET),
                ],
                reason=reason,
            )
        return User(username, full_name, role)

    def list(self) -> list[dict[str, object]]:
        """Return every user (no password hashes), by username."""
        with Session(self.engine) as session:
            rows = session.execute(select(UserRow).order_by(UserRow.username)).scalars()
            now = self.clock()
            return [
                {
                    "username": row.username,
                    "full_name": row.full_name,
                    "role": row.role,
                    "disabled": row.disabled,
                    "locked": row.locked_until is not None and row.locked_until > now,
                    "password_changed_at": row.password_changed_at,
                }
                for row in rows
            ]

    def set_role(self, username: str, role: str, *, actor: str, reason: str) -> None:
        """Change a user's role."""
        self.change(username, role=role, actor=actor, reason=reason)

    def disable(self, username: str, *, actor: str, reason: str) -> None:
        """Disable a user: no login from now on (records and signatures stay)."""
        self.change(username, disabled=True, actor=actor, reason=reason)

    def enable(self, username: str, *, actor: str, reason: str) -> None:
        """Enable a disabled user and clear a lockout."""
        self.change(username, disabled=False, actor=actor, reason=reason)

    def reset_password(self, username: str, password: str, *, actor: str, reason: str) -> None:
        """Set a new password (and clear a lockout)."""
        self.change(username, password=password, actor=actor, reason=reason)

    def change(
        self,
        username: str,
        *,
        actor: str,
        reason: str,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> None:
        """Change any of a user's role, disabled flag and password: all or nothing.

        Every part is checked before anything is written, and all of it is written (with
        its audit entries) in one transaction. Refused: a change of one's own role or
        disabled flag (``actor`` is the user), demoting or disabling the last enabled
        admin, a value the user already has. A role change, a disable and a password
        reset end the user's sessions.
        """
        reason = _check_reason(reason)
        if role is None and disabled is None and password is None:
            raise UserError("nothing to change: give a role, disabled, or a new password")
        if role is not None:
            self._check_role(role)
        if password is not None:
            _check_password(password)
        if actor == username and (role is not None or disabled is not None):
            # Segregation of duties: an admin giving itself the qa role could sign records.
            raise UserError(
                "you may not change your own role or disable yourself: ask another admin"
            )
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            admins = self._lock_admins(session)
            row = self._row(session, username)
            for field, value in (("role", role), ("disabled", disabled)):
                if value is not None and getattr(row, field) == value:
                    raise UserError(f"user {username!r}: {field} is already {value!r}")
            leaves = (role is not None and role != "admin") or disabled is True
            if row.role == "admin" and not row.disabled and leaves and admins == (username,):
                raise UserError(
                    f"{username!r} is the last enabled admin: add or enable another admin first"
                )
            audit: list[tuple[str, Change]] = []
            if role is not None:
                audit.append(("set_role", Change("role", row.role, role)))
                row.role = role
            if disabled is not None:
                audit.append(("set_disabled", Change("disabled", row.disabled, disabled)))
                row.disabled = disabled
                if not disabled:
                    row.failed_logins, row.locked_until = 0, None
            if password is not None:
                audit.append(("reset_password", Change("password", PASSWORD_SET, PASSWORD_SET)))
                row.password_hash = self.hasher.hash(password)
                row.password_changed_at = now
                row.failed_logins, row.locked_until = 0, None
            row.updated_at = now
            for action, change in audit:
                self.trail.append(
                    session,
                    actor=actor,
                    action=action,
                    record_type=RECORD_TYPE,
                    record_id=username,
                    changes=[change],
                    reason=reason,
                )
            if role is not None or disabled is True or password is not None:
                end_sessions(session, username, now)

    def authenticate(self, username: str, password: str) -> User:
        """Return the user if the password is right and the account usable; else raise."""
        refused = AuthenticationError("unknown user, wrong password, or account not usable")
        user: User | None = None
        with Session(self.engine) as session, session.begin():
            row = session.execute(
                select(UserRow).where(UserRow.username == username).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                self.hasher.hash(password)  # the same time as a real check: no user probing
                raise refused
            now = self.clock()
            if row.disabled or (row.locked_until is not None and row.locked_until > now):
                raise refused
            try:
                self.hasher.verify(row.password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                row.failed_logins += 1
                if row.failed_logins >= MAX_FAILED:
                    row.locked_until = now + LOCKOUT
                    row.failed_logins = 0
                    self.trail.append(
                        session,
                        actor="system:login",
                        action="lock",
                        record_type=RECORD_TYPE,
                        record_id=username,
                        changes=[Change("locked_until", None, row.locked_until.isoformat())],
                        reason=f"{MAX_FAILED} wrong passwords in a row",
                    )
            else:
                row.failed_logins, row.locked_until = 0, None
                if self.hasher.check_needs_rehash(row.password_hash):
                    row.password_hash = self.hasher.hash(password)
                user = User(row.username, row.full_name, row.role)
        if user is None:
            raise refused  # after the commit: the failed attempt (and a lock) is kept
        return user

    @staticmethod
    def _lock_admins(session: Session) -> tuple[str, ...]:
        """Lock every admin's row (always in the same order) and return the enabled ones.

        Two admins demoting each other at once are thus serialised: the second sees that
        the first is no longer an admin.
        """
        rows = session.execute(
            select(UserRow).where(UserRow.role == "admin").order_by(UserRow.id).with_for_update()
        ).scalars()
        return tuple(row.username for row in rows if not row.disabled)

    @staticmethod
    def _row(session: Session, username: str) -> UserRow:
        row = session.execute(
            select(UserRow).where(UserRow.username == username).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise UserError(f"no user {username!r}")
        return row

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in ROLES:
            raise UserError(f"role {role!r}: one of {', '.join(ROLES)}")
