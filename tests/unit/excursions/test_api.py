"""The JSON API: every route with every role and with no session; the flows end to end."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from envmon.errors import EnvmonError
from envmon.models import Reading
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import AuditTrail, Change
from excursions.lifecycle import QA_FIELDS
from excursions.users import MAX_FAILED, UserStore
from excursions.web.api import create_api
from stream.timeseries.sqlite import SqliteTimeSeries

from .conftest import FAST_HASHER, app_services, stored_excursion
from .lifecycle_cases import ASSESSMENT

ROLES = ("viewer", "operator", "qa", "admin")
PASSWORD = "a long password 1"


@pytest.fixture
def api(engine: Engine, series: SqliteTimeSeries) -> tuple[TestClient, str]:
    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    for role in ROLES:
        users.add(f"{role}1", f"{role.title()} Person", role, PASSWORD, actor="admin", reason="t")
    services = app_services(engine, users, clock, series=series)
    return TestClient(create_api(services)), record_id


def signed_in(client: TestClient, role: str | None) -> TestClient:
    """Sign ``client`` in as ``role`` (None: signed out), with the session's CSRF header."""
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    if role is not None:
        response = client.post(
            "/api/v1/session", json={"username": f"{role}1", "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


def version(client: TestClient, record_id: str) -> int:
    return int(client.get(f"/api/v1/excursions/{record_id}").json()["row_version"])


def test_the_qa_flow_through_the_api(api: tuple[TestClient, str]) -> None:
    client, record_id = api
    signed_in(client, "operator")
    v = version(client, record_id)
    r = client.post(
        f"/api/v1/excursions/{record_id}/acknowledge", json={"comment": "door closed", "version": v}
    )
    assert r.status_code == 200, r.text
    signed_in(client, "qa")
    v = r.json()["version"]
    v = client.post(
        f"/api/v1/excursions/{record_id}/review", json={"reason": "review", "version": v}
    ).json()["version"]
    r = client.patch(
        f"/api/v1/excursions/{record_id}/assessment",
        json={"fields": ASSESSMENT, "reason": "assessment", "version": v},
    )
    assert r.status_code == 200, r.text
    stale = client.post(
        f"/api/v1/excursions/{record_id}/review", json={"reason": "again", "version": v}
    )
    assert stale.status_code == 409
    assert "changed since the page was loaded" in stale.json()["detail"]
    wrong = client.post(
        f"/api/v1/excursions/{record_id}/close",
        json={
            "username": "qa1",
            "password": "wrong",
            "meaning": "approved",
            "reason": "ok",
            "version": r.json()["version"],
        },
    )
    assert wrong.status_code == 422
    assert "wrong user id or password" in wrong.json()["detail"]
    someone_else = client.post(
        f"/api/v1/excursions/{record_id}/close",
        json={
            "username": "operator1",
            "password": PASSWORD,
            "meaning": "approved",
            "reason": "ok",
            "version": r.json()["version"],
        },
    )
    assert someone_else.status_code == 403
    closed = client.post(
        f"/api/v1/excursions/{record_id}/close",
        json={
            "username": "qa1",
            "password": PASSWORD,
            "meaning": "approved",
            "reason": "no impact",
            "version": r.json()["version"],
        },
    )
    assert closed.status_code == 200, closed.text
    detail = client.get(f"/api/v1/excursions/{record_id}").json()
    assert detail["qa_state"] == "closed"
    (signature,) = detail["signatures"]
    assert signature["printed_name"] == "Qa Person"
    assert signature["meaning"] == "approved"
    assert signature["covers_current_content"] is True
    assert signature["site_timezone"] == "Europe/Berlin"
    assert signature["signed_at_site"].endswith("+01:00")  # January: CET
    assert [e["action"] for e in detail["audit"]][-2:] == ["close", "close"]
    # The JSON's shape: every key, in order (the read models keep it).
    summary = [
        "id",
        "kind",
        "sensor_id",
        "area",
        "instrument",
        "parameter",
        "level",
        "start",
        "end",
        "core_status",
        "qa_state",
        "peak",
        "unit",
    ]
    detail_keys = [*summary, "record", "row_version", "qa", "audit", "signatures", "timeline"]
    assert list(detail) == detail_keys
    assert list(detail["qa"]) == list(QA_FIELDS)
    assert list(signature) == [
        "signer",
        "printed_name",
        "meaning",
        "action",
        "signed_at",
        "signed_at_site",
        "site_timezone",
        "covers_current_content",
        "matches_audit_trail",
    ]
    audit_keys = ["seq", "at", "actor", "action", "field", "old", "new", "reason"]
    assert all(list(e) == audit_keys for e in detail["audit"])
    timeline_keys = ["at", "kind", "title", "who", "detail", "at_site"]
    assert detail["timeline"]
    assert all(list(e) == timeline_keys for e in detail["timeline"])
    listing = client.get("/api/v1/excursions").json()
    assert list(listing) == ["total", "page", "page_size", "items"]
    assert all(list(item) == summary for item in listing["items"])


def test_list_filters_and_pagination(api: tuple[TestClient, str]) -> None:
    client, _ = api
    signed_in(client, "viewer")
    everything = client.get("/api/v1/excursions").json()
    assert everything["total"] == len(everything["items"]) >= 2
    starts = [item["start"] for item in everything["items"]]
    assert starts == sorted(starts, reverse=True)
    page = client.get("/api/v1/excursions", params={"page_size": 1, "page": 2}).json()
    assert page["items"] == everything["items"][1:2]
    gaps = client.get("/api/v1/excursions", params={"state": "open", "level": "action"}).json()
    assert all(i["level"] == "action" for i in gaps["items"])
    naive = client.get("/api/v1/excursions", params={"start_from": "2026-01-05T07:00"})
    assert naive.status_code == 422
    assert "UTC offset" in naive.json()["detail"]


def test_forged_record_id_and_over_long_comment(api: tuple[TestClient, str]) -> None:
    client, record_id = api
    signed_in(client, "operator")
    assert client.get("/api/v1/excursions/forged-123").status_code == 404
    r = client.post("/api/v1/excursions/forged-123/comments", json={"comment": "x", "version": 1})
    assert r.status_code == 404
    v = version(client, record_id)
    long = client.post(
        f"/api/v1/excursions/{record_id}/comments", json={"comment": "x" * 5000, "version": v}
    )
    assert long.status_code == 422
    assert "at most 4000 characters" in long.json()["detail"]
    assert version(client, record_id) == v


def test_sign_out_ends_the_session(api: tuple[TestClient, str]) -> None:
    client, _ = api
    signed_in(client, "viewer")
    assert client.get("/api/v1/me").status_code == 200
    assert client.delete("/api/v1/session").status_code == 204
    assert client.get("/api/v1/me").status_code == 401


def test_admin_manages_users_and_the_changes_are_audited(
    api: tuple[TestClient, str], engine: Engine
) -> None:
    client, _ = api
    signed_in(client, "admin")
    new = {
        "username": "dora",
        "full_name": "Dora QA",
        "role": "qa",
        "password": PASSWORD,
        "reason": "new reviewer",
    }
    assert client.post("/api/v1/users", json=new).status_code == 201
    taken = client.post("/api/v1/users", json=new)
    assert taken.status_code == 422
    assert "taken" in taken.json()["detail"]
    r = client.patch("/api/v1/users/dora", json={"disabled": True, "reason": "left"})
    assert r.status_code == 200, r.text
    assert (
        client.patch("/api/v1/users/ghost", json={"disabled": True, "reason": "x"}).status_code
        == 404
    )
    listed = {u["username"]: u for u in client.get("/api/v1/users").json()}
    assert listed["dora"]["disabled"] is True
    assert "password_hash" not in listed["dora"]
    signed_in(client, None)
    refused = client.post("/api/v1/session", json={"username": "dora", "password": PASSWORD})
    assert refused.status_code == 401
    with engine.connect() as connection:
        actors = connection.exec_driver_sql(
            "SELECT actor, action, reason FROM audit_entries WHERE record_id = 'dora' ORDER BY seq"
        ).all()
    assert ("admin1", "set_disabled", "left") in actors
    assert actors[-1] == ("system:login", "sign_in_failed", "account disabled")
    assert all(actor == "admin1" for actor, _, _ in actors[:-1])


def test_the_trend_of_a_record(api: tuple[TestClient, str]) -> None:
    client, record_id = api
    signed_in(client, "viewer")
    trend = client.get(f"/api/v1/excursions/{record_id}/trend")
    assert trend.status_code == 200, trend.text
    body = trend.json()
    detail = client.get(f"/api/v1/excursions/{record_id}").json()
    assert body["sensor_id"] == detail["sensor_id"]
    assert body["limits"]["action_high"] == 10
    # The app's clock (DEFAULT_T0) is before the end here: the window stops at the end.
    assert body["from"] < detail["record"]["start"] < detail["record"]["end"] <= body["to"]
    values = [r["value"] for r in body["readings"]]
    assert max(values) == 12  # the peak is in the window
    assert values[0] == 5  # and the normal readings before the start
    assert client.get("/api/v1/excursions/forged/trend").status_code == 404


class TimeSeriesQueryError(EnvmonError):
    """What a time-series adapter raises when its store does not answer."""


class _Down:
    """A time-series store that does not answer."""

    def query(self, sensor_id: str, start: datetime, end: datetime) -> list[Reading]:
        raise TimeSeriesQueryError(f"http://127.0.0.1:9/: connection refused ({sensor_id})")


def test_a_store_that_does_not_answer_gives_503_not_an_error(
    api: tuple[TestClient, str], engine: Engine
) -> None:
    _client, record_id = api
    clock = FakeClock(DEFAULT_T0)
    users = UserStore(engine, clock=clock, hasher=FAST_HASHER)
    for series in (_Down(), None):
        services = app_services(engine, users, clock, series=series)
        down = signed_in(TestClient(create_api(services)), "viewer")
        response = down.get(f"/api/v1/excursions/{record_id}/trend")
        assert response.status_code == 503
        assert ("did not answer" if series else "no time-series store") in response.text


def closed(client: TestClient, record_id: str) -> int:
    """Take the record through the QA flow to closed (as operator1 and qa1); return the version."""
    signed_in(client, "operator")
    v = client.post(
        f"/api/v1/excursions/{record_id}/acknowledge",
        json={"comment": "seen", "version": version(client, record_id)},
    ).json()["version"]
    signed_in(client, "qa")
    v = client.post(
        f"/api/v1/excursions/{record_id}/review", json={"reason": "review", "version": v}
    ).json()["version"]
    v = client.patch(
        f"/api/v1/excursions/{record_id}/assessment",
        json={"fields": ASSESSMENT, "reason": "assessment", "version": v},
    ).json()["version"]
    signature = {"username": "qa1", "password": PASSWORD, "meaning": "approved", "reason": "ok"}
    r = client.post(f"/api/v1/excursions/{record_id}/close", json={**signature, "version": v})
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


def test_a_closed_record_refuses_comments(api: tuple[TestClient, str]) -> None:
    """A comment on a closed, signed record is refused with 409 and a reason; nothing changes."""
    client, record_id = api
    v = closed(client, record_id)
    for role in ("operator", "qa"):
        signed_in(client, role)
        r = client.post(
            f"/api/v1/excursions/{record_id}/comments", json={"comment": "late", "version": v}
        )
        assert r.status_code == 409, r.text
        assert "closed and signed" in r.json()["detail"]
        assert "reopen" in r.json()["detail"]
    detail = client.get(f"/api/v1/excursions/{record_id}").json()
    assert detail["row_version"] == v
    assert "late" not in str(detail["audit"])


def test_a_records_audit_trail_holds_only_its_own_entries(
    api: tuple[TestClient, str], engine: Engine
) -> None:
    """An entry of another record type with the same id (a user named like it) is not shown."""
    client, record_id = api
    with Session(engine) as session, session.begin():
        AuditTrail(FakeClock(DEFAULT_T0)).append(
            session,
            actor="admin1",
            action="set_role",
            record_type="user",
            record_id=record_id,
            changes=[Change("role", "viewer", "qa")],
            reason="a user named like the record",
        )
    signed_in(client, "viewer")
    detail = client.get(f"/api/v1/excursions/{record_id}").json()
    assert detail["audit"], "the record's own entries are shown"
    assert all(e["action"] != "set_role" for e in detail["audit"])
    assert all(e["reason"] != "a user named like the record" for e in detail["audit"])


def test_a_user_change_is_all_or_nothing(api: tuple[TestClient, str], engine: Engine) -> None:
    """A PATCH whose second field is refused changes nothing, not even the valid first one."""
    client, _ = api
    signed_in(client, "admin")
    with engine.connect() as connection:
        before = connection.exec_driver_sql("SELECT count(*) FROM audit_entries").scalar_one()
    r = client.patch(
        "/api/v1/users/viewer1", json={"role": "qa", "password": "short", "reason": "promoted"}
    )
    assert r.status_code == 422, r.text
    assert "at least 12" in r.json()["detail"]
    listed = {u["username"]: u for u in client.get("/api/v1/users").json()}
    assert listed["viewer1"]["role"] == "viewer"
    with engine.connect() as connection:
        after = connection.exec_driver_sql("SELECT count(*) FROM audit_entries").scalar_one()
    assert after == before
    r = client.patch(
        "/api/v1/users/viewer1",
        json={"role": "qa", "password": "another long secret", "reason": "promoted"},
    )
    assert r.status_code == 200, r.text
    with engine.connect() as connection:
        actions = connection.exec_driver_sql(
            "SELECT action, field FROM audit_entries WHERE record_type = 'user'"
            " AND record_id = 'viewer1' ORDER BY seq DESC LIMIT 3"
        ).all()
    assert sorted(actions) == [
        ("reset_password", "password"),
        ("reset_password", "password_fingerprint"),
        ("set_role", "role"),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"role": "qa"}, "your own role"),
        ({"role": "viewer"}, "your own role"),
        ({"disabled": True}, "disable yourself"),
    ],
)
def test_an_admin_cannot_change_its_own_role_or_disable_itself(
    api: tuple[TestClient, str], change: dict[str, object], message: str
) -> None:
    """Segregation of duties: no admin gives itself the qa role (and signs), or locks itself out."""
    client, _ = api
    signed_in(client, "admin")
    r = client.patch("/api/v1/users/admin1", json={**change, "reason": "why not"})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert client.get("/api/v1/me").json()["role"] == "admin"


def test_an_admin_reset_ends_the_users_sessions(api: tuple[TestClient, str]) -> None:
    """A session opened before a password reset by an admin is refused afterwards."""
    client, _ = api
    victim = signed_in(TestClient(client.app), "viewer")
    assert victim.get("/api/v1/me").status_code == 200
    signed_in(client, "admin")
    r = client.patch(
        "/api/v1/users/viewer1", json={"password": "a new long password", "reason": "leaked"}
    )
    assert r.status_code == 200, r.text
    assert victim.get("/api/v1/me").status_code == 401


HOSTILE_JSON = {
    "lone surrogate": b'"\\ud800"',
    "low surrogate": b'"x\\udfff"',
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "1e400": b"1e400",
    "-1e400": b"-1e400",
}


@pytest.mark.parametrize("value", list(HOSTILE_JSON))
@pytest.mark.parametrize("field", ["username", "password", "version"])
def test_hostile_json_is_refused_without_a_500(
    api: tuple[TestClient, str], value: str, field: str
) -> None:
    """A lone surrogate, NaN or an overflowing number anywhere in a body gives 422, never 500."""
    client, record_id = api
    client = TestClient(client.app, raise_server_exceptions=False)
    bodies = {
        "/api/v1/session": {"username": '"viewer1"', "password": f'"{PASSWORD}"'},
        f"/api/v1/excursions/{record_id}/comments": {"comment": '"note"', "version": "1"},
        f"/api/v1/excursions/{record_id}/close": {
            "username": '"qa1"',
            "password": f'"{PASSWORD}"',
            "meaning": '"approved"',
            "reason": '"r"',
            "version": "1",
        },
    }
    for role, (path, fields) in zip(("viewer", "operator", "qa"), bodies.items(), strict=True):
        signed_in(client, role if "session" not in path else None)
        if field not in fields and not (field == "username" and "comment" in path):
            continue
        key = field if field in fields else "comment"
        parts = [
            f'"{k}":{HOSTILE_JSON[value].decode() if k == key else v}' for k, v in fields.items()
        ]
        body = ("{" + ",".join(parts) + "}").encode()
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert "detail" in r.json()


SECRET = "my secret password 123 that must never be echoed"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/session", {"username": "x" * 65, "password": SECRET}),
        ("/api/v1/session", {"username": ["viewer1"], "password": SECRET}),
        ("/api/v1/session", {"username": "viewer1", "password": SECRET * 10}),
        ("/api/v1/excursions/{id}/close", {"username": "qa1", "password": SECRET, "version": "x"}),
        ("/api/v1/excursions/{id}/reopen", {"username": "qa1", "password": SECRET * 10}),
        ("/api/v1/users", {"username": "dora", "role": "qa", "password": SECRET}),
        ("/api/v1/users", {"username": "dora", "full_name": 1, "password": SECRET * 10}),
    ],
)
def test_validation_errors_never_echo_the_input(
    api: tuple[TestClient, str], path: str, body: dict[str, object]
) -> None:
    """A 422 names the field and the rule, never the submitted value (passwords above all)."""
    client, record_id = api
    role = {"session": None, "close": "qa", "reopen": "qa", "users": "admin"}
    signed_in(client, role[path.rsplit("/", 1)[-1]])
    r = client.post(path.replace("{id}", record_id), json=body)
    assert r.status_code == 422, r.text
    assert "secret" not in r.text
    assert "xxxx" not in r.text
    for error in r.json()["detail"]:
        assert set(error) <= {"loc", "msg", "type"}


@pytest.mark.parametrize("page", ["9223372036854775807", "1000001", "0", "-1", "9" * 5000, "1e3"])
def test_a_page_number_out_of_range_is_refused_or_empty(
    api: tuple[TestClient, str], page: str
) -> None:
    """Huge or malformed page numbers give 422 with a reason; past the last page is empty."""
    client, _ = api
    client = TestClient(client.app, raise_server_exceptions=False)
    signed_in(client, "viewer")
    r = client.get("/api/v1/excursions", params={"page": page})
    assert r.status_code == 422, r.text
    assert page not in r.text or len(page) < 3
    beyond = client.get("/api/v1/excursions", params={"page": 1_000_000})
    assert beyond.status_code == 200, beyond.text
    assert beyond.json()["items"] == []
    assert beyond.json()["total"] >= 2


def test_a_body_over_1_mb_is_refused_before_it_is_read(api: tuple[TestClient, str]) -> None:
    """An unauthenticated 200 MB body gets a short 413 after reading at most the limit."""
    client, _ = api
    app = client.app
    received = 0
    chunk = b"x" * 65536

    async def run(headers: list[tuple[bytes, bytes]]) -> list[dict[str, object]]:
        nonlocal received
        received = 0
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            nonlocal received
            received += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": received < 200 * 2**20}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/session",
            "raw_path": b"/api/v1/session",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", b"application/json"),
                *headers,
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)  # type: ignore[operator]
        return sent

    for headers in ([(b"content-length", str(200 * 2**20).encode())], []):  # declared, chunked
        sent = asyncio.run(run(headers))
        start = next(m for m in sent if m["type"] == "http.response.start")
        assert start["status"] == 413
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")  # type: ignore[misc]
        assert len(body) < 200
        assert b"Too Large" in body or b"larger than 1 MB" in body
        assert received <= 2**20 + len(chunk)


def test_a_state_change_needs_the_sessions_csrf_header(api: tuple[TestClient, str]) -> None:
    """Without the session's own X-CSRF-Token a POST or DELETE is refused (403), GET is not."""
    client, record_id = api
    other = signed_in(TestClient(client.app), "qa").headers["X-CSRF-Token"]
    signed_in(client, "operator")
    token = client.headers.pop("X-CSRF-Token")
    assert client.get("/api/v1/me").json()["csrf_token"] == token
    url = f"/api/v1/excursions/{record_id}/comments"
    v = version(client, record_id)
    for header in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": other}):
        r = client.post(url, json={"comment": "forged", "version": v}, headers=header)
        assert r.status_code == 403, r.text
        assert "X-CSRF-Token" in r.json()["detail"]
        assert client.delete("/api/v1/session", headers=header).status_code == 403
    assert version(client, record_id) == v
    assert client.get("/api/v1/me").status_code == 200  # not signed out
    r = client.post(url, json={"comment": "mine", "version": v}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:9999"},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Referer": "http://127.0.0.1:9999/attack.html"},
    ],
)
def test_a_state_change_from_another_origin_is_refused(
    api: tuple[TestClient, str], headers: dict[str, str]
) -> None:
    """A browser's request from another origin is refused even with a valid token (403)."""
    client, record_id = api
    signed_in(client, "operator")
    v = version(client, record_id)
    url = f"/api/v1/excursions/{record_id}/comments"
    r = client.post(url, json={"comment": "forged", "version": v}, headers=headers)
    assert r.status_code == 403, r.text
    assert "another origin" in r.json()["detail"]
    sign_in = client.post(
        "/api/v1/session", json={"username": "qa1", "password": PASSWORD}, headers=headers
    )
    assert sign_in.status_code == 403
    assert "set-cookie" not in sign_in.headers
    own = {"Origin": "http://testserver", "Referer": "http://testserver/excursions"}
    r = client.post(url, json={"comment": "mine", "version": v}, headers=own)
    assert r.status_code == 200, r.text


def test_a_throttled_sign_in_gets_429_with_retry_after(api: tuple[TestClient, str]) -> None:
    """After five wrong passwords for one user id from one address: 429, not a lockout."""
    client, _ = api
    signed_in(client, None)
    wrong = {"username": "viewer1", "password": "not the password"}
    for _ in range(MAX_FAILED):
        assert client.post("/api/v1/session", json=wrong).status_code == 401
    r = client.post("/api/v1/session", json={"username": "viewer1", "password": PASSWORD})
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 15 * 60
    assert "too many failed attempts for this user id from your address" in r.json()["detail"]
    assert signed_in(client, "operator").get("/api/v1/me").status_code == 200  # others: fine


def test_five_wrong_signature_passwords_end_the_session(
    api: tuple[TestClient, str], engine: Engine
) -> None:
    """Someone at a QA person's desk guessing the password at the signature: signed out."""
    client, record_id = api
    v = closed(client, record_id)  # signed in as qa1 now
    wrong = {"username": "qa1", "password": "a guess 123456", "meaning": "reviewed"}
    url = f"/api/v1/excursions/{record_id}/reopen"
    for _ in range(MAX_FAILED - 1):
        r = client.post(url, json={**wrong, "reason": "r", "version": v})
        assert r.status_code == 422, r.text
        assert "wrong user id or password" in r.json()["detail"]
    r = client.post(url, json={**wrong, "reason": "r", "version": v})
    assert r.status_code == 429, r.text
    assert "signed out" in r.json()["detail"]
    assert client.get("/api/v1/me").status_code == 401
    with engine.connect() as connection:
        actions = connection.exec_driver_sql(
            "SELECT action FROM audit_entries WHERE record_id = 'qa1' ORDER BY seq"
        ).all()
    assert [a for (a,) in actions][-3:] == ["signature_failed", "block", "sign_out"]
