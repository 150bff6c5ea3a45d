"""Scaffolding of the supervisor tests (MQTT, OPC-UA): fake endpoints, recorded waits, harness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from collectors.buffer import Outbox
from envmon.models import SystemEvent, SystemEventKind
from envmon.testing import FakeClock, eventually


class FakeEndpoint:
    """A fake broker or server: refuses ``refuse`` connects, or never answers when ``hang``."""

    def __init__(self, refuse: int = 0, hang: bool = False) -> None:
        self.refuse = refuse
        self.hang = hang
        self.connecting = asyncio.Event()

    def refusal(self) -> Exception:
        """The error a refused connect raises."""
        raise NotImplementedError

    async def accept(self) -> None:
        """Answer a connect: hang, refuse (counting down ``refuse``) or accept."""
        self.connecting.set()
        if self.hang:
            await asyncio.Future()  # until cancelled
        if self.refuse:
            self.refuse -= 1
            raise self.refusal()


class FakeSleep:
    """Records the reconnect waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run (without waiting for time) until ``condition`` holds."""
    await eventually(condition, what="the supervisor to get there", timeout=10, interval=0)


class Supervisor(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class SupervisorHarness:
    """An in-memory outbox, the events and the recorded waits of one ``collector``."""

    collector: Supervisor

    def __init__(self) -> None:
        self.outbox = Outbox(":memory:")
        self.events: list[SystemEvent] = []
        self.sleep = FakeSleep()

    def wiring(self, rng: float = 0.0) -> dict[str, Any]:
        """Return the keywords every supervisor takes: a fake clock, ``events``, ``sleep``, rng."""
        return {
            "clock": FakeClock(),
            "on_event": self.events.append,
            "sleep": self.sleep,
            "rng": lambda: rng,
        }

    def kinds(self) -> list[tuple[SystemEventKind, bool]]:
        return [(e.event, e.alarm) for e in self.events]

    async def first_waits(self, count: int) -> list[float]:
        """Start the collector, stop it after ``count`` reconnect waits; return those waits."""
        await self.collector.start()
        await until(lambda: len(self.sleep.waits) >= count)
        await self.collector.stop()
        return self.sleep.waits[:count]


H = TypeVar("H", bound=SupervisorHarness)


@asynccontextmanager
async def harnesses(make: Callable[..., H]) -> AsyncIterator[Callable[..., H]]:
    """Yield a factory of harnesses; on exit stop each one's collector and close its outbox."""
    made: list[H] = []

    def factory(*args: Any, **kwargs: Any) -> H:
        made.append(make(*args, **kwargs))
        return made[-1]

    yield factory
    for harness in made:
        await harness.collector.stop()
        harness.outbox.close()
