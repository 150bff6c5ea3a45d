"""The live status page (``dashboards.status``): state rules, content, access, hostile input."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dashboards.status import (
    DEFAULT_STALE_AFTER_S,
    LOOKBACK,
    StatusServices,
    channel_state,
    grafana_linker,
    limits_text,
    status_extension,
)
from envmon.config import SiteConfig, parse_site
from envmon.errors import EnvmonError
from envmon.models import (
    DataGap,
    Direction,
    ExcursionRecord,
    ExcursionStatus,
    Level,
    LimitsInForce,
    Quality,
    Reading,
)
from envmon.sensors import LimitSet
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.db import store_engine
from excursions.lifecycle import Lifecycle
from excursions.migrate import upgrade
from excursions.records import RecordStore
from excursions.sessions import IDLE, Sessions
from excursions.users import UserStore
from excursions.web.api import Services
from excursions.web.app import create_app
from stream.timeseries.sqlite import SqliteTimeSeries
from tests.unit.excursions.conftest import FAST_HASHER

PASSWORD = "a long password 1"
USERS = {"viewer": "vic", "operator": "olga", "qa": "quinn", "admin": "ann"}
GRAFANA = "https://grafana.example.org/g"
MINUTE = timedelta(minutes=1)


def freezer(n: int, extra: str = "") -> str:
    return f"""\
      - id: frz-{n}
        name: Freezer {n}
        kind: freezer
        channels:
          - parameter: temperature
            unit: degC
            limits: {{alert_high: -70, action_high: -60{extra}}}
"""


SITE = (
    f"""\
site: {{name: Test site, timezone: Europe/Amsterdam}}
dashboards: {{grafana_url: "{GRAFANA}"}}
areas:
  - id: cold-room
    name: Cold room
    grade: D
    instruments:
"""
    + "".join(freezer(n, ", stale_after: 5m") for n in range(1, 9))
    + """\
  - id: prep
    name: Prep room <b>
    iso_class: 7
    instruments:
      - id: inc-1
        name: Incubator 1
        kind: incubator
        channels:
          - parameter: co2
            unit: "%"
            limits: {alert_low: 4.5, alert_high: 5.5, action_low: 4, action_high: 6}
          - {parameter: temperature, id: probe-b, unit: degC, limits: {alert_high: 38}}
"""
)


@dataclass
class World:
    """The app on a record store and a time series, with a fake clock."""

    site: SiteConfig
    engine: Engine
    clock: FakeClock
    series: SqliteTimeSeries
    records: RecordStore
    client: TestClient
    make: Callable[..., TestClient]

    def sign_in(self, role: str | None, client: TestClient | None = None) -> TestClient:
        client = client or self.client
        client.cookies.clear()
        if role is not None:
            answer = client.post(
                "/api/v1/session", json={"username": USERS[role], "password": PASSWORD}
            )
            assert answer.status_code == 200, answer.text
        return client

    def write(self, sensor: str, minutes_ago: float, value: float | None, **kw: Any) -> Reading:
        reading = Reading(
            sensor_id=sensor,
            value=value,
            unit=kw.pop("unit", "degC"),
            ts=self.clock() - minutes_ago * MINUTE,
            **kw,
        )
        self.series.write([reading])
        return reading

    def status(self) -> dict[str, Any]:
        answer = self.client.get("/api/v1/status")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


def channels(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        c["sensor_id"]: c
        for area in status["areas"]
        for instrument in area["instruments"]
        for c in instrument["channels"]
    }


def excursion(
    sensor: str, level: Level, start: datetime, *, end: datetime | None = None
) -> ExcursionRecord:
    limit = -70.0 if level is Level.ALERT else -60.0
    return ExcursionRecord(
        id=f"exc-{sensor}-{level.value}",
        revision=1 if end is None else 2,
        status=ExcursionStatus.OPEN if end is None else ExcursionStatus.CLOSED,
        sensor_id=sensor,
        area="cold-room",
        instrument=sensor.split(".", maxsplit=1)[0],
        parameter="temperature",
        unit="degC",
        direction=Direction.HIGH,
        level=level,
        limit=limit,
        limits=LimitsInForce(alert_high=-70.0, action_high=-60.0),
        start=start,
        end=end,
        duration_s=None if end is None else (end - start).total_seconds(),
        peak=limit + 2,
        peak_ts=start,
        min=limit + 1,
        max=limit + 2,
        samples=3,
        time_beyond_limit_s=60.0,
        integral_beyond_limit=60.0,
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    site = parse_site(SITE)
    engine = store_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    upgrade(engine)
    clock = FakeClock(DEFAULT_T0)
    users = UserStore(engine, clock=clock, hasher=FAST_HASHER)
    for role, name in USERS.items():
        users.add(name, f"{name.title()} Example", role, PASSWORD, actor="admin", reason="t")
    series = SqliteTimeSeries(tmp_path / "series.sqlite3")

    def make(*, status: bool = True, latest: object = series, grafana: bool = True) -> TestClient:
        services = Services(
            engine,
            Sessions(engine, users, clock=clock),
            Lifecycle(engine, users, clock=clock),
            secure_cookie=False,
            site_timezone=site.timezone,
            series=series,
            clock=clock,
            grafana_link=grafana_linker(site) if grafana else None,
        )
        extensions = []
        if status:
            state = StatusServices(site, latest)  # type: ignore[arg-type]
            extensions.append(status_extension(services, state, site_name=site.name))
        return TestClient(create_app(services, site_name=site.name, extensions=extensions))

    yield World(site, engine, clock, series, RecordStore(engine, clock=clock), make(), make)
    series.close()
    engine.dispose()


class TestChannelState:
    """The rules, first that holds: stale, fault, the open excursion's level, normal."""

    NOW = DEFAULT_T0

    def reading(
        self, age_s: float, value: float | None = -75.0, quality: Quality = Quality.GOOD
    ) -> Reading:
        return Reading(
            sensor_id="frz-1.temperature",
            value=value,
            ts=self.NOW - timedelta(seconds=age_s),
            quality=quality,
        )

    def state(self, reading: Reading | None, level: str | None = None) -> tuple[str, str]:
        found = channel_state(reading, now=self.NOW, stale_after_s=300, open_level=level)
        return found.state, found.reason

    def test_normal(self) -> None:
        """A good, fresh reading without an open excursion is normal."""
        assert self.state(self.reading(10)) == ("normal", "")

    @pytest.mark.parametrize("level", ["alert", "action"])
    def test_an_open_excursion_gives_its_level(self, level: str) -> None:
        """An open excursion of the channel shows its level."""
        assert self.state(self.reading(10), level) == (level, "")

    def test_stale_after_the_channels_limit_not_at_it(self) -> None:
        """Older than stale_after is stale (saying for how long); exactly at it is not yet."""
        assert self.state(self.reading(300))[0] == "normal"
        assert self.state(self.reading(301)) == (
            "stale",
            "no reading for 5 min (stale after 5 min)",
        )
        assert self.state(self.reading(3 * 3600))[1] == "no reading for 3 h (stale after 5 min)"

    def test_no_reading_at_all_is_stale(self) -> None:
        """A channel with no reading in the lookback is stale, saying so."""
        assert self.state(None) == ("stale", "no reading in the last 24 h")
        assert timedelta(hours=24) == LOOKBACK

    @pytest.mark.parametrize(
        ("value", "quality", "reason"),
        [
            (-75.0, Quality.BAD, "sensor fault: bad quality"),
            (None, Quality.BAD, "sensor fault: bad quality"),
            (None, Quality.GOOD, "sensor fault: no value"),
            (None, Quality.UNCERTAIN, "sensor fault: no value"),
        ],
    )
    def test_fault(self, value: float | None, quality: Quality, reason: str) -> None:
        """Bad quality or no value is a fault, whatever excursion is open."""
        assert self.state(self.reading(5, value, quality), "action") == ("fault", reason)

    def test_uncertain_quality_is_shown_not_judged(self) -> None:
        """An uncertain reading with a value is judged by its excursions, and says so."""
        assert self.state(self.reading(5, quality=Quality.UNCERTAIN)) == (
            "normal",
            "uncertain quality",
        )
        assert self.state(self.reading(5, quality=Quality.UNCERTAIN), "alert")[0] == "alert"

    def test_stale_wins_over_fault_and_excursions(self) -> None:
        """Old data says nothing about now: stale even with an open action excursion."""
        assert self.state(self.reading(900, None, Quality.BAD), "action")[0] == "stale"

    def test_a_reading_ahead_of_the_clock_is_not_stale(self) -> None:
        """A device clock slightly ahead gives a negative age: fresh, not stale."""
        assert self.state(self.reading(-30))[0] == "normal"

    def test_limits_in_words(self) -> None:
        """Limits read as people say them; negative numbers with a minus sign."""
        nbsp = "\N{NO-BREAK SPACE}"
        assert limits_text(LimitSet(alert_high=-70, action_high=-60)) == (
            f"alert{nbsp}>{nbsp}−70 · action{nbsp}>{nbsp}−60"
        )
        both = limits_text(LimitSet(alert_low=4.5, alert_high=5.5, action_low=-4, action_high=6))
        assert both.replace(nbsp, " ") == "alert outside 4.5–5.5 · action outside −4 to 6"
        assert limits_text(LimitSet()) == "none"


class TestStatus:
    """What the page and its JSON show."""

    def test_every_state_on_one_site(self, world: World) -> None:
        """normal, alert, action, stale, fault, no reading, uncertain, unreadable quality."""
        w = world
        w.write("frz-1.temperature", 1, -75.04)
        w.write("frz-2.temperature", 1, -69.5)
        w.write("frz-3.temperature", 1, -58.0)
        w.write("frz-4.temperature", 6, -75.0)  # stale_after 5m
        w.write("frz-5.temperature", 1, None, quality=Quality.BAD)
        # frz-6: nothing at all
        w.write("frz-7.temperature", 1, -74.0, quality=Quality.UNCERTAIN)
        w.write("frz-8.temperature", 1, -74.0)
        with w.series._lock:
            w.series._db.execute(
                "UPDATE readings SET quality = 'gibberish' WHERE sensor_id = 'frz-8.temperature'"
            )
        w.records.apply(excursion("frz-2.temperature", Level.ALERT, w.clock() - 3 * MINUTE))
        w.records.apply(excursion("frz-3.temperature", Level.ACTION, w.clock() - 3 * MINUTE))
        w.records.apply(  # closed: not an open alarm, the channel is normal again
            excursion(
                "frz-1.temperature",
                Level.ACTION,
                w.clock() - 60 * MINUTE,
                end=w.clock() - 30 * MINUTE,
            )
        )
        w.sign_in("viewer")
        found = channels(w.status())
        states = {sensor: c["state"] for sensor, c in found.items()}
        assert states == {
            "frz-1.temperature": "normal",
            "frz-2.temperature": "alert",
            "frz-3.temperature": "action",
            "frz-4.temperature": "stale",
            "frz-5.temperature": "fault",
            "frz-6.temperature": "stale",
            "frz-7.temperature": "normal",
            "frz-8.temperature": "fault",
            "inc-1.co2": "stale",
            "inc-1.probe-b": "stale",
        }
        assert found["frz-6.temperature"]["reason"] == "no reading in the last 24 h"
        assert found["frz-6.temperature"]["last_text"] == "no reading"
        assert found["frz-7.temperature"]["reason"] == "uncertain quality"
        assert found["frz-5.temperature"]["value_text"] == "—"
        one = found["frz-1.temperature"]
        assert one["value_text"] == "−75.0 °C"
        assert one["last_text"] == "08:59:00 CET"  # 07:59 UTC, site time, zone named
        assert one["ago"] == "1 min ago"
        assert one["label"] == "Temperature"
        assert found["inc-1.probe-b"]["label"] == "Temperature (probe-b)"
        assert found["inc-1.co2"]["label"] == "CO₂"
        status = w.status()
        assert status["counts"] == {"action": 1, "alert": 1, "fault": 2, "stale": 4, "normal": 2}
        assert status["now_text"] == "2026-01-05 09:00:00 CET"
        cold = status["areas"][0]
        assert (cold["name"], cold["classification"]) == ("Cold room", "grade D")
        assert cold["summary"] == "1 action · 1 alert · 2 fault · 2 stale"
        assert cold["attention"] is True
        assert status["areas"][1]["classification"] == "ISO 7"

    def test_open_alarms_link_to_the_record_and_the_channels_list(self, world: World) -> None:
        """Open excursions and data gaps, newest first, each linked; closed ones are not."""
        w = world
        w.write("frz-2.temperature", 1, -69.5)
        w.records.apply(excursion("frz-2.temperature", Level.ALERT, w.clock() - 3 * MINUTE))
        w.records.apply(
            DataGap(
                id="gap-frz-4",
                sensor_id="frz-4.temperature",
                area="cold-room",
                parameter="temperature",
                start=w.clock() - 10 * MINUTE,
                end=None,
                duration_s=None,
            )
        )
        w.records.apply(
            excursion(
                "frz-1.temperature", Level.ACTION, w.clock() - 60 * MINUTE, end=w.clock() - MINUTE
            )
        )
        w.sign_in("viewer")
        status = w.status()
        alarms = [(a["title"], a["url"]) for a in status["alarms"]]
        assert alarms == [
            ("Alert excursion, high", "/excursions/exc-frz-2.temperature-alert"),
            ("Data gap", "/excursions/gap-frz-4"),
        ]
        assert [a["sensor_id"] for a in status["alarms"]] == [
            "frz-2.temperature",
            "frz-4.temperature",
        ]
        assert status["alarms"][0]["since_text"] == "08:57:00 CET"
        assert status["alarms"][0]["ago"] == "3 min ago"
        first = status["alarms"][0]
        assert (first["qa_state"], first["qa_state_text"]) == ("open", "Open")  # raw and words
        assert first["level_text"] in ("Alert", "Action", "Data gap")
        two = channels(status)["frz-2.temperature"]
        assert [a["id"] for a in two["alarms"]] == ["exc-frz-2.temperature-alert"]
        assert two["excursions_url"] == "/excursions?sensor=frz-2.temperature"
        page = w.client.get("/status").text
        assert 'href="/excursions/exc-frz-2.temperature-alert"' in page
        assert 'href="/excursions?sensor=frz-2.temperature"' in page
        # The channel's list shows its records and no other channel's.
        listing = w.client.get(two["excursions_url"]).text
        assert "/excursions/exc-frz-2.temperature-alert" in listing
        assert "/excursions/gap-frz-4" not in listing
        assert "/excursions/exc-frz-1.temperature-action" not in listing
        api = w.client.get("/api/v1/excursions", params={"sensor": "frz-1.temperature"}).json()
        assert [item["id"] for item in api["items"]] == ["exc-frz-1.temperature-action"]

    def test_staleness_follows_the_injected_clock(self, world: World) -> None:
        """Moving the clock (no sleeping) turns a fresh channel stale after its limit."""
        w = world
        w.write("frz-1.temperature", 0, -75.0)
        w.write("inc-1.co2", 0, 5.0, unit="%")  # no stale_after: the default
        w.sign_in("qa")
        assert channels(w.status())["frz-1.temperature"]["state"] == "normal"
        w.clock.advance(300)
        assert channels(w.status())["frz-1.temperature"]["state"] == "normal"
        w.clock.advance(1)
        found = channels(w.status())
        assert found["frz-1.temperature"]["state"] == "stale"
        assert found["frz-1.temperature"]["ago"] == "5 min ago"
        assert found["inc-1.co2"]["state"] == "normal"
        w.clock.advance(DEFAULT_STALE_AFTER_S - 300)
        assert channels(w.status())["inc-1.co2"]["state"] == "stale"

    def test_a_new_reading_shows_at_the_next_poll(self, world: World) -> None:
        """What the script polls for: the new value and time, and the state it brings."""
        w = world
        w.write("frz-1.temperature", 2, -75.0)
        w.sign_in("viewer")
        assert channels(w.status())["frz-1.temperature"]["value_text"] == "−75.0 °C"
        w.write("frz-1.temperature", 0, -71.26)
        after = channels(w.status())["frz-1.temperature"]
        assert (after["value_text"], after["last_text"], after["ago"]) == (
            "−71.3 °C",
            "09:00:00 CET",
            "just now",
        )

    def test_grafana_links_for_the_last_six_hours_and_the_records_span(self, world: World) -> None:
        """With dashboards.grafana_url: a link per channel (6 h) and one on the record page."""
        w = world
        w.sign_in("viewer")
        link = channels(w.status())["frz-3.temperature"]["grafana_url"]
        parts = urllib.parse.urlsplit(link)
        query = urllib.parse.parse_qs(parts.query)
        assert link.startswith(f"{GRAFANA}/d/test-site-area-cold-room/cold-room?")
        end = int(DEFAULT_T0.timestamp() * 1000)
        assert (query["from"], query["to"]) == ([str(end - 6 * 3600 * 1000)], [str(end)])
        assert query["var-instrument"] == ["frz-3"]
        assert 'class="grafana"' in w.client.get("/status").text
        w.records.apply(excursion("frz-3.temperature", Level.ACTION, w.clock() - 30 * MINUTE))
        detail = w.client.get("/excursions/exc-frz-3.temperature-action").text
        found = re.search(r'id="grafana-link" href="([^"]+)"', detail)
        assert found is not None
        href = found.group(1).replace("&amp;", "&")
        span = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)
        # The chart's window: 15 min before the start to now (an open record).
        start = int((DEFAULT_T0 - 45 * MINUTE).timestamp() * 1000)
        assert (span["from"], span["to"]) == ([str(start)], [str(end)])

    def test_no_grafana_links_without_a_grafana(self, world: World) -> None:
        """Without grafana_url no channel or record links to Grafana."""
        w = world
        client = w.sign_in("viewer", w.make(grafana=False))
        assert (
            channels(client.get("/api/v1/status").json())["frz-1.temperature"]["grafana_url"]
            is None
        )
        assert "Grafana" not in client.get("/status").text
        w.records.apply(excursion("frz-3.temperature", Level.ACTION, w.clock() - 30 * MINUTE))
        assert "grafana-link" not in client.get("/excursions/exc-frz-3.temperature-action").text

    def test_a_store_that_does_not_answer_is_said_not_a_500(self, world: World) -> None:
        """The page says why there are no readings; every channel is stale, alarms still show."""

        class Down:
            def latest(self, sensor_ids: object, since: datetime) -> dict[str, Reading]:
                raise EnvmonError("http://influx:8086: time-series store unreachable")

        w = world
        w.records.apply(excursion("frz-2.temperature", Level.ALERT, w.clock() - 3 * MINUTE))
        client = w.sign_in("viewer", w.make(latest=Down()))
        status = client.get("/api/v1/status").json()
        assert status["store_error"] == (
            "the time-series store did not answer: http://influx:8086: time-series store"
            " unreachable"
        )
        assert {c["state"] for c in channels(status).values()} == {"stale"}
        assert len(status["alarms"]) == 1
        page = client.get("/status")
        assert page.status_code == 200
        assert "time-series store unreachable" in page.text
        none = w.sign_in("viewer", w.make(latest=None))
        assert "no time-series store is configured" in none.get("/status").text

    def test_the_page_works_without_script_and_escapes_text(self, world: World) -> None:
        """Everything is in the HTML; names from the site file are escaped."""
        w = world
        w.write("frz-1.temperature", 1, -75.04)
        w.sign_in("operator")
        page = w.client.get("/status").text
        assert "Prep room &lt;b&gt;" in page
        assert "Prep room <b>" not in page
        row = page[page.index('data-sensor="frz-1.temperature"') :]
        row = row[: row.index("</tr>")]
        for text in ("−75.0 °C", "Normal", "08:59:00 CET", "1 min ago", "alert"):
            assert text in row
        assert "Europe/Amsterdam" in page


class TestAccess:
    """Sessions, roles, methods, CSP and hostile input."""

    @pytest.mark.parametrize("role", [None, *USERS])
    @pytest.mark.parametrize("path", ["/status", "/api/v1/status"])
    def test_role_matrix(self, world: World, role: str | None, path: str) -> None:
        """Without a session: sign-in (page) or 401 (API); every role may look."""
        client = world.sign_in(role)
        answer = client.get(path, follow_redirects=False)
        if role is None:
            if path == "/status":
                assert answer.status_code == 303
                assert answer.headers["location"] == "/login?next=/status"
            else:
                assert answer.status_code == 401
                assert answer.json() == {"detail": "not signed in"}
        else:
            assert answer.status_code == 200, answer.text

    def test_an_ended_session_is_refused(self, world: World) -> None:
        """A signed-out or forged session gets no status."""
        client = world.sign_in("viewer")
        token = client.cookies.get("envmon_session") or ""
        csrf = client.get("/api/v1/me").json()["csrf_token"]
        assert client.get("/api/v1/status").status_code == 200
        client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        for replayed in (token, "forged" + token):
            client.cookies.clear()
            client.cookies.set("envmon_session", replayed)
            assert client.get("/api/v1/status").status_code == 401
            assert client.get("/status", follow_redirects=False).status_code == 303

    def test_polling_does_not_keep_the_session_alive(self, world: World) -> None:
        """The script's polls are not a use: the session ends 15 idle minutes after the page."""
        w = world
        w.sign_in("viewer")
        assert w.client.get("/status").status_code == 200
        for _ in range(int(IDLE.total_seconds() // 120)):
            w.clock.advance(120)
            assert w.client.get("/api/v1/status").status_code == 200
        w.clock.advance(120)
        assert w.client.get("/api/v1/status").status_code == 401
        assert w.client.get("/status", follow_redirects=False).status_code == 303

    def test_a_page_load_is_a_use(self, world: World) -> None:
        """Loading the page (a person) keeps the session, as any page does."""
        w = world
        w.sign_in("viewer")
        for _ in range(3):
            w.clock.advance(IDLE.total_seconds() - 60)
            assert w.client.get("/status").status_code == 200

    @pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
    def test_nothing_changes_state(self, world: World, method: str) -> None:
        """Only GET: any other method is refused, with or without a session."""
        client = world.sign_in("qa")
        for path in ("/status", "/api/v1/status"):
            assert client.request(method, path).status_code in (403, 405)

    def test_the_page_runs_under_the_csp(self, world: World) -> None:
        """Its script and style sheet are the app's own files; nothing inline."""
        client = world.sign_in("viewer")
        page = client.get("/status")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert "connect-src 'self'" in csp
        assert page.headers["cache-control"] == "no-store"
        scripts = re.findall(r"<script[^>]*>(.*?)</script>", page.text, re.S)
        assert scripts == [""]  # one, empty: src only
        assert '<script src="/static/status/status.js" defer>' in page.text
        assert " style=" not in page.text
        assert "<style" not in page.text
        js = client.get("/static/status/status.js")
        assert js.status_code == 200
        assert "javascript" in js.headers["content-type"]
        assert "innerHTML" not in js.text
        assert client.get("/static/status/status.css").status_code == 200
        assert client.get("/static/app.css").status_code == 200  # the shell's, still served

    def test_the_navigation_links_the_page_only_when_it_is_there(self, world: World) -> None:
        """The shell's navigation shows Status on every page of an app that has it."""
        with_status = world.sign_in("viewer")
        assert 'id="nav-status"' in with_status.get("/excursions").text
        assert 'id="nav-status"' in with_status.get("/status").text
        without = world.sign_in("viewer", world.make(status=False))
        assert 'id="nav-status"' not in without.get("/excursions").text
        assert without.get("/status").status_code == 404

    @pytest.mark.parametrize(
        "path",
        [
            "/status?x=" + "%00" * 50,
            "/status?area=%3Cscript%3E&page=-1",
            "/status/../static/app.css",
            "/status/%2e%2e/%2e%2e/etc/passwd",
            "/api/v1/status?since=NaN&sensor=%22%27",
            "/api/v1/status/%00",
            "/static/status/..%2f..%2fsecurity.py",
            "/static/status/%2e%2e/app.py",
            "/excursions?sensor=" + "x" * 5000,
            "/excursions?sensor=%22%20OR%201%3D1%20--",
            "/api/v1/excursions?sensor=" + "x" * 5000,
        ],
    )
    def test_hostile_requests_never_500(self, world: World, path: str) -> None:
        """Odd query strings, paths and encodings get a page, a 4xx or the ordinary answer."""
        client = world.sign_in("viewer")
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code < 500, answer.text
        assert "<script>" not in answer.text
        assert "import " not in answer.text  # no source file served

    @pytest.mark.parametrize(
        "cookie",
        [
            b"envmon_session=",
            b"envmon_session=" + b"x" * 5000,
            "envmon_session=\u00e9\u00e9".encode(),
            b"envmon_session=\xff\xfe",
            b"envmon_session=a; envmon_session=b",
            b'envmon_session=%00; x="',
        ],
    )
    def test_hostile_cookies_never_500(self, world: World, cookie: bytes) -> None:
        """A session cookie that is no session is a sign-in / 401, never an error page."""
        client = world.make()
        page = client.get("/status", headers={"Cookie": cookie}, follow_redirects=False)
        assert page.status_code == 303
        assert client.get("/api/v1/status", headers={"Cookie": cookie}).status_code == 401
