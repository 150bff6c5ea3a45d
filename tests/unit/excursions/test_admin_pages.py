"""The audit-trail page and the user administration pages: roles, CSRF, refusals, the chain."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.audit import AuditTrail, Change
from excursions.auditlog import FULL_EVERY, ChainMonitor
from excursions.db import AuditEntry, UserRow
from excursions.users import UserStore
from excursions.web.admin_pages import DONE, PAGE_SIZE, SHOWN_CHARS
from excursions.web.app import create_app
from stream.timeseries.sqlite import SqliteTimeSeries

from .conftest import app_services, stored_excursion
from .tampering import tamper
from .test_pages import FormClient

PASSWORD = "a long password 1"
NEW_PASSWORD = "a brand new password 9"
USERS = {"viewer": "vic", "operator": "olga", "qa": "quinn", "admin": "ann"}


@dataclass
class Site:
    """The app on a store with one excursion, a user of each role and a fake clock."""

    client: FormClient
    engine: Engine
    clock: FakeClock
    record_id: str
    users: UserStore


@pytest.fixture
def site(engine: Engine, series: SqliteTimeSeries) -> Site:
    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    for role, name in USERS.items():
        users.add(name, f"{name.title()} Example", role, PASSWORD, actor="admin", reason="t")
    services = app_services(engine, users, clock, series=series)
    return Site(
        FormClient(create_app(services, site_name="Plant A")), engine, clock, record_id, users
    )


def sign_in(client: TestClient, username: str | None) -> None:
    client.cookies.clear()
    if username is None:
        return
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


def entries(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(AuditEntry)).scalar_one())


def append(engine: Engine, clock: FakeClock, n: int, **kwargs: object) -> None:
    """Append ``n`` entries (one field each) by a system actor."""
    trail = AuditTrail(clock)
    with Session(engine) as session, session.begin():
        for i in range(n):
            trail.append(
                session,
                actor=str(kwargs.get("actor", "system:test")),
                action=str(kwargs.get("action", "note")),
                record_type="note",
                record_id=f"n-{i}",
                changes=[Change("text", None, kwargs.get("value", f"value {i}"))],
                reason="filling",
            )


# ---- /audit --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"),
    [(None, 303), ("viewer", 200), ("operator", 200), ("qa", 200), ("admin", 403)],
)
def test_who_may_read_the_audit_trail(site: Site, role: str | None, status: int) -> None:
    sign_in(site.client, USERS.get(role or ""))
    page = site.client.get("/audit", follow_redirects=False)
    assert page.status_code == status
    if role is None:
        assert page.headers["location"] == "/login?next=/audit"
    elif role == "admin":
        assert "may not read records" in page.text
        assert 'id="audit"' not in page.text
    else:
        assert 'id="audit"' in page.text


def test_the_audit_trail_is_read_only(site: Site) -> None:
    sign_in(site.client, "quinn")
    for method in ("post", "put", "delete"):
        answer = getattr(site.client, method)("/audit")
        assert answer.status_code == 405


def test_the_audit_page_shows_each_entry_newest_first(site: Site) -> None:
    sign_in(site.client, "olga")  # the sign-in is the newest entry
    page = site.client.get("/audit").text
    total = entries(site.engine)
    assert f"Audit trail intact:</strong> {total:,} entries verified" in page
    seqs = [int(s) for s in re.findall(r'<tr id="entry-(\d+)"', page)]
    assert seqs == sorted(seqs, reverse=True)
    assert seqs[0] == total
    newest = page.split(f'id="entry-{total}"')[1].split("</tr>")[0]
    # Who: printed name and user id; what: a label; time in the site's zone, UTC on hover.
    assert "Olga Example" in newest
    assert "olga" in newest
    assert "Signed in" in newest
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CET", newest)
    assert re.search(r'title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"', newest)
    # An excursion record's entries link to its page with instrument and parameter.
    assert f'href="/excursions/{site.record_id}"' in page
    assert "Temperature" in page
    # A user's creation: the role as old → new.
    assert "Role" in page
    assert ">qa<" in page
    # The monitoring core's values read as on the record page: rounded with the unit, site
    # time without microseconds, durations in words; the stored value on hover.
    record = site.client.get("/audit", params={"record": f"excursion:{site.record_id}"}).text
    assert re.search(r">\d+\.\d °C<", record), "the peak with its unit"
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+", record), "no microseconds anywhere"
    assert re.search(r'title="stored: ', record)


def test_the_filters_offer_the_distinct_values_and_narrow_the_list(site: Site) -> None:
    sign_in(site.client, "vic")
    page = site.client.get("/audit").text
    actors = re.findall(
        r'<option value="([^"]+)"', page.split('id="f-actor"')[1].split("</select>")[0]
    )
    assert actors == sorted(set(actors))
    assert {"admin", "vic"} <= set(actors)
    assert '<option value="sign_in">Signed in</option>' in page
    assert f'<option value="excursion:{site.record_id}">' in page
    only = site.client.get("/audit", params={"actor": "vic", "action": "sign_in"}).text
    assert only.count('<tr id="entry-') == 1
    assert '<option value="vic" selected>' in only
    record = site.client.get("/audit", params={"record": "user:olga"}).text
    rows = re.findall(r'<tr id="entry-(\d+)"', record)
    assert len(rows) == 4  # created: full name, role, password, its fingerprint
    assert "matching the filters" in record
    none = site.client.get("/audit", params={"actor": "nobody"})
    assert none.status_code == 200
    assert "No entries match the filters." in none.text
    assert '<option value="nobody" selected>' in none.text  # still shown as chosen


@pytest.mark.parametrize(
    ("params", "sentence"),
    [
        ({"page": "0"}, "page: a whole number from 1 to 1,000,000"),
        ({"page": "abc"}, "page: a whole number from 1 to 1,000,000"),
        ({"page": "99999999999"}, "page: a whole number from 1 to 1,000,000"),
        ({"page": "-1"}, "page: a whole number from 1 to 1,000,000"),
        ({"actor": "x" * 300}, "Who: at most 260 characters"),
        ({"action": "sign_in\x00"}, "What: control characters are not allowed"),
        ({"record": "no-colon"}, "Record: not a record"),
        ({"record": "user:\u202eolga"}, "Record: control characters are not allowed"),
    ],
)
def test_hostile_filters_read_well(site: Site, params: dict[str, str], sentence: str) -> None:
    sign_in(site.client, "vic")
    page = site.client.get("/audit", params=params)
    assert page.status_code == 422
    assert sentence in page.text
    assert "x" * 300 not in page.text


def test_pages_of_fifty_and_bounded_page_numbers(site: Site) -> None:
    append(site.engine, site.clock, 120)
    sign_in(site.client, "vic")
    total = entries(site.engine)
    pages = -(-total // PAGE_SIZE)
    first = site.client.get("/audit").text
    assert first.count('<tr id="entry-') == PAGE_SIZE
    assert f"page 1 of {pages}" in first
    assert 'href="/audit?page=2" rel="next"' in first
    last = site.client.get("/audit", params={"page": pages}).text
    seqs = [int(s) for s in re.findall(r'<tr id="entry-(\d+)"', last)]
    assert seqs[-1] == 1
    assert len(seqs) == total - (pages - 1) * PAGE_SIZE
    beyond = site.client.get("/audit", params={"page": pages + 1})
    assert beyond.status_code == 404
    assert f"there are {pages} page(s)" in beyond.text
    filtered = site.client.get("/audit", params={"action": "note", "page": 2}).text
    assert 'href="/audit?action=note&amp;page=3"' in filtered


def test_long_values_fold_and_free_text_is_escaped(site: Site) -> None:
    long = "<b>" + "lorem ipsum " * 60
    sign_in(site.client, "vic")
    append(site.engine, site.clock, 1, value=long)
    page = site.client.get("/audit").text
    row = page.split('<tr id="entry-')[1].split("</tr>")[0]
    assert "<details>" in row
    assert "&lt;b&gt;" in row
    assert "<b>lorem" not in row
    assert long.replace("<", "&lt;").replace(">", "&gt;")[:SHOWN_CHARS] in row
    assert "…</summary>" in row


def test_a_tampered_entry_shows_the_broken_chain_banner(site: Site) -> None:
    tamper(site.engine, "UPDATE audit_entries SET reason = 'nothing to see' WHERE seq = 3")
    sign_in(site.client, "vic")
    page = site.client.get("/audit").text
    assert 'class="error chain"' in page
    assert "Audit trail broken at entry #3:" in page
    assert "its content does not match its hash" in page
    assert "Audit trail intact" not in page
    assert 'id="entry-3" class="broken"' in page


def test_tampering_after_a_good_check_shows_at_the_next_full_walk(site: Site) -> None:
    sign_in(site.client, "vic")
    assert "Audit trail intact" in site.client.get("/audit").text
    tamper(site.engine, "UPDATE audit_entries SET actor = 'someone' WHERE seq = 2")
    append(site.engine, site.clock, 3)  # checked on their own, from the last good entry
    assert "Audit trail intact" in site.client.get("/audit").text
    site.clock.advance(FULL_EVERY.total_seconds())
    assert "Audit trail broken at entry #2:" in site.client.get("/audit").text


def test_the_monitor_checks_only_what_was_appended_between_full_walks(
    engine: Engine, site: Site
) -> None:
    monitor = ChainMonitor(engine, clock=site.clock)
    first = monitor.status()
    assert first.ok
    assert first.entries == entries(engine) == first.last_seq
    append(engine, site.clock, 4)
    second = monitor.status()
    assert second.ok
    assert second.entries == first.entries + 4 == second.last_seq
    tamper(engine, "DELETE FROM audit_entries WHERE seq = 5")
    site.clock.advance(FULL_EVERY.total_seconds())
    broken = monitor.status()
    assert not broken.ok
    assert broken.broken_seq == 5
    assert "entry 5 was removed" in broken.problem


# ---- /users --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"),
    [(None, 303), ("viewer", 403), ("operator", 403), ("qa", 403), ("admin", 200)],
)
def test_who_may_manage_users(site: Site, role: str | None, status: int) -> None:
    sign_in(site.client, USERS.get(role or ""))
    for path in ("/users", "/users/olga"):
        page = site.client.get(path, follow_redirects=False)
        assert page.status_code == status, path
        if role is None:
            assert page.headers["location"] == f"/login?next={path}"
        elif status == 403:
            assert "only administrators manage users" in page.text
    posts = [
        ("/users", {"username": "zed", "full_name": "Zed", "role": "viewer", "reason": "r"}),
        ("/users/olga/role", {"role": "qa", "reason": "r"}),
        ("/users/olga/disable", {"reason": "r"}),
        ("/users/olga/enable", {"reason": "r"}),
        ("/users/olga/password", {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}),
    ]
    if role != "admin":
        for path, data in posts:
            answer = site.client.post(path, data=data, follow_redirects=False)
            assert answer.status_code == (303 if role is None else 403), path
        with Session(site.engine) as session:
            olga = session.execute(select(UserRow).where(UserRow.username == "olga")).scalar_one()
            assert (olga.role, olga.disabled) == ("operator", False)
            assert session.execute(select(UserRow).where(UserRow.username == "zed")).first() is None


def test_the_users_page_lists_every_user(site: Site) -> None:
    sign_in(site.client, "olga")
    sign_in(site.client, "ann")
    page = site.client.get("/users").text
    for name in USERS.values():
        assert f'id="user-{name}"' in page
    olga = page.split('id="user-olga"')[1].split("</tr>")[0]
    assert "Olga Example" in olga
    assert 'class="badge role-operator">Operator<' in olga
    assert ">Active<" in olga
    assert "CET" in olga  # created and signed in
    assert "never" not in olga
    vic = page.split('id="user-vic"')[1].split("</tr>")[0]
    assert "never" in vic


def add_form(**overrides: str) -> dict[str, str]:
    return {
        "username": "nina",
        "full_name": "Nina Newcomer",
        "role": "qa",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        "reason": "access request AR-17",
        **overrides,
    }


def test_an_admin_adds_a_user_who_can_then_sign_in(site: Site) -> None:
    sign_in(site.client, "ann")
    done = site.client.post("/users", data=add_form(), follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == "/users?done=added"
    page = site.client.get(done.headers["location"]).text
    assert DONE["added"] in page
    assert 'id="user-nina"' in page
    assert "Nina Newcomer" in page.split('id="user-nina"')[1].split("</tr>")[0]
    trail = site.client.get("/audit")
    assert trail.status_code == 403  # the admin may not read the trail...
    sign_in(site.client, "vic")  # ...a viewer sees the creation, by the admin, with the reason
    created = site.client.get("/audit", params={"record": "user:nina"}).text
    assert "access request AR-17" in created
    assert "Ann Example" in created
    assert NEW_PASSWORD not in created
    site.client.cookies.clear()
    signed = site.client.post(
        "/login", data={"username": "nina", "password": NEW_PASSWORD}, follow_redirects=False
    )
    assert signed.status_code == 303


@pytest.mark.parametrize(
    ("overrides", "sentence"),
    [
        ({"password_confirm": "something else 123"}, "Password: the confirmation does not match"),
        ({"password": "short", "password_confirm": "short"}, "Password: at least 12 characters"),
        ({"reason": "  "}, "Reason: required"),
        ({"role": "superuser"}, "Role: one of Viewer, Operator, QA, Administrator"),
        ({"username": "Nina!"}, "User id: 2 to 64 characters"),
        ({"username": "n" * 65}, "User id: at most 64 characters"),
        ({"full_name": "Nina\x1b[31m"}, "Full name: control characters are not allowed"),
        ({"full_name": "x" * 201}, "Full name: at most 200 characters"),
        ({"reason": "ok\u202eevil"}, "Reason: control characters are not allowed"),
        ({"username": "olga"}, "username 'olga' is taken"),
    ],
)
def test_a_refused_user_keeps_what_was_typed_but_the_password(
    site: Site, overrides: dict[str, str], sentence: str
) -> None:
    sign_in(site.client, "ann")
    form = add_form(**overrides)
    refused = site.client.post("/users", data=form)
    assert refused.status_code == 422
    assert sentence in html.unescape(refused.text)
    assert 'value="access request AR-17"' in refused.text or "reason" in overrides
    if "full_name" not in overrides:
        assert 'value="Nina Newcomer"' in refused.text
    assert NEW_PASSWORD not in refused.text
    assert "something else 123" not in refused.text
    assert "superuser" not in refused.text
    with Session(site.engine) as session:
        assert session.execute(select(UserRow).where(UserRow.username == "nina")).first() is None


def test_a_form_without_the_token_or_from_elsewhere_is_refused(site: Site) -> None:
    sign_in(site.client, "ann")
    token = site.client.token()
    for data, headers in [
        ({**add_form(), "csrf_token": "forged"}, {}),
        ({**add_form(), "csrf_token": ""}, {}),
        ({**add_form(), "csrf_token": token}, {"Origin": "http://127.0.0.1:9999"}),
    ]:
        refused = site.client.post("/users", data=data, headers=headers)
        assert refused.status_code == 403
        assert "did not come from this site's own page" in html.unescape(refused.text)
        assert NEW_PASSWORD not in refused.text
    forged = site.client.post("/users/olga/disable", data={"reason": "r", "csrf_token": "forged"})
    assert forged.status_code == 403
    assert 'value="r"' in forged.text
    with Session(site.engine) as session:
        assert session.execute(select(UserRow).where(UserRow.username == "nina")).first() is None
        olga = session.execute(select(UserRow).where(UserRow.username == "olga")).scalar_one()
        assert not olga.disabled


def test_an_admin_changes_role_disables_enables_and_resets(site: Site) -> None:
    sign_in(site.client, "olga")
    olga_session = site.client.cookies.get("envmon_session")
    sign_in(site.client, "ann")
    page = site.client.get("/users/olga").text
    for form in ("form-role", "form-disable", "form-password"):
        assert f'id="{form}"' in page
    steps = [
        ("role", {"role": "qa", "reason": "promoted"}, "role"),
        ("disable", {"reason": "left the company"}, "disabled"),
        ("enable", {"reason": "came back"}, "enabled"),
        (
            "password",
            {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "reason": "forgot"},
            "password",
        ),
    ]
    for action, data, done in steps:
        answer = site.client.post(f"/users/olga/{action}", data=data, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"/users/olga?done={done}"
        shown = site.client.get(answer.headers["location"]).text
        assert DONE[done] in html.unescape(shown)
    assert 'id="user-role">QA<' in shown
    with Session(site.engine) as session:
        olga = session.execute(select(UserRow).where(UserRow.username == "olga")).scalar_one()
        assert (olga.role, olga.disabled) == ("qa", False)
    # Her old session ended; the new password works.
    site.client.cookies.clear()
    site.client.cookies.set("envmon_session", olga_session or "")
    assert site.client.get("/audit", follow_redirects=False).status_code == 303
    site.client.cookies.clear()
    assert (
        site.client.post(
            "/login", data={"username": "olga", "password": NEW_PASSWORD}, follow_redirects=False
        ).status_code
        == 303
    )


def test_store_refusals_read_well(site: Site) -> None:
    sign_in(site.client, "ann")
    own = site.client.get("/users/ann").text
    assert 'id="own"' in own
    assert 'id="form-role"' not in own
    assert 'id="form-password"' in own
    forged_own = site.client.post("/users/ann/role", data={"role": "qa", "reason": "why not"})
    assert forged_own.status_code == 422
    assert "you may not change your own role" in forged_own.text
    same = site.client.post("/users/olga/role", data={"role": "operator", "reason": "again"})
    assert same.status_code == 422
    assert "role is already 'operator'" in html.unescape(same.text)
    assert 'value="again"' in same.text
    for path in ("/users/nobody", "/users/NOT%20A%20NAME", "/users/" + "x" * 300):
        assert site.client.get(path).status_code == 404
    assert site.client.post("/users/nobody/disable", data={"reason": "r"}).status_code == 404
    assert site.client.post("/users/olga/delete", data={"reason": "r"}).status_code == 404
    big = site.client.post("/users/olga/disable", data={"reason": "r" * 5000})
    assert big.status_code == 422
    assert "Reason: at most 4000 characters" in big.text
    assert "r" * 5000 not in big.text
    files = site.client.post(
        "/users/olga/disable", data={"reason": "r"}, files={"reason": ("a.txt", b"x")}
    )
    assert files.status_code in (303, 422)


def test_the_pages_work_under_the_csp(site: Site) -> None:
    """No inline script or style: the pages' own style sheet is a file of the app."""
    pages = []
    sign_in(site.client, "ann")
    pages += [site.client.get(path).text for path in ("/users", "/users/olga")]
    sign_in(site.client, "vic")
    pages.append(site.client.get("/audit").text)
    for page in pages:
        for inline in ("<script", " style=", "<style"):
            assert inline not in page
        assert 'href="/static/admin.css"' in page
    assert site.client.get("/static/admin.css").status_code == 200
