"""The QA app in Debian's Chromium, driven by Playwright, against ``envmon excursions serve``.

An operator acknowledges with a comment; QA reviews, assesses, signs and closes; the
signature is on the page and in the PDF, beside the trend chart (from the embedded time
series) and the timeline; a viewer sees no action and gets 403 from the close route.
Screenshots of the list and the record page are kept in ``var/test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import html
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest
from argon2 import PasswordHasher

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.users import UserStore
from stream.timeseries.sqlite import SqliteTimeSeries
from tests.e2e.browser import ARTIFACTS, CHROMIUM, launch
from tests.integration.serving import serving
from tests.unit.excursions.conftest import stored_excursion
from tests.unit.excursions.lifecycle_cases import ASSESSMENT
from tests.unit.excursions.test_records import core_readings

playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "a long password 1"

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The app served from its own process on a store with records and users."""
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    engine = store_engine(url)
    upgrade(engine)
    record_id, _ = stored_excursion(engine, FakeClock(DEFAULT_T0))  # records and alarms
    series = SqliteTimeSeries(tmp_path / "data" / "timeseries.sqlite3")  # the worker's store
    series.write(core_readings())
    series.close()
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    for name, role in [("olga", "operator"), ("quinn", "qa"), ("vic", "viewer")]:
        users.add(name, f"{name.title()} Example", role, PASSWORD, actor="admin", reason="test")
    engine.dispose()
    with serving(url, tmp_path / "serve.log", tmp_path / "data") as (base, _server):
        yield base, record_id


def sign_in(page: object, base: str, username: str) -> None:
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.fill("input[name=username]", username)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}/excursions")  # type: ignore[attr-defined]


def test_operator_acknowledges_qa_signs_viewer_cannot(app_url: tuple[str, str]) -> None:
    base, record_id = app_url
    record = f"{base}/excursions/{record_id}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            sign_in(page, base, "olga")
            page.screenshot(path=str(ARTIFACTS / "excursion-list.png"), full_page=True)
            page.click(f"a[href='/excursions/{record_id}']")
            page.fill("#form-acknowledge textarea[name=text]", "Door closed again, QA informed")
            page.click("#form-acknowledge button[type=submit]")
            assert page.inner_text("#qa-state") == "Acknowledged"
            assert "Door closed again" in page.inner_text("#audit")

            page.click("nav button")  # sign out
            sign_in(page, base, "quinn")
            page.goto(record)
            page.fill("#form-start_review input[name=reason]", "review")
            page.click("#form-start_review button[type=submit]")
            for name, value in ASSESSMENT.items():
                if name == "root_cause_category":
                    page.select_option(f"#form-assess select[name={name}]", value)
                else:
                    page.fill(f"#form-assess textarea[name={name}]", value)
            page.fill("#form-assess input[name=reason]", "assessment done")
            page.click("#form-assess button[type=submit]")
            page.fill("#form-close input[name=username]", "quinn")
            page.fill("#form-close input[name=password]", PASSWORD)
            page.select_option("#form-close select[name=meaning]", "approved")
            page.fill("#form-close input[name=reason]", "no impact on the product")
            page.click("#form-close button[type=submit]")
            assert page.inner_text("#qa-state") == "Closed"
            signatures = page.inner_text("#signatures")
            assert "Quinn Example" in signatures
            assert "Approved" in signatures
            assert page.locator("#trend .limit.action").count() >= 1  # the chart is drawn
            # The interactive chart (trend.js) replaces the SVG once drawn; either is shown.
            page.locator(
                "#trend-plot:visible canvas, #trend-static:visible #trend-span"
            ).first.wait_for()
            timeline = page.inner_text("#timeline")
            for entry in ("alarm raised", "acknowledged", "closed", "signed (approved)"):
                assert entry in timeline
            page.screenshot(path=str(ARTIFACTS / "excursion-page.png"), full_page=True)
            href = page.get_attribute("#report-pdf", "href")  # the page's PDF button
            pdf = page.request.get(f"{base}{href}")
            assert pdf.status == 200
            (ARTIFACTS / "excursion-report.pdf").write_bytes(pdf.body())
            report = pypdf.PdfReader(io.BytesIO(pdf.body()))
            text = "\n".join(p.extract_text() for p in report.pages)
            assert "Quinn Example" in text
            assert "approved" in text
            assert "action high 10" in text  # the chart's limit line
            assert "Signed (approved)" in text  # the timeline

            page.click("nav button")
            sign_in(page, base, "vic")
            page.goto(record)
            assert page.locator("#form-close").count() == 0
            assert page.locator("button", has_text="close").count() == 0
            refused = page.request.post(
                f"{record}/close",
                form={
                    "version": "1",
                    "username": "vic",
                    "password": PASSWORD,
                    "meaning": "approved",
                    "reason": "x",
                },
            )
            assert refused.status == 403
        finally:
            browser.close()
    assert (ARTIFACTS / "excursion-list.png").stat().st_size > 0
    assert (ARTIFACTS / "excursion-page.png").stat().st_size > 0


@contextlib.contextmanager
def attacker_site(pages: dict[str, str]) -> Iterator[str]:
    """Serve ``pages`` (path → HTML) from another port on 127.0.0.1: same site, other origin."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def auto_post(action: str, fields: dict[str, str]) -> str:
    """An attacker's page that posts a form to ``action`` as soon as it loads."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return (
        f'<!doctype html><form id="f" method="post" action="{html.escape(action)}">{inputs}'
        "</form><script>document.getElementById('f').submit()</script>"
    )


def test_a_page_on_another_port_cannot_post_a_comment_or_a_sign_in(
    app_url: tuple[str, str],
) -> None:
    """CSRF from the same site (127.0.0.1, another port): comment, JSON comment, sign-in refused."""
    base, record_id = app_url
    record = f"{base}/excursions/{record_id}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            sign_in(page, base, "olga")
            page.goto(record)
            version = page.get_attribute("#form-comment input[name=version]", "value") or "0"
            forged_json = (
                "<!doctype html><script>fetch("
                f"'{base}/api/v1/excursions/{record_id}/comments', {{method: 'POST',"
                " credentials: 'include', mode: 'no-cors', headers: {'Content-Type':"
                f" 'text/plain'}}, body: JSON.stringify({{comment: 'forged by fetch', version:"
                f" {version}}})}}).finally(() => {{document.title = 'sent'}})</script>"
            )
            attack = {
                "/comment.html": auto_post(
                    f"{record}/comment", {"version": version, "text": "forged comment"}
                ),
                "/fetch.html": forged_json,
                "/login.html": auto_post(
                    f"{base}/login", {"username": "vic", "password": PASSWORD}
                ),
            }
            with attacker_site(attack) as evil:
                with page.expect_response(f"{record}/comment") as posted:
                    page.goto(f"{evil}/comment.html")
                assert posted.value.status == 403
                page.wait_for_load_state()
                assert "did not come from this site" in page.inner_text(".error")
                page.screenshot(path=str(ARTIFACTS / "csrf-refused-comment.png"), full_page=True)
                page.goto(f"{evil}/fetch.html")
                page.wait_for_function("document.title === 'sent'")

                stranger = browser.new_page()  # another browser context: not signed in
                with stranger.expect_response(f"{base}/login") as signed:
                    stranger.goto(f"{evil}/login.html")
                assert signed.value.status == 403
                stranger.wait_for_load_state()
                stranger.screenshot(path=str(ARTIFACTS / "csrf-refused-login.png"), full_page=True)
            page.goto(record)
            audit = page.inner_text("#audit")
            assert "forged" not in audit
            assert page.inner_text("#qa-state") == "Open"
            # Login CSRF: the stranger's browser was not signed in to the attacker's account.
            stranger.goto(f"{base}/excursions")
            assert stranger.url == f"{base}/login"
            assert "Vic Example" not in stranger.inner_text("nav")
            # Her own forms still work (same origin, with the token).
            page.fill("#form-comment textarea[name=text]", "a real comment")
            page.click("#form-comment button[type=submit]")
            assert "a real comment" in page.inner_text("#audit")
        finally:
            browser.close()


def test_repeated_wrong_passwords_slow_that_browser_down_with_a_clear_page(
    app_url: tuple[str, str],
) -> None:
    """Five wrong passwords: the sign-in page says when to try again (429), nothing more."""
    base, _record_id = app_url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(f"{base}/login")
            for password in ["wrong password"] * 5 + [PASSWORD]:
                page.fill("input[name=username]", "quinn")
                page.fill("input[name=password]", password)
                with page.expect_response(f"{base}/login") as answer:
                    page.click("button[type=submit]")
            assert answer.value.status == 429
            page.wait_for_load_state()
            message = page.inner_text(".error")
            assert "too many failed attempts for this user id from your address" in message
            assert "try again after" in message
            page.screenshot(path=str(ARTIFACTS / "sign-in-throttled.png"), full_page=True)
        finally:
            browser.close()
