"""A real Prometheus Alertmanager for the forwarder's tests (``alerts.alertmanager``).

No Alertmanager release can be downloaded on the test machines, but its source is a Go
module: ``fetch`` runs ``deploy/scripts/alertmanager.sh fetch``, which builds 0.31.1 once
with ``go install …/cmd/alertmanager@v0.31.1`` from the Go module proxy and caches it in
``~/.cache/envmon/alertmanager-0.31.1/bin/`` (later releases lack the embedded web UI in
their module and do not build that way). ``Alertmanager(directory)`` writes a minimal
configuration (one route to a receiver that sends nothing, ``resolve_timeout_s``)
and runs the binary on 127.0.0.1 with clustering off, storage in ``directory``, until
``GET /-/ready`` answers; ``stop`` sends SIGTERM, then SIGKILL. Alertmanager keeps alerts
in memory only: after a restart it has none.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Final

from devservers._common import find_go, http_ok
from devservers.process import ServerProcess
from devservers.versions import DEPLOY, cache_dir, version
from envmon.netutil import free_port

SCRIPT: Final = DEPLOY / "scripts" / "alertmanager.sh"
ALERTMANAGER_VERSION: Final = version("alertmanager")
#: Seconds Alertmanager keeps an alert posted without ``endsAt`` active (its default).
DEFAULT_RESOLVE_TIMEOUT_S: Final = 300.0
_BUILD_TIMEOUT_S: Final = 1200.0
_START_TIMEOUT_S: Final = 30.0
_STOP_TIMEOUT_S: Final = 10.0
_HTTP_TIMEOUT_S: Final = 5.0

CONFIG: Final = """\
# Written by devservers/alertmanager.py: alerts are kept and shown, never sent on.
global:
  resolve_timeout: {resolve_timeout}
route:
  receiver: "null"
receivers:
  - name: "null"
"""


class AlertmanagerServerError(RuntimeError):
    """Alertmanager could not be built or started, or did not answer."""


def cached_binary() -> Path:
    """Return where ``fetch`` puts the binary (whether or not it is there yet)."""
    return cache_dir("alertmanager") / "bin" / "alertmanager"


def buildable() -> bool:
    """Return True if the binary is cached or Go is there to build it."""
    if cached_binary().is_file():
        return True
    return find_go() is not None


def missing() -> str | None:
    """Return what this machine lacks to run Alertmanager (None when nothing)."""
    if buildable():
        return None
    return (
        f"go is not installed and {cached_binary()} is not built"
        " (apt-get install golang-go, then deploy/scripts/alertmanager.sh fetch)"
    )


def fetch() -> Path:
    """Return the path of the binary, building it the first time (the shell script's fetch)."""
    binary = cached_binary()
    if binary.is_file():
        return binary
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), "fetch"],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AlertmanagerServerError(f"could not build alertmanager: {exc}") from exc
    path = Path(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    if done.returncode != 0 or path is None or not path.is_file():
        output = "\n".join(done.stderr.strip().splitlines()[-20:])
        raise AlertmanagerServerError(
            f"could not build alertmanager {ALERTMANAGER_VERSION}"
            f" (exit {done.returncode})\n{output}"
        )
    return path


class Alertmanager(ServerProcess):
    """An Alertmanager on 127.0.0.1 keeping its configuration and storage in ``directory``."""

    stop_timeout = _STOP_TIMEOUT_S
    name = "Alertmanager"
    start_error = AlertmanagerServerError

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        resolve_timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(directory, host)
        self.port = port if port is not None else free_port(host)
        self.resolve_timeout_s = resolve_timeout_s
        self.config_path = self.directory / "alertmanager.yml"
        self.log_path = self.directory / "alertmanager.log"

    @property
    def url(self) -> str:
        """The base URL: the v2 API is under ``/api/v2``."""
        return f"http://{self.host}:{self.port}"

    def command(self, binary: Path) -> list[str]:
        """Return the command line that runs this server."""
        return [
            str(binary),
            f"--config.file={self.config_path}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Start the server and return once ``/-/ready`` answers."""
        if self.running:
            return
        binary = fetch()
        self.config_path.write_text(
            CONFIG.format(resolve_timeout=f"{round(self.resolve_timeout_s * 1000)}ms"),
            encoding="utf-8",
        )
        self.launch(
            self.command(binary),
            ready=self.ready,
            waiting_for="answer /-/ready",
            timeout=timeout,
            output=self.log_path,
            cwd=self.directory,
        )

    def ready(self, timeout: float = 1.0) -> bool:
        """Return True if the server answers ``GET /-/ready`` with 200."""
        return http_ok(f"{self.url}/-/ready", 200, timeout)

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """Return ``GET /api/v2/alerts`` (query parameters from ``filters``, e.g. active="true")."""
        query = f"?{urllib.parse.urlencode(filters)}" if filters else ""
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v2/alerts{query}", timeout=_HTTP_TIMEOUT_S
            ) as response:
                answer: list[dict[str, Any]] = json.loads(response.read())
        except (urllib.error.URLError, OSError) as exc:
            raise AlertmanagerServerError(f"Alertmanager at {self.url}: {exc}") from exc
        return answer

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """``POST /api/v2/alerts`` (what a client such as Prometheus sends)."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S):
                pass
        except (urllib.error.URLError, OSError) as exc:
            raise AlertmanagerServerError(f"Alertmanager at {self.url}: {exc}") from exc
