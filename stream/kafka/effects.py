"""The worker's effects pipeline: what an evaluated batch causes, completed in order.

Each stage, in order: the outputs sent since the previous stage acknowledged; at a
checkpoint, the states of the sensors evaluated since the previous one queued to the
table's changelog (after the previous stage's) and acknowledged; the stage's points
stored by the time-series writer; at a checkpoint, the offsets after its last batch
committed. At most ``PIPELINE_DEPTH`` stages are in flight while the next batches are
evaluated; with the store down no new batch is taken until the pipeline is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.types import TableT

from envmon.bus import ALARMS, DEADLETTER, Message
from envmon.errors import EnvmonError
from envmon.models import (
    DeadLetter,
    SystemEvent,
)
from envmon.settings import Settings
from envmon.timeseries import SeriesWriter
from stream.core.state import SensorState
from stream.kafka.producer import BatchProducer, Record

logger = logging.getLogger(__name__)

#: Stages (time-series writes and checkpoints) that may be under way at once (see the
#: module docstring): the batches are evaluated while they complete, and what they hold in
#: memory is bounded by PIPELINE_DEPTH × ``timeseries_batch_max`` lines.
PIPELINE_DEPTH: Final = 4


class WorkerStoppedError(EnvmonError):
    """Something was to be sent after the worker stopped producing (it is repeated later)."""


@dataclass(eq=False)
class Uncommitted:
    """What the batches since the last checkpoint changed, in one assignment epoch."""

    epoch: int
    #: partition → sensor id → live state of every sensor evaluated since the checkpoint
    touched: dict[int, dict[str, SensorState]] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)  # partition → offset after
    points: list[Any] = field(default_factory=list)  # encoded, not yet handed to the sink
    acks: list[asyncio.Future[Any]] = field(default_factory=list)  # of outputs sent since
    readings: int = 0
    rejected: int = 0

    def __bool__(self) -> bool:
        return bool(self.positions or self.touched or self.points)

    def states(self) -> dict[int, dict[str, bytes]]:
        """Encode the state of every touched sensor, once each."""
        return {
            partition: {sensor_id: state.to_json() for sensor_id, state in touched.items()}
            for partition, touched in self.touched.items()
            if touched
        }


@dataclass(eq=False)
class Stage:
    """The effects of one evaluated batch (or tick) still to be completed, in order."""

    epoch: int
    acks: list[asyncio.Future[Any]]  # of the outputs, sent already
    series: asyncio.Future[None] | None  # the time-series write, under way
    states: dict[int, dict[str, bytes]]  # partition → sensor id → new state
    positions: dict[int, int]  # partition → the offset after the checkpoint (to commit)
    readings: int = 0  # handled since the previous checkpoint (counted once committed)
    rejected: int = 0
    checkpoint: bool = False  # states saved and offsets committed (a checkpoint)
    #: Done once this stage's states are queued (or skipped): the next stage's go after.
    states_queued: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    task: asyncio.Future[None] | None = None


class Effects:
    """The effects half of ``stream.kafka.app.StreamWorker`` (a mixin: the worker owns state)."""

    settings: Settings
    clock: Callable[[], datetime]
    sink: SeriesWriter
    table: TableT[bytes, Any]
    topic_names: dict[str, str]
    readings_topic: str
    intake: AIOKafkaConsumer | None
    producer: BatchProducer | None
    events: deque[SystemEvent]
    readings: int
    rejected: int
    stale_batches: int
    checkpoints: int
    last_series_write: datetime | None
    _producer_lock: asyncio.Lock
    _stopped_producing: bool
    _stages: deque[Stage]
    _pending: Uncommitted
    _epoch: int
    _checkpointed_at: float

    if TYPE_CHECKING:  # the worker's (stream.kafka.app)

        async def _fail_stop(self, work: Awaitable[None]) -> None: ...

    async def _push(
        self, outputs: Sequence[Message], pending: Uncommitted, *, checkpoint: bool
    ) -> None:
        """Start the effects of an evaluated batch; wait while PIPELINE_DEPTH are in flight.

        Called under the lock, so stages are pushed in evaluation order. The outputs are
        sent here, first (alarm latency). The readings evaluated since the last write go to
        the time-series store once there are ``timeseries_batch_max`` of them, and at a
        checkpoint, which also takes the sensors' states and the offsets to commit.
        """
        acks = await self._publish(outputs) if outputs else []
        stage = Stage(
            epoch=pending.epoch, acks=pending.acks + acks, series=None, states={}, positions={}
        )
        pending.acks = []
        if pending is self._pending and pending.epoch == self._epoch:
            write = pending.points and (
                checkpoint or len(pending.points) >= self.settings.timeseries_batch_max
            )
            if not write and not checkpoint:
                pending.acks = stage.acks  # awaited by the next stage: no stage of its own
                return
            if write:
                stage.series = asyncio.ensure_future(self._write_series(pending.points))
                pending.points = []
            if checkpoint:
                stage.checkpoint = True
                stage.states = pending.states()
                stage.positions = pending.positions
                stage.readings, stage.rejected = pending.readings, pending.rejected
                self._pending = Uncommitted(pending.epoch)
                self._checkpointed_at = time.monotonic()
        stages = self._stages
        previous = stages[-1] if stages else None
        stage.task = asyncio.ensure_future(self._fail_stop(self._complete(stage, previous)))
        stages.append(stage)
        while stages and stages[0].task is not None and stages[0].task.done():
            await self._retire_oldest()  # raises what failed
        while len(stages) > PIPELINE_DEPTH:
            await self._retire_oldest()

    async def _retire_oldest(self) -> None:
        """Wait for the oldest stage to complete and drop it; raise what failed."""
        task = self._stages[0].task
        if task is not None:
            await task
        self._stages.popleft()

    async def _wait_while_store_down(self) -> None:
        """While the time-series store is down, take no readings: wait for the pipeline.

        The writes in the pipeline are retried until they are stored; until then the
        worker evaluates nothing new, so a store outage stops the intake at once instead
        of after PIPELINE_DEPTH more stages.
        """
        while self._stages and self.sink.unavailable:
            await self._retire_oldest()

    async def _write_series(self, points: list[Any]) -> None:
        """Hand the points to the sink in writes of at most timeseries_batch_max."""
        most = self.settings.timeseries_batch_max
        for start in range(0, len(points), most):
            await self.sink.write(points[start : start + most])
        self.last_series_write = self.clock()

    async def _complete(self, stage: Stage, previous: Stage | None) -> None:
        """Complete one stage: outputs acknowledged, state saved, series stored, commit."""
        state_acks: list[asyncio.Future[Any]] = []
        try:
            if stage.acks:
                await asyncio.gather(*stage.acks)
            if previous is not None:
                await previous.states_queued  # a sensor's states reach the changelog in order
            if stage.epoch == self._epoch and stage.states:
                state_acks = await self._save(stage.states)
        finally:
            if not stage.states_queued.done():
                stage.states_queued.set_result(None)
        if state_acks:
            await asyncio.gather(*state_acks)
        if stage.series is not None:
            await stage.series
        if previous is not None and previous.task is not None:
            await previous.task  # commits in order (and a failure before stops this one)
        if not stage.checkpoint:
            return
        if stage.epoch != self._epoch:
            # Revoked meanwhile: whoever reads these partitions next repeats the batch from
            # the committed offset with the state the table has.
            self.stale_batches += 1
            return
        await self._commit(stage.positions)
        self.checkpoints += 1
        self.readings += stage.readings
        self.rejected += stage.rejected

    async def _drain(self) -> None:
        """Wait until every stage in the pipeline is complete; raise what failed."""
        while self._stages:
            await self._retire_oldest()

    async def _commit(self, positions: Mapping[int, int]) -> None:
        """Commit the position after a batch for each partition it had (offsets group)."""
        intake = self.intake
        if not positions or intake is None:
            return
        topic = self.readings_topic
        await intake.commit({TopicPartition(topic, p): offset for p, offset in positions.items()})

    async def _producing(self) -> BatchProducer:
        """Return the worker's producer, made and started on first use.

        Not once the worker has stopped producing (the end of ``_shutdown``): a producer
        made then would never be stopped. What would have been sent is not committed, so
        the next worker repeats it.
        """
        if self.producer is None:
            async with self._producer_lock:
                if self.producer is None:
                    if self._stopped_producing:
                        raise WorkerStoppedError("the worker has stopped: nothing more is sent")
                    producer = BatchProducer(
                        self.settings.kafka_bootstrap, client_id=f"{self.settings.app_id}-out"
                    )
                    try:
                        await producer.start()
                    except BaseException:  # also cancelled: close what the start opened
                        await producer.stop()
                        raise
                    self.producer = producer
        return self.producer

    async def _publish(self, messages: Sequence[Message]) -> list[asyncio.Future[Any]]:
        """Queue messages to envmon's topics; return futures done once all ISRs have them."""
        producer = await self._producing()
        names = self.topic_names
        return await producer.send(
            Record(names[m.topic], None if m.key is None else m.key.encode(), m.value)
            for m in messages
        )

    async def _send(self, messages: Sequence[Message]) -> None:
        """Send and wait until every message is acknowledged by all in-sync replicas."""
        if messages:
            await asyncio.gather(*await self._publish(messages))

    async def _save(self, states: Mapping[int, Mapping[str, bytes]]) -> list[asyncio.Future[Any]]:
        """Queue new states to the table's changelog and store; return the acknowledgements.

        Not through ``table[key] = value``: that queues each change in faust's producer
        buffer, and faust's conductor then stalls every incoming message while the buffer
        holds more than 100 changes (up to 0.1 s each) — seconds of latency with a batch
        touching hundreds of sensors. Here the store is updated directly and the changelog
        records go, as one record batch per partition, to the partition of the sensor's
        readings (where they came from).
        """
        table = self.table
        data = table.data
        changelog = table.changelog_topic.get_topic_name()
        records: list[Record] = []
        for partition, by_sensor in states.items():
            for sensor_id, state in by_sensor.items():
                key = sensor_id.encode()
                data[key] = state
                records.append(Record(changelog, key, state, partition))
        producer = await self._producing()
        return await producer.send(records)

    async def system_event(self, event: SystemEvent) -> None:
        """Publish an event about the worker itself (e.g. the time-series store down)."""
        self.events.append(event)
        await self._send([Message(ALARMS, event.component, event.model_dump_json().encode())])

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Publish a dead letter (the time-series writer's refused points)."""
        await self._send([Message(DEADLETTER, letter.origin, letter.model_dump_json().encode())])
