"""What every collector hands its results to: readings and dead letters into the buffer.

Protocol adapters (MQTT, OPC-UA) turn their library's messages into ``Reading``s or, when
that fails, dead letters, and give both to a ``CollectorPipeline`` in one call, so that one
durable commit covers a whole batch and the source can be acknowledged after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from collectors.buffer import Outbox
from envmon.bus import ALARMS, DEADLETTER, READINGS, Message
from envmon.models import DeadLetter, ProofOfLife, Reading, SystemEvent
from envmon.timeutil import utcnow


@dataclass
class CollectorCounters:
    """Counters of one collector: what came in and what became of it."""

    received: int = 0  # protocol messages / data-change notifications seen
    readings: int = 0  # readings accepted into the buffer
    dead_lettered: int = 0  # payloads sent to the dead letter
    refused: int = 0  # readings the full buffer refused (alarmed; MQTT redelivers them)
    dropped: int = 0  # readings lost: refused for longer than they could be held (OPC-UA)
    reconnects: int = 0  # successful reconnections after a loss
    resubscriptions: int = 0  # subscriptions re-created (after a restart or a silence)
    proofs_of_life: int = 0  # proofs of life of unchanged sensors put into the buffer
    backfilled: int = 0  # readings read back from an OPC-UA server's history after a gap

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return asdict(self)


def event_message(event: SystemEvent) -> Message:
    """Return a collector's or buffer's event as its message on ``envmon.alarms``."""
    return Message(ALARMS, event.component, event.model_dump_json().encode())


@dataclass(frozen=True, slots=True)
class RawPayload:
    """A payload that failed, with where it came from and why (for the dead letter)."""

    origin: str
    raw: bytes
    reason: str


class CollectorPipeline:
    """Encodes readings and dead letters as bus messages and puts them in the buffer."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        source: str,
        counters: CollectorCounters | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.outbox = outbox
        self.source = source
        self.counters = counters or CollectorCounters()
        self.clock = clock

    def put(
        self,
        readings: Sequence[Reading],
        failures: Sequence[RawPayload] = (),
        alive: Sequence[ProofOfLife] = (),
        positions: Mapping[str, str] | None = None,
    ) -> bool:
        """Store readings, proofs of life and dead letters in one durable commit.

        ``positions`` go with them in the same commit (``Outbox.positions``).

        Returns False if the buffer is full. When it returns True the caller may
        acknowledge the source messages; when False nothing was stored and the caller must
        not acknowledge them. Proofs of life go where the readings go (``READINGS``, keyed
        by sensor id), after them.
        """
        now = self.clock()
        messages = [Message(READINGS, r.sensor_id, r.to_json()) for r in readings]
        messages += [Message(READINGS, p.sensor_id, p.model_dump_json().encode()) for p in alive]
        messages += [
            Message(
                DEADLETTER,
                f.origin,
                DeadLetter.of(self.source, f.origin, f.reason, f.raw, now)
                .model_dump_json()
                .encode(),
            )
            for f in failures
        ]
        if not self.outbox.put(messages, positions):
            self.counters.refused += len(readings)
            return False
        self.counters.readings += len(readings)
        self.counters.proofs_of_life += len(alive)
        self.counters.dead_lettered += len(failures)
        return True
