"""The OPC-UA supervisor: one server's nodes into the buffer, surviving restarts and silences.

``OpcUaCollector`` owns its session's life cycle (no asyncua auto-reconnect): a lost
session is torn down and rebuilt with ``envmon.backoff`` and every subscription re-created;
a watchdog re-creates a subscription silent beyond ``watchdog.silence_timeout``.
Notifications become readings (``mapping``) and are group-committed to the buffer; what the
buffer refuses is held, up to ``max_pending``. A healthy subscription's nodes get a
``ProofOfLife`` when their value is unchanged for a third of ``stale_after`` (at most a
minute), and on a new session the gap since each node's last stored reading is read back
from the server's history when ``history.backfill`` is set. Events go to ``on_event``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

from asyncua import ua

from collectors.opcua.errors import OpcUaSetupError, describe
from collectors.opcua.mapping import (
    NodeBinding,
    build_bindings,
    data_timestamp,
    map_notification,
    quality_of,
    status_name,
    unknown_handle,
)
from collectors.opcua.security import identity
from collectors.opcua.wire import (
    ClientFactory,
    Session,
    Subscription,
    Wire,
    history_readable,
    new_client,
)
from collectors.pipeline import CollectorCounters, CollectorPipeline, RawPayload
from collectors.supervision import Clock, EventHandler, EventReporter, Sleep, reconnect_backoff
from envmon.backoff import Retries
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.models import ProofOfLife, Quality, Reading, SystemEventKind
from envmon.sensors import SensorSpec
from envmon.timeutil import US_PER_S, parse_ts, to_us, utcnow

logger = logging.getLogger(__name__)

#: Notifications arriving within this time are committed to the buffer together.
DEFAULT_COMMIT_DELAY_S: Final = 0.005
#: Above this many readings waiting for the buffer, the publish loop waits (back-pressure).
DEFAULT_MAX_PENDING: Final = 200_000
#: A node's value unchanged for this share of its sensor's ``stale_after`` gets a proof of
#: life at the next publish response of its (healthy) subscription: two may be late or
#: lost before the sensor would go stale.
PROOF_OF_LIFE_SHARE: Final = 1 / 3
#: ... and at least this often (s) for a sensor with a time delay or ``stale_after``: the
#: core reaches a delay on a held value only when a proof says it still holds, so this
#: bounds how late a report-by-exception value past its limit is alarmed.
PROOF_OF_LIFE_MAX_S: Final = 60.0
#: A subscription's nodes are looked over for proofs due at most this often (µs).
_PROOF_SWEEP_US: Final = US_PER_S
#: A server publish time or a node's source-to-server offset beyond this is not believed
#: when stamping a proof of life (a server clock far off, a device clock never set).
_MAX_PROOF_SKEW: Final = timedelta(days=1)
#: While the buffer refuses, held readings are offered again this often (s).
_HOLD_RETRY_S: Final = 1.0
_BAD_SUBSCRIPTION_GONE: Final = frozenset(
    {ua.StatusCodes.BadTimeout, ua.StatusCodes.BadSubscriptionIdInvalid}
)


class OpcUaCollector:
    """Reads one OPC-UA server's nodes into the buffer, surviving restarts and silences.

    ``start`` returns at once (the connection is made in the background, and retried);
    ``connected`` and ``wait_connected`` tell when it is up; ``stop`` closes the session
    and commits what is still pending. ``client_factory`` makes each session's client;
    ``sleep`` and ``rng`` serve the reconnect waits only (tests pass fakes).
    """

    def __init__(
        self,
        config: OpcUaCollectorConfig,
        site_specs: Mapping[str, SensorSpec] | Iterable[SensorSpec],
        pipeline: CollectorPipeline,
        *,
        clock: Clock = utcnow,
        on_event: EventHandler | None = None,
        commit_delay: float = DEFAULT_COMMIT_DELAY_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        client_factory: ClientFactory = new_client,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        specs = (
            site_specs
            if isinstance(site_specs, Mapping)
            else {spec.sensor_id: spec for spec in site_specs}
        )
        self.config = config
        self.pipeline = pipeline
        self.component = f"opcua:{config.id}"
        self.source = pipeline.source
        self._clock = clock
        self._emit = EventReporter(self.component, on_event, clock, logger)
        self._commit_delay = commit_delay
        self._max_pending = max_pending
        self._bindings = build_bindings(config, specs)
        self._by_handle = {b.handle: b for b in self._bindings}
        self._client_factory = client_factory
        self._sleep = sleep
        self._rng = rng
        self._backoff = reconnect_backoff(config.reconnect)
        self._wire = Wire(
            config,
            self._bindings,
            component=self.component,
            on_publish=self._on_publish,
            report=self._report,
        )
        self._pending: list[Reading] = []
        self._failures: list[RawPayload] = []
        self._alive: list[ProofOfLife] = []
        #: handle → proof-of-life period (µs), for nodes whose sensor can go stale
        self._proof_every = _proof_periods(self._bindings, specs, config)
        #: handle → collector clock (µs) of the last reading or proof put for the node
        self._evidence: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._closing = False
        self._ever_connected = False
        self._reported: set[tuple[str, str]] = set()
        self._refused_logged = 0.0
        self._held = False  # readings the buffer refused are held in _pending
        #: With history.backfill: sensor id → time of its last reading the buffer holds.
        self._positions: dict[str, datetime] = {}
        self._position_key = f"{self.component}/"
        if config.history.backfill:
            self._positions = _load_positions(pipeline, self._position_key)
        #: Why the last connection attempt failed or the last connection was lost.
        self.last_error: str | None = None

    # ------------------------------------------------------------------ public API

    @property
    def counters(self) -> CollectorCounters:
        """The collector's counters (shared with its pipeline)."""
        return self.pipeline.counters

    @property
    def connected(self) -> bool:
        """True while a session with subscriptions is up."""
        return self._connected.is_set()

    @property
    def subscription_count(self) -> int:
        """How many subscriptions the current (or last) session has."""
        return self._wire.subscription_count

    @property
    def bindings(self) -> list[NodeBinding]:
        """The configured nodes with their sensors, in configuration order."""
        return list(self._bindings)

    async def start(self) -> None:
        """Start connecting in the background; raise ``OpcUaSetupError`` for unusable settings."""
        if self._tasks:
            return
        identity(self.config, self.component)  # fail fast on a missing password variable
        self._stopping = False
        self._closing = False
        self._tasks = [
            asyncio.create_task(self._supervise(), name=f"{self.component}:supervisor"),
            asyncio.create_task(self._flush_loop(), name=f"{self.component}:commit"),
        ]

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the collector is connected and subscribed."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def stop(self) -> None:
        """Close the session, stop the tasks and commit what is pending."""
        self._stopping = True
        supervisor = self._tasks[0] if self._tasks else None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self._closing = True  # the commit task writes what is pending, then ends
        self._wake.set()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)
        self._tasks = []
        # A connect cancelled above closes its transport with call_soon: let that run now,
        # or a caller that closes its loop next leaves the socket to the garbage collector.
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        """Connect, subscribe, wait for a loss, tear down; again with back-off, until stopped."""
        retries = Retries(self._backoff, self._rng)
        down_reported = False
        while not self._stopping:
            session = Session(self._client_factory(self.config))
            try:
                await self._open(session)
            except asyncio.CancelledError:
                await self._wire.close(session)
                raise
            except Exception as exc:  # every failure to connect is retried
                self.last_error = describe(exc)
                await self._wire.close(session)
                setup = isinstance(exc, OpcUaSetupError)
                wait = retries.longest() if setup else retries.next()
                first = not down_reported
                if first:  # the event's own log line says it, once
                    down_reported = True
                    self._emit(
                        SystemEventKind.DISCONNECTED,
                        f"cannot connect to {self.config.endpoint}: {describe(exc)}; retrying",
                        alarm=True,
                    )
                if setup or not first:
                    (logger.error if setup else logger.warning)(
                        "%s: cannot connect to %s (%s); retrying in %.1f s",
                        self.component,
                        self.config.endpoint,
                        describe(exc),
                        wait,
                    )
                await self._sleep(wait)
                continue
            retries.reset()
            down_reported = True  # the disconnection below reports itself
            if self._ever_connected:
                self.counters.reconnects += 1
                self.counters.resubscriptions += len(session.subscriptions)
            self._ever_connected = True
            self._connected.set()
            self._emit(
                SystemEventKind.CONNECTED,
                f"connected to {self.config.endpoint}: {len(session.node_ids)} nodes in "
                f"{len(session.subscriptions)} subscription(s)",
            )
            watchdog = asyncio.create_task(self._watchdog(session))
            try:
                await session.lost.wait()
            finally:
                self._connected.clear()
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
                await self._wire.close(session)
            self.last_error = session.reason
            self._emit(
                SystemEventKind.DISCONNECTED,
                f"lost {self.config.endpoint}: {session.reason}; reconnecting",
                alarm=True,
            )
            await self._sleep(self._backoff.delay(1, self._rng))

    async def _open(self, session: Session) -> None:
        """Connect, resolve the nodes, create every subscription and fill the gap."""
        await self._wire.connect(session, identity(self.config, self.component))
        await self._wire.read_limits(session)
        await self._wire.resolve(session)
        if self._positions:
            session.holding = []  # live readings wait until the gap before them is filled
        await self._wire.subscribe(session, sorted(session.node_ids))
        if session.holding is not None:
            await self._backfill(session)

    async def _recreate(self, session: Session, sub: Subscription, why: str) -> None:
        """Replace a subscription that went silent or expired by a new one with the same items."""
        self._emit(
            SystemEventKind.SUBSCRIPTION_SILENT,
            f"subscription {sub.subscription_id} ({len(sub.handles)} items) {why}; re-creating it",
        )
        await self._wire.delete_subscription(session, sub)
        before = len(session.subscriptions)
        await self._wire.subscribe(session, sub.handles)
        created = len(session.subscriptions) - before
        self.counters.resubscriptions += created
        self._emit(
            SystemEventKind.RESUBSCRIBED,
            f"re-created {len(sub.handles)} monitored items in {created} subscription(s)",
        )

    async def _watchdog(self, session: Session) -> None:
        """Re-create any subscription silent for longer than the silence timeout."""
        timeout = self.config.watchdog.silence_timeout
        period = min(1.0, timeout / 4)
        while not session.lost.is_set():
            await asyncio.sleep(period)
            now = time.monotonic()
            overdue = [
                sub
                for sub in list(session.subscriptions.values())
                if sub.subscription_id in session.silent or now - sub.last_seen > timeout
            ]
            for sub in overdue:
                session.silent.discard(sub.subscription_id)
                why = (
                    "was dropped by the server"
                    if now - sub.last_seen <= timeout
                    else f"has been silent for {now - sub.last_seen:.0f} s"
                )
                try:
                    await self._recreate(session, sub, why)
                except Exception as exc:  # cannot re-create it: reconnect instead
                    session.lose(f"cannot re-create a silent subscription: {describe(exc)}")
                    return

    # ------------------------------------------------------------------ notifications

    async def _on_publish(self, session: Session, result: ua.PublishResult) -> None:
        """Handle one publish response (notifications or keep-alive) of a subscription."""
        sub = session.subscriptions.get(result.SubscriptionId)
        if sub is None:
            return  # a subscription deleted a moment ago
        sub.last_seen = time.monotonic()
        message = result.NotificationMessage
        data = message.NotificationData
        if not data:
            self._prove_alive(session, sub, message.PublishTime, self._clock())
            return
        received_at = self._clock()
        received_us = to_us(received_at)
        by_handle = self._by_handle
        pending = self._pending if session.holding is None else session.holding
        failures = self._failures
        latest, evidence = session.latest, self._evidence
        received = 0
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                for item in notification.MonitoredItems:
                    received += 1
                    handle = item.ClientHandle
                    binding = by_handle.get(handle)
                    if binding is None:
                        failures.append(unknown_handle(item, result.SubscriptionId))
                        continue
                    mapped = map_notification(binding, item.Value, received_at, self.source)
                    if isinstance(mapped, Reading):
                        pending.append(mapped)
                        latest[handle] = item.Value
                        evidence[handle] = received_us
                    else:
                        failures.append(mapped)
                        latest.pop(handle, None)  # no value to vouch for any more
            elif isinstance(notification, ua.StatusChangeNotification):
                self._status_change(session, sub, notification.Status.value)
        self.counters.received += received
        self._prove_alive(session, sub, message.PublishTime, received_at)
        self._wake.set()
        if len(pending) > self._max_pending:
            self._drained.clear()
            await self._drained.wait()

    def _prove_alive(
        self, session: Session, sub: Subscription, published: datetime | None, now: datetime
    ) -> None:
        """Queue proofs of life for the subscription's nodes that are due.

        A node is due when it reported a usable (not bad) value in this session and has no
        proof from this subscription yet, or its last reading or proof is older than its
        period. The proof carries the server's publish time, shifted by the node's
        source-to-server offset when it uses source timestamps (either beyond a day: ignored).
        """
        periods = self._proof_every
        now_us = to_us(now)
        if not periods or now_us < sub.next_sweep or session.holding is not None:
            return
        sub.next_sweep = now_us + _PROOF_SWEEP_US
        if session.lost.is_set() or sub.subscription_id in session.silent:
            return
        at = data_timestamp(published)
        if at is None or abs(at - now) > _MAX_PROOF_SKEW:
            at = now
        latest, evidence, by_handle = session.latest, self._evidence, self._by_handle
        proofs: list[ProofOfLife] = []
        for handle in sub.handles:
            period = periods.get(handle)
            value = latest.get(handle)
            if period is None or value is None:
                continue
            if handle in sub.proven and now_us - evidence.get(handle, 0) < period:
                continue
            status = value.StatusCode.value if value.StatusCode is not None else 0
            if quality_of(status) is Quality.BAD:
                continue
            binding = by_handle[handle]
            ts = at
            if binding.use_source_timestamp:
                source_ts = data_timestamp(value.SourceTimestamp)
                server_ts = data_timestamp(value.ServerTimestamp)
                if source_ts is not None and server_ts is not None:
                    skew = source_ts - server_ts
                    if abs(skew) <= _MAX_PROOF_SKEW:
                        ts = at + skew
            proofs.append(
                ProofOfLife(sensor_id=binding.sensor_id, ts=ts, received_at=now, source=self.source)
            )
            evidence[handle] = now_us
            sub.proven.add(handle)
        if proofs:
            self._alive.extend(proofs)
            self._wake.set()

    # ------------------------------------------------------------------ backfill

    async def _backfill(self, session: Session) -> None:
        """Read what each node reported since its last stored reading from the server's history.

        Runs on every new session while the live readings are held back (``holding``):
        the history from the node's position (at most ``history.max_age`` back) goes to
        the buffer first, then the held live readings newer than what the history gave
        (or than the position: a re-sent current value is not stored twice).
        """
        held = session.holding or []
        now = self._clock()
        horizon = now - timedelta(seconds=self.config.history.max_age)
        # Readings still waiting for the buffer (held while it refuses) count as had.
        filled: dict[str, datetime] = dict(self._positions)
        filled.update(self._advance(self._pending, filled))
        backfilled: list[Reading] = []
        failures: list[RawPayload] = []
        wanted = [
            (handle, node_id)
            for handle, node_id in sorted(session.node_ids.items())
            if self._by_handle[handle].sensor_id in self._positions
        ]
        access = await self._wire.read_access_levels(session, [n for _, n in wanted])
        for (handle, node_id), level in zip(wanted, access, strict=True):
            binding = self._by_handle[handle]
            since = filled[binding.sensor_id]
            if not history_readable(level):
                self._report(binding, "the server keeps no history of the node to fill a gap")
                continue
            try:
                values = await self._wire.read_history(session, node_id, max(since, horizon))
            except ua.UaStatusCodeError as exc:  # the server keeps no history of the node
                self._report(
                    binding,
                    f"cannot read the node's history to fill a gap ({status_name(exc.code)})",
                )
                continue
            last = since
            for value in values:
                mapped = map_notification(binding, value, now, self.source)
                if not isinstance(mapped, Reading):
                    failures.append(mapped)
                elif mapped.ts > last:
                    backfilled.append(mapped)
                    last = mapped.ts
            filled[binding.sensor_id] = last
        session.holding = None
        live = [r for r in held if r.sensor_id not in filled or r.ts > filled[r.sensor_id]]
        self._pending.extend(backfilled)
        self._pending.extend(live)
        self._failures.extend(failures)
        self.counters.backfilled += len(backfilled)
        if backfilled:
            logger.info(
                "%s: %d reading(s) read back from the server's history (the gap is filled)",
                self.component,
                len(backfilled),
            )
        self._wake.set()

    def _status_change(self, session: Session, sub: Subscription, status: int) -> None:
        name = status_name(status)
        if quality_of(status) is not Quality.BAD:
            return
        if status & 0xFFFF0000 in _BAD_SUBSCRIPTION_GONE:
            logger.warning(
                "%s: subscription %d ended on the server (%s)",
                self.component,
                sub.subscription_id,
                name,
            )
            session.silent.add(sub.subscription_id)
        else:
            session.lose(f"the server reported {name}")

    async def _flush_loop(self) -> None:
        """Commit pending readings a few milliseconds after they arrive; all of them at stop."""
        while not self._closing:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(self._commit_delay)
            self._wake.clear()
            await self._flush()
        await self._flush()

    async def _flush(self) -> None:
        readings, failures, alive = self._pending, self._failures, self._alive
        if not readings and not failures and not alive:
            self._drained.set()
            return
        self._pending, self._failures, self._alive = [], [], []
        self._drained.set()
        outbox = self.pipeline.outbox
        room = outbox.max_messages - len(outbox) - len(failures) - len(alive)
        if 0 < room < len(readings):  # what fits now; the rest right after (never refused whole)
            self._pending = readings[room:]
            readings = readings[:room]
            self._wake.set()
        positions = self._advance(readings) if self.config.history.backfill else {}
        stored = await asyncio.to_thread(
            self.pipeline.put,
            readings,
            failures,
            alive,
            {self._position_key + k: v.isoformat() for k, v in positions.items()},
        )
        if stored:
            self._positions.update(positions)
            if self._held:
                self._held = False
                logger.warning("%s: the buffer takes readings again", self.component)
            return
        # The buffer refuses (full, or its disk). OPC-UA cannot redeliver: keep them here, in
        # order, and try again; beyond max_pending the oldest are lost (counted as dropped).
        self._pending[:0] = readings
        self._failures[:0] = failures
        self._alive[:0] = alive
        excess = len(self._pending) - self._max_pending
        if self._closing:
            excess = len(self._pending)  # stopping: nothing will try again
        if excess > 0:
            del self._pending[:excess]
            self.counters.dropped += excess
        now = time.monotonic()
        if not self._held or now - self._refused_logged > 60:
            self._held = True
            self._refused_logged = now
            logger.error(
                "%s: the buffer refuses readings: %d held in memory until it takes them "
                "(at most %d; %d lost so far)",
                self.component,
                len(self._pending),
                self._max_pending,
                self.counters.dropped,
            )
        if not self._closing:
            asyncio.get_running_loop().call_later(_HOLD_RETRY_S, self._wake.set)

    def _advance(
        self, readings: Sequence[Reading], known: Mapping[str, datetime] | None = None
    ) -> dict[str, datetime]:
        """Return the sensors whose position these readings move forward, with the new one."""
        known = self._positions if known is None else known
        moved: dict[str, datetime] = {}
        for reading in readings:
            sensor = reading.sensor_id
            at = moved.get(sensor) or known.get(sensor)
            if at is None or reading.ts > at:
                moved[sensor] = reading.ts
        return moved

    # ------------------------------------------------------------------ reporting

    def _report(self, binding: NodeBinding, reason: str) -> None:
        """Dead-letter a node that cannot be read, once per node and reason."""
        key = (binding.address, reason)
        if key in self._reported:
            return
        self._reported.add(key)
        logger.warning("%s: %s: %s", self.component, binding.address, reason)
        raw = json.dumps({"sensor_id": binding.sensor_id, "node": binding.address}).encode()
        self._failures.append(RawPayload(binding.address, raw, reason))
        self._wake.set()


def _load_positions(pipeline: CollectorPipeline, prefix: str) -> dict[str, datetime]:
    """Return the positions a previous run left in the buffer's file (unreadable ones skipped)."""
    positions: dict[str, datetime] = {}
    for key, value in pipeline.outbox.positions(prefix).items():
        try:
            positions[key.removeprefix(prefix)] = parse_ts(value)
        except ValueError:  # not ISO 8601, no offset, out of range
            logger.warning("buffer: ignoring the unreadable position %r of %s", value, key)
    return positions


def _proof_periods(
    bindings: Sequence[NodeBinding], specs: Mapping[str, SensorSpec], config: OpcUaCollectorConfig
) -> dict[int, int]:
    """Return each node's proof-of-life period (µs); warn once if keep-alives are too sparse."""
    periods: dict[int, int] = {}
    keepalive_s = config.subscription.keepalive_period_s
    sparse: list[tuple[float, str]] = []
    for binding in bindings:
        rules = specs[binding.sensor_id].rules
        stale_after_s = rules.stale_after_s
        if not stale_after_s and not rules.delay_s:
            continue
        period_s = PROOF_OF_LIFE_MAX_S
        if stale_after_s:
            period_s = min(period_s, stale_after_s * PROOF_OF_LIFE_SHARE)
            if keepalive_s > stale_after_s * PROOF_OF_LIFE_SHARE:
                sparse.append((stale_after_s, binding.sensor_id))
        periods[binding.handle] = round(period_s * US_PER_S)
    if sparse:
        stale_after_s, sensor_id = min(sparse)
        logger.warning(
            "collectors.opcua[%s]: keep-alives every %g s are too sparse for %d sensor(s) "
            "(%s: stale_after %g s): a value that does not change may go stale; keep "
            "publishing_interval × keepalive_count under a third of stale_after",
            config.id,
            keepalive_s,
            len(sparse),
            sensor_id,
            stale_after_s,
        )
    return periods
