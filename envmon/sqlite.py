"""Opening the embedded SQLite databases the same way everywhere."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_database(path: Path | str, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open (creating its folder) a SQLite database in WAL mode, usable from any thread.

    Callers serialise access with their own lock; transactions are explicit
    (``isolation_level=None``). ``synchronous`` is ``FULL`` where a commit must survive a
    power cut (the collectors' buffer), ``NORMAL`` elsewhere.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db
