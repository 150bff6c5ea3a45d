"""Two stream workers share the partitions; one stops and the other takes over."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from devservers.kafka import KafkaBroker
from envmon.bus import ALARMS, EXCURSIONS
from envmon.testing import eventually
from envmon.timeutil import parse_ts
from excursions.db import store_engine
from excursions.migrate import upgrade
from excursions.records import RECORD, RecordStore

from .test_worker import (
    canonical,
    final_records,
    make_topics,
    publish,
    read_topic,
    scripted_day,
    settings_for,
    start_worker,
    stored_readings,
)

pytestmark = pytest.mark.timeout(240)


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """Return the consumer group's state and its number of members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    except KafkaError:  # e.g. the group coordinator of a fresh broker is not ready yet
        return "", 0
    finally:
        await admin.close()
    _error, _group, state, _protocol_type, _protocol, members = response.groups[0][:6]
    return str(state), len(members)


def sensors_stored(path: Path) -> dict[str, int]:
    """Return how many readings of each sensor a worker's SQLite time series holds."""
    with sqlite3.connect(path, timeout=5) as db:
        rows = db.execute("SELECT sensor_id, COUNT(*) FROM readings GROUP BY sensor_id")
        return {sensor: int(n) for sensor, n in rows}


class TestTwoWorkers:
    async def test_partitions_shared_then_taken_over(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Both workers take part; after one stops the other does all; no record is lost
        or doubled."""
        readings, expected_alarms, expected_records = scripted_day(tmp_path)
        split = next(i for i, r in enumerate(readings) if r.ts >= parse_ts("2026-01-05T09:15Z"))
        settings = settings_for(kafka, topic_prefix, tmp_path / "worker")
        await make_topics(settings)
        # Each worker has its own local state and SQLite time series: what each stored
        # shows which partitions it held.
        own = [settings.model_copy(update={"data_dir": tmp_path / f"w{i}"}) for i in range(2)]
        dbs = [conf.data_dir / "timeseries.sqlite3" for conf in own]
        workers = [start_worker(conf, tmp_path / f"worker-{i}.log") for i, conf in enumerate(own)]
        try:

            async def both_joined() -> bool:
                return await group_state(settings.kafka_bootstrap, settings.app_id) == (
                    "Stable",
                    2,
                )

            await eventually(
                both_joined, what="two workers in a stable group", timeout=60, interval=0.2
            )
            await publish(settings, readings[:split])

            async def first_half() -> bool:
                return sum(stored_readings(db) for db in dbs) >= split

            await eventually(first_half, what="the first half stored", timeout=90, interval=0.2)
            first_half_by_worker = [sensors_stored(db) for db in dbs]
            workers[0].send_signal(signal.SIGTERM)
            assert workers[0].wait(30) == 0

            async def one_left() -> bool:
                return await group_state(settings.kafka_bootstrap, settings.app_id) == (
                    "Stable",
                    1,
                )

            await eventually(
                one_left,
                what="the remaining worker alone in a stable group",
                timeout=60,
                interval=0.2,
            )
            await publish(settings, readings[split:])

            async def everything() -> bool:
                assert workers[1].poll() is None
                return stored_readings(dbs[1]) >= len(readings) - stored_readings(dbs[0])

            await eventually(everything, what="every reading stored", timeout=120, interval=0.2)
            alarms = await read_topic(settings, ALARMS, until=len(expected_alarms))
            records = await read_topic(settings, EXCURSIONS, until=len(expected_records))
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(30)

        # Shared: both workers evaluated sensors of the first half, and none in common.
        a, b = first_half_by_worker
        assert a, "the first worker held no partition"
        assert b, "the second worker held no partition"
        assert not set(a) & set(b)
        # Taken over: the second half all went to the remaining worker.
        final = sensors_stored(dbs[1])
        assert sum(final.values()) + sum(a.values()) == len(readings)  # none lost, none twice
        assert set(final) | set(a) == {r.sensor_id for r in readings}
        # A clean hand-over commits what was processed: nothing is repeated at all.
        assert canonical(alarms) == canonical(expected_alarms)
        engine = store_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
        upgrade(engine)
        store = RecordStore(engine)
        for record in records:
            store.apply(RECORD.validate_python(record))
        assert store.ignored == 0  # no record arrived twice
        assert canonical(final_records(records)) == canonical(expected_records)
        engine.dispose()
