"""Who may do what: every API route and record page, each role, the exact status it gets.

Each case puts the record in the state its action needs and sends a valid body, so an
allowed role gets the action's own success status and a refused one 403 (401 or the
sign-in page without a session).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.lifecycle import Lifecycle
from excursions.users import User
from excursions.web.api import COOKIE
from excursions.web.app import create_app
from excursions.web.security import csrf_token
from stream.timeseries.sqlite import SqliteTimeSeries

from .conftest import app_services, stored_excursion
from .lifecycle_cases import ASSESSMENT, sign, version

PASSWORD = "a long password 1"
ROLES = ("viewer", "operator", "qa", "admin")
#: Who a case signs in as: no session, or one user of each role.
PEOPLE = (None, *ROLES)
SIGNATURE = {"password": PASSWORD, "meaning": "approved", "reason": "r"}


@dataclass(frozen=True)
class Rig:
    """The app on a store with one excursion and a user ``<role>1`` of each role."""

    client: TestClient
    engine: Engine
    life: Lifecycle
    users: dict[str, User]
    record_id: str

    def version(self) -> int:
        return version(self.engine, self.record_id)


def _acknowledged(rig: Rig) -> None:
    rig.life.acknowledge(rig.record_id, rig.users["operator"], "seen", version=rig.version())


def _under_review(rig: Rig) -> None:
    _acknowledged(rig)
    qa = rig.users["qa"]
    v = rig.life.start_review(rig.record_id, qa, "review", version=rig.version())
    rig.life.assess(rig.record_id, qa, ASSESSMENT, "assessed", version=v)


def _closed(rig: Rig) -> None:
    _under_review(rig)
    v = rig.version()
    sign(rig.life.close, rig.record_id, version=v, reason="closed", signer="qa1", password=PASSWORD)


#: The record's QA state each case is sent in: how to get there from ``open``.
STATES: dict[str, Callable[[Rig], None]] = {
    "open": lambda _rig: None,
    "acknowledged": _acknowledged,
    "under_review": _under_review,
    "closed": _closed,
}
Body = Callable[[int, str], dict[str, Any]]  # (row version, signed-in user id) → body


@dataclass(frozen=True)
class Case:
    """One route: the state it is sent in, its body and the status each person gets."""

    method: str
    path: str  #: ``{id}``: the record; ``{username}``: the user ``viewer1``
    statuses: tuple[int, int, int, int, int]  #: no session, viewer, operator, qa, admin
    state: str = "open"
    body: Body | None = None

    @property
    def page(self) -> bool:
        return not self.path.startswith("/api/")


def _signed(v: int, username: str) -> dict[str, Any]:
    return {**SIGNATURE, "username": username, "version": v}


def _json(**fields: Any) -> Body:
    """An API body: the fields and the row version."""
    return lambda v, _u: {**fields, "version": v}


def _form(**fields: Any) -> Body:
    """A page's form: the fields and the row version (as the form sends it, text)."""
    return lambda v, _u: {**fields, "version": str(v)}


_READ = (401, 200, 200, 200, 403)
_READ_PAGE = (303, 200, 200, 200, 403)
_ACT = (401, 403, 200, 200, 403)
_ACT_PAGE = (303, 403, 303, 303, 403)
_QA = (401, 403, 403, 200, 403)
_QA_PAGE = (303, 403, 403, 303, 403)
_ADMIN = (401, 403, 403, 403, 200)

CASES = (
    Case("GET", "/api/v1/excursions", _READ),
    Case("GET", "/api/v1/excursions/{id}", _READ),
    Case("GET", "/api/v1/excursions/{id}/trend", _READ),
    Case("POST", "/api/v1/excursions/{id}/acknowledge", _ACT, body=_json(comment="seen")),
    Case("POST", "/api/v1/excursions/{id}/comments", _ACT, body=_json(comment="note")),
    Case("POST", "/api/v1/excursions/{id}/review", _QA, "acknowledged", _json(reason="r")),
    Case(
        "PATCH",
        "/api/v1/excursions/{id}/assessment",
        _QA,
        "under_review",
        _json(fields={"impact_text": "changed"}, reason="r"),
    ),
    Case("POST", "/api/v1/excursions/{id}/close", _QA, "under_review", _signed),
    Case("POST", "/api/v1/excursions/{id}/reopen", _QA, "closed", _signed),
    Case("GET", "/api/v1/me", (401, 200, 200, 200, 200)),
    Case("GET", "/api/v1/users", _ADMIN),
    Case(
        "POST",
        "/api/v1/users",
        (401, 403, 403, 403, 201),
        body=lambda _v, _u: {
            "username": "newbie",
            "full_name": "New Person",
            "role": "viewer",
            "password": PASSWORD,
            "reason": "new starter",
        },
    ),
    Case(
        "PATCH",
        "/api/v1/users/{username}",
        _ADMIN,
        body=lambda _v, _u: {"role": "operator", "reason": "promoted"},
    ),
    Case("GET", "/excursions", _READ_PAGE),
    Case("GET", "/excursions/{id}", _READ_PAGE),
    Case("GET", "/excursions/{id}/report.pdf", _READ_PAGE),
    Case("POST", "/excursions/{id}/acknowledge", _ACT_PAGE, body=_form(text="seen")),
    Case("POST", "/excursions/{id}/comment", _ACT_PAGE, body=_form(text="note")),
    Case("POST", "/excursions/{id}/start_review", _QA_PAGE, "acknowledged", _form(reason="r")),
    Case(
        "POST",
        "/excursions/{id}/assess",
        _QA_PAGE,
        "under_review",
        _form(impact_text="changed", reason="r"),
    ),
    Case(
        "POST",
        "/excursions/{id}/close",
        _QA_PAGE,
        "under_review",
        lambda v, u: {**_signed(v, u), "version": str(v)},
    ),
    Case(
        "POST",
        "/excursions/{id}/reopen",
        _QA_PAGE,
        "closed",
        lambda v, u: {**_signed(v, u), "version": str(v)},
    ),
)


@pytest.fixture
def rig(engine: Engine, series: SqliteTimeSeries) -> Rig:
    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    people = {
        role: users.add(f"{role}1", f"{role.title()} Person", role, PASSWORD, actor="a", reason="t")
        for role in ROLES
    }
    services = app_services(engine, users, clock, series=series)
    client = TestClient(create_app(services))
    return Rig(client, engine, services.lifecycle, people, record_id)


def sign_in(client: TestClient, role: str | None) -> str:
    """Sign in as the user of ``role`` (None: no session); return the CSRF token."""
    client.cookies.clear()
    if role is None:
        return ""
    response = client.post("/api/v1/session", json={"username": f"{role}1", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return csrf_token(client.cookies[COOKIE])


def test_every_route_is_in_the_table(rig: Rig) -> None:
    """The table covers every API route and every record page (one route serves actions)."""
    schema = rig.client.get("/api/v1/openapi.json").json()
    api = {
        (method.upper(), path.replace("{record_id}", "{id}"))
        for path, item in schema["paths"].items()
        for method in item
    }
    api -= {("POST", "/api/v1/session"), ("DELETE", "/api/v1/session")}
    routes = {
        (method, route.path.replace("{record_id}", "{id}"))
        for route in rig.client.app.routes  # type: ignore[attr-defined]
        if getattr(route, "include_in_schema", True) is False
        for method in route.methods
        if method != "HEAD"
    }
    pages = {(m, p) for m, p in routes if p.startswith("/excursions")}
    cases = {(c.method, c.path) for c in CASES}
    assert api == {key for key in cases if key[1].startswith("/api/")}
    actions = {(c.method, c.path) for c in CASES if c.page and c.method == "POST"}
    assert (
        pages - {("POST", "/excursions/{id}/{action}")}
        == {(c.method, c.path) for c in CASES if c.page} - actions
    )
    assert ("POST", "/excursions/{id}/{action}") in pages


@pytest.mark.parametrize("person", PEOPLE)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_role_matrix(rig: Rig, case: Case, person: str | None) -> None:
    STATES[case.state](rig)
    token = sign_in(rig.client, person)
    url = case.path.replace("{id}", rig.record_id).replace("{username}", "viewer1")
    body = case.body(rig.version(), f"{person}1") if case.body is not None else None
    if case.page:
        form = None if body is None else {**body, "csrf_token": token}
        response = rig.client.request(case.method, url, data=form, follow_redirects=False)
    else:
        headers = {"X-CSRF-Token": token} if token else {}
        response = rig.client.request(case.method, url, json=body, headers=headers)
    assert response.status_code == case.statuses[PEOPLE.index(person)], response.text[:500]
    if case.page and response.status_code == 303:
        expected = "/login" if person is None else f"/excursions/{quote(rig.record_id)}?done="
        assert response.headers["location"].startswith(expected)
