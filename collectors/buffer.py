"""The durable store-and-forward buffer between collectors and the bus (``Outbox``).

``put`` returns True only once the messages are committed to disk (SQLite, WAL,
``synchronous=FULL``), so a collector may acknowledge its source right after; when the
buffer is full or the disk refuses it returns False and raises ``buffer_full`` once (the
source keeps the data, or the loss is counted). ``forward`` publishes the oldest messages
in order, from an in-memory window or from disk, and deletes them once the bus has them;
refused publishes are retried with ``envmon.backoff``. Delivery is at least once.
``buffer_stalled`` is raised when the oldest waiting message is older than
``stall_alarm_after`` and ``buffer_flowing`` once it is not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Final

from envmon.backoff import Backoff, Retries
from envmon.bus import Bus, BusUnavailableError, Message
from envmon.models import SystemEvent, SystemEventKind
from envmon.sqlite import open_database
from envmon.timeutil import utcnow

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES: Final = 1_000_000
DEFAULT_BATCH: Final = 1_000
#: Messages kept in memory for the forwarder besides their rows on disk.
DEFAULT_MEMORY_WINDOW: Final = 20_000
#: Below this share of the bound after being full, the buffer reports itself healthy again.
RECOVERED_SHARE: Final = 0.9
#: Retries of a refused publish: no jitter (one forwarder per collector process).
_BACKOFF: Final = Backoff(initial_s=0.05, maximum_s=5.0, jitter=0.0)
#: Forwarded rows are deleted with the next put, or after this long without one (seconds).
IDLE_PURGE_S: Final = 0.5
#: Put times are remembered at most this often (seconds): the precision of ``oldest_age``.
_MARK_EVERY_S: Final = 1.0
#: Most put times remembered; beyond, every other one is dropped (coarser, still bounded).
_MAX_MARKS: Final = 4_096
#: How often ``forward`` checks for a stall (seconds; less if stall_alarm_after is short).
_STALL_CHECK_S: Final = 5.0
#: After a write failed for want of space, the filesystem has room again with this much free.
DISK_ROOM_BYTES: Final = 1 << 20
#: SQLite's primary result codes that mean "the disk cannot be written" (full, I/O error).
_WRITE_FAILED: Final = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})

EventHandler = Callable[[SystemEvent], None]


@dataclass
class BufferStats:
    """Counters of a buffer since it was opened."""

    accepted: int = 0
    refused: int = 0
    forwarded: int = 0
    publish_failures: int = 0
    full_events: int = 0
    write_failures: int = 0  # puts refused because the disk could not be written
    read_from_disk: int = 0  # messages the forwarder had to read back from disk


class Outbox:
    """A bounded, durable FIFO of bus messages with a forwarder to the bus.

    ``put`` is thread-safe (collectors call it from worker threads); ``forward`` runs in
    the event loop. Two locks: ``_db_lock`` serialises the SQLite connection (held across
    a commit), ``_state_lock`` guards the counters and the memory window and is only ever
    held for a few list operations, so the event loop never waits for a commit.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        memory_window: int = DEFAULT_MEMORY_WINDOW,
        name: str = "buffer",
        on_event: EventHandler | None = None,
        clock: Callable[[], datetime] = utcnow,
        stall_alarm_after: float | None = None,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if stall_alarm_after is not None and stall_alarm_after <= 0:
            raise ValueError("stall_alarm_after must be positive (or None: no alarm)")
        self.path = Path(path) if str(path) != ":memory:" else None
        self.max_messages = max_messages
        self.memory_window = max(0, memory_window)
        self.name = name
        self.stats = BufferStats()
        self._on_event = on_event
        self._clock = clock
        self._db_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._db = open_database(path, synchronous="FULL")  # a PUBACK follows each commit
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            "seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, key TEXT, "
            "value BLOB NOT NULL)"
        )
        # Where each source that cannot redeliver stands (an OPC-UA node's last reading),
        # committed with the messages it describes: a backfill resumes exactly there.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS positions (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        depth, last = self._db.execute("SELECT COUNT(*), MAX(seq) FROM outbox").fetchone()
        self._depth: int = int(depth)  # messages not yet on the bus
        # Sequence numbers only need to grow within a process and follow what is on disk.
        self._next_seq: int = int(last or 0) + 1
        self._forwarded_seq: int = 0  # every message up to here is on the bus
        self._deleted_seq: int = 0  # every row up to here is deleted on disk
        # The memory window: every message not yet forwarded, while ``_in_memory``.
        self._window: deque[tuple[int, Message]] = deque()
        self._in_memory = self._depth == 0
        self._full = False
        self._write_failed: str | None = None  # why the last write failed (disk full...)
        self._purge_failed = False
        self.stall_alarm_after = stall_alarm_after
        self._stalled = False
        # (first sequence number put at, time): the oldest unforwarded message was put at or
        # after the time of the last mark at or before it. Rows already on disk: from now.
        self._marks: deque[tuple[int, datetime]] = deque()
        self._mark_every = timedelta(seconds=_MARK_EVERY_S)
        if self._depth:
            self._marks.append((0, clock()))
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __len__(self) -> int:
        return self._depth

    @property
    def full(self) -> bool:
        """True while the buffer refuses new messages.

        After a failed write it turns False as soon as the filesystem has room again, so
        that a paused source tries once more (the next ``put`` says whether it works).
        """
        if self._write_failed is not None and self._disk_has_room():
            return self._depth + 1 > self.max_messages
        return self._full

    def _disk_has_room(self) -> bool:
        if self.path is None:
            return True
        try:
            stat = os.statvfs(self.path.parent)
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize >= DISK_ROOM_BYTES

    @property
    def stalled(self) -> bool:
        """True from a ``buffer_stalled`` alarm until its ``buffer_flowing``."""
        return self._stalled

    def oldest_age(self, now: datetime | None = None) -> float:
        """Return how long the oldest message not yet forwarded has waited (s; 0 if none)."""
        with self._state_lock:
            if self._depth == 0 or not self._marks:
                return 0.0
            oldest = self._forwarded_seq + 1
            marks = self._marks
            while len(marks) > 1 and marks[1][0] <= oldest:
                marks.popleft()
            since = marks[0][1]
        return max(0.0, ((now or self._clock()) - since).total_seconds())

    def check_stall(self, now: datetime | None = None) -> None:
        """Raise ``buffer_stalled`` or ``buffer_flowing`` if the oldest message's age says so."""
        limit = self.stall_alarm_after
        if limit is None:
            return
        age = self.oldest_age(now)
        if not self._stalled and age > limit:
            self._stalled = True
            self._emit(
                SystemEventKind.BUFFER_STALLED,
                f"the oldest of {self._depth:,} messages has waited {age:.0f} s "
                f"(stall_alarm_after {limit:g} s): the bus does not take them",
                alarm=True,
            )
        elif self._stalled and age <= limit:
            self._stalled = False
            self._emit(
                SystemEventKind.BUFFER_FLOWING,
                f"forwarding again: {self._depth:,} messages waiting, the oldest for {age:.0f} s",
                alarm=False,
            )

    def put(self, messages: Sequence[Message], positions: Mapping[str, str] | None = None) -> bool:
        """Store messages durably, in order; False (and an alarm) if they do not fit.

        ``positions`` (key → value) are saved in the same transaction (see ``positions``).
        """
        if not messages:
            return True
        n = len(messages)
        failure: str | None = None
        write_recovered = False
        with self._db_lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            with self._state_lock:
                depth, forwarded = self._depth, self._forwarded_seq
                refused = depth + n > self.max_messages
                first_refusal = refused and not self._full
                if refused:
                    self.stats.refused += n
                    self._full = True
                    self.stats.full_events += first_refusal
            if not refused:
                try:
                    self._insert(messages, forwarded, positions)
                except sqlite3.OperationalError as exc:
                    if _error_code(exc) not in _WRITE_FAILED:
                        raise
                    failure = str(exc)
                    with self._state_lock:
                        self.stats.refused += n
                        self.stats.write_failures += 1
                        first_refusal = self._write_failed is None
                        self._write_failed = failure
                        self._full = True
                        self.stats.full_events += first_refusal
                else:
                    if self._write_failed is not None:
                        with self._state_lock:
                            self._write_failed = None
                            self._full = self._depth > self.max_messages * RECOVERED_SHARE
                            write_recovered = not self._full
        # Events outside the locks: a handler may well touch the buffer.
        if failure is not None:
            if first_refusal:
                self._emit(
                    SystemEventKind.BUFFER_FULL,
                    f"{self.name} cannot write to its file: {failure}; refusing new messages "
                    "until the filesystem has room",
                    alarm=True,
                )
            return False
        if refused:
            if first_refusal:
                self._emit(
                    SystemEventKind.BUFFER_FULL,
                    f"{self.name} holds {depth:,} of {self.max_messages:,} messages; "
                    "refusing new ones until the bus takes them",
                    alarm=True,
                )
            return False
        if write_recovered:
            self._emit(
                SystemEventKind.BUFFER_OK, f"{self.name} can write to its file again", alarm=False
            )
        self._wake()
        return True

    def _insert(
        self,
        messages: Sequence[Message],
        forwarded: int,
        positions: Mapping[str, str] | None = None,
    ) -> None:
        """Commit messages (and delete forwarded rows) in one transaction; hold _db_lock."""
        n = len(messages)
        first = self._next_seq
        rows = [(first + i, m.topic, m.key, m.value) for i, m in enumerate(messages)]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if forwarded > self._deleted_seq:
                self._db.execute("DELETE FROM outbox WHERE seq <= ?", (forwarded,))
            self._db.executemany(
                "INSERT INTO outbox (seq, topic, key, value) VALUES (?, ?, ?, ?)", rows
            )
            if positions:
                self._db.executemany(
                    "INSERT OR REPLACE INTO positions (key, value) VALUES (?, ?)",
                    positions.items(),
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite rolls back by itself on some errors
                self._db.execute("ROLLBACK")
            raise
        self._deleted_seq = max(self._deleted_seq, forwarded)
        self._next_seq = first + n
        now = self._clock()
        with self._state_lock:
            self._depth += n
            self.stats.accepted += n
            self._mark(first, now)
            if self._in_memory:
                if len(self._window) + n <= self.memory_window:
                    self._window.extend(zip(range(first, first + n), messages, strict=True))
                else:  # more wait than the window holds: forward from disk for a while
                    self._in_memory = False
                    self._window.clear()

    def positions(self, prefix: str = "") -> dict[str, str]:
        """Return the saved positions whose key starts with ``prefix`` (see ``put``)."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT key, value FROM positions WHERE substr(key, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def peek(self, limit: int = DEFAULT_BATCH) -> list[tuple[int, Message]]:
        """Return up to ``limit`` of the oldest messages not yet forwarded, from disk."""
        with self._db_lock:
            if self._closed:
                return []
            with self._state_lock:
                after = self._forwarded_seq
            rows = self._db.execute(
                "SELECT seq, topic, key, value FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [(seq, Message(topic, key, bytes(value))) for seq, topic, key, value in rows]

    def ack(self, upto_seq: int, count: int) -> None:
        """Record that every message up to ``upto_seq`` reached the bus and delete them."""
        self._forwarded(upto_seq, count)
        self.purge()

    def purge(self) -> None:
        """Delete the rows of forwarded messages now (instead of with the next ``put``)."""
        with self._db_lock:
            if self._closed:
                return
            with self._state_lock:
                forwarded = self._forwarded_seq
            if forwarded > self._deleted_seq:
                try:
                    self._db.execute("DELETE FROM outbox WHERE seq <= ?", (forwarded,))
                except sqlite3.OperationalError as exc:
                    if _error_code(exc) not in _WRITE_FAILED:
                        raise
                    # A delete needs room in the journal too: the rows stay (they are on
                    # the bus already) and go with a later purge or put.
                    if not self._purge_failed:
                        self._purge_failed = True
                        logger.warning(
                            "%s: cannot delete forwarded rows yet (%s); retrying", self.name, exc
                        )
                    return
                if self._purge_failed:
                    self._purge_failed = False
                    logger.info("%s: deleting forwarded rows again", self.name)
                self._deleted_seq = forwarded

    async def forward(
        self, bus: Bus, *, batch: int = DEFAULT_BATCH, idle_purge_s: float = IDLE_PURGE_S
    ) -> None:
        """Publish buffered messages to ``bus`` in order, forever (cancel to stop).

        Forwarded rows are deleted with the next ``put``, or after ``idle_purge_s`` without
        one.
        """
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        monitor = None
        if self.stall_alarm_after is not None:
            monitor = asyncio.create_task(self._watch_stall(), name=f"{self.name}:stall")
        try:
            await self._forward(bus, batch, idle_purge_s)
        finally:
            if monitor is not None:
                monitor.cancel()

    async def _watch_stall(self) -> None:
        interval = min(_STALL_CHECK_S, (self.stall_alarm_after or _STALL_CHECK_S) / 4)
        while True:
            await asyncio.sleep(interval)
            self.check_stall()

    async def _forward(self, bus: Bus, batch: int, idle_purge_s: float) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        retries = Retries(_BACKOFF)  # counts the attempts failed in a row
        while True:
            from_disk = False
            with self._state_lock:
                if self._in_memory:
                    rows = list(islice(self._window, batch))
                else:
                    rows, from_disk = [], True
            if from_disk:
                rows = await asyncio.to_thread(self.peek, batch)
            if not rows:
                wakeup.clear()
                if self._depth == 0:
                    await self._idle(wakeup, idle_purge_s)
                continue
            try:
                await bus.publish([m for _, m in rows])
            except BusUnavailableError as exc:
                self.stats.publish_failures += 1
                backoff = retries.next()
                # The first failure of an outage is a warning, the retries are not (one
                # every few seconds for as long as it lasts), its end is one line.
                (logger.warning if retries.attempt == 1 else logger.debug)(
                    "%s: bus unavailable (%s); retrying every %.0f s at most, %d waiting",
                    self.name,
                    exc,
                    _BACKOFF.maximum_s,
                    self._depth,
                )
                await asyncio.sleep(backoff)
                continue
            if retries.attempt:
                logger.info(
                    "%s: the bus takes messages again after %d attempt(s)",
                    self.name,
                    retries.attempt,
                )
                retries.reset()
            if from_disk:
                self.stats.read_from_disk += len(rows)
                await asyncio.to_thread(self.ack, rows[-1][0], len(rows))
            else:
                self._forwarded(rows[-1][0], len(rows))
            if self._stalled:  # say it flows again as soon as it does
                self.check_stall()

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
        """Delete what was forwarded and close; what is still buffered stays for next time."""
        self.purge()
        with self._db_lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    # ------------------------------------------------------------------ internals

    def _mark(self, seq: int, now: datetime) -> None:
        """Remember when ``seq`` was put, if the last mark is old enough; hold _state_lock."""
        marks = self._marks
        if marks and now - marks[-1][1] < self._mark_every:
            return
        marks.append((seq, now))
        if len(marks) > _MAX_MARKS:  # a long outage: halve the precision, keep the bound
            kept = list(marks)[::2]
            marks.clear()
            marks.extend(kept)
            self._mark_every *= 2

    def _forwarded(self, upto_seq: int, count: int) -> None:
        """Advance the forwarded mark (the rows are deleted later, see the module doc)."""
        recovered = False
        with self._state_lock:
            if upto_seq <= self._forwarded_seq:
                return
            self._forwarded_seq = upto_seq
            window = self._window
            while window and window[0][0] <= upto_seq:
                window.popleft()
            self._depth -= count
            self.stats.forwarded += count
            if self._depth == 0:
                self._marks.clear()
                self._mark_every = timedelta(seconds=_MARK_EVERY_S)
            if self._depth == 0 and not self._in_memory:
                # Caught up after forwarding from disk: back on the memory path. Safe under
                # the state lock alone: a put updates the depth and the window under it too.
                self._in_memory = True
                window.clear()
            if (
                self._full
                and self._write_failed is None
                and self._depth <= self.max_messages * RECOVERED_SHARE
            ):
                self._full = False
                recovered = True
        if recovered:
            self._emit(
                SystemEventKind.BUFFER_OK, f"{self.name} accepts messages again", alarm=False
            )

    async def _idle(self, wakeup: asyncio.Event, idle_purge_s: float) -> None:
        """Wait for messages; if none come for a while, delete the forwarded rows."""
        if self._forwarded_seq > self._deleted_seq:
            try:
                async with asyncio.timeout(idle_purge_s):
                    await wakeup.wait()
                    return
            except TimeoutError:
                await asyncio.to_thread(self.purge)
            if self._depth:
                return
        await wakeup.wait()

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


def _error_code(exc: sqlite3.Error) -> int | None:
    """Return SQLite's primary result code of an error (None if unknown)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF
