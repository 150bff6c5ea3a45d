"""The Flux reader against a real InfluxDB 1.8 (its v2 API), fed by the InfluxDB writer.

Points go in through ``InfluxWriter`` (``stream.timeseries.influxdb``: influxdb-client, gzip,
µs precision) as the stream agent writes them, in the ``stream.timeseries.schema`` lines, and
come back through ``InfluxSeriesReader`` (Flux). InfluxDB has applied a write when it answers
it, so every read-back is immediate. The writer's own contract (stored, deduplicated,
dead-lettered, no loss) runs on InfluxDB and QuestDB alike in
``tests/integration/timeseries/test_writer_contract.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from devservers.influxdb import InfluxDB
from envmon.models import Level, Quality, Reading
from envmon.testing import DEFAULT_T0, make_spec
from envmon.timeseries import TimeSeriesQueryError
from stream.timeseries import schema as tsschema
from stream.timeseries.influxdb import (
    SOURCE,
    InfluxSeriesReader,
    InfluxWriter,
    WriteResult,
    flux_string,
    readings_query,
)
from tests.integration.tswriting import Sinks, writer

HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)


def make_writer(server: InfluxDB, sinks: Sinks, **kwargs: Any) -> InfluxWriter:
    return writer(server.url, server.token, server.org, server.bucket, sinks, gzip=True, **kwargs)


async def write_all(server: InfluxDB, lines: list[str]) -> WriteResult:
    """Write lines that must all be stored, and check that they were."""
    sinks = Sinks()
    async with make_writer(server, sinks) as writer:
        result = await writer.write(lines)
    assert (result.written, result.dead_lettered) == (len(lines), 0)
    assert sinks.letters == []
    assert sinks.events == []
    return result


def make_reader(server: InfluxDB, **kwargs: Any) -> InfluxSeriesReader:
    return InfluxSeriesReader(server.url, server.token, server.org, server.bucket, **kwargs)


def stored(reading: Reading) -> Reading:
    """What the reader returns for a written reading: the same, with source ``influxdb``."""
    return reading.model_copy(update={"source": SOURCE})


def reading(
    sensor_id: str,
    offset: timedelta,
    value: float | None = 1.0,
    unit: str = "degC",
    quality: Quality = Quality.GOOD,
) -> Reading:
    return Reading(
        sensor_id=sensor_id, value=value, unit=unit, ts=DEFAULT_T0 + offset, quality=quality
    )


def line_stream(site: str, sensors: int, start: int, count: int) -> list[str]:
    """Lines of ``count`` readings, round-robin over sensors, 1 ms apart from ``start``."""
    return [
        tsschema.reading_line(
            reading(f"s{i % sensors}.temperature", timedelta(milliseconds=i), i / 10), site=site
        )
        for i in range(start, start + count)
    ]


class TestReadBack:
    """Readings written by the writer read back equal through the Flux reader."""

    async def test_readings_read_back(self, influxdb, site, reader):
        """Values, no value, quality, unit, µs times of one sensor; no other sensor or site."""
        # The server is the session's: a sensor id of this test's own keeps the every-site
        # query below to this test's points.
        spec_a = make_spec(f"fridge-{site[-12:]}.temperature", area="Grade B, room=1")
        spec_b = make_spec("inc-7.co2", area="Kühlraum µ", parameter="co2", unit="%")
        t = timedelta(microseconds=123_457)
        mine = [
            reading(spec_a.sensor_id, t, 4.25),
            reading(spec_a.sensor_id, t + timedelta(seconds=1), 8.5, quality=Quality.UNCERTAIN),
            reading(spec_a.sensor_id, t + timedelta(seconds=2), None, quality=Quality.BAD),
            reading(spec_a.sensor_id, t + timedelta(seconds=3), 0.1),
            reading(spec_a.sensor_id, t + timedelta(seconds=4), -1.5e300),
        ]
        others = [reading(spec_b.sensor_id, r.ts - DEFAULT_T0, 5.0, unit="%") for r in mine]
        elsewhere = [
            reading(spec_a.sensor_id, r.ts - DEFAULT_T0 + timedelta(milliseconds=500), 99.0)
            for r in mine
        ]
        encoder = tsschema.LineEncoder({s.sensor_id: s for s in (spec_a, spec_b)}, site=site)
        states = [None, Level.ALERT, Level.ACTION, None, None]
        lines = [encoder.line(r, state) for r, state in zip(mine, states, strict=True)]
        lines += [encoder.line(r) for r in others]
        lines += [tsschema.reading_line(r, spec_a, site=f"{site}-other") for r in elsewhere]
        await write_all(influxdb, lines)

        assert reader.query(spec_a.sensor_id, DEFAULT_T0, DEFAULT_T0 + HOUR) == [
            stored(r) for r in mine
        ]
        assert reader.query(spec_b.sensor_id, DEFAULT_T0, DEFAULT_T0 + HOUR) == [
            stored(r) for r in others
        ]
        with make_reader(influxdb) as every_site:
            both = every_site.query(spec_a.sensor_id, DEFAULT_T0, DEFAULT_T0 + HOUR)
        assert both == sorted((stored(r) for r in mine + elsewhere), key=lambda r: r.ts)

    async def test_range_is_half_open(self, influxdb, site, reader):
        """A reading at ``start`` is in the range, one at ``end`` is not (to the microsecond)."""
        sensor = "fridge-2.temperature"
        written = [reading(sensor, k * US, float(k)) for k in range(5)]
        written.append(reading(sensor, timedelta(seconds=1), 9.0))
        await write_all(influxdb, [tsschema.reading_line(r, site=site) for r in written])
        t0 = DEFAULT_T0

        def query(start: timedelta, end: timedelta) -> list[float | None]:
            return [r.value for r in reader.query(sensor, t0 + start, t0 + end)]

        assert query(1 * US, 3 * US) == [1.0, 2.0]
        assert query(0 * US, 5 * US) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert query(5 * US, timedelta(seconds=1)) == []
        assert query(timedelta(seconds=1), timedelta(seconds=1) + US) == [9.0]
        assert query(timedelta(seconds=1), timedelta(seconds=1)) == []
        assert query(timedelta(seconds=2), timedelta(seconds=1)) == []

    async def test_units_and_series_merged_in_time_order(self, influxdb, site, reader):
        """A dimensionless channel reads back with unit ""; a unit change keeps time order."""
        gauge = [
            reading("mixer-1.state", k * timedelta(seconds=1), float(k), unit="") for k in (0, 1)
        ]
        changing = [
            reading("fridge-3.temperature", timedelta(seconds=0), 4.0, unit="degC"),
            reading("fridge-3.temperature", timedelta(seconds=1), 277.15, unit="K"),
            reading("fridge-3.temperature", timedelta(seconds=2), 4.0, unit="degC"),
            reading("fridge-3.temperature", timedelta(seconds=3), None, "K", Quality.BAD),
        ]
        await write_all(influxdb, [tsschema.reading_line(r, site=site) for r in gauge + changing])
        assert reader.query("mixer-1.state", DEFAULT_T0, DEFAULT_T0 + HOUR) == [
            stored(r) for r in gauge
        ]
        assert reader.query("fridge-3.temperature", DEFAULT_T0, DEFAULT_T0 + HOUR) == [
            stored(r) for r in changing
        ]

    async def test_hostile_strings_cannot_change_the_query(self, influxdb, site):
        """Quotes, backslashes and ``${`` in a site or sensor id stay inside their string."""
        hostile_site = f'{site} "x\\" or true or r.site == "${{y}}" q'
        sensor = "fridge-4.temperature"
        mine = [reading(sensor, k * timedelta(seconds=1), float(k)) for k in range(3)]
        await write_all(influxdb, [tsschema.reading_line(r, site=hostile_site) for r in mine])
        with make_reader(influxdb, site=hostile_site) as reader:
            assert reader.query(sensor, DEFAULT_T0, DEFAULT_T0 + HOUR) == [stored(r) for r in mine]
            for sensor_id in (
                f'{sensor}" or r.sensor != "',
                f'{sensor}\\" or true or r.sensor == "\\',
                "${r.sensor}",
                f'{sensor}") |> yield(name: "x',
            ):
                assert reader.query(sensor_id, DEFAULT_T0, DEFAULT_T0 + HOUR) == []
        with make_reader(influxdb, site=f'{hostile_site}" or r.site != "') as reader:
            assert reader.query(sensor, DEFAULT_T0, DEFAULT_T0 + HOUR) == []

    def test_missing_bucket_is_a_clear_error(self, influxdb):
        """A bucket the server does not have raises TimeSeriesQueryError naming URL and bucket."""
        with (
            make_reader(influxdb) as good,
            InfluxSeriesReader(influxdb.url, "", "-", "nowhere/autogen") as reader,
        ):
            assert good.query("x.y", DEFAULT_T0, DEFAULT_T0 + HOUR) == []
            with pytest.raises(TimeSeriesQueryError, match="nowhere/autogen") as caught:
                reader.query("x.y", DEFAULT_T0, DEFAULT_T0 + HOUR)
        assert influxdb.url in str(caught.value)


class TestUnavailable:
    """The reader says which store it cannot reach, and reads again once it is back."""

    async def test_query_while_stopped(self, own_influxdb):
        """A stopped server raises TimeSeriesQueryError naming its URL; a restart serves again."""
        server: InfluxDB = own_influxdb
        written = reading("fridge-5.temperature", timedelta(0), 3.5)
        await write_all(server, [tsschema.reading_line(written, site="plant")])
        with make_reader(server, site="plant", timeout_s=2.0) as reader:
            query = ("fridge-5.temperature", DEFAULT_T0, DEFAULT_T0 + HOUR)
            assert reader.query(*query) == [stored(written)]
            server.stop()
            with pytest.raises(TimeSeriesQueryError, match="unreachable") as caught:
                reader.query(*query)
            assert server.url in str(caught.value)
            server.start()
            assert reader.query(*query) == [stored(written)]


class TestFluxStrings:
    """Strings placed in a Flux query are literals with every special character escaped."""

    @pytest.mark.parametrize(
        ("text", "literal"),
        [
            ("plain", '"plain"'),
            ('a"b', '"a\\"b"'),
            ("a\\b", '"a\\\\b"'),
            ("${x}", '"\\${x}"'),
            ("\\${x}", '"\\\\\\${x}"'),
            ("$x {y}", '"$x {y}"'),
        ],
    )
    def test_flux_string(self, text, literal):
        """Backslash, double quote and ``${`` are escaped, nothing else."""
        assert flux_string(text) == literal

    def test_query_shape(self):
        """The query filters the schema's measurement, sensor and site, pivots and keeps."""
        flux = readings_query(
            "envmon/autogen",
            "s.t",
            DEFAULT_T0 + timedelta(microseconds=5),
            DEFAULT_T0 + HOUR,
            site="a",
        )
        assert 'from(bucket: "envmon/autogen")' in flux
        assert "range(start: 2026-01-05T08:00:00.000005Z, stop: 2026-01-05T09:00:00Z)" in flux
        assert 'r._measurement == "reading" and r.sensor == "s.t" and r.site == "a"' in flux
        assert 'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")' in flux
