"""Tests of the durable store-and-forward buffer and the collector pipeline."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import timedelta
from pathlib import Path

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


def rows_on_disk(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


class TestForwardingPaths:
    """The memory window and the disk path forward one stream, in order, nothing lost."""

    async def test_steady_state_forwards_from_memory_and_deletes_with_the_next_put(self, tmp_path):
        """While the bus keeps up nothing is read back from disk; rows go with later puts."""
        path = tmp_path / "b.sqlite3"
        bus = InMemoryBus()
        box = Outbox(path)
        receiving = asyncio.create_task(collect(bus, READINGS, 20))
        forwarder = asyncio.create_task(box.forward(bus))
        box.put(msgs(10))
        async with asyncio.timeout(5):
            while len(box):
                await asyncio.sleep(0.001)
        assert rows_on_disk(path) == 10  # forwarded, deleted by the next commit
        box.put(msgs(10, 10))
        assert rows_on_disk(path) == 10  # the first ten went with this commit
        assert [int(m.value) for m in await receiving] == list(range(20))
        assert box.stats.read_from_disk == 0
        forwarder.cancel()
        box.close()
        assert rows_on_disk(path) == 0  # close deletes what was forwarded

    async def test_idle_forwarder_deletes_forwarded_rows(self, tmp_path):
        """Without further puts the forwarder deletes forwarded rows once idle."""
        path = tmp_path / "b.sqlite3"
        box = Outbox(path)
        forwarder = asyncio.create_task(box.forward(InMemoryBus()))
        box.put(msgs(5))
        async with asyncio.timeout(5):
            while rows_on_disk(path):
                await asyncio.sleep(0.05)
        assert len(box) == 0
        forwarder.cancel()
        box.close()

    async def test_overflowing_the_window_switches_to_disk_and_back(self, tmp_path):
        """More than the window waits during an outage: forwarded from disk, then memory."""
        bus = SwitchableBus()
        bus.available = False
        box = Outbox(tmp_path / "b.sqlite3", memory_window=50)
        forwarder = asyncio.create_task(box.forward(bus, batch=7))
        for start in range(0, 200, 20):
            box.put(msgs(20, start))
        receiving = asyncio.create_task(collect(bus.inner, READINGS, 230))
        bus.available = True
        async with asyncio.timeout(5):
            while len(box):
                await asyncio.sleep(0.005)
        assert box.stats.read_from_disk == 200
        box.put(msgs(30, 200))  # caught up: back on the memory path
        got = await receiving
        assert [int(m.value) for m in got] == list(range(230))
        assert box.stats.read_from_disk == 200
        assert box.stats.forwarded == 230
        forwarder.cancel()
        box.close()

    async def test_random_interleaving_keeps_order_exactly_once(self, tmp_path):
        """Puts of random sizes from a thread, outages at random: every message once, in order."""
        rng = random.Random(7)
        bus = SwitchableBus()
        box = Outbox(tmp_path / "b.sqlite3", memory_window=64)
        total = 3_000
        receiving = asyncio.create_task(collect(bus.inner, READINGS, total))
        forwarder = asyncio.create_task(box.forward(bus, batch=25))
        sizes = []
        while sum(sizes) < total:
            sizes.append(min(rng.randint(1, 90), total - sum(sizes)))

        def producer() -> None:
            start = 0
            for size in sizes:
                assert box.put(msgs(size, start))
                start += size

        producing = asyncio.create_task(asyncio.to_thread(producer))
        while not producing.done():
            bus.available = rng.random() > 0.3
            await asyncio.sleep(rng.random() * 0.01)
        bus.available = True
        got = await receiving
        assert [int(m.value) for m in got] == list(range(total))
        assert box.stats.read_from_disk > 0  # the outages did overflow the window
        forwarder.cancel()
        box.close()

    async def test_crash_after_forwarding_repeats_rather_than_loses(self, tmp_path):
        """Rows forwarded but not yet deleted when the process dies are forwarded again."""
        path = tmp_path / "b.sqlite3"
        first = Outbox(path)
        forwarder = asyncio.create_task(first.forward(InMemoryBus(), idle_purge_s=3600))
        first.put(msgs(10))
        async with asyncio.timeout(5):
            while len(first):
                await asyncio.sleep(0.001)
        forwarder.cancel()
        # No close(): the process died. A new one finds the undeleted rows and sends them.
        bus = InMemoryBus()
        second = Outbox(path)
        assert len(second) == 10
        receiving = asyncio.create_task(collect(bus, READINGS, 10))
        await second.drain(bus)
        assert [int(m.value) for m in await receiving] == list(range(10))
        second.close()


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


class TestStallAlarm:
    """A buffer whose oldest message waits too long says so (clock injected, no sleeping)."""

    def _box(self, clock: FakeClock, events: list[SystemEvent], limit: float = 120.0) -> Outbox:
        return Outbox(":memory:", clock=clock, on_event=events.append, stall_alarm_after=limit)

    def test_oldest_age_follows_the_oldest_unforwarded_message(self):
        """The age is that of the oldest message not yet forwarded, to about a second."""
        clock, events = FakeClock(), []
        box = self._box(clock, events)
        assert box.oldest_age() == 0.0
        box.put(msgs(3))
        clock.advance(30)
        box.put(msgs(3, 3))
        clock.advance(30)
        assert box.oldest_age() == 60.0
        box.ack(3, 3)  # the first three reached the bus
        assert box.oldest_age() == 30.0
        box.ack(6, 3)
        assert box.oldest_age() == 0.0

    def test_a_buffer_not_draining_raises_stalled_then_flowing(self):
        """Past stall_alarm_after one buffer_stalled alarm; buffer_flowing once it drains."""
        clock, events = FakeClock(), []
        box = self._box(clock, events)
        box.put(msgs(5))
        clock.advance(100)
        box.check_stall()
        assert events == []
        for _ in range(3):  # the bus still takes nothing: one alarm, not one per check
            clock.advance(20)
            box.put(msgs(1, 5))
            box.check_stall()
        assert [e.event for e in events] == [SystemEventKind.BUFFER_STALLED]
        assert events[0].alarm
        assert events[0].ts == DEFAULT_T0 + timedelta(seconds=140)
        assert box.stalled
        box.ack(7, 8)
        box.check_stall()
        assert [e.event for e in events][-1] is SystemEventKind.BUFFER_FLOWING
        assert not events[-1].alarm
        assert not box.stalled

    def test_clears_once_the_backlog_is_recent_again(self):
        """Forwarding a backlog clears the alarm once the oldest waiting is under the limit."""
        clock, events = FakeClock(), []
        box = self._box(clock, events, limit=60)
        for i in range(10):  # ten minutes of messages, one a minute, none forwarded
            box.put(msgs(1, i))
            clock.advance(60)
        box.check_stall()
        assert box.stalled
        box.ack(8, 8)  # the bus is back and took eight: the oldest left waited 2 minutes
        box.check_stall()
        assert box.stalled
        box.ack(9, 1)  # the last waited 60 s: not over the limit
        box.check_stall()
        assert not box.stalled
        assert [e.event for e in events] == [
            SystemEventKind.BUFFER_STALLED,
            SystemEventKind.BUFFER_FLOWING,
        ]

    def test_rows_found_on_disk_count_from_the_open(self, tmp_path):
        """After a restart the buffered rows' age counts from the open (their put time is lost)."""
        clock, events = FakeClock(), []
        Outbox(tmp_path / "b.sqlite3").put(msgs(4))
        box = Outbox(
            tmp_path / "b.sqlite3", clock=clock, on_event=events.append, stall_alarm_after=60
        )
        clock.advance(61)
        box.check_stall()
        assert [e.event for e in events] == [SystemEventKind.BUFFER_STALLED]

    def test_memory_stays_bounded_in_a_long_outage(self):
        """Put times of a long outage are thinned out instead of growing without bound."""
        clock = FakeClock()
        box = Outbox(":memory:", clock=clock, stall_alarm_after=60)
        for i in range(20_000):  # 20,000 s of one message a second
            box.put(msgs(1, i))
            clock.advance(1)
        assert len(box._marks) <= 4_096
        assert 20_000 - 8 <= box.oldest_age() <= 20_000

    def test_no_alarm_without_a_limit(self):
        """Without stall_alarm_after the age is still measured, nothing is raised."""
        clock, events = FakeClock(), []
        box = Outbox(":memory:", clock=clock, on_event=events.append)
        box.put(msgs(1))
        clock.advance(10_000)
        box.check_stall()
        assert box.oldest_age() == 10_000
        assert events == []


class TestDiskFull:
    """A disk that cannot be written (SQLite's SQLITE_FULL, here through max_page_count)."""

    @staticmethod
    def cap(box: Outbox, pages: int | None = None) -> None:
        """Let the database file grow no further (or to ``pages``)."""
        if pages is None:
            (pages,) = box._db.execute("PRAGMA page_count").fetchone()
        box._db.execute(f"PRAGMA max_page_count = {pages}")

    def test_refuses_alarms_once_and_never_raises(self, tmp_path, monkeypatch):
        """A write that fails for want of space is a refusal with the reason, not a crash."""
        monkeypatch.setattr("collectors.buffer.DISK_ROOM_BYTES", 1 << 62)  # no room anywhere
        events: list[SystemEvent] = []
        box = Outbox(tmp_path / "b.sqlite3", on_event=events.append)
        assert box.put(msgs(5))
        self.cap(box)
        big = [Message(READINGS, "s", b"x" * 20_000) for _ in range(20)]
        assert not box.put(big)
        assert not box.put(big)
        assert box.full
        assert box.stats.write_failures == 2
        assert [e.event for e in events] == [SystemEventKind.BUFFER_FULL]
        assert "full" in events[0].detail
        assert len(box) == 5  # what was stored stays, in order
        assert [m.value for _, m in box.peek(10)] == [str(i).encode() for i in range(5)]
        box.close()

    def test_takes_messages_again_once_there_is_room(self, tmp_path):
        """With room again the next put succeeds and the buffer says so (buffer_ok)."""
        events: list[SystemEvent] = []
        box = Outbox(tmp_path / "b.sqlite3", on_event=events.append)
        box.put(msgs(1))
        self.cap(box)
        big = [Message(READINGS, "s", b"x" * 20_000) for _ in range(20)]
        assert not box.put(big)
        self.cap(box, 1_000_000)
        assert not box.full  # the filesystem has room: a paused source may try again
        assert box.put(big)
        assert [e.event for e in events] == [SystemEventKind.BUFFER_FULL, SystemEventKind.BUFFER_OK]
        assert len(box) == 21
        box.close()

    async def test_forwarding_goes_on_while_the_disk_is_full(self, tmp_path):
        """What is buffered still reaches the bus; the rows go once they can be deleted."""
        box = Outbox(tmp_path / "b.sqlite3")
        box.put(msgs(30))
        self.cap(box)
        bus = InMemoryBus()
        await box.drain(bus)
        got = await collect(bus, READINGS, 30)
        assert [m.value for m in got] == [str(i).encode() for i in range(30)]
        box.close()
