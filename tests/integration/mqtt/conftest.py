"""Fixtures of the MQTT tests: real Mosquitto brokers (Debian binary) on free loopback ports.

``mosquitto`` is one broker for the whole session (each test has its own topics and client
ids); ``own_mosquitto`` is a broker for one test, which may stop and restart it on the same
port and persistence directory. Both run the shipped ``deploy/mosquitto/mosquitto.conf``
with persistence on.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devservers.fixtures import server_fixtures
from devservers.mosquitto import Mosquitto, mosquitto_binary

from .helpers import Harness, Pki, make_pki

if shutil.which(mosquitto_binary()) is None:  # pragma: no cover - make test installs it
    pytest.skip("mosquitto is not installed (apt-get install mosquitto)", allow_module_level=True)


mosquitto, own_mosquitto = server_fixtures("mosquitto", Mosquitto)


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
