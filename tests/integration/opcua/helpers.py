"""Helpers of the OPC-UA tests: PKI, a small test server, configurations, buffer readers."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from collectors.buffer import Outbox
from collectors.simulators.opcua_server import OpcUaServer
from envmon.bus import ALARMS, DEADLETTER, READINGS
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.models import DeadLetter, ProofOfLife, Reading, SystemEvent, decode_readings_message
from envmon.sensors import SensorSpec
from envmon.testing import make_spec
from tests.pki import issue, write_der, write_pem

FAST: dict[str, Any] = {
    "subscription": {"publishing_interval": 0.05, "keepalive_count": 10, "lifetime_count": 30},
    "watchdog": {"silence_timeout": 5, "health_check": 1},
    "reconnect": {"initial": 0.2, "maximum": 1},
    "node_defaults": {"sampling_interval": 0},
}


def fast(**overrides: Any) -> dict[str, Any]:
    """Return ``FAST`` with ``overrides``; a dict override is merged into FAST's dict."""
    merged = dict(FAST)
    for key, value in overrides.items():
        base = FAST.get(key)
        merged[key] = {**base, **value} if isinstance(base, dict) else value
    return merged


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
    """Write a self-signed RSA application certificate (DER) and its key (PEM)."""
    made = issue(
        name,
        "rsa",
        sans=[uri, "localhost", socket.gethostname(), "127.0.0.1"],
        usages=["digital_signature", "content_commitment", "key_encipherment", "data_encipherment"],
        extended_usages=[usage],
    )
    return write_der(made.cert, folder / f"{name}.der"), write_pem(made.key, folder / f"{name}.pem")


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
