"""Local users of the QA app: roles, argon2 passwords, throttled sign-ins, everything audited.

What each role may do is ``excursions.policy.RULES``.

Passwords are stored only as argon2id hashes (argon2-cffi's defaults, rehashed when those
change). Every sign-in and signature check costs one argon2 verification whatever the
outcome — unknown user (against a dummy hash), disabled account, wrong or right password —
so the answer's time tells nothing about the account. Failures are throttled per client
address, not locked per account (``excursions.throttle``): nobody can lock another person
out. Every change to a user — created, role changed, disabled, enabled, password reset —
and every failed sign-in or signature and every block writes audit entries with the actor,
the client address and the reason; the password never appears in the trail, only that it
changed and ``password_fingerprint`` of its new hash (a SHA-256 of the argon2 hash, which
holds a random salt: it tells nothing about the password), so that ``envmon audit verify``
names a hash replaced outside the application; a rehash at sign-in is audited the same way.
A typed user id that does not exist is recorded as ``(unknown)``: people type
passwords into the user id field.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from envmon.errors import EnvmonError
from envmon.timeutil import utcnow
from excursions.audit import AuditTrail, Change
from excursions.db import SessionRow, UserRow
from excursions.policy import Role
from excursions.throttle import (
    ACCOUNT_RULE,
    LOCAL_CLIENT,
    BlockedError,
    LoginThrottle,
    Reservation,
)

USERNAME: Final = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD: Final = 12
#: Wrong passwords in a row for one account from one address before that address is blocked.
MAX_FAILED: Final = ACCOUNT_RULE.free + 1
RECORD_TYPE: Final = "user"
#: The actor of sign-in failures and blocks in the trail.
LOGIN_ACTOR: Final = "system:login"
#: The record id of failed attempts with a user id that does not exist.
UNKNOWN_USER: Final = "(unknown)"
REFUSED: Final = "unknown user, wrong password, or account not usable"
#: What the trail says instead of a password.
PASSWORD_SET: Final = "(set)"  # noqa: S105 - a marker in the audit trail, not a password
#: The audit field holding ``password_fingerprint`` of the user's current hash.
FINGERPRINT_FIELD: Final = "password_fingerprint"
_FINGERPRINT_DOMAIN: Final = b"envmon-password-fingerprint-v1\0"


def password_fingerprint(password_hash: str) -> str:
    """Return the SHA-256 of a stored password hash (what the audit trail keeps of it)."""
    return hashlib.sha256(_FINGERPRINT_DOMAIN + password_hash.encode()).hexdigest()


class UserError(EnvmonError):
    """A user change was refused; the message says why (nothing was changed)."""


class AuthenticationError(EnvmonError):
    """Sign-in or signature refused: unknown user, wrong password, disabled (not said which)."""

    def __init__(self, message: str = REFUSED, *, account_blocked: bool = False) -> None:
        super().__init__(message)
        #: This failure blocked further attempts on the account from this address.
        self.account_blocked = account_blocked


class ThrottledError(AuthenticationError):
    """Too many failures from this address (for this account, or at all): not tried."""

    def __init__(self, until: datetime, *, account: bool) -> None:
        what = "for this user id " if account else ""
        super().__init__(
            f"too many failed attempts {what}from your address: try again after"
            f" {until:%H:%M:%S} UTC",
            account_blocked=account,
        )
        self.until = until


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
        self.throttle = LoginThrottle(clock)
        # A hash no password matches, with this hasher's parameters: unknown users are
        # verified against it. Made now, not at the first unknown user (that would be slow).
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(32))

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
            blocked = self.throttle.blocked_accounts(session)
            return [
                {
                    "username": row.username,
                    "full_name": row.full_name,
                    "role": row.role,
                    "disabled": row.disabled,
                    "locked": row.username in blocked,  # from some address, for a while
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
        """Enable a disabled user and clear the account's sign-in blocks."""
        self.change(username, disabled=False, actor=actor, reason=reason)

    def reset_password(self, username: str, password: str, *, actor: str, reason: str) -> None:
        """Set a new password (and clear the account's sign-in blocks)."""
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
            leaves = (role is not None and role != Role.ADMIN) or disabled is True
            if row.role == Role.ADMIN and not row.disabled and leaves and admins == (username,):
                raise UserError(
                    f"{username!r} is the last enabled admin: add or enable another admin first"
                )
            audit: list[tuple[str, list[Change]]] = []
            if role is not None:
                audit.append(("set_role", [Change("role", row.role, role)]))
                row.role = role
            if disabled is not None:
                audit.append(("set_disabled", [Change("disabled", row.disabled, disabled)]))
                row.disabled = disabled
            if password is not None:
                old_fingerprint = password_fingerprint(row.password_hash)
                row.password_hash = self.hasher.hash(password)
                row.password_changed_at = now
                audit.append(
                    (
                        "reset_password",
                        [
                            Change("password", PASSWORD_SET, PASSWORD_SET),
                            Change(
                                FINGERPRINT_FIELD,
                                old_fingerprint,
                                password_fingerprint(row.password_hash),
                            ),
                        ],
                    )
                )
            if password is not None or disabled is False:
                self.throttle.clear_account(session, username)
            row.updated_at = now
            for action, changes in audit:
                self.trail.append(
                    session,
                    actor=actor,
                    action=action,
                    record_type=RECORD_TYPE,
                    record_id=username,
                    changes=changes,
                    reason=reason,
                )
            if role is not None or disabled is True or password is not None:
                end_sessions(session, username, now)

    def authenticate(
        self,
        username: str,
        password: str,
        *,
        client: str = LOCAL_CLIENT,
        purpose: str = "sign_in",
        about: str = "",
    ) -> User:
        """Return the user if the password is right and the account usable; else raise.

        ``client`` is the address the attempt came from (``throttle.client_key``);
        ``purpose`` names it in the trail (``sign_in_failed``, ``signature_failed``) and
        ``about`` is added to the reason. Raises ``ThrottledError`` without checking
        anything while the address is blocked, else ``AuthenticationError`` (audited).
        """
        with Session(self.engine) as session, session.begin():
            try:
                reservation = self.throttle.reserve(session, client, username)
            except BlockedError as exc:
                raise ThrottledError(exc.until, account=exc.account) from None
            row = session.execute(
                select(
                    UserRow.username,
                    UserRow.full_name,
                    UserRow.role,
                    UserRow.password_hash,
                    UserRow.disabled,
                ).where(UserRow.username == username)
            ).first()
        # The check runs outside any transaction (argon2 takes ~0.1 s; nothing is locked
        # meanwhile) and always runs, so that every refusal takes the time of a real one.
        stored = row.password_hash if row is not None else self._dummy_hash
        try:
            right = bool(self.hasher.verify(stored, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            right = False
        if row is not None and right and not row.disabled:
            with Session(self.engine) as session, session.begin():
                self.throttle.succeeded(session, reservation)
                if self.hasher.check_needs_rehash(stored):
                    self._rehash(session, username, stored, password)
            return User(row.username, row.full_name, row.role)
        why = "unknown user" if row is None else "account disabled" if row.disabled else ""
        self._refused(reservation, row is not None, purpose, why or "wrong password", about)
        raise AuthenticationError(account_blocked=reservation.account_blocked)

    def _rehash(self, session: Session, username: str, stored: str, password: str) -> None:
        """Store the password under the hasher's current parameters (audited: the hash changes).

        Only if the hash is still the one just verified (a reset meanwhile wins).
        """
        new = self.hasher.hash(password)
        changed = session.execute(
            update(UserRow)
            .where(UserRow.username == username, UserRow.password_hash == stored)
            .values(password_hash=new)
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            return
        self.trail.append(
            session,
            actor=LOGIN_ACTOR,
            action="rehash_password",
            record_type=RECORD_TYPE,
            record_id=username,
            changes=[
                Change(FINGERPRINT_FIELD, password_fingerprint(stored), password_fingerprint(new))
            ],
            reason="the password hashing parameters changed",
        )

    def _refused(
        self, reservation: Reservation, known: bool, purpose: str, why: str, about: str
    ) -> None:
        """Audit a failed attempt and the blocks it began."""
        with Session(self.engine) as session, session.begin():
            self.trail.append(
                session,
                actor=LOGIN_ACTOR,
                action=f"{purpose}_failed",
                record_type=RECORD_TYPE,
                record_id=reservation.username if known else UNKNOWN_USER,
                changes=[Change("client", None, reservation.client)],
                reason=why + about,
            )
            for block in reservation.started:
                whom = f"user id {block.username!r}" if block.username is not None else "any user"
                self.trail.append(
                    session,
                    actor=LOGIN_ACTOR,
                    action="block",
                    record_type=RECORD_TYPE if block.username is not None else "client",
                    record_id=(block.username if known else UNKNOWN_USER)
                    if block.username is not None
                    else block.client,
                    changes=[Change("blocked_until", None, block.until.isoformat())],
                    reason=f"{block.failures} failed attempts for {whom} from {block.client}",
                )

    @staticmethod
    def _lock_admins(session: Session) -> tuple[str, ...]:
        """Lock every admin's row (always in the same order) and return the enabled ones.

        Two admins demoting each other at once are thus serialised: the second sees that
        the first is no longer an admin.
        """
        rows = session.execute(
            select(UserRow)
            .where(UserRow.role == Role.ADMIN.value)
            .order_by(UserRow.id)
            .with_for_update()
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
        if role not in tuple(Role):
            raise UserError(f"role {role!r}: one of {', '.join(Role)}")
