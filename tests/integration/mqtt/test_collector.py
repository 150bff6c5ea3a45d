"""The MQTT collector against a real Mosquitto: sessions, restarts, full buffer, bad payloads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.mqtt import MqttCollector
from devservers.mosquitto import Mosquitto
from envmon.bus import READINGS, InMemoryBus
from envmon.testing import FakeClock, eventually

from .helpers import Harness, messages, seq_of

pytestmark = pytest.mark.timeout(60)


class TestPersistentSession:
    """QoS 1 on a persistent session: nothing published while envmon is down is lost."""

    @pytest.mark.parametrize("protocol", ["5", "3.1.1"])
    async def test_messages_published_while_down_arrive_after_restart(self, harness, protocol):
        """1,000 readings published while the collector is stopped all arrive after it restarts."""
        harness.protocol = protocol
        first = await harness.started()
        await first.stop()

        await harness.publish(messages(harness.prefix, range(1000)))
        second = await harness.started()
        await eventually(lambda: len(harness.readings()) >= 1000, what="1000 readings", timeout=10)
        await second.stop()

        seqs = [seq_of(r) for r in harness.readings()]
        assert len(seqs) == 1000  # count in == count out
        assert set(seqs) == set(range(1000))
        assert second.counters.received == 1000
        assert second.counters.readings == 1000
        assert second.counters.dead_lettered == 0

    async def test_clean_stop_acknowledges_everything(self, harness):
        """After a clean stop and restart nothing is delivered twice."""
        collector = await harness.started()
        await harness.publish(messages(harness.prefix, range(300)))
        await eventually(lambda: len(harness.readings()) >= 300, what="300 readings", timeout=10)
        await collector.stop()
        again = await harness.started()
        await harness.publish(messages(harness.prefix, range(300, 310)))
        await eventually(lambda: len(harness.readings()) >= 310, what="310 readings", timeout=10)
        await again.stop()
        assert sorted(seq_of(r) for r in harness.readings()) == list(range(310))


class TestBrokerRestart:
    """Mosquitto restarted mid-stream: the collector reconnects and no reading is lost."""

    async def test_broker_restart_mid_stream(self, own_mosquitto: Mosquitto, tmp_path):
        """Readings in the middle of a commit when the broker restarts still all arrive."""
        harness = Harness(own_mosquitto, tmp_path)
        collector = await harness.started()
        # Hold the first commit until the broker has gone down and come back: its messages
        # are then stored but can no longer be acknowledged on the connection they came on.
        gate, holding = threading.Event(), threading.Event()
        put = collector.pipeline.put

        def slow_put(readings, failures=()):
            if not gate.is_set():
                holding.set()
                gate.wait(10)
            return put(readings, failures)

        collector.pipeline.put = slow_put  # type: ignore[method-assign]
        try:
            await harness.publish(messages(harness.prefix, range(1000)))
            await asyncio.to_thread(holding.wait, 10)
            await asyncio.to_thread(own_mosquitto.restart)
            gate.set()
            # The held commit kept the collector from reading, so it may not have seen the
            # restart yet: wait for the new connection, not for the stale ready flag.
            await eventually(
                lambda: collector.counters.reconnects >= 1, what="a reconnect", timeout=10
            )
            await collector.wait_ready(10)
            await harness.publish(messages(harness.prefix, range(1000, 1500)))
            await eventually(
                lambda: {seq_of(r) for r in harness.readings()} >= set(range(1500)),
                what="all 1500 messages",
                timeout=10,
            )
            counts = Counter(seq_of(r) for r in harness.readings())
        finally:
            gate.set()
            await harness.close()

        assert set(counts) == set(range(1500))
        # At least once: what was stored but not acknowledged before the restart came again.
        assert all(n <= 2 for n in counts.values())
        assert collector.counters.reconnects >= 1
        kinds = harness.event_kinds()
        assert "disconnected" in kinds
        assert kinds.count("connected") >= 2

    async def test_broker_down_at_start(self, tmp_path):
        """A collector started before its broker keeps trying and connects once it is up."""
        broker = Mosquitto(tmp_path / "late")
        harness = Harness(broker, tmp_path)
        collector = harness.collector()
        await collector.start()
        try:
            await eventually(
                lambda: "disconnected" in harness.event_kinds(),
                what="the disconnected alarm",
                timeout=10,
            )
            assert not collector.connected
            await asyncio.to_thread(broker.start)
            await collector.wait_ready(10)
            await harness.publish(messages(harness.prefix, range(5)))
            await eventually(lambda: len(harness.readings()) == 5, what="5 readings", timeout=10)
        finally:
            await harness.close()
            broker.stop()
        assert harness.events[0].alarm
        assert "cannot connect" in harness.events[0].detail


class TestFullBuffer:
    """A full buffer refuses; nothing is acknowledged and the broker delivers again later."""

    async def test_full_buffer_then_redelivery(self, harness):
        """The collector stops acknowledging when the buffer is full and gets everything later."""
        harness.max_messages = 100
        collector = await harness.started(full_poll_interval=0.01)
        await harness.publish(messages(harness.prefix, range(300)))
        await eventually(
            lambda: collector.counters.refused > 0, what="a refused message", timeout=10
        )
        assert len(harness.buffer()) <= 100
        full = [e for e in harness.events if e.event.value == "buffer_full"]
        assert len(full) == 1
        assert full[0].alarm

        bus = InMemoryBus()
        seen: Counter[int] = Counter()

        async def consume() -> None:
            async for message in bus.subscribe(READINGS, "test"):
                seen[seq_of(orjson.loads(message.value))] += 1

        tasks = [asyncio.create_task(consume()), asyncio.create_task(harness.buffer().forward(bus))]
        try:
            await eventually(
                lambda: set(seen) >= set(range(300)), what="all 300 messages on the bus", timeout=20
            )
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert set(seen) == set(range(300))
        assert "buffer_ok" in harness.event_kinds()
        assert collector.counters.reconnects >= 1  # the reconnect that made the broker redeliver


class TestDeadLetters:
    """Payloads that cannot be read end in the dead letter; the collector keeps running."""

    async def test_bad_payloads(self, harness):
        """Malformed, oversized, wrong-type and unknown-sensor payloads are dead-lettered."""
        harness.connection = "max_payload_bytes: 2000"
        collector = await harness.started()
        p = harness.prefix
        bad = [
            (f"{p}/inc-1/data", b"{not json"),
            (f"{p}/inc-1/data", b"x" * 5000),
            (f"{p}/inc-1/data", b'{"ts": "2026-01-05T08:00:00Z", "t": "warm"}'),
            (f"{p}/inc-1/data", b'{"ts": 5, "t": 1.0}'),
            (f"{p}/inc-1/data", b'["ts", 1]'),
            (f"{p}/inc-1/data", b"\xff\xfe binary"),
            (f"{p}/inc-99/data", b'{"ts": "2026-01-05T08:00:00Z", "t": 1.0}'),
            (f"{p}/inc-1/co2", b"five"),
        ]
        await harness.publish([*bad, *messages(p, [7])])
        await eventually(
            lambda: len(harness.readings()) == 1 and len(harness.dead_letters()) == 8,
            what="1 reading and 8 dead letters",
            timeout=10,
        )

        letters = harness.dead_letters()
        reasons = [letter["reason"] for letter in letters]
        assert "invalid JSON" in reasons[0]
        assert "oversized payload: 5,000 bytes" in reasons[1]
        assert "is a string, expected a number" in reasons[2]
        assert "expected an ISO 8601 string" in reasons[3]
        assert "JSON list" in reasons[4]
        assert "unknown sensor 'inc-99.temperature'" in reasons[6]
        assert "not a plain number" in reasons[7]
        assert [letter["origin"] for letter in letters] == [topic for topic, _ in bad]
        assert letters[0]["payload"] == "{not json"
        assert letters[5]["encoding"] == "base64"
        assert all(letter["source"] == "mqtt:test" for letter in letters)
        assert collector.connected
        assert collector.counters.dead_lettered == 8

    async def test_unknown_topic_from_an_old_subscription(self, harness):
        """A topic no binding matches (the session kept an old subscription) is dead-lettered."""
        old = await harness.started()
        await old.stop()
        harness.bindings = f"""
            - topic: {harness.prefix}/+instrument/co2
              sensor_id: "{{instrument}}.co2"
              payload: {{format: number}}
        """
        await harness.started()  # same client id: the broker still has the old subscription
        await harness.publish(messages(harness.prefix, [1]))
        await eventually(
            lambda: len(harness.dead_letters()) == 1, what="the dead letter", timeout=10
        )
        (letter,) = harness.dead_letters()
        assert letter["reason"] == "unknown topic: no binding matches it"
        assert letter["origin"] == f"{harness.prefix}/inc-1/data"

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        payloads=st.lists(
            st.one_of(
                st.binary(max_size=300),
                st.builds(
                    lambda ts, t: orjson.dumps({"ts": ts, "t": t}),
                    st.one_of(st.just("2026-01-05T08:00:00Z"), st.text(max_size=30)),
                    st.one_of(st.floats(allow_nan=False), st.integers(-(2**60), 2**60)),
                ),
            ),
            min_size=1,
            max_size=20,
        )
    )
    async def test_fuzz_through_the_broker(self, harness, payloads):
        """Random payloads through Mosquitto all become readings or dead letters."""
        if not harness.collectors:
            await harness.started()
        (collector,) = harness.collectors
        before = collector.counters.received
        stored_before = len(harness.readings()) + len(harness.dead_letters())
        topic = f"{harness.prefix}/inc-3/data"
        await harness.publish([(topic, payload) for payload in payloads])
        await eventually(
            lambda: collector.counters.received == before + len(payloads),
            what="every payload received",
            timeout=10,
        )
        await eventually(
            lambda: (
                len(harness.readings()) + len(harness.dead_letters())
                == stored_before + len(payloads)
            ),
            what="every payload stored",
            timeout=10,
        )
        assert collector.connected


class TestWatchdog:
    """A binding silent for longer than its expected period is recovered."""

    async def test_silent_subscription_is_resubscribed(self, harness):
        """The broker lost the subscription: the watchdog notices, resubscribes, data flows."""
        clock = FakeClock()
        collector = await harness.started(clock=clock, watchdog_interval=0)
        await harness.publish(messages(harness.prefix, [0]))
        await eventually(lambda: len(harness.readings()) == 1, what="the first reading", timeout=10)

        # What Telegraf users see: the connection is fine but the subscription is gone.
        assert collector._conn is not None
        await collector._conn.unsubscribe([f"{harness.prefix}/+/data"])
        clock.advance(30)
        assert await collector.check_subscriptions() == []
        clock.advance(31)
        assert await collector.check_subscriptions() == [f"{harness.prefix}/+instrument/data"]

        assert collector.counters.resubscriptions == 1
        silent = [e for e in harness.events if e.event.value == "subscription_silent"]
        assert len(silent) == 1
        assert silent[0].alarm
        assert "resubscribed" in harness.event_kinds()
        await harness.publish(messages(harness.prefix, [1]))
        await eventually(
            lambda: len(harness.readings()) == 2, what="the reading after resubscribing", timeout=10
        )

    async def test_still_silent_reconnects(self, harness):
        """A binding still silent a period after resubscribing makes the collector reconnect."""
        clock = FakeClock()
        collector = await harness.started(clock=clock, watchdog_interval=0)
        clock.advance(61)
        await collector.check_subscriptions()
        clock.advance(61)
        await collector.check_subscriptions()
        await eventually(
            lambda: collector.counters.reconnects == 1, what="the reconnect", timeout=10
        )
        await collector.wait_ready(10)
        silent = [e for e in harness.events if e.event.value == "subscription_silent"]
        assert len(silent) == 1  # one alarm per silence, not one per check
        await harness.publish(messages(harness.prefix, [5]))
        await eventually(
            lambda: len(harness.readings()) == 1, what="the reading after reconnecting", timeout=10
        )

    async def test_traffic_keeps_the_watchdog_quiet(self, harness):
        """A binding that receives within its period is left alone."""
        clock = FakeClock()
        collector = await harness.started(clock=clock, watchdog_interval=0)
        for seq in range(3):
            clock.advance(45)
            await harness.publish(messages(harness.prefix, [seq]))
            await eventually(
                lambda n=seq: len(harness.readings()) == n + 1,
                what=f"reading {seq + 1}",
                timeout=10,
            )
            assert await collector.check_subscriptions() == []
        assert collector.counters.resubscriptions == 0


async def test_stop_is_idempotent_and_collector_restarts(harness):
    """stop() twice is harmless and the same collector object can start again."""
    collector: MqttCollector = await harness.started()
    await collector.stop()
    await collector.stop()
    await collector.start()
    await collector.wait_ready(10)
    await harness.publish(messages(harness.prefix, [1]))
    await eventually(
        lambda: len(harness.readings()) == 1, what="the reading after restarting", timeout=10
    )
