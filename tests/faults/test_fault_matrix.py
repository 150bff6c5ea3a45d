"""The fault matrix: each fault on the real servers with counted traffic, as one table.

Every row runs the whole production path (``tests/faults/pipeline.py``): equipment →
Mosquitto / OPC-UA → ``envmon collect`` → Kafka → ``envmon stream worker`` → InfluxDB, and
``envmon excursions consume`` → PostgreSQL. A row injects its fault while the equipment
sends, then counts: readings in and stored, lost, duplicated, the alarms and records
``envmon replay`` expects from the readings that went in against what was raised and
stored, and the system alarms the fault raised. Rows run a few at a time (each on its own
topics, database and site tag; a row that stops a server has its own). The table goes to
the terminal and to ``var/test-artifacts/fault-matrix.{json,md}``.

``make faults`` runs this file alone; ``make test`` runs it with the rest.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devservers.fixtures import scratch_home
from devservers.influxdb import InfluxDB
from devservers.kafka import KafkaBroker
from devservers.mosquitto import Mosquitto
from devservers.postgres import PostgresServer
from tests.faults import matrix
from tests.faults.equipment import Script
from tests.faults.matrix import Row
from tests.faults.pipeline import START_S, Pipeline, Servers

pytestmark = pytest.mark.timeout(1500)

ARTIFACTS = Path(__file__).parents[2] / "var" / "test-artifacts"
#: Samples (seconds) of equipment traffic per row; the fault starts at FAULT_AT.
SAMPLES = 50
FAULT_AT = 15
SCRIPT = Script(inc_action=(10, 38), inc_alert=(42, 46), frz_action=(12, 40), samples=SAMPLES)
#: Rows running at once (most of a row is waiting), and the pause between their starts
#: (spreads the processes' start-up over the machine's 2 CPUs).
PARALLEL = 9
STAGGER_S = 4.0

Fault = Callable[[Pipeline, Row, Path], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    """One fault of the matrix."""

    name: str
    description: str
    inject: Fault
    own: tuple[str, ...] = ()  # servers this row stops, so it gets its own
    system_alarms: tuple[str, ...] = ()


async def collector_down(p: Pipeline, row: Row, _work: Path) -> None:
    """``envmon collect`` SIGKILLed for 15 s while the equipment keeps sending."""
    assert p.collect is not None
    await p.until_sample(FAULT_AT)
    await asyncio.to_thread(p.collect.kill)
    await p.until_sample(FAULT_AT + 15)
    p.collect.start()


async def mosquitto_restart(p: Pipeline, row: Row, _work: Path) -> None:
    """Mosquitto stopped (it saves its persistence) and started again 7 s later."""
    await p.until_sample(FAULT_AT)
    await asyncio.to_thread(p.servers.mosquitto.stop)
    await p.until_sample(FAULT_AT + 7)
    await asyncio.to_thread(p.servers.mosquitto.start)


async def opcua_restart(p: Pipeline, row: Row, _work: Path) -> None:
    """The OPC-UA gateway stops and comes back 7 s later on the same endpoint."""
    await p.until_sample(FAULT_AT)
    await p.restart_gateway(7)


async def kafka_stopped(p: Pipeline, row: Row, _work: Path) -> None:
    """The Kafka broker stopped for 20 s mid-stream, every envmon process left running."""
    await p.until_sample(FAULT_AT)
    await asyncio.to_thread(p.servers.kafka.stop)
    await p.until_sample(FAULT_AT + 20)
    await asyncio.to_thread(p.servers.kafka.start)


async def worker_killed(p: Pipeline, row: Row, _work: Path) -> None:
    """The stream worker SIGKILLed while excursions are open, restarted 3 s later."""
    worker = p.workers[0]
    await p.until_sample(FAULT_AT + 5)  # inside the incubator's and the freezer's excursions
    await asyncio.to_thread(worker.kill)
    await p.until_sample(FAULT_AT + 8)
    worker.start()


async def second_worker(p: Pipeline, row: Row, _work: Path) -> None:
    """A second stream worker joins (partitions move to it) and leaves again (SIGTERM)."""
    await p.until_sample(FAULT_AT)
    second = p.worker_service(2)
    p.workers.append(second)
    second.start()
    await p.until_sample(FAULT_AT + 25)
    await asyncio.to_thread(second.terminate, 60)


async def timeseries_down(p: Pipeline, row: Row, _work: Path) -> None:
    """InfluxDB stopped for 15 s under the worker."""
    await p.until_sample(FAULT_AT)
    await asyncio.to_thread(p.servers.influxdb.stop)
    await p.until_sample(FAULT_AT + 15)
    await asyncio.to_thread(p.servers.influxdb.start, START_S)  # 60 s is short with 9 rows


async def postgres_restart(p: Pipeline, row: Row, _work: Path) -> None:
    """PostgreSQL stopped for 10 s under the record consumer."""
    await p.until_sample(FAULT_AT)
    await asyncio.to_thread(p.servers.postgres.stop)
    await p.until_sample(FAULT_AT + 10)
    await asyncio.to_thread(p.servers.postgres.start)


async def disk_full(p: Pipeline, row: Row, work: Path) -> None:
    """The filesystem of the collector's buffer fills up for 15 s (a real tmpfs of 8 MB)."""
    await p.until_sample(FAULT_AT)
    ballast = p.buffer_path.parent / "ballast"
    await asyncio.to_thread(_fill, ballast)
    await p.until_sample(FAULT_AT + 15)
    ballast.unlink()


def _fill(path: Path) -> None:
    """Write until the filesystem refuses (ENOSPC)."""
    chunk = b"\0" * 65536
    with path.open("wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError:
            pass


CASES = (
    Case(
        "collector down",
        "envmon collect SIGKILLed for 15 s while the equipment publishes",
        collector_down,
    ),
    Case(
        "Mosquitto restart",
        "the MQTT broker stopped and started again 7 s later (persistence on)",
        mosquitto_restart,
        own=("mosquitto",),
        system_alarms=("disconnected",),
    ),
    Case(
        "OPC-UA server restart",
        "the OPC-UA gateway stopped and started again 7 s later on the same endpoint",
        opcua_restart,
        system_alarms=("disconnected",),
    ),
    Case(
        "Kafka stopped 20 s",
        "the Kafka broker stopped for 20 s mid-stream, the collector and worker running",
        kafka_stopped,
        own=("kafka",),
    ),
    Case(
        "stream worker SIGKILL",
        "the stream worker SIGKILLed mid-excursion and restarted 3 s later",
        worker_killed,
    ),
    Case(
        "second worker joins and leaves",
        "a second stream worker joins (rebalance) and leaves 25 s later (SIGTERM)",
        second_worker,
    ),
    Case(
        "time-series store down",
        "InfluxDB stopped for 15 s under the stream worker",
        timeseries_down,
        own=("influxdb",),
        system_alarms=("timeseries_unavailable",),
    ),
    Case(
        "PostgreSQL restart",
        "PostgreSQL stopped for 10 s under the record consumer",
        postgres_restart,
        own=("postgres",),
    ),
    Case(
        "disk full under the buffer",
        "the collector's buffer filesystem (tmpfs, 8 MB) full for 15 s",
        disk_full,
        system_alarms=("buffer_full",),
    ),
)


def _mount_tmpfs(directory: Path) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _umount(directory: Path) -> None:
    subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


async def run_case(case: Case, shared: Servers, work: Path) -> Row:
    """Run one row: its own pipeline (and servers where it stops one), then measure."""
    row = Row(case.name, case.description, expected_system_alarms=case.system_alarms)
    started = time.monotonic()
    own: list[object] = []
    servers = Servers(shared.kafka, shared.mosquitto, shared.influxdb, shared.postgres)
    mounted = False
    pipeline: Pipeline | None = None
    try:
        if "mosquitto" in case.own:
            servers.mosquitto = Mosquitto(work / "mosquitto")
        if "kafka" in case.own:
            servers.kafka = KafkaBroker(work / "kafka")
        if "influxdb" in case.own:
            servers.influxdb = InfluxDB(work / "influxdb")
        if "postgres" in case.own:
            servers.postgres = PostgresServer(scratch_home("pg") / "pg")
        for name in case.own:
            server = getattr(servers, name)
            await asyncio.to_thread(server.start)
            own.append(server)
        pipeline = Pipeline(servers, work / "pipeline", SCRIPT)
        if case.inject is disk_full:
            mounted = _mount_tmpfs(pipeline.buffer_path.parent)
            if not mounted:
                row.notes.append("no tmpfs could be mounted (not root?): the row cannot run")
                row.error = "cannot mount a small filesystem for the buffer"
                return row
        await pipeline.start()
        await case.inject(pipeline, row, work)
        await pipeline.finish_equipment()
        row.outcome = await pipeline.measure()
    except Exception as exc:  # a row that breaks is a failing row, with its reason
        row.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        if pipeline is not None:
            await pipeline.stop()
            for service in pipeline.services():
                (ARTIFACTS / "fault-matrix-logs").mkdir(parents=True, exist_ok=True)
                if service.log.exists():
                    shutil.copy(
                        service.log,
                        ARTIFACTS / "fault-matrix-logs" / f"{case.name.replace(' ', '-')}"
                        f"-{service.name}.log",
                    )
        for server in reversed(own):
            await asyncio.to_thread(server.stop)  # type: ignore[attr-defined]
        if mounted and pipeline is not None:
            _umount(pipeline.buffer_path.parent)
        row.seconds = time.monotonic() - started
    return row


async def test_fault_matrix(
    kafka: KafkaBroker,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    """Every fault of the matrix: nothing lost or duplicated, every alarm and record."""
    started = datetime.now(UTC)
    shared = Servers(kafka, mosquitto, influxdb, postgres)
    only = os.environ.get("ENVMON_FAULTS", "")
    cases = [c for c in CASES if not only or any(o in c.name for o in only.split(","))]
    limit = asyncio.Semaphore(PARALLEL)

    async def limited(n: int, case: Case) -> Row:
        await asyncio.sleep(n * STAGGER_S)
        async with limit:
            return await run_case(case, shared, tmp_path / f"row{n}")

    rows = list(await asyncio.gather(*(limited(n, c) for n, c in enumerate(cases))))
    matrix.write(rows, ARTIFACTS, started)
    print("\n" + matrix.text_table(rows))
    failing = [f"{r.fault}: {'; '.join(r.problems)}" for r in rows if r.problems]
    assert not failing, "\n".join(failing)
