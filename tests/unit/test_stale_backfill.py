"""Backfilled readings are judged in data time: bursts behind the wall clock are not silence.

Readings delivered faster than real time while the processor is caught up (a publisher's
burst, a collector's buffer draining after an outage) lag the wall clock. A clock tick must
not read that lag as silence; a sensor that really goes quiet must still go stale on the
wall clock. Both engines that tick a wall clock are tested: the Kafka worker's
``ReadingBatchProcessor`` and the embedded ``StreamProcessor``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from envmon.bus import READINGS, InMemoryBus, Message
from envmon.models import AlarmEvent, AlarmKind, CoreEvent, DataGap, Reading
from envmon.testing import DEFAULT_T0, FakeClock, eventually, make_spec
from stream.embedded import StreamProcessor
from stream.kafka.batch import BatchResult, ReadingBatchProcessor

STALE_S = 300
SENSORS = ("freezer-1.temperature", "freezer-2.temperature", "freezer-3.temperature")


@dataclass(frozen=True)
class Record:
    """A fetched Kafka record, as the worker reads it."""

    offset: int
    key: bytes | None
    value: bytes | None


def specs(ids: Iterable[str] = SENSORS) -> list[Any]:
    return [make_spec(sid, alert_high=-15, stale_after_s=STALE_S) for sid in ids]


def second_by_second(sensor_ids: Iterable[str], start: datetime, seconds: int) -> list[Reading]:
    """One reading a second from each sensor for ``seconds`` seconds from ``start``."""
    return [
        Reading(sensor_id=sid, value=-20.0, ts=start + timedelta(seconds=s))
        for s in range(seconds)
        for sid in sensor_ids
    ]


def bursts(readings: list[Reading], size: int) -> list[list[Reading]]:
    return [readings[i : i + size] for i in range(0, len(readings), size)]


def stale_or_gaps(messages: Iterable[Message]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        event = json.loads(message.value)
        if event.get("kind") == "data_gap" or event.get("event") in ("stale", "restored"):
            out.append(event)
    return out


class WorkerHarness:
    """A ``ReadingBatchProcessor`` on one partition, fed and ticked as the worker does."""

    def __init__(self, clock: FakeClock, ids: Iterable[str] = SENSORS) -> None:
        self.clock = clock
        self.processor = ReadingBatchProcessor(
            specs(ids), 1, lambda _sid: None, clock=clock, encode=lambda r, _ts, _c: r
        )
        self.offset = 0
        self.outputs: list[Message] = []

    def deliver(self, readings: list[Reading], at: datetime | None = None) -> None:
        records = []
        for reading in readings:
            records.append(Record(self.offset, reading.sensor_id.encode(), reading.to_json()))
            self.offset += 1
        result = BatchResult()
        self.processor.evaluate([(0, records)], result, at)
        self.outputs += result.outputs

    def tick(self) -> None:
        self.outputs += self.processor.tick(self.clock(), {})


class TestWorkerBackfill:
    def test_a_burst_lagging_more_than_stale_after_raises_nothing(self):
        """Ten minutes behind, 10x real time, ticking between bursts: no stale, no data gap."""
        clock = FakeClock(DEFAULT_T0 + timedelta(minutes=10))
        worker = WorkerHarness(clock)
        for burst in bursts(second_by_second(SENSORS, DEFAULT_T0, 330), 30 * len(SENSORS)):
            worker.deliver(burst)  # 30 s of data ...
            for _ in range(3):  # ... every 3 s of wall time, ticking every second
                clock.advance(1)
                worker.tick()
        assert stale_or_gaps(worker.outputs) == []

    def test_sensors_of_two_lags_on_one_partition_do_not_judge_each_other(self):
        """A live sensor's data time does not make a backfilling sensor on its partition stale."""
        live, behind = SENSORS[0], SENSORS[1]
        clock = FakeClock(DEFAULT_T0 + timedelta(minutes=10))
        worker = WorkerHarness(clock, (live, behind))
        backlog = second_by_second([behind], DEFAULT_T0, 300)
        for burst in bursts(backlog, 30):
            now = clock()
            worker.deliver([*burst, *second_by_second([live], now - timedelta(seconds=2), 3)])
            for _ in range(3):
                clock.advance(1)
                worker.tick()
        assert stale_or_gaps(worker.outputs) == []

    def test_a_partition_that_goes_quiet_still_goes_stale_on_the_wall_clock(self):
        """After the burst, silence on the wall clock for stale_after: stale, in data time."""
        clock = FakeClock(DEFAULT_T0 + timedelta(minutes=10))
        worker = WorkerHarness(clock)
        worker.deliver(second_by_second(SENSORS, DEFAULT_T0, 60))
        clock.advance(STALE_S)
        worker.tick()
        assert stale_or_gaps(worker.outputs) == []  # not yet: exactly stale_after
        clock.advance(1)
        worker.tick()
        stale = [e for e in stale_or_gaps(worker.outputs) if e.get("event") == "stale"]
        assert sorted(e["sensor_id"] for e in stale) == sorted(SENSORS)
        # stamped in data time: the last sample plus stale_after
        assert {e["ts"] for e in stale} == {"2026-01-05T08:05:59Z"}

    def test_a_stall_with_readings_waiting_unread_raises_nothing(self):
        """After a stall longer than stale_after, full batches (more waiting) move no clock.

        The worker was stuck (the time-series store down) for ten minutes; it then reads
        the backlog in full batches, in which a sensor's next reading may come batches
        later. Only the batch that is not full (nothing waited) moves the clock.
        """
        clock = FakeClock(DEFAULT_T0)
        worker = WorkerHarness(clock)
        worker.deliver(second_by_second(SENSORS, DEFAULT_T0, 2), clock())
        worker.tick()
        clock.advance(600)  # the stall
        backlog = second_by_second(SENSORS, DEFAULT_T0 + timedelta(seconds=2), 600)
        full = [r for r in backlog if r.sensor_id == SENSORS[0]]  # the first full batches
        worker.deliver(full, clock())
        clock.advance(1)
        worker.deliver([r for r in backlog if r.sensor_id != SENSORS[0]], clock())
        worker.tick()  # caught up
        assert stale_or_gaps(worker.outputs) == []


class TestEmbeddedBackfill:
    async def test_a_burst_lagging_more_than_stale_after_raises_nothing(self):
        """The embedded processor: bursts ten minutes behind the clock raise nothing."""
        clock = FakeClock(DEFAULT_T0 + timedelta(minutes=10))
        events: list[CoreEvent] = []
        proc = StreamProcessor(InMemoryBus(), specs(), clock=clock, listener=events.append)
        for burst in bursts(second_by_second(SENSORS, DEFAULT_T0, 330), 30 * len(SENSORS)):
            await proc.handle([Message("r", r.sensor_id, r.to_json()) for r in burst])
            for _ in range(3):
                clock.advance(1)
                await proc.tick()
        assert [e for e in events if isinstance(e, DataGap)] == []
        assert [e for e in events if isinstance(e, AlarmEvent)] == []

    async def test_a_sensor_silent_in_the_backlog_goes_stale(self):
        """A sensor whose data stop inside the backlog goes stale: by its data or the clock."""
        quiet = SENSORS[2]
        clock = FakeClock(DEFAULT_T0 + timedelta(minutes=10))
        events: list[CoreEvent] = []
        proc = StreamProcessor(InMemoryBus(), specs(), clock=clock, listener=events.append)
        data = [
            r
            for r in second_by_second(SENSORS, DEFAULT_T0, 330)
            if r.sensor_id != quiet or r.ts < DEFAULT_T0 + timedelta(seconds=30)
        ]
        first_delivery = clock()
        for burst in bursts(data, 90):
            await proc.handle([Message("r", r.sensor_id, r.to_json()) for r in burst])
            clock.advance(3)
            await proc.tick()
        assert [e for e in events if isinstance(e, AlarmEvent)] == []  # 3 s per burst: not yet
        clock.now = first_delivery + timedelta(seconds=STALE_S + 1)  # the quiet one's last + 301 s
        await proc.tick()
        (stale,) = [e for e in events if isinstance(e, AlarmEvent)]
        assert (stale.event, stale.sensor_id) == (AlarmKind.STALE, quiet)
        assert stale.ts == DEFAULT_T0 + timedelta(seconds=29 + STALE_S)

    async def test_a_backlog_waiting_on_the_bus_is_not_silence(self):
        """Readings that waited on the bus through a ten-minute stall are judged as read."""
        clock = FakeClock(DEFAULT_T0)
        bus = InMemoryBus()
        events: list[CoreEvent] = []
        proc = StreamProcessor(bus, specs(), clock=clock, tick_s=3600, listener=events.append)
        await proc.start()
        try:
            first = second_by_second(SENSORS, DEFAULT_T0, 2)
            await bus.publish([Message(READINGS, r.sensor_id, r.to_json()) for r in first])
            await eventually(
                lambda: proc.readings == len(first), what="the first readings handled", interval=0
            )
            clock.advance(600)  # the processor was stuck; what follows waited on the bus
            backlog = second_by_second(SENSORS, DEFAULT_T0 + timedelta(seconds=2), 600)
            await bus.publish([Message(READINGS, r.sensor_id, r.to_json()) for r in backlog])
            await eventually(
                lambda: proc.readings == len(first) + len(backlog),
                what="the backlog handled",
                interval=0,
            )
            await proc.tick()
        finally:
            await proc.stop()
        assert [e for e in events if isinstance(e, AlarmEvent | DataGap)] == []
