"""The QA pages as QA sees them, in Debian's Chromium against ``envmon excursions serve``.

The example site's ULT freezer warms past its action limit for less than its 10-minute
delay (an alert-level excursion whose peak is above the action line), then goes silent
(a data gap); a grade B particle counter counts a million particles. Screenshots of the
list, the excursion page, the data-gap page and the assessment form after a refusal, at
1280×800 and 1920×1080, go to ``ENVMON_TEST_ARTIFACTS``. The assessment round trip:
a refusal keeps every typed value, success shows a confirmation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from envmon.config import load_site
from envmon.models import AlarmEvent, CoreEvent, DataGap, ExcursionRecord, Reading
from envmon.testing import DEFAULT_T0, FakeClock, readings
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.records import RecordStore
from excursions.timeline import TimelineStore
from excursions.users import UserStore
from stream.core.evaluator import Evaluator
from stream.timeseries.sqlite import SqliteTimeSeries
from tests.e2e.browser import ARTIFACTS, CHROMIUM, launch
from tests.integration.serving import serving

playwright = pytest.importorskip("playwright.sync_api")

SITE = Path(__file__).parents[2] / "deploy" / "examples" / "site.yaml"
PASSWORD = "a long password 1"
FREEZER = "ult-freezer-1.temperature"
COUNTER = "pc-grade-b.particles_0_5um"
SIZES = {"laptop": (1280, 800), "monitor": (1920, 1080)}
#: A float printed with more digits than any channel is configured with (at most 2 here).
RAW_FLOAT = re.compile(r"\d\.\d{3,}")
#: The one time format of the pages: site time to the second with the zone named.
SITE_TIME = re.compile(r"\b20\d\d-\d\d-\d\d \d\d:\d\d:\d\d CES?T\b")

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def plant_readings() -> list[Reading]:
    """The freezer's and the counter's readings, one a minute (floats as sensors send them)."""
    freezer = [-80.2] * 5 + [-68.4] * 6 + [-57.39237443852002] * 4 + [-66.1] * 3 + [-80.0] * 4
    silent = DEFAULT_T0 + timedelta(minutes=len(freezer) + 25)  # 25 min without a reading
    counter = [2_100.0] * 3 + [1_059_222.6148409895] * 4 + [1_800.0] * 3
    return [
        *readings(FREEZER, freezer),
        *readings(FREEZER, [-80.1, -80.3, -80.2], start=silent),
        *readings(COUNTER, counter, start=DEFAULT_T0 + timedelta(minutes=40)),
    ]


def plant_events() -> list[CoreEvent]:
    """What the core makes of ``plant_readings`` with the example site's rules."""
    specs = load_site(SITE).sensor_map()
    evaluator = Evaluator([specs[FREEZER], specs[COUNTER]])
    events: list[CoreEvent] = []
    for reading in sorted(plant_readings(), key=lambda r: r.ts):
        events += evaluator.process(reading)
    return events


@dataclass(frozen=True)
class Plant:
    """The served app: its URL, the records' ids by kind and sensor, the store, a record."""

    base: str
    ids: dict[str, str]
    url: str
    last: ExcursionRecord


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Plant]:
    """The app with the example site on a store holding the plant's records; its record ids."""
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    engine = store_engine(url)
    upgrade(engine)
    clock = FakeClock(DEFAULT_T0)
    store, timeline = RecordStore(engine, clock=clock), TimelineStore(engine, clock=clock)
    ids: dict[str, str] = {}
    last: ExcursionRecord | None = None
    for event in plant_events():
        if isinstance(event, AlarmEvent):
            timeline.apply(event)
        elif isinstance(event, ExcursionRecord | DataGap):
            store.apply(event)
            ids[f"{event.kind}:{event.sensor_id}"] = event.id
            if isinstance(event, ExcursionRecord):
                last = event
    series = SqliteTimeSeries(tmp_path / "data" / "timeseries.sqlite3")
    series.write(plant_readings())
    series.close()
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    users.add("quinn", "Quinn Example", "qa", PASSWORD, actor="admin", reason="test")
    engine.dispose()
    env = {"ENVMON_SITE": str(SITE)}
    assert last is not None
    with serving(url, tmp_path / "serve.log", tmp_path / "data", env=env) as (base, _server):
        yield Plant(base, ids, url, last)


def shoot(page: object, name: str, element: str = "") -> None:
    """Save a screenshot at each size: of the whole page, or of one element of it."""
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})  # type: ignore[attr-defined]
        path = str(ARTIFACTS / f"qa-{name}-{size}.png")
        if element:
            page.locator(element).screenshot(path=path)  # type: ignore[attr-defined]
        else:
            page.screenshot(path=path, full_page=True)  # type: ignore[attr-defined]
    page.set_viewport_size(dict(zip(("width", "height"), SIZES["laptop"], strict=True)))  # type: ignore[attr-defined]


def readable(text: str) -> None:
    """Assert a page's text has no raw float and no time in another format."""
    assert not RAW_FLOAT.search(text), RAW_FLOAT.search(text)
    assert "+00:00" not in text
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", text)  # no microseconds
    assert SITE_TIME.search(text)


def test_list_record_gap_and_assessment_read_well(app: Plant) -> None:
    plant = app
    base, ids = plant.base, plant.ids
    freezer = ids[f"excursion:{FREEZER}"]
    counter = ids[f"excursion:{COUNTER}"]
    gap = ids[f"data_gap:{FREEZER}"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            violations: list[str] = []
            page.on(
                "console",
                lambda m: violations.append(m.text) if "Content Security" in m.text else None,
            )
            page.goto(f"{base}/login")
            page.fill("input[name=username]", "quinn")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/excursions")

            # The list: instruments named (also for the gap), values with units, one format.
            listing = page.inner_text("#records")
            readable(listing)
            assert "ULT freezer 1 (−80 °C, cryopreserved intermediates)" in listing
            assert "−57.4 °C" in listing
            assert "1,059,223 particles/m³" in listing
            assert "Particles ≥ 0.5 µm" in listing
            assert "Data gap" in listing
            assert page.locator("select[name=state] option").count() == 6  # All + five states
            assert page.locator("select[name=area] option", has_text="Grade B").count() == 1
            shoot(page, "list")
            # A record stored while the list is open appears by itself (list.js).
            page.goto(f"{base}/excursions?kind=excursion")
            later = plant.last.model_copy(
                update={"id": "later-excursion", "start": plant.last.start + timedelta(hours=2)}
            )
            engine = store_engine(plant.url)
            RecordStore(engine).apply(later)
            engine.dispose()
            page.wait_for_selector("a[href='/excursions/later-excursion']", timeout=30_000)
            assert page.url.endswith("?kind=excursion")  # the filters stay
            assert page.inner_text("#record-count") == "3 records"  # two and the new one
            page.select_option("select[name=kind]", "data_gap")
            page.click("#filters button[type=submit]")
            assert page.locator("#records-body tr").count() == 1
            assert page.locator("select[name=kind]").input_value() == "data_gap"

            # The freezer: alert level although the peak is above the action line (delay).
            page.goto(f"{base}/excursions/{freezer}")
            assert page.title().startswith(
                "ULT freezer 1 (−80 °C, cryopreserved intermediates) · Temperature · Alert"
            )
            metrics = page.inner_text("#metrics-section")
            readable(metrics)
            assert page.inner_text("#m-peak dd").startswith("−57.4 °C")
            assert page.inner_text("#m-limits dd") == "alert > −70.0 °C · action > −60.0 °C"
            assert "°C·s" in page.inner_text("#m-integral dd")
            rule = page.inner_text("#rule")
            assert "Alert level is reached after 10 min beyond the alert limit (delay)" in rule
            assert "stayed at alert level" in rule
            assert "(deadband)" in rule
            readable(page.inner_text("#audit"))
            shoot(page, "excursion")

            # The particle counter: whole counts with units.
            page.goto(f"{base}/excursions/{counter}")
            assert page.inner_text("#m-peak dd").startswith("1,059,223 particles/m³")
            assert "particles/m³·s" in page.inner_text("#m-integral dd")

            # The data gap: its own metrics, no empty excursion metrics.
            page.goto(f"{base}/excursions/{gap}")
            assert page.title().startswith("ULT freezer 1")
            gap_text = page.inner_text("#metrics-section")
            readable(gap_text)
            assert "Peak" not in gap_text
            assert "Time beyond limit" not in gap_text
            assert page.inner_text("#m-duration dd") == "26 min"
            assert page.inner_text("#m-before dd").startswith("−80.0 °C")
            assert page.inner_text("#m-after dd").startswith("−80.1 °C")
            assert "no reading arrives for 10 min" in page.inner_text("#rule")
            shoot(page, "data-gap")

            # The assessment round trip on the freezer's record.
            page.goto(f"{base}/excursions/{freezer}")
            page.fill("#form-acknowledge textarea[name=text]", "Door found ajar, closed")
            page.click("#form-acknowledge button[type=submit]")
            assert "Acknowledged" in page.inner_text("#notice")
            assert page.inner_text("#qa-state") == "Acknowledged"
            page.fill("#form-start_review input[name=reason]", "review")
            page.click("#form-start_review button[type=submit]")
            assert "QA review started" in page.inner_text("#notice")
            assert "done=" in page.url
            typed = {
                "impact_products": "Cryopreserved intermediates, rack 3",
                "impact_text": "Product probe stayed below −70 °C; air probe only.",
                "conclusion": "No impact on product quality.",
                "deviation_ref": "DEV-2026-0107",
            }
            for name, value in typed.items():
                page.fill(f"#form-assess [name={name}]", value)
            page.select_option("#form-assess select[name=root_cause_category]", "human_error")
            # A reason of spaces passes the browser's check and is refused by the app.
            page.fill("#form-assess input[name=reason]", "   ")
            page.click("#form-assess button[type=submit]")
            assert "a reason is required" in page.inner_text("#form-assess .error")
            for name, value in typed.items():
                assert page.input_value(f"#form-assess [name={name}]") == value
            assert (
                page.input_value("#form-assess select[name=root_cause_category]") == "human_error"
            )
            shoot(page, "assessment-refused", "#form-assess")
            page.fill("#form-assess input[name=reason]", "assessment after investigation")
            page.click("#form-assess button[type=submit]")
            assert "Assessment saved" in page.inner_text("#notice")
            assessment = page.inner_text("#assessment")
            assert "Human error" in assessment
            assert "DEV-2026-0107" in assessment
            assert violations == []
        finally:
            browser.close()
    for name in ("list", "excursion", "data-gap", "assessment-refused"):
        for size in SIZES:
            assert (ARTIFACTS / f"qa-{name}-{size}.png").stat().st_size > 0
