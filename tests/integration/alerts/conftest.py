"""Fixtures of the alerting tests against real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.alertmanager import Alertmanager, buildable, cached_binary

#: Alertmanager's resolve_timeout in the tests: short, so that its own time passes quickly.
ALERTMANAGER_RESOLVE_TIMEOUT_S = 3.0


def _need_alertmanager() -> None:
    if not buildable():  # pragma: no cover - the machine has Go
        pytest.skip(
            f"go is not installed and {cached_binary()} is not built"
            " (apt-get install golang-go, then deploy/scripts/alertmanager.sh fetch)"
        )


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    """An Alertmanager 0.31.1 shared by the session (each test posts its own ``site`` label)."""
    _need_alertmanager()
    server = Alertmanager(
        tmp_path_factory.mktemp("alertmanager"), resolve_timeout_s=ALERTMANAGER_RESOLVE_TIMEOUT_S
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """An Alertmanager for this test alone, which it may stop and start."""
    _need_alertmanager()
    server = Alertmanager(
        tmp_path / "alertmanager", resolve_timeout_s=ALERTMANAGER_RESOLVE_TIMEOUT_S
    )
    server.start()
    yield server
    server.stop()
