"""``ServerProcess.launch``: ready, exited at start, or killed after the timeout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devservers.process import ServerProcess
from envmon.errors import EnvmonError


class LaunchError(EnvmonError):
    """What the test runner raises."""


class Sleeper(ServerProcess):
    """A 'server' that is a Python one-liner writing to its log."""

    name = "sleeper"
    start_error = LaunchError

    def __init__(self, directory: Path, code: str, ready_after: int | None) -> None:
        self.log_path = directory / "sleeper.log"
        self.code = code
        self.ready_after = ready_after
        self.polls = 0

    def _ready(self) -> bool:
        self.polls += 1
        return self.ready_after is not None and self.polls >= self.ready_after

    def start(self, timeout: float = 5.0) -> None:
        self.launch(
            [sys.executable, "-c", self.code],
            ready=self._ready,
            waiting_for="get ready",
            timeout=timeout,
            output=self.log_path,
            poll_s=0.01,
        )


def test_ready_server_runs_until_stopped(tmp_path: Path) -> None:
    server = Sleeper(tmp_path, "import time; print('up', flush=True); time.sleep(60)", 3)
    with server:
        assert server.running
        assert server.polls == 3
    assert not server.running


def test_an_exit_at_start_names_the_code_and_shows_the_log(tmp_path: Path) -> None:
    server = Sleeper(tmp_path, "import sys; print('bad config line 7'); sys.exit(3)", None)
    with pytest.raises(LaunchError, match=r"sleeper exited at start \(exit 3\)") as info:
        server.start()
    assert "bad config line 7" in str(info.value)
    assert not server.running


def test_a_server_never_ready_is_killed_at_the_timeout(tmp_path: Path) -> None:
    server = Sleeper(tmp_path, "import time; time.sleep(60)", None)
    with pytest.raises(LaunchError, match=r"sleeper did not get ready within 0.3 s"):
        server.start(timeout=0.3)
    assert not server.running
