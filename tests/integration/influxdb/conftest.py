"""Fixtures of the InfluxDB tests: each test's own ``site`` tag and a reader of it.

The servers (``influxdb``, ``own_influxdb``: InfluxDB 1.8 built once from the Go module
proxy) are the suite's, from ``tests/conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devservers.influxdb import InfluxDB
from stream.timeseries.influxdb import InfluxSeriesReader


@pytest.fixture
def site() -> str:
    """A site id of this test's own: every query filters on it."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def reader(influxdb: InfluxDB, site: str) -> Iterator[InfluxSeriesReader]:
    """A reader of this test's site on the session's server."""
    with InfluxSeriesReader(
        influxdb.url, influxdb.token, influxdb.org, influxdb.bucket, site=site
    ) as series:
        yield series
