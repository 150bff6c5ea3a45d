"""Monitored items spread over several subscriptions, created in batches (real servers)."""

from __future__ import annotations

import time

import pytest

from collectors.simulators.opcua_server import SyntheticServer
from envmon.testing import eventually

from .helpers import FAST, dead_letters, fast, readings


class TestSubscriptionCaps:
    async def test_configured_cap_splits_items_over_subscriptions(
        self, endpoint, outbox, make_collector
    ):
        """With at most 10 items per subscription, 25 nodes need three subscriptions."""
        server = SyntheticServer(25, endpoint=endpoint)
        await server.start()
        try:
            config = server.collector_config(
                **fast(subscription={"max_items_per_subscription": 10, "batch_size": 4})
            )
            collector = make_collector(config, server.specs())
            await collector.start()
            await collector.wait_connected(10)
            assert sorted(server.monitored_items_per_subscription()) == [5, 10, 10]
            assert server.create_calls == [4, 4, 2, 4, 4, 2, 4, 1]
            await server.update(value=1.5)
            await eventually(
                lambda: (
                    {r.sensor_id for r in readings(outbox) if r.value == 1.5}
                    == set(server.sensor_ids())
                ),
                what="a reading from every node",
                timeout=10,
            )
        finally:
            await server.stop()

    @pytest.mark.parametrize("advertised", [True, False], ids=["advertised", "enforced-only"])
    async def test_server_cap_is_respected_whether_advertised_or_not(
        self, endpoint, outbox, make_collector, advertised
    ):
        """A server capping subscriptions at 8 items gets 8-item subscriptions, no dead letters."""
        server = SyntheticServer(
            25, endpoint=endpoint, max_items_per_subscription=8, advertise_cap=advertised
        )
        await server.start()
        try:
            collector = make_collector(server.collector_config(**FAST), server.specs())
            await collector.start()
            await collector.wait_connected(10)
            assert sorted(server.monitored_items_per_subscription()) == [1, 8, 8, 8]
            assert collector.subscription_count == 4
            await eventually(lambda: len(readings(outbox)) == 25, what="initial values", timeout=10)
            assert dead_letters(outbox) == []
        finally:
            await server.stop()


class TestManyNodes:
    async def test_three_thousand_nodes_subscribe_in_batches(
        self, endpoint, outbox, make_collector
    ):
        """3,000 nodes resolved by browse path and created 500 per call all deliver readings."""
        server = SyntheticServer(3_000, endpoint=endpoint)
        await server.start()
        try:
            config = server.collector_config(
                **fast(
                    subscription={
                        "publishing_interval": 0.2,
                        "max_items_per_subscription": 1_000,
                        "batch_size": 500,
                    },
                    namespace=server.namespace,
                    nodes=[
                        {"sensor_id": sensor_id, "browse_path": server.browse_path(i)}
                        for i, sensor_id in enumerate(server.sensor_ids())
                    ],
                )
            )
            collector = make_collector(config, server.specs())
            started = time.perf_counter()
            await collector.start()
            await collector.wait_connected(60)
            elapsed = time.perf_counter() - started
            assert server.monitored_items_per_subscription() == [1_000, 1_000, 1_000]
            assert server.create_calls == [500] * 6
            await server.update(value=2.0)
            await eventually(
                lambda: collector.counters.readings == 6_000, timeout=30, what="6,000 readings"
            )
            assert {r.sensor_id for r in readings(outbox) if r.value == 2.0} == set(
                server.sensor_ids()
            )
            assert elapsed < 30
        finally:
            await server.stop()
