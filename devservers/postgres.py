"""Run a local PostgreSQL server (tests, developers) from the Debian packages.

The excursion record store (SQLAlchemy 2 + Alembic) is tested against a real PostgreSQL,
never a mock. ``PostgresServer(directory)`` finds the binaries of the Debian packages
(``/usr/lib/postgresql/<version>/bin``, the highest version; ``ENVMON_POSTGRES_BIN``
names another directory), creates a cluster with ``initdb`` in ``directory/data`` on first
start (UTF8, C locale, superuser ``postgres`` with a random password kept in
``directory/postgres.password``, SCRAM-SHA-256 for every connection) and runs the
``postgres`` server itself as the child process: TCP on ``127.0.0.1:port`` only, its Unix
socket and lock file in ``directory``, ``fsync`` on, its log in ``directory/postgres.log``.
``start`` returns once ``postmaster.pid`` says "ready" and a real query through psycopg
answers over TCP. A port the runner chose itself that another process took in the meantime
is replaced by a free one (up to three tries) until the server has served once.

PostgreSQL refuses to run as root. Run as root (the test machines and CI are), the runner
creates the system user ``envmon-pg`` once (no login shell, no home), gives it
``directory`` and runs ``initdb`` and ``postgres`` under its uid and gid; directories
above ``directory`` that others may not traverse get the search bit (``o+x``, never read).

``stop`` asks for a fast shutdown (SIGINT: sessions are ended, a checkpoint is written)
and kills after ``stop_timeout``; ``kill`` is a crash (SIGKILL to the postmaster and every
backend). Neither leaves a process of the cluster behind: ``server_pids`` lists them by
their working directory, which PostgreSQL sets to the data directory in every process.
``start`` again on the same directory finds the data, the password and the port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import secrets
import signal
import socket
import stat
import subprocess
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from devservers.process import ServerProcess
from envmon.errors import EnvmonError
from envmon.netutil import free_port

logger = logging.getLogger(__name__)

#: Where Debian's ``postgresql-<version>`` packages put their binaries.
DEBIAN_LIB_DIR: Final = Path("/usr/lib/postgresql")
#: The system user the server runs as when the runner is root (created on first use).
SERVICE_USER: Final = "envmon-pg"
SUPERUSER: Final = "postgres"
#: The database every cluster has (``url`` points there).
MAINTENANCE_DB: Final = "postgres"
DATA_DIR_NAME: Final = "data"
PASSWORD_FILE_NAME: Final = "postgres.password"
LOG_FILE_NAME: Final = "postgres.log"
#: The kernel's limit of a Unix socket path (``sun_path``, less its terminating NUL).
_MAX_SOCKET_PATH: Final = 107
_START_TIMEOUT_S: Final = 60.0
_STOP_TIMEOUT_S: Final = 30.0
_INITDB_TIMEOUT_S: Final = 120.0
_REAP_TIMEOUT_S: Final = 10.0
_POLL_S: Final = 0.05
#: Starts tried when a port the runner chose was taken by another process meanwhile.
_BIND_ATTEMPTS: Final = 3
_PORT_TAKEN: Final = "Address already in use"
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_VERSION_DIR: Final = re.compile(r"\d+(\.\d+)*")
_INSTALL_HINT: Final = "apt-get install postgresql"


class PostgresError(EnvmonError):
    """PostgreSQL is missing, or could not be initialised, started, stopped or queried."""


def identifier(name: str) -> str:
    """Return ``name`` if it is a plain SQL identifier (letters, digits, ``_``), else raise."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier (letters, digits, _; max 63): {name!r}")
    return name


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in path.name.split("."))


def find_bin_dir(lib_dir: Path = DEBIAN_LIB_DIR) -> Path:
    """Return the directory of ``initdb`` and ``postgres``: the highest installed version.

    ``ENVMON_POSTGRES_BIN`` overrides the search. Raises ``PostgresError`` naming the
    Debian package to install when no version is found.
    """
    configured = os.environ.get("ENVMON_POSTGRES_BIN")
    if configured:
        bin_dir = Path(configured).expanduser()
        if not _has_server_binaries(bin_dir):
            raise PostgresError(
                f"ENVMON_POSTGRES_BIN={configured}: no executable initdb and postgres there"
            )
        return bin_dir
    try:
        versions = [
            entry
            for entry in lib_dir.iterdir()
            if _VERSION_DIR.fullmatch(entry.name) and _has_server_binaries(entry / "bin")
        ]
    except OSError:
        versions = []
    if not versions:
        raise PostgresError(
            f"PostgreSQL is not installed: no {lib_dir}/<version>/bin/initdb and postgres"
            f" (Debian: {_INSTALL_HINT})"
        )
    return max(versions, key=_version_key) / "bin"


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "postgres"))


def postgres_installed() -> bool:
    """Tell whether ``find_bin_dir`` finds the PostgreSQL server binaries."""
    try:
        find_bin_dir()
    except PostgresError:
        return False
    return True


def missing() -> str | None:
    """Return what this machine lacks to run PostgreSQL (None when nothing)."""
    if postgres_installed():
        return None
    return "PostgreSQL is not installed (apt-get install postgresql)"


def ensure_service_user(name: str = SERVICE_USER) -> pwd.struct_passwd:
    """Return the system user ``name``, creating it (and its group) if it does not exist.

    Idempotent, and safe against another process creating the same user at the same time.
    Only root can create it.
    """
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    command = [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "envmon local PostgreSQL (tests)",
        name,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresError(f"could not create the system user {name}: {exc}") from exc
    try:
        return pwd.getpwnam(name)  # created here, or by a concurrent run (useradd exit 9)
    except KeyError:
        raise PostgresError(
            f"could not create the system user {name} (exit {done.returncode}):\n"
            f"  {' '.join(command)}\n{done.stdout}{done.stderr}"
        ) from None


def make_traversable(directory: Path) -> None:
    """Give every directory above ``directory`` the search bit for others where it lacks it.

    Only the search bit (``o+x``): the server's user can then reach ``directory`` but still
    list none of its parents (pytest makes ``/tmp/pytest-of-root`` 0700).
    """
    for parent in directory.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            logger.info("adding o+x to %s so the PostgreSQL user can reach its data", parent)
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(Path(dirpath) / name, uid, gid, follow_symlinks=False)


def _process_state(pid: int) -> str | None:
    """Return the state letter of ``pid`` (``R``, ``S``, ``Z``...), None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text.rpartition(")")[2].split()[0]


def _alive(pid: int) -> bool:
    state = _process_state(pid)
    return state is not None and state not in {"Z", "X"}


def processes_in(directory: Path) -> list[int]:
    """Return the ids of the live processes whose working directory is ``directory``.

    Every process of a PostgreSQL cluster (postmaster, backends, checkpointer...) works in
    its data directory, and only the postmaster's command line names it: this finds them
    all, including backends orphaned by a killed postmaster.
    """
    target = str(directory.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone, a zombie, or not ours to look at
            continue
        if cwd == target and _alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def psycopg_conninfo(url: str) -> str:
    """Return a SQLAlchemy ``postgresql+psycopg://`` URL as a libpq URI psycopg accepts."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgresql+psycopg", "postgresql", "postgres"}:
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql://{rest}"


class PostgresServer(ServerProcess):
    """A PostgreSQL cluster in ``directory``, served on ``127.0.0.1:port`` (see the module).

    ``directory`` holds ``data/`` (the cluster), ``postgres.password`` (the superuser's
    password), ``postgres.log`` (initdb's and the server's output) and the Unix socket.
    """

    stop_timeout = _STOP_TIMEOUT_S

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        service_user: str = SERVICE_USER,
    ) -> None:
        super().__init__(directory, host)
        self.port = port if port is not None else free_port(host)
        self._port_is_ours = port is None
        self._served = False
        self.bin_dir = bin_dir
        self.settings = dict(settings or {})
        self.service_user = service_user
        self.superuser = SUPERUSER
        self.data_dir = self.directory / DATA_DIR_NAME
        self.password_path = self.directory / PASSWORD_FILE_NAME
        self.log_path = self.directory / LOG_FILE_NAME
        self._password: str | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def password(self) -> str:
        """The superuser's password (generated at ``initdb``, read from its file after)."""
        if self._password is None:
            try:
                self._password = self.password_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise PostgresError(
                    f"no superuser password yet: {self.password_path} is missing"
                    " (start the server first)"
                ) from exc
        return self._password

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``postgres`` database as the superuser."""
        return self.url_for(MAINTENANCE_DB)

    def url_for(self, database: str, user: str | None = None, password: str | None = None) -> str:
        """Return the SQLAlchemy URL (``postgresql+psycopg://``) of ``database``.

        As the superuser unless ``user`` (with its ``password``) is given.
        """
        name = user if user is not None else self.superuser
        secret = password if password is not None else (self.password if user is None else "")
        credentials = urllib.parse.quote(name, safe="")
        if secret:
            credentials += ":" + urllib.parse.quote(secret, safe="")
        database_part = urllib.parse.quote(database, safe="")
        return f"postgresql+psycopg://{credentials}@{self.host}:{self.port}/{database_part}"

    @property
    def socket_dir(self) -> Path:
        """The directory of the server's Unix socket (its port's lock file is there too)."""
        return self.directory

    @property
    def initialized(self) -> bool:
        """True once ``initdb`` has created the cluster in ``data_dir``."""
        return (self.data_dir / "PG_VERSION").is_file() and self.password_path.is_file()

    # -- running as another user -----------------------------------------------------------

    def _run_as(self) -> pwd.struct_passwd | None:
        """Return the user to run the server as: the service user when root, else None."""
        if os.geteuid() != 0:
            return None
        return ensure_service_user(self.service_user)

    def _user_kwargs(self, account: pwd.struct_passwd | None) -> dict[str, Any]:
        if account is None:
            return {}
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _environment(self, account: pwd.struct_passwd | None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        if account is not None:
            env.update(HOME=str(self.directory), USER=account.pw_name, LOGNAME=account.pw_name)
        return env

    def _prepare_directory(self, account: pwd.struct_passwd | None) -> None:
        if len(str(self.socket_dir / f".s.PGSQL.{self.port}")) > _MAX_SOCKET_PATH:
            raise PostgresError(
                f"{self.socket_dir} is too long for a Unix socket path"
                f" (at most {_MAX_SOCKET_PATH} bytes with .s.PGSQL.{self.port}):"
                " use a shorter directory"
            )
        if account is None:
            return
        make_traversable(self.directory)
        uid, gid = account.pw_uid, account.pw_gid
        os.chown(self.directory, uid, gid)
        for path in (self.data_dir, self.password_path):
            if path.exists() and path.stat().st_uid != uid:
                _chown_tree(path, uid, gid)

    # -- lifecycle -------------------------------------------------------------------------

    def binaries(self) -> Path:
        """Return the directory of the server binaries (found once)."""
        if self.bin_dir is None:
            self.bin_dir = find_bin_dir()
        return self.bin_dir

    def version(self) -> str:
        """Return the version of the server binaries (``postgres --version``)."""
        done = subprocess.run(
            [str(self.binaries() / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout.strip()

    def init_cluster(self) -> None:
        """Create the cluster with ``initdb`` unless ``data_dir`` holds one already."""
        if self.initialized:
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise PostgresError(
                f"{self.data_dir} is not empty but holds no complete cluster"
                f" (or {self.password_path} is missing): remove it to start afresh"
            )
        account = self._run_as()
        self._prepare_directory(account)
        password = secrets.token_urlsafe(24)
        fd = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(password + "\n")
        if account is not None:
            os.chown(self.password_path, account.pw_uid, account.pw_gid)
        command = [
            str(self.binaries() / "initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.superuser,
            "--pwfile",
            str(self.password_path),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        ]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_INITDB_TIMEOUT_S,
                check=False,
                cwd=self.directory,
                env=self._environment(account),
                **self._user_kwargs(account),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.password_path.unlink(missing_ok=True)
            raise PostgresError(f"initdb failed: {exc}\n  command: {' '.join(command)}") from exc
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(done.stdout + done.stderr)
        if done.returncode != 0 or not (self.data_dir / "PG_VERSION").is_file():
            self.password_path.unlink(missing_ok=True)
            output = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise PostgresError(
                f"initdb of {self.data_dir} failed (exit {done.returncode}):\n"
                f"  {' '.join(command)}\n{output}"
            )
        self._password = password

    def command(self) -> list[str]:
        """Return the ``postgres`` command line that serves this cluster."""
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on",
            "logging_collector": "off",
            "log_destination": "stderr",
            **self.settings,
        }
        command = [str(self.binaries() / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Create the cluster if needed, start the server and wait until it answers a query.

        A port chosen by the runner (none was given) that another process took meanwhile is
        replaced by a free one, until the server has served once: it keeps its port then.
        """
        if self.running:
            return
        self.init_cluster()
        account = self._run_as()
        self._prepare_directory(account)
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=self._environment(account),
                    **self._user_kwargs(account),
                )  # same process group: Ctrl-C of a test run is a fast shutdown of the server too
            code = self._wait_ready(self._process, timeout)
            if code is None:
                self._served = True
                return
            self._process = None
            with self.log_path.open("rb") as log:
                log.seek(log_start)
                output = log.read().decode("utf-8", errors="replace")
            if (
                _PORT_TAKEN in output
                and self._port_is_ours
                and not self._served
                and attempt < _BIND_ATTEMPTS
            ):
                logger.info(
                    "port %d was taken meanwhile: starting PostgreSQL on another", self.port
                )
                self.port = free_port(self.host)
                continue
            raise PostgresError(f"postgres exited at start (exit {code})\n{self.log_tail()}")

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> int | None:
        """Wait until the server answers (None) or exits (its exit code); kill at ``timeout``."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                return code
            answer = self._answers() if self._pid_file_ready(process.pid) else "starting"
            if answer is None:
                return None
            last_error = answer
            time.sleep(_POLL_S)
        self.kill()
        raise PostgresError(
            f"PostgreSQL did not answer on {self.host}:{self.port} within {timeout:g} s"
            f" ({last_error})\n{self.log_tail()}"
        )

    def _pid_file_ready(self, pid: int) -> bool:
        """Tell whether ``postmaster.pid`` is the one of ``pid`` and says "ready".

        Checked before connecting: a client would otherwise wait for the greeting of
        whatever else listens on the port, and the postmaster writes "ready" only once it
        accepts connections (line 8 of the file since PostgreSQL 10).
        """
        try:
            lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def _answers(self) -> str | None:
        """Return None once the server runs a query over TCP, else why it did not."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                pass
        except OSError as exc:
            return f"TCP: {exc}"
        try:
            with self.connect(connect_timeout=2) as conn:
                conn.execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            return f"query: {exc}".strip()
        return None

    def server_pids(self) -> list[int]:
        """Return the ids of the live processes of this cluster (postmaster and children)."""
        return processes_in(self.data_dir)

    def stop(self, timeout: float | None = None) -> None:
        """Fast shutdown (SIGINT: sessions end, a checkpoint is written); kill after ``timeout``.

        Returns once no process of the cluster is left.
        """
        process = self._process
        if process is None:
            return
        limit = self.stop_timeout if timeout is None else timeout
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(limit)
            except subprocess.TimeoutExpired:
                logger.warning("PostgreSQL did not stop within %g s: killed it", limit)
                self._kill_all(process)
        self._process = None
        self._reap_leftovers()

    def kill(self) -> None:
        """Crash the server (SIGKILL to every process): recovery replays the WAL at start."""
        process = self._process
        if process is None:
            return
        self._kill_all(process)
        self._process = None
        self._reap_leftovers()

    def _kill_all(self, process: subprocess.Popen[bytes]) -> None:
        children = [pid for pid in self.server_pids() if pid != process.pid]
        if process.poll() is None:
            process.kill()
        process.wait()
        _signal_all(children, signal.SIGKILL)

    def _reap_leftovers(self) -> None:
        """Kill processes of the cluster still alive (orphans) and wait until they are gone."""
        leftovers = self.server_pids()
        if leftovers:
            logger.warning(
                "killing processes left by PostgreSQL in %s: %s", self.data_dir, leftovers
            )
            _signal_all(leftovers, signal.SIGKILL)
        deadline = time.monotonic() + _REAP_TIMEOUT_S
        while leftovers:
            leftovers = [pid for pid in leftovers if _alive(pid)]
            if not leftovers:
                return
            if time.monotonic() > deadline:
                raise PostgresError(f"processes of {self.data_dir} still alive: {leftovers}")
            time.sleep(_POLL_S)

    # -- administration --------------------------------------------------------------------

    def connect(
        self,
        database: str = MAINTENANCE_DB,
        *,
        user: str | None = None,
        password: str | None = None,
        autocommit: bool = True,
        connect_timeout: int = 10,
    ) -> psycopg.Connection[tuple[Any, ...]]:
        """Open a psycopg connection over TCP (as the superuser unless ``user`` is given)."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=database,
            user=user if user is not None else self.superuser,
            password=password if password is not None else (self.password if user is None else ""),
            autocommit=autocommit,
            connect_timeout=connect_timeout,
        )

    def create_database(self, name: str, *, owner: str | None = None) -> str:
        """Create the database ``name`` and return its SQLAlchemy URL (as the superuser)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(identifier(name)))
        if owner is not None:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(identifier(owner)))
        self._execute(statement, f"create database {name}")
        return self.url_for(name)

    def drop_database(self, name: str, *, missing_ok: bool = True) -> None:
        """Drop the database ``name``, ending its open sessions first."""
        statement = sql.SQL("DROP DATABASE {}{} WITH (FORCE)").format(
            sql.SQL("IF EXISTS ") if missing_ok else sql.SQL(""), sql.Identifier(identifier(name))
        )
        self._execute(statement, f"drop database {name}")

    def create_role(self, name: str, password: str | None, login: bool = True) -> None:
        """Create the role ``name`` (no superuser, createdb or createrole rights).

        ``password`` is stored SCRAM-hashed; a role with ``login`` and a password can
        connect over TCP.
        """
        statement = sql.SQL("CREATE ROLE {} WITH {} NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
            sql.Identifier(identifier(name)), sql.SQL("LOGIN" if login else "NOLOGIN")
        )
        if password is not None:
            statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
        self._execute(statement, f"create role {name}")

    def _execute(self, statement: sql.Composed, what: str) -> None:
        try:
            with self.connect() as conn:
                conn.execute(statement)
        except psycopg.Error as exc:
            raise PostgresError(f"could not {what} on {self.host}:{self.port}: {exc}") from exc


def _signal_all(pids: Iterable[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
