"""Topics envmon creates on a real Kafka: audit checkpoints, the worker's changelog.

``envmon audit checkpoint`` publishes on ``envmon.audit``. The topic's copy is a second
place outside the database: a checkpoint file rebuilt from it verifies the store as the
file written by the command does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from devservers.kafka import KafkaBroker
from envmon.bus import AUDIT
from envmon.cli import app as cli
from envmon.commands.stream_worker import build_worker
from envmon.config import load_site
from excursions.checkpoints import Checkpoint
from excursions.db import store_engine
from excursions.migrate import upgrade
from stream.kafka.topics import changelog_topic, ensure_topics
from tests.unit.excursions.test_audit import fill

from .test_worker import SITE, read_topic, settings_for

pytestmark = pytest.mark.timeout(180)


async def topic_settings(bootstrap: str, topic: str) -> tuple[int, dict[str, str]]:
    """Return a topic's partition count and its retention settings."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        (config,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    entries = {name: value for name, value, *_ in config.resources[0][4]}
    wanted = ("retention.ms", "retention.bytes", "cleanup.policy")
    return len(described["partitions"]), {k: entries[k] for k in wanted}


def test_checkpoints_are_published_on_the_audit_topic(
    kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka, topic_prefix, tmp_path / "data")
    database = tmp_path / "records.sqlite3"
    engine = store_engine(f"sqlite:///{database}")
    upgrade(engine)
    key, checkpoints = tmp_path / "audit" / "checkpoint.key", tmp_path / "checkpoints.jsonl"
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        yaml.safe_dump(
            {
                "site": str(SITE),
                "bus": "kafka",
                "kafka_bootstrap": settings.kafka_bootstrap,
                "topic_prefix": settings.topic_prefix,
                "records_db": f"sqlite:///{database}",
                "audit_key_file": str(key),
                "audit_checkpoint_file": str(checkpoints),
            }
        )
    )
    runner = CliRunner()
    made = runner.invoke(cli, ["audit", "keygen", "--settings", str(settings_file)])
    assert made.exit_code == 0, made.output
    for entries in (3, 2):
        fill(engine, entries)
        result = runner.invoke(cli, ["audit", "checkpoint", "--settings", str(settings_file)])
        assert result.exit_code == 0, result.output
    engine.dispose()

    published = asyncio.run(read_topic(settings, AUDIT, until=2))
    lines = checkpoints.read_text().splitlines()
    assert [Checkpoint(**m).line() for m in published] == lines
    assert [Checkpoint(**m).seq for m in published] == [3, 5]
    partitions, retention = asyncio.run(
        topic_settings(settings.kafka_bootstrap, settings.topic(AUDIT))
    )
    assert partitions == 1
    assert retention == {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}

    from_bus = tmp_path / "from-bus.jsonl"
    from_bus.write_text("".join(Checkpoint(**m).line() + "\n" for m in published))
    result = runner.invoke(
        cli, ["audit", "verify", "--settings", str(settings_file), "--checkpoints", str(from_bus)]
    )
    assert result.exit_code == 0, result.output
    assert "anchored: 2 of 2 checkpoints verified" in result.output


def test_a_checkpoint_not_published_is_said_so(tmp_path: Path) -> None:
    """Kafka unreachable: the file holds the checkpoint, the exit code says it was not sent."""
    database = tmp_path / "records.sqlite3"
    engine = store_engine(f"sqlite:///{database}")
    upgrade(engine)
    fill(engine, 2)
    engine.dispose()
    key, checkpoints = tmp_path / "checkpoint.key", tmp_path / "checkpoints.jsonl"
    runner = CliRunner()
    assert runner.invoke(cli, ["audit", "keygen", "--key-file", str(key)]).exit_code == 0
    env = {
        "ENVMON_BUS": "kafka",
        "ENVMON_KAFKA_BOOTSTRAP": "127.0.0.1:9",  # the discard port: nothing listens
        "ENVMON_SITE": str(SITE),
        "ENVMON_RECORDS_DB": f"sqlite:///{database}",
        "ENVMON_AUDIT_KEY_FILE": str(key),
        "ENVMON_AUDIT_CHECKPOINT_FILE": str(checkpoints),
    }
    result = runner.invoke(cli, ["audit", "checkpoint"], env=env)
    assert result.exit_code == 3, result.output
    assert "written to" in result.output
    assert "but not published" in result.output
    assert len(checkpoints.read_text().splitlines()) == 1


def test_the_worker_creates_its_state_changelog_before_faust_starts(
    kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    """``ensure_topics`` creates faust's changelog (compacted, one partition per readings one).

    When faust created it itself on a fresh cluster, its first assignment could be computed
    before the broker's metadata listed the new topic: no partition assigned, the worker
    idle for good (the fault matrix caught it about one worker start in ten).
    """
    settings = settings_for(kafka, topic_prefix, tmp_path / "data")
    asyncio.run(ensure_topics(settings))
    worker = build_worker(settings, load_site(SITE))
    name = worker.table.changelog_topic.get_topic_name()
    assert name == changelog_topic(settings.app_id)
    partitions, retention = asyncio.run(topic_settings(settings.kafka_bootstrap, name))
    assert partitions == settings.kafka_partitions
    assert retention["cleanup.policy"] == "compact"
