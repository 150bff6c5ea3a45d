"""MQTT over TLS with client certificates, and username/password, against a real Mosquitto."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devservers.mosquitto import Mosquitto, MosquittoTls
from envmon.testing import eventually

from .helpers import Harness, Pki, messages, seq_of

pytestmark = pytest.mark.timeout(60)

PASSWORD_ENV = "ENVMON_TEST_MQTT_PASSWORD"


@pytest.fixture(scope="module")
def tls_mosquitto(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto that speaks only TLS and requires a client certificate signed by the CA."""
    broker = Mosquitto(
        tmp_path_factory.mktemp("mosquitto-tls"),
        tls=MosquittoTls(pki.ca, pki.server_cert, pki.server_key, require_certificate=True),
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def auth_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto that refuses anonymous clients; user 'envmon' has password 'correct horse'."""
    directory = tmp_path_factory.mktemp("mosquitto-auth")
    passwd = directory / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), "envmon", "correct horse"], check=True
    )
    broker = Mosquitto(directory, password_file=passwd)
    broker.start()
    yield broker
    broker.stop()


def client_context(pki: Pki) -> ssl.SSLContext:
    """Return a TLS context for the test publisher, with the client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


@pytest.fixture
async def tls_harness(tls_mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Harness]:
    """A collector harness on the TLS broker."""
    h = Harness(tls_mosquitto, tmp_path)
    yield h
    await h.close()


class TestTls:
    """TLS with a CA and a client certificate (Mosquitto with require_certificate true)."""

    @pytest.mark.parametrize("protocol", ["5", "3.1.1"])
    async def test_readings_over_tls_with_a_client_certificate(self, tls_harness, pki, protocol):
        """The collector verifies the broker, presents its certificate and reads messages."""
        tls_harness.protocol = protocol
        tls_harness.connection = (
            f"tls: {{ca_file: {pki.ca}, cert_file: {pki.client_cert}, key_file: {pki.client_key}}}"
        )
        collector = await tls_harness.started()
        await tls_harness.publish(messages(tls_harness.prefix, range(200)), tls=client_context(pki))
        await eventually(
            lambda: len(tls_harness.readings()) == 200, what="200 readings over TLS", timeout=10
        )
        assert {seq_of(r) for r in tls_harness.readings()} == set(range(200))
        assert collector.connected

    async def test_without_a_client_certificate_the_broker_refuses(self, tls_harness, pki):
        """No client certificate: no connection, and a disconnected alarm says why."""
        tls_harness.connection = f"tls: {{ca_file: {pki.ca}}}"
        collector = tls_harness.collector()
        await collector.start()
        await eventually(
            lambda: "disconnected" in tls_harness.event_kinds(),
            what="the disconnected alarm",
            timeout=10,
        )
        assert not collector.connected
        assert tls_harness.events[0].alarm
        assert "cannot connect" in tls_harness.events[0].detail

    async def test_an_untrusted_broker_is_refused(self, tls_harness, pki):
        """A broker certificate not signed by the configured CA fails verification."""
        tls_harness.connection = (
            f"tls: {{ca_file: {pki.other_ca}, cert_file: {pki.client_cert}, "
            f"key_file: {pki.client_key}}}"
        )
        collector = tls_harness.collector()
        await collector.start()
        await eventually(
            lambda: "disconnected" in tls_harness.event_kinds(),
            what="the disconnected alarm",
            timeout=10,
        )
        assert "CERTIFICATE_VERIFY_FAILED" in tls_harness.events[0].detail
        assert not collector.connected


class TestUsernamePassword:
    """A user whose password comes from the environment variable the site file names."""

    @pytest.fixture
    async def auth_harness(self, auth_mosquitto, tmp_path) -> AsyncIterator[Harness]:
        h = Harness(auth_mosquitto, tmp_path)
        h.connection = f"username: envmon\npassword_env: {PASSWORD_ENV}"
        yield h
        await h.close()

    async def test_right_password(self, auth_harness, monkeypatch):
        """With the right password in the environment the collector connects and reads."""
        monkeypatch.setenv(PASSWORD_ENV, "correct horse")
        collector = await auth_harness.started()
        await auth_harness.publish(
            messages(auth_harness.prefix, range(10)), username="envmon", password="correct horse"
        )
        await eventually(lambda: len(auth_harness.readings()) == 10, what="10 readings", timeout=10)
        assert collector.connected

    async def test_wrong_password(self, auth_harness, monkeypatch):
        """A refused CONNACK is a disconnected alarm naming the reason; no connection."""
        monkeypatch.setenv(PASSWORD_ENV, "battery staple")
        collector = auth_harness.collector()
        await collector.start()
        await eventually(
            lambda: "disconnected" in auth_harness.event_kinds(),
            what="the disconnected alarm",
            timeout=10,
        )
        detail = auth_harness.events[0].detail
        assert "refused" in detail
        assert "Not authorized" in detail or "Bad user name or password" in detail
        assert not collector.connected

    async def test_missing_environment_variable(self, auth_harness, monkeypatch):
        """An unset password variable is reported by its name, never with a value."""
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
        collector = auth_harness.collector()
        await collector.start()
        await eventually(
            lambda: "disconnected" in auth_harness.event_kinds(),
            what="the disconnected alarm",
            timeout=10,
        )
        assert f"environment variable {PASSWORD_ENV}" in auth_harness.events[0].detail
        assert not collector.connected
