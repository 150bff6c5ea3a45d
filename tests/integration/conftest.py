"""Shared by the integration tests: leaked sockets and transports are charged to their test;
one PostgreSQL server for the session (``postgres``), for every folder that needs one.

The suite turns warnings into errors. An unclosed socket or asyncio transport warns only
when the garbage collector finds it, which can be several tests later, so the failure
lands on an innocent test at random (seen once: a server-side OPC-UA socket of an earlier
test collected in the middle of another). Collecting after every integration test makes
such a leak fail the test that caused it.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from excursions.postgres import PostgresServer, postgres_installed


@pytest.fixture(autouse=True)
def _collect_garbage_after_test() -> Iterator[None]:
    yield
    gc.collect()


def server_home() -> Path:
    """Return a new directory for a test server's cluster, outside pytest's temporary root.

    The server runs as ``envmon-pg``, which must traverse every parent of its data
    directory; pytest makes its root (``/tmp/pytest-of-<user>``) private again whenever a
    pytest session starts, which would lock a running server out of its own files when two
    sessions run at once.
    """
    return Path(tempfile.mkdtemp(prefix="envmon-pg-"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server shared by the session's tests, on 127.0.0.1."""
    if not postgres_installed():  # pragma: no cover - the machine has the Debian packages
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    home = server_home()
    server = PostgresServer(home / "postgres")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(home, ignore_errors=True)
