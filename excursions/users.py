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
acting person and the reason; the password never appears in the trail, only that it changed
and ``password_fingerprint`` of its new hash (a SHA-256 of the argon2 hash, which holds a
random salt: it tells nothing about the password), so that ``envmon audit verify`` names a
hash replaced outside the application. A rehash at sign-in is audited the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from envmon.errors import EnvmonError
from envmon.timeutil import utcnow
from excursions.audit import AuditTrail, Change
from excursions.db import UserRow

ROLES: Final = ("viewer", "operator", "qa", "admin")
USERNAME: Final = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD: Final = 12
MAX_FAILED: Final = 5
LOCKOUT: Final = timedelta(minutes=15)
RECORD_TYPE: Final = "user"
#: What the trail says instead of a password.
PASSWORD_SET: Final = "(set)"  # noqa: S105 - a marker in the audit trail, not a password
#: The audit field holding ``password_fingerprint`` of the user's current hash.
FINGERPRINT_FIELD: Final = "password_fingerprint"
_FINGERPRINT_DOMAIN: Final = b"envmon-password-fingerprint-v1\0"


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


def password_fingerprint(password_hash: str) -> str:
    """Return the SHA-256 of a stored password hash (what the audit trail keeps of it)."""
    return hashlib.sha256(_FINGERPRINT_DOMAIN + password_hash.encode()).hexdigest()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise UserError("password: no leading or trailing spaces")


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
        password_hash = self.hasher.hash(password)
        with Session(self.engine) as session, session.begin():
            if session.execute(select(UserRow.id).where(UserRow.username == username)).first():
                raise UserError(f"username {username!r} is taken")
            session.add(
                UserRow(
                    username=username,
                    full_name=full_name,
                    role=role,
                    password_hash=password_hash,
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
                    Change(FINGERPRINT_FIELD, None, password_fingerprint(password_hash)),
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
        self._check_role(role)
        self._change(username, "role", role, actor=actor, reason=reason)

    def disable(self, username: str, *, actor: str, reason: str) -> None:
        """Disable a user: no login from now on (records and signatures stay)."""
        self._change(username, "disabled", True, actor=actor, reason=reason)

    def enable(self, username: str, *, actor: str, reason: str) -> None:
        """Enable a disabled user and clear a lockout."""
        self._change(username, "disabled", False, actor=actor, reason=reason)

    def reset_password(self, username: str, password: str, *, actor: str, reason: str) -> None:
        """Set a new password (and clear a lockout)."""
        _check_password(password)
        reason = _check_reason(reason)
        with Session(self.engine) as session, session.begin():
            row = self._row(session, username)
            old_fingerprint = password_fingerprint(row.password_hash)
            row.password_hash = self.hasher.hash(password)
            row.password_changed_at = row.updated_at = self.clock()
            row.failed_logins, row.locked_until = 0, None
            self.trail.append(
                session,
                actor=actor,
                action="reset_password",
                record_type=RECORD_TYPE,
                record_id=username,
                changes=[
                    Change("password", PASSWORD_SET, PASSWORD_SET),
                    Change(
                        FINGERPRINT_FIELD, old_fingerprint, password_fingerprint(row.password_hash)
                    ),
                ],
                reason=reason,
            )

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
                    self._rehash(session, row, password)
                user = User(row.username, row.full_name, row.role)
        if user is None:
            raise refused  # after the commit: the failed attempt (and a lock) is kept
        return user

    def _rehash(self, session: Session, row: UserRow, password: str) -> None:
        """Store the password under the hasher's current parameters (audited: the hash changes)."""
        old = password_fingerprint(row.password_hash)
        row.password_hash = self.hasher.hash(password)
        self.trail.append(
            session,
            actor="system:login",
            action="rehash_password",
            record_type=RECORD_TYPE,
            record_id=row.username,
            changes=[Change(FINGERPRINT_FIELD, old, password_fingerprint(row.password_hash))],
            reason="the password hashing parameters changed",
        )

    def _change(self, username: str, field: str, value: object, *, actor: str, reason: str) -> None:
        reason = _check_reason(reason)
        with Session(self.engine) as session, session.begin():
            row = self._row(session, username)
            old = getattr(row, field)
            if old == value:
                raise UserError(f"user {username!r}: {field} is already {value!r}")
            setattr(row, field, value)
            if field == "disabled" and value is False:
                row.failed_logins, row.locked_until = 0, None
            row.updated_at = self.clock()
            self.trail.append(
                session,
                actor=actor,
                action=f"set_{field}",
                record_type=RECORD_TYPE,
                record_id=username,
                changes=[Change(field, old, value)],
                reason=reason,
            )

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
