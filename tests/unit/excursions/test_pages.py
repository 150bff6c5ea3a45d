"""The server-rendered pages: sign-in, list, record page with the role's actions, refusals."""

from __future__ import annotations

import html as html_module
import io
import re
from typing import Any

import pypdf
import pytest
from fastapi.testclient import TestClient
from reportlab.platypus.doctemplate import LayoutError
from sqlalchemy import Engine

from envmon.testing import DEFAULT_T0, FakeClock
from excursions import report
from excursions.sessions import Sessions
from excursions.users import MAX_FAILED
from excursions.web.api import COOKIE
from excursions.web.app import create_app
from excursions.web.security import csrf_token
from stream.timeseries.sqlite import SqliteTimeSeries

from .conftest import app_services, stored_excursion
from .lifecycle_cases import ASSESSMENT

PASSWORD = "a long password 1"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


class FormClient(TestClient):
    """A client that sends each form's CSRF token, as the page's own form would.

    Tests of the CSRF defence itself pass their own ``csrf_token`` (or a plain client).
    """

    def post(self, url: str, *, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        if data is not None and "csrf_token" not in data:
            data = {**data, "csrf_token": self.token(url)}
        return super().post(url, data=data, **kwargs)

    def token(self, url: str = "") -> str:
        """Return the token a form posting to ``url`` carries (the sign-in form's its own)."""
        if url == "/login":
            match = CSRF.search(self.get("/login").text)
            assert match, "the sign-in form has no CSRF token"
            return match.group(1)
        session = self.cookies.get(COOKIE)
        return csrf_token(session) if session else ""


@pytest.fixture
def site(engine: Engine, series: SqliteTimeSeries) -> tuple[TestClient, str]:
    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    for name, role in [("olga", "operator"), ("quinn", "qa"), ("vic", "viewer"), ("ann", "admin")]:
        users.add(name, f"{name.title()} Example", role, PASSWORD, actor="admin", reason="t")
    services = app_services(engine, users, clock, series=series)
    return FormClient(create_app(services, site_name="Plant A")), record_id


def sign_in(client: TestClient, username: str) -> None:
    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text  # followed the 303 to the list
    assert "Excursions" in response.text


SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.IGNORECASE | re.DOTALL)


def only_own_scripts(html: str) -> bool:
    """Return whether every script of a page is a file of the app's own (no inline code)."""
    found = SCRIPT.findall(html)
    own = [a for a, body in found if re.fullmatch(r' src="/static/[\w./-]+" defer', a) and not body]
    return len(own) == len(found) == html.lower().count("<script")


def version_on(html: str) -> str:
    match = re.search(r'name="version" value="(\d+)"', html)
    assert match, "the page has no action form"
    return match.group(1)


def test_pages_redirect_to_sign_in_without_a_session(site: tuple[TestClient, str]) -> None:
    client, record_id = site
    for path in ("/excursions", f"/excursions/{record_id}"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
    bad = client.post("/login", data={"username": "olga", "password": "nope"})
    assert bad.status_code == 401
    assert "wrong password" in bad.text


def test_list_and_record_page_for_a_viewer(site: tuple[TestClient, str]) -> None:
    client, record_id = site
    sign_in(client, "vic")
    listing = client.get("/excursions")
    assert f'href="/excursions/{record_id}"' in listing.text
    assert "Plant A" in listing.text
    page = client.get(f"/excursions/{record_id}")
    assert page.status_code == 200
    assert "Audit trail" in page.text
    assert "None for your role in this state." in page.text
    assert '<form method="post" action="/excursions/' not in page.text  # no action forms
    # The trend: an inline SVG with both limit lines and the excursion shaded.
    assert '<svg id="trend"' in page.text or 'id="trend"' in page.text
    for part in ("limit action", "limit alert", "excursion-span", "peak"):
        assert part in page.text
    assert only_own_scripts(page.text)
    # The timeline: the core's alarms, in UTC and in the site's zone.
    assert 'id="timeline"' in page.text
    for title in ("alarm raised", "alarm escalated", "alarm cleared"):
        assert title in page.text
    assert "Times in Europe/Berlin" in page.text


def test_the_qa_flow_through_the_pages(site: tuple[TestClient, str]) -> None:
    client, record_id = site
    url = f"/excursions/{record_id}"
    sign_in(client, "olga")
    page = client.get(url).text
    assert 'id="form-acknowledge"' in page
    assert 'id="form-close"' not in page
    done = client.post(f"{url}/acknowledge", data={"version": version_on(page), "text": "seen"})
    assert done.status_code == 200
    assert 'id="qa-state">Acknowledged<' in done.text
    sign_in(client, "quinn")
    page = client.get(url).text
    client.post(f"{url}/start_review", data={"version": version_on(page), "reason": "review"})
    page = client.get(url).text
    assessed = client.post(
        f"{url}/assess", data={"version": version_on(page), "reason": "assessed", **ASSESSMENT}
    )
    assert "No impact on product quality." in assessed.text
    wrong = client.post(
        f"{url}/close",
        data={
            "version": version_on(assessed.text),
            "username": "quinn",
            "password": "wrong",
            "meaning": "approved",
            "reason": "ok",
        },
    )
    assert wrong.status_code == 422
    assert "wrong user id or password" in wrong.text
    closed = client.post(
        f"{url}/close",
        data={
            "version": version_on(assessed.text),
            "username": "quinn",
            "password": PASSWORD,
            "meaning": "approved",
            "reason": "no impact",
        },
    )
    assert closed.status_code == 200
    assert 'id="qa-state">Closed<' in closed.text
    signatures = closed.text[closed.text.index('id="signatures"') :]
    assert "Quinn Example" in signatures
    assert "Approved" in signatures
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T", signatures)
    pdf = client.get(f"{url}/report.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Quinn Example" in text
    assert "Plant A" in text


def test_a_stale_form_and_an_over_long_comment_change_nothing(
    site: tuple[TestClient, str],
) -> None:
    client, record_id = site
    url = f"/excursions/{record_id}"
    sign_in(client, "olga")
    loaded = version_on(client.get(url).text)
    assert (
        client.post(f"{url}/comment", data={"version": loaded, "text": "first"}).status_code == 200
    )
    stale = client.post(f"{url}/acknowledge", data={"version": loaded, "text": "second"})
    assert stale.status_code == 409
    assert "changed since the page was loaded" in stale.text
    current = version_on(stale.text)
    long = client.post(f"{url}/comment", data={"version": current, "text": "x" * 5000})
    assert long.status_code == 422
    assert "at most 4000 characters" in long.text
    assert version_on(long.text) == current


def test_a_viewer_posting_an_action_gets_403_and_a_forged_id_404(
    site: tuple[TestClient, str],
) -> None:
    client, record_id = site
    sign_in(client, "vic")
    refused = client.post(
        f"/excursions/{record_id}/close",
        data={
            "version": "1",
            "username": "vic",
            "password": PASSWORD,
            "meaning": "approved",
            "reason": "x",
        },
    )
    assert refused.status_code == 403
    assert client.get("/excursions/forged-123").status_code == 404


def test_html_is_escaped(site: tuple[TestClient, str]) -> None:
    client, record_id = site
    url = f"/excursions/{record_id}"
    sign_in(client, "olga")
    page = client.get(url).text
    client.post(f"{url}/comment", data={"version": version_on(page), "text": "<script>x</script>"})
    html = client.get(url).text
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;" in html


def test_security_headers_and_no_inline_style_or_script(site: tuple[TestClient, str]) -> None:
    """The pages work under a strict CSP: the stylesheet is the app's own, nothing inline."""
    client, record_id = site
    sign_in(client, "vic")
    page = client.get(f"/excursions/{record_id}")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<style" not in page.text
    assert " style=" not in page.text
    assert only_own_scripts(page.text)
    css = client.get("/static/app.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "font-family" in css.text
    assert client.get("/api/v1/me").headers["x-frame-options"] == "DENY"


def test_a_closed_record_page_refuses_a_posted_comment(site: tuple[TestClient, str]) -> None:
    """The page offers no comment form on a closed record, and a forged POST is refused (409)."""
    client, record_id = site
    url = f"/excursions/{record_id}"
    sign_in(client, "olga")
    page = client.get(url).text
    client.post(f"{url}/acknowledge", data={"version": version_on(page), "text": "seen"})
    sign_in(client, "quinn")
    page = client.get(url).text
    client.post(f"{url}/start_review", data={"version": version_on(page), "reason": "review"})
    page = client.get(url).text
    page = client.post(
        f"{url}/assess", data={"version": version_on(page), "reason": "assessed", **ASSESSMENT}
    ).text
    signature = {"username": "quinn", "password": PASSWORD, "meaning": "approved", "reason": "ok"}
    page = client.post(f"{url}/close", data={"version": version_on(page), **signature}).text
    assert 'id="form-comment"' not in page
    loaded = version_on(page)  # the reopen form's
    sign_in(client, "olga")
    refused = client.post(f"{url}/comment", data={"version": loaded, "text": "late"})
    assert refused.status_code == 409
    assert "closed and signed" in refused.text
    assert "late" not in refused.text.split('id="audit"')[1]


@pytest.mark.parametrize("page", ["9223372036854775807", "0", "x", "9" * 5000])
def test_a_page_number_out_of_range_reads_well(site: tuple[TestClient, str], page: str) -> None:
    """The list page refuses a page number it cannot show with a sentence, not a 500."""
    client, _ = site
    client = FormClient(client.app, raise_server_exceptions=False)
    sign_in(client, "vic")
    r = client.get("/excursions", params={"page": page})
    assert r.status_code == 422
    assert "page: a whole number from 1 to" in r.text
    assert client.get("/excursions", params={"page": "999999"}).status_code == 200


def test_a_form_error_reads_well_and_never_echoes_the_password(
    site: tuple[TestClient, str],
) -> None:
    """An over-long sign-in field gives the sign-in page with a sentence, not JSON with input."""
    client, _ = site
    secret = "my secret password that is far too long " * 6
    r = client.post("/login", data={"username": "olga", "password": secret})
    assert r.status_code == 422
    assert "text/html" in r.headers["content-type"]
    assert "Password: at most 200 characters" in r.text
    assert "my secret" not in r.text


def test_forms_carry_the_sessions_token_and_forged_posts_are_refused(
    site: tuple[TestClient, str],
) -> None:
    """A post without the session's token, or from another origin, does nothing (403)."""
    client, record_id = site
    url = f"/excursions/{record_id}"
    sign_in(client, "olga")
    page = client.get(url).text
    token = client.token()  # type: ignore[attr-defined]
    assert set(CSRF.findall(page)) == {token}  # every form: the sign-out and each action
    v = version_on(page)
    for data, headers in [
        ({"csrf_token": ""}, {}),
        ({"csrf_token": "forged"}, {}),
        ({"csrf_token": token}, {"Origin": "http://127.0.0.1:9999"}),
        ({"csrf_token": token}, {"Origin": "null"}),
    ]:
        r = client.post(
            f"{url}/comment", data={**data, "version": v, "text": "forged"}, headers=headers
        )
        assert r.status_code == 403, r.text
        assert "did not come from this site" in r.text
        assert "forged" not in r.text.split("</nav>")[-1].split("</p>", 1)[-1]
    assert version_on(client.get(url).text) == v
    refused = client.post("/logout", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert client.get("/excursions").status_code == 200  # still signed in
    assert client.post("/logout", data={}).status_code == 200  # the form's token: signed out


def test_a_forged_sign_in_is_refused(site: tuple[TestClient, str]) -> None:
    """Sign-in needs the token of the form's own cookie and the app's origin (login CSRF)."""
    client, _ = site
    fields = {"username": "vic", "password": PASSWORD}
    stranger = TestClient(client.app)  # never loaded the form: no cookie, no token
    r = stranger.post("/login", data=fields, follow_redirects=False)
    assert r.status_code == 403
    assert "did not come from this site" in r.text
    assert COOKIE not in r.cookies
    r = client.post(
        "/login", data=fields, headers={"Origin": "http://127.0.0.1:9999"}, follow_redirects=False
    )
    assert r.status_code == 403
    assert COOKIE not in r.cookies
    r = client.post("/login", data=fields, follow_redirects=False)
    assert r.status_code == 303


def test_a_throttled_sign_in_reads_well(site: tuple[TestClient, str]) -> None:
    """The sign-in page says when to try again; it does not say whether the user exists."""
    client, _ = site
    for _ in range(MAX_FAILED):
        assert (
            client.post("/login", data={"username": "olga", "password": "nope"}).status_code == 401
        )
    r = client.post("/login", data={"username": "olga", "password": PASSWORD})
    assert r.status_code == 429
    assert "Not signed in: too many failed attempts for this user id from your address" in r.text
    assert "retry-after" in r.headers


def test_a_report_that_cannot_be_laid_out_reads_well(
    site: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should reportlab ever refuse a layout, the user gets a sentence, not a traceback."""
    client, record_id = site

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise LayoutError("a flowable too large")

    monkeypatch.setattr(report, "write_report", refuse)
    sign_in(client, "vic")
    r = client.get(f"/excursions/{record_id}/report.pdf")
    assert r.status_code == 500
    assert "could not be laid out" in r.text
    assert "flowable" not in r.text


# -- How the pages read: values, times, labels, filters, refusals, confirmations ----------

FRIDGE_SITE = """
site: {name: Plant A, timezone: Europe/Berlin}
areas:
  - id: cold-store
    name: Cold store 2
    instruments:
      - id: fridge-1
        name: Fridge 4 °C 1
        kind: fridge
        channels:
          - parameter: temperature
            sensor_id: fridge-1.temperature
            unit: degC
            limits: {alert_high: 8, action_high: 10, delay: 2m, deadband: 0.5, stale_after: 10m}
"""
#: A float with more digits after the point than the fridge is shown with (one).
RAW_FLOAT = re.compile(r"\d\.\d{2,}")
#: Every time on the pages: site time to the second, zone named.
SITE_TIME = re.compile(r"\b20\d\d-\d\d-\d\d \d\d:\d\d:\d\d CES?T\b")
OTHER_TIME = re.compile(r"\d\d:\d\d(:\d\d)?(\.\d+)?([+-]\d\d:\d\d|Z)\b|T\d\d:\d\d")


@pytest.fixture
def named(engine: Engine, series: SqliteTimeSeries) -> tuple[FormClient, str, str]:
    """The app with the fridge's site configuration; the excursion's and the gap's ids."""
    from envmon.config import parse_site
    from envmon.models import DataGap

    from .test_records import core_records

    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    gap_id = next(r.id for r in core_records() if isinstance(r, DataGap))
    users.add("quinn", "Quinn Example", "qa", PASSWORD, actor="admin", reason="t")
    users.add("olga", "Olga Example", "operator", PASSWORD, actor="admin", reason="t")
    site = parse_site(FRIDGE_SITE)
    services = app_services(engine, users, clock, series=series, display=site.display(), site=site)
    return FormClient(create_app(services, site_name="Plant A")), record_id, gap_id


def visible_text(html: str) -> str:
    """Return a page's text as read: no tags, attributes (hover texts) or scripts."""
    html = re.sub(r"<(script|style|svg)\b.*?</\1>", " ", html, flags=re.DOTALL | re.IGNORECASE)
    return html_module.unescape(re.sub(r"<[^>]+>", " ", html))


def record_page_as(named: tuple[FormClient, str, str], username: str) -> tuple[FormClient, str]:
    """Sign ``username`` in; return the client and the excursion's page path."""
    client, record_id, _gap_id = named
    sign_in(client, username)
    return client, f"/excursions/{record_id}"


def form_of(html: str, name: str) -> str:
    """Return the page from the form ``form-<name>`` on."""
    return html[html.index(f'id="form-{name}"') :]


def under_review(client: FormClient, url: str) -> str:
    """Acknowledge and start the review of a record as the signed-in QA user; the page."""
    page = client.get(url).text
    page = client.post(f"{url}/acknowledge", data={"version": version_on(page), "text": "t"}).text
    return str(
        client.post(f"{url}/start_review", data={"version": version_on(page), "reason": "r"}).text
    )


def readable(text: str) -> None:
    """Assert a page's text has no raw float, no ISO or UTC-offset time, and site times."""
    assert not RAW_FLOAT.search(text), RAW_FLOAT.search(text)
    assert not OTHER_TIME.search(text), OTHER_TIME.search(text)
    assert SITE_TIME.search(text)


def test_the_list_reads_well_and_filters_by_choice(named: tuple[FormClient, str, str]) -> None:
    client, record_id, gap_id = named
    sign_in(client, "quinn")
    html = client.get("/excursions").text
    text = visible_text(html)
    readable(text.split('id="records"')[-1])
    assert "Fridge 4 °C 1" in text  # the instrument's name, for the excursion and the gap
    assert text.count("Fridge 4 °C 1") >= 3  # filter option, excursion row, gap row
    assert "fridge-1.temperature" not in text.split("QA state")[-1]  # no sensor id as name
    assert "Cold store 2" in text
    assert "12.0 °C" in text  # the peak, with its unit
    assert "Action excursion" in text
    assert "Data gap" in text
    assert "Under review" in text  # the QA state filter's options, as people write them
    for name in ("area", "instrument", "parameter", "sensor", "kind", "level", "state"):
        assert f'<select id="f-{name}" name="{name}">' in html
    assert '<input id="f-start_from" type="date" name="start_from"' in html
    assert '<script src="/static/list.js" defer></script>' in html
    gaps = client.get("/excursions", params={"kind": "data_gap"}).text
    assert f'href="/excursions/{gap_id}"' in gaps
    assert f'href="/excursions/{record_id}"' not in gaps
    assert '<option value="data_gap" selected>' in gaps
    day = client.get("/excursions", params={"start_from": "2026-01-05", "start_to": "2026-01-05"})
    assert f'href="/excursions/{record_id}"' in day.text
    later = client.get("/excursions", params={"start_from": "2026-01-06"})
    assert "No record matches these filters." in later.text
    for name, value in (("state", "<b>x</b>"), ("start_from", "2026-13-45"), ("level", "x")):
        refused = client.get("/excursions", params={name: value})
        assert refused.status_code == 422, name
        assert "<b>x" not in refused.text


def test_the_list_refresh_does_not_keep_the_session_alive(
    named: tuple[FormClient, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """list.js's poll reads the session without touching it; a plain load touches it."""
    client, _record_id, _gap_id = named
    sign_in(client, "quinn")
    touches: list[bool] = []
    original = Sessions.user

    def spy(self: Sessions, token: str, *, touch: bool = True) -> Any:
        touches.append(touch)
        return original(self, token, touch=touch)

    monkeypatch.setattr(Sessions, "user", spy)
    assert client.get("/excursions", headers={"X-Envmon-Poll": "1"}).status_code == 200
    assert touches == [False]
    assert client.get("/excursions").status_code == 200
    assert touches == [False, True]


def test_the_record_page_reads_well(named: tuple[FormClient, str, str]) -> None:
    client, record_id, _gap_id = named
    sign_in(client, "quinn")
    html = client.get(f"/excursions/{record_id}").text
    assert "<title>Fridge 4 °C 1 · Temperature · Action excursion · Plant A</title>" in html
    text = visible_text(html)
    readable(text)
    assert "12.0 °C" in text  # peak
    assert "10.0 °C" in text  # the action limit, with its unit
    assert "°C·s" in text  # the integral's unit
    assert "4 min" in text  # the duration in words
    assert "alert > 8.0 °C · action > 10.0 °C" in text
    assert "Action level is reached after 2 min beyond the action limit (delay)" in text
    assert "back inside its limit by 0.5 °C (deadband)" in text
    assert 'title="UTC: 2026-01-05 08:01:00 UTC"' in html  # the start, UTC on hover
    assert "Excursion status" in text  # audit fields named
    assert "core_status" not in text
    for raw in ("impact_products", "root_cause_category", "under_review"):
        assert raw not in text


def test_a_data_gap_page_shows_the_gap(named: tuple[FormClient, str, str]) -> None:
    client, _record_id, gap_id = named
    sign_in(client, "quinn")
    html = client.get(f"/excursions/{gap_id}").text
    text = visible_text(html)
    readable(text)
    assert "<title>Fridge 4 °C 1 · Temperature · Data gap · Plant A</title>" in html
    for name in ("Gap start", "Gap end", "Last reading before", "First reading after"):
        assert name in text
    metrics = text.split("Trend")[0]
    for leftover in ("Peak", "Time beyond limit", "Integral", " s\n", ": at"):
        assert leftover not in metrics
    assert "no reading arrives for 10 min (stale-data timeout)" in text
    assert "5.0 °C" in text  # the readings either side of the gap


def test_without_a_site_the_list_offers_what_the_store_holds(
    site: tuple[TestClient, str],
) -> None:
    client, _record_id = site
    sign_in(client, "vic")
    html = client.get("/excursions").text
    assert '<option value="cold-store">cold-store</option>' in html
    assert '<option value="fridge-1.temperature">fridge-1.temperature</option>' in html
    record = client.get(f"/excursions/{_record_id}").text
    assert "the app was started without the site configuration" in record


def test_the_assessment_form_keeps_values_after_a_refusal(
    named: tuple[FormClient, str, str],
) -> None:
    client, url = record_page_as(named, "quinn")
    page = under_review(client, url)
    form = form_of(page, "assess")
    assert "Impact on products" in form
    assert "Root cause category" in form
    assert '<select id="qa-root_cause_category" name="root_cause_category">' in form
    assert '<option value="human_error">Human error</option>' in form
    assert form.count('class="req"') >= 4  # three fields needed to close, and the reason
    typed = {**ASSESSMENT, "capa_ref": "CAPA-7 <b>"}
    refused = client.post(f"{url}/assess", data={"version": version_on(page), **typed})
    assert refused.status_code == 422  # no reason given
    assert "a reason is required" in refused.text
    form = form_of(refused.text, "assess")
    assert 'id="form-error"' in form
    assert "CAR-T lot for patient 0042</textarea>" in form
    assert '<option value="human_error" selected>' in form
    assert 'value="CAPA-7 &lt;b&gt;"' in form  # kept, escaped
    done = client.post(f"{url}/assess", data={"version": version_on(page), "reason": "ok", **typed})
    assert done.status_code == 200
    assert str(done.url).endswith("?done=assess")
    assert "Assessment saved." in done.text
    assert 'id="notice"' in done.text


def test_a_refused_signature_keeps_all_but_the_password(
    named: tuple[FormClient, str, str],
) -> None:
    client, url = record_page_as(named, "quinn")
    page = under_review(client, url)
    signature = {
        "username": "quinn",
        "password": "not my password at all",
        "meaning": "reviewed",
        "reason": "reviewed the excursion",
    }
    refused = client.post(f"{url}/close", data={"version": version_on(page), **signature})
    assert refused.status_code == 422
    form = form_of(refused.text, "close")
    assert 'value="reviewed the excursion"' in form
    assert '<option value="reviewed" selected>' in form
    assert "not my password at all" not in refused.text


def test_a_confirmation_after_each_action_and_never_an_echo(
    named: tuple[FormClient, str, str],
) -> None:
    client, url = record_page_as(named, "olga")
    page = client.get(url).text
    assert 'id="notice"' not in page
    done = client.post(f"{url}/acknowledge", data={"version": version_on(page), "text": "seen"})
    assert "Acknowledged. Your comment is in the audit trail." in done.text
    commented = client.post(f"{url}/comment", data={"version": version_on(done.text), "text": "x"})
    assert "Comment added to the audit trail." in commented.text
    forged = client.get(url, params={"done": "<script>alert(1)</script>"}).text
    assert 'id="notice"' not in forged
    assert "alert(1)" not in forged


@pytest.mark.parametrize(("username", "start"), [("ann", "/users"), ("quinn", "/excursions")])
def test_each_role_starts_where_it_may_read(
    site: tuple[TestClient, str], username: str, start: str
) -> None:
    """An administrator may not read records: signing in and / lead to the users page."""
    client, _ = site
    client.cookies.clear()
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD}, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, start)
    home = client.get("/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (303, start)
    assert client.get(start).status_code == 200
