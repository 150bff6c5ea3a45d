r"""A real InfluxDB for tests and development.

**The server.** ``InfluxDB(directory, http_port)`` runs InfluxDB 1.8.10 on 127.0.0.1. No
InfluxDB release can be downloaded on the test machines, but its source is a Go module:
``fetch`` builds ``influxd`` once with ``go install …/cmd/influxd@v1.8.10`` from the Go module
proxy (about a minute on two cores) into ``~/.cache/envmon/influxdb-1.8.10/bin/`` (the module
sources go to ``~/.cache/envmon/gomod``, shared by later versions). ``start`` renders
``deploy/influxdb/influxdb.conf.template`` into ``directory/influxdb.conf`` (HTTP on
``http_port``, the backup RPC service on ``rpc_port``, data, WAL and meta under
``directory``, reporting, monitoring, continuous queries and pprof off, Flux on), runs
``influxd run -config …``, waits for ``GET /ping`` to answer 204 (about 4 s: Flux starts
with the server) and creates the database ``envmon`` (InfluxQL, idempotent). ``stop``
sends SIGTERM; ``start`` again on the same directory finds the data.
``deploy/scripts/influxdb.sh`` does the same from a shell.

InfluxDB 1.8 serves the v2 API that envmon speaks: ``POST /api/v2/write`` (what
``stream.timeseries.influxdb.InfluxWriter`` writes with) and ``POST /api/v2/query`` (Flux), with the
bucket ``database/retention-policy`` (``envmon/autogen``, ``InfluxDB.bucket``), any
organisation (``-``) and, without authentication, any token. A point is identified by its
series and time, so writing it again overwrites it; a field written with another type than
the series has in its shard is refused with 400 ("field type conflict") while the rest of
the request is stored ("partial write").

The production adapter (``InfluxWriter``, ``InfluxSeriesReader``) is
``stream.timeseries.influxdb``.

Errors::

    EnvmonError
     └── InfluxDBServerError   influxd could not be built, started or asked (the runner)
"""

from __future__ import annotations

import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from string import Template
from typing import Any, Final

from devservers._common import find_go, http_json, http_ok, run_fetch, staging_beside
from devservers.process import ServerProcess
from devservers.versions import DEPLOY, cache_dir, cache_root, version
from envmon.errors import EnvmonError
from envmon.netutil import free_port

logger = logging.getLogger(__name__)

CONFIG_TEMPLATE: Final = DEPLOY / "influxdb" / "influxdb.conf.template"
INFLUXDB_VERSION: Final = version("influxdb")
#: The Go package of the server binary (the module is github.com/influxdata/influxdb).
INFLUXD_PACKAGE: Final = "github.com/influxdata/influxdb/cmd/influxd"
DEFAULT_DATABASE: Final = "envmon"
#: InfluxDB 1.8's default retention policy: the compatibility API's bucket is ``db/rp``.
DEFAULT_RETENTION_POLICY: Final = "autogen"
#: The organisation InfluxDB 1.8's compatibility API expects (it ignores it).
COMPAT_ORG: Final = "-"
DEFAULT_LOG_LEVEL: Final = "warn"
_BUILD_TIMEOUT_S: Final = 1200.0
_START_TIMEOUT_S: Final = 60.0
_STOP_TIMEOUT_S: Final = 30.0
_POLL_S: Final = 0.05
_HTTP_TIMEOUT_S: Final = 30.0
_DATABASE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,126}")
_TOML_ESCAPES: Final = str.maketrans({"\\": "\\\\", '"': '\\"'})


class InfluxDBServerError(EnvmonError):
    """InfluxDB could not be built, started or stopped, or refused an InfluxQL statement."""


# --- the server ------------------------------------------------------------------------


def influxdb_version() -> str:
    """Return the InfluxDB version the tests and ``deploy/scripts/influxdb.sh`` run."""
    return INFLUXDB_VERSION


def default_cache_dir(version: str) -> Path:
    """Return where ``influxd`` of ``version`` is kept between runs (``…/influxdb-<version>``)."""
    return cache_dir("influxdb", version)


def default_module_cache() -> Path:
    """Return the Go module cache the build uses (``…/gomod``, shared by every version)."""
    return cache_root() / "gomod"


def cached_binary(cache_dir: Path | None = None, version: str = INFLUXDB_VERSION) -> Path:
    """Return where ``fetch`` puts ``influxd`` (whether or not it is there yet)."""
    cache = cache_dir if cache_dir is not None else default_cache_dir(version)
    return cache / "bin" / "influxd"


def go_binary() -> str:
    """Return the path of the go command (on ``PATH``, else the official ``/usr/local/go``)."""
    found = find_go()
    if found is None:
        raise InfluxDBServerError(
            "go is not installed: it builds influxd once from the Go module proxy"
            " (Debian: apt-get install golang-go)"
        )
    return found


def missing() -> str | None:
    """Return what this machine lacks to run InfluxDB (None when nothing)."""
    if cached_binary().is_file():
        return None
    try:
        go_binary()
    except InfluxDBServerError:
        return (
            f"go is not installed and {cached_binary()} is not built"
            " (apt-get install golang-go, then deploy/scripts/influxdb.sh fetch)"
        )
    return None


def build_command(version: str = INFLUXDB_VERSION) -> list[str]:
    """Return the ``go install`` command that builds ``influxd`` of ``version``."""
    branch = ".".join(version.split(".")[:2])
    ldflags = f"-X main.version={version} -X main.branch={branch} -X main.commit=v{version}"
    return [go_binary(), "install", "-ldflags", ldflags, f"{INFLUXD_PACKAGE}@v{version}"]


def fetch(cache_dir: Path | None = None, version: str = INFLUXDB_VERSION) -> Path:
    """Return the path of ``influxd``, building it from the Go module proxy the first time.

    The binary is installed into a temporary folder beside the cache and renamed into
    place, so an interrupted build never looks like a cached binary.
    """
    binary = cached_binary(cache_dir, version)
    if binary.is_file():
        return binary
    command = build_command(version)
    logger.info("building influxd %s with %s (once; about a minute)", version, command[0])
    with staging_beside(binary.parent.parent) as staging:
        env = dict(os.environ)
        env.update(
            GOBIN=str(staging),
            GOMODCACHE=str(default_module_cache()),
            # Two packages at a time bounds the memory of the build; -modcacherw leaves the
            # module cache removable without chmod.
            GOFLAGS="-p=2 -modcacherw",
            # Build with the machine's Go: never download another toolchain.
            GOTOOLCHAIN="local",
        )
        built = staging / "influxd"
        run_fetch(
            command,
            produces=built,
            failed=f"could not build influxd {version}",
            error=InfluxDBServerError,
            timeout=_BUILD_TIMEOUT_S,
            env=env,
            cwd=staging,  # outside any Go module of the caller
        )
        binary.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, binary)
    return binary


def database_name(name: str) -> str:
    """Return ``name`` if it is a plain database name (letters, digits, ``_ -``), else raise."""
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


def render_config(
    directory: Path,
    http_port: int,
    rpc_port: int,
    *,
    host: str = "127.0.0.1",
    log_level: str = DEFAULT_LOG_LEVEL,
    template: Path = CONFIG_TEMPLATE,
) -> str:
    """Return ``influxdb.conf`` for a local server keeping everything in ``directory``."""
    values = {
        "VERSION": INFLUXDB_VERSION,
        "DIR": str(directory),
        "HOST": host,
        "HTTP_PORT": str(http_port),
        "RPC_PORT": str(rpc_port),
        "LOG_LEVEL": log_level,
    }
    escaped = {key: value.translate(_TOML_ESCAPES) for key, value in values.items()}
    return Template(template.read_text("utf-8")).substitute(escaped)


class InfluxDB(ServerProcess):
    """An InfluxDB 1.8 process on 127.0.0.1 keeping its data and configuration in ``directory``."""

    stop_timeout = _STOP_TIMEOUT_S
    name = "InfluxDB"
    start_error = InfluxDBServerError

    def __init__(
        self,
        directory: Path,
        http_port: int | None = None,
        *,
        host: str = "127.0.0.1",
        rpc_port: int | None = None,
        database: str = DEFAULT_DATABASE,
        log_level: str = DEFAULT_LOG_LEVEL,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(directory, host)
        self.http_port = http_port if http_port is not None else free_port(host)
        self.rpc_port = rpc_port if rpc_port is not None else free_port(host)
        self.database = database_name(database)
        self.log_level = log_level
        self.cache_dir = cache_dir
        self.config_path = self.directory / "influxdb.conf"
        self.log_path = self.directory / "influxdb.log"
        self._binary: Path | None = None

    @property
    def url(self) -> str:
        """The HTTP base URL: the v2 write and query APIs and InfluxQL all live under it."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def bucket(self) -> str:
        """The v2 API's bucket of the database: ``database/autogen``."""
        return f"{self.database}/{DEFAULT_RETENTION_POLICY}"

    @property
    def org(self) -> str:
        """The organisation the v2 API expects (InfluxDB 1.8 ignores it)."""
        return COMPAT_ORG

    @property
    def token(self) -> str:
        """The token of the v2 API: none, authentication is off."""
        return ""

    def fetch(self) -> Path:
        """Return ``influxd``, building it the first time (cached between runs)."""
        if self._binary is None:
            self._binary = fetch(self.cache_dir)
        return self._binary

    def command(self) -> list[str]:
        """Return the command line that runs this server."""
        return [str(self.fetch()), "run", "-config", str(self.config_path)]

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Start the server, wait until it answers ``/ping`` and create the database."""
        if self.running:
            return
        command = self.command()
        self.config_path.write_text(
            render_config(
                self.directory,
                self.http_port,
                self.rpc_port,
                host=self.host,
                log_level=self.log_level,
            ),
            encoding="utf-8",
        )
        # influxd lets INFLUXDB_* variables override its configuration: not ours.
        env = {key: value for key, value in os.environ.items() if not key.startswith("INFLUXDB_")}
        self.launch(
            command,
            ready=self.ping,
            waiting_for="answer /ping",
            timeout=timeout,
            output=self.log_path,
            poll_s=_POLL_S,
            env=env,
        )
        self.influxql(f'CREATE DATABASE "{self.database}"')

    def ping(self, timeout: float = 1.0) -> bool:
        """Return True if the server answers ``GET /ping`` with 204."""
        return http_ok(f"{self.url}/ping", 204, timeout)

    def influxql(self, statement: str, *, timeout: float = _HTTP_TIMEOUT_S) -> list[dict[str, Any]]:
        """Run InfluxQL (``POST /query``, in the database) and return the JSON ``results``.

        Raises ``InfluxDBServerError`` with InfluxDB's message when the statement is refused.
        """
        body = urllib.parse.urlencode({"q": statement, "db": self.database}).encode()
        request = urllib.request.Request(f"{self.url}/query", data=body, method="POST")
        refused = f"InfluxDB refused {statement!r}"
        try:
            answer = http_json(request, timeout=timeout, error=InfluxDBServerError, refused=refused)
        except (urllib.error.URLError, OSError) as exc:
            raise InfluxDBServerError(f"InfluxDB at {self.url} did not answer: {exc}") from exc
        results: list[dict[str, Any]] = answer.get("results", [])
        for result in results:
            if "error" in result:
                raise InfluxDBServerError(f"{refused}: {result['error']}")
        return results
