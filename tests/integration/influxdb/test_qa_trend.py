"""The QA app's trend through the time-series port, on a real InfluxDB: the same chart as
from the embedded SQLite store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from devservers.influxdb import InfluxDB
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.db import store_engine
from excursions.lifecycle import Lifecycle
from excursions.migrate import upgrade
from excursions.queries import record_detail
from excursions.series import fetch_trend
from excursions.sessions import Sessions
from excursions.web.api import Services
from excursions.web.app import create_app
from stream.timeseries.influxdb import InfluxSeriesReader
from stream.timeseries.schema import reading_line
from stream.timeseries.sqlite import SqliteTimeSeries
from tests.unit.excursions.conftest import stored_excursion
from tests.unit.excursions.test_records import FRIDGE, core_readings

from .test_influxdb import write_all

pytestmark = pytest.mark.timeout(120)
ZONE = ZoneInfo("Europe/Berlin")
LATER = DEFAULT_T0 + timedelta(days=1)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = store_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    upgrade(engine)
    return engine


async def test_the_chart_from_influxdb_equals_the_one_from_sqlite(
    influxdb: InfluxDB, reader: InfluxSeriesReader, site: str, engine: Engine, tmp_path: Path
) -> None:
    readings = core_readings()
    result = await write_all(influxdb, [reading_line(r, FRIDGE, site=site) for r in readings])
    assert result.written == len(readings)
    sqlite = SqliteTimeSeries(tmp_path / "series.sqlite3")
    sqlite.write(readings)
    record_id, _users = stored_excursion(engine, FakeClock(DEFAULT_T0))
    detail = record_detail(engine, record_id, ZONE)
    assert detail is not None

    from_influx = fetch_trend(reader, detail.record, now=LATER, zone=ZONE)
    from_sqlite = fetch_trend(sqlite, detail.record, now=LATER, zone=ZONE)
    sqlite.close()
    assert from_influx.error == ""
    assert from_influx.trend is not None
    assert from_sqlite.trend is not None
    assert from_influx.trend.readings == from_sqlite.trend.readings > 0
    assert from_influx.trend == from_sqlite.trend
    assert max(p.value for run in from_influx.trend.runs for p in run) == 12


def test_the_record_page_says_when_influxdb_does_not_answer(engine: Engine) -> None:
    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    users.add("vic", "Vic Viewer", "viewer", "a long password 1", actor="admin", reason="t")
    down = InfluxSeriesReader("http://127.0.0.1:9", "", "-", "envmon/autogen", timeout_s=2)
    services = Services(
        engine,
        Sessions(engine, users, clock=clock),
        Lifecycle(engine, users, clock=clock),
        secure_cookie=False,
        series=down,
        clock=clock,
    )
    client = TestClient(create_app(services))
    signed = client.post(
        "/api/v1/session", json={"username": "vic", "password": "a long password 1"}
    )
    assert signed.status_code == 200
    page = client.get(f"/excursions/{record_id}")
    assert page.status_code == 200  # the review goes on without the chart
    assert "Trend unavailable: the time-series store did not answer" in page.text
    assert "127.0.0.1:9" in page.text
