"""The OPC-UA supervisor (``OpcUaCollector``) against fake clients: no server, no waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asyncua import ua

from collectors.opcua.collector import OpcUaCollector
from collectors.pipeline import CollectorPipeline
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.models import SystemEventKind
from envmon.testing import make_spec

from .supervision import FakeEndpoint, SupervisorHarness, harnesses, until

SENSORS = ("fridge-1.temperature", "fridge-2.temperature")


class FakeUaClient:
    """The low-level client: subscriptions and monitored items, all accepted."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.protocol: object | None = None
        self.subscriptions: list[int] = []
        self.items: list[int] = []

    async def read_attributes(self, nodes: list[ua.NodeId], attribute: Any) -> list[Any]:
        raise ua.UaStatusCodeError(ua.StatusCodes.BadNotReadable)  # no advertised limits

    async def create_subscription(self, params: Any, callback: Any) -> SimpleNamespace:
        self.server.last_id += 1
        self.subscriptions.append(self.server.last_id)
        return SimpleNamespace(SubscriptionId=self.server.last_id)

    async def create_monitored_items(self, params: Any) -> list[SimpleNamespace]:
        self.items += [r.RequestedParameters.ClientHandle for r in params.ItemsToCreate]
        good = ua.StatusCode(ua.StatusCodes.Good)
        return [SimpleNamespace(StatusCode=good) for _ in params.ItemsToCreate]

    async def delete_subscriptions(self, ids: list[int]) -> None:
        pass


class FakeClient:
    """An asyncua client whose connect does what its server says."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.application_uri = ""
        self.connection_lost_callback: Callable[[Exception], Awaitable[None]] | None = None
        self.uaclient = FakeUaClient(server)
        self.disconnected = False

    def set_user(self, username: str) -> None:
        pass

    def set_password(self, pwd: str) -> None:
        pass

    async def connect(self) -> None:
        await self.server.accept()
        self.uaclient.protocol = object()

    async def disconnect(self) -> None:
        self.uaclient.protocol = None
        self.disconnected = True

    def disconnect_socket(self) -> None:
        self.uaclient.protocol = None

    async def lose(self, why: str) -> None:
        """The connection breaks (as asyncua reports it)."""
        assert self.connection_lost_callback is not None
        await self.connection_lost_callback(ConnectionError(why))


class FakeServer(FakeEndpoint):
    """The client factory: refuses ``refuse`` connects, or never answers when ``hang``."""

    def __init__(self, refuse: int = 0, hang: bool = False) -> None:
        super().__init__(refuse, hang)
        self.clients: list[FakeClient] = []
        self.last_id = 0

    def __call__(self, config: OpcUaCollectorConfig) -> FakeClient:
        client = FakeClient(self)
        self.clients.append(client)
        return client

    def refusal(self) -> Exception:
        return ConnectionRefusedError("connection refused")


class Harness(SupervisorHarness):
    def __init__(self, server: FakeServer, **config: Any) -> None:
        super().__init__()
        self.server = server
        nodes = [{"sensor_id": sid, "node_id": f"ns=2;s=N{i}"} for i, sid in enumerate(SENSORS)]
        settings = {
            "id": "gw",
            "endpoint": "opc.tcp://127.0.0.1:4840",
            "reconnect": {"initial": 1, "maximum": 8},
            "nodes": nodes,
            **config,
        }
        self.collector = OpcUaCollector(
            OpcUaCollectorConfig.model_validate(settings),
            [make_spec(sid) for sid in SENSORS],
            CollectorPipeline(self.outbox, source="opcua:gw"),
            client_factory=server,
            **self.wiring(),
        )


@pytest.fixture
async def harness_factory() -> AsyncIterator[Callable[..., Harness]]:
    async with harnesses(Harness) as make:
        yield make


async def test_a_refused_connect_is_retried_with_growing_backoff_and_one_alarm(harness_factory):
    h = harness_factory(FakeServer(refuse=1_000))
    assert await h.first_waits(6) == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert h.kinds() == [(SystemEventKind.DISCONNECTED, True)]
    assert h.collector.last_error == "ConnectionRefusedError: connection refused"
    assert h.collector.counters.reconnects == 0
    assert not h.collector.connected


async def test_a_security_refusal_sets_last_error_and_waits_the_longest(harness_factory, tmp_path):
    """An unreadable certificate cannot be fixed by retrying soon: the maximum back-off."""
    missing = Path(tmp_path, "missing.pem")
    h = harness_factory(
        FakeServer(),
        security={
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "certificate": str(missing),
            "private_key": str(tmp_path / "missing.key"),
        },
    )
    assert await h.first_waits(3) == [8.0, 8.0, 8.0]
    assert h.collector.last_error is not None
    assert h.collector.last_error.startswith("OpcUaSetupError: opcua:gw: cannot read certificate")
    assert h.kinds() == [(SystemEventKind.DISCONNECTED, True)]
    assert all(not c.uaclient.subscriptions for c in h.server.clients)  # never got that far


async def test_after_a_reconnect_the_subscriptions_are_made_again(harness_factory):
    h = harness_factory(FakeServer())
    await h.collector.start()
    await h.collector.wait_connected(timeout=5)
    first = h.server.clients[0]
    assert first.uaclient.subscriptions == [1]
    assert first.uaclient.items == [1, 2]
    await first.lose("server restarted")
    await until(lambda: len(h.server.clients) == 2 and h.collector.connected)
    second = h.server.clients[1]
    assert first.disconnected
    assert second.uaclient.subscriptions == [2]
    assert second.uaclient.items == [1, 2]
    assert h.sleep.waits == [1.0]
    assert h.kinds() == [
        (SystemEventKind.CONNECTED, False),
        (SystemEventKind.DISCONNECTED, True),
        (SystemEventKind.CONNECTED, False),
    ]
    assert h.collector.last_error == "ConnectionError: server restarted"
    assert h.collector.counters.reconnects == 1
    assert h.collector.counters.resubscriptions == 1
    assert h.collector.subscription_count == 1


async def test_the_backoff_starts_again_after_a_connection(harness_factory):
    h = harness_factory(FakeServer(refuse=2))
    await h.collector.start()
    await h.collector.wait_connected(timeout=5)
    await h.server.clients[-1].lose("network")
    await until(lambda: len(h.server.clients) == 4 and h.collector.connected)
    assert h.sleep.waits == [1.0, 2.0, 1.0]


async def test_stop_during_a_connect_attempt_ends_cleanly(harness_factory):
    h = harness_factory(FakeServer(hang=True))
    await h.collector.start()
    await asyncio.wait_for(h.server.connecting.wait(), timeout=5)
    await asyncio.wait_for(h.collector.stop(), timeout=5)
    assert len(h.server.clients) == 1
    assert h.events == []
    assert h.sleep.waits == []
    assert not h.collector.connected
