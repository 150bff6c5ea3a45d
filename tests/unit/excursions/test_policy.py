"""The QA policy table: the forms each role is offered on a record in each state."""

from __future__ import annotations

import pytest

from excursions.policy import RULES, Permission, QAState, Role, may, offered, roles_with

#: (state, role) → the record page's forms, in order (every other pair: none).
OFFERED = {
    ("open", "operator"): ("acknowledge", "comment"),
    ("open", "qa"): ("acknowledge", "comment"),
    ("acknowledged", "operator"): ("comment",),
    ("acknowledged", "qa"): ("start_review", "comment"),
    ("under_review", "operator"): ("comment",),
    ("under_review", "qa"): ("assess", "close", "comment"),
    ("closed", "qa"): ("reopen",),
    ("reopened", "operator"): ("comment",),
    ("reopened", "qa"): ("start_review", "comment"),
}


@pytest.mark.parametrize("state", list(QAState))
@pytest.mark.parametrize("role", list(Role))
def test_the_forms_offered(state: QAState, role: Role) -> None:
    assert offered(state, role) == OFFERED.get((state.value, role.value), ())


def test_the_values_are_the_stored_strings() -> None:
    assert [s.value for s in QAState] == [
        "open",
        "acknowledged",
        "under_review",
        "closed",
        "reopened",
    ]
    assert [r.value for r in Role] == ["viewer", "operator", "qa", "admin"]


def test_who_reads_and_who_manages_users() -> None:
    assert roles_with(Permission.READ_RECORDS) == (Role.VIEWER, Role.OPERATOR, Role.QA)
    assert roles_with(Permission.MANAGE_USERS) == (Role.ADMIN,)
    assert roles_with(Permission.ACT_ON_INCIDENTS) == (Role.OPERATOR, Role.QA)
    assert roles_with(Permission.READ_STATUS) == tuple(Role)
    assert not may("auditor", Permission.READ_STATUS)  # a role this version does not know


def test_signed_moves_have_a_target_state() -> None:
    signed = [p for p, rule in RULES.items() if rule.signed]
    assert signed == [Permission.CLOSE, Permission.REOPEN]
    assert [RULES[p].target for p in signed] == [QAState.CLOSED, QAState.REOPENED]
