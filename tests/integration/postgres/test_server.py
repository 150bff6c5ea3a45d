"""A real PostgreSQL server: it answers, isolates databases, enforces privileges, keeps its
data across restarts and crashes, and leaves no process behind when stopped."""

from __future__ import annotations

import os
import pwd
import socket
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from devservers.postgres import (
    SERVICE_USER,
    PostgresError,
    PostgresServer,
    find_bin_dir,
    processes_in,
    psycopg_conninfo,
)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # the effective uid
    raise AssertionError(f"no Uid line for {pid}")


def _accepts_tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def test_server_answers_a_query(postgres: PostgresServer):
    assert postgres.url == (
        f"postgresql+psycopg://postgres:{postgres.password}@127.0.0.1:{postgres.port}/postgres"
    )
    with psycopg.connect(psycopg_conninfo(postgres.url)) as conn:
        row = conn.execute(
            "SELECT version(), current_setting('fsync'), current_setting('listen_addresses'),"
            " current_setting('server_encoding'), current_user"
        ).fetchone()
    assert row is not None
    version, fsync, listen, encoding, user = row
    assert version.startswith("PostgreSQL ")
    assert (fsync, listen, encoding, user) == ("on", "127.0.0.1", "UTF8", "postgres")


def test_server_refuses_a_wrong_password(postgres: PostgresServer):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        postgres.connect(password="not-the-password").close()


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as the caller unless root")
def test_server_runs_as_the_service_user_not_root(postgres: PostgresServer):
    service_uid = pwd.getpwnam(SERVICE_USER).pw_uid
    assert service_uid != 0
    pids = postgres.server_pids()
    assert postgres.pid in pids
    assert len(pids) > 1  # the postmaster and its background processes
    assert {_uid_of(pid) for pid in pids} == {service_uid}
    assert postgres.data_dir.stat().st_uid == service_uid


def test_databases_are_isolated(postgres: PostgresServer, pg_database: str):
    assert pg_database.startswith("postgresql+psycopg://postgres:")
    with psycopg.connect(psycopg_conninfo(pg_database), autocommit=True) as conn:
        conn.execute("CREATE TABLE excursion (id text PRIMARY KEY)")
        conn.execute("INSERT INTO excursion VALUES ('EX-1')")
    other = unique_name("db")
    other_url = postgres.create_database(other)
    try:
        with psycopg.connect(psycopg_conninfo(other_url), autocommit=True) as conn:
            with pytest.raises(errors.UndefinedTable):
                conn.execute("SELECT * FROM excursion")
            assert conn.execute("SELECT current_database()").fetchone() == (other,)
        with psycopg.connect(psycopg_conninfo(pg_database)) as conn:
            assert conn.execute("SELECT id FROM excursion").fetchall() == [("EX-1",)]
    finally:
        postgres.drop_database(other)
    with pytest.raises(PostgresError, match="already exists"):
        postgres.create_database(pg_database.rsplit("/", 1)[1])


def test_role_logs_in_and_has_only_what_it_was_granted(postgres: PostgresServer, pg_database: str):
    database = pg_database.rsplit("/", 1)[1]
    role, password = unique_name("reviewer"), "s3cret 'with' quotes"
    postgres.create_role(role, password)
    with psycopg.connect(psycopg_conninfo(pg_database), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA records")
        conn.execute("CREATE TABLE records.excursion (id text PRIMARY KEY)")
        conn.execute("INSERT INTO records.excursion VALUES ('EX-1')")
        conn.execute(f"GRANT USAGE ON SCHEMA records TO {role}")
        conn.execute(f"GRANT SELECT ON records.excursion TO {role}")
    role_url = postgres.url_for(database, user=role, password=password)
    assert role_url.startswith(f"postgresql+psycopg://{role}:")

    with psycopg.connect(psycopg_conninfo(role_url), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
        assert conn.execute("SELECT id FROM records.excursion").fetchall() == [("EX-1",)]
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO records.excursion VALUES ('EX-2')")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE records.sneaky (id int)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"CREATE DATABASE {unique_name('db')}")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"CREATE ROLE {unique_name('other')}")

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        postgres.connect(database, user=role, password="wrong").close()


def test_role_without_login_cannot_connect(postgres: PostgresServer):
    role = unique_name("group")
    postgres.create_role(role, "pw", login=False)
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        postgres.connect(user=role, password="pw").close()


def test_identifiers_are_checked(postgres: PostgresServer):
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        postgres.create_database('x"; DROP DATABASE postgres; --')
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        postgres.create_role("bad name", "pw")


def test_data_survives_a_restart_and_a_crash(own_postgres: PostgresServer):
    url = own_postgres.create_database("store")
    port, password = own_postgres.port, own_postgres.password
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE excursion (id text PRIMARY KEY, revision int NOT NULL)")
        conn.execute("INSERT INTO excursion VALUES ('EX-1', 1)")

    own_postgres.restart()
    assert (own_postgres.port, own_postgres.password) == (port, password)
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
        assert conn.execute("SELECT * FROM excursion").fetchall() == [("EX-1", 1)]
        conn.execute("INSERT INTO excursion VALUES ('EX-2', 1)")  # committed: in the WAL

    own_postgres.kill()  # a crash: no shutdown checkpoint, recovery replays the WAL
    assert own_postgres.server_pids() == []
    own_postgres.start()
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        rows = conn.execute("SELECT id FROM excursion ORDER BY id").fetchall()
    assert rows == [("EX-1",), ("EX-2",)]

    # A new runner on the same directory finds the cluster, the password and the data.
    own_postgres.stop()
    again = PostgresServer(own_postgres.directory, port)
    with again, psycopg.connect(psycopg_conninfo(again.url_for("store"))) as conn:
        assert again.password == password
        assert conn.execute("SELECT count(*) FROM excursion").fetchone() == (2,)


def test_stop_leaves_no_process_behind(own_postgres: PostgresServer):
    pids = own_postgres.server_pids()
    assert own_postgres.pid in pids
    client = own_postgres.connect()  # an open session: fast shutdown must end it
    try:
        backend = client.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        assert backend[0] in own_postgres.server_pids()
        own_postgres.stop(timeout=20)
    finally:
        client.close()
    assert not own_postgres.running
    assert own_postgres.server_pids() == []
    assert processes_in(own_postgres.data_dir) == []
    assert not any(Path(f"/proc/{pid}/cwd").exists() for pid in [*pids, backend[0]])
    assert not (own_postgres.data_dir / "postmaster.pid").exists()
    assert not _accepts_tcp(own_postgres.host, own_postgres.port)
    assert "database system is shut down" in own_postgres.log_tail()


def test_kill_leaves_no_process_behind(own_postgres: PostgresServer):
    with own_postgres.connect() as client:
        client.execute("SELECT 1")
        pids = own_postgres.server_pids()
        own_postgres.kill()
    assert own_postgres.server_pids() == []
    assert not any(Path(f"/proc/{pid}/cwd").exists() for pid in pids)
    assert not _accepts_tcp(own_postgres.host, own_postgres.port)


def test_a_port_taken_meanwhile_is_replaced_unless_it_was_given(tmp_path: Path):
    chosen = PostgresServer(tmp_path / "chosen")
    with socket.socket() as squatter:
        squatter.bind((chosen.host, chosen.port))
        squatter.listen()
        taken = chosen.port
        with chosen, chosen.connect() as conn:
            assert chosen.port != taken
            assert conn.execute("SELECT 1").fetchone() == (1,)
        given = PostgresServer(tmp_path / "given", taken)
        with pytest.raises(PostgresError, match="Address already in use"):
            given.start()
        assert not given.running
        assert given.server_pids() == []


def test_missing_binaries_name_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ENVMON_POSTGRES_BIN", raising=False)
    with pytest.raises(PostgresError, match=r"apt-get install postgresql"):
        find_bin_dir(tmp_path)
    (tmp_path / "13" / "bin").mkdir(parents=True)
    newest = find_bin_dir()  # the machine's own packages
    assert (newest / "initdb").is_file()
    assert newest.parent.name.split(".")[0].isdigit()
