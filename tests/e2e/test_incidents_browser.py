"""Acknowledge by link in Debian's Chromium, driven by Playwright, against the served QA app.

The app runs in its own process (``envmon.commands.records.serve`` with the site's
``alerting:`` section); the test opens incidents with the alerting engine on the same store
and lets the dispatcher compose the pages (captured, not sent). An operator follows the
acknowledge link of the captured page, signs in on the way, types a comment and
acknowledges; the incidents page shows who did; the link then says it was used. A viewer
following a link is told why not. Screenshots of the incidents list and of the incident's
page are kept in ``var/test-artifacts/`` (``ENVMON_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from alerts.delivery import CapturingNotifier, Outcome
from alerts.dispatcher import Dispatcher
from alerts.engine import AlertEngine
from alerts.links import LinkSigner
from alerts.rota import Rota
from alerts.routing import site_context
from envmon.config import SiteConfig, load_site
from envmon.models import AlarmEvent, AlarmKind, Direction, Level, SystemEvent, SystemEventKind
from envmon.netutil import free_port
from envmon.timeutil import utcnow
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.users import UserStore
from tests.e2e.browser import ARTIFACTS, CHROMIUM, launch
from tests.integration.serving import serving
from tests.unit.alerts.sites import freezer_site

playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "a long password 1"
SECRET_ENV = "ENVMON_TEST_LINK_SECRET"
SECRET = "a test secret for acknowledge links"
LINK = re.compile(r"Acknowledge: (http://\S+/incidents/ack/\S+)")

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]

SITE = (
    freezer_site(freezers=2, name="Cold store")
    + """\
alerting:
  links: {base_url: "%(base)s", secret_env: %(secret_env)s, valid_for: 24h}
  grouping: {window: 0s}
  shelving: {max: 8h}
  contacts:
    - id: olga
      name: Olga Operator
      user: olga
      channels:
        - {id: email, url: "mailto://127.0.0.1:2525?to=olga@example.org&from=envmon@example.org"}
        - {id: hook, url: "json://127.0.0.1:9/envmon"}
    - id: fred
      name: Fred Facilities
      channels: [{id: email, url: "mailto://127.0.0.1:2525?to=fred@example.org&from=envmon@example.org"}]
  policies:
    - id: freezers
      steps:
        - {notify: {contact: olga}, wait: 10m}
        - {notify: {contact: fred}, wait: 15m}
      repeat: 1
      reminder: 1h
  routes:
    - {policy: freezers}
"""
)


@dataclass
class Served:
    """The served app and what the test needs to open incidents on its store."""

    base: str
    db: Engine
    site: SiteConfig
    engine: AlertEngine
    dispatcher: Dispatcher
    notifier: CapturingNotifier


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The app on a store with users, and an alerting engine and dispatcher on the same store."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site_path = tmp_path / "site.yaml"
    site_path.write_text(SITE % {"base": base, "secret_env": SECRET_ENV})
    site = load_site(site_path)
    assert site.alerting is not None
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    db = store_engine(url)
    upgrade(db)
    users = UserStore(db, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    for name, role in [("olga", "operator"), ("vic", "viewer")]:
        users.add(name, f"{name.title()} Example", role, PASSWORD, actor="admin", reason="test")
    rota = Rota.from_config(site.alerting, site_tz=site.tzinfo, base_dir=tmp_path)
    engine = AlertEngine(site.alerting, rota, site_context(site), site_tz=site.tzinfo)
    notifier = CapturingNotifier()
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
    try:
        with serving(
            url,
            tmp_path / "serve.log",
            port=port,
            env={SECRET_ENV: SECRET, "ENVMON_SITE": str(site_path)},
        ):
            yield Served(base, db, site, engine, dispatcher, notifier)
    finally:
        db.dispose()


def raise_alarm(served: Served, sensor: str, excursion: str, value: float) -> None:
    """Hand the engine an alert on ``sensor`` (one incident) in its own transaction."""
    event = AlarmEvent(
        event=AlarmKind.RAISED,
        sensor_id=sensor,
        area="cold-room",
        parameter="temperature",
        unit="degC",
        ts=utcnow(),
        level=Level.ALERT,
        direction=Direction.HIGH,
        value=value,
        limit=-70.0,
        excursion_id=excursion,
    )
    with Session(served.db) as session, session.begin():
        assert served.engine.handle(session, event)


def link_for(notifier: CapturingNotifier, what: str) -> str:
    """Return the acknowledge link under the line about ``what`` in the captured pages."""
    for url, message in notifier.sent:
        if not url.startswith("mailto:"):
            continue
        lines = message.body.splitlines()
        for line, after in itertools.pairwise(lines):
            found = LINK.search(after)
            if line.startswith("• ") and what in line and found:
                return found.group(1)
    raise AssertionError(f"no link about {what!r} in {[m.body for _, m in notifier.sent]}")


def sign_in(page: object, username: str) -> None:
    page.fill("input[name=username]", username)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]


def test_an_operator_acknowledges_from_the_link_in_a_page(served: Served) -> None:
    """Link → sign-in → comment → acknowledged; the list shows who; the link works once."""
    raise_alarm(served, "frz-1.temperature", "exc-frz-1", -68.04)
    raise_alarm(served, "frz-2.temperature", "exc-frz-2", -65.5)
    down = SystemEvent(event=SystemEventKind.DISCONNECTED, component="mqtt:plant", ts=utcnow())
    with Session(served.db) as session, session.begin():
        served.engine.handle(session, down)
    served.notifier.outcome = Outcome(True, "SMTP 250 2.0.0 Ok: queued")
    assert asyncio.run(served.dispatcher.dispatch()) > 0
    link = link_for(served.notifier, "Freezer 1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(link)
            assert page.url.startswith(f"{served.base}/login?next=/incidents/ack/")
            sign_in(page, "olga")
            page.wait_for_url(link)
            assert "This link was sent to Olga Operator" in page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / "incident-ack-link.png"), full_page=True)
            page.fill("#form-acknowledge textarea[name=comment]", "On my way to freezer 1 <now>")
            page.click("#form-acknowledge button[type=submit]")
            page.wait_for_url(re.compile(r".*/incidents/[0-9a-f-]+\?done=acknowledged$"))
            assert "Acknowledged: the escalation has stopped." in page.inner_text("#notice")
            assert page.inner_text("#incident-state") == "acknowledged"
            assert "olga" in page.inner_text("#acknowledged")
            assert "On my way to freezer 1 <now>" in page.inner_text("#acknowledged")
            assert "acknowledge" in page.inner_text("#audit")
            page.screenshot(path=str(ARTIFACTS / "incident-page.png"), full_page=True)

            page.click("#nav-incidents")
            page.wait_for_url(f"{served.base}/incidents")
            listing = page.inner_text("#open-incidents")
            assert "by olga" in listing
            assert "Freezer 2 temperature in Cold room" in listing
            assert "mqtt:plant: disconnected" in listing
            assert "SMTP 250 2.0.0 Ok: queued" in listing
            page.screenshot(path=str(ARTIFACTS / "incidents.png"), full_page=True)
            page.click("text=Freezer 2 temperature in Cold room")
            assert page.inner_text("#incident-state") == "triggered"
            assert page.locator("#form-acknowledge").count() == 1
            assert page.locator("#form-shelve").count() == 1
            page.screenshot(path=str(ARTIFACTS / "incident-triggered.png"), full_page=True)

            with page.expect_response(link) as used:
                page.goto(link)
            assert used.value.status == 410
            assert "already been used" in page.inner_text(".error")

            page.click("nav button")  # sign out
            viewer_link = link_for(served.notifier, "Freezer 2")
            page.goto(viewer_link)
            sign_in(page, "vic")
            page.wait_for_url(viewer_link)
            assert "only operators and QA may acknowledge" in page.inner_text(".error")
        finally:
            browser.close()
    assert (ARTIFACTS / "incidents.png").stat().st_size > 0
    assert (ARTIFACTS / "incident-page.png").stat().st_size > 0
