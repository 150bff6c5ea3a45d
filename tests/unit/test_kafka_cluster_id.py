"""KRaft cluster ids that the storage tool accepts."""

from __future__ import annotations

import base64
import uuid

import pytest

from stream import kafka_broker
from stream.kafka_broker import new_cluster_id


def test_cluster_id_is_a_kafka_uuid() -> None:
    """22 characters of URL-safe base64 encoding 16 bytes."""
    text = new_cluster_id()
    assert len(text) == 22
    assert len(base64.urlsafe_b64decode(text + "==")) == 16


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id starting with '-' would be parsed as an option by kafka-storage: drawn again."""
    dash_first = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    draws = iter([dash_first, uuid.UUID(int=1)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))
    assert new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAQ"
