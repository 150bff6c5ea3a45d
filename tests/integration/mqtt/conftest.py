"""Fixtures of the MQTT tests: a collector harness and a test PKI.

The brokers are the suite's (``tests/conftest.py``): ``mosquitto``, one for the whole
session (each test has its own topics and client ids), and ``own_mosquitto`` for a test
that stops and restarts it on the same port and persistence directory. Both run the
shipped ``deploy/mosquitto/mosquitto.conf`` with persistence on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devservers.mosquitto import Mosquitto

from .helpers import Harness, Pki, make_pki


@pytest.fixture
async def harness(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Harness]:
    """A collector harness on the shared broker with this test's own topics."""
    h = Harness(mosquitto, tmp_path)
    yield h
    await h.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA with a server certificate for 127.0.0.1 and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))
