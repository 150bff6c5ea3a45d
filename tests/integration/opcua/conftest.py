"""Fixtures of the OPC-UA tests: real asyncua servers on free loopback ports, PKI, buffers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from collectors.buffer import Outbox
from collectors.opcua import OpcUaCollector
from collectors.pipeline import CollectorPipeline, event_message
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.netutil import free_port
from envmon.sensors import SensorSpec

from .helpers import Pki, make_pki


@pytest.fixture
def endpoint() -> str:
    """A fresh loopback endpoint for this test's server."""
    return f"opc.tcp://127.0.0.1:{free_port()}/envmon/"


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    """An in-memory buffer for this test."""
    box = Outbox(":memory:", max_messages=1_000_000)
    yield box
    box.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A server, a client and a rogue server certificate, each self-signed."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def make_collector(
    outbox: Outbox,
) -> AsyncIterator[Callable[..., OpcUaCollector]]:
    """Build collectors writing to the test's buffer; every one is stopped at the end.

    Their events go into the same buffer, where the tests look for them, unless the test
    passes its own ``on_event``.
    """
    made: list[OpcUaCollector] = []

    def make(
        config: OpcUaCollectorConfig, specs: Sequence[SensorSpec], **kwargs: Any
    ) -> OpcUaCollector:
        kwargs.setdefault("on_event", lambda event: outbox.put([event_message(event)]))
        collector = OpcUaCollector(
            config, specs, CollectorPipeline(outbox, source="test"), **kwargs
        )
        made.append(collector)
        return collector

    yield make
    for collector in made:
        await collector.stop()
