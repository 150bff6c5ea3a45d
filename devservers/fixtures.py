"""The suite's one fixture factory: each server as a shared session fixture and a per-test one.

``shared, own = server_fixtures("kafka", KafkaBroker)`` in a ``conftest.py`` gives the
fixtures ``kafka`` (one server for the whole session; tests keep apart by their own
topics, databases or tags) and ``own_kafka`` (a server for one test, which may stop, kill
and restart it on the same ports and directory). Both are stopped when done.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest


class Startable(Protocol):
    """What a server runner offers the fixtures."""

    def start(self) -> None:
        """Start and wait until the server answers."""

    def stop(self) -> None:
        """Stop (controlled)."""


S = TypeVar("S", bound=Startable)


def scratch_home(name: str) -> Path:
    """Return a new folder under the system temporary folder (see ``outside_tmp``)."""
    return Path(tempfile.mkdtemp(prefix=f"envmon-{name}-"))


def server_fixtures(
    name: str,
    make: Callable[[Path], S],
    *,
    prepare: Callable[[S], None] | None = None,
    outside_tmp: bool = False,
    missing: Callable[[], str | None] | None = None,
) -> tuple[Any, Any]:
    """Return the fixtures ``name`` (session) and ``own_<name>`` (one test) of one server.

    ``make`` builds a runner on a directory; ``prepare`` runs after every start (create a
    table, a database). ``missing`` names what the machine lacks to run the server (the
    test is then skipped with that reason), or returns None. ``outside_tmp`` puts the
    directory under the system temporary folder instead of pytest's, whose root pytest
    makes private at each session start (a server running as another user, such as
    PostgreSQL's, must still reach its files).
    """

    @contextmanager
    def running(place: Callable[[], Path]) -> Iterator[S]:
        reason = missing() if missing is not None else None
        if reason is not None:  # pragma: no cover - make test installs every server
            pytest.skip(reason)
        home = scratch_home(name) if outside_tmp else None
        server = make(home / name if home is not None else place())
        try:
            server.start()
            if prepare is not None:
                prepare(server)
            yield server
        finally:
            server.stop()
            if home is not None:
                shutil.rmtree(home, ignore_errors=True)

    def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S]:
        with running(lambda: tmp_path_factory.mktemp(name)) as server:
            yield server

    def own(tmp_path: Path) -> Iterator[S]:
        with running(lambda: tmp_path / name) as server:
            yield server

    shared.__doc__ = f"A {name} shared by the session's tests, on 127.0.0.1."
    own.__doc__ = f"A {name} for this test alone (it may stop and restart it)."
    return (
        pytest.fixture(scope="session", name=name)(shared),
        pytest.fixture(name=f"own_{name}")(own),
    )
