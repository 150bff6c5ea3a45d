"""Run the record store's Alembic migrations from code (tests, ``envmon db upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS: Final = Path(__file__).parent / "migrations"
HEAD: Final = "head"


def alembic_config(engine: Engine) -> Config:
    """Return an Alembic configuration that migrates through ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, revision: str = HEAD) -> None:
    """Migrate the database up to ``revision`` (the newest by default)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base``: nothing)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def newest() -> str:
    """Return the newest revision the migrations define (what ``upgrade`` reaches)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return head


def current(engine: Engine) -> str | None:
    """Return the revision the database is at (None: not migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


#: What the application's database role may do (PostgreSQL): records and users are read
#: and written, the audit trail, signatures and timeline only read and appended, and the
#: audit head only read and moved forward (its trigger refuses any other change).
#: Migrations run as the owner.
APP_GRANTS: Final = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON excursion_records TO {role}",
    "GRANT SELECT, UPDATE ON audit_head TO {role}",
    "GRANT SELECT, INSERT ON audit_entries TO {role}",
    "GRANT SELECT ON alembic_version TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON users TO {role}",
    "GRANT USAGE ON SEQUENCE users_id_seq TO {role}",
    "GRANT SELECT, INSERT ON signatures TO {role}",
    "GRANT USAGE ON SEQUENCE signatures_id_seq TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON sessions TO {role}",
    "GRANT SELECT, INSERT ON timeline_events TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle TO {role}",
    # the alerting service (alerts/store.py)
    "GRANT SELECT, INSERT, UPDATE ON alert_incidents TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON alert_notifications TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON alert_attempts TO {role}",
    "GRANT USAGE ON SEQUENCE alert_attempts_id_seq TO {role}",
    "GRANT SELECT, INSERT ON alert_recipients TO {role}",
    "GRANT SELECT, INSERT, DELETE ON alert_events_seen TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON alert_shelves TO {role}",
    "GRANT USAGE ON SEQUENCE alert_shelves_id_seq TO {role}",
    "GRANT SELECT, INSERT ON alert_link_uses TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON alert_bus_outbox TO {role}",
    "GRANT USAGE ON SEQUENCE alert_bus_outbox_id_seq TO {role}",
)
#: What a reading role may do (``envmon audit verify`` and ``checkpoint`` need no more).
READ_GRANTS: Final = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
)
#: Run before the grants, so that a role is left with exactly them (a right an older
#: version granted, such as INSERT on the audit head, does not linger).
_REVOKES: Final = (
    "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
    "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
)


def grant_app_role(engine: Engine, role: str, *, read_only: bool = False) -> None:
    """Give a role exactly ``APP_GRANTS`` (or ``READ_GRANTS``); run as the tables' owner."""
    if engine.dialect.name != "postgresql":
        raise ValueError(f"roles are a PostgreSQL feature, not {engine.dialect.name}'s")
    quoted = engine.dialect.identifier_preparer.quote(role)
    with engine.begin() as connection:
        for grant in (*_REVOKES, *(READ_GRANTS if read_only else APP_GRANTS)):
            connection.exec_driver_sql(grant.format(role=quoted))
