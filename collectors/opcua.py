"""OPC-UA collector: an asyncua client whose data-change notifications become ``Reading``s.

One ``OpcUaCollector`` serves one server (``collectors.opcua[]`` of the site). It connects
with the configured security and identity, resolves every node (node ids, ``nsu=`` URIs
and browse paths, again on every connection since a restarted server may renumber its
namespaces), creates subscriptions of at most ``max_items_per_subscription`` monitored
items (fewer when the server advertises or enforces a lower cap) in batches of
``batch_size``, and maps each notification to a ``Reading``: the value converted to the
channel's unit, the source (or server) timestamp, the StatusCode's severity as the quality.
Notifications are group-committed: those arriving within a few milliseconds go to the
buffer in one durable write. What cannot be mapped (a non-numeric value, an unknown node)
goes to the dead letter with the node and the reason; the collector carries on.

The collector owns its connection's life cycle rather than relying on asyncua's
auto-reconnect: a lost connection (server restart, network break, failed health probe) is
torn down and rebuilt with exponential back-off, and every subscription is re-created on the
new session. A watchdog re-creates a subscription that stayed silent (no notification and no
keep-alive) for longer than ``watchdog.silence_timeout``. Reconnections and re-created
subscriptions are counted in ``CollectorCounters`` and reported as ``SystemEvent``s to
``on_event`` (the composition root publishes them on the alarms topic, once). asyncua's
objects never leave this module.

Servers report a node only when it changes, even with the StatusValueTimestamp trigger
(node-opcua does so; asyncua reports writes only). So that a steady value is not taken for
a lost sensor, the collector sends a ``ProofOfLife`` for each node of a healthy
subscription (one whose publish response or keep-alive just arrived) whose last reading
or proof is a third of its sensor's ``stale_after`` old (at most a minute: a value held
beyond a limit reaches its time delay on a proof), and one for each node when a
subscription starts: the value last reported still holds (docs/architecture.md).

Errors::

    OpcUaError
     └── OpcUaSetupError   settings that retrying cannot fix (a missing password variable,
                           an unreadable certificate): raised by ``start``
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from collectors.pipeline import CollectorCounters, CollectorPipeline, RawPayload
from envmon.config.opcua import (
    BrowseSegment,
    NodeConfig,
    OpcUaCollectorConfig,
    ResolvedNodeSettings,
    parse_browse_path,
    parse_node_id,
)
from envmon.errors import EnvmonError
from envmon.models import ProofOfLife, Quality, Reading, SystemEvent, SystemEventKind
from envmon.sensors import SensorSpec
from envmon.timeutil import (
    EARLIEST_TS,
    MAX_AHEAD,
    US_PER_S,
    TimestampRangeError,
    as_utc,
    implausible,
    parse_ts,
    to_us,
    utcnow,
)
from envmon.units import Conversion, UnitError, conversion

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
_CONNECT_TIMEOUT_FACTOR: Final = 3
#: While the buffer refuses, held readings are offered again this often (s).
_HOLD_RETRY_S: Final = 1.0
_MIN_DATETIME_YEAR: Final = 1602  # OPC-UA's "no timestamp" is 1601-01-01
_DEAD_LETTER_VALUE_CHARS: Final = 200
_BAD_SUBSCRIPTION_GONE: Final = frozenset(
    {ua.StatusCodes.BadTimeout, ua.StatusCodes.BadSubscriptionIdInvalid}
)
_POLICIES: Final[dict[str, type[security_policies.SecurityPolicy]]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_PY_NUMBERS: Final = (float, int, bool)  # what asyncua decodes numeric variants to
_NUMERIC_TYPES: Final = frozenset(
    {
        ua.VariantType.Boolean,
        ua.VariantType.SByte,
        ua.VariantType.Byte,
        ua.VariantType.Int16,
        ua.VariantType.UInt16,
        ua.VariantType.Int32,
        ua.VariantType.UInt32,
        ua.VariantType.Int64,
        ua.VariantType.UInt64,
        ua.VariantType.Float,
        ua.VariantType.Double,
    }
)


class OpcUaError(EnvmonError):
    """Base class of the OPC-UA collector's errors."""


class OpcUaSetupError(OpcUaError):
    """The connection's settings cannot be used as they are; retrying will not help."""


class _ConnectionLostError(OpcUaError):
    """The session is gone (internal: triggers a reconnect)."""


def quality_of(status: int) -> Quality:
    """Map an OPC-UA StatusCode to a quality by its severity bits (good/uncertain/bad)."""
    severity = (status >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def status_name(status: int) -> str:
    """Return the symbolic name of a StatusCode (info bits ignored), e.g. ``BadSensorFailure``."""
    name: str = ua.status_codes.get_name_and_doc(status & 0xFFFF0000)[0]
    return name


@dataclass(frozen=True, slots=True)
class NodeBinding:
    """What the collector knows about one bound node: its sensor, unit and settings."""

    handle: int
    sensor_id: str
    address: str
    unit: str
    conversion: Conversion
    settings: ResolvedNodeSettings
    node: NodeConfig

    @property
    def use_source_timestamp(self) -> bool:
        """True when the reading's time is the source timestamp (else the server's)."""
        return self.settings.timestamp == "source"


class _UnmappableError(Exception):
    """A notification value that cannot become a reading (internal)."""


def _number(variant: ua.Variant | None) -> float | None:
    """Return a variant's value as a float, None for an empty variant; raise if not numeric."""
    if variant is None or variant.VariantType == ua.VariantType.Null or variant.Value is None:
        return None
    if variant.is_array or variant.VariantType not in _NUMERIC_TYPES:
        kind = "array of " if variant.is_array else ""
        raise _UnmappableError(
            f"value is not numeric ({kind}{variant.VariantType.name}: {_short(variant.Value)})"
        )
    raw = variant.Value
    try:
        if type(raw) not in _PY_NUMBERS and not isinstance(raw, int | float):
            raise TypeError(raw)  # a variant built by hand rather than decoded
        value = float(raw)  # OverflowError: an int beyond any Double (hand-built too)
    except (TypeError, OverflowError):
        raise _UnmappableError(
            f"value is not a number ({variant.VariantType.name}: {_short(raw)})"
        ) from None
    if not math.isfinite(value):
        raise _UnmappableError(f"value is not finite ({value})")
    return value


def _short(value: object) -> str:
    text = repr(value)
    if len(text) > _DEAD_LETTER_VALUE_CHARS:
        return text[: _DEAD_LETTER_VALUE_CHARS - 1] + "…"
    return text


def _timestamp(dt: datetime | None) -> datetime | None:
    """Return a DataValue timestamp in UTC, None for OPC-UA's "no time".

    Raises ``TimestampRangeError`` for an aware time that UTC cannot hold.
    """
    if dt is None or dt.year < _MIN_DATETIME_YEAR:
        return None
    tz = dt.tzinfo
    if tz is UTC:  # as asyncua decodes them
        return dt
    return dt.replace(tzinfo=UTC) if tz is None else as_utc(dt)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def map_notification(
    binding: NodeBinding, data: ua.DataValue, received_at: datetime, source: str
) -> Reading | RawPayload:
    """Turn one monitored item's ``DataValue`` into a ``Reading``, or a dead letter if it can't be.

    A bad StatusCode gives a bad reading (the value kept when numeric and finite in the
    channel's unit, dropped when not); an empty value with a good status and a non-numeric
    value with a usable status are dead letters, and so is a value with a usable status that
    overflows once converted. The time is the chosen timestamp, else the other one, else
    ``received_at``; a time before 2000 or over a day ahead of ``received_at`` is a dead
    letter, as on MQTT.
    """
    status = data.StatusCode.value if data.StatusCode is not None else 0
    quality = quality_of(status)
    try:
        value = _number(data.Value)
        if value is None and quality is not Quality.BAD:
            raise _UnmappableError(f"no value with status {status_name(status)}")
        if value is not None:
            converted = binding.conversion(value)
            # A finite Double can overflow on the way (1e308 particles/ft3 in /m3): an inf
            # would travel as "no value" with a good status and be judged as nothing.
            if not math.isfinite(converted):
                raise _UnmappableError(f"value {value!r} is out of range in {binding.unit}")
            value = converted
    except _UnmappableError as exc:
        if quality is not Quality.BAD:
            return _dead_letter(binding, data, str(exc))
        value = None
    try:
        source_ts = _timestamp(data.SourceTimestamp)
        server_ts = _timestamp(data.ServerTimestamp)
    except TimestampRangeError as exc:
        return _dead_letter(binding, data, str(exc))
    if binding.use_source_timestamp:
        ts = source_ts or server_ts or received_at
    else:
        ts = server_ts or source_ts or received_at
    if ts is not received_at and (ts < EARLIEST_TS or ts - received_at > MAX_AHEAD):
        which = "source" if ts is source_ts else "server"
        why = implausible(ts, received_at)  # the same test, worded
        return _dead_letter(binding, data, f"the {which} timestamp {why}")
    # Readings are built without re-validation: the sensor id was validated with the site,
    # the value is a finite float and the timestamps are aware UTC datetimes (see above).
    return Reading.trusted(
        sensor_id=binding.sensor_id,
        value=value,
        unit=binding.unit,
        ts=ts,
        received_at=received_at,
        quality=quality,
        source=source,
    )


def _dead_letter(binding: NodeBinding, data: ua.DataValue, reason: str) -> RawPayload:
    status = data.StatusCode.value if data.StatusCode is not None else 0
    variant = data.Value
    raw = {
        "sensor_id": binding.sensor_id,
        "node": binding.address,
        "status": status_name(status),
        "variant_type": variant.VariantType.name if variant is not None else None,
        "value": _short(variant.Value) if variant is not None else None,
        "source_timestamp": _iso(data.SourceTimestamp),
        "server_timestamp": _iso(data.ServerTimestamp),
    }
    return RawPayload(binding.address, json.dumps(raw).encode(), reason)


def build_bindings(
    config: OpcUaCollectorConfig, specs: Mapping[str, SensorSpec]
) -> list[NodeBinding]:
    """Bind each configured node to its sensor; raise ``OpcUaSetupError`` for what cannot be."""
    bindings: list[NodeBinding] = []
    for index, node in enumerate(config.nodes):
        spec = specs.get(node.sensor_id)
        where = f"collectors.opcua[{config.id}].nodes[{index}]"
        if spec is None:
            raise OpcUaSetupError(f"{where}: no sensor {node.sensor_id!r} in the site")
        try:
            to_channel = conversion(node.unit or spec.unit, spec.unit)
        except UnitError as exc:
            raise OpcUaSetupError(f"{where}: {exc}") from None
        bindings.append(
            NodeBinding(
                handle=index + 1,
                sensor_id=node.sensor_id,
                address=node.address,
                unit=spec.unit,
                conversion=to_channel,
                settings=config.settings(node),
                node=node,
            )
        )
    return bindings


@dataclass(slots=True)
class _Subscription:
    """One server subscription and the bindings monitored in it (internal)."""

    subscription_id: int
    handles: list[int]
    last_seen: float
    created: int = 0
    proven: set[int] = field(default_factory=set)  # handles with a proof of life from it
    next_sweep: int = 0  # collector clock (µs): when to look for proofs due again


@dataclass(slots=True)
class _Session:
    """Everything that lives as long as one connection (internal)."""

    client: Client
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    subscriptions: dict[int, _Subscription] = field(default_factory=dict)
    node_ids: dict[int, ua.NodeId] = field(default_factory=dict)
    items_per_subscription: int = 0
    batch_size: int = 0
    silent: set[int] = field(default_factory=set)
    #: The latest value each node reported in this session (what a proof of life vouches for).
    latest: dict[int, ua.DataValue] = field(default_factory=dict)
    #: While the gap is filled from the server's history: the live readings, held back.
    holding: list[Reading] | None = None

    def lose(self, reason: str) -> None:
        """Mark the connection as lost (first reason wins)."""
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()


class OpcUaCollector:
    """Reads one OPC-UA server's nodes into the buffer, surviving restarts and silences.

    ``start`` returns at once (the connection is made in the background, and retried);
    ``connected`` and ``wait_connected`` tell when it is up; ``stop`` closes the session
    and commits what is still pending.
    """

    def __init__(
        self,
        config: OpcUaCollectorConfig,
        site_specs: Mapping[str, SensorSpec] | Iterable[SensorSpec],
        pipeline: CollectorPipeline,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_event: Callable[[SystemEvent], None] | None = None,
        commit_delay: float = DEFAULT_COMMIT_DELAY_S,
        max_pending: int = DEFAULT_MAX_PENDING,
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
        self._on_event = on_event
        self._commit_delay = commit_delay
        self._max_pending = max_pending
        self._bindings = build_bindings(config, specs)
        self._by_handle = {b.handle: b for b in self._bindings}
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
        self.subscription_count = 0
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
    def bindings(self) -> list[NodeBinding]:
        """The configured nodes with their sensors, in configuration order."""
        return list(self._bindings)

    async def start(self) -> None:
        """Start connecting in the background; raise ``OpcUaSetupError`` for unusable settings."""
        if self._tasks:
            return
        self._identity()  # fail fast on a missing password variable
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
        backoff = self.config.reconnect.initial
        down_reported = False
        while not self._stopping:
            session = _Session(self._new_client())
            try:
                await self._open(session)
            except asyncio.CancelledError:
                await self._close(session)
                raise
            except Exception as exc:  # every failure to connect is retried
                self.last_error = _describe(exc)
                await self._close(session)
                setup = isinstance(exc, OpcUaSetupError)
                if setup:
                    backoff = self.config.reconnect.maximum
                first = not down_reported
                if first:  # the event's own log line says it, once
                    down_reported = True
                    self._emit(
                        SystemEventKind.DISCONNECTED,
                        f"cannot connect to {self.config.endpoint}: {_describe(exc)}; retrying",
                        alarm=True,
                    )
                if setup or not first:
                    (logger.error if setup else logger.warning)(
                        "%s: cannot connect to %s (%s); retrying in %.1f s",
                        self.component,
                        self.config.endpoint,
                        _describe(exc),
                        backoff,
                    )
                await asyncio.sleep(backoff * random.uniform(0.8, 1.0))  # noqa: S311 - jitter
                backoff = min(backoff * 2, self.config.reconnect.maximum)
                continue
            backoff = self.config.reconnect.initial
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
                await self._close(session)
            self.last_error = session.reason
            self._emit(
                SystemEventKind.DISCONNECTED,
                f"lost {self.config.endpoint}: {session.reason}; reconnecting",
                alarm=True,
            )
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter

    def _new_client(self) -> Client:
        client = Client(
            self.config.endpoint,
            timeout=self.config.request_timeout,
            watchdog_intervall=self.config.watchdog.health_check,
        )
        client.name = client.description = f"envmon collector {self.config.id}"
        client.application_uri = (
            self.config.security.application_uri or f"urn:envmon:collector:{self.config.id}"
        )
        client.product_uri = "urn:envmon"
        return client

    async def _open(self, session: _Session) -> None:
        """Connect, resolve the nodes and create every subscription."""
        client = session.client
        identity = self._identity()
        if identity is not None:
            client.set_user(identity[0])
            client.set_password(identity[1])
        timeout = self.config.request_timeout * _CONNECT_TIMEOUT_FACTOR
        async with asyncio.timeout(timeout):
            if self.config.security.enabled:
                await self._secure(client)
            await client.connect()

        async def lost(exc: Exception) -> None:
            session.lose(_describe(exc))

        client.connection_lost_callback = lost
        await self._read_limits(session)
        await self._resolve(session)
        if self._positions:
            session.holding = []  # live readings wait until the gap before them is filled
        await self._subscribe(session, sorted(session.node_ids))
        if session.holding is not None:
            await self._backfill(session)

    async def _close(self, session: _Session) -> None:
        """Close a session, quietly: the server may already be gone."""
        client = session.client
        client.connection_lost_callback = None
        if client.uaclient.protocol is None:
            return  # never connected
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await client.disconnect()
        except Exception as exc:  # best effort: the connection is being dropped
            logger.debug("%s: disconnect: %s", self.component, _describe(exc))
            client.disconnect_socket()

    def _identity(self) -> tuple[str, str] | None:
        identity = self.config.identity
        if identity is None:
            return None
        password = os.environ.get(identity.password_env)
        if password is None:
            raise OpcUaSetupError(
                f"{self.component}: environment variable {identity.password_env} "
                f"(the password of OPC-UA user {identity.username!r}) is not set"
            )
        return identity.username, password

    async def _secure(self, client: Client) -> None:
        """Set up message security: our certificate and key, the server's certificate."""
        security = self.config.security
        assert security.certificate is not None
        assert security.private_key is not None
        policy = _POLICIES[security.policy]
        mode = getattr(ua.MessageSecurityMode, security.mode)
        try:
            certificate = _load_certificate(Path(security.certificate))
        except (OSError, ValueError) as exc:
            raise OpcUaSetupError(
                f"{self.component}: cannot read certificate {security.certificate}: {exc}"
            ) from exc
        if security.application_uri is None:
            uri = _certificate_uri(certificate)
            if uri is not None:
                client.application_uri = uri
        password = None
        if security.private_key_password_env is not None:
            password = os.environ.get(security.private_key_password_env)
            if password is None:
                raise OpcUaSetupError(
                    f"{self.component}: environment variable "
                    f"{security.private_key_password_env} (private key password) is not set"
                )
        server_der = await self._server_certificate(client, policy.URI, mode)
        try:
            await client.set_security(
                policy,
                security.certificate,
                security.private_key,
                password,
                server_der,
                mode,
            )
        except (OSError, ValueError, TypeError) as exc:
            raise OpcUaSetupError(
                f"{self.component}: cannot use certificate {security.certificate} and key "
                f"{security.private_key}: {exc}"
            ) from exc

    async def _server_certificate(self, client: Client, policy_uri: str, mode: object) -> bytes:
        """Fetch the server's certificate for the endpoint and check it against the trust list."""
        endpoints = await client.connect_and_get_server_endpoints()
        matching = [
            e for e in endpoints if e.SecurityPolicyUri == policy_uri and e.SecurityMode == mode
        ]
        if not matching:
            offered = sorted(
                {
                    f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}"
                    for e in endpoints
                }
            )
            raise _ConnectionLostError(
                f"the server offers no endpoint with {self.config.security.policy}/"
                f"{self.config.security.mode} (it offers {', '.join(offered)})"
            )
        der = _first_certificate(matching[0].ServerCertificate or b"")
        certificate = x509.load_der_x509_certificate(der)
        trusted = self.config.security.trusted_server_certificates
        if not trusted:
            logger.warning(
                "%s: accepting the server certificate %s without verification: list it in "
                "security.trusted_server_certificates",
                self.component,
                certificate.subject.rfc4514_string(),
            )
            return der
        if not _is_trusted(certificate, [Path(p) for p in trusted]):
            raise _ConnectionLostError(
                f"the server certificate {certificate.subject.rfc4514_string()} is not among "
                "security.trusted_server_certificates"
            )
        return der

    async def _read_limits(self, session: _Session) -> None:
        """Use the server's advertised caps where they are lower than ours."""
        sub = self.config.subscription
        session.items_per_subscription = sub.max_items_per_subscription
        session.batch_size = sub.batch_size
        nodes = [
            ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription),
            ua.NodeId(
                ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall
            ),
        ]
        try:
            values = await session.client.uaclient.read_attributes(nodes, ua.AttributeIds.Value)
        except Exception as exc:  # optional information
            logger.debug("%s: cannot read server limits: %s", self.component, _describe(exc))
            return
        per_sub, per_call = (_positive_int(dv) for dv in values)
        if per_sub:
            session.items_per_subscription = min(session.items_per_subscription, per_sub)
        if per_call:
            session.batch_size = min(session.batch_size, per_call)

    async def _resolve(self, session: _Session) -> None:
        """Resolve every binding to a node id on this server (dead-lettering what cannot be)."""
        namespaces: list[str] | None = None
        paths: list[tuple[NodeBinding, tuple[BrowseSegment, ...]]] = []
        for binding in self._bindings:
            node = binding.node
            if node.node_id is not None:
                parsed = parse_node_id(node.node_id)
                index = parsed.namespace_index
                if parsed.namespace_uri is not None:
                    if namespaces is None:
                        namespaces = await session.client.get_namespace_array()
                    if parsed.namespace_uri not in namespaces:
                        self._report(
                            binding, f"the server has no namespace {parsed.namespace_uri!r}"
                        )
                        continue
                    index = namespaces.index(parsed.namespace_uri)
                session.node_ids[binding.handle] = _to_ua_node_id(
                    parsed.kind, parsed.identifier, index
                )
            else:
                assert node.browse_path is not None
                paths.append((binding, parse_browse_path(node.browse_path)))
        if not paths:
            return
        default_ns: int | None = None
        if self.config.namespace is not None:
            if namespaces is None:
                namespaces = await session.client.get_namespace_array()
            if self.config.namespace in namespaces:
                default_ns = namespaces.index(self.config.namespace)
        requests: list[tuple[NodeBinding, ua.BrowsePath]] = []
        for binding, segments in paths:
            if default_ns is None and any(s.namespace_index is None for s in segments):
                self._report(binding, f"the server has no namespace {self.config.namespace!r}")
                continue
            requests.append((binding, _browse_path(segments, default_ns or 0)))
        for start in range(0, len(requests), session.batch_size):
            chunk = requests[start : start + session.batch_size]
            results = await session.client.uaclient.translate_browsepaths_to_nodeids(
                [path for _, path in chunk]
            )
            for (binding, _), result in zip(chunk, results, strict=True):
                if not result.StatusCode.is_good() or not result.Targets:
                    self._report(
                        binding, f"browse path not found ({status_name(result.StatusCode.value)})"
                    )
                    continue
                target = result.Targets[0].TargetId
                session.node_ids[binding.handle] = ua.NodeId(
                    target.Identifier, target.NamespaceIndex, target.NodeIdType
                )

    # ------------------------------------------------------------------ subscriptions

    async def _subscribe(self, session: _Session, handles: list[int]) -> None:
        """Create subscriptions for ``handles``, opening another whenever one is full."""
        remaining = list(handles)
        while remaining:
            sub = await self._create_subscription(session)
            cap = session.items_per_subscription
            placed, overflow = await self._add_items(session, sub, remaining[:cap])
            remaining = overflow + remaining[cap:]
            if not placed:
                await self._delete_subscription(session, sub)
                if overflow:
                    raise _ConnectionLostError(
                        "the server accepts no monitored item in a new subscription"
                    )
            elif overflow:
                # The server enforces a lower cap than it advertised: use it from now on.
                session.items_per_subscription = len(placed)
                logger.info(
                    "%s: the server caps subscriptions at %d monitored items",
                    self.component,
                    len(placed),
                )

    async def _create_subscription(self, session: _Session) -> _Subscription:
        config = self.config.subscription
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=config.publishing_interval * 1000,
            RequestedLifetimeCount=config.lifetime_count,
            RequestedMaxKeepAliveCount=config.keepalive_count,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        result = await session.client.uaclient.create_subscription(
            params, functools.partial(self._on_publish, session)
        )
        sub = _Subscription(result.SubscriptionId, [], time.monotonic())
        session.subscriptions[sub.subscription_id] = sub
        self.subscription_count = len(session.subscriptions)
        return sub

    async def _add_items(
        self, session: _Session, sub: _Subscription, handles: list[int]
    ) -> tuple[list[int], list[int]]:
        """Create monitored items in batches; return the handles placed and those over the cap."""
        placed: list[int] = []
        overflow: list[int] = []
        for start in range(0, len(handles), session.batch_size):
            chunk = handles[start : start + session.batch_size]
            params = ua.CreateMonitoredItemsParameters(
                SubscriptionId=sub.subscription_id,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToCreate=[self._item_request(h, session.node_ids[h]) for h in chunk],
            )
            try:
                results = await session.client.uaclient.create_monitored_items(params)
            except ua.UaStatusCodeError as exc:
                if exc.code != ua.StatusCodes.BadTooManyMonitoredItems:
                    raise
                overflow = handles[start:]
                break
            for handle, result in zip(chunk, results, strict=True):
                code = result.StatusCode.value
                if result.StatusCode.is_good():
                    placed.append(handle)
                elif code & 0xFFFF0000 == ua.StatusCodes.BadTooManyMonitoredItems:
                    overflow.append(handle)
                else:
                    self._report(
                        self._by_handle[handle],
                        f"the server refused to monitor the node ({status_name(code)})",
                    )
            if overflow:
                overflow.extend(handles[start + len(chunk) :])
                break
        sub.handles.extend(placed)
        return placed, overflow

    def _item_request(self, handle: int, node_id: ua.NodeId) -> ua.MonitoredItemCreateRequest:
        settings = self._by_handle[handle].settings
        if settings.deadband is not None:
            data_filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.Absolute,
                DeadbandValue=settings.deadband,
            )
        else:
            # A steady value still reports each new sample (its source timestamp changes),
            # so a quiet but healthy sensor is never taken for a lost one.
            data_filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=handle,
                SamplingInterval=settings.sampling_interval * 1000,
                Filter=data_filter,
                QueueSize=settings.queue_size,
                DiscardOldest=True,
            ),
        )

    async def _delete_subscription(self, session: _Session, sub: _Subscription) -> None:
        session.subscriptions.pop(sub.subscription_id, None)
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await session.client.uaclient.delete_subscriptions([sub.subscription_id])
        except Exception as exc:  # the server may have dropped it already
            logger.debug("%s: delete subscription: %s", self.component, _describe(exc))

    async def _recreate(self, session: _Session, sub: _Subscription, why: str) -> None:
        """Replace a subscription that went silent or expired by a new one with the same items."""
        self._emit(
            SystemEventKind.SUBSCRIPTION_SILENT,
            f"subscription {sub.subscription_id} ({len(sub.handles)} items) {why}; re-creating it",
        )
        await self._delete_subscription(session, sub)
        before = len(session.subscriptions)
        await self._subscribe(session, sub.handles)
        created = len(session.subscriptions) - before
        self.counters.resubscriptions += created
        self._emit(
            SystemEventKind.RESUBSCRIBED,
            f"re-created {len(sub.handles)} monitored items in {created} subscription(s)",
        )

    async def _watchdog(self, session: _Session) -> None:
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
                    session.lose(f"cannot re-create a silent subscription: {_describe(exc)}")
                    return

    # ------------------------------------------------------------------ notifications

    async def _on_publish(self, session: _Session, result: ua.PublishResult) -> None:
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
                        failures.append(_unknown_handle(item, result.SubscriptionId))
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
        self, session: _Session, sub: _Subscription, published: datetime | None, now: datetime
    ) -> None:
        """Queue proofs of life for the subscription's nodes that are due (see the module doc).

        Called for every publish response (a keep-alive included): the subscription is
        healthy right now. A node gets a proof when it reported a usable value in this
        session and has had no proof from this subscription yet, or when its last reading
        or proof is older than its period. A node whose last status was bad gets none: its
        value is no evidence of a working sensor, and it must go stale as before. The
        proof's time is the server's publish time, moved by the node's source-to-server
        clock offset when its readings carry source timestamps, so that it is in the same
        data time as the node's readings. A publish time or an offset more than a day
        off is not believed (the collector's clock, no offset, are used instead).
        """
        periods = self._proof_every
        now_us = to_us(now)
        if not periods or now_us < sub.next_sweep or session.holding is not None:
            return
        sub.next_sweep = now_us + _PROOF_SWEEP_US
        if session.lost.is_set() or sub.subscription_id in session.silent:
            return
        at = _timestamp(published)
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
                source_ts = _timestamp(value.SourceTimestamp)
                server_ts = _timestamp(value.ServerTimestamp)
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

    async def _backfill(self, session: _Session) -> None:
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
        access: list[ua.DataValue] = []
        for start in range(0, len(wanted), session.batch_size):  # the server's per-call cap
            access += await session.client.uaclient.read_attributes(
                [node_id for _, node_id in wanted[start : start + session.batch_size]],
                ua.AttributeIds.AccessLevel,
            )
        for (handle, node_id), level in zip(wanted, access, strict=True):
            binding = self._by_handle[handle]
            since = filled[binding.sensor_id]
            if not _history_readable(level):
                self._report(binding, "the server keeps no history of the node to fill a gap")
                continue
            try:
                async with asyncio.timeout(self.config.request_timeout * _CONNECT_TIMEOUT_FACTOR):
                    values = await session.client.get_node(node_id).read_raw_history(
                        max(since, horizon), None, 0, False
                    )
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

    def _status_change(self, session: _Session, sub: _Subscription, status: int) -> None:
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

    def _emit(self, kind: SystemEventKind, detail: str, *, alarm: bool = False) -> None:
        """Log an event and hand it to ``on_event`` (which publishes it, like the MQTT side's)."""
        log = logger.warning if alarm else logger.info
        log("%s: %s", self.component, detail)
        if self._on_event is not None:
            event = SystemEvent(
                event=kind, component=self.component, ts=self._clock(), alarm=alarm, detail=detail
            )
            try:
                self._on_event(event)
            except Exception:
                logger.exception("%s: event handler failed", self.component)


def _history_readable(level: ua.DataValue) -> bool:
    """Tell whether a node's AccessLevel lets a client read its history."""
    value = level.Value.Value if level.Value is not None else None
    return isinstance(value, int) and bool(value & ua.AccessLevel.HistoryRead.mask)


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


def _unknown_handle(item: ua.MonitoredItemNotification, subscription_id: int) -> RawPayload:
    origin = f"subscription {subscription_id} handle {item.ClientHandle}"
    data = item.Value
    raw = {
        "subscription": subscription_id,
        "client_handle": item.ClientHandle,
        "value": _short(data.Value.Value) if data.Value is not None else None,
    }
    return RawPayload(
        origin, json.dumps(raw).encode(), "notification for an unknown monitored item"
    )


def _to_ua_node_id(kind: str, identifier: str, namespace: int) -> ua.NodeId:
    if kind == "i":
        return ua.NodeId(int(identifier), namespace, ua.NodeIdType.Numeric)
    if kind == "g":
        return ua.NodeId(uuid.UUID(identifier), namespace, ua.NodeIdType.Guid)
    if kind == "b":
        return ua.NodeId(base64.b64decode(identifier), namespace, ua.NodeIdType.ByteString)
    return ua.NodeId(identifier, namespace, ua.NodeIdType.String)


def _browse_path(segments: Sequence[BrowseSegment], default_ns: int) -> ua.BrowsePath:
    elements = [
        ua.RelativePathElement(
            ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
            IsInverse=False,
            IncludeSubtypes=True,
            TargetName=ua.QualifiedName(
                s.name, s.namespace_index if s.namespace_index is not None else default_ns
            ),
        )
        for s in segments
    ]
    return ua.BrowsePath(
        StartingNode=ua.NodeId(ua.ObjectIds.ObjectsFolder),
        RelativePath=ua.RelativePath(Elements=elements),
    )


def _positive_int(data: ua.DataValue) -> int:
    try:
        value = int(data.Value.Value) if data.Value is not None else 0
    except (TypeError, ValueError):
        return 0
    return value if value > 0 else 0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _first_certificate(der: bytes) -> bytes:
    """Return the first certificate of a DER chain (servers may send their chain)."""
    if len(der) < 4:
        return der
    length = int.from_bytes(der[2:4], "big") + 4
    return der[:length]


def _certificate_uri(certificate: x509.Certificate) -> str | None:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _is_trusted(certificate: x509.Certificate, locations: list[Path]) -> bool:
    """Return True when the certificate is a trusted one or was issued by one of them."""
    trusted: list[x509.Certificate] = []
    for location in locations:
        files = sorted(location.iterdir()) if location.is_dir() else [location]
        for file in files:
            if file.suffix.lower() in (".pem", ".der", ".crt", ".cer"):
                try:
                    trusted.append(_load_certificate(file))
                except (OSError, ValueError):
                    logger.warning("cannot read trusted certificate %s", file)
    for candidate in trusted:
        if candidate == certificate:
            return True
        if candidate.subject == certificate.issuer:
            try:
                certificate.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
    return False
