"""The stream worker on Kafka: a faust-streaming app running the evaluation core.

``envmon stream worker`` runs one ``StreamWorker``; workers with the same ``app_id`` share
the partitions of ``envmon.readings``. faust provides the group that spreads partitions,
the table of sensor states (``STATE_TABLE``) recovered from its changelog, the agent and
the timers. The intake (``stream.kafka.intake``) hands batches to the agent, which
evaluates them (``stream.kafka.batch``) and starts their effects (``stream.kafka.effects``).

Contract: outputs are durable before the state that produced them, the state and the
time-series points before the offsets; states are saved and offsets committed every
``checkpoint_interval_s``, when the intake is caught up, and when the worker stops. A
worker killed at any point repeats work (idempotent outputs and points) and loses none.
On a rebalance the assignment epoch moves on: what was not checkpointed is read again by
whoever holds the partition next. An error the worker cannot handle stops the process
(``on_fatal``) before the batch's offsets are committed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import faust
import orjson
from aiokafka import AIOKafkaConsumer
from faust.types import TableT

from envmon.bus import ALARMS, DEADLETTER, EXCURSIONS, READINGS
from envmon.models import SystemEvent
from envmon.sensors import SensorSpec
from envmon.settings import Settings
from envmon.timeseries import SeriesWriter
from envmon.timeutil import utcnow
from stream.kafka.batch import BatchResult, ReadingBatchProcessor, slices
from stream.kafka.effects import Effects, Stage, Uncommitted
from stream.kafka.intake import LAG_EVERY_S, SEEK_AGAIN_S, Batch, Hole, Intake
from stream.kafka.offsets import PartitionOffsets
from stream.kafka.producer import BatchProducer
from stream.kafka.topics import STATE_TABLE

logger = logging.getLogger(__name__)

EXIT_FATAL: Final = 70  # EX_SOFTWARE

#: Readings evaluated between two turns of the event loop (a few milliseconds of work).
EVALUATE_SLICE: Final = 500

#: How long a stopping worker waits for the batches in its pipeline to complete.
SHUTDOWN_DRAIN_S: Final = 10.0

#: gc.set_threshold of a worker (CPython's default: 700, 10, 10).
GC_THRESHOLD: Final = (50_000, 20, 10)

FatalHandler = Callable[[BaseException], None]


def tune_gc() -> None:
    """Set the garbage collector up for a long-running worker; call once it is built.

    Everything allocated at start (configuration, faust, the sensors' evaluators) is moved
    out of the collector's reach (``gc.freeze``), and the youngest generation is collected
    after GC_THRESHOLD allocations instead of 700: a batch in flight holds tens of
    thousands of readings, which CPython's defaults would scan again and again.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def exit_process(exc: BaseException) -> None:
    """Stop the worker process at once, before faust can acknowledge the failed batch."""
    logger.critical("stream worker stops: %r", exc, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_FATAL)


class StreamWorker(Intake, Effects):
    """The faust app of envmon's stream processor; its intake and effects are mixins."""

    def __init__(
        self,
        settings: Settings,
        specs: Sequence[SensorSpec],
        sink: SeriesWriter,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_fatal: FatalHandler = exit_process,
        site: str = "",
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.on_fatal = on_fatal
        self.batches = 0
        self.readings = 0
        self.rejected = 0
        self.stale_batches = 0  #: fetched before a rebalance, dropped unhandled
        #: ``time.perf_counter()`` when the intake first fetched readings (for benchmarks)
        self.first_fetch: float | None = None
        self.fatal: BaseException | None = None
        self.events: deque[SystemEvent] = deque(maxlen=1_000)  # what it said about itself
        self.offsets = PartitionOffsets()
        #: The consumer group that holds the readings' committed offsets (``stream.kafka.intake``).
        self.offsets_group = f"{settings.app_id}-readings"
        self.readings_topic = settings.topic(READINGS)
        self.intake: AIOKafkaConsumer | None = None
        self._behind = False
        self._fetched = 0  # readings the intake holds, not handed to the agent yet
        self._holes: dict[int, Hole] = {}  # partition → the hole being sought back
        self._epoch = 0  # +1 at every revocation and assignment
        self._wanted: set[int] = set()  # the partitions faust's last assignment gave
        self._held_epoch = -1  # the epoch the intake's assignment was made for
        self._stages: deque[Stage] = deque()  # the pipeline, oldest first
        self._pending = Uncommitted(self._epoch)  # since the last checkpoint
        self._checkpointed_at = time.monotonic()
        self.checkpoints = 0  #: checkpoints committed
        #: partition → readings in Kafka not yet evaluated here (every LAG_EVERY_S; metrics)
        self.lag: dict[int, int] = {}
        self.last_series_write: datetime | None = None  #: when a time-series write last ended
        self._stopping = False
        self._stopped_producing = False  # the producer is stopped for good (see _producing)
        self._busy = False  # the agent is handling a batch
        #: The worker's own producer (outputs and changelog records, as record batches),
        #: made and started on first use: aiokafka wants a running event loop.
        self.producer: BatchProducer | None = None
        self._producer_lock = asyncio.Lock()
        # One batch at a time, and never a tick inside a batch: a tick between a batch's
        # outputs and its saved state would evaluate the partition from a stale state.
        self._lock = asyncio.Lock()
        partitions = settings.kafka_partitions
        datadir = settings.data_dir / "faust"
        datadir.parent.mkdir(parents=True, exist_ok=True)
        self.app = app = faust.App(
            settings.app_id,
            broker=settings.faust_broker,
            store="memory://",  # rebuilt from the changelog on start; RocksDB is an option
            datadir=str(datadir),
            web_enabled=False,
            autodiscover=False,
            topic_partitions=partitions,
            topic_replication_factor=settings.kafka_replication,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            broker_session_timeout=settings.kafka_session_timeout_s,
            broker_heartbeat_interval=settings.kafka_session_timeout_s / 5,
        )
        # Outputs go through the worker's own producer (see _send): only their names are needed.
        self.topic_names = {
            name: settings.topic(name) for name in (READINGS, ALARMS, EXCURSIONS, DEADLETTER)
        }
        # Raw sensor-id keys; changes are written by _save to the partition of the sensor's
        # readings (murmur2, like the collectors' producers), so recovery finds them there.
        # faust's group assigns the table's changelog partitions; the worker reads the
        # readings partitions of the same numbers (``stream.kafka.intake``).
        self.table: TableT[bytes, Any] = app.Table(
            STATE_TABLE,
            default=None,
            partitions=partitions,
            key_type=bytes,  # faust then writes raw keys (and JSON values)
            use_partitioner=True,
        )
        self.processor = ReadingBatchProcessor(
            specs,
            partitions,
            self._stored_state,
            clock=clock,
            encode=sink.encode,
            encode_context=sink.encode_context,
            site=site,
        )
        self.batch_channel = app.channel(maxsize=1)
        app.agent(self.batch_channel, name="evaluate")(self._evaluate)
        app.task(self._intake)
        if settings.tick_s > 0:
            app.timer(settings.tick_s)(self._tick)
        app.timer(SEEK_AGAIN_S)(self._holes_timer)
        app.timer(LAG_EVERY_S)(self._measure_lag)
        if settings.checkpoint_interval_s > 0:
            app.timer(settings.checkpoint_interval_s / 4)(self._checkpoint_timer)
        app.on_partitions_revoked.connect(self._revoked)
        app.on_partitions_assigned.connect(self._assigned)
        app.on_before_shutdown.connect(self._shutdown)

    def _changelog_partitions(self, tps: object) -> set[int]:
        changelog = self.table.changelog_topic.get_topic_name()
        if not isinstance(tps, Iterable):
            return set()
        return {tp.partition for tp in tps if getattr(tp, "topic", None) == changelog}

    async def _revoked(self, _sender: object, /, *args: object, **_kwargs: object) -> None:
        """Stop reading revoked partitions; wait for the pipeline (faust awaits this)."""
        revoked = self._changelog_partitions(args[0] if args else ())
        self._next_epoch()  # batches in the pipeline save no state and commit nothing now
        self._wanted -= revoked
        async with self._lock:
            try:
                await self._drain()
            except Exception as exc:  # fatal already (on_fatal); the next reader repeats
                logger.warning("completing the batches before the rebalance failed: %r", exc)
            self.processor.forget(revoked)
            self.offsets.forget(revoked)
            for partition in revoked:
                self._holes.pop(partition, None)

    async def _shutdown(self, _sender: object, /, *_args: object, **_kwargs: object) -> None:
        """Complete the batches in the pipeline (within SHUTDOWN_DRAIN_S), then stop producing.

        faust sends ``on_before_shutdown`` once its consumer has stopped; what is not
        committed here is repeated by the next worker.
        """
        self._stopping = True
        async with self._lock:
            try:
                async with asyncio.timeout(SHUTDOWN_DRAIN_S):
                    if self._pending:
                        await self._push([], self._pending, checkpoint=True)
                    await self._drain()
            except Exception as exc:
                logger.warning("stopping with batches not completed (repeated later): %r", exc)
            for stage in self._stages:  # what is left is repeated by the next worker
                for pending in (stage.task, stage.series):
                    if pending is not None:
                        pending.cancel()
            self._stages.clear()
            self._next_epoch()
        async with self._producer_lock:  # not while one is being made
            self._stopped_producing = True
            producer, self.producer = self.producer, None
        if producer is not None:
            await producer.stop()

    async def _assigned(self, _sender: object, /, *args: object, **_kwargs: object) -> None:
        """Note the new assignment; the intake takes it up once recovery is complete."""
        actives = self.app.assignor.assigned_actives()
        self._wanted = self._changelog_partitions(actives)
        self._next_epoch()

    def _next_epoch(self) -> None:
        """Begin a new assignment epoch: what was not checkpointed is read again."""
        self._epoch += 1
        self._pending = Uncommitted(self._epoch)

    def _ready(self) -> bool:
        """No rebalance under way: faust has recovered the table for its assignment.

        faust sets ``rebalancing`` when partitions are revoked (first thing of every
        rebalance, also the first join) and clears it when recovery has completed.
        """
        return not self.app.rebalancing

    def _stored_state(self, sensor_id: str) -> Mapping[str, Any] | None:
        value = self.table.get(sensor_id.encode())
        if isinstance(value, bytes | str):
            value = orjson.loads(value)
        return value if isinstance(value, Mapping) else None

    async def _evaluate(self, stream: faust.StreamT[Any]) -> None:
        async for batch in stream:
            await self._fail_stop(self.handle(batch))

    async def handle(self, batch: Batch) -> None:
        """Evaluate one batch and start its effects (``stream.kafka.effects``).

        Returns once the batch is evaluated and its effects are under way, which may wait
        for an older batch to complete while PIPELINE_DEPTH are in flight.
        """
        self._busy = True
        try:
            await self._handle(batch)
        finally:
            self._busy = False

    async def _handle(self, batch: Batch) -> None:
        async with self._lock:
            if batch.epoch != self._epoch or self._stopping:
                self.stale_batches += 1  # fetched before a rebalance: fetched again after
                return
            await self._wait_while_store_down()
            taken = await self._admit(batch.parts)
            if not taken:
                return
            offsets = self.offsets
            pending = self._pending
            # In slices, letting the loop run between them: the pipeline's round trips (and
            # the time-series write) progress while the batch is evaluated, not after it.
            processor = self.processor
            result = BatchResult(points=pending.points, touched=pending.touched)
            for part in slices(taken, EVALUATE_SLICE):
                processor.evaluate(part, result, batch.fetched_at)
                await asyncio.sleep(0)
            if not batch.full and batch.fetched_at is not None:
                # Read up to its fetch: nothing waited then, so the clock may move there
                # (silence found under a steady load that leaves no room for a tick).
                result.outputs.extend(
                    processor.tick(batch.fetched_at, pending.touched, result.points)
                )
            for partition, _ in taken:
                pending.positions[partition] = offsets.position(partition)
            handled = sum(len(records) for _, records in taken)
            pending.readings += handled - result.rejected - result.proofs
            pending.rejected += result.rejected
            self.batches += 1
            await self._push(result.outputs, pending, checkpoint=self._checkpoint_due())

    async def _tick(self) -> None:
        if self._behind or not self.processor.evaluators:
            return  # catching up: the readings' arrivals drive the clock
        await self._fail_stop(self._advance())

    def _unevaluated(self) -> bool:
        """Tell whether readings were fetched that the agent has not evaluated yet.

        Asked under the lock: the agent is then between batches, or ``_busy`` with one
        it took from the channel and waits to evaluate.
        """
        return self._busy or bool(self._fetched) or not self.batch_channel.empty()

    async def _advance(self) -> None:
        async with self._lock:
            # Readings fetched but not evaluated (after a stall, say) may be the very ones a
            # tick would call missing; their batch moves the clock when it is evaluated.
            if self._stopping or self._unevaluated():
                return
            pending = self._pending
            before = len(pending.points)
            outputs = self.processor.tick(self.clock(), pending.touched, pending.points)
            if outputs or len(pending.points) > before:
                await self._push(outputs, pending, checkpoint=self._checkpoint_due())

    def _checkpoint_due(self) -> bool:
        """Tell whether checkpoint_interval_s has passed since the last checkpoint."""
        interval = self.settings.checkpoint_interval_s
        return interval <= 0 or time.monotonic() - self._checkpointed_at >= interval

    async def _checkpoint_timer(self) -> None:
        if self._pending and self._checkpoint_due():
            await self._fail_stop(self._checkpoint(idle=False))

    async def _checkpoint(self, *, idle: bool) -> None:
        """Checkpoint what is pending: when it is due, or when the intake found nothing new."""
        async with self._lock:
            pending = self._pending
            if self._stopping or not pending or pending.epoch != self._epoch:
                return
            if idle or self._checkpoint_due():
                await self._push([], pending, checkpoint=True)

    async def _fail_stop(self, work: Awaitable[None]) -> None:
        """Await ``work``; on any error stop the worker (``on_fatal``) before it commits."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fatal = exc
            self.on_fatal(exc)
            raise
