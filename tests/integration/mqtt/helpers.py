"""Helpers of the MQTT integration tests: a small site, a collector harness, a test PKI."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import textwrap
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collectors.buffer import Outbox
from collectors.mqtt import MqttCollector
from collectors.pipeline import CollectorPipeline
from devservers.mosquitto import Mosquitto, publish_all
from envmon.bus import DEADLETTER, READINGS
from envmon.config import SiteConfig, parse_site
from envmon.models import SystemEvent
from envmon.timeutil import format_ts

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
INSTRUMENTS = 10


def site_yaml(prefix: str, port: int, *, connection: str = "", bindings: str = "") -> str:
    """Return a site of INSTRUMENTS incubators read from topics under ``prefix``."""
    instruments = "\n".join(
        f"""      - id: inc-{i}
        name: Incubator {i}
        kind: incubator
        channels:
          - {{parameter: temperature, unit: degC}}
          - {{parameter: co2, unit: "%"}}"""
        for i in range(INSTRUMENTS)
    )
    default_bindings = f"""
        - topic: {prefix}/+instrument/data
          sensor_id: "{{instrument}}.temperature"
          expected_period: 60s
          payload:
            timestamp: {{path: ts, format: iso8601}}
            channels: {{temperature: {{path: t}}}}
        - topic: {prefix}/+instrument/co2
          sensor_id: "{{instrument}}.co2"
          payload: {{format: number}}
    """
    return f"""
site: {{name: Test site}}
areas:
  - id: room
    name: Room
    instruments:
{instruments}
collectors:
  mqtt:
    - id: test
      port: {port}
      client_id: envmon-{prefix}
      reconnect: {{initial: 0.05, maximum: 0.5}}
      commit: {{max_messages: 200, max_delay: 0.002}}
{textwrap.indent(textwrap.dedent(connection).strip(), "      ")}
      bindings:
{textwrap.indent(textwrap.dedent(bindings or default_bindings).strip(), "        ")}
"""


def message(prefix: str, seq: int) -> tuple[str, bytes]:
    """Return message number ``seq``: its time and value identify it."""
    ts = format_ts(T0 + dt.timedelta(seconds=seq))
    return f"{prefix}/inc-{seq % INSTRUMENTS}/data", orjson.dumps({"ts": ts, "t": float(seq)})


def messages(prefix: str, seqs: Iterable[int]) -> list[tuple[str, bytes]]:
    """Return the messages with these sequence numbers."""
    return [message(prefix, seq) for seq in seqs]


def seq_of(reading: dict[str, Any]) -> int:
    """Return the sequence number a reading came from."""
    return int(reading["value"])


@dataclass
class Harness:
    """A collector on a test broker with its own topics, client id, buffer and events."""

    broker: Mosquitto
    workdir: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    protocol: str = "5"
    connection: str = ""
    bindings: str = ""
    max_messages: int = 1_000_000
    events: list[SystemEvent] = field(default_factory=list)
    collectors: list[MqttCollector] = field(default_factory=list)
    outbox: Outbox | None = None

    def site(self) -> SiteConfig:
        """Return the test site for this harness's broker and topics."""
        connection = f'protocol: "{self.protocol}"\n' + textwrap.dedent(self.connection)
        return parse_site(
            site_yaml(self.prefix, self.broker.port, connection=connection, bindings=self.bindings)
        )

    def buffer(self) -> Outbox:
        """Return the harness's durable buffer (one per harness, like a collector host)."""
        if self.outbox is None:
            self.outbox = Outbox(
                self.workdir / f"{self.prefix}.sqlite3",
                max_messages=self.max_messages,
                on_event=self.events.append,
            )
        return self.outbox

    def collector(self, **kwargs: Any) -> MqttCollector:
        """Build a collector (not started) on the harness's buffer."""
        site = self.site()
        pipeline = CollectorPipeline(self.buffer(), source="mqtt:test")
        collector = MqttCollector(
            site.collectors.mqtt[0], site, pipeline, on_event=self.events.append, **kwargs
        )
        self.collectors.append(collector)
        return collector

    async def started(self, **kwargs: Any) -> MqttCollector:
        """Build, start and wait until subscribed."""
        collector = self.collector(**kwargs)
        await collector.start()
        await collector.wait_ready(10)
        return collector

    async def publish(self, items: list[tuple[str, bytes]], **kwargs: Any) -> None:
        """Publish at QoS 1 and return once the broker acknowledged every message."""
        await asyncio.to_thread(
            publish_all, self.broker.host, self.broker.port, items, window=500, **kwargs
        )

    def rows(self, topic: str) -> list[dict[str, Any]]:
        """Return what the buffer holds on a bus topic, decoded, in order."""
        return [
            orjson.loads(message.value)
            for _, message in self.buffer().peek(10_000_000)
            if message.topic == topic
        ]

    def readings(self) -> list[dict[str, Any]]:
        """Return the buffered readings."""
        return self.rows(READINGS)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Return the buffered dead letters."""
        return self.rows(DEADLETTER)

    def event_kinds(self) -> list[str]:
        """Return the system events so far, by kind."""
        return [event.event.value for event in self.events]

    async def close(self) -> None:
        """Stop every collector and close the buffer."""
        for collector in self.collectors:
            await collector.stop()
        if self.outbox is not None:
            self.outbox.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (messages cross a real broker: there is no event)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


# -------------------------------------------------------------------------- TLS test PKI


@dataclass(frozen=True)
class Pki:
    """PEM files of a test CA, a server certificate for 127.0.0.1 and client certificates."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        assert issuer is not None
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """Generate the CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    ca_key, other_key = _key(), _key()
    ca = _cert("envmon test CA", ca_key, None, ca_key, ca=True)
    other = _cert("some other CA", other_key, None, other_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert(
        "127.0.0.1",
        server_key,
        ca,
        ca_key,
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client = _cert("envmon-collector", client_key, ca, ca_key)

    def pem(cert: x509.Certificate, name: str) -> Path:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    return Pki(
        ca=pem(ca, "ca.crt"),
        server_cert=pem(server, "server.crt"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_cert=pem(client, "client.crt"),
        client_key=_write_key(client_key, directory / "client.key"),
        other_ca=pem(other, "other-ca.crt"),
    )
