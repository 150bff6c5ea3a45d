"""Run a local Mosquitto broker with envmon's shipped configuration (tests, benchmarks).

``Mosquitto(directory, port)`` writes ``mosquitto.conf`` into ``directory`` from
``deploy/mosquitto/mosquitto.conf`` — keeping its durability and queue settings, replacing
the site-specific lines (listeners, paths, authentication, logging) — and runs the Debian
``mosquitto`` binary on 127.0.0.1. ``stop`` ends it with SIGTERM, so it saves its
persistence database; ``start`` again on the same directory and port resumes the sessions
and queued messages. ``deploy/scripts/mosquitto.sh`` does the same from a shell.

``publish_all`` loads a broker with QoS 1 messages and returns only once every one was
acknowledged. (``mosquitto_pub -l`` cannot be used for that: when its input ends it
disconnects with messages still in flight, which are lost — about two thirds of a
100,000-line burst here.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from devservers.process import ServerProcess
from devservers.versions import DEPLOY
from envmon.netutil import free_port

SHIPPED_CONF: Final = DEPLOY / "mosquitto" / "mosquitto.conf"
DEFAULT_BINARY: Final = "/usr/sbin/mosquitto"
#: Lines of the shipped file that depend on the installation and are replaced here.
SITE_SPECIFIC_KEYS: Final = frozenset(
    {
        "listener",
        "port",
        "bind_address",
        "persistence_location",
        "password_file",
        "acl_file",
        "allow_anonymous",
        "cafile",
        "capath",
        "certfile",
        "keyfile",
        "require_certificate",
        "use_identity_as_username",
        "tls_version",
        "log_dest",
        "pid_file",
        "user",
        "include_dir",
    }
)
_START_TIMEOUT_S: Final = 10.0
_POLL_S: Final = 0.01


class MosquittoError(RuntimeError):
    """The broker did not start or stop as asked (the message ends with its log)."""


@dataclass(frozen=True, slots=True)
class MosquittoTls:
    """A TLS listener: the CA that signs client certificates, the server's key pair."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = True


def mosquitto_binary() -> str:
    """Return the path of the mosquitto executable."""
    return shutil.which("mosquitto") or DEFAULT_BINARY


def _key(line: str) -> str:
    parts = line.split(maxsplit=1)
    return parts[0] if parts else ""


def missing() -> str | None:
    """Return what this machine lacks to run Mosquitto (None when nothing)."""
    if shutil.which(mosquitto_binary()) is None:
        return "mosquitto is not installed (apt-get install mosquitto)"
    return None


def render_config(
    directory: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    tls: MosquittoTls | None = None,
    password_file: Path | None = None,
    extra: str = "",
    shipped: Path = SHIPPED_CONF,
) -> str:
    """Return the shipped configuration adapted to a local broker on ``host:port``.

    Without a ``password_file`` anonymous clients are allowed.
    """
    kept = [
        line
        for line in shipped.read_text(encoding="utf-8").splitlines()
        if _key(line) not in SITE_SPECIFIC_KEYS
    ]
    local = [
        "",
        "# -- local broker (written by devservers/mosquitto.py) --",
        f"listener {port} {host}",
        "allow_anonymous " + ("false" if password_file is not None else "true"),
        f"persistence_location {directory.resolve()}/",
        f"log_dest file {directory.resolve() / 'mosquitto.log'}",
    ]
    if os.geteuid() == 0:
        # As root, Mosquitto switches to the 'mosquitto' user, which cannot write here.
        local.append("user root")
    if password_file is not None:
        local.append(f"password_file {password_file.resolve()}")
    if tls is not None:
        local += [
            f"cafile {tls.cafile}",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            f"require_certificate {'true' if tls.require_certificate else 'false'}",
        ]
    if extra:
        local.append(extra)
    return "\n".join([*kept, *local]) + "\n"


class Mosquitto(ServerProcess):
    """A Mosquitto process on 127.0.0.1 with persistence in ``directory``."""

    log_lines = 20
    name = "mosquitto"
    start_error = MosquittoError

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        tls: MosquittoTls | None = None,
        password_file: Path | None = None,
        extra: str = "",
        binary: str | None = None,
    ) -> None:
        super().__init__(directory, host)
        self.port = port if port is not None else free_port(host)
        self.tls = tls
        self.password_file = password_file
        self.extra = extra
        self.binary = binary or mosquitto_binary()
        self.config_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        self.config_path.write_text(
            render_config(
                self.directory,
                self.port,
                host=self.host,
                tls=self.tls,
                password_file=self.password_file,
                extra=self.extra,
            ),
            encoding="utf-8",
        )
        self.launch(
            [self.binary, "-c", str(self.config_path)],
            ready=self._listens,
            waiting_for="listen",
            timeout=timeout,
            poll_s=_POLL_S,
        )

    def _listens(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def save(self) -> None:
        """Ask the broker to write its persistence database now (SIGUSR1)."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGUSR1)


def publish_all(
    host: str,
    port: int,
    messages: Iterable[tuple[str, bytes]],
    *,
    qos: int = 1,
    window: int = 10_000,
    client_id: str = "",
    timeout: float = 60.0,
    tls: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
) -> int:
    """Publish (topic, payload) pairs; return the count once the broker acknowledged all.

    At most ``window`` messages are unacknowledged at a time (paho's message ids wrap at
    65,535). Raises ``MosquittoError`` when the connection fails or ``timeout`` passes.
    """
    if not 0 < window < 60_000:
        raise ValueError("window must be between 1 and 59,999")
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=False,
    )
    # No paho in-flight limit: paho rescans every queued message on each PUBACK when one is
    # set (quadratic); the window below bounds what is unacknowledged instead.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    if tls is not None:
        client.tls_set_context(tls)
    if username is not None:
        client.username_pw_set(username, password)
    done = {"acked": 0, "sent": 0, "connected": 0}

    def on_connect(*_: object) -> None:
        done["connected"] = 1

    def on_publish(
        _client: paho.Client, _u: object, _mid: int, _rc: ReasonCode, _p: object
    ) -> None:
        done["acked"] += 1

    client.on_connect = on_connect
    client.on_publish = on_publish
    deadline = time.monotonic() + timeout

    def pump(until: Callable[[], bool]) -> None:
        while not until():
            if time.monotonic() > deadline:
                raise MosquittoError(f"publishing to {host}:{port} timed out")
            if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise MosquittoError(f"lost the connection to {host}:{port} while publishing")

    client.connect(host, port)
    try:
        pump(lambda: bool(done["connected"]))
        for topic, payload in messages:
            info = client.publish(topic, payload, qos)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise MosquittoError(f"publish failed: {paho.error_string(info.rc)}")
            done["sent"] += 1
            if qos and done["sent"] - done["acked"] >= window:
                pump(lambda: done["sent"] - done["acked"] < window // 2)
        if qos:
            pump(lambda: done["acked"] >= done["sent"])
        client.disconnect()
        client.loop(0.05)
    finally:
        client.socket() is not None and client.disconnect()
    return done["sent"]
