"""Stopping the server processes the tests and developers run (Mosquitto, Kafka, QuestDB)."""

from __future__ import annotations

import signal
import subprocess


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
