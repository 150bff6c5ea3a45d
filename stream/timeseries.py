"""The time-series port and its embedded SQLite adapter.

Every reading is stored for trends and reports. Production writes to InfluxDB (issue 4);
the embedded default and small sites use SQLite. Writes are idempotent: a reading is keyed
by (sensor, time), so at-least-once delivery never stores one twice.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from envmon.models import Quality, Reading
from envmon.sqlite import open_database
from envmon.timeutil import from_us, to_us


class TimeSeriesStore(Protocol):
    """Stores readings and reads them back by sensor and time range."""

    def write(self, readings: Sequence[Reading]) -> None:
        """Store readings durably (idempotent by sensor and timestamp)."""
        ...

    def query(self, sensor_id: str, start: datetime, end: datetime) -> list[Reading]:
        """Return the readings of one sensor with ``start <= ts < end``, oldest first."""
        ...

    def count(self) -> int:
        """Return how many readings are stored."""
        ...


class SqliteTimeSeries:
    """Readings in one SQLite table, primary key (sensor_id, ts in µs)."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        self._db = open_database(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS readings (sensor_id TEXT NOT NULL, ts_us INTEGER NOT NULL,"
            " value REAL, unit TEXT NOT NULL, quality TEXT NOT NULL, source TEXT NOT NULL,"
            " PRIMARY KEY (sensor_id, ts_us)) WITHOUT ROWID"
        )

    def write(self, readings: Sequence[Reading]) -> None:
        """Store readings; a reading already stored for the same sensor and time is kept."""
        rows = [
            (r.sensor_id, to_us(r.ts), r.value, r.unit, r.quality.value, r.source) for r in readings
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def query(self, sensor_id: str, start: datetime, end: datetime) -> list[Reading]:
        """Return one sensor's readings in [start, end)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ts_us, value, unit, quality, source FROM readings"
                " WHERE sensor_id = ? AND ts_us >= ? AND ts_us < ? ORDER BY ts_us",
                (sensor_id, to_us(start), to_us(end)),
            ).fetchall()
        return [
            Reading(
                sensor_id=sensor_id,
                ts=from_us(ts),
                value=value,
                unit=unit,
                quality=Quality(quality),
                source=source,
            )
            for ts, value, unit, quality, source in rows
        ]

    def count(self) -> int:
        """Return how many readings are stored."""
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()
        return int(n)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
