"""The server processes the tests and developers run (Mosquitto, Kafka, QuestDB).

``ServerProcess`` holds what the runners share: the child process, ``running`` and ``pid``,
``launch`` (start the command, wait until the server is ready, fail with the end of its
log), ``stop`` (SIGTERM, then SIGKILL after a timeout), ``kill`` (a crash), ``restart`` on
the same ports and directory, the end of the log for error messages, and use as a context
manager. A runner passes its directory and host to ``__init__``, implements ``start`` and
names its ``log_path``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from devservers._common import StartStop

logger = logging.getLogger(__name__)


def terminate(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Stop with SIGTERM (a controlled shutdown), SIGKILL after ``timeout`` seconds.

    Returns True if the process had to be killed.
    """
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
    return False


def kill(process: subprocess.Popen[bytes]) -> None:
    """Stop with SIGKILL (a crash) and reap the process."""
    if process.poll() is None:
        process.kill()
    process.wait()


class ServerProcess(StartStop, ABC):
    """A local server run as a child process (see the module docstring)."""

    #: Seconds ``stop`` waits after SIGTERM before it kills.
    stop_timeout: ClassVar[float] = 10.0
    #: Lines of the log ``log_tail`` returns by default.
    log_lines: ClassVar[int] = 30
    #: How the server is named in errors, and the error ``launch`` raises.
    name: ClassVar[str] = "server"
    start_error: ClassVar[type[Exception]] = RuntimeError
    directory: Path
    host: str
    log_path: Path
    _process: subprocess.Popen[bytes] | None = None

    def __init__(self, directory: Path, host: str) -> None:
        """Keep the server's files in ``directory`` (resolved, created) and serve on ``host``."""
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self._process = None

    @abstractmethod
    def start(self) -> None:
        """Start the server and return once it serves."""

    def launch(
        self,
        command: list[str],
        *,
        ready: Callable[[], bool],
        waiting_for: str,
        timeout: float,
        output: Path | None = None,
        poll_s: float = 0.05,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start ``command`` and return once ``ready()``; raise ``start_error`` otherwise.

        The child's output goes to ``output`` (appended) or nowhere. It stays in this
        process group, so a killed test run takes the server with it. An exit before it is
        ready, or ``timeout`` seconds without being ready (the server is then killed),
        raise with the end of the log: "<name> exited at start (exit N)" or "<name> did
        not <waiting_for> within <timeout> s".
        """
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(output.open("ab")) if output is not None else None
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out if out is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT if out is not None else subprocess.DEVNULL,
                env=env,
                cwd=cwd,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise self.start_error(
                    f"{self.name} exited at start (exit {code})\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(poll_s)
        self.kill()
        raise self.start_error(
            f"{self.name} did not {waiting_for} within {timeout:g} s\n{self.log_tail()}"
        )

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._process.pid if self.running and self._process is not None else None

    def stop(self, timeout: float | None = None) -> None:
        """Stop with SIGTERM (a controlled shutdown); SIGKILL if it takes over ``timeout``."""
        if self._process is not None:
            limit = self.stop_timeout if timeout is None else timeout
            if terminate(self._process, limit):
                logger.warning("%s did not stop within %g s: killed it", type(self).__name__, limit)
            self._process = None

    def kill(self) -> None:
        """Stop with SIGKILL (a crash): what the server had not saved is lost."""
        if self._process is not None:
            kill(self._process)
            self._process = None

    def restart(self) -> None:
        """Stop (controlled) and start again on the same ports and directory."""
        self.stop()
        self.start()

    def log_tail(self, lines: int | None = None) -> str:
        """Return the end of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-(lines or self.log_lines) :])
