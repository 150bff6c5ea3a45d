"""Fixtures of the Kafka tests: each test's own topic prefix, and no connection left open.

The brokers (``kafka``, shared by the session, each test on its own topics and groups named
from ``topic_prefix``; ``own_kafka`` for a test that stops, kills or restarts it) are the
suite's, from ``tests/conftest.py``.

After every test, no Kafka connection may be left open on an event loop that has closed
(the test's, or a faust consumer thread's): such a connection can never be closed, and it
fails the test naming the client that opened it. Otherwise it would surface only as
"Unclosed AIOKafkaConnection" warnings whenever the garbage collector finds it, with no hint
of its owner (seen once in CI).
"""

from __future__ import annotations

import gc
import uuid
import weakref
from collections.abc import Iterator

import pytest
from aiokafka.conn import AIOKafkaConnection


@pytest.fixture
def topic_prefix() -> str:
    """A prefix unique to this test for its topic, group and faust app names."""
    return f"t{uuid.uuid4().hex[:12]}"


#: Connections already charged to a test (one kept alive is not charged to the next ones).
_CHARGED: weakref.WeakSet[AIOKafkaConnection] = weakref.WeakSet()


@pytest.fixture(autouse=True)
def _no_kafka_connection_left_open() -> Iterator[None]:
    yield
    # gc.get_objects() also holds what is unreachable but not yet collected. The attributes
    # are aiokafka's own (the connection has no public loop or client id).
    left = [
        conn
        for conn in gc.get_objects()
        if isinstance(conn, AIOKafkaConnection)
        and conn not in _CHARGED
        and conn.connected()
        and conn._loop.is_closed()
    ]
    _CHARGED.update(left)
    assert not left, "Kafka connections left open after the test: " + ", ".join(
        f"client {conn._client_id!r} to {conn.host}:{conn.port}" for conn in left
    )
