"""Shared fixtures of the record store's unit tests: a migrated SQLite store, cheap argon2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, create_engine

from excursions.migrate import upgrade

#: Cheap argon2 parameters: the tests check behaviour, not the cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A record store on SQLite, migrated to the newest revision."""
    engine = create_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    upgrade(engine)
    yield engine
    engine.dispose()
