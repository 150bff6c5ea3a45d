"""Run a local Apache Kafka broker (KRaft, one combined node) for tests and developers.

No Kafka distribution is installed: ``deploy/kafka/pom.xml`` names the broker jars
(``org.apache.kafka:kafka_2.13`` and a Log4j 2 backend), ``fetch_kafka_jars`` has Maven
copy them once into ``~/.cache/envmon/kafka-<version>/libs`` (``ENVMON_KAFKA_HOME``
overrides the directory, ``ENVMON_KAFKA_VERSION`` the version) and every later call finds
them there. ``KafkaBroker(directory, port)`` writes ``server.properties`` into
``directory`` from ``deploy/kafka/server.properties`` — keeping its single-node settings,
replacing the node, listener and path lines — formats the KRaft storage on first start
(``kafka.tools.StorageTool``) and runs ``java -cp 'libs/*' kafka.Kafka`` with a small heap
on 127.0.0.1. ``start`` returns once the broker answers a Metadata request listing itself
(an open port alone is not enough: the listener accepts before the broker has joined the
quorum). ``stop`` ends it with SIGTERM (a controlled shutdown); ``start`` again on the same
directory keeps every topic, record and committed offset. ``kill`` is a crash (SIGKILL):
what was acknowledged is still there after a restart (it is in the OS page cache), the
broker only recovers its logs first. ``deploy/scripts/kafka.sh`` does the same from a
shell.

``KafkaBroker.create_topics`` and ``delete_topics`` manage topics through
``stream.kafka.topics``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devservers._common import find_java
from devservers.process import ServerProcess
from devservers.versions import DEPLOY, cache_dir, version
from envmon.netutil import free_port
from stream.kafka.topics import create_topics, delete_topics

logger = logging.getLogger(__name__)

#: The repository (the tests find ``deploy/`` files through it).
POM: Final = DEPLOY / "kafka" / "pom.xml"
SHIPPED_CONF: Final = DEPLOY / "kafka" / "server.properties"
SHIPPED_LOG_CONF: Final = DEPLOY / "kafka" / "log4j2.properties"
#: Kafka 4.x works with aiokafka >= 0.12 (so faust-streaming); see tests/integration/kafka.
DEFAULT_KAFKA_VERSION: Final = version("kafka")
#: Heap of the broker JVM; ENVMON_KAFKA_HEAP_OPTS overrides it (space-separated options).
DEFAULT_HEAP_OPTS: Final = ("-Xmx512m", "-Xms64m")
#: Further JVM options: one GC thread (the machine has 2 cores shared with the tests).
DEFAULT_JVM_OPTS: Final = ("-XX:+UseSerialGC", "-Djava.awt.headless=true")
NODE_ID: Final = 1
#: Lines of the shipped file that depend on the installation and are replaced here.
SITE_SPECIFIC_KEYS: Final = frozenset(
    {
        "node.id",
        "broker.id",
        "process.roles",
        "listeners",
        "advertised.listeners",
        "controller.listener.names",
        "controller.quorum.voters",
        "controller.quorum.bootstrap.servers",
        "listener.security.protocol.map",
        "inter.broker.listener.name",
        "log.dirs",
        "log.dir",
        "metadata.log.dir",
    }
)
_KAFKA_MAIN: Final = "kafka.Kafka"
_STORAGE_TOOL_MAIN: Final = "kafka.tools.StorageTool"
_COMPLETE_MARKER: Final = ".complete"
_FETCH_TIMEOUT_S: Final = 900.0
_START_TIMEOUT_S: Final = 90.0
_STOP_TIMEOUT_S: Final = 60.0
_POLL_S: Final = 0.1
_VOTERS_RE: Final = re.compile(r"^controller\.quorum\.voters=\d+@[^:]+:(\d+)\s*$", re.MULTILINE)


class KafkaBrokerError(RuntimeError):
    """The broker did not start or stop as asked, or a topic operation failed."""


class KafkaFetchError(KafkaBrokerError):
    """Maven could not resolve the broker jars (the message names the command)."""


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """One broker of a Metadata response."""

    node_id: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What a Metadata request tells about the cluster (no topics asked for)."""

    cluster_id: str | None
    controller_id: int
    brokers: tuple[BrokerInfo, ...]


def kafka_version() -> str:
    """Return the Kafka version to run: ENVMON_KAFKA_VERSION or the default."""
    return os.environ.get("ENVMON_KAFKA_VERSION") or DEFAULT_KAFKA_VERSION


def kafka_home(version: str | None = None) -> Path:
    """Return the directory whose ``libs/`` holds the broker jars.

    ENVMON_KAFKA_HOME, else the cache folder ``kafka-<version>`` (``devservers.versions``).
    """
    configured = os.environ.get("ENVMON_KAFKA_HOME")
    if configured:
        return Path(configured).expanduser()
    return cache_dir("kafka", version or kafka_version())


def missing() -> str | None:
    """Return what this machine lacks to run a broker (None when nothing)."""
    if shutil.which(java_binary()) is None:
        return "java is not installed (apt-get install openjdk-17-jre-headless)"
    if shutil.which("mvn") is None and not jars_present(kafka_home() / "libs"):
        return "no Kafka jars and no mvn to fetch them (apt-get install maven)"
    return None


def java_binary() -> str:
    """Return the java executable: ``$JAVA_HOME/bin/java`` or the one on PATH."""
    return find_java() or "/usr/bin/java"


def jars_present(libs: Path) -> bool:
    """Tell whether ``libs`` holds a complete copy (written by ``fetch_kafka_jars``)."""
    return (libs / _COMPLETE_MARKER).is_file()


def fetch_kafka_jars(
    version: str | None = None, home: Path | None = None, *, timeout: float = _FETCH_TIMEOUT_S
) -> Path:
    """Resolve the broker jars with Maven into ``home/libs`` once; return that directory.

    The copy is made in a temporary directory and renamed when complete, so an
    interrupted download is never taken for a cached one.
    """
    version = version or kafka_version()
    home = home if home is not None else kafka_home(version)
    libs = home / "libs"
    if jars_present(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaFetchError("mvn is not installed (Debian: apt-get install maven)")
    home.mkdir(parents=True, exist_ok=True)
    staging = home / f"libs.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        f"-Dkafka.version={version}",
    ]
    logger.info("resolving Kafka %s jars: %s", version, " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaFetchError(f"timed out after {timeout:g} s: {' '.join(command)}") from exc
    if done.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        output = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise KafkaFetchError(
            f"could not resolve the Kafka {version} jars (exit {done.returncode}):\n"
            f"  {' '.join(command)}\n{output}"
        )
    (staging / _COMPLETE_MARKER).write_text(f"{version}\n", encoding="utf-8")
    try:
        staging.rename(libs)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(staging, ignore_errors=True)
        if not jars_present(libs):
            raise
    return libs


def new_cluster_id() -> str:
    """Return a random KRaft cluster id (a Kafka Uuid: URL-safe base64 of 16 bytes).

    Like Kafka's own ``Uuid.randomUuid``, never one starting with ``-``: the storage tool's
    argument parser would take it for an option (1 format in 64 failed that way).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


def _key(line: str) -> str:
    stripped = line.strip()
    if not stripped or stripped.startswith(("#", "!")):
        return ""
    return re.split(r"\s*[=:]\s*|\s+", stripped, maxsplit=1)[0]


def render_config(
    directory: Path,
    port: int,
    controller_port: int,
    *,
    host: str = "127.0.0.1",
    extra: Mapping[str, str] | None = None,
    shipped: Path = SHIPPED_CONF,
) -> str:
    """Return the shipped settings adapted to one combined node on ``host:port``.

    The controller listens on ``controller_port``; ``extra`` settings come last (Kafka
    takes the last value of a repeated key).
    """
    kept = [
        line
        for line in shipped.read_text(encoding="utf-8").splitlines()
        if _key(line) not in SITE_SPECIFIC_KEYS
    ]
    data = (directory / "data").resolve()
    local = [
        "",
        "# -- local node (written by devservers/kafka.py) --",
        "process.roles=broker,controller",
        f"node.id={NODE_ID}",
        f"controller.quorum.voters={NODE_ID}@{host}:{controller_port}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data}",
    ]
    local += [f"{key}={value}" for key, value in (extra or {}).items()]
    return "\n".join([*kept, *local]) + "\n"


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def _read_string(payload: bytes, offset: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", payload, offset)
    offset += 2
    if length < 0:
        return None, offset
    return payload[offset : offset + length].decode("utf-8"), offset + length


def probe_metadata(host: str, port: int, timeout: float = 2.0) -> ClusterInfo:
    """Send one Metadata request (v4, no topics) and return the brokers and controller.

    A plain socket on purpose: it needs no event loop (``start`` is synchronous and may be
    called from inside one) and no client library. v4 is the oldest version Kafka 4.x still
    serves (KIP-896) and every broker since 0.11 knows it.
    """
    client_id = b"envmon-probe"
    api_metadata, version, correlation_id = 3, 4, 1
    request = struct.pack(">hhih", api_metadata, version, correlation_id, len(client_id))
    request += client_id + struct.pack(">ib", 0, 0)  # topics: [], allow_auto_create: false
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    got_correlation, _throttle, count = struct.unpack_from(">iii", payload, 0)
    if got_correlation != correlation_id:
        raise ConnectionError("unexpected Metadata response")
    offset = 12
    brokers = []
    for _ in range(count):
        (node_id,) = struct.unpack_from(">i", payload, offset)
        broker_host, offset = _read_string(payload, offset + 4)
        (broker_port,) = struct.unpack_from(">i", payload, offset)
        _rack, offset = _read_string(payload, offset + 4)
        brokers.append(BrokerInfo(node_id, broker_host or "", broker_port))
    cluster_id, offset = _read_string(payload, offset)
    (controller_id,) = struct.unpack_from(">i", payload, offset)
    return ClusterInfo(cluster_id, controller_id, tuple(brokers))


class KafkaBroker(ServerProcess):
    """A single-node Kafka (KRaft) on 127.0.0.1 with its data, config and logs in ``directory``.

    ``directory`` holds ``server.properties``, ``data/`` (the log and metadata dirs),
    ``logs/server.log`` and ``stdout.log`` (the JVM's own output).
    """

    stop_timeout = _STOP_TIMEOUT_S
    name = "kafka"
    start_error = KafkaBrokerError

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        controller_port: int | None = None,
        version: str | None = None,
        home: Path | None = None,
        heap_opts: Iterable[str] | None = None,
        extra: Mapping[str, str] | None = None,
        java: str | None = None,
    ) -> None:
        super().__init__(directory, host)
        self.port = port if port is not None else free_port(host)
        self.config_path = self.directory / "server.properties"
        # The controller's address is part of the quorum configuration: keep it on restarts.
        self.controller_port = controller_port or self._previous_controller_port() or 0
        while self.controller_port in (0, self.port):
            self.controller_port = free_port(host)
        self.version = version or kafka_version()
        self.home = home if home is not None else kafka_home(self.version)
        env_heap = os.environ.get("ENVMON_KAFKA_HEAP_OPTS")
        self.heap_opts = tuple(
            heap_opts
            if heap_opts is not None
            else (env_heap.split() if env_heap else DEFAULT_HEAP_OPTS)
        )
        self.extra = dict(extra or {})
        self.java = java or java_binary()
        self.data_dir = self.directory / "data"
        self.logs_dir = self.directory / "logs"
        self.log_path = self.logs_dir / "server.log"
        self.stdout_path = self.directory / "stdout.log"

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string of this broker, ``"127.0.0.1:PORT"``."""
        return f"{self.host}:{self.port}"

    @property
    def libs(self) -> Path:
        """The directory of the broker jars."""
        return self.home / "libs"

    @property
    def formatted(self) -> bool:
        """True once the KRaft storage in ``directory`` is formatted."""
        return (self.data_dir / "meta.properties").is_file()

    def fetch_jars(self) -> Path:
        """Resolve the broker jars with Maven unless they are cached; return ``libs``."""
        return fetch_kafka_jars(self.version, self.home)

    def _previous_controller_port(self) -> int | None:
        try:
            match = _VOTERS_RE.search(self.config_path.read_text(encoding="utf-8"))
        except OSError:
            return None
        return int(match.group(1)) if match else None

    def _java_command(self, main: str, *args: str) -> list[str]:
        return [
            self.java,
            *self.heap_opts,
            *DEFAULT_JVM_OPTS,
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={SHIPPED_LOG_CONF}",
            "-cp",
            f"{self.libs}/*",  # java expands the wildcard itself
            main,
            *args,
        ]

    def write_config(self) -> None:
        """Write ``server.properties`` for this node into ``directory``."""
        self.config_path.write_text(
            render_config(
                self.directory, self.port, self.controller_port, host=self.host, extra=self.extra
            ),
            encoding="utf-8",
        )

    def format_storage(self) -> None:
        """Format the KRaft storage with a new cluster id unless it is formatted already."""
        if self.formatted:
            return
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        command = self._java_command(
            _STORAGE_TOOL_MAIN,
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(self.config_path),
            "--ignore-formatted",
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0 or not self.formatted:
            raise KafkaBrokerError(
                f"formatting {self.data_dir} failed (exit {done.returncode}):\n"
                f"  {' '.join(command)}\n{done.stdout}{done.stderr}"
            )

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Start the broker (fetching jars, formatting) and wait until it serves metadata."""
        if self.running:
            return
        self.fetch_jars()
        self.write_config()
        self.format_storage()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.launch(
            self._java_command(_KAFKA_MAIN, str(self.config_path)),
            ready=self._ready,
            waiting_for=f"serve metadata on {self.bootstrap}",
            timeout=timeout,
            output=self.stdout_path,
            poll_s=_POLL_S,
            cwd=self.directory,
        )

    def _ready(self) -> bool:
        try:
            info = probe_metadata(self.host, self.port, timeout=1.0)
        except (OSError, struct.error):
            return False
        return info.controller_id >= 0 and any(b.port == self.port for b in info.brokers)

    def log_tail(self, lines: int | None = None) -> str:
        """Return the broker log's last errors and end, and the end of the JVM's output.

        The errors come first: a broker that fails to start logs the cause, then a long
        shutdown sequence.
        """
        parts = []
        for path in (self.log_path, self.stdout_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            all_lines = text.splitlines()
            errors = []
            for i, line in enumerate(all_lines):
                if re.match(r"\[[^]]+\] (ERROR|FATAL) ", line):
                    errors.append(line)
                    following = all_lines[i + 1] if i + 1 < len(all_lines) else "["
                    if not following.startswith("["):  # the exception and its message
                        errors.append(following)
            if errors:
                parts.append(f"--- errors in {path} ---\n" + "\n".join(errors[-10:]))
            if text.strip():
                tail = all_lines[-(lines or self.log_lines) :]
                parts.append(f"--- end of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no log)"

    async def create_topics(
        self,
        topics: Mapping[str, int],
        *,
        config: Mapping[str, str] | None = None,
        exist_ok: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """Create topics on this broker: ``{name: partitions}`` (see ``create_topics``)."""
        await create_topics(
            self.bootstrap, topics, config=config, exist_ok=exist_ok, timeout=timeout
        )

    async def delete_topics(
        self, names: Iterable[str], *, missing_ok: bool = True, timeout: float = 30.0
    ) -> None:
        """Delete topics from this broker (see ``delete_topics``)."""
        await delete_topics(self.bootstrap, names, missing_ok=missing_ok, timeout=timeout)
