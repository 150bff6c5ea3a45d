"""The asyncua side of the OPC-UA collector: one session's client and its operations.

``Wire`` does what a session asks of the server: connect (with ``security``), read the
server's limits, resolve the bound nodes, create subscriptions and monitored items (in
batches, within the server's caps), read access levels and history, close. ``Session``
and ``Subscription`` hold what lives as long as one connection. The client comes from a
factory (``new_client`` unless a test injects an ``OpcUaClient``).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from asyncua import Client, Node, ua
from asyncua.crypto import security_policies

from collectors.opcua.errors import SessionLostError, describe
from collectors.opcua.mapping import NodeBinding, status_name
from collectors.opcua.security import secure
from envmon.config.opcua import (
    BrowseSegment,
    OpcUaCollectorConfig,
    parse_browse_path,
    parse_node_id,
)
from envmon.models import Reading

logger = logging.getLogger(__name__)

#: Connecting (and reading a node's history) may take this many request timeouts.
CONNECT_TIMEOUT_FACTOR: Final = 3


class OpcUaClient(Protocol):
    """What the collector uses of an asyncua ``Client``."""

    application_uri: str
    connection_lost_callback: Callable[[Exception], Awaitable[None]] | None
    #: asyncua's ``UaClient`` (``protocol``, ``read_attributes``, ``create_subscription``, ...)
    uaclient: Any

    def set_user(self, username: str) -> None:
        """Sign in as ``username``."""

    def set_password(self, pwd: str) -> None:
        """With this password."""

    async def connect(self) -> None:
        """Open the connection and the session."""

    async def disconnect(self) -> None:
        """Close the session and the connection."""

    def disconnect_socket(self) -> None:
        """Drop the connection at once."""

    async def get_namespace_array(self) -> list[str]:
        """Return the server's namespace URIs."""

    async def connect_and_get_server_endpoints(self) -> list[ua.EndpointDescription]:
        """Return the server's endpoint descriptions."""

    async def set_security(
        self,
        policy: type[security_policies.SecurityPolicy],
        certificate: str,
        private_key: str,
        private_key_password: str | None,
        server_certificate: bytes,
        mode: ua.MessageSecurityMode,
    ) -> None:
        """Use message security."""

    def get_node(self, nodeid: ua.NodeId) -> Node:
        """Return a node object (for ``read_raw_history``)."""


ClientFactory = Callable[[OpcUaCollectorConfig], OpcUaClient]
#: Handles one publish response of a subscription (notifications or a keep-alive).
PublishHandler = Callable[["Session", ua.PublishResult], Awaitable[None]]
#: Dead-letters a node that cannot be read, with the reason.
Reporter = Callable[[NodeBinding, str], None]


def new_client(config: OpcUaCollectorConfig) -> OpcUaClient:
    """Return an asyncua client for the configured server (not connected)."""
    client = Client(
        config.endpoint,
        timeout=config.request_timeout,
        watchdog_intervall=config.watchdog.health_check,
    )
    client.name = client.description = f"envmon collector {config.id}"
    client.application_uri = config.security.application_uri or f"urn:envmon:collector:{config.id}"
    client.product_uri = "urn:envmon"
    made: OpcUaClient = client
    return made


@dataclass(slots=True)
class Subscription:
    """One server subscription and the bindings monitored in it ."""

    subscription_id: int
    handles: list[int]
    last_seen: float
    created: int = 0
    proven: set[int] = field(default_factory=set)  # handles with a proof of life from it
    next_sweep: int = 0  # collector clock (µs): when to look for proofs due again


@dataclass(slots=True)
class Session:
    """Everything that lives as long as one connection ."""

    client: OpcUaClient
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
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


class Wire:
    """One collector's asyncua operations on its sessions."""

    def __init__(
        self,
        config: OpcUaCollectorConfig,
        bindings: Sequence[NodeBinding],
        *,
        component: str,
        on_publish: PublishHandler,
        report: Reporter,
    ) -> None:
        self.config = config
        self.component = component
        self._bindings = list(bindings)
        self._by_handle = {b.handle: b for b in self._bindings}
        self._on_publish = on_publish
        self._report = report
        self.subscription_count = 0

    async def connect(self, session: Session, identity: tuple[str, str] | None) -> None:
        """Connect (with message security when configured) and watch for the connection's loss."""
        client = session.client
        if identity is not None:
            client.set_user(identity[0])
            client.set_password(identity[1])
        timeout = self.config.request_timeout * CONNECT_TIMEOUT_FACTOR
        async with asyncio.timeout(timeout):
            if self.config.security.enabled:
                await secure(client, self.config, self.component)
            await client.connect()

        async def lost(exc: Exception) -> None:
            session.lose(describe(exc))

        client.connection_lost_callback = lost

    async def close(self, session: Session) -> None:
        """Close a session, quietly: the server may already be gone."""
        client = session.client
        client.connection_lost_callback = None
        if client.uaclient.protocol is None:
            return  # never connected
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await client.disconnect()
        except Exception as exc:  # best effort: the connection is being dropped
            logger.debug("%s: disconnect: %s", self.component, describe(exc))
            client.disconnect_socket()

    async def read_limits(self, session: Session) -> None:
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
            logger.debug("%s: cannot read server limits: %s", self.component, describe(exc))
            return
        per_sub, per_call = (_positive_int(dv) for dv in values)
        if per_sub:
            session.items_per_subscription = min(session.items_per_subscription, per_sub)
        if per_call:
            session.batch_size = min(session.batch_size, per_call)

    async def resolve(self, session: Session) -> None:
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

    async def subscribe(self, session: Session, handles: list[int]) -> None:
        """Create subscriptions for ``handles``, opening another whenever one is full."""
        remaining = list(handles)
        while remaining:
            sub = await self._create_subscription(session)
            cap = session.items_per_subscription
            placed, overflow = await self._add_items(session, sub, remaining[:cap])
            remaining = overflow + remaining[cap:]
            if not placed:
                await self.delete_subscription(session, sub)
                if overflow:
                    raise SessionLostError(
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

    async def _create_subscription(self, session: Session) -> Subscription:
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
        sub = Subscription(result.SubscriptionId, [], time.monotonic())
        session.subscriptions[sub.subscription_id] = sub
        self.subscription_count = len(session.subscriptions)
        return sub

    async def _add_items(
        self, session: Session, sub: Subscription, handles: list[int]
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

    async def delete_subscription(self, session: Session, sub: Subscription) -> None:
        """Delete a subscription, quietly: the server may have dropped it already."""
        session.subscriptions.pop(sub.subscription_id, None)
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await session.client.uaclient.delete_subscriptions([sub.subscription_id])
        except Exception as exc:  # the server may have dropped it already
            logger.debug("%s: delete subscription: %s", self.component, describe(exc))

    async def read_access_levels(
        self, session: Session, node_ids: Sequence[ua.NodeId]
    ) -> list[ua.DataValue]:
        """Read the nodes' AccessLevel attributes, within the server's per-call cap."""
        access: list[ua.DataValue] = []
        for start in range(0, len(node_ids), session.batch_size):
            access += await session.client.uaclient.read_attributes(
                list(node_ids[start : start + session.batch_size]), ua.AttributeIds.AccessLevel
            )
        return access

    async def read_history(
        self, session: Session, node_id: ua.NodeId, since: datetime
    ) -> list[ua.DataValue]:
        """Read a node's raw history from ``since``; raises ``ua.UaStatusCodeError``."""
        async with asyncio.timeout(self.config.request_timeout * CONNECT_TIMEOUT_FACTOR):
            values: list[ua.DataValue] = await session.client.get_node(node_id).read_raw_history(
                since, None, 0, False
            )
        return values


def history_readable(level: ua.DataValue) -> bool:
    """Tell whether a node's AccessLevel lets a client read its history."""
    value = level.Value.Value if level.Value is not None else None
    return isinstance(value, int) and bool(value & ua.AccessLevel.HistoryRead.mask)


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
