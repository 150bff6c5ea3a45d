"""The QA policy: record states, roles, signature meanings, and who may do what in which state.

``RULES`` is the one table every layer reads (the lifecycle, the API's role checks, the
pages' forms and navigation, the incidents and status pages, the user store). The enums
are ``StrEnum``: their values are the strings stored in the database and sent as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class QAState(StrEnum):
    """Where a record stands in its QA lifecycle (``excursion_records.qa_state``)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    UNDER_REVIEW = "under_review"
    CLOSED = "closed"
    REOPENED = "reopened"


class Role(StrEnum):
    """A user's role (``users.role``)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    QA = "qa"
    ADMIN = "admin"


class Meaning(StrEnum):
    """What an electronic signature means."""

    REVIEWED = "reviewed"
    APPROVED = "approved"


class Permission(StrEnum):
    """Something a person may do: a record action (its audit name) or a kind of access."""

    ACKNOWLEDGE = "acknowledge"
    START_REVIEW = "start_review"
    ASSESS = "assess"
    CLOSE = "close"
    REOPEN = "reopen"
    COMMENT = "comment"
    READ_RECORDS = "read_records"  #: records, their trend and report, the audit trail
    READ_INCIDENTS = "read_incidents"
    ACT_ON_INCIDENTS = "act_on_incidents"  #: acknowledge or shelve an incident
    READ_STATUS = "read_status"  #: the live status page
    MANAGE_USERS = "manage_users"


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may do something; for a record action, from which states and to which one.

    ``states`` empty: not a record action. ``target`` None: the state does not change.
    ``signed``: the action needs an electronic signature.
    """

    roles: frozenset[Role]
    states: tuple[QAState, ...] = ()
    target: QAState | None = None
    signed: bool = False


_READERS: Final = frozenset({Role.VIEWER, Role.OPERATOR, Role.QA})
_ACTORS: Final = frozenset({Role.OPERATOR, Role.QA})
_QA: Final = frozenset({Role.QA})

#: Who may do what (record actions in the order their forms are offered).
RULES: Final[Mapping[Permission, Rule]] = {
    Permission.ACKNOWLEDGE: Rule(_ACTORS, (QAState.OPEN,), QAState.ACKNOWLEDGED),
    Permission.START_REVIEW: Rule(
        _QA, (QAState.ACKNOWLEDGED, QAState.REOPENED), QAState.UNDER_REVIEW
    ),
    Permission.ASSESS: Rule(_QA, (QAState.UNDER_REVIEW,)),
    Permission.CLOSE: Rule(_QA, (QAState.UNDER_REVIEW,), QAState.CLOSED, signed=True),
    Permission.REOPEN: Rule(_QA, (QAState.CLOSED,), QAState.REOPENED, signed=True),
    Permission.COMMENT: Rule(
        _ACTORS,
        (QAState.OPEN, QAState.ACKNOWLEDGED, QAState.UNDER_REVIEW, QAState.REOPENED),
    ),
    Permission.READ_RECORDS: Rule(_READERS),
    Permission.READ_INCIDENTS: Rule(_READERS),
    Permission.ACT_ON_INCIDENTS: Rule(_ACTORS),
    Permission.READ_STATUS: Rule(frozenset(Role)),
    Permission.MANAGE_USERS: Rule(frozenset({Role.ADMIN})),
}
#: The actions on a record, in the order their forms are offered.
RECORD_ACTIONS: Final = tuple(p for p, rule in RULES.items() if rule.states)
#: The actions that are signed.
SIGNED_ACTIONS: Final = tuple(p for p in RECORD_ACTIONS if RULES[p].signed)
#: The role names people read.
ROLE_NAMES: Final[Mapping[Role, str]] = {
    Role.VIEWER: "Viewer",
    Role.OPERATOR: "Operator",
    Role.QA: "QA",
    Role.ADMIN: "Administrator",
}


def may(role: str, permission: Permission) -> bool:
    """Tell whether ``role`` (a stored role name) has ``permission``."""
    return role in RULES[permission].roles


def roles_with(permission: Permission) -> tuple[Role, ...]:
    """Return the roles that have ``permission``, in the order of ``Role``."""
    return tuple(role for role in Role if role in RULES[permission].roles)


def offered(state: str, role: str) -> tuple[Permission, ...]:
    """Return the record actions ``role`` may take on a record in ``state``."""
    return tuple(
        action
        for action in RECORD_ACTIONS
        if state in RULES[action].states and role in RULES[action].roles
    )


#: What the pages' templates ask of the policy: ``may(user.role, Permission.…)``, role names.
TEMPLATE_GLOBALS: Final[Mapping[str, object]] = {
    "may": may,
    "Permission": Permission,
    "role_names": ROLE_NAMES,
}
