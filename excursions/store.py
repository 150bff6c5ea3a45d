"""The embedded excursion record store (SQLite): idempotent by id and revision.

The core emits each excursion several times (opened, escalated, closed) with an increasing
``revision``; this store keeps the newest revision of each and ignores a revision it has
already seen, so at-least-once delivery never duplicates or rewinds a record. Data gaps are
stored the same way, keyed by id. The full QA record store with its audit trail arrives
with issue 5; this is what ``envmon demo`` keeps.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from envmon.bus import EXCURSIONS, Bus
from envmon.models import DataGap, ExcursionRecord
from envmon.sqlite import open_database

_RECORD = TypeAdapter(ExcursionRecord | DataGap)
_UPSERT_GAP = """
INSERT INTO data_gaps VALUES (?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET closed = excluded.closed, record = excluded.record
WHERE excluded.closed > data_gaps.closed
"""


class SqliteExcursionStore:
    """Excursion records and data gaps, newest revision per id."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        self._db = open_database(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS excursions (id TEXT PRIMARY KEY,"
            " revision INTEGER NOT NULL, sensor_id TEXT NOT NULL, status TEXT NOT NULL,"
            " start TEXT NOT NULL, record TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS data_gaps (id TEXT PRIMARY KEY, sensor_id TEXT NOT NULL,"
            " closed INTEGER NOT NULL, record TEXT NOT NULL)"
        )
        self.ignored = 0

    def apply(self, record: ExcursionRecord | DataGap) -> bool:
        """Store a record if it is newer than what is held; return True if it changed."""
        with self._lock:
            if isinstance(record, ExcursionRecord):
                cur = self._db.execute(
                    "INSERT INTO excursions VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET revision = excluded.revision,"
                    " status = excluded.status, record = excluded.record"
                    " WHERE excluded.revision > excursions.revision",
                    (
                        record.id,
                        record.revision,
                        record.sensor_id,
                        record.status.value,
                        record.start.isoformat(),
                        record.model_dump_json(),
                    ),
                )
            else:
                cur = self._db.execute(
                    _UPSERT_GAP,
                    (
                        record.id,
                        record.sensor_id,
                        int(record.end is not None),
                        record.model_dump_json(),
                    ),
                )
            changed = cur.rowcount > 0
        if not changed:
            self.ignored += 1
        return changed

    def excursions(self) -> list[ExcursionRecord]:
        """Return every excursion record, oldest start first."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM excursions ORDER BY start, id").fetchall()
        return [ExcursionRecord.model_validate_json(r) for (r,) in rows]

    def count(self) -> int:
        """Return how many excursion records are stored."""
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM excursions").fetchone()
        return int(n)

    def data_gaps(self) -> list[DataGap]:
        """Return every data gap."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM data_gaps ORDER BY rowid").fetchall()
        return [DataGap.model_validate_json(r) for (r,) in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


async def consume_excursions(
    bus: Bus, store: SqliteExcursionStore, *, group: str = "envmon-excursions"
) -> None:
    """Store every excursion record and data gap published on the bus, forever."""
    async for message in bus.subscribe(EXCURSIONS, group):
        try:
            record = _RECORD.validate_json(message.value)
        except ValidationError:
            continue  # not ours to judge: the stream processor only publishes valid records
        await asyncio.to_thread(store.apply, record)
