"""The MQTT supervisor (``MqttCollector``) against fake connections: no broker, no waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from collectors.mqtt.collector import MqttCollector
from collectors.mqtt.errors import MqttConnectError
from collectors.mqtt.wire import InboundMessage
from collectors.pipeline import CollectorPipeline
from envmon.config import parse_site
from envmon.config.mqtt import MqttCollectorConfig
from envmon.models import SystemEventKind

from .sites import FRIDGE_1, mqtt_site
from .supervision import FakeEndpoint, SupervisorHarness, harnesses, until

SITE = mqtt_site(
    FRIDGE_1,
    mqtt="""
        - id: broker
          reconnect: {initial: 1, maximum: 8}
          bindings:
            - topic: lab/+instrument/temperature
              sensor_id: "{instrument}.temperature"
              payload: {format: number, channels: {t: {unit: degC}}}
    """,
)
FILTERS = ["lab/+/temperature"]


class FakeConnection:
    """A connection that does what its broker says."""

    def __init__(self, broker: FakeBroker, on_message: Callable[[InboundMessage], None]) -> None:
        self.broker = broker
        self.on_message = on_message
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.subscribed: list[tuple[list[str], int]] = []
        self.closed = False

    @property
    def connected(self) -> bool:
        return not self.lost.done()

    async def connect(self) -> bool:
        await self.broker.accept()
        return False

    async def subscribe(self, filters: Sequence[str], qos: int) -> None:
        self.subscribed.append((list(filters), qos))

    def ack_many(self, acks: Sequence[tuple[int, int]]) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    async def disconnect(self) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result("closed")


class FakeBroker(FakeEndpoint):
    """The connection factory: refuses ``refuse`` connects, or never answers when ``hang``."""

    def __init__(self, refuse: int = 0, hang: bool = False) -> None:
        super().__init__(refuse, hang)
        self.connections: list[FakeConnection] = []

    def __call__(
        self,
        config: MqttCollectorConfig,
        on_message: Callable[[InboundMessage], None],
        *,
        connect_timeout: float,
    ) -> FakeConnection:
        connection = FakeConnection(self, on_message)
        self.connections.append(connection)
        return connection

    def refusal(self) -> Exception:
        return MqttConnectError("cannot connect to localhost:1883: connection refused")


class Harness(SupervisorHarness):
    def __init__(self, broker: FakeBroker, rng: float = 0.0) -> None:
        super().__init__()
        site = parse_site(SITE)
        self.broker = broker
        self.collector = MqttCollector(
            site.collectors.mqtt[0],
            site,
            CollectorPipeline(self.outbox, source="mqtt:broker"),
            connection_factory=broker,
            **self.wiring(rng),
        )


@pytest.fixture
async def harness_factory() -> AsyncIterator[Callable[..., Harness]]:
    async with harnesses(Harness) as make:
        yield make


async def test_a_refused_connect_is_retried_with_growing_backoff_and_one_alarm(harness_factory):
    h = harness_factory(FakeBroker(refuse=1_000))
    assert await h.first_waits(6) == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert h.kinds() == [(SystemEventKind.DISCONNECTED, True)]
    assert "connection refused" in h.events[0].detail
    assert all(c.closed for c in h.broker.connections)
    assert h.collector.counters.reconnects == 0
    assert not h.collector.connected


async def test_the_reconnect_wait_has_jitter(harness_factory):
    """At most a fifth is taken off each wait (``rng`` at its top: exactly a fifth)."""
    h = harness_factory(FakeBroker(refuse=1_000), rng=1.0)
    assert await h.first_waits(3) == pytest.approx([0.8, 1.6, 3.2])


async def test_the_backoff_starts_again_after_a_connection(harness_factory):
    h = harness_factory(FakeBroker(refuse=2))
    await h.collector.start()
    await h.collector.wait_ready(timeout=5)
    assert h.sleep.waits == [1.0, 2.0]
    assert h.kinds() == [(SystemEventKind.DISCONNECTED, True), (SystemEventKind.CONNECTED, False)]
    assert h.collector.counters.reconnects == 0  # the first connection is no reconnect


async def test_a_lost_connection_is_reconnected_and_resubscribed(harness_factory):
    h = harness_factory(FakeBroker())
    await h.collector.start()
    await h.collector.wait_ready(timeout=5)
    first = h.broker.connections[0]
    assert first.subscribed == [(FILTERS, 1)]
    first.lost.set_result("keep-alive timeout")
    await until(lambda: len(h.broker.connections) == 2 and h.collector.connected)
    second = h.broker.connections[1]
    assert second.subscribed == [(FILTERS, 1)]
    assert h.sleep.waits == [1.0]  # the initial wait, then at once
    assert h.kinds() == [
        (SystemEventKind.CONNECTED, False),
        (SystemEventKind.DISCONNECTED, True),
        (SystemEventKind.CONNECTED, False),
    ]
    assert "keep-alive timeout" in h.events[1].detail
    assert h.collector.counters.reconnects == 1
    assert h.collector.counters.resubscriptions == len(FILTERS)


async def test_stop_during_a_connect_attempt_ends_cleanly(harness_factory):
    h = harness_factory(FakeBroker(hang=True))
    await h.collector.start()
    await asyncio.wait_for(h.broker.connecting.wait(), timeout=5)
    await asyncio.wait_for(h.collector.stop(), timeout=5)
    (connection,) = h.broker.connections
    assert connection.closed
    assert h.events == []
    assert h.sleep.waits == []
    assert not h.collector.connected
