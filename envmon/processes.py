"""The server processes the tests and developers run (Mosquitto, Kafka, QuestDB).

``ServerProcess`` holds what the three runners share: the child process, ``running`` and
``pid``, ``stop`` (SIGTERM, then SIGKILL after a timeout), ``kill`` (a crash), ``restart``
on the same ports and directory, the end of the log for error messages, and use as a
context manager. A runner implements ``start`` and names its ``log_path``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

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


class ServerProcess(ABC):
    """A local server run as a child process (see the module docstring)."""

    #: Seconds ``stop`` waits after SIGTERM before it kills.
    stop_timeout: ClassVar[float] = 10.0
    #: Lines of the log ``log_tail`` returns by default.
    log_lines: ClassVar[int] = 30
    log_path: Path
    _process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def start(self) -> None:
        """Start the server and return once it serves."""

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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
