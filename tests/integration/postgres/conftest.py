"""Fixtures of the PostgreSQL tests: real servers from the Debian packages on loopback ports.

``postgres`` (``tests/conftest.py``) is one server for the whole session (each
test has its own database from ``pg_database`` and its own uniquely named roles);
``own_postgres`` is a server for one test, which may stop, kill and restart it on the same
port and data directory. As root the servers run as the system user ``envmon-pg``
(created on first use): PostgreSQL refuses root.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine
from typer.testing import CliRunner

from devservers.postgres import PostgresServer
from envmon.cli import app as cli
from excursions.migrate import upgrade


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database for this test: its SQLAlchemy URL (as the superuser).

    Dropped after the test, ending any session the test left open.
    """
    name = unique_name("db")
    yield postgres.create_database(name)
    postgres.drop_database(name)


@pytest.fixture
def owner_engine(pg_database: str) -> Iterator[Engine]:
    """The store in a fresh database, migrated by its owner (the superuser here)."""
    engine = create_engine(pg_database)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def app_engine(postgres: PostgresServer, owner_engine: Engine) -> Iterator[Engine]:
    """An engine logged in as the application's role, with only its grants."""
    role, password = unique_name("envmon_app"), "app-secret-1"
    postgres.create_role(role, password)
    owner_url = owner_engine.url.render_as_string(hide_password=False)
    granted = CliRunner().invoke(cli, ["db", "grant", role, "--db", owner_url])
    assert granted.exit_code == 0, granted.output
    database = owner_engine.url.database
    assert database is not None
    engine = create_engine(postgres.url_for(database, user=role, password=password))
    yield engine
    engine.dispose()


def unique_name(prefix: str) -> str:
    """Return a name unique to this call for a database or role (roles are cluster-wide)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
