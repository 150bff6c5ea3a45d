"""The audit trail, the users pages, the incidents and the live status in Debian's Chromium.

``envmon excursions serve`` runs in its own process on a store with users, an open action
excursion (acknowledged, so the trail has people's entries), incidents opened and paged
by the alerting engine, and the embedded time series behind the status page. QA reads the
audit trail and filters it; an administrator adds a user through the form and sees the
confirmation. Every page is shot at 1280×800 and 1920×1080 into ``var/test-artifacts/``
(``ENVMON_TEST_ARTIFACTS``); no page may break the CSP or log a script error.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.delivery import CapturingNotifier, Outcome
from alerts.dispatcher import Dispatcher
from alerts.engine import AlertEngine
from alerts.links import LinkSigner
from alerts.rota import Rota
from alerts.routing import site_context
from alerts.store import IncidentRow
from envmon.config import load_site
from envmon.models import AlarmEvent, AlarmKind, Direction, Level
from envmon.netutil import free_port
from envmon.timeutil import utcnow
from excursions.db import ExcursionRow, store_engine
from excursions.lifecycle import Lifecycle
from excursions.migrate import upgrade
from excursions.records import RecordStore
from excursions.users import UserStore
from stream.timeseries.sqlite import SqliteTimeSeries
from tests.e2e.browser import ARTIFACTS, CHROMIUM, launch
from tests.integration.serving import serving
from tests.unit.excursions.conftest import FAST_HASHER

from .test_incidents_browser import SECRET, SECRET_ENV, SITE
from .test_status_browser import action_excursion, reading

playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "a long password 1"
NEW_PASSWORD = "a brand new password 9"
SIZES = ((1280, 800), (1920, 1080))

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


@dataclass
class Served:
    """The served app and the incident the pages show."""

    base: str
    incident_id: str


def alarm(sensor: str, excursion: str, value: float, level: Level = Level.ALERT) -> AlarmEvent:
    return AlarmEvent(
        event=AlarmKind.RAISED,
        sensor_id=sensor,
        area="cold-room",
        parameter="temperature",
        unit="degC",
        ts=utcnow(),
        level=level,
        direction=Direction.HIGH,
        value=value,
        limit=-70.0 if level is Level.ALERT else -60.0,
        excursion_id=excursion,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The app with records, users, incidents and readings, served from its own process."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site_path = tmp_path / "site.yaml"
    site_path.write_text(SITE % {"base": base, "secret_env": SECRET_ENV}, encoding="utf-8")
    site = load_site(site_path)
    assert site.alerting is not None
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    db = store_engine(url)
    upgrade(db)
    users = UserStore(db, hasher=FAST_HASHER)
    people = [
        ("olga", "Olga Operator", "operator"),
        ("quinn", "Quinn Reviewer", "qa"),
        ("vic", "Vic Viewer", "viewer"),
        ("ann", "Ann Administrator", "admin"),
    ]
    for name, full, role in people:
        users.add(name, full, role, PASSWORD, actor="admin", reason="initial users (CC-2026-014)")
    now = utcnow()
    RecordStore(db).apply(action_excursion("frz-2.temperature", now - timedelta(minutes=6)))
    with Session(db) as session:
        version = session.execute(select(ExcursionRow.row_version)).scalar_one()
    olga = users.authenticate("olga", PASSWORD)
    life = Lifecycle(db, users)
    life.acknowledge(
        "exc-frz-2.temperature", olga, "Door found ajar after restocking; closed.", version=version
    )
    data_dir = tmp_path / "data"
    series = SqliteTimeSeries(data_dir / "timeseries.sqlite3")  # serve reads it if it exists
    series.write(
        [
            reading("frz-1.temperature", now - timedelta(seconds=20), -75.04),
            reading("frz-2.temperature", now - timedelta(seconds=20), -58.5),
        ]
    )
    series.close()
    rota = Rota.from_config(site.alerting, site_tz=site.tzinfo, base_dir=tmp_path)
    engine = AlertEngine(site.alerting, rota, site_context(site), site_tz=site.tzinfo)
    notifier = CapturingNotifier(outcome=Outcome(True, "SMTP 250 2.0.0 Ok: queued"))
    dispatcher = Dispatcher(
        db,
        engine,
        notifier,
        site_name=site.name,
        site_tz=site.tzinfo,
        instance="browser-test",
        signer=LinkSigner(SECRET, valid_for=timedelta(hours=24)),
        environ={},
    )
    for event in (
        alarm("frz-2.temperature", "exc-frz-2.temperature", -58.5, Level.ACTION),
        alarm("frz-1.temperature", "exc-frz-1", -68.04),
    ):
        with Session(db) as session, session.begin():
            assert engine.handle(session, event)
    assert asyncio.run(dispatcher.dispatch()) > 0
    with Session(db) as session:
        incident_id = session.execute(
            select(IncidentRow.id).where(IncidentRow.excursion_id == "exc-frz-2.temperature")
        ).scalar_one()
    try:
        with serving(
            url,
            tmp_path / "serve.log",
            data_dir,
            port=port,
            env={
                SECRET_ENV: SECRET,
                "ENVMON_SITE": str(site_path),
                "ENVMON_TIMESERIES": "sqlite",
            },
        ):
            yield Served(base, incident_id)
    finally:
        db.dispose()


def sign_in(page: object, base: str, path: str, username: str) -> None:
    """Open ``path``, sign in on the way, and land on it."""
    page.goto(f"{base}{path}")  # type: ignore[attr-defined]
    page.fill("input[name=username]", username)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}{path}")  # type: ignore[attr-defined]


def shoot(page: object, name: str) -> None:
    """Screenshot the page (whole length) at each of ``SIZES``."""
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})  # type: ignore[attr-defined]
        page.screenshot(  # type: ignore[attr-defined]
            path=str(ARTIFACTS / f"{name}-{width}x{height}.png"), full_page=True
        )
        wide = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
        assert wide <= width, f"{name} scrolls sideways at {width} px"


def test_the_pages_read_as_one_product(served: Served) -> None:
    """QA reads and filters the trail, sees incidents and status; an admin adds a user."""
    base = served.base
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    failed: list[str] = []
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "response",
                lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            sign_in(page, base, "/audit", "quinn")
            assert "Audit trail intact" in page.inner_text("#chain")
            assert page.locator("#nav-audit.current").count() == 1
            assert page.locator("#nav-users").count() == 0
            rows = page.locator("#audit tbody tr")
            assert rows.count() > 10
            assert "Quinn Reviewer" in rows.first.inner_text()  # signing in: the newest entry
            shoot(page, "admin-audit")
            page.select_option("#f-actor", "olga")
            page.click("#audit-filters button[type=submit]")
            page.wait_for_url(re.compile(r".*/audit\?.*actor=olga.*"))
            listing = page.inner_text("#audit")
            assert "Door found ajar after restocking; closed." in listing
            assert "Olga Operator" in listing
            page.click("#audit a[href^='/excursions/']")
            page.wait_for_url(re.compile(r".*/excursions/exc-frz-2\.temperature$"))

            page.goto(f"{base}/incidents")
            assert page.locator("#open-incidents tbody tr").count() == 2
            shoot(page, "admin-incidents")
            page.goto(f"{base}/incidents/{served.incident_id}")
            assert page.inner_text("#incident-state") == "triggered"
            assert page.locator("#form-acknowledge").count() == 1
            shoot(page, "admin-incident")

            page.goto(f"{base}/status")
            page.wait_for_function(
                "() => document.getElementById('live').textContent.startsWith('Live: updated')",
                timeout=5000,
            )
            state = page.locator('tr[data-sensor="frz-2.temperature"] [data-field="state"]')
            assert state.inner_text() == "Action"
            shoot(page, "admin-status")

            page.click("nav button, .whoami button")  # sign out
            sign_in(page, base, "/users", "ann")
            assert page.locator("#nav-users.current").count() == 1
            assert page.locator("#nav-audit").count() == 0
            assert page.locator("#users tbody tr").count() == 4
            page.fill("#add-username", "nina")
            page.fill("#add-full-name", "Nina Newcomer")
            page.select_option("#add-role", "qa")
            page.fill("#add-password", NEW_PASSWORD)
            page.fill("#add-password-confirm", "not the same password")
            page.fill("#add-reason", "access request AR-17")
            page.click("#form-add button[type=submit]")
            assert "the confirmation does not match" in page.inner_text(".error")
            assert page.input_value("#add-full-name") == "Nina Newcomer"  # kept...
            assert page.input_value("#add-password") == ""  # ...but never the password
            page.fill("#add-password", NEW_PASSWORD)
            page.fill("#add-password-confirm", NEW_PASSWORD)
            page.click("#form-add button[type=submit]")
            page.wait_for_url(f"{base}/users?done=added")
            assert "User added" in page.inner_text("#notice")
            assert "Nina Newcomer" in page.inner_text("#user-nina")
            shoot(page, "admin-users")
            page.click("#user-olga a.button")
            page.wait_for_url(f"{base}/users/olga")
            shoot(page, "admin-user")
            page.fill("#disable-reason", "on leave until March")
            page.click("#form-disable button[type=submit]")
            page.wait_for_url(f"{base}/users/olga?done=disabled")
            assert page.inner_text("#user-state") == "Disabled"
            assert page.locator("#form-enable").count() == 1
        finally:
            browser.close()
    # The one refusal is the mismatched password (422); the browser asks for a favicon (404).
    assert {f.replace(base, "") for f in failed} <= {"422 /users", "404 /favicon.ico"}, failed
    expected = ("404 (Not Found)", "422 (Unprocessable")
    assert [text for text in problems if not any(e in text for e in expected)] == []
    for name in ("audit", "users", "incidents", "incident", "status"):
        for width, height in SIZES:
            assert (ARTIFACTS / f"admin-{name}-{width}x{height}.png").stat().st_size > 0
