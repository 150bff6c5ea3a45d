"""Fixtures of the InfluxDB tests: a real InfluxDB 1.8 speaking the v2 write and query APIs.

``influxd`` is built once from the Go module proxy (``stream.influxdb.fetch``, cached in
``~/.cache/envmon``) and runs on a free loopback port. ``influxdb`` is one server for the
whole session (each test writes its own ``site`` tag, so tests never see each other's
points); ``own_influxdb`` is a server for one test, which may stop it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.influxdb import InfluxDB, InfluxDBServerError, cached_binary, go_binary
from stream.timeseries.influxdb import InfluxSeriesReader


def _buildable() -> bool:
    try:
        go_binary()
    except InfluxDBServerError:
        return False
    return True


if not _buildable() and not cached_binary().is_file():  # pragma: no cover - the machine has Go
    pytest.skip(
        f"go is not installed and {cached_binary()} is not built"
        " (apt-get install golang-go, then deploy/scripts/influxdb.sh fetch)",
        allow_module_level=True,
    )


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """An InfluxDB shared by the session's tests, with the database ``envmon`` created."""
    server = InfluxDB(tmp_path_factory.mktemp("influxdb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    """An InfluxDB for this test alone."""
    server = InfluxDB(tmp_path / "influxdb")
    server.start()
    yield server
    server.stop()


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
