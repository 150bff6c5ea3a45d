"""Fixtures of the time-series tests: real QuestDB and InfluxDB servers (the InfluxDB v2 API).

QuestDB is resolved from Maven Central once (``deploy/questdb/pom.xml``, cached in
``~/.cache/envmon``) and runs on the machine's Java 17 with a small heap on a free loopback
port. ``questdb`` is one server for the whole session with the readings table created up
front (each test writes its own ``site`` tag, so tests never see each other's points);
``own_questdb`` is a server for one test, which may stop, kill and restart it on the same
port and directory. ``influxdb`` and ``own_influxdb`` are the InfluxDB tests' servers
(``tests/integration/influxdb/conftest.py``), for the writer contract run on both.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.questdb import QuestDB, create_readings_table, default_cache_dir, questdb_version
from tests.integration.influxdb.conftest import influxdb, own_influxdb  # noqa: F401 - fixtures

if shutil.which("java") is None:  # pragma: no cover - the machine has Java 17
    pytest.skip("java is not installed (apt-get install openjdk-17-jre)", allow_module_level=True)
if shutil.which("mvn") is None and not default_cache_dir(questdb_version()).is_dir():
    pytest.skip("mvn is not installed (apt-get install maven)", allow_module_level=True)


@pytest.fixture(scope="session")
def questdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuestDB]:
    """A QuestDB shared by the session's tests, with the readings table created."""
    server = QuestDB(tmp_path_factory.mktemp("questdb"))
    server.start()
    create_readings_table(server)
    yield server
    server.stop()


@pytest.fixture
def own_questdb(tmp_path: Path) -> Iterator[QuestDB]:
    """A QuestDB for this test alone, with the readings table created."""
    server = QuestDB(tmp_path / "questdb")
    server.start()
    create_readings_table(server)
    yield server
    server.stop()


@pytest.fixture
def site() -> str:
    """A site id of this test's own: every query filters on it."""
    return f"test-{uuid.uuid4().hex[:12]}"
