"""The QA app in Debian's Chromium, driven by Playwright, against ``envmon excursions serve``.

An operator acknowledges with a comment; QA reviews, assesses, signs and closes; the
signature is on the page and in the PDF, beside the trend chart (from the embedded time
series) and the timeline; a viewer sees no action and gets 403 from the close route.
Screenshots of the list and the record page are kept in ``var/test-artifacts/``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest
from argon2 import PasswordHasher

from envmon.testing import DEFAULT_T0, FakeClock
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.users import UserStore
from stream.timeseries import SqliteTimeSeries
from tests.integration.serving import serving
from tests.unit.excursions.conftest import stored_excursion
from tests.unit.excursions.test_lifecycle import ASSESSMENT
from tests.unit.excursions.test_records import core_readings

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path(os.environ.get("ENVMON_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("ENVMON_TEST_ARTIFACTS", "var/test-artifacts"))
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
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            sign_in(page, base, "olga")
            page.screenshot(path=str(ARTIFACTS / "excursion-list.png"), full_page=True)
            page.click(f"a[href='/excursions/{record_id}']")
            page.fill("#form-acknowledge textarea[name=text]", "Door closed again, QA informed")
            page.click("#form-acknowledge button[type=submit]")
            assert page.inner_text("#qa-state") == "acknowledged"
            assert "Door closed again" in page.inner_text("#audit")

            page.click("nav button")  # sign out
            sign_in(page, base, "quinn")
            page.goto(record)
            page.fill("#form-start_review input[name=reason]", "review")
            page.click("#form-start_review button[type=submit]")
            for name, value in ASSESSMENT.items():
                page.fill(f"#form-assess textarea[name={name}]", value)
            page.fill("#form-assess input[name=reason]", "assessment done")
            page.click("#form-assess button[type=submit]")
            page.fill("#form-close input[name=username]", "quinn")
            page.fill("#form-close input[name=password]", PASSWORD)
            page.select_option("#form-close select[name=meaning]", "approved")
            page.fill("#form-close input[name=reason]", "no impact on the product")
            page.click("#form-close button[type=submit]")
            assert page.inner_text("#qa-state") == "closed"
            signatures = page.inner_text("#signatures")
            assert "Quinn Example" in signatures
            assert "approved" in signatures
            assert page.locator("#trend .limit.action").count() >= 1  # the chart is drawn
            assert page.locator("#trend-span").is_visible()
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
            assert "signed (approved)" in text  # the timeline

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
