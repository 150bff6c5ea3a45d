"""The record page's interactive trend chart in Debian's Chromium, driven by Playwright.

``envmon excursions serve`` on a site of one ultra-low freezer (Europe/Amsterdam) whose
store holds eight days of readings and one excursion the core evaluated with a 10-minute
delay: the chart replaces the server-drawn SVG without any Content-Security-Policy
violation, a drag zooms in, a wider window brings more readings, and screenshots at
1280×800 and 1920×1080 are kept in ``var/test-artifacts/`` (``ENVMON_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from envmon.models import AlarmEvent, Quality, Reading
from envmon.testing import make_spec
from envmon.timeutil import utcnow
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.queries import core_records
from excursions.records import RecordStore
from excursions.timeline import TimelineStore
from excursions.users import UserStore
from stream.core.evaluator import Evaluator
from stream.timeseries.sqlite import SqliteTimeSeries
from tests.e2e.browser import ARTIFACTS, CHROMIUM, launch
from tests.integration.serving import serving
from tests.unit.alerts.sites import freezer_site
from tests.unit.excursions.conftest import FAST_HASHER

playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "a long password 1"
SENSOR = "frz-1.temperature"
#: The freezer of the site file, with the rule's delay the core evaluated it with.
FREEZER = make_spec(
    SENSOR, area="cold-room", alert_high=-70, action_high=-60, delay_s=600, unit="degC"
)
EVERY = timedelta(minutes=2)

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def freezer_readings(start: datetime, days: int, door_open: datetime) -> list[Reading]:
    """Readings every 2 minutes near −80 °C; at ``door_open`` an hour's rise to −55 °C.

    A few bad-quality readings an hour later, and a 40-minute pause in the data a day on.
    """
    found: list[Reading] = []
    count = int(timedelta(days=days) / EVERY)
    for i in range(count):
        ts = start + i * EVERY
        value = -80 + 0.6 * math.sin(i / 37) + 0.25 * math.sin(i / 5.3)
        since = (ts - door_open) / timedelta(minutes=1)
        if 0 <= since < 70:  # up for 25 minutes, then pulled down again
            rise = min(since, 25) * 1.0 - max(since - 25, 0) * 0.55
            value += max(rise, 0)
        quality = Quality.GOOD
        if timedelta(minutes=90) <= ts - door_open < timedelta(minutes=96):
            quality = Quality.BAD
        if timedelta(days=1) <= ts - door_open < timedelta(days=1, minutes=40):
            continue
        found.append(
            Reading(
                sensor_id=SENSOR,
                value=None if quality is Quality.BAD else round(value, 2),
                unit="degC",
                ts=ts,
                quality=quality,
            )
        )
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The app on a store with the freezer's excursion, its alarms and eight days of data."""
    site = tmp_path / "site.yaml"
    site.write_text(freezer_site(freezers=1, name="Cell therapy suite"), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    engine = store_engine(url)
    upgrade(engine)
    start = (utcnow() - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    door_open = start + timedelta(days=4, hours=5, minutes=7)
    readings = freezer_readings(start, 8, door_open)
    records, timeline = RecordStore(engine), TimelineStore(engine)
    evaluator = Evaluator([FREEZER])
    for reading in readings:
        for event in evaluator.process(reading):
            if isinstance(event, AlarmEvent):
                timeline.apply(event)
            else:
                records.apply(event)
    excursion = next(
        e for e in records_of(engine) if e.get("kind") == "excursion" and e["sensor_id"] == SENSOR
    )
    data = tmp_path / "data"
    series = SqliteTimeSeries(data / "timeseries.sqlite3")
    series.write(readings)
    series.close()
    UserStore(engine, hasher=FAST_HASHER).add(
        "vic", "Vic Viewer", "viewer", PASSWORD, actor="admin", reason="test"
    )
    engine.dispose()
    environ = {"ENVMON_SITE": str(site), "ENVMON_TIMESERIES": "sqlite"}
    with serving(url, tmp_path / "serve.log", data, env=environ) as (base, _server):
        yield base, str(excursion["id"])


def records_of(engine: Engine) -> list[dict[str, Any]]:
    """Every excursion the core sent, as stored."""
    return core_records(engine, "excursion")


def test_the_chart_zooms_widens_and_keeps_to_the_csp(served: tuple[str, str]) -> None:
    base, record_id = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            failed: list[str] = []
            page.on(
                "response",
                lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.goto(f"{base}/login")
            page.fill("input[name=username]", "vic")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/excursions")
            page.goto(f"{base}/excursions/{record_id}")
            chart = page.locator("#trend-chart")
            page.wait_for_selector("#trend-chart[data-state=ready]", timeout=15_000)
            assert page.locator("#trend-plot canvas").count() == 1
            assert not page.locator("#trend-static").is_visible()  # the SVG gave way
            legend = page.locator("#trend-legend").inner_text()
            assert "limit crossed" in legend
            assert "alert level reached" in legend
            assert "(Europe/Amsterdam)" in page.locator("#trend-caption").inner_text()
            first_points = int(chart.get_attribute("data-readings") or 0)
            assert first_points > 10
            chart.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "trend-1280x800.png"), full_page=False)
            chart.screenshot(path=str(ARTIFACTS / "trend-chart-1280.png"))

            # A drag across the middle of the plot zooms in on that period.
            before = x_range(chart)
            over = page.locator("#trend-plot .u-over").bounding_box()
            assert over is not None
            y = over["y"] + over["height"] / 2
            page.mouse.move(over["x"] + over["width"] * 0.3, y)
            page.mouse.down()
            page.mouse.move(over["x"] + over["width"] * 0.5, y, steps=8)
            page.mouse.move(over["x"] + over["width"] * 0.6, y, steps=4)
            page.mouse.up()
            page.wait_for_function(
                "before => Number(document.getElementById('trend-chart')"
                ".getAttribute('data-x-max')) - Number(document.getElementById('trend-chart')"
                ".getAttribute('data-x-min')) < before",
                arg=before[1] - before[0],
            )
            zoomed = x_range(chart)
            assert before[0] < zoomed[0] < zoomed[1] < before[1]
            assert zoomed[1] - zoomed[0] < 0.5 * (before[1] - before[0])
            page.click("#trend-reset")
            assert x_range(chart) == pytest.approx(before)

            # A wider window brings more readings (decimated, each interval's min and max).
            page.click("button[data-window='3d']")
            page.wait_for_selector("#trend-chart[data-window='3d'][data-state=ready]")
            wide = x_range(chart)
            assert int(chart.get_attribute("data-readings") or 0) > 10 * first_points
            assert wide[1] - wide[0] > 5 * 86400
            assert "drawn" in page.locator("#trend-status").inner_text()
            page.screenshot(path=str(ARTIFACTS / "trend-1280x800-3d.png"), full_page=False)

            # Wider screens get a wider chart: no fixed width.
            page.set_viewport_size({"width": 1920, "height": 1080})
            page.click("button[data-window='record']")
            page.wait_for_selector("#trend-chart[data-window='record']")
            page.wait_for_timeout(300)  # the resize settles on the next frame
            canvas = page.locator("#trend-plot canvas").bounding_box()
            assert canvas is not None
            assert canvas["width"] > 1000
            chart.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "trend-1920x1080.png"), full_page=False)
            chart.screenshot(path=str(ARTIFACTS / "trend-chart-1920.png"))

            assert [m for m in console if "Content Security Policy" in m] == []
            assert [m for m in console if m.startswith("pageerror")] == []
            # Chromium asks for /favicon.ico by itself; nothing the page loads may fail.
            assert [f for f in failed if not f.endswith("/favicon.ico")] == []
        finally:
            browser.close()


def x_range(chart: Any) -> tuple[float, float]:  # a Playwright Locator
    """The chart's shown time range (epoch seconds), as the script reports it."""
    return float(chart.get_attribute("data-x-min")), float(chart.get_attribute("data-x-max"))
