"""A small faust-streaming app for the Kafka tests: it counts readings per sensor in a table.

In the test's own event loop::

    app, counts = make_app(app_id, bootstrap, topic, datadir)
    await app.start()
    await wait_ready(app)          # partitions assigned, table recovered
    ...
    await app.stop()               # commits the offsets of what was processed

As a worker process (faust's own CLI and signal handling; SIGTERM stops it cleanly)::

    FAUST_COUNTER_ID=... FAUST_COUNTER_BOOTSTRAP=127.0.0.1:PORT FAUST_COUNTER_TOPIC=...
    FAUST_COUNTER_DATADIR=... python -m tests.integration.kafka.faust_counter \
        worker --without-web --loglevel=info --logfile=worker.log
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import faust
from faust.tables import TableManager
from faust.types import TableT

#: Partitions of the readings topic, of the table and so of its changelog: faust tables
#: are co-partitioned with the stream that updates them.
PARTITIONS = 2


def make_app(
    app_id: str,
    bootstrap: str,
    readings_topic: str,
    datadir: Path | str,
    *,
    partitions: int = PARTITIONS,
) -> tuple[faust.App, TableT[str, int]]:
    """Return a faust app counting the readings of ``readings_topic`` per key, and its table."""
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",  # the table lives in memory and is rebuilt from its changelog
        datadir=str(datadir),  # default: "<app id>-data" in the current directory
        web_enabled=False,  # no aiohttp web server (and no port to find)
        autodiscover=False,
        topic_partitions=partitions,  # of the topics faust creates: changelog, repartition
        topic_replication_factor=1,  # one broker
        producer_acks=-1,  # "all": a changelog write is acknowledged by every ISR
        consumer_auto_offset_reset="earliest",  # a new group reads what came before it
        broker_commit_every=100,
        broker_commit_interval=0.5,  # seconds; commits also happen on a clean stop
        table_standby_replicas=0,  # one worker: no standbys to keep
    )
    readings = app.topic(readings_topic, key_type=str, partitions=partitions)
    counts = app.Table("counts", default=int, partitions=partitions)

    @app.agent(readings)
    async def count(stream: faust.StreamT[Any]) -> None:
        async for sensor_id, _reading in stream.items():
            counts[sensor_id] += 1

    return app, counts


async def wait_ready(app: faust.App, timeout: float = 60.0) -> float:
    """Wait until the app has partitions, is not rebalancing and recovered its tables.

    Returns the seconds waited.
    """
    tables = app.tables
    # The TableManagerT protocol does not declare the recovery service the real one has.
    assert isinstance(tables, TableManager)
    start = time.monotonic()
    while True:
        if app.consumer.assignment() and not app.rebalancing and tables.recovery.completed.is_set():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"faust app {app.conf.id} not ready after {timeout:g} s")
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    worker_app, _ = make_app(
        os.environ["FAUST_COUNTER_ID"],
        os.environ["FAUST_COUNTER_BOOTSTRAP"],
        os.environ["FAUST_COUNTER_TOPIC"],
        os.environ["FAUST_COUNTER_DATADIR"],
    )
    worker_app.main()
