r"""Run a local QuestDB (tests, benchmarks): a real server that speaks the InfluxDB v2 write API.

InfluxDB cannot be installed on the test machines; QuestDB can — it is one jar on Maven
Central (``org.questdb:questdb``, native libraries for linux-x86-64 inside) that runs on
the machine's Java 17, and it accepts InfluxDB v2 clients on ``POST /api/v2/write``. It is
queried with its own SQL over HTTP (``GET /exec?query=…``), which ``QuestDB.sql`` wraps.

``QuestDB(directory, http_port)`` resolves the jar once with Maven
(``deploy/questdb/pom.xml``, cached in ``~/.cache/envmon/questdb-<version>/``), writes
``directory/conf/server.conf`` and runs ``java -cp questdb.jar io.questdb.ServerMain -d
directory`` with a small heap on 127.0.0.1: HTTP on ``http_port``, the PostgreSQL wire
protocol on ``pg_port`` if one is given, everything else (ILP over TCP and UDP, the
minimal health server, telemetry) off. ``stop`` sends SIGTERM (QuestDB closes its tables
and exits); ``start`` again on the same directory and port finds the data.
``deploy/scripts/questdb.sh`` does the same from a shell.

What the tests rely on (QuestDB 9.3):

- ILP over HTTP into a table created up front (``create_readings_table``) fills the
  table's designated timestamp column whatever its name (here ``time``); string fields go
  into SYMBOL columns. A table that does not exist is created by the first write, with a
  designated timestamp named ``timestamp`` and no deduplication — so create it first.
- One request is one transaction per table: a request with one bad line is refused whole
  (400) and stores nothing. The answer is JSON:
  ``{"code":"invalid","message":"failed to parse line protocol:errors encountered on
  line(s):\nerror in line 2: table: reading, column: value; cast error from protocol type:
  STRING to column type: DOUBLE","line":2,"errorId":"…"}``.
- The table is a WAL table: a write is acknowledged (204) once it is in the write-ahead
  log and becomes visible to SQL a little later. Read back with a deadline
  (``wait_applied`` or polling), never after a fixed sleep.
- ``Content-Encoding: gzip`` and ``precision=us`` are understood; ``org``, ``bucket`` and
  the token are ignored (no authentication is configured).
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any, Final

from devservers._common import find_java, http_json, run_fetch, staging_beside
from devservers.process import ServerProcess
from devservers.versions import DEPLOY, cache_dir
from devservers.versions import version as pinned_version
from envmon.errors import EnvmonError
from envmon.netutil import free_port
from stream.timeseries import schema as tsschema
from stream.timeseries.questdb import readings_table_ddl, table_name

POM: Final = DEPLOY / "questdb" / "pom.xml"
DEFAULT_HEAP: Final = "256m"
_START_TIMEOUT_S: Final = 60.0
_STOP_TIMEOUT_S: Final = 30.0
_POLL_S: Final = 0.05
_SQL_TIMEOUT_S: Final = 30.0


class QuestDBError(EnvmonError):
    """QuestDB could not be fetched, started or stopped, or refused a SQL statement."""


def questdb_version() -> str:
    """Return the QuestDB version pinned in ``deploy/versions.env``."""
    return pinned_version("questdb")


def default_cache_dir(version: str) -> Path:
    """Return where the jar of ``version`` is kept between runs (``…/questdb-<version>``)."""
    return cache_dir("questdb", version)


def missing() -> str | None:
    """Return what this machine lacks to run QuestDB (None when nothing)."""
    if shutil.which("java") is None:
        return "java is not installed (apt-get install openjdk-17-jre-headless)"
    if shutil.which("mvn") is None and not default_cache_dir(questdb_version()).is_dir():
        return "mvn is not installed (apt-get install maven)"
    return None


def fetch_command(output: Path, pom: Path = POM) -> list[str]:
    """Return the Maven command that copies the QuestDB jar into ``output``."""
    return [
        shutil.which("mvn") or "mvn",
        "-B",
        "-q",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output}",
        f"-Dquestdb.version={questdb_version()}",
        "-DincludeScope=runtime",
    ]


def fetch(cache_dir: Path | None = None, pom: Path = POM) -> Path:
    """Return the path of the QuestDB jar, resolving it from Maven Central the first time.

    The jar is copied into a temporary folder beside the cache and renamed into place, so
    an interrupted download never looks like a cached jar.
    """
    version = questdb_version()
    cache = cache_dir if cache_dir is not None else default_cache_dir(version)
    jar = cache / f"questdb-{version}.jar"
    if jar.is_file():
        return jar
    with staging_beside(cache) as staging:
        fetched = staging / jar.name
        run_fetch(
            fetch_command(staging, pom),
            produces=fetched,
            failed=f"could not fetch QuestDB {version}",
            source=" from Maven Central",
            error=QuestDBError,
            timeout=600,
        )
        cache.mkdir(exist_ok=True)
        os.replace(fetched, jar)
    return jar


def java_binary() -> str:
    """Return the path of the java executable (``$JAVA_HOME/bin/java`` first)."""
    found = find_java()
    if found is None:
        raise QuestDBError("java is not installed (Debian: apt-get install openjdk-17-jre)")
    return found


def render_config(
    http_port: int, *, host: str = "127.0.0.1", pg_port: int | None = None, extra: str = ""
) -> str:
    """Return ``server.conf`` for a local server: HTTP on ``host:http_port``, the rest off.

    ``pg_port`` enables the PostgreSQL wire protocol there (Grafana's QuestDB data source
    uses it); ``extra`` is appended verbatim (``key=value`` lines).
    """
    lines = [
        "# written by devservers/questdb.py: a local QuestDB for envmon's tests",
        "config.validation.strict=true",
        f"http.net.bind.to={host}:{http_port}",
        "http.min.enabled=false",
        "line.tcp.enabled=false",
        "line.udp.enabled=false",
        "telemetry.enabled=false",
        "metrics.enabled=false",
    ]
    if pg_port is None:
        lines.append("pg.enabled=false")
    else:
        lines += ["pg.enabled=true", f"pg.net.bind.to={host}:{pg_port}"]
    if extra:
        lines.append(extra.strip())
    return "\n".join(lines) + "\n"


class QuestDB(ServerProcess):
    """A QuestDB process on 127.0.0.1 keeping its data and configuration in ``directory``."""

    stop_timeout = _STOP_TIMEOUT_S
    name = "QuestDB"
    start_error = QuestDBError

    def __init__(
        self,
        directory: Path,
        http_port: int | None = None,
        *,
        host: str = "127.0.0.1",
        pg_port: int | None = None,
        heap: str = DEFAULT_HEAP,
        extra: str = "",
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(directory, host)
        self.http_port = http_port if http_port is not None else free_port(host)
        self.pg_port = pg_port
        self.heap = heap
        self.extra = extra
        self.cache_dir = cache_dir
        self.config_path = self.directory / "conf" / "server.conf"
        self.log_path = self.directory / "questdb.log"
        self._jar: Path | None = None

    @property
    def url(self) -> str:
        """The HTTP base URL: the InfluxDB v2 write API and SQL both live under it."""
        return f"http://{self.host}:{self.http_port}"

    def fetch(self) -> Path:
        """Return the jar, resolving it with Maven the first time (cached between runs)."""
        if self._jar is None:
            self._jar = fetch(self.cache_dir)
        return self._jar

    def command(self) -> list[str]:
        """Return the java command line that runs this server."""
        return [
            java_binary(),
            "-Xms32m",
            f"-Xmx{self.heap}",
            "-XX:+UseParallelGC",
            "-Dfile.encoding=UTF-8",
            "-cp",
            str(self.fetch()),
            "io.questdb.ServerMain",
            "-d",
            str(self.directory),
        ]

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Start the server and wait until its HTTP endpoint answers SQL."""
        if self.running:
            return
        command = self.command()
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(self.http_port, host=self.host, pg_port=self.pg_port, extra=self.extra),
            encoding="utf-8",
        )
        self.launch(
            command,
            ready=self._answers,
            waiting_for="answer SQL",
            timeout=timeout,
            output=self.log_path,
            poll_s=_POLL_S,
        )

    def _answers(self) -> bool:
        try:
            self.sql("SELECT 1", timeout=1.0)
        except (QuestDBError, OSError):
            return False
        return True

    def sql(self, query: str, *, timeout: float = _SQL_TIMEOUT_S) -> list[list[Any]]:
        """Run one SQL statement through ``/exec`` and return its rows (lists of JSON values).

        A DDL statement returns ``[]``. Raises ``QuestDBError`` with QuestDB's message
        when the statement is refused.
        """
        return self._exec(query, timeout)[1]

    def sql_dicts(self, query: str, *, timeout: float = _SQL_TIMEOUT_S) -> list[dict[str, Any]]:
        """Run one SQL query and return its rows as dictionaries by column name."""
        columns, rows = self._exec(query, timeout)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def _exec(self, query: str, timeout: float) -> tuple[list[str], list[list[Any]]]:
        url = f"{self.url}/exec?" + urllib.parse.urlencode({"query": query})
        body = http_json(
            url, timeout=timeout, error=QuestDBError, refused=f"QuestDB refused {query!r}"
        )
        columns = [column["name"] for column in body.get("columns", [])]
        return columns, body.get("dataset", [])

    def wait_applied(self, table: str, timeout: float = 30.0) -> None:
        """Wait until every acknowledged write to the WAL ``table`` is visible to SQL."""
        deadline = time.monotonic() + timeout
        while True:
            query = (
                "SELECT suspended, writerTxn, sequencerTxn, errorMessage FROM wal_tables()"
                f" WHERE name = '{table_name(table)}'"
            )
            rows = self.sql_dicts(query)
            if rows:
                row = rows[0]
                if row["suspended"]:
                    raise QuestDBError(f"table {table} is suspended: {row['errorMessage']}")
                if row["writerTxn"] >= row["sequencerTxn"]:
                    return
            if time.monotonic() > deadline:
                raise QuestDBError(f"writes to {table} not applied within {timeout:g} s")
            time.sleep(_POLL_S)


def create_readings_table(server: QuestDB, table: str = tsschema.MEASUREMENT) -> None:
    """Create the readings table (if missing) before anything writes to it."""
    server.sql(readings_table_ddl(table))
