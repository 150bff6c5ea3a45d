"""Helpers of the OPC-UA tests: PKI, a small test server, configurations, buffer readers."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collectors.buffer import Outbox
from collectors.simulators.opcua_server import OpcUaServer
from envmon.bus import ALARMS, DEADLETTER, READINGS
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.models import DeadLetter, ProofOfLife, Reading, SystemEvent, decode_readings_message
from envmon.sensors import SensorSpec
from envmon.testing import make_spec

FAST: dict[str, Any] = {
    "subscription": {"publishing_interval": 0.05, "keepalive_count": 10, "lifetime_count": 30},
    "watchdog": {"silence_timeout": 5, "health_check": 1},
    "reconnect": {"initial": 0.2, "maximum": 1},
    "node_defaults": {"sampling_interval": 0},
}


@dataclass(frozen=True)
class Pki:
    """Certificates and keys for the security tests (PEM keys, DER certificates)."""

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path
    client_uri: str


def _write_pair(
    folder: Path, name: str, uri: str, usage: x509.ObjectIdentifier
) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(uri),
                    x509.DNSName("localhost"),
                    x509.DNSName(socket.gethostname()),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.der", folder / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_pki(folder: Path) -> Pki:
    """Write a server, a client and a rogue server certificate, each self-signed."""
    server_cert, server_key = _write_pair(
        folder, "server", "urn:envmon:simulator:test", ExtendedKeyUsageOID.SERVER_AUTH
    )
    client_uri = "urn:envmon:collector:secure"
    client_cert, client_key = _write_pair(
        folder, "client", client_uri, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    rogue_cert, rogue_key = _write_pair(
        folder, "rogue", "urn:envmon:simulator:rogue", ExtendedKeyUsageOID.SERVER_AUTH
    )
    return Pki(server_cert, server_key, client_cert, client_key, rogue_cert, rogue_key, client_uri)


class PointsServer(OpcUaServer):
    """A server with a few named variables under ``Objects/Test``.

    ``kinds`` makes a variable hold text (``string``), arrays of doubles (``array``), or
    any type (``any``: it starts empty); the others are doubles in °C.
    """

    def __init__(self, keys: Sequence[str], kinds: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.keys = list(keys)
        self.kinds = kinds or {}

    async def build(self, server: Any) -> None:
        from asyncua import ua

        ns = self.namespace_index
        folder = await server.nodes.objects.add_folder(
            ua.NodeId("Test", ns, ua.NodeIdType.String), ua.QualifiedName("Test", ns)
        )
        initial: dict[str, dict[str, Any]] = {
            "string": {"value": "", "variant_type": ua.VariantType.String},
            "array": {"value": [0.0], "variant_type": ua.VariantType.Double},
            "any": {"value": None, "datatype": ua.NodeId("AnyValue", ns, ua.NodeIdType.String)},
        }
        for key in self.keys:
            kind = initial.get(self.kinds.get(key, ""), {"unit": "degC"})
            await self.add_variable(key, folder, key, **kind)


def config_for(
    endpoint: str, nodes: list[dict[str, Any]], **overrides: Any
) -> OpcUaCollectorConfig:
    """A collector configuration for the tests (fast timings unless overridden)."""
    data: dict[str, Any] = {"id": "test", "endpoint": endpoint, "nodes": nodes, **FAST}
    data.update(overrides)
    return OpcUaCollectorConfig.model_validate(data)


def specs_for(sensor_ids: Sequence[str], **kwargs: Any) -> list[SensorSpec]:
    """Plain sensor specs (degC unless told otherwise)."""
    kwargs.setdefault("unit", "degC")
    return [make_spec(s, area="test", **kwargs) for s in sensor_ids]


def readings(outbox: Outbox) -> list[Reading]:
    """Every reading in the buffer, in order (proofs of life left out)."""
    return [r for r in readings_and_proofs(outbox) if isinstance(r, Reading)]


def readings_and_proofs(outbox: Outbox) -> list[Reading | ProofOfLife]:
    """Every message of the readings topic in the buffer, in order."""
    return [decode_readings_message(m.value) for _, m in outbox.peek(10**7) if m.topic == READINGS]


def dead_letters(outbox: Outbox) -> list[DeadLetter]:
    """Every dead letter in the buffer, in order."""
    return [
        DeadLetter.model_validate_json(m.value)
        for _, m in outbox.peek(10**7)
        if m.topic == DEADLETTER
    ]


def system_events(outbox: Outbox) -> list[SystemEvent]:
    """Every system event in the buffer, in order."""
    return [
        SystemEvent.model_validate_json(m.value) for _, m in outbox.peek(10**7) if m.topic == ALARMS
    ]


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``predicate()`` holds, failing the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)
