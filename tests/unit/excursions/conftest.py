"""Shared fixtures of the record store's unit tests: a migrated SQLite store, cheap argon2."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine

from envmon.models import AlarmEvent, ExcursionRecord
from excursions.db import store_engine
from excursions.lifecycle import Lifecycle
from excursions.migrate import upgrade
from excursions.records import RecordStore
from excursions.sessions import Sessions
from excursions.timeline import TimelineStore
from excursions.users import UserStore
from excursions.web.api import Services
from stream.timeseries.sqlite import SqliteTimeSeries

from .test_records import core_events, core_readings, core_records

#: Cheap argon2 parameters: the tests check behaviour, not the cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def series(tmp_path: Path) -> Iterator[SqliteTimeSeries]:
    """The embedded time-series store holding the readings behind ``core_records``."""
    store = SqliteTimeSeries(tmp_path / "series.sqlite3")
    store.write(core_readings())
    yield store
    store.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A record store on SQLite, migrated to the newest revision."""
    engine = store_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def store_core_events(
    engine: Engine, clock: Callable[[], datetime]
) -> tuple[RecordStore, TimelineStore]:
    """Store everything the core emits for the fridge: records, and alarms for the timeline."""
    store, events = RecordStore(engine, clock=clock), TimelineStore(engine, clock=clock)
    for event in core_events():
        if isinstance(event, AlarmEvent):
            events.apply(event)
        else:
            store.apply(event)
    return store, events


def stored_records(engine: Engine, clock: Callable[[], datetime]) -> str:
    """Store the core's records of the fridge (no alarms); return the excursion's id."""
    store = RecordStore(engine, clock=clock)
    records = core_records()
    for record in records:
        store.apply(record)
    return next(r.id for r in records if isinstance(r, ExcursionRecord))


def stored_excursion(engine: Engine, clock: Callable[[], datetime]) -> tuple[str, UserStore]:
    """Store the core's records and alarms of a fridge excursion.

    Return the excursion's id and a user store with cheap hashing.
    """
    store_core_events(engine, clock)
    record_id = next(r.id for r in core_records() if isinstance(r, ExcursionRecord))
    return record_id, UserStore(engine, clock=clock, hasher=FAST_HASHER)


def app_services(
    engine: Engine, users: UserStore, clock: Callable[[], datetime], **extra: Any
) -> Services:
    """The QA app's services on a test store: one clock, plain-HTTP cookies, Berlin time.

    ``extra`` are further ``Services`` fields (the series, the display, the site, …).
    """
    return Services(
        engine,
        Sessions(engine, users, clock=clock),
        Lifecycle(engine, users, clock=clock),
        **{"secure_cookie": False, "site_timezone": "Europe/Berlin", "clock": clock, **extra},
    )
