"""Evaluating a batch of reading records: the worker's hot path, with no Kafka I/O.

``ReadingBatchProcessor`` keeps one ``Evaluator`` per partition (built from the stored
sensor states when the partition's first batch arrives), decodes each record, steps the
core, encodes the reading for the time-series writer, and collects the alarms, records
and dead letters to publish. ``tick`` moves every partition's clock (stale data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import ValidationError

from envmon.bus import ALARMS, DEADLETTER, EXCURSIONS, READINGS, Message
from envmon.models import (
    AlarmEvent,
    CoreEvent,
    DeadLetter,
    Level,
    Quality,
    Reading,
    proof_of_life,
)
from envmon.sensors import SensorSpec
from envmon.timeseries import Encode, EncodeContext
from envmon.timeutil import to_us, utcnow
from stream.core.evaluator import Evaluator, UnknownSensorError
from stream.core.state import SensorState
from stream.kafka.producer import key_partition
from stream.timeseries.context import ContextPoint, ContextTrail

logger = logging.getLogger(__name__)

COMPONENT: Final = "stream-worker"

_LEVELS: Final = (None, Level.ALERT, Level.ACTION)


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

        The hot path of the worker: one pydantic decode, one ``Evaluator.feed`` and the
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
        """Add context points to what the sink writes (``stream.timeseries.context``)."""
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
        The context points due (``stream.timeseries.context``: the events', and every channel's
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
