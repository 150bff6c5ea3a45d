"""The live status page in Debian's Chromium, driven by Playwright.

``envmon excursions serve`` runs in its own process on a record store and the embedded
time series (``ENVMON_DATA_DIR/timeseries.sqlite3``) that the test writes to, as the
stream worker would. A viewer signs in on the way to ``/status``; the page shows every
state; a reading written afterwards is on the page within two seconds, and a stale channel
turns normal, without a reload (the script runs under the app's CSP: a violation would show
on the console). Then ``envmon demo`` shows the demo's rooms live on the same page.
Screenshots go to ``var/test-artifacts/`` (``ENVMON_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from envmon.models import (
    Direction,
    ExcursionRecord,
    ExcursionStatus,
    Level,
    LimitsInForce,
    Quality,
    Reading,
)
from envmon.netutil import free_port
from envmon.timeutil import utcnow
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.records import RecordStore
from excursions.users import UserStore
from stream.timeseries.sqlite import SqliteTimeSeries
from tests.e2e.browser import ARTIFACTS, CHROMIUM, launch
from tests.integration.serving import serving
from tests.unit.alerts.sites import freezer_site
from tests.unit.excursions.conftest import FAST_HASHER

from .demo import running_demo

playwright = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).parents[2]
PASSWORD = "a long password 1"
#: The page's promise: a new reading is on the screen within this long.
WITHIN_S = 2.0

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]

SITE = freezer_site(freezers=4, name="Cold store") + (
    "dashboards: {grafana_url: https://grafana.example.org}\n"
)


@dataclass
class Served:
    """The served app and the stores the test writes to."""

    base: str
    db: Engine
    series: SqliteTimeSeries


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``envmon excursions serve`` on a store with a viewer and a time series with readings."""
    site_path = tmp_path / "site.yaml"
    site_path.write_text(SITE, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    db = store_engine(url)
    upgrade(db)
    UserStore(db, hasher=FAST_HASHER).add(
        "vic", "Vic Viewer", "viewer", PASSWORD, actor="admin", reason="test"
    )
    data_dir = tmp_path / "data"
    series = SqliteTimeSeries(data_dir / "timeseries.sqlite3")  # serve reads it if it exists
    now = utcnow()
    series.write(
        [
            reading("frz-1.temperature", now - timedelta(seconds=30), -75.04),
            reading("frz-2.temperature", now - timedelta(minutes=20), -76.0),  # stale (10 min)
            reading("frz-3.temperature", now - timedelta(seconds=30), None, Quality.BAD),
            reading("frz-4.temperature", now - timedelta(seconds=30), -58.5),
        ]
    )
    RecordStore(db).apply(action_excursion("frz-4.temperature", now - timedelta(minutes=4)))
    try:
        with serving(
            url,
            tmp_path / "serve.log",
            data_dir,
            env={"ENVMON_SITE": str(site_path), "ENVMON_TIMESERIES": "sqlite"},
        ) as (base, _server):
            yield Served(base, db, series)
    finally:
        series.close()
        db.dispose()


def reading(
    sensor: str, ts: object, value: float | None, quality: Quality = Quality.GOOD
) -> Reading:
    return Reading(sensor_id=sensor, value=value, unit="degC", ts=ts, quality=quality)


def action_excursion(sensor: str, start: object) -> ExcursionRecord:
    return ExcursionRecord(
        id=f"exc-{sensor}",
        revision=1,
        status=ExcursionStatus.OPEN,
        sensor_id=sensor,
        area="cold-room",
        instrument=sensor.split(".", maxsplit=1)[0],
        parameter="temperature",
        unit="degC",
        direction=Direction.HIGH,
        level=Level.ACTION,
        limit=-60.0,
        limits=LimitsInForce(alert_high=-70.0, action_high=-60.0),
        start=start,
        end=None,
        duration_s=None,
        peak=-58.5,
        peak_ts=start,
        min=-59.0,
        max=-58.5,
        samples=4,
        time_beyond_limit_s=120.0,
        integral_beyond_limit=180.0,
    )


def row(page: object, sensor: str) -> object:
    return page.locator(f'tr[data-sensor="{sensor}"]')  # type: ignore[attr-defined]


def sign_in(page: object, username: str, password: str) -> None:
    page.fill("input[name=username]", username)  # type: ignore[attr-defined]
    page.fill("input[name=password]", password)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]


def test_a_new_reading_shows_within_two_seconds_without_a_reload(served: Served) -> None:
    """Every state is shown; a write to the store is on the page within 2 s, in place."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            failed: list[str] = []
            page.on(
                "response",
                lambda r: failed.append(r.url) if r.status >= 400 else None,
            )
            page.goto(f"{served.base}/status")
            assert page.url == f"{served.base}/login?next=/status"
            sign_in(page, "vic", PASSWORD)
            page.wait_for_url(f"{served.base}/status")
            # The script took over (it runs under the CSP): the header says it is live.
            page.wait_for_function(
                "() => document.getElementById('live').textContent.startsWith('Live: updated')",
                timeout=5000,
            )
            states = {
                sensor: row(page, sensor).locator('[data-field="state"]').inner_text()
                for sensor in (f"frz-{n}.temperature" for n in range(1, 5))
            }
            assert states == {
                "frz-1.temperature": "Normal",
                "frz-2.temperature": "Stale",
                "frz-3.temperature": "Fault",
                "frz-4.temperature": "Action",
            }
            one = row(page, "frz-1.temperature")
            assert one.locator('[data-field="value"]').inner_text() == "−75.0 °C"
            assert re.fullmatch(
                r"\d\d:\d\d:\d\d CET|\d\d:\d\d:\d\d CEST",
                one.locator('[data-field="last"]').inner_text(),
            )
            assert "Action excursion, high" in page.inner_text("#open-alarms")
            assert row(page, "frz-4.temperature").locator("a.grafana").count() == 1
            page.screenshot(path=str(ARTIFACTS / "status.png"), full_page=True)

            page.evaluate("window.envmonNoReload = true")  # gone if the page reloads
            served.series.write([reading("frz-1.temperature", utcnow(), -71.26)])
            written = time.monotonic()
            page.wait_for_function(
                """() => document.querySelector('tr[data-sensor="frz-1.temperature"]'
                    + ' [data-field="value"]').textContent === '−71.3 °C'""",
                timeout=WITHIN_S * 1000,
            )
            shown_after = time.monotonic() - written
            assert shown_after <= WITHIN_S, shown_after
            served.series.write([reading("frz-2.temperature", utcnow(), -76.5)])
            page.wait_for_function(
                """() => document.querySelector('tr[data-sensor="frz-2.temperature"]'
                    + ' [data-field="state"]').textContent === 'Normal'""",
                timeout=WITHIN_S * 1000,
            )
            assert page.evaluate("window.envmonNoReload") is True
            assert "state-normal" in (row(page, "frz-2.temperature").get_attribute("class") or "")
            assert page.inner_text("[data-count=stale] .n") == "0"
            page.screenshot(path=str(ARTIFACTS / "status-updated.png"), full_page=True)
            page.set_viewport_size({"width": 680, "height": 900})  # an 80-column window
            page.screenshot(path=str(ARTIFACTS / "status-narrow.png"), full_page=True)
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 680, "the page scrolls sideways in an 80-column window"
        finally:
            browser.close()
    # No CSP violation, no script error; the one 404 is the browser's own favicon request.
    assert {url.rsplit("/", 1)[-1] for url in failed} <= {"favicon.ico"}, failed
    assert [text for text in problems if "404 (Not Found)" not in text] == []


def test_the_demo_shows_its_rooms_live(tmp_path: Path) -> None:
    """``envmon demo``: the example site's rooms, with readings that change in place."""
    port = free_port()
    args = ("--duration", "40", "--speed", "60", "--summary", str(tmp_path / "summary.json"))
    with running_demo(*args, "--workdir", str(tmp_path / "work"), "--web-port", str(port)) as demo:
        text = demo.banner
        assert f"live status: http://127.0.0.1:{port}/status" in text, text
        password = demo.passwords["viewer"]
        base = f"http://127.0.0.1:{port}"
        with playwright.sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(f"{base}/status")
                sign_in(page, "viewer", password)
                page.wait_for_url(f"{base}/status")
                for room in ("Grade B background room of isolator 1", "Cold store"):
                    assert room in page.inner_text(".areas")
                page.evaluate("window.envmonNoReload = true")
                counter = 'tr[data-sensor="pc-grade-b.particles_0_5um"] [data-field="last"]'
                before = page.inner_text(counter)
                page.wait_for_function(
                    "([selector, before]) => document.querySelector(selector).textContent"
                    " !== before",
                    arg=[counter, before],
                    timeout=15_000,
                )  # a simulated minute is a real second: the counter reports again
                assert page.evaluate("window.envmonNoReload") is True
                assert int(page.inner_text("[data-count=normal] .n")) > 0
                page.wait_for_function(  # the scenario's first faults, shown in place too
                    "() => Number(document.getElementById('alarm-count').textContent) > 0",
                    timeout=25_000,
                )
                page.screenshot(path=str(ARTIFACTS / "status-demo.png"), full_page=True)
            finally:
                browser.close()
        demo.finish()
