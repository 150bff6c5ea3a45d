"""The stream processor on Kafka: a faust-streaming app running the evaluation core.

``envmon stream worker`` runs one worker; several workers with the same ``app_id`` share
the partitions of ``envmon.readings``. Data flow of one worker::

    faust group (app_id): assigns the partitions of the table's changelog, recovers them
        │  the worker reads the readings partitions of the same numbers
        ▼
    intake (a faust task; aiokafka consumer, offsets in group "<app_id>-readings")
        │  batches of up to batch_max readings, one pending batch grown while the agent works
        ▼  in-memory channel
    agent "evaluate": ReadingBatchProcessor.evaluate ── per partition an Evaluator (replay's core)
        │  alarms → envmon.alarms, excursion records / data gaps → envmon.excursions,
        │  bad messages → envmon.deadletter: sent at once (acks from all ISRs awaited below);
        │  every reading → its line for the time-series store (the sink's ``encode``)
        ▼
    pipeline: stages completed in order while the agent evaluates the next batches (at
              most PIPELINE_DEPTH in flight). A stage starts when timeseries_batch_max
              lines are waiting (a time-series write) and at every checkpoint:
        1. the outputs sent since the previous stage acknowledged
        2. at a checkpoint: the state of every sensor evaluated since the previous one →
           faust table "sensor-state" (its changelog, the sensor's own partition), after
           the previous checkpoint's states, acknowledged
        3. the stage's readings stored (InfluxDB / SQLite), retried until stored
        4. at a checkpoint: the offsets after its last batch committed, in order

**Checkpoints.** States are saved and offsets committed every ``checkpoint_interval_s``
(1 s by default; 0: after every batch), as soon as the intake finds nothing new to read
(caught up: nothing to amortise), and when the worker stops. Between two checkpoints a
sensor's state goes to the changelog once, however many of its readings were evaluated,
and the time-series store receives writes of up to ``timeseries_batch_max`` lines instead
of one per batch: at 100,000 readings/s that is 1,000 changelog records a second instead of
one per reading, and a few large writes, which InfluxDB and QuestDB ingest at a fraction
of the per-line cost of small ones. What a killed worker had not checkpointed, the next
one reads again (at most ``checkpoint_interval_s`` of readings): the same alarms and
records (idempotent, see below) and the same points (stored once by series and time).

**Why this order.** Outputs are durable before the state that produced them, and the
state and the series before the offsets. A worker killed at any point therefore either
repeats work (the same alarms and records again — deterministic ids and revisions,
idempotent consumers) or finds a table already ahead of the committed offset, in which case
the core sees the repeated readings as duplicates (same sensor, not newer) and emits
nothing twice. Readings are written to the time-series store whatever the core's verdict,
so the store (idempotent by series and time) ends up with every reading exactly once.

**Why a pipeline.** Each stage waits for a few round trips (outputs and changelog
acknowledged by the brokers, the time-series write, the commit). Waiting for them before
evaluating the next batch left the worker's one core idle for a good part of every batch;
now the next batches are evaluated meanwhile, and only the order of the effects above is
kept. What waits in memory is bounded: the lines not yet written (fewer than
``timeseries_batch_max``) and PIPELINE_DEPTH stages of at most ``timeseries_batch_max`` +
``batch_max`` lines each. With the store down (a write failing and retried) the worker
takes no new batch until the pipeline has been stored.

**Why lines, not readings.** The sink encodes each reading as the agent evaluates it, and
the worker keeps the line (a ``str``) until it is written: a pydantic ``Reading`` kept for
that long survives the garbage collector's young generation, which then scanned tens of
thousands of them in every collection (~1.8 µs a reading, a fifth of the worker's CPU).

**Why an intake of its own.** faust hands an agent one event per Kafka record through its
consumer thread, conductor and stream: about 80 µs a record here, which capped a worker at
~6,000 readings/s; and it acknowledged (so committed) records its stream skipped across a
rebalance, which lost readings when a worker restarted with a backlog. faust still does
what it is good at — the group that spreads partitions over workers, the table and its
recovery from the changelog, the agent and its supervision — while the readings are
fetched in batches by an aiokafka consumer that reads exactly the partitions whose table
partitions faust made active here, and only after faust finished recovering them.

**Partitions and state.** Each partition has its own ``Evaluator`` over the sensors that
Kafka's default partitioner (murmur2 of the sensor id, as every producer uses) maps to it;
it is built from the table when the partition's first batch arrives and dropped when the
partition is revoked. The table uses the same partitioner on raw sensor-id keys, so its
changelog partition is the partition of the readings that changed it. A partition's
evaluator judges silence on the wall clock: each reading counts as heard when its batch
was fetched, and a sensor goes stale when nothing of it was fetched for ``stale_after``
(or when its own data show such a gap), so data that arrive behind the wall clock (a
backlog, a burst) are never read as silence. The clock moves only when the worker has
read what there was: after a batch that was not full (to its fetch time), and on a tick
(``tick_s``) while the worker is caught up and holds nothing fetched but unevaluated, so
a partition whose sensors all went silent still raises its communication-loss alarms
(docs/architecture.md, "Stale data").

**Rebalancing.** faust awaits the worker's revocation handler: it bumps the assignment
epoch (stages in the pipeline then save no state and commit nothing, what was evaluated
since the last checkpoint is dropped, and a batch fetched before is dropped unhandled),
waits for the pipeline to empty, and forgets the revoked partitions. After the next
assignment, once faust has recovered the table, the intake assigns itself the new
partitions and seeks each to its committed offset, so every reading not checkpointed is
read again, by whichever worker now holds its partition.

**Offsets** (see :mod:`stream.offsets`). A record is handled only if it is exactly the next
one of its partition; repeats are dropped; a hole makes the worker seek the partition back
to the first missing record (again every second while nothing heals it). A hole is real
only when its records are below the partition's earliest offset (deleted by retention
before any worker read them) or, after a seek did not heal it, a probe of the log finds
no record at the missing offset: the worker then moves on and raises a
``readings_missing`` alarm naming the partition and offsets. A record that is in the log
is never skipped.

**Failure.** An error the worker cannot handle stops the process at once (``on_fatal``,
``os._exit`` in a worker) before the batch's offsets are committed; the next worker
repeats it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

import faust
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.types import TableT
from pydantic import ValidationError

from envmon.bus import ALARMS, DEADLETTER, EXCURSIONS, READINGS, Message
from envmon.errors import EnvmonError
from envmon.models import (
    AlarmEvent,
    CoreEvent,
    DeadLetter,
    Level,
    Quality,
    Reading,
    SystemEvent,
    SystemEventKind,
    proof_of_life,
)
from envmon.sensors import SensorSpec
from envmon.settings import Settings
from envmon.timeutil import to_us, utcnow
from stream.core.evaluator import Evaluator, UnknownSensorError
from stream.core.state import SensorState
from stream.offsets import Admission, PartitionOffsets
from stream.producer import BatchProducer, Record, key_partition
from stream.timeseries import SqliteTimeSeries
from stream.tscontext import ContextPoint, ContextTrail

logger = logging.getLogger(__name__)

STATE_TABLE: Final = "sensor-state"


def changelog_topic(app_id: str) -> str:
    """Return the name faust gives the state table's changelog topic."""
    return f"{app_id}-{STATE_TABLE}-changelog"


COMPONENT: Final = "stream-worker"
EXIT_FATAL: Final = 70  # EX_SOFTWARE
#: How long the intake's fetch may wait at the broker for data (aiokafka's default is 500 ms).
FETCH_MAX_WAIT_MS: Final = 50
#: Most bytes one fetch brings per partition (aiokafka's default is 1 MiB).
MAX_PARTITION_FETCH_BYTES: Final = 4 * 1024 * 1024
#: A hole in a partition's offsets is sought back at most once per SEEK_AGAIN_S: records
#: fetched before a seek still arrive after it.
SEEK_AGAIN_S: Final = 1.0
#: While the agent is busy, the intake polls for more readings this often (milliseconds).
BUSY_POLL_MS: Final = 2
#: Stages (time-series writes and checkpoints) that may be under way at once (see the
#: pipeline above): the batches are evaluated while they complete, and what they hold in
#: memory is bounded by PIPELINE_DEPTH × ``timeseries_batch_max`` lines.
PIPELINE_DEPTH: Final = 4
#: Readings evaluated between two turns of the event loop (a few milliseconds of work).
EVALUATE_SLICE: Final = 500
#: How long a stopping worker waits for the batches in its pipeline to complete.
SHUTDOWN_DRAIN_S: Final = 10.0
#: How often the lag of the partitions read here is measured for the metrics (seconds).
LAG_EVERY_S: Final = 5.0
#: gc.set_threshold of a worker (CPython's default: 700, 10, 10).
GC_THRESHOLD: Final = (50_000, 20, 10)
_LEVELS: Final = (None, Level.ALERT, Level.ACTION)


class WorkerStoppedError(EnvmonError):
    """Something was to be sent after the worker stopped producing (it is repeated later)."""


@dataclass(slots=True)
class _Hole:
    """Records of a partition that did not arrive before later ones (see Offsets)."""

    missing: int  #: the first offset not handled yet
    seen: int  #: the lowest offset that arrived after it
    sought_at: float = -SEEK_AGAIN_S  #: loop time of the last seek back
    seeks: int = 0


#: What a time-series sink keeps of a reading until it is written (``TimeSeriesSink.encode``):
#: called with the reading, its source time in epoch µs and its channel's state code after
#: it was evaluated (``stream.tsschema``: 0 normal, 1 alert, 2 action).
Encode = Callable[[Reading, int, int], object]
#: What a sink keeps of a context point (``stream.tscontext``) until it is written.
EncodeContext = Callable[[ContextPoint], object]


class KafkaRecord(Protocol):
    """What the worker reads of a fetched record (aiokafka's ``ConsumerRecord``)."""

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""
        ...

    @property
    def key(self) -> bytes | None:
        """The record's key (the sensor id)."""
        ...

    @property
    def value(self) -> bytes | None:
        """The record's value (a ``Reading`` as JSON)."""
        ...


#: One partition's records of a batch, in offset order.
Part = tuple[int, Sequence[KafkaRecord]]


def partition_of(sensor_id: str, partitions: int) -> int:
    """Return the partition Kafka's default partitioner gives a sensor id key."""
    return key_partition(sensor_id.encode(), partitions)


def level_of(state: SensorState) -> Level | None:
    """Return the level of the channel's open excursion(s), if any."""
    return _LEVELS[state_level(state)]


def state_level(state: SensorState) -> int:
    """Return the channel's state code: the level of its open excursion(s), 0 if none."""
    high, low = state.high, state.low
    return max(high.level if high.open else 0, low.level if low.open else 0)


@dataclass
class BatchResult:
    """What evaluating readings produced (``ReadingBatchProcessor.evaluate`` adds to it)."""

    outputs: list[Message] = field(default_factory=list)  # alarms, records, dead letters
    points: list[Any] = field(default_factory=list)  # every reading, as the sink encodes it
    #: partition → sensor id → live state of every sensor evaluated (encoded at a checkpoint)
    touched: dict[int, dict[str, SensorState]] = field(default_factory=dict)
    rejected: int = 0
    proofs: int = 0  # proofs of life taken (records that were not readings)


class ReadingBatchProcessor:
    """Evaluates batches of reading messages per partition; knows nothing of Kafka's I/O.

    ``load_state`` returns a sensor's stored state (``SensorState.to_dict`` form) or None;
    ``encode`` turns each evaluated reading into what the time-series sink writes.
    """

    def __init__(
        self,
        specs: Iterable[SensorSpec],
        partitions: int,
        load_state: Callable[[str], Mapping[str, Any] | None],
        *,
        clock: Callable[[], datetime] = utcnow,
        encode: Encode,
        encode_context: EncodeContext | None = None,
        site: str = "",
    ) -> None:
        self.partitions = partitions
        self.encode = encode
        self.encode_context = encode_context
        specs = list(specs)
        #: The context series (limits, status, alarms, records) when the sink stores them.
        self.trail = ContextTrail(specs, site) if encode_context is not None else None
        self.specs: dict[int, list[SensorSpec]] = {p: [] for p in range(partitions)}
        for spec in specs:
            self.specs[partition_of(spec.sensor_id, partitions)].append(spec)
        self._load_state = load_state
        self._clock = clock
        self.evaluators: dict[int, Evaluator] = {}

    def evaluator(self, partition: int) -> Evaluator:
        """Return the partition's evaluator, built from the stored states when first used."""
        evaluator = self.evaluators.get(partition)
        if evaluator is None:
            specs = self.specs.get(partition, [])
            states: dict[str, SensorState] = {}
            for spec in specs:
                stored = self._load_state(spec.sensor_id)
                if stored is not None:
                    states[spec.sensor_id] = SensorState.from_dict(dict(stored))
            # Silence is judged on the wall clock; the sensors taken over count as heard
            # now: what of theirs waits unread in the partition is not silence.
            now = to_us(self._clock())
            evaluator = Evaluator(specs, states, now, heard_from=now)
            evaluator.hold = True  # readings move the clock only through tick (see evaluate)
            self.evaluators[partition] = evaluator
        return evaluator

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the evaluators of partitions this worker no longer holds."""
        for partition in partitions:
            self.evaluators.pop(partition, None)

    def evaluate(
        self, parts: Iterable[Part], result: BatchResult, at: datetime | None = None
    ) -> None:
        """Evaluate reading messages into ``result``; one batch may take several calls.

        The hot path of the worker: one pydantic decode, one step of the core and the
        sink's encoding per reading (a line of text for InfluxDB: the reading itself is
        freed at once, so the garbage collector does not scan thousands of readings
        waiting to be written); events are encoded only when there are some. ``at`` is
        when the records were fetched (default: now): they count as heard then, but the
        clock does not move (more may be waiting): ``tick`` moves it. A record that is a
        proof of life instead of a reading goes to the core as such.
        """
        points = result.points
        encode = self.encode
        outputs = result.outputs
        validate = Reading.model_validate_json
        bad = Quality.BAD
        now_us = to_us(self._clock() if at is None else at)
        trail = self.trail
        due = trail.due if trail is not None else {}
        for partition, records in parts:
            evaluator = self.evaluators.get(partition) or self.evaluator(partition)
            feed = evaluator.feed
            state_of = evaluator.state_of
            touched = result.touched.get(partition)
            if touched is None:
                touched = result.touched[partition] = {}
            for record in records:
                value = record.value
                try:
                    reading = validate(value)  # type: ignore[arg-type]  # None is refused
                except ValidationError as exc:  # a proof of life (rare), or a bad message
                    self._not_a_reading(evaluator, record, exc, now_us, partition, result)
                    continue
                sensor_id = reading.sensor_id
                ts_us = to_us(reading.ts)
                sample = reading.value
                good = sample is not None and reading.quality is not bad
                try:
                    events = feed(sensor_id, ts_us, sample, good, now_us)
                except UnknownSensorError:
                    reason = self._stray(sensor_id, partition, record.key)
                    self._reject(result, record.key, value or b"", reason, partition)
                    continue
                state = touched[sensor_id] = state_of(sensor_id)
                high, low = state.high, state.low
                if high.open or low.open:
                    points.append(encode(reading, ts_us, state_level(state)))
                else:
                    points.append(encode(reading, ts_us, 0))  # the common case: nothing open
                if trail is not None and ts_us >= due.get(sensor_id, 0):
                    self._context(trail.reading(sensor_id, ts_us), points)
                if events:
                    outputs.extend(encode_events(events))
                    if trail is not None:
                        self._context(trail.after_events(now_us, events, state_of), points)

    def _context(self, context: list[ContextPoint], points: list[Any]) -> None:
        """Add context points to what the sink writes (``stream.tscontext``)."""
        if context and self.encode_context is not None:
            points.extend(map(self.encode_context, context))

    def _not_a_reading(
        self,
        evaluator: Evaluator,
        record: KafkaRecord,
        error: ValidationError,
        now_us: int,
        partition: int,
        result: BatchResult,
    ) -> None:
        """Give the core a proof of life (evidence, never a sample), or dead-letter the record."""
        what = "reading"
        try:
            proof = proof_of_life(record.value)
        except ValidationError as exc:
            proof, error, what = None, exc, "proof of life"
        if proof is None:
            reason = f"invalid {what}: {error.errors(include_url=False)[0]['msg']}"
            self._reject(result, record.key, record.value or b"", reason, partition)
            return
        sensor_id = proof.sensor_id
        try:
            events = evaluator.alive(sensor_id, to_us(proof.ts), now_us)
        except UnknownSensorError:
            reason = self._stray(sensor_id, partition, record.key)
            self._reject(result, record.key, record.value or b"", reason, partition)
            return
        result.proofs += 1
        touched = result.touched.setdefault(partition, {})
        touched[sensor_id] = evaluator.state_of(sensor_id)  # its alive_ts is saved
        if events:
            result.outputs.extend(encode_events(events))
            if self.trail is not None:
                after = self.trail.after_events(now_us, events, evaluator.state_of)
                self._context(after, result.points)

    def tick(
        self,
        now: datetime,
        touched: dict[int, dict[str, SensorState]],
        points: list[Any] | None = None,
    ) -> list[Message]:
        """Advance every partition's clock to ``now``: stale-data alarms.

        Returns the alarms and records; the sensors they changed are added to ``touched``.
        The context points due (``stream.tscontext``: the events', and every channel's
        status once a minute of the clock) are added to ``points``.
        """
        outputs: list[Message] = []
        now_us = to_us(now)
        trail = self.trail if points is not None else None
        for partition, evaluator in self.evaluators.items():
            events = evaluator.advance(now_us)
            if not events:
                continue
            changed = touched.setdefault(partition, {})
            for event in events:
                changed[event.sensor_id] = evaluator.state_of(event.sensor_id)
            outputs.extend(encode_events(events))
            if trail is not None and points is not None:
                self._context(trail.after_events(now_us, events, evaluator.state_of), points)
        if trail is not None and points is not None:
            self._context(trail.sweep(now_us, self._every_state), points)
        return outputs

    def _every_state(self) -> Iterator[tuple[str, SensorState]]:
        """Every sensor of the partitions held, with its state."""
        for evaluator in self.evaluators.values():
            for sensor_id in evaluator.sensor_ids:
                yield sensor_id, evaluator.state_of(sensor_id)

    def _stray(self, sensor_id: str, partition: int, key: bytes | None) -> str:
        """Say why a reading for a sensor this partition does not hold was refused."""
        where = partition_of(sensor_id, self.partitions)
        if where == partition:
            return f"unknown sensor {sensor_id!r}"
        return (
            f"sensor {sensor_id!r} belongs to partition {where}, "
            f"came on {partition} (key {key!r}: not keyed by sensor id?)"
        )

    def _reject(
        self, result: BatchResult, key: bytes | None, value: bytes, reason: str, partition: int
    ) -> None:
        result.rejected += 1
        origin = f"{READINGS}[{partition}]"
        letter = DeadLetter.of(COMPONENT, origin, reason, value, self._clock())
        text_key = None if key is None else key.decode(errors="replace")
        result.outputs.append(Message(DEADLETTER, text_key, letter.model_dump_json().encode()))


def slices(parts: Iterable[Part], size: int) -> Iterator[list[Part]]:
    """Yield the parts' records in order, at most ``size`` records at a time."""
    for partition, records in parts:
        for start in range(0, len(records), size):
            yield [(partition, records[start : start + size])]


def encode_events(events: Iterable[CoreEvent]) -> list[Message]:
    """Encode core events as bus messages: alarms to ``ALARMS``, records to ``EXCURSIONS``."""
    return [
        Message(
            ALARMS if isinstance(event, AlarmEvent) else EXCURSIONS,
            event.sensor_id,
            event.model_dump_json().encode(),
        )
        for event in events
    ]


class TimeSeriesSink(Protocol):
    """Where the worker writes every reading; returns only once they are stored."""

    def encode(self, reading: Reading, ts_us: int, code: int) -> object:
        """Return what ``write`` needs of an evaluated reading (called as it is evaluated)."""
        ...

    @property
    def encode_context(self) -> EncodeContext | None:
        """What ``write`` needs of a context point, or None: the sink keeps no context."""
        ...

    async def start(self) -> None:
        """Get ready to write (connections), before the first readings arrive."""
        ...

    @property
    def unavailable(self) -> bool:
        """True while a write is failing and being retried (the store is down)."""
        ...

    async def write(self, points: Sequence[Any]) -> None:
        """Store the encoded readings (idempotently), retrying while the store is down."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class SqliteSink:
    """The embedded default: readings into ``SqliteTimeSeries``."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteTimeSeries(path)

    def encode(self, reading: Reading, ts_us: int, code: int) -> Reading:
        """Keep the reading (the table has its own columns)."""
        return reading

    @property
    def encode_context(self) -> EncodeContext:
        """Keep the context point as it is (``SqliteTimeSeries.write_context``)."""
        return _same

    async def start(self) -> None:
        """Nothing to prepare: the database is open."""

    @property
    def unavailable(self) -> bool:
        """A local file: never reported down (a failure is fatal)."""
        return False

    async def write(self, points: Sequence[Reading | ContextPoint]) -> None:
        """Store the readings and context points in a worker thread."""
        if points:
            await asyncio.to_thread(self.store.write_mixed, points)

    async def close(self) -> None:
        """Close the database."""
        self.store.close()


class NullSink:
    """No time-series store (``timeseries: none``)."""

    def encode(self, reading: Reading, ts_us: int, code: int) -> None:
        """Keep nothing."""

    @property
    def encode_context(self) -> None:
        """Keep no context either."""

    async def start(self) -> None:
        """Nothing to prepare."""

    @property
    def unavailable(self) -> bool:
        """Never down."""
        return False

    async def write(self, points: Sequence[None]) -> None:
        """Store nothing."""

    async def close(self) -> None:
        """Nothing to close."""


def _same(point: ContextPoint) -> ContextPoint:
    return point


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


@dataclass(eq=False)
class _Uncommitted:
    """What the batches since the last checkpoint changed (see Checkpoints), in one epoch."""

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
class _Stage:
    """The effects of one evaluated batch (or tick) still to be completed, in order."""

    epoch: int
    acks: list[asyncio.Future[Any]]  # of the outputs, sent already
    series: asyncio.Future[None] | None  # the time-series write, under way
    states: dict[int, dict[str, bytes]]  # partition → sensor id → new state
    positions: dict[int, int]  # partition → the offset after the checkpoint (to commit)
    readings: int = 0  # handled since the previous checkpoint (counted once committed)
    rejected: int = 0
    checkpoint: bool = False  # states saved and offsets committed (see Checkpoints)
    #: Done once this stage's states are queued (or skipped): the next stage's go after.
    states_queued: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    task: asyncio.Future[None] | None = None


class StreamWorker:
    """The faust app of envmon's stream processor (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        specs: Sequence[SensorSpec],
        sink: TimeSeriesSink,
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
        #: The consumer group that holds the readings' committed offsets (see Offsets).
        self.offsets_group = f"{settings.app_id}-readings"
        self.readings_topic = settings.topic(READINGS)
        self.intake: AIOKafkaConsumer | None = None
        self._behind = False
        self._fetched = 0  # readings the intake holds, not handed to the agent yet
        self._holes: dict[int, _Hole] = {}  # partition → the hole being sought back
        self._epoch = 0  # +1 at every revocation and assignment
        self._wanted: set[int] = set()  # the partitions faust's last assignment gave
        self._held_epoch = -1  # the epoch the intake's assignment was made for
        self._stages: deque[_Stage] = deque()  # the pipeline, oldest first
        self._pending = _Uncommitted(self._epoch)  # since the last checkpoint
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
        # readings partitions of the same numbers (see Intake).
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

    # -- assignment ------------------------------------------------------------------

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
        self._pending = _Uncommitted(self._epoch)

    def _ready(self) -> bool:
        """No rebalance under way: faust has recovered the table for its assignment.

        faust sets ``rebalancing`` when partitions are revoked (first thing of every
        rebalance, also the first join) and clears it when recovery has completed.
        """
        return not self.app.rebalancing

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

    def _stored_state(self, sensor_id: str) -> Mapping[str, Any] | None:
        value = self.table.get(sensor_id.encode())
        if isinstance(value, bytes | str):
            value = orjson.loads(value)
        return value if isinstance(value, Mapping) else None

    # -- the agent -------------------------------------------------------------------

    async def _evaluate(self, stream: faust.StreamT[Any]) -> None:
        async for batch in stream:
            await self._fail_stop(self.handle(batch))

    async def handle(self, batch: Batch) -> None:
        """Evaluate one batch and start its effects (see the pipeline above).

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

    # -- the pipeline ----------------------------------------------------------------

    async def _push(
        self, outputs: Sequence[Message], pending: _Uncommitted, *, checkpoint: bool
    ) -> None:
        """Start the effects of an evaluated batch; wait while PIPELINE_DEPTH are in flight.

        Called under the lock, so stages are pushed in evaluation order. The outputs are
        sent here, first (alarm latency). The readings evaluated since the last write go to
        the time-series store once there are ``timeseries_batch_max`` of them, and at a
        checkpoint, which also takes the sensors' states and the offsets to commit.
        """
        acks = await self._publish(outputs) if outputs else []
        stage = _Stage(
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
                self._pending = _Uncommitted(pending.epoch)
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

    async def _complete(self, stage: _Stage, previous: _Stage | None) -> None:
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

    # -- offsets ---------------------------------------------------------------------

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
            hole = self._holes[partition] = _Hole(missing, seen)
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

    async def _commit(self, positions: Mapping[int, int]) -> None:
        """Commit the position after a batch for each partition it had (offsets group)."""
        intake = self.intake
        if not positions or intake is None:
            return
        topic = self.readings_topic
        await intake.commit({TopicPartition(topic, p): offset for p, offset in positions.items()})

    # -- timers ----------------------------------------------------------------------

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
