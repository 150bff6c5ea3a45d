"""The QA lifecycle of an excursion: acknowledge, review, assess, sign and close, reopen.

Who may take which action from which state is ``excursions.policy.RULES``. Every action
names the acting user, carries a reason and the ``row_version`` its form was loaded with
(a stale version is refused, nothing changes). A closed record accepts nothing but a
signed reopening (``ClosedRecordError``). Closing and reopening are signed: the signer
authenticates again (throttled and audited like a sign-in; ``SigningBlockedError`` after
too many wrong passwords) and the ``Signature`` stores the SHA-256 of the record's content
as signed. The audit entry of a signed move holds the signature's content
(``signature_manifest``), so a signature row changed outside the application covers
nothing and ``envmon audit verify`` names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from envmon.errors import EnvmonError
from envmon.timeutil import utcnow
from excursions.audit import AuditTrail, Change, canonical_hash
from excursions.db import AuditEntry, ExcursionRow, SignatureRow
from excursions.policy import RULES, SIGNED_ACTIONS, Meaning, Permission, QAState
from excursions.throttle import LOCAL_CLIENT
from excursions.users import MAX_FAILED, AuthenticationError, ThrottledError, User, UserStore

MEANINGS: Final = tuple(Meaning)
#: The QA fields an assessment may set, with their longest accepted text.
QA_FIELDS: Final = {
    "impact_products": 2_000,
    "impact_batches": 2_000,
    "impact_text": 10_000,
    "root_cause_category": 40,
    "root_cause_text": 10_000,
    "deviation_ref": 100,
    "capa_ref": 100,
    "conclusion": 10_000,
}
ROOT_CAUSES: Final = (
    "equipment",
    "utilities",
    "procedure",
    "human_error",
    "environment",
    "sensor_fault",
    "unknown",
)
#: What must be filled in before a record may be closed.
REQUIRED_TO_CLOSE: Final = ("impact_text", "root_cause_category", "conclusion")
MAX_COMMENT: Final = 4_000
#: The audit field of a signed move that holds the signature's content.
SIGNATURE_FIELD: Final = "signature"


class LifecycleError(EnvmonError):
    """An action was refused; the message says why. Nothing was changed."""


class StaleRecordError(LifecycleError):
    """The record changed since the form was loaded (another person, or the core)."""


class NotAllowedError(LifecycleError):
    """The user's role may not take this action."""


class SigningBlockedError(LifecycleError):
    """Too many wrong passwords: signing is blocked for a while.

    ``ends_session``: the signer's own password failed five times in a row, so the web app
    ends the session too (the person at the keyboard is probably not the signer).
    """

    def __init__(self, message: str, *, ends_session: bool) -> None:
        super().__init__(message)
        self.ends_session = ends_session


class ClosedRecordError(LifecycleError):
    """The record is closed and signed: it accepts nothing but a signed reopening."""


def content_hash(row: ExcursionRow) -> str:
    """Return the SHA-256 of what a signature covers: the record and its QA content."""
    content = {
        "id": row.id,
        "record": row.record,
        "qa_state": row.qa_state,
        **{name: getattr(row, name) for name in QA_FIELDS},
    }
    return canonical_hash(content)


@dataclass(frozen=True, slots=True)
class Signature:
    """An electronic signature: who signed which record, with what meaning, when, over what."""

    record_id: str
    action: str  #: ``close`` or ``reopen``
    signer: str
    printed_name: str
    meaning: str
    signed_at: datetime
    content_hash: str  #: SHA-256 of the record's content as signed (``content_hash``)

    @classmethod
    def of_row(cls, row: SignatureRow) -> Signature:
        """Return the signature a stored row holds."""
        return cls(
            row.record_id,
            row.action,
            row.signer,
            row.printed_name,
            row.meaning,
            row.signed_at,
            row.content_hash,
        )

    def row(self, audit_seq: int) -> SignatureRow:
        """Return the row that stores this signature, vouched for by audit entry ``audit_seq``."""
        return SignatureRow(
            record_id=self.record_id,
            action=self.action,
            signer=self.signer,
            printed_name=self.printed_name,
            meaning=self.meaning,
            signed_at=self.signed_at,
            content_hash=self.content_hash,
            audit_seq=audit_seq,
        )


@dataclass(frozen=True, slots=True)
class Signed:
    """A signature as shown with the record: whether it still covers it and matches the trail."""

    signature: Signature
    covers_current_content: bool
    matches_audit_trail: bool = True


def signature_manifest(signer: User, meaning: str, signed_hash: str) -> dict[str, str]:
    """Return what the audit entry of a signed move records of its signature."""
    return {
        "signer": signer.username,
        "printed_name": signer.full_name,
        "meaning": meaning,
        "content_hash": signed_hash,
    }


def expected_signature(entry: AuditEntry) -> dict[str, Any] | None:
    """Return the signature row an audit entry of a signed move vouches for (None: not one).

    The entry's own time, actor, action and record are the signature's; its value holds
    the rest. Entries written before revision 0006 hold only "printed name, meaning" (their
    content hash is vouched for by a ``baseline`` entry, see ``excursions.integrity``).
    """
    if entry.field != SIGNATURE_FIELD or entry.action not in SIGNED_ACTIONS:
        return None
    value = orjson.loads(entry.new_value) if entry.new_value is not None else None
    expected: dict[str, Any] = {
        "record_id": entry.record_id,
        "action": entry.action,
        "signer": entry.actor,
        "signed_at": entry.at,
    }
    if isinstance(value, dict):
        return {**expected, **value}
    if isinstance(value, str):
        printed_name, _, meaning = value.rpartition(", ")
        return {**expected, "printed_name": printed_name, "meaning": meaning}
    return None


def signature_mismatches(row: SignatureRow, expected: Mapping[str, Any]) -> list[str]:
    """Return the fields of a signature row that differ from what its audit entry says."""
    return [name for name, value in expected.items() if getattr(row, name, None) != value]


def signatures_of(session: Session, row: ExcursionRow) -> list[Signed]:
    """Return a loaded record's signatures, oldest first, each saying if it still covers it.

    A signature that no longer matches its audit entry covers nothing.
    """
    current = content_hash(row)
    found = (
        session.execute(
            select(SignatureRow).where(SignatureRow.record_id == row.id).order_by(SignatureRow.id)
        )
        .scalars()
        .all()
    )
    entries = {
        e.seq: e
        for e in session.execute(
            select(AuditEntry).where(AuditEntry.seq.in_([s.audit_seq for s in found]))
        ).scalars()
    }

    def intact(signature: SignatureRow) -> bool:
        entry = entries.get(signature.audit_seq)
        expected = expected_signature(entry) if entry is not None else None
        return expected is not None and not signature_mismatches(signature, expected)

    signed = []
    for s in found:
        matches = intact(s)
        signed.append(Signed(Signature.of_row(s), s.content_hash == current and matches, matches))
    return signed


Check = Callable[[ExcursionRow], None]


class Lifecycle:
    """QA actions on ``excursion_records`` under ``excursions.policy.RULES``."""

    def __init__(
        self, engine: Engine, users: UserStore, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine = engine
        self.users = users
        self.clock = clock
        self.trail = AuditTrail(clock)

    # -- actions ------------------------------------------------------------------------

    def acknowledge(self, record_id: str, user: User, comment: str, *, version: int) -> int:
        """Acknowledge an open record with a comment; return the new row version."""
        comment = self._comment(comment)
        return self._move(record_id, user, Permission.ACKNOWLEDGE, comment, version)

    def comment(self, record_id: str, user: User, text: str, *, version: int) -> int:
        """Add a comment (no state change); return the new row version."""
        text = self._comment(text)
        self._allow(user, Permission.COMMENT)
        with Session(self.engine) as session, session.begin():
            row = self._row(session, record_id, version)
            self._touch(row)
            self._audit(session, user, "comment", row, [Change("comment", None, text)], text)
            return row.row_version

    def start_review(self, record_id: str, user: User, reason: str, *, version: int) -> int:
        """Start the review of an acknowledged or reopened record."""
        return self._move(record_id, user, Permission.START_REVIEW, reason, version)

    def assess(
        self, record_id: str, user: User, fields: Mapping[str, str], reason: str, *, version: int
    ) -> int:
        """Set assessment fields under review; one audit entry per changed field."""
        self._allow(user, Permission.ASSESS)
        reason = self._reason(reason)
        for name, value in fields.items():
            longest = QA_FIELDS.get(name)
            if longest is None:
                raise LifecycleError(f"{name}: not a QA field ({', '.join(QA_FIELDS)})")
            if len(value) > longest:
                raise LifecycleError(f"{name}: at most {longest} characters ({len(value)} given)")
            if name == "root_cause_category" and value and value not in ROOT_CAUSES:
                raise LifecycleError(f"root_cause_category: one of {', '.join(ROOT_CAUSES)}")
        with Session(self.engine) as session, session.begin():
            row = self._row(session, record_id, version)
            if row.qa_state not in RULES[Permission.ASSESS].states:
                raise LifecycleError(f"{record_id}: assessed only under review ({row.qa_state})")
            changes = []
            for name, value in fields.items():
                old = getattr(row, name)
                if old != value:
                    setattr(row, name, value)
                    changes.append(Change(name, old, value))
            if not changes:
                raise LifecycleError(f"{record_id}: nothing changed")
            self._touch(row)
            self._audit(session, user, "assess", row, changes, reason)
            return row.row_version

    def close(
        self,
        record_id: str,
        *,
        signer: str,
        password: str,
        meaning: str,
        reason: str,
        version: int,
        client: str = LOCAL_CLIENT,
    ) -> int:
        """Sign and close a reviewed record whose excursion has ended."""

        def closable(row: ExcursionRow) -> None:
            if row.qa_state not in RULES[Permission.CLOSE].states:
                raise LifecycleError(f"{record_id}: closed only from under review ({row.qa_state})")
            if row.core_status != "closed":
                raise LifecycleError(f"{record_id}: the excursion has not ended yet")
            missing = [name for name in REQUIRED_TO_CLOSE if not getattr(row, name).strip()]
            if missing:
                raise LifecycleError(f"{record_id}: fill in {', '.join(missing)} before closing")

        signer_user = self._sign_in(signer, password, meaning, client, f"; close {record_id}")
        return self._signed(
            record_id, signer_user, meaning, reason, version, Permission.CLOSE, closable
        )

    def reopen(
        self,
        record_id: str,
        *,
        signer: str,
        password: str,
        meaning: str,
        reason: str,
        version: int,
        client: str = LOCAL_CLIENT,
    ) -> int:
        """Sign and reopen a closed record, with a reason."""

        def reopenable(row: ExcursionRow) -> None:
            if row.qa_state not in RULES[Permission.REOPEN].states:
                raise LifecycleError(f"{record_id}: only a closed record is reopened")

        signer_user = self._sign_in(signer, password, meaning, client, f"; reopen {record_id}")
        return self._signed(
            record_id, signer_user, meaning, reason, version, Permission.REOPEN, reopenable
        )

    def signatures(self, record_id: str) -> list[Signed]:
        """Return the record's signatures, oldest first, each saying if it still covers it."""
        with Session(self.engine) as session:
            row = session.get(ExcursionRow, record_id)
            if row is None:
                raise LifecycleError(f"no record {record_id!r}")
            return signatures_of(session, row)

    # -- helpers ------------------------------------------------------------------------

    def _move(
        self, record_id: str, user: User, action: Permission, reason: str, version: int
    ) -> int:
        rule = RULES[action]
        assert rule.target is not None, action
        self._allow(user, action)
        reason = self._reason(reason)
        with Session(self.engine) as session, session.begin():
            row = self._row(session, record_id, version)
            if row.qa_state not in rule.states:
                raise LifecycleError(
                    f"{record_id}: cannot go from {row.qa_state} to {rule.target}"
                    f" (only from {' or '.join(rule.states)})"
                )
            changes = [Change("qa_state", row.qa_state, rule.target.value)]
            row.qa_state = rule.target.value
            self._touch(row)
            self._audit(session, user, action.value, row, changes, reason)
            return row.row_version

    def _signed(
        self,
        record_id: str,
        signer: User,
        meaning: str,
        reason: str,
        version: int,
        action: Permission,
        check: Check,
    ) -> int:
        """Check the signer's role and the record, move it and store the signature."""
        target = RULES[action].target
        assert target is not None, action
        self._allow(signer, action)
        reason = self._reason(reason)
        with Session(self.engine) as session, session.begin():
            row = self._row(session, record_id, version, reopening=action == Permission.REOPEN)
            check(row)
            changes = [Change("qa_state", row.qa_state, target.value)]
            row.qa_state = target.value
            self._touch(row)
            signed_hash = content_hash(row)
            manifest = signature_manifest(signer, meaning, signed_hash)
            entries = self._audit(
                session,
                signer,
                action.value,
                row,
                [*changes, Change(SIGNATURE_FIELD, None, manifest)],
                reason,
            )
            signature = Signature(
                row.id,
                action.value,
                signer.username,
                signer.full_name,
                meaning,
                entries[-1].at,
                signed_hash,
            )
            session.add(signature.row(entries[-1].seq))
            return row.row_version

    def _sign_in(self, username: str, password: str, meaning: str, client: str, about: str) -> User:
        """Authenticate the signer like a sign-in (throttled, failures audited)."""
        if meaning not in MEANINGS:
            raise LifecycleError(f"meaning: one of {', '.join(MEANINGS)}")
        try:
            return self.users.authenticate(
                username, password, client=client, purpose="signature", about=about
            )
        except ThrottledError as exc:
            raise SigningBlockedError(
                f"signature refused: {exc}", ends_session=exc.account_blocked
            ) from None
        except AuthenticationError as exc:
            if exc.account_blocked:
                raise SigningBlockedError(
                    f"signature refused: {MAX_FAILED} wrong passwords in a row; signing is"
                    " blocked for a while and you have been signed out",
                    ends_session=True,
                ) from None
            raise LifecycleError("signature refused: wrong user id or password") from None

    @staticmethod
    def _allow(user: User, action: Permission) -> None:
        if user.role not in RULES[action].roles:
            raise NotAllowedError(f"{user.username} ({user.role}) may not {action}")

    @staticmethod
    def _reason(reason: str) -> str:
        reason = reason.strip()
        if not reason:
            raise LifecycleError("a reason is required")
        if len(reason) > MAX_COMMENT:
            raise LifecycleError(f"reason: at most {MAX_COMMENT} characters ({len(reason)} given)")
        return reason

    @staticmethod
    def _comment(text: str) -> str:
        text = text.strip()
        if not text:
            raise LifecycleError("a comment is required")
        if len(text) > MAX_COMMENT:
            raise LifecycleError(f"comment: at most {MAX_COMMENT} characters ({len(text)} given)")
        return text

    @staticmethod
    def _row(
        session: Session, record_id: str, version: int, *, reopening: bool = False
    ) -> ExcursionRow:
        row = session.get(ExcursionRow, record_id, with_for_update=True)
        if row is None:
            raise LifecycleError(f"no record {record_id!r}")
        if row.qa_state == QAState.CLOSED and not reopening:
            # Checked here, for every action, so that nothing reaches a signed record by a
            # route that forgot it: the signature covers what it signed, and nothing more.
            raise ClosedRecordError(
                f"{record_id} is closed and signed: it accepts no comments or changes;"
                " reopen it (signed, with a reason) to add any"
            )
        if row.row_version != version:
            raise StaleRecordError(
                f"{record_id} changed since the page was loaded (version {version}, now "
                f"{row.row_version}): reload it and try again"
            )
        return row

    def _touch(self, row: ExcursionRow) -> None:
        row.row_version += 1
        row.updated_at = self.clock()

    def _audit(
        self,
        session: Session,
        user: User,
        action: str,
        row: ExcursionRow,
        changes: list[Change],
        reason: str,
    ) -> list[AuditEntry]:
        return self.trail.append(
            session,
            actor=user.username,
            action=action,
            record_type=row.kind,
            record_id=row.id,
            changes=changes,
            reason=reason,
        )
