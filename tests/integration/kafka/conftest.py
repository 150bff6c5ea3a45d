"""Fixtures of the Kafka tests: real Apache Kafka brokers (KRaft, Java 17) on loopback ports.

``kafka`` is one broker for the whole session (each test has its own topics and groups,
named from ``topic_prefix``); ``own_kafka`` is a broker for one test, which may stop, kill
and restart it on the same ports and data directory. The jars come from Maven Central once
(``deploy/kafka/pom.xml``, cached in ~/.cache/envmon; ``make kafka-jars``).

After every test, no Kafka connection may be left open on an event loop that has closed
(the test's, or a faust consumer thread's): such a connection can never be closed, and it
fails the test naming the client that opened it. Otherwise it would surface only as
"Unclosed AIOKafkaConnection" warnings whenever the garbage collector finds it, with no hint
of its owner (seen once in CI).
"""

from __future__ import annotations

import gc
import shutil
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.conn import AIOKafkaConnection

from stream.kafka_broker import KafkaBroker, jars_present, java_binary, kafka_home

if shutil.which(java_binary()) is None:  # pragma: no cover - the machine has Java 17
    pytest.skip(
        "java is not installed (apt-get install openjdk-17-jre-headless)", allow_module_level=True
    )
if shutil.which("mvn") is None and not jars_present(kafka_home() / "libs"):  # pragma: no cover
    pytest.skip(
        "no Kafka jars and no mvn to fetch them (apt-get install maven)", allow_module_level=True
    )


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A Kafka broker shared by the session's tests, on 127.0.0.1."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A Kafka broker for this test alone (it may restart it on the same ports and data)."""
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


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
