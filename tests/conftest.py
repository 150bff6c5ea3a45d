"""Options and fixtures of the whole suite.

Every real server a test needs is a fixture here, built by ``devservers.fixtures``: the
session's shared one (``kafka``, ``questdb``, ``influxdb``, ``postgres``, ``mosquitto``,
``alertmanager``; started on first use, tests keep apart by their own topics, tags or
databases) and ``own_<name>`` for a test that stops, kills or restarts its server. A
machine that lacks a server skips the tests that need it, naming what to install.

Every test starts without the developer's ``ENVMON_*`` settings (a shell with
``ENVMON_BUS=kafka`` must not change what a test sees); only the variables that say where
the development servers and test tools are (``KEEP``) pass through.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Final

import pytest

from devservers import alertmanager as _alertmanager
from devservers import influxdb as _influxdb
from devservers import kafka as _kafka
from devservers import mosquitto as _mosquitto
from devservers import postgres as _postgres
from devservers import questdb as _questdb
from devservers.fixtures import server_fixtures

#: Alertmanager's resolve_timeout in the tests: short, so that its own time passes quickly.
ALERTMANAGER_RESOLVE_TIMEOUT_S = 3.0

kafka, own_kafka = server_fixtures("kafka", _kafka.KafkaBroker, missing=_kafka.missing)
questdb, own_questdb = server_fixtures(
    "questdb",
    _questdb.QuestDB,
    prepare=_questdb.create_readings_table,
    missing=_questdb.missing,
)
influxdb, own_influxdb = server_fixtures("influxdb", _influxdb.InfluxDB, missing=_influxdb.missing)
mosquitto, own_mosquitto = server_fixtures(
    "mosquitto", _mosquitto.Mosquitto, missing=_mosquitto.missing
)
# As root PostgreSQL runs as ``envmon-pg``, which must traverse every parent of its data
# directory: outside pytest's temporary root, which pytest makes private at each session.
postgres, own_postgres = server_fixtures(
    "postgres", _postgres.PostgresServer, outside_tmp=True, missing=_postgres.missing
)
alertmanager, own_alertmanager = server_fixtures(
    "alertmanager",
    partial(_alertmanager.Alertmanager, resolve_timeout_s=ALERTMANAGER_RESOLVE_TIMEOUT_S),
    missing=_alertmanager.missing,
)

#: The development servers' and test tools' own variables: where builds are cached, which
#: binaries and versions to run, where artifacts go, which faults to run.
KEEP: Final = frozenset(
    {
        "ENVMON_CACHE_DIR",
        "ENVMON_KAFKA_VERSION",
        "ENVMON_KAFKA_HOME",
        "ENVMON_KAFKA_HEAP_OPTS",
        "ENVMON_KAFKA_CONTROLLER_PORT",
        "ENVMON_POSTGRES_BIN",
        "ENVMON_INFLUXDB_LOG_LEVEL",
        "ENVMON_ALERTMANAGER_LOG_LEVEL",
        "ENVMON_CHROMIUM",
        "ENVMON_TEST_ARTIFACTS",
        "ENVMON_FAULTS",
        "ENVMON_DASHBOARD_QUERIES",
    }
)


@pytest.fixture(autouse=True)
def _no_envmon_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("ENVMON_") and name not in KEEP:
            monkeypatch.delenv(name)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the golden files (generated dashboards) instead of comparing with them",
    )
