"""The live status page writes values with the site's digits per channel (SiteConfig.display)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from dashboards.status import StatusBuilder, StatusServices
from envmon.config import parse_site
from envmon.models import Reading
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.db import store_engine
from excursions.lifecycle import Lifecycle
from excursions.migrate import upgrade
from excursions.sessions import Sessions
from excursions.users import UserStore
from excursions.web.api import Services
from stream.timeseries.sqlite import SqliteTimeSeries
from tests.unit.excursions.conftest import FAST_HASHER

SITE = """\
site: {name: Test site, timezone: Europe/Amsterdam}
areas:
  - id: cold-room
    name: Cold room
    grade: D
    instruments:
      - id: frz-1
        name: Freezer 1
        kind: freezer
        channels:
          - {parameter: temperature, unit: degC, decimals: 3, limits: {alert_high: -70}}
      - id: frz-2
        name: Freezer 2
        kind: freezer
        channels:
          - {parameter: temperature, unit: degC, limits: {alert_high: -70}}
"""


def test_values_use_each_channels_digits(tmp_path: Path) -> None:
    site = parse_site(SITE)
    engine = store_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    upgrade(engine)
    clock = FakeClock(DEFAULT_T0)
    users = UserStore(engine, clock=clock, hasher=FAST_HASHER)
    series = SqliteTimeSeries(tmp_path / "series.sqlite3")
    at = clock() - timedelta(seconds=30)
    series.write(
        [
            Reading(sensor_id=s, value=-75.04567, unit="degC", ts=at)
            for s in ("frz-1.temperature", "frz-2.temperature")
        ]
    )
    services = Services(
        engine,
        Sessions(engine, users, clock=clock),
        Lifecycle(engine, users, clock=clock),
        site_timezone=site.timezone,
        clock=clock,
    )
    try:
        view = StatusBuilder(services, StatusServices(site, series)).build()
        shown = {
            c.sensor_id: c.value_text
            for area in view.areas
            for instrument in area.instruments
            for c in instrument.channels
        }
        assert shown == {"frz-1.temperature": "−75.046 °C", "frz-2.temperature": "−75.0 °C"}
    finally:
        series.close()
        engine.dispose()
