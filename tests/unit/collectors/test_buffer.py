"""Tests of the durable store-and-forward buffer and the collector pipeline."""

from __future__ import annotations

import asyncio

import pytest

from collectors.buffer import Outbox
from collectors.pipeline import CollectorPipeline, RawPayload
from envmon.bus import DEADLETTER, READINGS, InMemoryBus, Message
from envmon.models import DeadLetter, Reading, SystemEvent, SystemEventKind
from envmon.testing import DEFAULT_T0, FakeClock, SwitchableBus, readings


def msgs(n: int, start: int = 0) -> list[Message]:
    return [Message(READINGS, f"s{i % 3}", f"{i}".encode()) for i in range(start, start + n)]


async def collect(bus: InMemoryBus, topic: str, n: int) -> list[Message]:
    out = []
    stream = bus.subscribe(topic, "test")
    async with asyncio.timeout(10):
        async for m in stream:
            out.append(m)
            if len(out) == n:
                return out
    return out


class TestOutbox:
    def test_put_is_durable_across_reopen(self, tmp_path):
        """Messages put before a restart are still there, in order, after it."""
        box = Outbox(tmp_path / "b.sqlite3")
        assert box.put(msgs(5))
        box.close()
        again = Outbox(tmp_path / "b.sqlite3")
        assert len(again) == 5
        assert [m.value for _, m in again.peek()] == [b"0", b"1", b"2", b"3", b"4"]

    def test_bound_refuses_and_alarms_once(self, tmp_path):
        """A full buffer refuses a batch, counts it, and raises one buffer_full alarm."""
        events: list[SystemEvent] = []
        box = Outbox(tmp_path / "b.sqlite3", max_messages=10, on_event=events.append)
        assert box.put(msgs(8))
        assert not box.put(msgs(3, 8))
        assert not box.put(msgs(3, 11))
        assert len(box) == 8
        assert box.stats.refused == 6
        assert [e.event for e in events] == [SystemEventKind.BUFFER_FULL]
        assert events[0].alarm

    def test_recovers_below_the_bound(self, tmp_path):
        """After forwarding frees space the buffer reports itself healthy again."""
        events: list[SystemEvent] = []
        box = Outbox(tmp_path / "b.sqlite3", max_messages=10, on_event=events.append)
        box.put(msgs(10))
        assert not box.put(msgs(1))
        rows = box.peek(5)
        box.ack(rows[-1][0], len(rows))
        assert box.put(msgs(1))
        assert [e.event for e in events] == [SystemEventKind.BUFFER_FULL, SystemEventKind.BUFFER_OK]

    async def test_forwards_in_order_after_an_outage(self, tmp_path):
        """While the bus refuses, messages stay buffered; afterwards they arrive in order."""
        bus = SwitchableBus()
        bus.available = False
        box = Outbox(tmp_path / "b.sqlite3")
        forwarder = asyncio.create_task(box.forward(bus))
        box.put(msgs(300))
        await asyncio.sleep(0.2)
        assert bus.refused >= 1
        assert len(box) == 300
        receiving = asyncio.create_task(collect(bus.inner, READINGS, 600))
        box.put(msgs(300, 300))
        bus.available = True
        got = await receiving
        async with asyncio.timeout(5):
            while len(box):  # the forwarder deletes a batch once the bus has it
                await asyncio.sleep(0.01)
        forwarder.cancel()
        assert [int(m.value) for m in got] == list(range(600))
        assert box.stats.forwarded == 600

    async def test_restart_while_buffered_forwards_after_restart(self, tmp_path):
        """A collector restarted with readings still buffered forwards them after the restart."""
        path = tmp_path / "b.sqlite3"
        first = Outbox(path)
        first.put(msgs(50))
        first.close()  # the process stops before the bus came back
        bus = InMemoryBus()
        second = Outbox(path)
        receiving = asyncio.create_task(collect(bus, READINGS, 50))
        await second.drain(bus)
        assert [int(m.value) for m in await receiving] == list(range(50))

    def test_put_after_close_is_an_error(self, tmp_path):
        """A closed buffer refuses loudly instead of losing data."""
        box = Outbox(tmp_path / "b.sqlite3")
        box.close()
        with pytest.raises(RuntimeError, match="closed"):
            box.put(msgs(1))


class TestCollectorPipeline:
    def test_readings_and_dead_letters_in_one_commit(self, tmp_path):
        """Readings go to the readings topic keyed by sensor, failures to the dead letter."""
        box = Outbox(tmp_path / "b.sqlite3")
        pipe = CollectorPipeline(box, source="mqtt:test", clock=FakeClock())
        batch = list(readings("s.t", [1.0, 2.0]))
        assert pipe.put(batch, [RawPayload("cgt/x", b"\xff\x00", "not JSON")])
        rows = [m for _, m in box.peek()]
        assert [m.topic for m in rows] == [READINGS, READINGS, DEADLETTER]
        assert Reading.model_validate_json(rows[0].value) == batch[0]
        letter = DeadLetter.model_validate_json(rows[2].value)
        assert (letter.origin, letter.reason, letter.encoding) == ("cgt/x", "not JSON", "base64")
        assert letter.received_at == DEFAULT_T0
        assert pipe.counters.as_dict()["readings"] == 2
        assert pipe.counters.dead_lettered == 1

    def test_full_buffer_counts_refused(self, tmp_path):
        """When the buffer refuses, nothing is stored and the readings count as refused."""
        box = Outbox(tmp_path / "b.sqlite3", max_messages=1)
        pipe = CollectorPipeline(box, source="opcua:test")
        assert not pipe.put(list(readings("s.t", [1.0, 2.0])))
        assert pipe.counters.refused == 2
        assert len(box) == 0


class TestInMemoryBus:
    async def test_messages_before_subscription_are_kept(self):
        """The first subscriber of a topic gets what was published before it subscribed."""
        bus = InMemoryBus()
        await bus.publish(msgs(3))
        assert [m.value for m in await collect(bus, READINGS, 3)] == [b"0", b"1", b"2"]

    async def test_each_group_gets_every_message(self):
        """Two consumer groups each receive the whole stream."""
        bus = InMemoryBus()
        a = bus.subscribe(READINGS, "a")
        b = bus.subscribe(READINGS, "b")
        first_a = asyncio.create_task(anext(a))
        first_b = asyncio.create_task(anext(b))
        await asyncio.sleep(0)
        await bus.publish(msgs(1))
        assert (await first_a).value == (await first_b).value == b"0"
