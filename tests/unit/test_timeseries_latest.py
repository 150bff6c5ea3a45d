"""The embedded store's newest reading of many sensors (``SqliteTimeSeries.latest``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from envmon.models import Quality, Reading
from envmon.testing import DEFAULT_T0
from envmon.timeseries import SeriesReader
from stream.timeseries.sqlite import SqliteTimeSeries

MINUTE = timedelta(minutes=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteTimeSeries]:
    series = SqliteTimeSeries(tmp_path / "series.sqlite3")
    yield series
    series.close()


def reading(
    sensor_id: str, minutes: float, value: float | None, quality: Quality = Quality.GOOD
) -> Reading:
    return Reading(
        sensor_id=sensor_id,
        value=value,
        unit="degC",
        ts=DEFAULT_T0 + minutes * MINUTE,
        quality=quality,
        source="test",
    )


class TestLatest:
    """Each sensor's newest reading since a time."""

    def test_is_the_port_of_the_status_page(self, store: SqliteTimeSeries) -> None:
        """The embedded store is a ``SeriesReader`` (what ``dashboards.status`` reads)."""
        reader: SeriesReader = store
        assert reader.latest([], DEFAULT_T0) == {}

    def test_the_newest_of_each_sensor_whatever_the_write_order(
        self, store: SqliteTimeSeries
    ) -> None:
        """Newest by reading time, not by arrival; other sensors and unknown ids left out."""
        store.write([reading("a.t", 5, 5.0), reading("a.t", 1, 1.0), reading("b.t", 2, 2.0)])
        store.write([reading("a.t", 3, 3.0), reading("c.t", 9, 9.0)])
        found = store.latest(["a.t", "b.t", "nobody.t"], DEFAULT_T0)
        assert found == {"a.t": reading("a.t", 5, 5.0), "b.t": reading("b.t", 2, 2.0)}

    def test_since_is_inclusive(self, store: SqliteTimeSeries) -> None:
        """A reading at ``since`` counts; with none since, the sensor is left out."""
        store.write([reading("a.t", 0, 1.0), reading("a.t", 2, 2.0)])
        assert store.latest(["a.t"], DEFAULT_T0 + 2 * MINUTE)["a.t"].value == 2.0
        later = DEFAULT_T0 + 2 * MINUTE + timedelta(microseconds=1)
        assert store.latest(["a.t"], later) == {}

    def test_a_fault_is_the_newest_reading(self, store: SqliteTimeSeries) -> None:
        """A bad reading without a value newer than the last value is what comes back."""
        store.write([reading("a.t", 0, 4.0), reading("a.t", 1, None, Quality.BAD)])
        found = store.latest(["a.t"], DEFAULT_T0)["a.t"]
        assert (found.value, found.quality) == (None, Quality.BAD)

    def test_an_unreadable_quality_reads_as_bad(self, store: SqliteTimeSeries) -> None:
        """A row whose quality is none of ours is not taken for a good one."""
        store.write([reading("a.t", 0, 4.0)])
        with store._lock:
            store._db.execute("UPDATE readings SET quality = 'weird' WHERE sensor_id = 'a.t'")
        assert store.latest(["a.t"], DEFAULT_T0)["a.t"].quality is Quality.BAD

    def test_hostile_and_many_ids(self, store: SqliteTimeSeries) -> None:
        """Ids with quotes or JSON are plain values; a thousand ids fit one query."""
        hostile = ['a.t"]', "a.t' OR 1=1 --", "a.t\\", '["a.t"]', "%"]
        many = [f"s{i}.t" for i in range(1000)]
        store.write([reading(sensor, 1, 1.0) for sensor in ["a.t", *many]])
        assert store.latest(hostile, DEFAULT_T0) == {}
        assert set(store.latest([*hostile, *many], DEFAULT_T0)) == set(many)

    def test_one_query_on_the_primary_key(self, store: SqliteTimeSeries) -> None:
        """One statement, whose plan searches the primary key: no scan of the readings."""
        store.write([reading("a.t", k, float(k)) for k in range(100)])
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        store.latest(["a.t", "b.t"], DEFAULT_T0)
        store._db.set_trace_callback(None)
        (query,) = statements
        plan = [str(row) for row in store._db.execute(f"EXPLAIN QUERY PLAN {query}")]
        assert any("SEARCH readings USING PRIMARY KEY" in row for row in plan), plan
        assert any("SEARCH r USING PRIMARY KEY" in row for row in plan), plan
        assert not any("SCAN r" in row or "SCAN readings" in row for row in plan), plan
