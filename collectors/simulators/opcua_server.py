"""Simulated OPC-UA equipment: an asyncua server for demos, tests and benchmarks.

``EquipmentServer`` serves the site's cold store as a monitoring gateway would:
``Objects/ColdStore/<instrument>/<channel>`` variables (node ids
``ns=<i>;s=ColdStore.<instrument>.<channel>`` in the namespace ``urn:envmon:simulator``),
each with ``EngineeringUnits`` (EUInformation, UNECE codes) and ``EURange`` properties. On
every tick it writes the equipment model's values (``collectors.simulators.equipment``)
with their source timestamps; a scripted sensor fault becomes ``BadSensorFailure``, and a
scripted communication loss makes the gateway mark the instrument's values
``BadNoCommunication`` once, as real gateways do, and stop updating them.

``SyntheticServer`` serves any number of plain numeric nodes for benchmarks and batch
tests, with a matching collector configuration. Both build on ``OpcUaServer``: endpoint,
security (certificates and policies), users, an optional cap on monitored items per
subscription, an optional history of every variable (``history``: an SQLite file, kept
across restarts, served to HistoryRead; asyncua records it through a subscription that
keeps one value per node every 10 ms), and test hooks (write any value or status, silence
the subscriptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.history_sql import HistorySQLite
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from collectors.simulators.equipment import SimInstrument, Simulation
from envmon.config.opcua import NodeConfig, OpcUaCollectorConfig
from envmon.config.schema import SiteConfig
from envmon.models import Quality
from envmon.sensors import SensorSpec
from envmon.testing import make_spec
from envmon.timeutil import utcnow
from envmon.units import conversion

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT: Final = "opc.tcp://127.0.0.1:4840/envmon/"
#: How long a server started with ``history`` keeps its variables' values.
HISTORY_KEPT: Final = timedelta(days=1)
#: asyncua historizes through a subscription publishing every 10 ms: a server stopping
#: waits this long so that its last writes are in the history, as a gateway's would be.
HISTORY_SETTLE_S: Final = 0.1
DEFAULT_NAMESPACE: Final = "urn:envmon:simulator"
#: Instrument kinds served over OPC-UA (the rest of the site speaks MQTT).
SIMULATED_KINDS: Final = ("freezer", "fridge", "ln2_dewar")
DEFAULT_TICK_S: Final = 1.0
SYNTHETIC_FOLDER: Final = "Synthetic"
_GROUP: Final = 100
_UNECE_NAMESPACE: Final = "http://www.opcfoundation.org/UA/units/un/cefact"
# envmon unit -> (UNECE Rec. 20 common code, display name)
_UNECE: Final[dict[str, tuple[str, str]]] = {
    "degC": ("CEL", "°C"),
    "degF": ("FAH", "°F"),
    "K": ("KEL", "K"),
    "%": ("P1", "%"),
    "%RH": ("P1", "%RH"),
    "Pa": ("PAL", "Pa"),
    "hPa": ("A97", "hPa"),
    "mbar": ("MBR", "mbar"),
    "bar": ("BAR", "bar"),
    "ppm": ("59", "ppm"),
}
_SERVER_STATUS_FOR: Final[dict[Quality, int]] = {
    Quality.GOOD: ua.StatusCodes.Good,
    Quality.UNCERTAIN: ua.StatusCodes.UncertainLastUsableValue,
    Quality.BAD: ua.StatusCodes.BadSensorFailure,
}


def unece_unit_id(code: str) -> int:
    """Return the OPC-UA ``UnitId`` of a UNECE Rec. 20 common code (OPC 10000-8 §5.6.3)."""
    unit_id = 0
    for char in code.upper():
        unit_id = (unit_id << 8) | ord(char)
    return unit_id


def eu_information(unit: str) -> ua.EUInformation:
    """Return the ``EngineeringUnits`` of an envmon unit (UnitId -1 when UNECE has none)."""
    code, display = _UNECE.get(unit, ("", unit))
    return ua.EUInformation(
        NamespaceUri=_UNECE_NAMESPACE,
        UnitId=unece_unit_id(code) if code else -1,
        DisplayName=ua.LocalizedText(display),
        Description=ua.LocalizedText(unit),
    )


def _der(path: Path) -> bytes:
    """Return a certificate file's DER bytes (the file may be PEM or DER)."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return data


def folder_name(area_id: str) -> str:
    """Return the browse name of an area's folder: ``cold-store`` → ``ColdStore``."""
    return "".join(part.capitalize() for part in re.split(r"[-_.\s]+", area_id) if part)


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    """The server's certificate and key, the policies it offers, and the clients it trusts.

    ``policies`` are asyncua ``SecurityPolicyType`` names such as
    ``Basic256Sha256_SignAndEncrypt``; ``NoSecurity`` is offered only when listed.
    ``trusted_clients`` left empty accepts every client certificate.
    """

    certificate: Path
    private_key: Path
    policies: tuple[str, ...] = ("Basic256Sha256_SignAndEncrypt",)
    trusted_clients: tuple[Path, ...] = ()


class _HistoryFile(HistorySQLite):  # type: ignore[misc]  # asyncua is untyped here
    """asyncua's SQLite history, with table names its own checks accept for string node ids.

    asyncua names a node's table after the identifier's ``repr``, whose quotes its SQL
    injection check then refuses: every ``ns=2;s=…`` node would fail to historize.
    """

    def _get_table_name(self, node_id: ua.NodeId) -> str:
        digest = hashlib.sha256(str(node_id.Identifier).encode()).hexdigest()[:32]
        return f"{node_id.NamespaceIndex}_{digest}"

    async def init(self) -> None:
        # asyncua reads its TIMESTAMP columns with sqlite3's default converter, which
        # cannot parse an aware time on a whole second ("…:39+00:00"): the whole history
        # read fails. Python's own ISO parser reads every form the adapter writes.
        sqlite3.register_converter("TIMESTAMP", _iso_timestamp)
        await super().init()


def _iso_timestamp(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode())


class _PasswordUsers(UserManager):  # type: ignore[misc]  # asyncua is untyped here
    """Users by name and password (the simulator's only user store)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self,
        iserver: Any,  # noqa: ANN401 - asyncua's interface
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,  # noqa: ANN401 - asyncua's interface
    ) -> User | None:
        if username is None or self._users.get(username) != password:
            return None
        return User(role=UserRole.User, name=username)


class OpcUaServer:
    """An asyncua server on one endpoint with envmon's simulator namespace, and test hooks."""

    def __init__(
        self,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        namespace: str = DEFAULT_NAMESPACE,
        security: ServerSecurity | None = None,
        users: Mapping[str, str] | None = None,
        max_items_per_subscription: int | None = None,
        advertise_cap: bool = True,
        name: str = "envmon equipment simulator",
        history: Path | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.namespace = namespace
        self.security = security
        self.users = dict(users) if users else None
        self.max_items_per_subscription = max_items_per_subscription
        self.advertise_cap = advertise_cap
        self.name = name
        #: Where the server keeps its variables' values for HistoryRead (across restarts).
        self.history = history
        self.namespace_index = 0
        self._server: Server | None = None
        self._variables: dict[str, ua.NodeId] = {}
        #: Items requested by each CreateMonitoredItems call, in order (for batch tests).
        self.create_calls: list[int] = []

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Build the address space and listen on the endpoint."""
        if self._server is not None:
            return
        server = Server(user_manager=_PasswordUsers(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(self.name)
        await server.set_application_uri(f"urn:envmon:simulator:{urlparse(self.endpoint).port}")
        server.disable_clock(True)
        await self._setup_security(server)
        self.namespace_index = await server.register_namespace(self.namespace)
        self._variables = {}
        self._server = server
        await self.build(server)
        await self._cap(server)
        if self.history is not None:
            storage = _HistoryFile(str(self.history))
            await storage.init()  # the history manager's own init ran with server.init()
            server.iserver.history_manager.set_storage(storage)
        await server.start()
        if self.history is not None:
            await server.historize_node_data_change(
                [server.get_node(node_id) for node_id in self._variables.values()],
                period=HISTORY_KEPT,
            )
        logger.info("OPC-UA simulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        """Stop listening and drop every session."""
        server, self._server = self._server, None
        if server is not None:
            if self.history is not None:
                await asyncio.sleep(HISTORY_SETTLE_S)  # the history stores the last writes
            await server.stop()
            # asyncua closes the connections it knows, then stops listening: a client that
            # connected in between (one retrying) would keep an open socket. Close those too.
            await asyncio.sleep(0)
            for transport in list(server.iserver.asyncio_transports):
                transport.close()

    async def __aenter__(self) -> OpcUaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """True while the server listens."""
        return self._server is not None

    async def build(self, server: Server) -> None:
        """Create the address space (subclasses add their variables here)."""

    async def _setup_security(self, server: Server) -> None:
        security = self.security
        tokens: list[type] = (
            [ua.UserNameIdentityToken] if self.users else [ua.AnonymousIdentityToken]
        )
        server.set_identity_tokens(tokens)
        if security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            return
        await server.load_certificate(str(security.certificate))
        await server.load_private_key(str(security.private_key))
        server.set_security_policy([getattr(ua.SecurityPolicyType, p) for p in security.policies])
        if security.trusted_clients:
            trusted = {_der(Path(path)) for path in security.trusted_clients}

            async def validate(certificate: x509.Certificate, _app: object) -> None:
                if certificate.public_bytes(serialization.Encoding.DER) not in trusted:
                    raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

            server.set_certificate_validator(validate)

    async def _cap(self, server: Server) -> None:
        """Record CreateMonitoredItems calls; refuse items beyond the cap, as limited servers do."""
        cap = self.max_items_per_subscription
        service = server.iserver.subscription_service
        create = service.create_monitored_items

        async def capped(
            params: ua.CreateMonitoredItemsParameters,
        ) -> list[ua.MonitoredItemCreateResult]:
            self.create_calls.append(len(params.ItemsToCreate))
            if cap is None:
                created: list[ua.MonitoredItemCreateResult] = await create(params)
                return created
            sub = service.subscriptions.get(params.SubscriptionId)
            have = len(sub.monitored_item_srv._monitored_items) if sub is not None else 0
            room = max(cap - have, 0)
            accepted = list(params.ItemsToCreate[:room])
            refused = params.ItemsToCreate[room:]
            params.ItemsToCreate = accepted
            results: list[ua.MonitoredItemCreateResult] = await create(params) if accepted else []
            for _ in refused:
                result = ua.MonitoredItemCreateResult()
                result.StatusCode = ua.StatusCode(ua.StatusCodes.BadTooManyMonitoredItems)
                results.append(result)
            return results

        service.create_monitored_items = capped
        if cap is not None and self.advertise_cap:
            await server.write_attribute_value(
                ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription),
                ua.DataValue(ua.Variant(cap, ua.VariantType.UInt32)),
            )

    # ------------------------------------------------------------------ address space

    async def add_variable(
        self,
        key: str,
        parent: Any,  # noqa: ANN401 - an asyncua Node
        browse_name: str,
        *,
        value: object = 0.0,
        variant_type: ua.VariantType = ua.VariantType.Double,
        datatype: ua.NodeId | None = None,
        unit: str | None = None,
        eu_range: tuple[float, float] | None = None,
        description: str = "",
    ) -> str:
        """Add a variable (a Double unless told otherwise) under ``parent``; return its node id.

        The server accepts later writes of the first value's variant type only; a variable
        created with a ``None`` value and a ``datatype`` outside namespace 0 accepts any.
        """
        node_id = ua.NodeId(key, self.namespace_index, ua.NodeIdType.String)
        variable = await parent.add_variable(
            node_id,
            ua.QualifiedName(browse_name, self.namespace_index),
            ua.Variant(value, variant_type) if value is not None else ua.Variant(),
            datatype=datatype,
        )
        if description:
            await variable.write_attribute(
                ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(description)))
            )
        if unit is not None:
            await variable.add_property(
                self.namespace_index, "EngineeringUnits", eu_information(unit)
            )
        if eu_range is not None:
            await variable.add_property(
                self.namespace_index, "EURange", ua.Range(Low=eu_range[0], High=eu_range[1])
            )
        self._variables[key] = node_id
        return self.node_id(key)

    async def add_variables(
        self,
        parent: Any,  # noqa: ANN401 - an asyncua Node
        variables: Sequence[tuple[str, str]],
        *,
        batch: int = 1_000,
    ) -> None:
        """Add plain Double variables (key, browse name) under ``parent`` in bulk (fast)."""
        session = self._require().iserver.isession
        ns = self.namespace_index
        items: list[ua.AddNodesItem] = []
        for key, browse_name in variables:
            attrs = ua.VariableAttributes(
                DisplayName=ua.LocalizedText(browse_name),
                Description=ua.LocalizedText(browse_name),
                Value=ua.Variant(0.0, ua.VariantType.Double),
                DataType=ua.NodeId(ua.ObjectIds.Double),
                ValueRank=ua.ValueRank.Scalar,
                AccessLevel=ua.AccessLevel.CurrentRead.mask,
                UserAccessLevel=ua.AccessLevel.CurrentRead.mask,
            )
            node_id = ua.NodeId(key, ns, ua.NodeIdType.String)
            items.append(
                ua.AddNodesItem(
                    ParentNodeId=parent.nodeid,
                    ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
                    RequestedNewNodeId=node_id,
                    BrowseName=ua.QualifiedName(browse_name, ns),
                    NodeClass=ua.NodeClass.Variable,
                    NodeAttributes=attrs,
                    TypeDefinition=ua.NodeId(ua.ObjectIds.BaseDataVariableType),
                )
            )
            self._variables[key] = node_id
        for start in range(0, len(items), batch):
            for result in await session.add_nodes(items[start : start + batch]):
                result.StatusCode.check()

    def node_id(self, key: str) -> str:
        """Return the node id (string form) of a variable by its key."""
        text: str = self._variables[key].to_string()
        return text

    # ------------------------------------------------------------------ values

    async def write(
        self,
        key: str,
        value: object,
        *,
        status: int = ua.StatusCodes.Good,
        source_timestamp: datetime | None = None,
        variant_type: ua.VariantType | None = None,
    ) -> None:
        """Write one value with a status and source timestamp (``now`` if not given)."""
        await self.write_many([(key, value, status, source_timestamp or utcnow())], variant_type)

    async def write_many(
        self,
        values: Iterable[tuple[str, object, int, datetime]],
        variant_type: ua.VariantType | None = ua.VariantType.Double,
    ) -> None:
        """Write many (key, value, status, source timestamp) at once."""
        server = self._require()
        aspace = server.iserver.aspace
        now = utcnow()
        for key, value, status, ts in values:
            variant = ua.Variant(value, variant_type) if value is not None else ua.Variant()
            data = ua.DataValue(
                variant,
                StatusCode=ua.StatusCode(status),
                SourceTimestamp=ts,
                ServerTimestamp=now,
            )
            result = await aspace.write_attribute_value(
                self._variables[key], ua.AttributeIds.Value, data
            )
            if result is not None and not result.is_good():
                raise ValueError(f"cannot write {value!r} to {key}: {result.name}")

    def silence_subscriptions(self) -> int:
        """Stop every subscription's publishing and keep-alives (test hook); return how many."""
        server = self._require()
        silenced = 0
        for sub in server.iserver.subscription_service.subscriptions.values():
            task = sub._task
            if task is not None:
                task.cancel()
                sub._task = None
                silenced += 1
        return silenced

    @property
    def subscription_count(self) -> int:
        """How many subscriptions the server holds."""
        return len(self._require().iserver.subscription_service.subscriptions)

    def monitored_items_per_subscription(self) -> list[int]:
        """How many monitored items each subscription holds."""
        subs = self._require().iserver.subscription_service.subscriptions.values()
        return [len(sub.monitored_item_srv._monitored_items) for sub in subs]

    def _require(self) -> Server:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return self._server


@dataclass(frozen=True, slots=True)
class SimPoint:
    """One simulated channel in the address space."""

    sensor_id: str
    instrument: str
    folder: str
    channel: str
    unit: str
    key: str

    @property
    def browse_path(self) -> str:
        """The browse path from the Objects folder (bare names: the simulator's namespace)."""
        return f"{self.folder}/{self.instrument}/{self.channel}"


class EquipmentServer(OpcUaServer):
    """The site's freezers, fridges and LN2 dewars as an OPC-UA monitoring gateway."""

    def __init__(
        self,
        simulation: Simulation,
        *,
        units: Mapping[str, str] | None = None,
        kinds: Sequence[str] = SIMULATED_KINDS,
        tick: float = DEFAULT_TICK_S,
        clock: Callable[[], datetime] = utcnow,
        **server: Any,  # noqa: ANN401 - OpcUaServer's keyword arguments
    ) -> None:
        super().__init__(**server)
        self.simulation = simulation
        self.units = dict(units or {})
        self.tick_s = tick
        self.clock = clock
        self.instruments: list[SimInstrument] = [
            i for i in simulation.instruments() if i.kind in kinds
        ]
        self.points: list[SimPoint] = []
        for instrument in self.instruments:
            folder = folder_name(instrument.area)
            for spec in instrument.specs:
                channel = spec.sensor_id.removeprefix(f"{instrument.id}.")
                self.points.append(
                    SimPoint(
                        sensor_id=spec.sensor_id,
                        instrument=instrument.id,
                        folder=folder,
                        channel=channel,
                        unit=self.units.get(spec.sensor_id, spec.unit),
                        key=f"{folder}.{instrument.id}.{channel}",
                    )
                )
        self._by_sensor = {p.sensor_id: p for p in self.points}
        self._specs = {s.sensor_id: s for i in self.instruments for s in i.specs}
        self._ticker: asyncio.Task[None] | None = None
        self._lost: set[str] = set()  # instruments the gateway has lost (communication loss)
        self.ticks = 0

    @classmethod
    def for_site(
        cls,
        site: SiteConfig,
        simulation: Simulation,
        *,
        collector_id: str | None = None,
        **kwargs: Any,  # noqa: ANN401 - the constructor's keyword arguments
    ) -> EquipmentServer:
        """Serve what the site's OPC-UA collector expects: its endpoint and its node units."""
        connections = [
            c for c in site.collectors.opcua if collector_id is None or c.id == collector_id
        ]
        if connections:
            connection = connections[0]
            kwargs.setdefault("endpoint", connection.endpoint)
            kwargs.setdefault("namespace", connection.namespace or DEFAULT_NAMESPACE)
            kwargs.setdefault("units", {n.sensor_id: n.unit for n in connection.nodes if n.unit})
        return cls(simulation, **kwargs)

    def node_id_of(self, sensor_id: str) -> str:
        """Return the node id of a simulated sensor."""
        return self.node_id(self._by_sensor[sensor_id].key)

    async def build(self, server: Server) -> None:
        """Create ColdStore/<instrument>/<channel> with units and ranges, and the first values."""
        ns = self.namespace_index
        folders: dict[str, Any] = {}
        objects: dict[str, Any] = {}
        for instrument in self.instruments:
            folder = folder_name(instrument.area)
            if folder not in folders:
                folders[folder] = await server.nodes.objects.add_folder(
                    ua.NodeId(folder, ns, ua.NodeIdType.String), ua.QualifiedName(folder, ns)
                )
            obj = await folders[folder].add_object(
                ua.NodeId(f"{folder}.{instrument.id}", ns, ua.NodeIdType.String),
                ua.QualifiedName(instrument.id, ns),
            )
            await obj.add_property(ns, "Name", instrument.name)
            await obj.add_property(ns, "Kind", instrument.kind)
            objects[instrument.id] = obj
        for point in self.points:
            spec = self._specs[point.sensor_id]
            await self.add_variable(
                point.key,
                objects[point.instrument],
                point.channel,
                unit=point.unit,
                eu_range=_range(spec, point.unit),
                description=f"{spec.parameter} of {point.instrument}",
            )

    async def start(self) -> None:
        """Start serving and updating the values every tick."""
        await super().start()
        await self.tick()
        if self.tick_s > 0 and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_loop(), name="opcua-simulator-tick")

    async def stop(self) -> None:
        """Stop updating and serving."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await super().stop()

    async def tick(self, now: datetime | None = None) -> None:
        """Write every connected instrument's values at ``now`` (the clock's time if not given)."""
        now = now or self.clock()
        writes: list[tuple[str, object, int, datetime]] = []
        for instrument in self.instruments:
            if not instrument.connected(now):
                # The gateway lost the instrument: it says so once (a status change, which
                # its subscribers receive), then the values stop changing. Without the
                # status a client could not tell a lost device from a steady one.
                if instrument.id not in self._lost:
                    self._lost.add(instrument.id)
                    writes += [
                        (p.key, None, ua.StatusCodes.BadNoCommunication, now)
                        for p in self.points
                        if p.instrument == instrument.id
                    ]
                continue
            self._lost.discard(instrument.id)
            for sensor_id, sim in instrument.read(now).items():
                point = self._by_sensor[sensor_id]
                value = sim.value
                if value is not None and point.unit != self._specs[sensor_id].unit:
                    value = _from_site_unit(value, self._specs[sensor_id].unit, point.unit)
                writes.append((point.key, value, _SERVER_STATUS_FOR[sim.quality], now))
        await self.write_many(writes)
        self.ticks += 1

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.tick_s
            await asyncio.sleep(max(next_at - loop.time(), 0))
            try:
                await self.tick()
            except Exception:
                logger.exception("OPC-UA simulator tick failed")


def _from_site_unit(value: float, site_unit: str, served_unit: str) -> float:
    return conversion(site_unit, served_unit)(value)


def _range(spec: SensorSpec, unit: str) -> tuple[float, float] | None:
    limits = spec.rules.limits
    values = [
        v
        for v in (limits.action_low, limits.alert_low, limits.alert_high, limits.action_high)
        if v is not None
    ]
    if not values or unit != spec.unit:
        return None
    span = max(max(values) - min(values), 10.0)
    return (min(values) - span, max(values) + span)


class SyntheticServer(OpcUaServer):
    """``count`` numeric nodes for benchmarks and batch tests.

    Node ``i`` is ``Objects/Synthetic/g<i // 100>/n<i>`` (asyncua's address space slows down
    with thousands of children under one parent, so they are grouped by a hundred).
    """

    def __init__(self, count: int, **server: Any) -> None:  # noqa: ANN401 - OpcUaServer's kwargs
        super().__init__(**server)
        self.count = count
        self.keys = [f"{SYNTHETIC_FOLDER}.n{i:06d}" for i in range(count)]
        self.updates = 0

    async def build(self, server: Server) -> None:
        """Create the folders and their nodes."""
        ns = self.namespace_index
        root = await server.nodes.objects.add_folder(
            ua.NodeId(SYNTHETIC_FOLDER, ns, ua.NodeIdType.String),
            ua.QualifiedName(SYNTHETIC_FOLDER, ns),
        )
        for start in range(0, self.count, _GROUP):
            name = f"g{start // _GROUP:04d}"
            group = await root.add_folder(
                ua.NodeId(f"{SYNTHETIC_FOLDER}.{name}", ns, ua.NodeIdType.String),
                ua.QualifiedName(name, ns),
            )
            keys = self.keys[start : start + _GROUP]
            await self.add_variables(group, [(key, key.rsplit(".", 1)[1]) for key in keys])

    def browse_path(self, index: int) -> str:
        """Return the browse path of node ``index`` from the Objects folder."""
        return f"{SYNTHETIC_FOLDER}/g{index // _GROUP:04d}/n{index:06d}"

    async def update(self, now: datetime | None = None, value: float | None = None) -> None:
        """Write a new value (by default the update counter) to every node."""
        now = now or utcnow()
        self.updates += 1
        v = float(self.updates) if value is None else value
        await self.write_many((key, v, ua.StatusCodes.Good, now) for key in self.keys)

    def sensor_ids(self) -> list[str]:
        """Return the sensor id each node feeds in ``collector_config``."""
        return [f"synthetic.n{i:06d}" for i in range(self.count)]

    def specs(self) -> list[SensorSpec]:
        """Sensor specs for the synthetic sensors (no limits)."""
        return [make_spec(s, area="synthetic", unit="") for s in self.sensor_ids()]

    def collector_config(
        self,
        collector_id: str = "synthetic",
        **overrides: Any,  # noqa: ANN401 - any field of the configuration
    ) -> OpcUaCollectorConfig:
        """Return a collector configuration reading every node (fields overridable)."""
        nodes = [
            NodeConfig(sensor_id=sensor_id, node_id=f"nsu={self.namespace};s={key}")
            for sensor_id, key in zip(self.sensor_ids(), self.keys, strict=True)
        ]
        data: dict[str, Any] = {"id": collector_id, "endpoint": self.endpoint, "nodes": nodes}
        data.update(overrides)
        return OpcUaCollectorConfig.model_validate(data)
