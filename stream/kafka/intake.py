"""The worker's intake: readings fetched in batches from the partitions faust assigned.

An aiokafka consumer (offsets in the group ``<app_id>-readings``, never joining it) reads
exactly the readings partitions whose table partitions faust made active here, once faust
has recovered them, each from its committed offset; batches grow while the agent is busy.
A record is handled only if it is exactly the next of its partition (``PartitionOffsets``);
a hole makes the intake seek the partition back, and a hole that is real (deleted by
retention, or not in the log) is passed with a ``readings_missing`` alarm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.types import ChannelT

from envmon.models import (
    SystemEvent,
    SystemEventKind,
)
from envmon.settings import Settings
from envmon.timeseries import SeriesWriter
from stream.kafka.batch import COMPONENT, KafkaRecord, Part, ReadingBatchProcessor
from stream.kafka.effects import Uncommitted
from stream.kafka.offsets import Admission, PartitionOffsets
from stream.kafka.producer import BatchProducer

logger = logging.getLogger(__name__)

#: How long the intake's fetch may wait at the broker for data (aiokafka's default is 500 ms).
FETCH_MAX_WAIT_MS: Final = 50

#: Most bytes one fetch brings per partition (aiokafka's default is 1 MiB).
MAX_PARTITION_FETCH_BYTES: Final = 4 * 1024 * 1024

#: A hole in a partition's offsets is sought back at most once per SEEK_AGAIN_S: records
#: fetched before a seek still arrive after it.
SEEK_AGAIN_S: Final = 1.0

#: While the agent is busy, the intake polls for more readings this often (milliseconds).
BUSY_POLL_MS: Final = 2

#: How often the lag of the partitions read here is measured for the metrics (seconds).
LAG_EVERY_S: Final = 5.0


@dataclass(slots=True)
class Hole:
    """Records of a partition that did not arrive before later ones (module docstring)."""

    missing: int  #: the first offset not handled yet
    seen: int  #: the lowest offset that arrived after it
    sought_at: float = -SEEK_AGAIN_S  #: loop time of the last seek back
    seeks: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings fetched together, with the assignment epoch they were fetched under."""

    epoch: int
    parts: Sequence[Part]  # per partition, its records in offset order
    #: When the intake handed the batch over: its readings count as heard then (stale data).
    fetched_at: datetime | None = None
    #: The batch was full: more readings were waiting (the clock does not move to fetched_at).
    full: bool = False

    def __len__(self) -> int:
        return sum(len(records) for _, records in self.parts)


class Intake:
    """The intake half of ``stream.kafka.app.StreamWorker`` (a mixin: the worker owns state)."""

    settings: Settings
    clock: Callable[[], datetime]
    sink: SeriesWriter
    processor: ReadingBatchProcessor
    batch_channel: ChannelT[Any]
    offsets: PartitionOffsets
    offsets_group: str
    readings_topic: str
    intake: AIOKafkaConsumer | None
    first_fetch: float | None
    lag: dict[int, int]
    _behind: bool
    _fetched: int
    _holes: dict[int, Hole]
    _epoch: int
    _wanted: set[int]
    _held_epoch: int
    _stopping: bool
    _busy: bool
    _pending: Uncommitted
    _lock: asyncio.Lock

    if TYPE_CHECKING:  # the worker's (stream.kafka.app, stream.kafka.effects)

        def _ready(self) -> bool: ...

        async def _fail_stop(self, work: Awaitable[None]) -> None: ...

        async def _checkpoint(self, *, idle: bool) -> None: ...

        async def _producing(self) -> BatchProducer: ...

        async def system_event(self, event: SystemEvent) -> None:
            """Publish an event about the worker itself."""

    async def _intake(self) -> None:
        await self._fail_stop(self._intake_loop())

    async def _intake_loop(self) -> None:
        """Fetch readings in batches for the agent (a faust task, one per worker)."""
        self.intake = consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap.split(","),
            group_id=self.offsets_group,  # offsets only: the consumer never joins a group
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        )
        batch_max = self.settings.batch_max
        timeout_ms = max(1, int(self.settings.batch_within_s * 1000))
        pending: dict[int, list[Any]] = {}  # partition → records, in offset order
        count = 0
        pending_epoch = self._epoch
        try:  # from the start: a start failed or cancelled half-way leaves no connection open
            await consumer.start()
            # The producer and the time-series client now, not when the first readings wait
            # for them: starting them takes round trips (metadata, the idempotent producer's
            # id) and CPU (an SSL context) that would delay the first alarms.
            await self._producing()
            await self.sink.start()
            while not self._stopping:
                if self._held_epoch != self._epoch:
                    if not self._ready():
                        if consumer.assignment():
                            consumer.assign([])  # no prefetching while faust rebalances
                        await asyncio.sleep(0.02)
                        continue
                    await self._reassign(consumer)
                    continue
                if not consumer.assignment():
                    await asyncio.sleep(0.05)
                    continue
                if pending_epoch != self._epoch:
                    pending, count, pending_epoch = {}, 0, self._epoch  # fetched before a rebalance
                # While the agent is busy, keep fetching into one pending batch instead of
                # queueing small ones: each batch pays a few round trips, so batches grow
                # with the load and a backlog drains in full batches.
                fetched = await consumer.getmany(
                    timeout_ms=BUSY_POLL_MS if count and self._agent_busy() else timeout_ms,
                    max_records=batch_max - count,
                )
                if fetched and self.first_fetch is None:
                    self.first_fetch = time.perf_counter()
                if not fetched and not count and self._pending and not self._agent_busy():
                    await self._fail_stop(self._checkpoint(idle=True))  # caught up
                for tp, records in fetched.items():
                    held = pending.get(tp.partition)
                    if held is None:
                        pending[tp.partition] = records
                    else:
                        held.extend(records)
                    count += len(records)
                full = count >= batch_max
                self._fetched = count
                if count and (full or not self._agent_busy()):
                    self._behind = full
                    batch = Batch(pending_epoch, list(pending.items()), self.clock(), full)
                    pending, count = {}, 0
                    await self.batch_channel.put(batch)  # type: ignore[arg-type]
                    self._fetched = 0
        finally:
            self.intake = None
            await consumer.stop()

    def _agent_busy(self) -> bool:
        """Tell whether the agent is handling a batch or one is waiting for it on the channel."""
        return self._busy or not self.batch_channel.empty()

    async def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        """Read exactly the partitions faust assigned, each from its committed offset."""
        async with self._lock:
            epoch = self._epoch
            wanted = sorted(self._wanted)
            tps = [TopicPartition(self.readings_topic, p) for p in wanted]
            consumer.assign(tps)
            self.offsets.forget(set(range(self.settings.kafka_partitions)) - set(wanted))
            if tps:
                earliest = await consumer.beginning_offsets(tps)
                for tp in tps:
                    committed = await consumer.committed(tp)
                    start = earliest[tp] if committed is None else committed
                    self.offsets.start(tp.partition, start)
                    consumer.seek(tp, start)
                    self.processor.evaluator(tp.partition)  # built now, not on its first batch
            self._held_epoch = epoch
            logger.info("reading %s partitions %s", self.readings_topic, wanted)

    async def _admit(self, parts: Iterable[Part]) -> list[Part]:
        """Keep the records that are next in their partition; seek back over holes."""
        offsets = self.offsets
        taken: list[Part] = []
        holes: dict[int, int] = {}  # partition → the first offset seen after its hole
        for partition, records in parts:
            if partition not in offsets or not records:
                continue  # no longer held
            if offsets.admit_run(partition, records[0].offset, records[-1].offset, len(records)):
                taken.append((partition, records))  # the common case: exactly next, no hole
                continue
            kept: list[KafkaRecord] = []
            for record in records:
                verdict = offsets.admit(partition, record.offset)
                if verdict is Admission.TAKE:
                    kept.append(record)
                elif verdict is Admission.GAP:
                    holes.setdefault(partition, record.offset)
            if kept:
                taken.append((partition, kept))
        for partition, seen in holes.items():
            await self._heal(partition, seen)
        return taken

    async def _heal(self, partition: int, seen: int) -> None:
        """Seek a partition back to its first missing record, or pass a hole that is real."""
        missing = self.offsets.position(partition)
        hole = self._holes.get(partition)
        if hole is None or hole.missing != missing:
            hole = self._holes[partition] = Hole(missing, seen)
        hole.seen = min(hole.seen, seen)
        now = asyncio.get_running_loop().time()
        if now - hole.sought_at < SEEK_AGAIN_S:
            return  # a seek is under way; records fetched before it are still arriving
        tp = TopicPartition(self.readings_topic, partition)
        intake = self.intake
        if intake is None:
            return
        earliest = (await intake.beginning_offsets([tp]))[tp]
        if missing < earliest:
            why = "deleted by retention before any worker read them"
            await self._skip(partition, missing, earliest, why)
            return
        if hole.seeks:  # a seek back did not bring the record: is it in the log at all?
            first = await self._first_offset(tp, missing)
            if first is not None and first > missing:
                await self._skip(partition, missing, first, "not in the log")
                return
        hole.seeks += 1
        hole.sought_at = now
        self.offsets.gaps += 1
        logger.warning(
            "partition %d: offset %d arrived while %d is next; seeking back (%d)",
            partition,
            seen,
            missing,
            hole.seeks,
        )
        await self._seek(partition, missing)

    async def _first_offset(self, tp: TopicPartition, offset: int) -> int | None:
        """Return the first offset at or after ``offset`` in the log (None: none came)."""
        probe = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap.split(","),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await probe.start()
            probe.assign([tp])
            probe.seek(tp, offset)
            batch = await probe.getmany(tp, timeout_ms=5_000, max_records=1)
        finally:
            await probe.stop()
        records = batch.get(tp)
        return records[0].offset if records else None

    async def _recheck_holes(self) -> None:
        """Seek again for holes no record has arrived to heal (e.g. a partition at its end)."""
        async with self._lock:
            if self._stopping:
                return  # the next reader of the partition finds the hole again
            for partition, hole in list(self._holes.items()):
                if partition in self.offsets and self.offsets.position(partition) == hole.missing:
                    await self._heal(partition, hole.seen)
                else:
                    del self._holes[partition]  # healed, or revoked

    async def _skip(self, partition: int, missing: int, to: int, why: str) -> None:
        """Go on after records that cannot be read any more, with an alarm naming them."""
        del self._holes[partition]
        self.offsets.start(partition, to)
        await self._seek(partition, to)  # records from ``to`` on were dropped as beyond the hole
        detail = (
            f"{self.readings_topic} partition {partition}: offsets {missing}..{to - 1} "
            f"cannot be read ({to - missing} readings, {why})"
        )
        logger.error("%s", detail)
        await self.system_event(
            SystemEvent(
                event=SystemEventKind.READINGS_MISSING,
                component=COMPONENT,
                ts=self.clock(),
                alarm=True,
                detail=detail,
            )
        )

    async def _seek(self, partition: int, offset: int) -> None:
        if self.intake is not None:
            self.intake.seek(TopicPartition(self.readings_topic, partition), offset)

    async def _measure_lag(self) -> None:
        """Note how far each partition read here is behind its end (for the metrics only).

        Never fatal: with Kafka down the last values stay (the metrics say so otherwise).
        """
        intake = self.intake
        if intake is None:
            return
        tps = [tp for tp in intake.assignment() if tp.partition in self.offsets]
        try:
            async with asyncio.timeout(LAG_EVERY_S / 2):  # faust warns of overlapping runs
                ends = await intake.end_offsets(tps) if tps else {}
        except Exception:  # a measurement: the intake itself reports real trouble
            return
        self.lag = {
            tp.partition: max(0, ends[tp] - self.offsets.position(tp.partition))
            for tp in tps
            if tp in ends and tp.partition in self.offsets
        }

    async def _holes_timer(self) -> None:
        if self._holes:
            await self._fail_stop(self._recheck_holes())
