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
from collections.abc import Iterator

import pytest

from devservers.fixtures import server_fixtures
from devservers.postgres import PostgresServer, postgres_installed


@pytest.fixture(autouse=True)
def _collect_garbage_after_test() -> Iterator[None]:
    yield
    gc.collect()


def _no_postgres() -> str | None:
    if postgres_installed():
        return None
    return "PostgreSQL is not installed (apt-get install postgresql)"


# As root the server runs as ``envmon-pg``, which must traverse every parent of its data
# directory: outside pytest's temporary root, which pytest makes private at each session.
postgres, own_postgres = server_fixtures(
    "postgres", PostgresServer, outside_tmp=True, missing=_no_postgres
)
