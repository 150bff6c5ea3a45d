"""The OPC-UA collector survives a server restart and a silent subscription (real servers)."""

from __future__ import annotations

import asyncio
import contextlib

from collectors.simulators.opcua_server import SyntheticServer
from envmon.bus import ALARMS, READINGS, InMemoryBus
from envmon.models import (
    AlarmEvent,
    AlarmKind,
    SystemEvent,
    SystemEventKind,
    decode_readings_message,
)
from envmon.testing import eventually
from envmon.timeutil import to_us, utcnow
from stream.core import Evaluator

from .helpers import FAST, fast, readings, specs_for, system_events


class TestServerRestart:
    async def test_reconnects_resubscribes_and_the_core_sees_a_communication_loss(
        self, endpoint, outbox, make_collector
    ):
        """After a server restart: reconnected, resubscribed; the core sees stale, then restored."""
        server = SyntheticServer(4, endpoint=endpoint)
        await server.start()
        specs = specs_for(server.sensor_ids(), unit="", stale_after_s=1.0)
        config = server.collector_config(
            **{**FAST, "watchdog": {"silence_timeout": 3, "health_check": 0.5}}
        )
        collector = make_collector(config, specs)
        bus = InMemoryBus()
        evaluator = Evaluator(specs)
        alarms: list[AlarmEvent] = []
        system: list[SystemEvent] = []
        current: list[SyntheticServer | None] = [server]

        async def write() -> None:
            while True:
                live = current[0]
                if live is not None and live.running:
                    await live.update()
                await asyncio.sleep(0.1)

        async def evaluate() -> None:
            async for message in bus.subscribe(READINGS, "core"):
                item = decode_readings_message(message.value)  # a reading or a proof of life
                alarms.extend(e for e in evaluator.process(item) if isinstance(e, AlarmEvent))

        async def watch_alarms_topic() -> None:
            async for message in bus.subscribe(ALARMS, "ops"):
                system.append(SystemEvent.model_validate_json(message.value))

        tasks = [
            asyncio.create_task(coro)
            for coro in (outbox.forward(bus), write(), evaluate(), watch_alarms_topic())
        ]
        try:
            await collector.start()
            await collector.wait_connected(10)
            await eventually(
                lambda: evaluator.readings >= 20, what="readings before the restart", timeout=10
            )

            await server.stop()
            current[0] = None
            stopped_at = evaluator.readings
            for _ in range(10):  # the clock ticks on while nothing arrives
                await asyncio.sleep(0.2)
                alarms.extend(
                    e for e in evaluator.advance(to_us(utcnow())) if isinstance(e, AlarmEvent)
                )
            assert {a.sensor_id for a in alarms if a.event is AlarmKind.STALE} == set(
                server.sensor_ids()
            )
            assert not collector.connected

            restarted = SyntheticServer(4, endpoint=endpoint)
            await restarted.start()
            current[0] = restarted
            try:
                await eventually(
                    lambda: collector.counters.reconnects == 1, what="reconnect", timeout=10
                )
                await eventually(
                    lambda: evaluator.readings >= stopped_at + 20,
                    what="readings after restart",
                    timeout=10,
                )
                await eventually(
                    lambda: (
                        {a.sensor_id for a in alarms if a.event is AlarmKind.RESTORED}
                        == set(server.sensor_ids())
                    ),
                    what="restored alarms",
                    timeout=10,
                )
                assert collector.counters.resubscriptions == 1
                assert restarted.subscription_count == 1
                await eventually(
                    lambda: len(system) >= 3, what="system events on the bus", timeout=10
                )
                assert [e.event for e in system[:3]] == [
                    SystemEventKind.CONNECTED,
                    SystemEventKind.DISCONNECTED,
                    SystemEventKind.CONNECTED,
                ]
                assert system[1].alarm
            finally:
                await collector.stop()
                await restarted.stop()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def test_a_server_down_at_start_is_waited_for(self, endpoint, outbox, make_collector):
        """A collector started before its server reports the outage once and connects later."""
        server = SyntheticServer(2, endpoint=endpoint)
        collector = make_collector(server.collector_config(**FAST), server.specs())
        await collector.start()
        await eventually(
            lambda: any(e.event is SystemEventKind.DISCONNECTED for e in system_events(outbox)),
            what="the outage event",
            timeout=10,
        )
        await asyncio.sleep(1.5)  # several failed attempts: still one event
        assert [e.event for e in system_events(outbox)] == [SystemEventKind.DISCONNECTED]
        await server.start()
        try:
            await collector.wait_connected(10)
            assert collector.counters.reconnects == 0  # the first connection is no reconnection
            await eventually(lambda: len(readings(outbox)) == 2, what="initial values", timeout=10)
        finally:
            await collector.stop()
            await server.stop()


class TestSilentSubscription:
    async def test_watchdog_recreates_a_subscription_that_went_silent(
        self, endpoint, outbox, make_collector
    ):
        """A subscription without notifications or keep-alives is re-created; data flows again."""
        server = SyntheticServer(6, endpoint=endpoint)
        await server.start()
        try:
            config = server.collector_config(
                **fast(
                    subscription={
                        "keepalive_count": 4,
                        "lifetime_count": 200,
                        "max_items_per_subscription": 3,
                    },
                    watchdog={"silence_timeout": 0.6},
                )
            )
            collector = make_collector(config, server.specs())
            await collector.start()
            await collector.wait_connected(10)
            await asyncio.sleep(1.0)  # quiet but alive: keep-alives keep the watchdog calm
            assert collector.counters.resubscriptions == 0

            assert server.silence_subscriptions() == 2
            await server.update()
            await eventually(
                lambda: collector.counters.resubscriptions == 2, what="both re-created", timeout=10
            )
            before = len(readings(outbox))
            await server.update()
            await eventually(
                lambda: len(readings(outbox)) >= before + 6, what="new readings", timeout=10
            )
            assert collector.counters.reconnects == 0
            assert collector.connected
            kinds = [e.event for e in system_events(outbox)]
            assert kinds.count(SystemEventKind.SUBSCRIPTION_SILENT) == 2
            assert kinds.count(SystemEventKind.RESUBSCRIBED) == 2
        finally:
            await server.stop()


class TestFullBuffer:
    async def test_readings_refused_by_a_full_buffer_are_held_until_it_takes_them(self, endpoint):
        """A full buffer: readings wait in memory, alarmed once, and are stored once it has room."""
        from collectors.buffer import Outbox
        from collectors.opcua import OpcUaCollector
        from collectors.pipeline import CollectorPipeline

        events: list[SystemEvent] = []
        box = Outbox(":memory:", max_messages=12, on_event=events.append)
        server = SyntheticServer(10, endpoint=endpoint)
        await server.start()
        collector = OpcUaCollector(
            server.collector_config(**FAST),
            server.specs(),
            CollectorPipeline(box, source="test"),
        )
        try:
            await collector.start()
            await collector.wait_connected(10)
            await eventually(
                lambda: collector.counters.readings == 10, what="initial values", timeout=10
            )
            await server.update()
            await server.update()
            await eventually(
                lambda: bool(events) and len(collector._pending) == 18,
                what="the rest held",
                timeout=10,
            )
            assert collector.connected
            assert collector.counters.readings == 12  # the buffer filled to its bound
            assert [e.event for e in events] == [SystemEventKind.BUFFER_FULL]
            forwarder = asyncio.create_task(box.forward(InMemoryBus()))  # room again
            await eventually(
                lambda: collector.counters.readings == 30, what="held readings", timeout=10
            )
            assert collector.counters.dropped == 0
            assert SystemEventKind.BUFFER_OK in [e.event for e in events]
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
        finally:
            await collector.stop()
            await server.stop()
            box.close()

    async def test_beyond_max_pending_the_oldest_held_readings_are_counted_lost(self, endpoint):
        """Held readings are bounded: past max_pending the oldest go, counted as dropped."""
        from collectors.buffer import Outbox
        from collectors.opcua import OpcUaCollector
        from collectors.pipeline import CollectorPipeline

        box = Outbox(":memory:", max_messages=10)
        server = SyntheticServer(10, endpoint=endpoint)
        await server.start()
        collector = OpcUaCollector(
            server.collector_config(**FAST),
            server.specs(),
            CollectorPipeline(box, source="test"),
            max_pending=15,
        )
        try:
            await collector.start()
            await collector.wait_connected(10)
            await eventually(
                lambda: collector.counters.readings == 10, what="initial values", timeout=10
            )
            for _ in range(3):
                await server.update()
                await asyncio.sleep(0.3)
            await eventually(
                lambda: collector.counters.dropped == 15, what="the oldest lost", timeout=10
            )
            assert len(collector._pending) == 15
        finally:
            await collector.stop()
            await server.stop()
            box.close()
