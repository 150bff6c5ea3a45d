"""``envmon db upgrade`` and ``envmon audit verify``: the QA record store from the shell."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from excursions.audit import Verification, verify
from excursions.migrate import current, upgrade


def open_engine(url: str) -> Engine:
    """Return an engine for the store (creating a SQLite file's folder if needed)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url)


def upgrade_db(url: str) -> tuple[str | None, str | None]:
    """Migrate the store to the newest revision; return (before, after)."""
    engine = open_engine(url)
    try:
        before = current(engine)
        upgrade(engine)
        return before, current(engine)
    finally:
        engine.dispose()


def verify_db(url: str) -> Verification:
    """Check the store's audit trail from its first entry to its last."""
    engine = open_engine(url)
    try:
        with Session(engine) as session:
            return verify(session)
    finally:
        engine.dispose()
