"""The incidents pages and API: every route with every role, acknowledge by link, hostile input."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.links import LinkSigner
from alerts.store import ACKNOWLEDGED, RESOLVED, TRIGGERED, IncidentRow, LinkUseRow, ShelveRow
from alerts.web import IncidentServices, duration_text, parse_until, relative
from envmon.models import AlarmKind
from excursions.audit import verify
from excursions.db import AuditEntry
from excursions.lifecycle import Lifecycle
from excursions.sessions import Sessions
from excursions.users import UserStore
from excursions.web.api import COOKIE, Services
from excursions.web.app import create_app
from excursions.web.pages import local_path
from excursions.web.security import csrf_token
from tests.unit.alerts.test_engine import T0, Rig, alarm
from tests.unit.excursions.conftest import FAST_HASHER

PASSWORD = "a long password 1"
USERS = {"viewer": "vic", "operator": "olga", "qa": "quinn", "admin": "ann"}
ROLES = (None, *USERS)
LINK = re.compile(r"https://envmon\.example\.org(/incidents/ack/[A-Za-z0-9_.-]+)")
ZONE = "Europe/Amsterdam"


class Site:
    """The QA app with the incidents pages on the engine test's site, store and fake clock."""

    def __init__(self, tmp_path: Path) -> None:
        self.rig = Rig(tmp_path)
        users = UserStore(self.rig.db, clock=self.rig.clock, hasher=FAST_HASHER)
        for role, name in USERS.items():
            users.add(name, f"{name.title()} Example", role, PASSWORD, actor="admin", reason="t")
        services = Services(
            self.rig.db,
            Sessions(self.rig.db, users, clock=self.rig.clock),
            Lifecycle(self.rig.db, users, clock=self.rig.clock),
            secure_cookie=False,
            site_timezone=ZONE,
            clock=self.rig.clock,
        )
        self.signer = self.rig.dispatcher.signer
        assert self.signer is not None
        incidents = IncidentServices(self.rig.engine, self.signer)
        self.app = create_app(services, site_name="Plant A", incidents=incidents)
        self.client = TestClient(self.app, raise_server_exceptions=True)

    def open(self, n: int = 1, **kwargs: Any) -> str:
        """Open an incident (an alert on freezer 1, or as ``kwargs`` say); return its id."""
        event = alarm(excursion=f"exc-{n}", **kwargs)
        self.rig.handle(event)
        with Session(self.rig.db) as session:
            row = session.scalars(
                select(IncidentRow).where(IncidentRow.excursion_id == f"exc-{n}")
            ).one()
            return row.id

    def page(self) -> list[str]:
        """Send what is due after the grouping window; return the acknowledge paths sent."""
        messages = asyncio.run(self.rig.advance(2))
        return [m for message in messages for m in LINK.findall(message.body)]

    def sign_in(self, role: str | None) -> TestClient:
        """Sign the client in as ``role`` (None: signed out), CSRF header set for the API."""
        client = self.client
        client.cookies.clear()
        client.headers.pop("X-CSRF-Token", None)
        if role is not None:
            form = client.get("/login").text
            token = re.search(r'name="csrf_token" value="([^"]*)"', form)
            assert token
            signed = client.post(
                "/login",
                data={"username": USERS[role], "password": PASSWORD, "csrf_token": token[1]},
                follow_redirects=False,
            )
            assert signed.status_code == 303, signed.text
            client.headers["X-CSRF-Token"] = self.csrf()
        return client

    def csrf(self) -> str:
        session = self.client.cookies.get(COOKIE)
        return csrf_token(session) if session else ""

    def post(self, url: str, data: dict[str, str], **kwargs: Any) -> Any:
        """Post a form as the page's own form would (with the session's CSRF token)."""
        return self.client.post(
            url, data={"csrf_token": self.csrf(), **data}, follow_redirects=False, **kwargs
        )

    def incident(self, incident_id: str) -> IncidentRow:
        with Session(self.rig.db) as session:
            row = session.get(IncidentRow, incident_id)
            assert row is not None
            session.expunge(row)
            return row


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def until_text(site: Site, hours: float) -> str:
    """A shelve end as the form's datetime-local field sends it (site time)."""
    from zoneinfo import ZoneInfo

    at = site.rig.clock() + timedelta(hours=hours)
    return at.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M")


# ---- every route × every role --------------------------------------------------------------

READ_PAGES = ("/incidents", "/incidents/{id}")
#: Route → the roles that may use it (the others: 403; without a session: sign-in first).
PAGE_MATRIX = {
    ("GET", "/incidents"): ("viewer", "operator", "qa"),
    ("GET", "/incidents/{id}"): ("viewer", "operator", "qa"),
    ("POST", "/incidents/{id}/acknowledge"): ("operator", "qa"),
    ("POST", "/incidents/{id}/shelve"): ("operator", "qa"),
    ("GET", "/incidents/ack/{token}"): ("operator", "qa"),
    ("POST", "/incidents/ack/{token}"): ("operator", "qa"),
}
API_MATRIX = {
    ("GET", "/api/v1/incidents"): ("viewer", "operator", "qa"),
    ("GET", "/api/v1/incidents/{id}"): ("viewer", "operator", "qa"),
    ("POST", "/api/v1/incidents/{id}/acknowledge"): ("operator", "qa"),
    ("POST", "/api/v1/incidents/{id}/shelve"): ("operator", "qa"),
}


class TestRouteMatrix:
    def test_every_incident_route_is_in_a_matrix(self, site):
        """No incident route escapes the role tables below."""
        pages = {
            (method, route.path.replace("{incident_id}", "{id}"))
            for route in site.app.routes
            if getattr(route, "path", "").startswith("/incidents")
            for method in getattr(route, "methods", ())
            if method != "HEAD"
        }
        assert pages - {("POST", "/incidents/{id}/{action}")} == {
            key for key in PAGE_MATRIX if not key[1].startswith("/incidents/{id}/")
        }
        schema = site.client.get("/api/v1/openapi.json").json()["paths"]
        api = {
            (method.upper(), path.replace("{incident_id}", "{id}"))
            for path, item in schema.items()
            if "incidents" in path
            for method in item
        }
        assert api == set(API_MATRIX)

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("method", "path"), list(PAGE_MATRIX))
    def test_page_matrix(self, site, role, method, path):
        """Pages: sign-in first without a session, 403 for other roles, done for the right ones."""
        incident = site.open()
        (link,) = site.page()
        token = link.rsplit("/", 1)[1]
        url = path.replace("{id}", incident).replace("{token}", token)
        site.sign_in(role)
        form = {"comment": "On my way to the freezer", "reason": "door open for cleaning"}
        form["until"] = until_text(site, 1)
        if method == "GET":
            response = site.client.get(url, follow_redirects=False)
        else:
            response = site.post(url, form)
        if role is None:
            assert response.status_code == 303
            location = response.headers["location"]
            assert location.startswith("/login?next=/incidents")
            if "{token}" in path:
                assert location == f"/login?next={url}"
            else:
                assert location == f"/login?next=/incidents/{incident}" or path == "/incidents"
        elif role not in PAGE_MATRIX[(method, path)]:
            assert response.status_code == 403, response.text
            assert site.incident(incident).state == TRIGGERED
            assert "<h1>Incidents" not in response.text or role == "viewer"
        elif method == "GET":
            assert response.status_code == 200, response.text
        else:
            assert response.status_code == 303, response.text
            assert response.headers["location"].startswith(f"/incidents/{incident}?done=")

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("method", "path"), list(API_MATRIX))
    def test_api_matrix(self, site, role, method, path):
        """API: 401 without a session, 403 for other roles, 200 for the right ones."""
        incident = site.open()
        client = site.sign_in(role)
        url = path.replace("{id}", incident)
        body = {"comment": "On my way", "reason": "cleaning the room"}
        body["until"] = (site.rig.clock() + timedelta(hours=1)).isoformat()
        response = client.request(method, url, json=body if method == "POST" else None)
        if role is None:
            assert response.status_code == 401
        elif role not in API_MATRIX[(method, path)]:
            assert response.status_code == 403, response.text
            assert site.incident(incident).state == TRIGGERED
        else:
            assert response.status_code == 200, response.text


# ---- the pages -----------------------------------------------------------------------------


class TestPages:
    def test_the_list_shows_open_incidents_with_who_was_paged_and_the_next_step(self, site):
        """An open incident: its value with units, site times with the zone, the page's outcome."""
        incident = site.open()
        site.page()
        site.sign_in("viewer")
        page = site.client.get("/incidents")
        assert page.status_code == 200
        html = page.text
        assert f'href="/incidents/{incident}"' in html
        assert "Freezer 1 temperature in Cold room" in html
        assert "−68.0 °C (limit −70.0 °C)" in html
        assert re.search(r"Page shown at 2026-12-07 03:00:\d\d CET", html)  # the zone, named
        assert "<td>03:00:00 CET" in html  # opened today: the time of day
        assert "Alice · email" in html
        assert "sent" in html
        assert "captured" in html  # the server's answer to the newest attempt
        assert "step 2 of 2: team Facilities (email)" in html
        assert "<script" not in html
        assert " style=" not in html
        assert 'href="/incidents" id="nav-incidents"' in html

    def test_the_detail_offers_forms_by_role_and_state(self, site):
        """Operators and QA get acknowledge and shelve forms; viewers none; each with a token."""
        incident = site.open()
        site.page()
        site.sign_in("viewer")
        viewer = site.client.get(f"/incidents/{incident}").text
        assert 'id="form-acknowledge"' not in viewer
        assert 'id="form-shelve"' not in viewer
        assert "operators and QA acknowledge and shelve them" in viewer
        site.sign_in("operator")
        page = site.client.get(f"/incidents/{incident}").text
        assert 'id="form-acknowledge"' in page
        assert 'id="form-shelve"' in page
        assert set(re.findall(r'name="csrf_token" value="([^"]*)"', page)) == {site.csrf()}
        assert "at most 8 h" in page
        assert 'type="datetime-local"' in page
        assert 'id="notifications"' in page
        assert "accepted" in page

    def test_acknowledging_from_the_page_stops_the_escalation_and_is_audited(self, site):
        """The operator's comment is the acknowledgement; the page confirms; the trail verifies."""
        incident = site.open()
        site.page()
        site.sign_in("operator")
        done = site.post(f"/incidents/{incident}/acknowledge", {"comment": "Going there now"})
        assert done.status_code == 303
        page = site.client.get(done.headers["location"]).text
        assert "Acknowledged: the escalation has stopped." in page
        assert "by <strong>olga</strong>" in page
        assert "Going there now" in page
        assert 'id="form-acknowledge"' not in page
        assert 'id="form-shelve"' in page  # still open: it may be shelved
        row = site.incident(incident)
        assert (row.state, row.acknowledged_by, row.ack_comment) == (
            ACKNOWLEDGED,
            "olga",
            "Going there now",
        )
        assert asyncio.run(site.rig.advance(600)) == []  # no step 2
        with Session(site.rig.db) as session:
            assert verify(session).ok
        listing = site.client.get("/incidents").text
        assert "by <strong>olga</strong>" in listing

    def test_a_second_acknowledgement_is_a_conflict_and_keeps_what_was_typed(self, site):
        """Already acknowledged: 409 with who did it; the comment typed is on the page again."""
        incident = site.open()
        site.sign_in("operator")
        site.post(f"/incidents/{incident}/acknowledge", {"comment": "first one"})
        site.sign_in("qa")
        again = site.post(f"/incidents/{incident}/acknowledge", {"comment": "second one"})
        assert again.status_code == 409
        assert "already acknowledged by olga" in again.text

    def test_a_short_or_over_long_comment_is_refused_with_the_text_kept(self, site):
        """Comment rules: 422 with a sentence, nothing changed, the typed text still there."""
        incident = site.open()
        site.sign_in("operator")
        short = site.post(f"/incidents/{incident}/acknowledge", {"comment": " ok "})
        assert short.status_code == 422
        assert "at least 3 characters" in short.text
        long = site.post(f"/incidents/{incident}/acknowledge", {"comment": "y" * 2001})
        assert long.status_code == 422
        assert "at most 2000 characters" in long.text
        assert "y" * 2001 in long.text
        assert site.incident(incident).state == TRIGGERED

    def test_html_in_a_comment_is_escaped(self, site):
        """A comment with markup is shown as text on the incident and list pages."""
        incident = site.open()
        site.sign_in("qa")
        hostile = '<script>alert(1)</script><img src=x onerror="x">'
        site.post(f"/incidents/{incident}/acknowledge", {"comment": hostile})
        for url in (f"/incidents/{incident}", "/incidents"):
            html = site.client.get(url).text
            assert "<script>alert" not in html
            assert "<img src=x" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    def test_shelving_holds_the_pages_back_until_the_end_time(self, site):
        """A shelve from the page: confirmed, shown as held back, audited, pages again after."""
        incident = site.open()
        site.page()
        site.sign_in("operator")
        done = site.post(
            f"/incidents/{incident}/shelve",
            {"reason": "door open for cleaning", "until": until_text(site, 1)},
        )
        assert done.status_code == 303, done.text
        page = site.client.get(done.headers["location"]).text
        assert "Shelved: no pages until the shelve ends." in page
        assert "Held back by shelve of olga: door open for cleaning" in page
        assert "2026-12-07 04:00:00 CET" in page  # until, site time
        assert 'id="shelves"' in page
        assert asyncio.run(site.rig.advance(1800)) == []
        assert len(asyncio.run(site.rig.advance(1802))) == 1  # paged again
        with Session(site.rig.db) as session:
            assert verify(session).ok

    @pytest.mark.parametrize(
        ("until", "expected"),
        [
            ("", "End time (Europe/Amsterdam): required"),
            ("tomorrow", "a date and time such as"),
            ("2026-12-07T01:00", "must be in the future"),
            ("+9", "at most 8 h"),
            ("0001-01-01T00:10", "a date and time such as"),
            ("2026-12-07T03:30+00:00", "at most 8 h"),
        ],
    )
    def test_a_bad_shelve_end_is_refused_with_a_sentence(self, site, until, expected):
        """Past, beyond the site's maximum, not a time: 422, the reason typed kept."""
        incident = site.open()
        site.sign_in("operator")
        value = until_text(site, 9) if until == "+9" else until
        if until == "2026-12-07T03:30+00:00":
            value = "2026-12-07T11:00+00:00"  # nine hours after 02:00 UTC
        refused = site.post(
            f"/incidents/{incident}/shelve", {"reason": "a reason kept", "until": value}
        )
        assert refused.status_code == 422, refused.text
        assert expected in refused.text
        assert 'value="a reason kept"' in refused.text
        with Session(site.rig.db) as session:
            assert session.scalars(select(ShelveRow)).all() == []

    def test_a_resolved_incident_offers_nothing_and_refuses_a_posted_action(self, site):
        """Resolved: no forms; a posted acknowledgement or shelve is a 409."""
        incident = site.open()
        site.rig.handle(alarm(excursion="exc-1", level=None, seconds=30, kind=AlarmKind.CLEARED))
        assert site.incident(incident).state == RESOLVED
        site.sign_in("operator")
        page = site.client.get(f"/incidents/{incident}").text
        assert 'id="form-acknowledge"' not in page
        assert 'id="form-shelve"' not in page
        refused = site.post(f"/incidents/{incident}/acknowledge", {"comment": "late"})
        assert refused.status_code == 409
        assert "already been resolved" in refused.text
        shelved = site.post(
            f"/incidents/{incident}/shelve", {"reason": "late", "until": until_text(site, 1)}
        )
        assert shelved.status_code == 409
        listing = site.client.get("/incidents").text
        assert 'id="resolved-incidents"' in listing
        assert f'href="/incidents/{incident}"' in listing

    def test_a_maintenance_window_is_shown_as_holding_pages_back(self, site):
        """Freezer 2 in its defrost window: the list says so and when the window ends."""
        site.open(2, sensor="frz-2.temperature")
        site.sign_in("viewer")
        html = site.client.get("/incidents").text
        assert "Held back by maintenance: Defrost of freezer 2 (defrost)" in html
        assert "until 2026-12-07 05:00:00 CET" in html
        assert "held back" in html  # the suppressed page to alice

    @pytest.mark.parametrize("bad", ["nope", "x" * 5000, "%00", "%C3%BC", "a'b\"c<d>", "a%20b"])
    def test_a_bad_incident_id_is_a_404_page_never_a_500(self, site, bad):
        """Unknown, over-long, NUL, unicode, traversal, markup: a 404 page linking to the list."""
        site.sign_in("operator")
        page = site.client.get(f"/incidents/{bad}")
        assert page.status_code == 404
        assert 'href="/incidents"' in page.text
        posted = site.post(f"/incidents/{bad}/acknowledge", {"comment": "hello there"})
        assert posted.status_code == 404
        api = site.client.get(f"/api/v1/incidents/{bad}")
        assert api.status_code == 404
        acked = site.client.post(f"/api/v1/incidents/{bad}/acknowledge", json={"comment": "abc"})
        assert acked.status_code == 404

    def test_an_unknown_action_is_a_404(self, site):
        """Only acknowledge and shelve can be posted."""
        incident = site.open()
        site.sign_in("qa")
        assert site.post(f"/incidents/{incident}/resolve", {}).status_code == 404

    def test_admins_are_refused_like_on_records(self, site):
        """Admins manage users: the incidents pages refuse them with a sentence."""
        site.sign_in("admin")
        page = site.client.get("/incidents")
        assert page.status_code == 403
        assert "your role may not see incidents" in page.text


# ---- acknowledge by link ---------------------------------------------------------------------


class TestAcknowledgeLink:
    def test_a_link_leads_through_sign_in_and_works_once(self, site):
        """Anonymous → sign-in with next → the form → acknowledged via link → a second use 410."""
        incident = site.open()
        (link,) = site.page()
        site.sign_in(None)
        first = site.client.get(link, follow_redirects=False)
        assert first.status_code == 303
        login = first.headers["location"]
        assert login == f"/login?next={link}"
        form = site.client.get(login).text
        assert f'name="next" value="{link}"' in form
        token = re.search(r'name="csrf_token" value="([^"]*)"', form)
        assert token
        signed = site.client.post(
            "/login",
            data={"username": "olga", "password": PASSWORD, "csrf_token": token[1], "next": link},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == link
        page = site.client.get(link)
        assert page.status_code == 200
        assert "This link was sent to Alice" in page.text
        assert 'id="form-acknowledge"' in page.text
        done = site.post(link, {"comment": "On my way"})
        assert done.status_code == 303
        assert done.headers["location"] == f"/incidents/{incident}?done=acknowledged"
        row = site.incident(incident)
        assert (row.state, row.acknowledged_by) == (ACKNOWLEDGED, "olga")
        with Session(site.rig.db) as session:
            (use,) = session.scalars(select(LinkUseRow)).all()
            assert (use.incident_id, use.used_by) == (incident, "olga")
            via = session.scalars(
                select(AuditEntry.new_value).where(
                    AuditEntry.record_id == incident, AuditEntry.field == "via"
                )
            ).one()
            assert via == '"link"'
            assert verify(session).ok
        again = site.client.get(link)
        assert again.status_code == 410
        assert "already been used" in again.text
        assert 'href="/incidents"' in again.text
        reposted = site.post(link, {"comment": "again"})
        assert reposted.status_code == 410
        site.sign_in(None)
        assert site.client.get(link, follow_redirects=False).status_code == 410

    def test_an_expired_link_is_410_and_a_forged_one_400(self, site):
        """Past its validity: 410 saying so; signed with another key or mangled: 400."""
        incident = site.open()
        (link,) = site.page()
        site.sign_in("operator")
        forged = LinkSigner("another secret of 32 characters!", valid_for=timedelta(hours=24))
        other = forged.make(incident, "alice", site.rig.clock())
        refused = site.client.get(f"/incidents/ack/{other}")
        assert refused.status_code == 400
        assert "signature does not match" in refused.text
        assert site.post(f"/incidents/ack/{other}", {"comment": "forged"}).status_code == 400
        site.rig.clock.advance(24 * 3600 + 1)
        site.sign_in("operator")  # a new session: the old one idled out
        expired = site.client.get(link)
        assert expired.status_code == 410
        assert "expired" in expired.text
        assert "acknowledge on the incidents page" in expired.text
        assert site.post(link, {"comment": "too late"}).status_code == 410
        assert site.incident(incident).state == TRIGGERED

    @pytest.mark.parametrize(
        "token",
        ["x", "a.b", "a.b.c", "x" * 700, "é.é", "%00.%00", "e30.e30", "W10.AAAA", "....", "x."],
    )
    def test_a_malformed_token_is_a_400_page_never_a_500(self, site, token):
        """Whatever the token, signed in or not, the answer is a page that says why."""
        site.open()
        for role in (None, "operator"):
            site.sign_in(role)
            page = site.client.get(f"/incidents/ack/{token}", follow_redirects=False)
            assert page.status_code == 400, page.text
            assert "not valid" in page.text
            assert 'href="/incidents"' in page.text
            assert "<script" not in page.text

    def test_a_viewer_following_a_link_is_told_why_not(self, site):
        """A viewer may not acknowledge: 403 with a sentence; the link stays unused."""
        incident = site.open()
        (link,) = site.page()
        site.sign_in("viewer")
        page = site.client.get(link)
        assert page.status_code == 403
        assert "only operators and QA may acknowledge" in page.text
        assert site.post(link, {"comment": "I am a viewer"}).status_code == 403
        assert site.incident(incident).state == TRIGGERED
        site.sign_in("qa")
        assert site.client.get(link).status_code == 200

    def test_a_link_to_an_incident_already_acknowledged_says_by_whom(self, site):
        """Acknowledged on the page meanwhile: the link's page says so (409) with no form."""
        incident = site.open()
        (link,) = site.page()
        site.sign_in("qa")
        site.post(f"/incidents/{incident}/acknowledge", {"comment": "seen on the screen"})
        site.sign_in("operator")
        page = site.client.get(link)
        assert page.status_code == 409
        assert "already acknowledged by quinn" in page.text
        assert 'id="form-acknowledge"' not in page.text
        posted = site.post(link, {"comment": "me too"})
        assert posted.status_code == 409
        with Session(site.rig.db) as session:
            assert session.scalars(select(LinkUseRow)).all() == []

    def test_an_empty_comment_on_the_link_form_keeps_the_link_usable(self, site):
        """A refused comment (422) does not use up the link."""
        site.open()
        (link,) = site.page()
        site.sign_in("operator")
        refused = site.post(link, {"comment": "  "})
        assert refused.status_code == 422
        assert "at least 3 characters" in refused.text
        assert site.post(link, {"comment": "now with words"}).status_code == 303

    def test_a_forged_post_of_the_link_form_is_refused(self, site):
        """No CSRF token, or another origin: 403, the link unused."""
        site.open()
        (link,) = site.page()
        site.sign_in("operator")
        bare = site.client.post(link, data={"comment": "forged"}, follow_redirects=False)
        assert bare.status_code == 403
        assert "did not come from this site" in bare.text
        other = site.post(link, {"comment": "forged"}, headers={"Origin": "http://evil.example"})
        assert other.status_code == 403
        assert site.client.get(link).status_code == 200


# ---- the API ---------------------------------------------------------------------------------


class TestApi:
    def test_list_and_detail(self, site):
        """Open incidents with who was paged; the detail with notifications, attempts, audit."""
        incident = site.open()
        site.page()
        client = site.sign_in("viewer")
        listing = client.get("/api/v1/incidents").json()
        assert listing["open_total"] == 1
        (item,) = listing["open"]
        assert item["id"] == incident
        assert item["state"] == TRIGGERED
        assert item["measurement"] == "−68.0 °C (limit −70.0 °C)"
        (paged,) = item["paged"]
        assert (paged["contact_id"], paged["channel_id"], paged["status"]) == (
            "alice",
            "email",
            "sent",
        )
        assert paged["last_attempt"]["ok"] is True
        assert item["next"]["kind"] == "step"
        assert item["next"]["at"] == "2026-12-07T02:10:00Z" or item["next"]["at"].startswith(
            "2026-12-07T02:10:00"
        )
        detail = client.get(f"/api/v1/incidents/{incident}").json()
        (notification,) = detail["notifications"]
        assert [a["ok"] for a in notification["attempts"]] == [True]
        assert detail["audit"] == []

    def test_acknowledge_then_conflict(self, site):
        """200 with the new state and audit entries; a second acknowledgement is 409."""
        incident = site.open()
        client = site.sign_in("operator")
        done = client.post(f"/api/v1/incidents/{incident}/acknowledge", json={"comment": "on it"})
        assert done.status_code == 200
        body = done.json()
        assert body["incident"]["acknowledged_by"] == "olga"
        assert [(e["field"], e["new"]) for e in body["audit"]] == [
            ("state", '"acknowledged"'),
            ("via", '"api"'),
        ]
        again = client.post(f"/api/v1/incidents/{incident}/acknowledge", json={"comment": "again"})
        assert again.status_code == 409
        assert "already acknowledged by olga" in again.json()["detail"]

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"comment": ""},
            {"comment": "  a "},
            {"comment": "x" * 2001},
            {"comment": "x" * 5000},
            {"comment": 12},
            {"comment": None},
        ],
    )
    def test_a_bad_acknowledgement_body_is_422(self, site, body):
        """Missing, short, long or not text: 422, nothing changed."""
        incident = site.open()
        client = site.sign_in("operator")
        response = client.post(f"/api/v1/incidents/{incident}/acknowledge", json=body)
        assert response.status_code == 422, response.text
        assert "x" * 100 not in response.text  # the input is not echoed
        assert site.incident(incident).state == TRIGGERED

    def test_a_body_that_is_not_strict_json_is_422(self, site):
        """NaN, a lone surrogate or broken JSON: 422 before anything is read."""
        incident = site.open()
        client = site.sign_in("operator")
        for raw in (b'{"comment": NaN}', b'{"comment": "\\ud800 hello"}', b"{"):
            response = client.post(
                f"/api/v1/incidents/{incident}/acknowledge",
                content=raw,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 422, raw

    @pytest.mark.parametrize(
        ("until", "status"),
        [
            ("2026-12-07T03:00:00+01:00", 422),  # 02:00 UTC: now, not the future
            ("2026-12-07T12:00:00Z", 422),  # ten hours
            ("2026-12-07T05:00:00", 422),  # no offset
            ("soon", 422),
            ("2026-12-07T09:00:00+01:00", 200),  # seven hours
        ],
    )
    def test_shelve(self, site, until, status):
        """A shelve needs an end with an offset, in the future, within the site's maximum."""
        incident = site.open()
        client = site.sign_in("qa")
        response = client.post(
            f"/api/v1/incidents/{incident}/shelve", json={"reason": "cleaning", "until": until}
        )
        assert response.status_code == status, response.text
        if status == 200:
            assert response.json()["incident"]["suppressed"]["kind"] == "shelve"
            assert response.json()["shelves"][0]["by"] == "quinn"

    def test_shelving_a_resolved_incident_is_409(self, site):
        """Nothing to hold back once it has cleared."""
        incident = site.open()
        site.rig.handle(alarm(excursion="exc-1", level=None, seconds=30, kind=AlarmKind.CLEARED))
        client = site.sign_in("operator")
        response = client.post(
            f"/api/v1/incidents/{incident}/shelve",
            json={"reason": "cleaning", "until": "2026-12-07T09:00:00+01:00"},
        )
        assert response.status_code == 409

    def test_a_post_without_the_csrf_header_is_403(self, site):
        """The session's X-CSRF-Token is required on every POST; GET works without it."""
        incident = site.open()
        client = site.sign_in("operator")
        client.headers.pop("X-CSRF-Token")
        for path, body in (
            ("acknowledge", {"comment": "on it"}),
            ("shelve", {"reason": "x y z", "until": "2026-12-07T09:00:00+01:00"}),
        ):
            refused = client.post(f"/api/v1/incidents/{incident}/{path}", json=body)
            assert refused.status_code == 403
            assert "X-CSRF-Token" in refused.json()["detail"]
        assert client.get(f"/api/v1/incidents/{incident}").status_code == 200
        forged = client.post(
            f"/api/v1/incidents/{incident}/acknowledge",
            json={"comment": "on it"},
            headers={"X-CSRF-Token": "forged"},
        )
        assert forged.status_code == 403
        assert site.incident(incident).state == TRIGGERED

    def test_a_body_over_1_mb_is_413(self, site):
        """The app's body limit holds for the incident routes (JSON and forms)."""
        incident = site.open()
        client = site.sign_in("operator")
        big = "x" * (1024 * 1024 + 10)
        api = client.post(
            f"/api/v1/incidents/{incident}/acknowledge",
            content=b'{"comment": "' + big.encode() + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert api.status_code == 413
        form = site.post(f"/incidents/{incident}/acknowledge", {"comment": big})
        assert form.status_code == 413
        assert site.incident(incident).state == TRIGGERED


# ---- sign-in's next and the helpers ----------------------------------------------------------


class TestSignInNext:
    @pytest.mark.parametrize(
        ("given", "kept"),
        [
            ("/incidents", "/incidents"),
            ("/incidents/ack/abc.def", "/incidents/ack/abc.def"),
            ("/excursions?page=2", "/excursions?page=2"),
            ("//evil.example/x", None),
            ("/\\evil.example", None),
            ("https://evil.example/", None),
            ("evil", None),
            ("/a b", None),
            ("/\x00", None),
            ("/" + "a" * 3000, None),
            ("", None),
            ("/x\\y", None),
            ('/x"onmouseover="y', None),
        ],
    )
    def test_only_a_local_path_is_followed(self, given, kept):
        """Another host, a protocol-relative or backslashed path, controls: not followed."""
        assert local_path(given) == kept

    @pytest.mark.parametrize("given", ["//evil.example/x", "https://evil.example/", "/\\evil"])
    def test_a_foreign_next_leads_to_the_excursions(self, site, given):
        """After signing in with a foreign next, the app goes to its own start page."""
        client = site.client
        form = client.get("/login", params={"next": given}).text
        assert 'name="next"' not in form
        token = re.search(r'name="csrf_token" value="([^"]*)"', form)
        assert token
        signed = client.post(
            "/login",
            data={"username": "olga", "password": PASSWORD, "csrf_token": token[1], "next": given},
            follow_redirects=False,
        )
        assert signed.headers["location"] == "/excursions"

    def test_a_wrong_password_keeps_the_next_path(self, site):
        """The sign-in form shown again after a refusal still leads on to the link."""
        client = site.client
        form = client.get("/login", params={"next": "/incidents"}).text
        token = re.search(r'name="csrf_token" value="([^"]*)"', form)
        assert token
        refused = client.post(
            "/login",
            data={
                "username": "olga",
                "password": "wrong",
                "csrf_token": token[1],
                "next": "/incidents",
            },
        )
        assert refused.status_code == 401
        assert 'name="next" value="/incidents"' in refused.text


class TestHelpers:
    def test_durations_and_relative_times_read_well(self):
        """8 h, 1 h 30 min, 45 min; in 8 min, 12 min ago, just now."""
        assert duration_text(timedelta(hours=8)) == "8 h"
        assert duration_text(timedelta(minutes=90)) == "1 h 30 min"
        assert duration_text(timedelta(minutes=45)) == "45 min"
        assert relative(T0 + timedelta(minutes=8), T0) == "in 8 min"
        assert relative(T0 - timedelta(minutes=12), T0) == "12 min ago"
        assert relative(T0, T0) == "just now"
        assert relative(T0 - timedelta(days=3), T0) == "3 days ago"

    def test_a_local_end_time_in_the_spring_gap_is_refused(self):
        """02:30 on 29 March 2026 does not exist in Amsterdam; 03:30 does."""
        from zoneinfo import ZoneInfo

        from alerts.web import ActionRefusedError

        zone = ZoneInfo(ZONE)
        with pytest.raises(ActionRefusedError, match="does not exist"):
            parse_until("2026-03-29T02:30", zone)
        assert parse_until("2026-03-29T03:30", zone).isoformat() == "2026-03-29T01:30:00+00:00"


class TestServeWiring:
    def test_the_incidents_pieces_are_built_from_the_site(self, tmp_path):
        """With the link secret in the environment: an engine and a signer for the app."""
        from envmon.commands.records import incident_services

        rig = Rig(tmp_path)
        built = incident_services(
            rig.site, tmp_path / "site.yaml", environ={"LINK_SECRET": "s" * 32}
        )
        assert built.signer is not None
        assert built.shelve_max == timedelta(hours=8)

    def test_a_missing_link_secret_is_refused_with_its_name(self, tmp_path):
        """Links configured, secret not set: the app refuses to start, naming the variable."""
        from envmon.commands.records import incident_services
        from envmon.settings import SettingsError

        rig = Rig(tmp_path)
        with pytest.raises(SettingsError, match="LINK_SECRET"):
            incident_services(rig.site, tmp_path / "site.yaml", environ={})
