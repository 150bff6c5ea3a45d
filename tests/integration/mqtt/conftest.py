"""Fixtures of the MQTT tests: real Mosquitto brokers (Debian binary) on free loopback ports.

``mosquitto`` is one broker for the whole session (each test has its own topics and client
ids); ``own_mosquitto`` is a broker for one test, which may stop and restart it on the same
port and persistence directory. Both run the shipped ``deploy/mosquitto/mosquitto.conf``
with persistence on.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from collectors.mosquitto import Mosquitto, mosquitto_binary

from .helpers import Harness, Pki, make_pki

if shutil.which(mosquitto_binary()) is None:  # pragma: no cover - make test installs it
    pytest.skip("mosquitto is not installed (apt-get install mosquitto)", allow_module_level=True)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto shared by the session's tests, persistence on, on 127.0.0.1."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto for this test alone (it may restart it on the same port and directory)."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


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
