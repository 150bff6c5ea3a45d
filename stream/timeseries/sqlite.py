"""The embedded time-series store: readings and context series in SQLite.

The embedded default and small sites store every reading here. Writes are idempotent: a
reading is keyed by (sensor, time), so at-least-once delivery never stores one twice.
``SqliteTimeSeries`` is also the port's ``SeriesReader`` for the QA app: ``query`` (a
record's trend) and ``latest`` (the live status page).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from envmon.models import Quality, Reading
from envmon.sqlite import open_database
from envmon.timeutil import from_us, to_us
from stream.timeseries.context import ContextPoint

logger = logging.getLogger(__name__)
#: The qualities a stored row may name; any other reads back as bad.
_QUALITIES: Final = frozenset(q.value for q in Quality)


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
        # The context series (stream.timeseries.context): one row per point, its fields as JSON; a
        # point written again (same series and time) replaces the one stored.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS context (measurement TEXT NOT NULL,"
            " series TEXT NOT NULL, sensor_id TEXT NOT NULL, ts_us INTEGER NOT NULL,"
            " fields TEXT NOT NULL, PRIMARY KEY (measurement, series, ts_us)) WITHOUT ROWID"
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

    def write_context(self, points: Sequence[ContextPoint]) -> None:
        """Store context points (limits, status, alarms, records: ``stream.timeseries.context``)."""
        rows = [
            (
                p.measurement,
                p.series(),
                dict(p.tags).get("sensor", ""),
                p.ts_us,
                json.dumps(dict(p.fields)),
            )
            for p in points
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO context VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def write_mixed(self, points: Sequence[Reading | ContextPoint]) -> None:
        """Store readings and context points given in one list (the stream worker's)."""
        readings = [p for p in points if isinstance(p, Reading)]
        context = [p for p in points if isinstance(p, ContextPoint)]
        if readings:
            self.write(readings)
        if context:
            self.write_context(context)

    def context(
        self, measurement: str, sensor_id: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, dict[str, object]]]:
        """Return one sensor's points of a context measurement in [start, end), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ts_us, fields FROM context WHERE measurement = ? AND sensor_id = ?"
                " AND ts_us >= ? AND ts_us < ? ORDER BY ts_us",
                (measurement, sensor_id, to_us(start), to_us(end)),
            ).fetchall()
        return [(from_us(ts), json.loads(fields)) for ts, fields in rows]

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

    def latest(self, sensor_ids: Collection[str], since: datetime) -> dict[str, Reading]:
        """Return each sensor's newest reading with ``ts >= since`` (none: left out).

        One query: for each sensor asked for (a JSON array, so any number of them fits one
        parameter), the newest time is found on the primary key (sensor_id, ts_us), a
        descent of the index rather than a scan of the sensor's readings. A stored quality
        that is not one of ``Quality``'s reads back as ``bad``.
        """
        wanted = sorted(set(sensor_ids))
        if not wanted:
            return {}
        with self._lock:
            rows = self._db.execute(
                "SELECT w.value, r.ts_us, r.value, r.unit, r.quality, r.source"
                " FROM json_each(?) AS w JOIN readings AS r ON r.sensor_id = w.value"
                " AND r.ts_us = (SELECT MAX(ts_us) FROM readings"
                " WHERE sensor_id = w.value AND ts_us >= ?)",
                (json.dumps(wanted), to_us(since)),
            ).fetchall()
        found: dict[str, Reading] = {}
        for sensor_id, ts, value, unit, quality, source in rows:
            try:
                found[sensor_id] = Reading(
                    sensor_id=sensor_id,
                    ts=from_us(ts),
                    value=value,
                    unit=unit,
                    quality=Quality(quality) if quality in _QUALITIES else Quality.BAD,
                    source=source,
                )
            except ValueError as exc:  # a row no writer of ours makes: not a reading
                logger.warning("newest reading of %r unreadable: %s", sensor_id, exc)
        return found

    def count(self) -> int:
        """Return how many readings are stored."""
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()
        return int(n)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
