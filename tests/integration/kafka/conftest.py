"""Fixtures of the Kafka tests: real Apache Kafka brokers (KRaft, Java 17) on loopback ports.

``kafka`` is one broker for the whole session (each test has its own topics and groups,
named from ``topic_prefix``); ``own_kafka`` is a broker for one test, which may stop, kill
and restart it on the same ports and data directory. The jars come from Maven Central once
(``deploy/kafka/pom.xml``, cached in ~/.cache/envmon; ``make kafka-jars``).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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
