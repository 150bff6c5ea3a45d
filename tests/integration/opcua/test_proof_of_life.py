"""Report-by-exception: a steady node on a healthy subscription is alive, not stale.

An asyncua server reports a node only when it is written; a freezer holding its
temperature therefore sends nothing for minutes while its subscription keeps sending
keep-alives. The collector and the core (the embedded processor) share one fake clock,
which the test moves on between keep-alives of the real server: stale must mean "no data
and no proof of life", and a stopped server or a dead subscription must still go stale.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from asyncua import ua

from collectors.buffer import Outbox
from collectors.opcua import OpcUaCollector
from collectors.simulators.opcua_server import SyntheticServer
from envmon.bus import InMemoryBus
from envmon.models import AlarmEvent, AlarmKind, CoreEvent, DataGap
from envmon.sensors import SensorSpec
from envmon.testing import FakeClock, eventually, make_spec
from envmon.timeutil import utcnow
from stream.embedded import StreamProcessor

from .helpers import FAST

STALE_S = 60.0
#: keep-alives every 0.05 s × 10: the fake clock moves 20 s (a proof period) between them
CONFIG = {**FAST, "watchdog": {"silence_timeout": 30, "health_check": 1}}


@dataclass
class Core:
    """The embedded processor behind the collector's buffer, on the test's clock."""

    processor: StreamProcessor
    events: list[CoreEvent] = field(default_factory=list)

    def alarms(self, kind: AlarmKind) -> list[AlarmEvent]:
        return [e for e in self.events if isinstance(e, AlarmEvent) and e.event is kind]

    def gaps(self) -> list[DataGap]:
        return [e for e in self.events if isinstance(e, DataGap)]


def specs_of(server: SyntheticServer) -> list[SensorSpec]:
    return [
        make_spec(sid, area="synthetic", unit="", stale_after_s=STALE_S)
        for sid in server.sensor_ids()
    ]


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock(utcnow())


@pytest.fixture
async def core(outbox: Outbox, clock: FakeClock) -> AsyncIterator[Callable[..., Core]]:
    """Start a core (forwarder, bus, embedded processor) for the given specs."""
    tasks: list[asyncio.Task[None]] = []
    processors: list[StreamProcessor] = []

    def make(specs: list[SensorSpec]) -> Core:
        bus = InMemoryBus()
        result = Core(StreamProcessor(bus, specs, clock=clock, tick_s=3600))
        result.processor.listener = result.events.append
        processors.append(result.processor)
        tasks.append(asyncio.create_task(outbox.forward(bus)))
        tasks.append(asyncio.create_task(result.processor._consume()))
        return result

    yield make
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Wait until ``predicate()`` holds or ``timeout`` real seconds passed; say which."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def hold_steady(core: Core, clock: FakeClock, sensors: int, periods: int) -> None:
    """Move the clock a proof period at a time, waiting for the proofs each time, and tick."""
    processor = core.processor
    for _ in range(periods):
        before = processor.proofs
        clock.advance(STALE_S / 3)
        await settle(lambda b=before: processor.proofs >= b + sensors)  # type: ignore[misc]
        await processor.tick()


async def started(
    make_collector: Callable[..., OpcUaCollector],
    server: SyntheticServer,
    specs: list[SensorSpec],
    clock: FakeClock,
    core: Core,
) -> OpcUaCollector:
    collector = make_collector(server.collector_config(**CONFIG), specs, clock=clock)
    await collector.start()
    await collector.wait_connected(10)
    await eventually(
        lambda: core.processor.readings >= len(specs), what="the initial values", timeout=10
    )
    return collector


class TestReportByException:
    async def test_a_steady_node_on_a_healthy_subscription_never_goes_stale(
        self, endpoint, make_collector, core, clock
    ):
        """Two freezers hold their value for 2 x stale_after: no stale alarm, no data gap."""
        server = SyntheticServer(2, endpoint=endpoint)
        await server.start()
        try:
            await server.update(value=-80.0)  # one value; nothing is written after it
            specs = specs_of(server)
            c = core(specs)
            collector = await started(make_collector, server, specs, clock, c)
            await hold_steady(c, clock, len(specs), periods=6)  # 120 s on the clock
            assert c.alarms(AlarmKind.STALE) == []
            assert c.gaps() == []
            assert c.processor.readings == 2  # proofs are no readings
            assert c.processor.proofs >= 2 * 6
            assert collector.counters.proofs_of_life == c.processor.proofs
        finally:
            await server.stop()

    async def test_a_stopped_server_still_goes_stale(self, endpoint, make_collector, core, clock):
        """The control: once the server is gone, no proofs, and stale_after later: stale."""
        server = SyntheticServer(2, endpoint=endpoint)
        await server.start()
        try:
            await server.update(value=-80.0)
            specs = specs_of(server)
            c = core(specs)
            collector = await started(make_collector, server, specs, clock, c)
            await hold_steady(c, clock, len(specs), periods=2)
        finally:
            await server.stop()
        await eventually(lambda: not collector.connected, what="the loss", timeout=10)
        clock.advance(STALE_S)
        await c.processor.tick()
        assert c.alarms(AlarmKind.STALE) == []  # exactly stale_after: not yet
        clock.advance(1)
        await c.processor.tick()
        stale = c.alarms(AlarmKind.STALE)
        assert sorted(a.sensor_id for a in stale) == sorted(s.sensor_id for s in specs)
        # the gap starts at the last proof, in the node's data time (the server's clock)
        gaps = c.gaps()
        assert all(gap.start > utcnow() - timedelta(minutes=1) for gap in gaps)

    async def test_a_silent_subscription_still_goes_stale(
        self, endpoint, make_collector, core, clock
    ):
        """A subscription that stopped publishing (no keep-alive) proves nothing: stale."""
        server = SyntheticServer(2, endpoint=endpoint)
        await server.start()
        try:
            await server.update(value=-80.0)
            specs = specs_of(server)
            c = core(specs)
            collector = await started(make_collector, server, specs, clock, c)
            await hold_steady(c, clock, len(specs), periods=2)
            assert server.silence_subscriptions() == 1
            proofs = c.processor.proofs
            clock.advance(STALE_S + 1)
            await asyncio.sleep(0.5)  # keep-alives would have come by now
            await c.processor.tick()
            assert c.processor.proofs == proofs
            assert len(c.alarms(AlarmKind.STALE)) == len(specs)
            assert collector.connected  # the session is up: only the subscription is dead
        finally:
            await server.stop()

    async def test_a_node_with_a_bad_status_gets_no_proof(
        self, endpoint, make_collector, core, clock
    ):
        """A node whose last status was bad is not vouched for: it goes stale as before."""
        server = SyntheticServer(2, endpoint=endpoint)
        await server.start()
        try:
            await server.update(value=-80.0)
            bad_key = server.keys[1]
            await server.write(bad_key, None, status=ua.StatusCodes.BadSensorFailure)
            specs = specs_of(server)
            c = core(specs)
            await started(make_collector, server, specs, clock, c)
            await eventually(lambda: c.processor.readings >= 2, what="both values", timeout=10)
            await hold_steady(c, clock, 1, periods=4)  # 80 s on the clock
            (stale,) = c.alarms(AlarmKind.STALE)
            assert stale.sensor_id == specs[1].sensor_id
        finally:
            await server.stop()
