"""Helpers of the collector-to-Kafka tests, reusable by the fault matrix.

- ``example_site_file``: the example site retargeted at test servers, written to a file
  that ``envmon collect`` (``run_collect``) reads;
- ``read_topic``: every message of a topic, read back from the start;
- ``ReadingFeed``: numbered readings put into a collector's buffer at a steady rate, and
  ``count_readings`` to compare what went in with what came out (lost, duplicated, out of
  order per sensor);
- ``MqttFeed``: numbered MQTT messages published to Mosquitto at a steady rate (the
  equipment of ``tests.integration.mqtt.helpers.site_yaml``);
- ``broker_outage``: a broker stopped for a while and started again on the same ports and
  data, while the caller's loop keeps running;
- ``scrape``: a service's Prometheus endpoint read over HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from collectors.buffer import Outbox
from devservers.kafka import KafkaBroker
from devservers.mosquitto import Mosquitto, publish_all
from envmon.bus import READINGS, Message
from envmon.models import Quality, Reading
from tests.integration.mqtt.helpers import messages

EXAMPLE_SITE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "site.yaml"
T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)

#: Fast OPC-UA timings for tests (the example site's are for real equipment).
FAST_OPCUA: dict[str, Any] = {
    "subscription": {"publishing_interval": 0.05, "keepalive_count": 10, "lifetime_count": 30},
    "watchdog": {"silence_timeout": 5, "health_check": 1},
    "reconnect": {"initial": 0.2, "maximum": 1},
}


def example_site_file(
    path: Path,
    *,
    buffer: Path,
    opcua_endpoint: str | None = None,
    mqtt_port: int | None = None,
    buffer_settings: dict[str, Any] | None = None,
) -> Path:
    """Write the example site with its collectors pointed at test servers; return ``path``.

    A collector whose server is not given is left out; the buffer lives at ``buffer``.
    """
    data = yaml.safe_load(EXAMPLE_SITE.read_text(encoding="utf-8"))
    collectors = data["collectors"]
    collectors["buffer"] = {"path": str(buffer), **(buffer_settings or {})}
    if mqtt_port is None:
        collectors["mqtt"] = []
    else:
        for connection in collectors["mqtt"]:
            connection.update(port=mqtt_port, reconnect={"initial": 0.1, "maximum": 1})
    if opcua_endpoint is None:
        collectors["opcua"] = []
    else:
        for connection in collectors["opcua"]:
            connection.update(FAST_OPCUA, endpoint=opcua_endpoint)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


async def read_topic(
    bootstrap: str, topic: str, *, idle_s: float = 3.0, timeout: float = 60.0
) -> list[bytes]:
    """Return the values of every message on ``topic`` (until none came for ``idle_s``)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle_s:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                values += [bytes(r.value) for r in records]
                last = time.monotonic()
    finally:
        await consumer.stop()
    return values


def reading_message(seq: int, sensors: int) -> Message:
    """Return reading number ``seq``: its sensor is ``seq % sensors``, its value ``seq``."""
    sensor_id = f"sensor-{seq % sensors}.temperature"
    reading = Reading.trusted(
        sensor_id=sensor_id,
        value=float(seq),
        unit="degC",
        ts=T0 + dt.timedelta(seconds=seq),
        received_at=T0 + dt.timedelta(seconds=seq),
        quality=Quality.GOOD,
        source="test",
    )
    return Message(READINGS, sensor_id, reading.to_json())


@dataclass
class ReadingFeed:
    """Puts numbered readings into a buffer at about ``rate`` a second (a collector's load)."""

    outbox: Outbox
    total: int
    rate: float = 1_000.0
    sensors: int = 20
    put: int = 0  #: readings the buffer accepted so far
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start feeding in the background."""
        self._task = asyncio.create_task(self._feed())

    async def _feed(self) -> None:
        step = 10
        started = time.monotonic()
        while self.put < self.total:
            messages = [
                reading_message(seq, self.sensors)
                for seq in range(self.put, min(self.put + step, self.total))
            ]
            assert await asyncio.to_thread(self.outbox.put, messages), "the buffer refused"
            self.put += len(messages)
            ahead = self.put / self.rate - (time.monotonic() - started)
            await asyncio.sleep(max(ahead, 0))

    async def wait(self, timeout: float = 120.0) -> None:
        """Wait until every reading was put."""
        assert self._task is not None
        async with asyncio.timeout(timeout):
            await self._task


@dataclass(frozen=True)
class ReadingCount:
    """What came out of a topic compared with the ``total`` readings that went in."""

    total: int
    received: int
    distinct: int
    missing: list[int]
    out_of_order: dict[str, int]  #: per sensor, readings older than one before them

    @property
    def duplicates(self) -> int:
        """Readings received more than once (allowed: every consumer is idempotent)."""
        return self.received - self.distinct

    def __str__(self) -> str:
        return (
            f"{self.total} in, {self.received} out ({self.distinct} distinct, "
            f"{self.duplicates} duplicated, {len(self.missing)} missing, "
            f"{sum(self.out_of_order.values())} out of order)"
        )


def count_readings(values: list[bytes], total: int) -> ReadingCount:
    """Count readings numbered 0..total-1 (``reading_message``) in the order received.

    A repeat of the reading just before (a re-sent batch) is not out of order; a reading
    older than one already received, other than such a repeat, is.
    """
    seen: set[int] = set()
    newest: dict[str, int] = {}
    out_of_order: dict[str, int] = defaultdict(int)
    received = 0
    for value in values:
        reading = orjson.loads(value)
        seq = int(reading["value"])
        sensor = reading["sensor_id"]
        received += 1
        if seq < newest.get(sensor, -1) and seq not in seen:
            out_of_order[sensor] += 1  # older than one received, and not a repeat
        newest[sensor] = max(newest.get(sensor, -1), seq)
        seen.add(seq)
    missing = sorted(set(range(total)) - seen)
    return ReadingCount(total, received, len(seen), missing, dict(out_of_order))


@asynccontextmanager
async def broker_outage(broker: KafkaBroker, seconds: float) -> AsyncIterator[None]:
    """Stop ``broker``, keep it down for ``seconds``, start it again (same ports and data).

    The body runs while the broker is down (from the stop on); the context ends once the
    broker serves metadata again. The caller's event loop keeps running throughout.
    """
    await asyncio.to_thread(broker.stop)
    stopped = time.monotonic()
    yield
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
    await asyncio.to_thread(broker.start)


@dataclass
class MqttFeed:
    """Publishes messages 0..total-1 (``tests.integration.mqtt.helpers.messages``) at ``rate``.

    QoS 1, in chunks, each acknowledged by Mosquitto before the next: ``published`` counts
    what the broker holds for the collector.
    """

    broker: Mosquitto
    prefix: str
    total: int
    rate: float = 500.0
    chunk: int = 100
    published: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start publishing in the background."""
        self._task = asyncio.create_task(self._feed())

    async def _feed(self) -> None:
        started = time.monotonic()
        while self.published < self.total:
            seqs = range(self.published, min(self.published + self.chunk, self.total))
            await asyncio.to_thread(
                publish_all, "127.0.0.1", self.broker.port, messages(self.prefix, seqs)
            )
            self.published += len(seqs)
            ahead = self.published / self.rate - (time.monotonic() - started)
            await asyncio.sleep(max(ahead, 0))

    async def wait(self, timeout: float = 120.0) -> None:
        """Wait until every message was published."""
        assert self._task is not None
        async with asyncio.timeout(timeout):
            await self._task


async def scrape(port: int, host: str = "127.0.0.1") -> dict[tuple[str, str], float]:
    """Read ``http://host:port/metrics``: {(sample name, label values joined): value}.

    The label values are joined by commas in the order of the labels' names.
    """

    def get() -> str:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            assert response.status == 200
            return response.read().decode()

    text = await asyncio.to_thread(get)
    return {
        (sample.name, ",".join(v for _, v in sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
