"""Options and fixtures of the whole suite.

Every test starts without the developer's ``ENVMON_*`` settings (a shell with
``ENVMON_BUS=kafka`` must not change what a test sees); only the variables that say where
the development servers and test tools are (``KEEP``) pass through.
"""

from __future__ import annotations

import os
from typing import Final

import pytest

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
