"""OPC-UA connection and node binding schema (``collectors.opcua[]``).

One entry is one OPC-UA server: its endpoint, security (policy, mode, application
certificate, trusted server certificates), identity (anonymous, or a user whose password
is read from an environment variable — never from this file), subscription tuning, the
silence watchdog, and ``nodes``: which server node feeds which sensor of the site::

    - id: cold-store-gateway
      endpoint: opc.tcp://127.0.0.1:4840/envmon/
      namespace: urn:envmon:simulator          # for browse paths written without an index
      node_defaults: {sampling_interval: 1s, queue_size: 10, timestamp: source}
      nodes:
        - sensor_id: ult-freezer-1.temperature
          node_id: "ns=2;s=ColdStore.ult-freezer-1.temperature"
        - sensor_id: fridge-1.temperature
          browse_path: ColdStore/fridge-1/temperature
          unit: degF                             # the server's unit (envmon.units converts it)

Node ids use the OPC-UA string form (``ns=2;s=…``, ``ns=2;i=…``, ``g=``, ``b=``; ``nsu=<uri>;``
names the namespace by URI, which survives a server that renumbers its namespaces). A
browse path is relative to the Objects folder, segments separated by ``/`` (or a list),
each ``<index>:<name>`` or a bare name in the connection's ``namespace``.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Final, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from envmon.config.base_collector import CollectorConfig
from envmon.config.bindings import site_sensor_unit
from envmon.config.types import (
    ConfigModel,
    Duration,
    PositiveDuration,
    PositiveInt,
    SensorIdText,
    Text,
)
from envmon.units import COUNTS, UnitError, conversion

DEFAULT_PORT: Final = 4840
DEFAULT_PUBLISHING_INTERVAL_S: Final = 1.0
DEFAULT_KEEPALIVE_COUNT: Final = 10
DEFAULT_LIFETIME_COUNT: Final = 60
DEFAULT_MAX_ITEMS_PER_SUBSCRIPTION: Final = 1_000
DEFAULT_BATCH_SIZE: Final = 500
DEFAULT_SAMPLING_INTERVAL_S: Final = 1.0
DEFAULT_QUEUE_SIZE: Final = 10
DEFAULT_SILENCE_TIMEOUT_S: Final = 30.0
DEFAULT_HEALTH_CHECK_S: Final = 5.0
DEFAULT_REQUEST_TIMEOUT_S: Final = 10.0
DEFAULT_BACKFILL_MAX_AGE_S: Final = 24 * 3600.0

SecurityPolicyName = Literal[
    "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"
]
SecurityModeName = Literal["None", "Sign", "SignAndEncrypt"]
TimestampSource = Literal["source", "server"]

_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NODE_ID = re.compile(
    r"^(?:(?:ns=(?P<ns>\d+)|nsu=(?P<nsu>[^;]+));)?(?P<kind>[isgb])=(?P<id>.+)$", re.S
)
_SEGMENT = re.compile(r"^(?:(?P<ns>\d+):)?(?P<name>.+)$", re.S)
_MAX_UINT32: Final = 2**32 - 1
_MAX_UINT16: Final = 2**16 - 1

# A bare browse-path segment needs the connection's ``namespace``; the connection publishes
# whether it has one while its nodes validate, so the error lands on the node's own path.
_NAMESPACE_GIVEN: ContextVar[bool | None] = ContextVar("envmon_opcua_namespace", default=None)


@dataclass(frozen=True, slots=True)
class ParsedNodeId:
    """A node id from the configuration: namespace (index or URI), kind and identifier."""

    kind: Literal["i", "s", "g", "b"]
    identifier: str
    namespace_index: int = 0
    namespace_uri: str | None = None


@dataclass(frozen=True, slots=True)
class BrowseSegment:
    """One step of a browse path: a browse name, in a namespace given by index or not at all."""

    name: str
    namespace_index: int | None = None


def parse_node_id(text: str) -> ParsedNodeId:
    """Parse the OPC-UA string form of a node id; raise ``ValueError`` when it is not one."""
    match = _NODE_ID.match(text.strip())
    if match is None:
        raise ValueError(
            "must be a node id such as 'ns=2;s=Freezer1.Temperature', 'ns=3;i=1001' or "
            f"'nsu=urn:vendor:plant;s=Fridge.T', got {text!r}"
        )
    ns, nsu, kind, ident = match.group("ns"), match.group("nsu"), match.group("kind"), match["id"]
    if ns is not None and int(ns) > _MAX_UINT16:
        raise ValueError(f"namespace index {ns} is out of range (0-65535)")
    if kind == "i" and (not ident.isdigit() or int(ident) > _MAX_UINT32):
        raise ValueError(f"numeric identifier must be an integer 0-4294967295, got {ident!r}")
    if kind == "g":
        try:
            uuid.UUID(ident)
        except ValueError:
            raise ValueError(f"GUID identifier is not a GUID: {ident!r}") from None
    if kind == "b":
        try:
            base64.b64decode(ident, validate=True)
        except binascii.Error:
            raise ValueError(f"opaque identifier is not base64: {ident!r}") from None
    return ParsedNodeId(
        kind=kind,  # type: ignore[arg-type]  # the regex admits only i, s, g, b
        identifier=ident,
        namespace_index=int(ns) if ns is not None else 0,
        namespace_uri=nsu,
    )


def parse_browse_path(segments: tuple[str, ...]) -> tuple[BrowseSegment, ...]:
    """Parse browse-path segments (``2:ColdStore`` or ``ColdStore``)."""
    parsed: list[BrowseSegment] = []
    for segment in segments:
        match = _SEGMENT.match(segment)
        if match is None:  # pragma: no cover - the pattern matches every non-empty string
            raise ValueError(f"invalid browse path segment {segment!r}")
        ns = match.group("ns")
        parsed.append(BrowseSegment(match.group("name"), int(ns) if ns is not None else None))
    return tuple(parsed)


def _check_node_id(value: str) -> str:
    parse_node_id(value)
    return value.strip()


def _split_browse_path(value: object) -> object:
    """Accept ``A/B/C`` as well as a list of segments; a leading ``Objects`` is implied."""
    if isinstance(value, str):
        value = [part for part in value.strip().split("/") if part]
    if isinstance(value, list | tuple) and value and value[0] in ("Objects", "0:Objects"):
        value = list(value[1:])
    return value


def _check_browse_path(value: tuple[str, ...]) -> tuple[str, ...]:
    segments = parse_browse_path(value)
    if _NAMESPACE_GIVEN.get() is False:
        bare = [s.name for s in segments if s.namespace_index is None]
        if bare:
            raise ValueError(
                f"segment {bare[0]!r} has no namespace index: write it as '<index>:{bare[0]}' "
                "or give the connection a 'namespace' URI for bare names"
            )
    return value


def _check_env_var(value: str) -> str:
    if not _ENV_VAR.match(value):
        raise ValueError(
            f"must be the name of an environment variable (letters, digits, '_'), got {value!r}"
        )
    return value


def _check_endpoint(value: str) -> str:
    url = urlparse(value)
    if url.scheme != "opc.tcp":
        raise ValueError(f"must be an opc.tcp:// URL, got {value!r}")
    try:
        url.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"has an invalid port: {value!r}") from None
    if not url.hostname:
        raise ValueError(
            f"must name a host, e.g. 'opc.tcp://127.0.0.1:{DEFAULT_PORT}/', got {value!r}"
        )
    if url.username or url.password:
        raise ValueError(
            "must not carry credentials: give identity.username and identity.password_env"
        )
    return value


NodeIdText = Annotated[str, Strict(), AfterValidator(_check_node_id)]
BrowsePath = Annotated[
    tuple[Annotated[str, Strict(), Field(min_length=1)], ...],
    BeforeValidator(_split_browse_path),
    Field(min_length=1),
    AfterValidator(_check_browse_path),
]
EnvVarName = Annotated[str, Strict(), AfterValidator(_check_env_var)]
EndpointUrl = Annotated[str, Strict(), AfterValidator(_check_endpoint)]
NonNegative = Annotated[float, Strict(), Field(ge=0)]


# -- schema -----------------------------------------------------------------------------------


class SecurityConfig(ConfigModel):
    """Message security: policy, mode, our application certificate and the servers we trust.

    ``trusted_server_certificates`` are certificate files (PEM or DER) or folders of them; a
    server whose certificate is not among them (nor issued by one of them) is refused. Left
    empty, the certificate the server presents is accepted (and a warning logged).
    """

    policy: SecurityPolicyName = "None"
    mode: SecurityModeName = "None"
    certificate: Text | None = None
    private_key: Text | None = None
    private_key_password_env: EnvVarName | None = None
    trusted_server_certificates: tuple[Text, ...] = ()
    application_uri: Text | None = None

    @field_validator("mode")
    @classmethod
    def _mode_matches_policy(cls, value: str, info: ValidationInfo) -> str:
        policy = info.data.get("policy")
        if policy == "None" and value != "None":
            raise ValueError(f"mode {value} needs a security policy (e.g. Basic256Sha256)")
        if policy not in (None, "None") and value == "None":
            raise ValueError(f"policy {policy} needs mode Sign or SignAndEncrypt")
        return value

    @model_validator(mode="after")
    def _certificates_for_security(self) -> SecurityConfig:
        if self.enabled and (self.certificate is None or self.private_key is None):
            raise ValueError(
                f"policy {self.policy} needs the application 'certificate' and its 'private_key'"
            )
        return self

    @property
    def enabled(self) -> bool:
        """True when messages are signed (and maybe encrypted)."""
        return self.policy != "None"


def _anonymous(value: object) -> object:
    """``identity: anonymous`` means no user."""
    if isinstance(value, str):
        if value != "anonymous":
            raise ValueError(
                "must be 'anonymous' or {username: ..., password_env: <environment variable>}"
            )
        return None
    return value


class UserIdentityConfig(ConfigModel):
    """A user name and the environment variable that holds the password."""

    username: Text
    password_env: EnvVarName


class SubscriptionConfig(ConfigModel):
    """How monitored items are grouped into subscriptions and created."""

    publishing_interval: PositiveDuration = DEFAULT_PUBLISHING_INTERVAL_S
    keepalive_count: PositiveInt = DEFAULT_KEEPALIVE_COUNT
    lifetime_count: PositiveInt = DEFAULT_LIFETIME_COUNT
    max_items_per_subscription: PositiveInt = DEFAULT_MAX_ITEMS_PER_SUBSCRIPTION
    batch_size: PositiveInt = DEFAULT_BATCH_SIZE

    @field_validator("lifetime_count")
    @classmethod
    def _lifetime_covers_keepalive(cls, value: int, info: ValidationInfo) -> int:
        keepalive = info.data.get("keepalive_count")
        if keepalive is not None and value < 3 * keepalive:
            raise ValueError(
                f"must be at least 3 × keepalive_count ({3 * keepalive}), as OPC-UA requires"
            )
        return value

    @property
    def keepalive_period_s(self) -> float:
        """Longest quiet time of a healthy subscription (publishing interval × keep-alive count)."""
        return self.publishing_interval * self.keepalive_count


class WatchdogConfig(ConfigModel):
    """Detecting a dead connection and a subscription that went silent."""

    silence_timeout: PositiveDuration = DEFAULT_SILENCE_TIMEOUT_S
    health_check: PositiveDuration = DEFAULT_HEALTH_CHECK_S


class HistoryConfig(ConfigModel):
    """Backfill from the server's history (HistoryRead) after a gap in the subscription.

    A subscription delivers only what changes while it exists: what a node reported while
    the collector was down or reconnecting is read back from the server's history, from the
    last reading the buffer holds for the node (kept in the buffer's file), at most
    ``max_age`` back. Needs a server that historizes the nodes.
    """

    backfill: bool = False
    max_age: PositiveDuration = DEFAULT_BACKFILL_MAX_AGE_S


class NodeSettings(ConfigModel):
    """Monitored-item settings of a node; every key optional (``node_defaults`` fill in)."""

    sampling_interval: Duration | None = None
    queue_size: PositiveInt | None = None
    deadband: NonNegative | None = None
    timestamp: TimestampSource | None = None


class NodeDefaults(NodeSettings):
    """Monitored-item settings for every node of the connection that does not give its own."""

    sampling_interval: Duration | None = DEFAULT_SAMPLING_INTERVAL_S
    queue_size: PositiveInt | None = DEFAULT_QUEUE_SIZE
    timestamp: TimestampSource | None = "source"


class NodeConfig(NodeSettings):
    """One server node read as one sensor of the site."""

    sensor_id: SensorIdText
    node_id: NodeIdText | None = None
    browse_path: BrowsePath | None = None
    unit: Text | None = None

    @field_validator("sensor_id")
    @classmethod
    def _sensor_in_site(cls, value: str) -> str:
        site_sensor_unit(value)
        return value

    @field_validator("browse_path")
    @classmethod
    def _one_address(
        cls, value: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        if value is not None and info.data.get("node_id") is not None:
            raise ValueError("give either node_id or browse_path, not both")
        return value

    @field_validator("unit")
    @classmethod
    def _convertible(cls, value: str | None, info: ValidationInfo) -> str | None:
        sensor_id = info.data.get("sensor_id")
        if value is None or sensor_id is None:
            return value
        target = site_sensor_unit(sensor_id)
        if target is not None:
            if value == COUNTS:
                raise ValueError(
                    "counts per sample are not supported for OPC-UA nodes: give a concentration"
                )
            try:
                conversion(value, target)
            except UnitError as exc:
                raise ValueError(f"{exc} (the channel's unit is {target!r})") from None
        return value

    @model_validator(mode="after")
    def _has_address(self) -> NodeConfig:
        if self.node_id is None and self.browse_path is None:
            raise ValueError("give the node's node_id or its browse_path")
        return self

    @property
    def address(self) -> str:
        """The node as written: its node id, or its browse path joined with ``/``."""
        if self.node_id is not None:
            return self.node_id
        assert self.browse_path is not None
        return "/".join(self.browse_path)


class OpcUaCollectorConfig(CollectorConfig):
    """One OPC-UA server connection and the nodes read from it."""

    endpoint: EndpointUrl
    security: SecurityConfig = SecurityConfig()
    identity: Annotated[UserIdentityConfig | None, BeforeValidator(_anonymous)] = None
    request_timeout: PositiveDuration = DEFAULT_REQUEST_TIMEOUT_S
    subscription: SubscriptionConfig = SubscriptionConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    history: HistoryConfig = HistoryConfig()
    namespace: Text | None = None
    node_defaults: NodeDefaults = NodeDefaults()
    nodes: tuple[NodeConfig, ...] = ()

    @field_validator("watchdog")
    @classmethod
    def _silence_beyond_keepalive(
        cls, value: WatchdogConfig, info: ValidationInfo
    ) -> WatchdogConfig:
        subscription: SubscriptionConfig | None = info.data.get("subscription")
        if subscription is not None and value.silence_timeout <= subscription.keepalive_period_s:
            raise ValueError(
                f"silence_timeout ({value.silence_timeout:g} s) must exceed the keep-alive period "
                f"(publishing_interval × keepalive_count = {subscription.keepalive_period_s:g} s), "
                "or a healthy quiet subscription would be taken for a silent one"
            )
        return value

    @field_validator("nodes", mode="wrap")
    @classmethod
    def _nodes_know_namespace(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> tuple[NodeConfig, ...]:
        token = _NAMESPACE_GIVEN.set(info.data.get("namespace") is not None)
        try:
            nodes: tuple[NodeConfig, ...] = handler(value)
        finally:
            _NAMESPACE_GIVEN.reset(token)
        return nodes

    @field_validator("nodes")
    @classmethod
    def _unique(cls, value: tuple[NodeConfig, ...]) -> tuple[NodeConfig, ...]:
        sensors: dict[str, int] = {}
        addresses: dict[str, int] = {}
        for index, node in enumerate(value):
            first = sensors.setdefault(node.sensor_id, index)
            if first != index:
                raise ValueError(
                    f"sensor {node.sensor_id!r} is bound twice (nodes[{first}] and nodes[{index}])"
                )
            first = addresses.setdefault(node.address, index)
            if first != index:
                raise ValueError(
                    f"node {node.address!r} is read twice (nodes[{first}] and nodes[{index}])"
                )
        return value

    def settings(self, node: NodeConfig) -> ResolvedNodeSettings:
        """Return a node's monitored-item settings with the connection's defaults applied."""
        d = self.node_defaults
        return ResolvedNodeSettings(
            sampling_interval=_first(
                node.sampling_interval, d.sampling_interval, DEFAULT_SAMPLING_INTERVAL_S
            ),
            queue_size=int(_first(node.queue_size, d.queue_size, DEFAULT_QUEUE_SIZE)),
            deadband=node.deadband if node.deadband is not None else d.deadband,
            timestamp=node.timestamp or d.timestamp or "source",
        )


@dataclass(frozen=True, slots=True)
class ResolvedNodeSettings:
    """A node's monitored-item settings after the connection's defaults are applied."""

    sampling_interval: float
    queue_size: int
    deadband: float | None
    timestamp: TimestampSource


def _first(*values: float | None) -> float:
    for value in values:
        if value is not None:
            return value
    raise AssertionError("the last value is a default")
