"""envmon's Kafka topics: create and delete them, and make sure the worker's exist.

``create_topics`` and ``delete_topics`` wrap aiokafka's admin client and wait until the
broker has done it (every partition has a leader; the topic is no longer listed).
``ensure_topics`` creates envmon's topics, the state table's changelog and the audit topic
before a worker or consumer starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from envmon.bus import ALL_TOPICS, AUDIT, AUDIT_TOPIC_CONFIG
from envmon.settings import Settings

#: The name of the stream worker's faust table of sensor states.
STATE_TABLE: Final = "sensor-state"
_POLL_S: Final = 0.1
_ERROR_TOPIC_ALREADY_EXISTS: Final = 36
_ERROR_UNKNOWN_TOPIC_OR_PARTITION: Final = 3


class TopicsError(RuntimeError):
    """Topics could not be created or deleted (the message names each Kafka error)."""


def changelog_topic(app_id: str) -> str:
    """Return the name faust gives the state table's changelog topic."""
    return f"{app_id}-{STATE_TABLE}-changelog"


def _error_name(code: int) -> str:
    return str(for_code(code).__name__)


async def _partition_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, list[int]]:
    described: list[dict[str, object]] = await admin.describe_topics(names)
    leaders: dict[str, list[int]] = {}
    for topic in described:
        partitions = topic.get("partitions")
        if topic.get("error_code") == 0 and isinstance(partitions, list):
            leaders[str(topic["topic"])] = [int(p["leader"]) for p in partitions]
    return leaders


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication: int = 1,
    config: Mapping[str, str] | None = None,
    exist_ok: bool = False,
    timeout: float = 30.0,
) -> None:
    """Create ``{name: partitions}`` topics and wait until every partition has a leader.

    ``config`` holds topic settings (``cleanup.policy``, ``retention.ms``...) for all of
    them. Raises ``TopicsError`` naming the Kafka error of each topic that failed
    (an existing topic is no error with ``exist_ok``).
    """
    names = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="envmon-admin")
    try:  # from the start: a start that fails half-way leaves connections open
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(name, partitions, replication, topic_configs=dict(config or {}))
                for name, partitions in topics.items()
            ],
            timeout_ms=int(timeout * 1000),
        )
        failed = []
        for result in response.topic_errors:
            name, code = str(result[0]), int(result[1])
            message = result[2] if len(result) > 2 else None
            if code == 0 or (code == _ERROR_TOPIC_ALREADY_EXISTS and exist_ok):
                continue
            failed.append(f"{name}: {_error_name(code)}" + (f" ({message})" if message else ""))
        if failed:
            raise TopicsError("could not create topics: " + "; ".join(failed))
        deadline = time.monotonic() + timeout
        while True:
            leaders = await _partition_leaders(admin, names)
            if all(
                len(leaders.get(name, [])) >= topics[name]
                and all(leader >= 0 for leader in leaders[name])
                for name in names
            ):
                return
            if time.monotonic() > deadline:
                raise TopicsError(f"topics without leaders after {timeout:g} s: {leaders}")
            await asyncio.sleep(_POLL_S)
    finally:
        await admin.close()


async def delete_topics(
    bootstrap: str, names: Iterable[str], *, missing_ok: bool = True, timeout: float = 30.0
) -> None:
    """Delete topics and wait until the broker no longer lists them."""
    wanted = list(names)
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="envmon-admin")
    try:  # from the start: a start that fails half-way leaves connections open
        await admin.start()
        response = await admin.delete_topics(wanted, timeout_ms=int(timeout * 1000))
        failed = []
        for result in response.topic_error_codes:
            name, code = str(result[0]), int(result[1])
            if code == 0 or (code == _ERROR_UNKNOWN_TOPIC_OR_PARTITION and missing_ok):
                continue
            failed.append(f"{name}: {_error_name(code)}")
        if failed:
            raise TopicsError("could not delete topics: " + "; ".join(failed))
        deadline = time.monotonic() + timeout
        while True:
            listed: list[str] = await admin.list_topics()
            if not set(wanted) & set(listed):
                return
            if time.monotonic() > deadline:
                raise TopicsError(f"topics still listed after {timeout:g} s: {wanted}")
            await asyncio.sleep(_POLL_S)
    finally:
        await admin.close()


async def ensure_topics(settings: Settings) -> None:
    """Create envmon's topics and the state table's changelog if they do not exist.

    The changelog too, before faust starts: when faust creates it itself on a fresh
    cluster, the group's first assignment can be computed from metadata that does not list
    the new topic yet. faust then assigns no partition at all and never asks again, and
    the worker reads nothing (seen in the fault matrix about one start in ten).
    """
    await create_topics(
        settings.kafka_bootstrap,
        {settings.topic(name): settings.kafka_partitions for name in ALL_TOPICS},
        replication=settings.kafka_replication,
        exist_ok=True,
    )
    await create_topics(
        settings.kafka_bootstrap,
        {changelog_topic(settings.app_id): settings.kafka_partitions},
        replication=settings.kafka_replication,
        config={"cleanup.policy": "compact"},
        exist_ok=True,
    )
    await ensure_audit_topic(settings)


async def ensure_audit_topic(settings: Settings) -> None:
    """Create the audit checkpoints' topic if it does not exist: one partition, kept for ever."""
    await create_topics(
        settings.kafka_bootstrap,
        {settings.topic(AUDIT): 1},
        replication=settings.kafka_replication,
        config=AUDIT_TOPIC_CONFIG,
        exist_ok=True,
    )
