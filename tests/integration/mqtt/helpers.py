"""Helpers of the MQTT integration tests: a small site, a collector harness, a test PKI."""

from __future__ import annotations

import asyncio
import datetime as dt
import textwrap
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from collectors.buffer import Outbox
from collectors.mqtt import MqttCollector
from collectors.pipeline import CollectorPipeline
from devservers.mosquitto import Mosquitto, publish_all
from envmon import testing
from envmon.bus import DEADLETTER, READINGS
from envmon.config import SiteConfig, parse_site
from envmon.models import SystemEvent
from envmon.timeutil import format_ts
from tests.pki import issue, write_pem

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
INSTRUMENTS = 10


def site_yaml(prefix: str, port: int, *, connection: str = "", bindings: str = "") -> str:
    """Return a site of INSTRUMENTS incubators read from topics under ``prefix``."""
    instruments = "".join(
        f"""\
- id: inc-{i}
  name: Incubator {i}
  kind: incubator
  channels:
    - {{parameter: temperature, unit: degC}}
    - {{parameter: co2, unit: "%"}}
"""
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
    collector = "\n".join(
        [
            "- id: test",
            f"  port: {port}",
            f"  client_id: envmon-{prefix}",
            "  reconnect: {initial: 0.05, maximum: 0.5}",
            "  commit: {max_messages: 200, max_delay: 0.002}",
            textwrap.indent(textwrap.dedent(connection).strip(), "  "),
            "  bindings:",
            textwrap.indent(textwrap.dedent(bindings or default_bindings).strip(), "    "),
        ]
    )
    return testing.site_yaml(
        "- id: room\n  name: Room\n  instruments:\n" + textwrap.indent(instruments, "    "),
        site="site: {name: Test site}",
        sections="collectors:\n  mqtt:\n" + textwrap.indent(collector, "    "),
    )


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


def make_pki(directory: Path) -> Pki:
    """Generate the CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    ca = issue("envmon test CA", "ec", ca=True)
    other = issue("some other CA", "ec", ca=True)
    server = issue("127.0.0.1", "ec", issuer=ca, sans=["127.0.0.1", "localhost"])
    client = issue("envmon-collector", "ec", issuer=ca)
    return Pki(
        ca=write_pem(ca.cert, directory / "ca.crt"),
        server_cert=write_pem(server.cert, directory / "server.crt"),
        server_key=write_pem(server.key, directory / "server.key"),
        client_cert=write_pem(client.cert, directory / "client.crt"),
        client_key=write_pem(client.key, directory / "client.key"),
        other_ca=write_pem(other.cert, directory / "other-ca.crt"),
    )
