"""The durable store-and-forward buffer between collectors and the bus.

Collectors put messages here; ``put`` returns only once they are committed to disk
(SQLite, WAL, ``synchronous=FULL``), so a collector may acknowledge its source (an MQTT
PUBACK) right after. A forwarder task publishes the oldest messages in order and deletes
them once the bus has them; while the bus is unavailable they stay on disk, also across a
restart. The buffer is bounded: when it is full ``put`` refuses (returns False) and a
``buffer_full`` alarm is raised once, so the source keeps the data (MQTT) or the loss is
counted and alarmed (OPC-UA) — never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from envmon.bus import Bus, BusUnavailableError, Message
from envmon.models import SystemEvent, SystemEventKind
from envmon.sqlite import open_database
from envmon.timeutil import utcnow

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES: Final = 1_000_000
DEFAULT_BATCH: Final = 1_000
#: Below this share of the bound after being full, the buffer reports itself healthy again.
RECOVERED_SHARE: Final = 0.9
_BACKOFF_MIN_S: Final = 0.05
_BACKOFF_MAX_S: Final = 5.0

EventHandler = Callable[[SystemEvent], None]


@dataclass
class BufferStats:
    """Counters of a buffer since it was opened."""

    accepted: int = 0
    refused: int = 0
    forwarded: int = 0
    publish_failures: int = 0
    full_events: int = 0


class Outbox:
    """A bounded, durable FIFO of bus messages with a forwarder to the bus.

    ``put`` is thread-safe (protocol libraries call it from their own threads); ``forward``
    runs in the event loop.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        name: str = "buffer",
        on_event: EventHandler | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.path = Path(path) if str(path) != ":memory:" else None
        self.max_messages = max_messages
        self.name = name
        self.stats = BufferStats()
        self._on_event = on_event
        self._clock = clock
        self._lock = threading.Lock()
        self._db = open_database(path, synchronous="FULL")  # a PUBACK follows each commit
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            "seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT, "
            "value BLOB NOT NULL)"
        )
        self._depth: int = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self._full = False
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __len__(self) -> int:
        return self._depth

    @property
    def full(self) -> bool:
        """True while the buffer refuses new messages."""
        return self._full

    def put(self, messages: Sequence[Message]) -> bool:
        """Store messages durably, in order; False (and an alarm) if they do not fit."""
        if not messages:
            return True
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            if self._depth + len(messages) > self.max_messages:
                self.stats.refused += len(messages)
                if not self._full:
                    self._full = True
                    self.stats.full_events += 1
                    self._emit(
                        SystemEventKind.BUFFER_FULL,
                        f"{self.name} holds {self._depth:,} of {self.max_messages:,} messages; "
                        "refusing new ones until the bus takes them",
                        alarm=True,
                    )
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox (topic, key, value) VALUES (?, ?, ?)",
                    [(m.topic, m.key, m.value) for m in messages],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += len(messages)
            self.stats.accepted += len(messages)
        self._wake()
        return True

    def peek(self, limit: int = DEFAULT_BATCH) -> list[tuple[int, Message]]:
        """Return up to ``limit`` of the oldest messages with their sequence numbers."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, value FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(seq, Message(topic, key, bytes(value))) for seq, topic, key, value in rows]

    def ack(self, upto_seq: int, count: int) -> None:
        """Delete every message up to ``upto_seq`` (they reached the bus)."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (upto_seq,))
            self._depth -= count
            self.stats.forwarded += count
            if self._full and self._depth <= self.max_messages * RECOVERED_SHARE:
                self._full = False
                self._emit(
                    SystemEventKind.BUFFER_OK, f"{self.name} accepts messages again", alarm=False
                )

    async def forward(self, bus: Bus, *, batch: int = DEFAULT_BATCH) -> None:
        """Publish buffered messages to ``bus`` in order, forever (cancel to stop)."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        backoff = _BACKOFF_MIN_S
        while True:
            rows = await asyncio.to_thread(self.peek, batch)
            if not rows:
                self._wakeup.clear()
                if self._depth == 0:
                    await self._wakeup.wait()
                continue
            try:
                await bus.publish([m for _, m in rows])
            except BusUnavailableError as exc:
                self.stats.publish_failures += 1
                logger.warning(
                    "%s: bus unavailable (%s); retrying in %.2f s", self.name, exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            backoff = _BACKOFF_MIN_S
            await asyncio.to_thread(self.ack, rows[-1][0], len(rows))

    async def drain(self, bus: Bus, *, timeout: float = 30.0) -> None:
        """Forward until empty (used at shutdown and in tests)."""
        task = asyncio.create_task(self.forward(bus))
        try:
            async with asyncio.timeout(timeout):
                while self._depth:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()

    def close(self) -> None:
        """Close the database; what is still buffered stays for the next start."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _wake(self) -> None:
        loop, event = self._loop, self._wakeup
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    def _emit(self, kind: SystemEventKind, detail: str, *, alarm: bool) -> None:
        log = logger.error if alarm else logger.info
        log("%s: %s", self.name, detail)
        if self._on_event is not None:
            self._on_event(
                SystemEvent(
                    event=kind, component=self.name, ts=self._clock(), alarm=alarm, detail=detail
                )
            )
