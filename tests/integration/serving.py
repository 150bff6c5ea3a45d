"""``envmon excursions serve`` in its own process, for the HTTP and browser tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from envmon.netutil import free_port


@contextlib.contextmanager
def serving(
    url: str,
    log: Path,
    data_dir: Path | None = None,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve the store at ``url`` on a loopback port; yield the base URL and process.

    ``data_dir`` is the app's ``ENVMON_DATA_DIR`` (where it finds the embedded time series,
    ``timeseries.sqlite3``); without it the app runs in a folder of its own with none.
    ``port``: a free one unless given; ``env``: more variables (``ENVMON_SITE``, secrets).

    Waits until the app accepts connections; stops it with SIGTERM afterwards (the process
    is still there for the caller to look at its exit status).
    """
    port = port or free_port()
    environ = {
        **os.environ,
        "ENVMON_DATA_DIR": str(data_dir or log.parent / "serve-data"),
        # the example site configures acknowledge links: serve refuses to start without the key
        "ENVMON_ALERT_LINK_SECRET": "test-link-secret-of-32-characters",
        **(env or {}),
    }
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "envmon.cli",
                "excursions",
                "serve",
                "--db",
                url,
                "--port",
                str(port),
                "--insecure-cookie",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert server.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the app did not start"
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}", server
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(20)
