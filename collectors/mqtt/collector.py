"""The MQTT supervisor: one broker's bindings into the buffer, acknowledged once stored.

``MqttCollector`` subscribes at QoS 1 on a persistent session and acknowledges a message
only after its readings (or its dead letter) are committed through
``CollectorPipeline.put``, in groups. A refused commit acknowledges nothing, pauses, and
reconnects once the buffer has room so that the broker redelivers. Lost connections are
re-established with ``envmon.backoff`` and the subscriptions made again; a binding silent
beyond its ``expected_period`` is resubscribed, then reconnected. Delivery is at least once.
The connection is made by ``connection_factory`` (``MqttConnection`` unless a test injects
another ``Connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Final, Protocol

from collectors.mqtt.errors import MqttError
from collectors.mqtt.mapping import MessageDecoder
from collectors.mqtt.wire import InboundMessage, MqttConnection
from collectors.pipeline import CollectorCounters, CollectorPipeline, RawPayload
from collectors.supervision import Clock, EventHandler, EventReporter, Sleep, reconnect_backoff
from envmon.backoff import Retries
from envmon.config.mqtt import MqttCollectorConfig
from envmon.config.schema import SiteConfig
from envmon.models import Reading, SystemEventKind
from envmon.timeutil import utcnow

logger = logging.getLogger(__name__)

#: How often a paused collector looks whether the full buffer has room again (s).
DEFAULT_FULL_POLL_S: Final = 0.1
#: The watchdog looks at least this often (real seconds).
MAX_WATCHDOG_INTERVAL_S: Final = 5.0


class Connection(Protocol):
    """What the supervisor needs of one broker connection (``MqttConnection``)."""

    lost: asyncio.Future[str]  # completes, with the reason, when the connection ends

    @property
    def connected(self) -> bool:
        """True while the connection is up."""

    async def connect(self) -> bool:
        """Connect; return whether the broker had the session. Raises ``MqttError``."""

    async def subscribe(self, filters: Sequence[str], qos: int) -> None:
        """Subscribe to ``filters``. Raises ``MqttError``."""

    def ack_many(self, acks: Sequence[tuple[int, int]]) -> None:
        """Acknowledge ``(mid, qos)`` pairs in order."""

    def pause_reading(self) -> None:
        """Stop taking messages from the socket."""

    def resume_reading(self) -> None:
        """Take messages again."""

    async def disconnect(self) -> None:
        """Disconnect cleanly, keeping the session."""

    def close(self) -> None:
        """Drop the connection at once."""


class ConnectionFactory(Protocol):
    """Makes one ``Connection`` that hands every message to ``on_message`` (on the loop)."""

    def __call__(
        self,
        config: MqttCollectorConfig,
        on_message: Callable[[InboundMessage], None],
        *,
        connect_timeout: float,
    ) -> Connection:
        """Return a new, unconnected connection."""


@dataclass(slots=True)
class _Batch:
    """Messages decoded since the last commit, with what acknowledges them."""

    generation: int
    readings: list[Reading] = field(default_factory=list)
    failures: list[RawPayload] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (readings, dead letters)

    def split(self, room: int) -> tuple[_Batch, _Batch]:
        """Split into the longest run of whole messages that fits ``room`` and the rest."""
        used = readings = failures = count = 0
        for n_readings, n_failures in self.sizes:
            if used + n_readings + n_failures > room:
                break
            used += n_readings + n_failures
            readings += n_readings
            failures += n_failures
            count += 1
        head = _Batch(
            self.generation,
            self.readings[:readings],
            self.failures[:failures],
            self.acks[:count],
            self.sizes[:count],
        )
        tail = _Batch(
            self.generation,
            self.readings[readings:],
            self.failures[failures:],
            self.acks[count:],
            self.sizes[count:],
        )
        return head, tail


@dataclass(slots=True)
class BindingState:
    """Watchdog state of one binding."""

    topic: str
    expected_period: float | None
    last_seen: datetime | None = None
    silences: int = 0  # consecutive expected periods without a message
    alarmed: bool = False  # a silence alarm was raised and traffic has not returned yet


class MqttCollector:
    """Reads one broker's bindings into a ``CollectorPipeline`` (see the module docstring).

    ``sleep`` and ``rng`` serve the reconnect waits only (tests pass fakes).
    """

    def __init__(
        self,
        config: MqttCollectorConfig,
        site: SiteConfig,
        pipeline: CollectorPipeline,
        *,
        clock: Clock = utcnow,
        on_event: EventHandler | None = None,
        watchdog_interval: float | None = None,
        connect_timeout: float = 10.0,
        full_poll_interval: float = DEFAULT_FULL_POLL_S,
        connection_factory: ConnectionFactory = MqttConnection,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.component = f"mqtt:{config.id}"
        self.decoder = MessageDecoder(config, site, source=pipeline.source)
        self._clock = clock
        self._emit = EventReporter(self.component, on_event, clock, logger)
        self._watchdog_interval = watchdog_interval
        self._connect_timeout = connect_timeout
        self._full_poll = full_poll_interval
        self._connection_factory = connection_factory
        self._sleep = sleep
        self._rng = rng
        self._backoff = reconnect_backoff(config.reconnect)
        self.bindings = [
            BindingState(binding.topic, binding.expected_period) for binding in config.bindings
        ]
        self._filters = [binding.pattern.filter for binding in config.bindings]
        self._generation = 0
        self._batch = _Batch(0)
        self._conn: Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._ready = asyncio.Event()
        self._reconnect_reason: str | None = None
        self._paused = False
        self._stopping = False
        self._recovery: asyncio.Task[None] | None = None
        self._connected_once = False
        self._down_since: datetime | None = None

    @property
    def counters(self) -> CollectorCounters:
        """What came in and what became of it."""
        return self.pipeline.counters

    @property
    def connected(self) -> bool:
        """True while subscribed on a live connection."""
        return self._conn is not None and self._conn.connected and self._ready.is_set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start connecting (in the background: a broker that is down is retried)."""
        if self._tasks:
            return
        if not self.config.enabled:
            logger.info("%s is disabled", self.component)
            return
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._supervise(), name=f"{self.component}-supervisor"),
            loop.create_task(self._commit_loop(), name=f"{self.component}-commit"),
        ]
        interval = self._effective_watchdog_interval()
        if interval:
            self._tasks.append(
                loop.create_task(self._watchdog(interval), name=f"{self.component}-watchdog")
            )

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until connected and subscribed (raises ``TimeoutError``)."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def stop(self) -> None:
        """Commit and acknowledge what was received, disconnect (keeping the session)."""
        self._stopping = True
        if self._recovery is not None:
            self._recovery.cancel()
        await self._commit()
        conn = self._conn
        if conn is not None:
            await conn.disconnect()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ready.clear()

    # ------------------------------------------------------------------ connection

    async def _supervise(self) -> None:
        """Connect, subscribe, wait for the connection to end; repeat with back-off."""
        retries = Retries(self._backoff, self._rng)
        while not self._stopping:
            self._generation += 1
            generation = self._generation
            self._batch = _Batch(generation)
            # A resumed session redelivers what was not acknowledged right after the CONNACK,
            # before the SUBSCRIBE completes, in order: take it (a pause ends here).
            self._paused = False
            conn: Connection | None = None
            try:
                conn = self._connection_factory(
                    self.config,
                    partial(self._on_message, generation),
                    connect_timeout=self._connect_timeout,
                )
                session_present = await conn.connect()
                await conn.subscribe(self._filters, self.config.qos)
            except asyncio.CancelledError:
                if conn is not None:
                    conn.close()
                raise
            except Exception as exc:  # whatever it was: report it and retry, never stop
                if conn is not None:
                    conn.close()
                if not isinstance(exc, MqttError):
                    logger.exception("%s: unexpected error while connecting", self.component)
                self._went_down(f"cannot connect: {exc}")
                wait = retries.next()
                logger.warning("%s: %s; retrying in %.1f s", self.component, exc, wait)
                await self._sleep(wait)
                continue
            retries.reset()
            self._conn = conn
            self._came_up(session_present)
            reason = await conn.lost
            self._conn = None
            self._ready.clear()
            self._batch = _Batch(0)  # uncommitted messages are redelivered by the broker
            if self._stopping:
                break
            planned, self._reconnect_reason = self._reconnect_reason, None
            if planned is not None:
                logger.info("%s: reconnecting (%s)", self.component, planned)
                self._down_since = self._clock()
            else:
                self._went_down(f"connection lost: {reason}")
                await self._sleep(self._backoff.delay(1, self._rng))

    def _came_up(self, session_present: bool) -> None:
        now = self._clock()
        if self._connected_once:
            self.counters.reconnects += 1
            self.counters.resubscriptions += len(self._filters)
        for state in self.bindings:
            state.last_seen = now
            state.silences = 0
        detail = (
            f"connected to {self.config.host}:{self.config.effective_port} as "
            f"{self.config.effective_client_id} (session "
            f"{'resumed' if session_present else 'new'}), subscribed to "
            f"{', '.join(self._filters)}"
        )
        if self._down_since is not None or not self._connected_once:
            self._emit(SystemEventKind.CONNECTED, detail, alarm=False)
        self._connected_once = True
        self._down_since = None
        self._ready.set()

    def _went_down(self, detail: str) -> None:
        if self._down_since is None:
            self._down_since = self._clock()
            self._emit(SystemEventKind.DISCONNECTED, detail, alarm=True)

    async def reconnect(self, reason: str) -> None:
        """Close the connection on purpose; the supervisor connects again at once."""
        conn = self._conn
        if conn is None:
            return
        self._reconnect_reason = reason
        await conn.disconnect()

    # ------------------------------------------------------------------ messages

    def _on_message(self, generation: int, message: InboundMessage) -> None:
        """Decode one message into the current batch (runs on the loop, for every message)."""
        counters = self.counters
        counters.received += 1
        if self._paused or self._stopping or generation != self._generation:
            return  # not acknowledged: the broker redelivers it after the reconnect
        now = self._clock()
        decoded = self.decoder.decode(
            message.topic,
            message.payload,
            now,
            retain=message.retain,
            raw_topic=message.raw_topic,
        )
        if decoded.binding is not None:
            self.bindings[decoded.binding].last_seen = now
        batch = self._batch
        batch.readings.extend(decoded.readings)
        failure = decoded.failure
        if failure is not None:
            batch.failures.append(failure)
        batch.acks.append((message.mid, message.qos))
        batch.sizes.append((len(decoded.readings), 0 if failure is None else 1))
        size = len(batch.acks)
        if size >= self.config.commit.max_messages:
            self._wake.set()
        elif size == 1 and not self._commit_lock.locked():
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.config.commit.max_delay, self._wake.set)

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._commit()
            if self._batch.acks and not self._paused:
                # Messages arrived during the commit: under load they form the next group.
                self._wake.set()

    async def _commit(self) -> None:
        """Commit the current batch durably, then acknowledge its messages."""
        async with self._commit_lock:
            batch = self._batch
            if not batch.acks:
                return
            self._batch = _Batch(batch.generation)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            # Reading waits while the commit runs: sqlite releases the GIL for every row and
            # a busy loop thread would make it wait each time.
            conn = self._conn
            if conn is not None:
                conn.pause_reading()
            try:
                outbox = self.pipeline.outbox
                room = outbox.max_messages - len(outbox)
                parts = [batch]
                if len(batch.readings) + len(batch.failures) > room:
                    # Store what fits, then offer the rest: the buffer refuses it (and raises
                    # its alarm) unless the forwarder made room meanwhile. A batch larger than
                    # the free space is never refused whole, so the collector always advances.
                    parts = [part for part in batch.split(room) if part.acks]
                for part in parts:
                    stored = await asyncio.to_thread(
                        self.pipeline.put, part.readings, part.failures
                    )
                    if not stored:
                        self._refused(part)
                        return
                    self._acknowledge(part)
            finally:
                if conn is not None:
                    conn.resume_reading()

    def _acknowledge(self, batch: _Batch) -> None:
        """Acknowledge a stored batch on the connection that delivered it."""
        conn = self._conn
        if conn is None or batch.generation != self._generation or not conn.connected:
            return  # the connection that delivered them is gone: they will come again
        conn.ack_many(batch.acks)

    def _refused(self, batch: _Batch) -> None:
        """Acknowledge nothing of a refused batch; pause, and reconnect once there is room."""
        self._paused = True
        self._batch = _Batch(batch.generation)
        logger.error(
            "%s: buffer full; %d message(s) not acknowledged, the broker keeps them",
            self.component,
            len(batch.acks),
        )
        if self._recovery is not None:
            self._recovery.cancel()
        self._recovery = asyncio.get_running_loop().create_task(
            self._resume_when_room(batch.generation)
        )

    async def _resume_when_room(self, generation: int) -> None:
        outbox = self.pipeline.outbox
        while outbox.full:
            await asyncio.sleep(self._full_poll)
        # Paused until the next connection, so acknowledgements stay in order; if that
        # connection already came (the old one dropped), the broker has redelivered anyway.
        if generation == self._generation:
            await self.reconnect("buffer has room again: let the broker redeliver")

    # ------------------------------------------------------------------ watchdog

    def _effective_watchdog_interval(self) -> float:
        if self._watchdog_interval is not None:
            return self._watchdog_interval
        periods = [b.expected_period for b in self.bindings if b.expected_period]
        if not periods:
            return 0.0
        return min(min(periods) / 4, MAX_WATCHDOG_INTERVAL_S)

    async def _watchdog(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_subscriptions()
            except MqttError as exc:
                logger.warning("%s: watchdog recovery failed: %s", self.component, exc)

    async def check_subscriptions(self) -> list[str]:
        """Recover bindings silent for longer than their expected period; return their topics.

        The first silent period resubscribes the binding; a second one in a row reconnects.
        """
        conn = self._conn
        if conn is None or not self._ready.is_set() or self._paused:
            return []
        now = self._clock()
        silent: list[str] = []
        reconnect = False
        for index, state in enumerate(self.bindings):
            period, last = state.expected_period, state.last_seen
            if period is None or last is None:
                continue
            quiet = (now - last).total_seconds()
            if quiet < period:
                state.silences = 0
                if state.alarmed:
                    logger.info("%s: %s receives again", self.component, state.topic)
                    state.alarmed = False
                continue
            state.silences += 1
            state.last_seen = now  # give the recovery a whole period before escalating
            silent.append(state.topic)
            action = "resubscribing" if state.silences == 1 else "reconnecting"
            detail = (
                f"no message on {state.topic} for {quiet:.0f} s (expected every {period:g} s); "
                f"{action}"
            )
            if state.alarmed:
                logger.warning("%s: %s", self.component, detail)
            else:
                state.alarmed = True
                self._emit(SystemEventKind.SUBSCRIPTION_SILENT, detail, alarm=True)
            if state.silences == 1:
                await conn.subscribe([self._filters[index]], self.config.qos)
                self.counters.resubscriptions += 1
                self._emit(
                    SystemEventKind.RESUBSCRIBED,
                    f"resubscribed to {self._filters[index]}",
                    alarm=False,
                )
            else:
                reconnect = True
        if reconnect:
            await self.reconnect("a subscription stayed silent after resubscribing")
        return silent
