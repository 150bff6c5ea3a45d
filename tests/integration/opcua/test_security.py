"""The OPC-UA collector with message security and user identities (real servers, real PKI)."""

from __future__ import annotations

import asyncio

import pytest

from collectors.opcua import OpcUaCollector
from collectors.opcua.errors import OpcUaSetupError
from collectors.simulators.opcua_server import ServerSecurity, SyntheticServer
from envmon.models import SystemEventKind
from envmon.testing import eventually

from .helpers import FAST, readings, system_events


def secure_server(endpoint, pki, policy, *, certificate=None, key=None, **kwargs):
    """A synthetic server offering only ``policy`` and trusting only our client certificate."""
    return SyntheticServer(
        3,
        endpoint=endpoint,
        security=ServerSecurity(
            certificate=certificate or pki.server_cert,
            private_key=key or pki.server_key,
            policies=(policy,),
            trusted_clients=(pki.client_cert,),
        ),
        **kwargs,
    )


def secure_config(server, pki, policy, mode="SignAndEncrypt", **kwargs):
    """The collector configuration for ``server`` with our certificate, trusting the server's."""
    return server.collector_config(
        **FAST,
        security={
            "policy": policy,
            "mode": mode,
            "certificate": str(pki.client_cert),
            "private_key": str(pki.client_key),
            "trusted_server_certificates": [str(pki.server_cert)],
        },
        **kwargs,
    )


class TestMessageSecurity:
    @pytest.mark.parametrize(
        ("policy", "server_policy"),
        [
            ("Basic256Sha256", "Basic256Sha256_SignAndEncrypt"),
            ("Aes256_Sha256_RsaPss", "Aes256Sha256RsaPss_SignAndEncrypt"),
        ],
    )
    async def test_sign_and_encrypt_delivers_readings(
        self, endpoint, outbox, make_collector, pki, policy, server_policy
    ):
        """With SignAndEncrypt and trusted certificates both ways, readings flow."""
        server = secure_server(endpoint, pki, server_policy)
        await server.start()
        try:
            collector = make_collector(secure_config(server, pki, policy), server.specs())
            await collector.start()
            await collector.wait_connected(15)
            await server.update(value=4.5)
            await eventually(
                lambda: sum(r.value == 4.5 for r in readings(outbox)) == 3,
                what="readings",
                timeout=10,
            )
        finally:
            await server.stop()

    async def test_sign_only_mode_works_too(self, endpoint, outbox, make_collector, pki):
        """Mode Sign (integrity without confidentiality) connects as well."""
        server = secure_server(endpoint, pki, "Basic256Sha256_Sign")
        await server.start()
        try:
            config = secure_config(server, pki, "Basic256Sha256", mode="Sign")
            collector = make_collector(config, server.specs())
            await collector.start()
            await collector.wait_connected(15)
            await eventually(lambda: len(readings(outbox)) == 3, what="initial values", timeout=10)
        finally:
            await server.stop()

    # asyncua's server leaves the socket (or its transport) of a client that aborted the secure
    # channel for the garbage collector (an unclosed-socket ResourceWarning from inside the
    # library, at random times): that warning alone is tolerated here.
    @pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    )
    @pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function _SelectorTransport.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    )
    async def test_an_untrusted_server_certificate_is_refused(
        self, endpoint, outbox, make_collector, pki
    ):
        """A server presenting a certificate we do not trust never gets a session."""
        server = secure_server(
            endpoint,
            pki,
            "Basic256Sha256_SignAndEncrypt",
            certificate=pki.rogue_cert,
            key=pki.rogue_key,
        )
        await server.start()
        try:
            collector = make_collector(secure_config(server, pki, "Basic256Sha256"), server.specs())
            await collector.start()
            await eventually(
                lambda: (
                    "not among security.trusted_server_certificates" in (collector.last_error or "")
                ),
                what="the refusal",
                timeout=10,
            )
            await asyncio.sleep(0.5)
            assert not collector.connected
            assert readings(outbox) == []
            assert system_events(outbox)[0].alarm
        finally:
            await server.stop()

    async def test_a_missing_security_endpoint_is_reported(
        self, endpoint, outbox, make_collector, pki
    ):
        """Asking for a policy the server does not offer names what it offers instead."""
        server = secure_server(endpoint, pki, "Basic256Sha256_SignAndEncrypt")
        await server.start()
        try:
            config = secure_config(server, pki, "Aes256_Sha256_RsaPss")
            collector = make_collector(config, server.specs())
            await collector.start()
            await eventually(
                lambda: (
                    "no endpoint with Aes256_Sha256_RsaPss/SignAndEncrypt"
                    in (collector.last_error or "")
                ),
                what="the refusal",
                timeout=10,
            )
            assert "it offers Basic256Sha256/SignAndEncrypt" in (collector.last_error or "")
        finally:
            await server.stop()


class TestUserIdentity:
    async def test_username_and_password_from_the_environment(
        self, endpoint, outbox, make_collector, monkeypatch
    ):
        """The password comes from the variable ``password_env`` names, and it is accepted."""
        monkeypatch.setenv("TEST_OPCUA_PASSWORD", "s3cret")
        server = SyntheticServer(2, endpoint=endpoint, users={"envmon": "s3cret"})
        await server.start()
        try:
            config = server.collector_config(
                **FAST, identity={"username": "envmon", "password_env": "TEST_OPCUA_PASSWORD"}
            )
            collector = make_collector(config, server.specs())
            await collector.start()
            await collector.wait_connected(10)
            await eventually(lambda: len(readings(outbox)) == 2, what="initial values", timeout=10)
        finally:
            await server.stop()

    async def test_a_wrong_password_never_connects(
        self, endpoint, outbox, make_collector, monkeypatch
    ):
        """A refused user is retried with back-off and reported, never connected."""
        monkeypatch.setenv("TEST_OPCUA_PASSWORD", "wrong")
        server = SyntheticServer(2, endpoint=endpoint, users={"envmon": "s3cret"})
        await server.start()
        try:
            config = server.collector_config(
                **FAST, identity={"username": "envmon", "password_env": "TEST_OPCUA_PASSWORD"}
            )
            collector = make_collector(config, server.specs())
            await collector.start()
            await eventually(
                lambda: "BadUserAccessDenied" in (collector.last_error or ""),
                what="the refusal",
                timeout=10,
            )
            assert not collector.connected
            assert system_events(outbox)[0].event is SystemEventKind.DISCONNECTED
        finally:
            await server.stop()

    async def test_a_missing_password_variable_fails_at_start(self, endpoint, outbox, monkeypatch):
        """Without the password variable the collector refuses to start, naming the variable."""
        monkeypatch.delenv("TEST_OPCUA_PASSWORD", raising=False)
        server = SyntheticServer(1, endpoint=endpoint)
        config = server.collector_config(
            identity={"username": "envmon", "password_env": "TEST_OPCUA_PASSWORD"}
        )
        from collectors.pipeline import CollectorPipeline

        collector = OpcUaCollector(config, server.specs(), CollectorPipeline(outbox, source="t"))
        with pytest.raises(OpcUaSetupError, match="TEST_OPCUA_PASSWORD"):
            await collector.start()
