"""The newest reading of many sensors (``SeriesReader.latest``) from a real InfluxDB 1.8, as
the live status page reads it: the same answers as the embedded SQLite store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devservers.influxdb import InfluxDB
from envmon.models import Quality, Reading
from envmon.testing import DEFAULT_T0
from envmon.timeseries import TimeSeriesQueryError
from stream.timeseries import schema as tsschema
from stream.timeseries.influxdb import InfluxSeriesReader, latest_query
from stream.timeseries.sqlite import SqliteTimeSeries

from .test_influxdb import make_reader, reading, stored, write_all

pytestmark = pytest.mark.timeout(120)
MINUTE = timedelta(minutes=1)


def lines(site: str, readings: list[Reading]) -> list[str]:
    return [tsschema.reading_line(r, site=site) for r in readings]


class TestLatest:
    """Each sensor's newest point since a time, in one query."""

    async def test_the_newest_reading_of_each_sensor(self, influxdb, site, reader, tmp_path):
        """Newest value, quality and unit per sensor; sensors without readings are left out."""
        written = [reading("fridge-1.temperature", k * MINUTE, 4.0 + k / 10) for k in range(5)] + [
            reading("inc-1.co2", k * MINUTE, 5.0, unit="%", quality=Quality.UNCERTAIN)
            for k in range(3)
        ]
        await write_all(influxdb, lines(site, written))
        wanted = ["fridge-1.temperature", "inc-1.co2", "never.seen"]
        found = reader.latest(wanted, DEFAULT_T0 - MINUTE)
        assert found == {
            "fridge-1.temperature": stored(written[4]),
            "inc-1.co2": stored(written[7]),
        }
        sqlite = SqliteTimeSeries(tmp_path / "series.sqlite3")
        sqlite.write(written)
        from_sqlite = sqlite.latest(wanted, DEFAULT_T0 - MINUTE)
        sqlite.close()
        assert {k: stored(v) for k, v in from_sqlite.items()} == found

    async def test_since_is_inclusive_and_older_points_are_not_found(self, influxdb, site, reader):
        """A reading at ``since`` is found; one before it is not (the sensor is left out)."""
        sensor = "fridge-2.temperature"
        await write_all(influxdb, lines(site, [reading(sensor, MINUTE, 3.5)]))
        assert reader.latest([sensor], DEFAULT_T0 + MINUTE)[sensor].value == 3.5
        assert reader.latest([sensor], DEFAULT_T0 + MINUTE + timedelta(microseconds=1)) == {}

    async def test_a_fault_newer_than_the_last_value_reads_as_no_value(
        self, influxdb, site, reader
    ):
        """The newest point has no value field (bad quality): never the older value instead."""
        sensor = "fridge-3.temperature"
        written = [
            reading(sensor, 0 * MINUTE, 4.0),
            reading(sensor, 1 * MINUTE, None, quality=Quality.BAD),
        ]
        await write_all(influxdb, lines(site, written))
        found = reader.latest([sensor], DEFAULT_T0)[sensor]
        assert found == stored(written[1])
        assert found.value is None
        assert found.quality is Quality.BAD

    async def test_a_unit_change_keeps_the_newest_series(self, influxdb, site, reader):
        """Two series of one sensor (unit changed): the newest point wins, with its unit."""
        sensor = "fridge-4.temperature"
        written = [
            reading(sensor, 0 * MINUTE, 277.15, unit="K"),
            reading(sensor, 1 * MINUTE, 4.1, unit="degC"),
            reading(sensor, 2 * MINUTE, 277.35, unit="K"),
        ]
        await write_all(influxdb, lines(site, written))
        assert reader.latest([sensor], DEFAULT_T0)[sensor] == stored(written[2])

    async def test_only_the_readers_site(self, influxdb, site, reader):
        """Points of another site (same sensor id, newer) are not this site's newest."""
        sensor = "fridge-5.temperature"
        await write_all(influxdb, lines(site, [reading(sensor, 0 * MINUTE, 4.0)]))
        await write_all(influxdb, lines(f"{site}-other", [reading(sensor, MINUTE, 99.0)]))
        assert reader.latest([sensor], DEFAULT_T0)[sensor].value == 4.0
        with make_reader(influxdb) as every_site:
            assert every_site.latest([sensor], DEFAULT_T0)[sensor].value == 99.0

    async def test_hostile_sensor_ids_cannot_change_the_query(self, influxdb, site, reader):
        """Quotes, backslashes and ``${`` in a sensor id stay inside its string."""
        sensor = "fridge-6.temperature"
        await write_all(influxdb, lines(site, [reading(sensor, 0 * MINUTE, 4.0)]))
        hostile = [
            f'{sensor}" or r.sensor != "',
            f'{sensor}\\" or true or r.sensor == "\\',
            "${r.sensor}",
            f'{sensor}") |> yield(name: "x',
        ]
        assert reader.latest(hostile, DEFAULT_T0) == {}
        assert set(reader.latest([*hostile, sensor], DEFAULT_T0)) == {sensor}

    def test_no_sensors_asks_nothing(self, influxdb):
        """An empty list answers empty without a query (a reader of no server would fail)."""
        with InfluxSeriesReader("http://127.0.0.1:9", "", "-", influxdb.bucket) as down:
            assert down.latest([], DEFAULT_T0) == {}
            with pytest.raises(TimeSeriesQueryError, match=r"127\.0\.0\.1:9"):
                down.latest(["x.y"], DEFAULT_T0)

    def test_the_query_names_each_sensor_once_and_the_site(self):
        """The Flux filters on the measurement, the site and each sensor, then takes last()."""
        flux = latest_query("envmon/autogen", ["b.t", "a.t"], DEFAULT_T0, site="plant")
        assert 'r._measurement == "reading"' in flux
        assert 'r.site == "plant"' in flux
        assert '(r.sensor == "a.t" or r.sensor == "b.t")' in flux
        assert "|> last()" in flux


async def test_many_sensors_in_one_query(influxdb: InfluxDB, site: str) -> None:
    """Two hundred sensors (a large site) answer in one query, each with its own newest."""

    written = [
        reading(f"s{i}.temperature", k * MINUTE, float(i * 10 + k))
        for i in range(200)
        for k in range(3)
    ]
    await write_all(influxdb, lines(site, written))
    with make_reader(influxdb, site=site) as reader:
        found = reader.latest([f"s{i}.temperature" for i in range(200)], DEFAULT_T0)
    assert len(found) == 200
    assert all(found[f"s{i}.temperature"].value == i * 10 + 2 for i in range(200))
