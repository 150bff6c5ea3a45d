"""The alerting service on real servers: Kafka, PostgreSQL, an SMTP server (aiosmtpd).

The whole path (readings → stream worker → alarms → ``envmon alerts`` → mail) and the fault
cases the outbox exists for, each with counts of what was expected, sent and doubled:
the service killed (SIGKILL) between two escalation steps, an alarm delivered twice, two
instances running at once, and the mail server refusing for a while.

Escalation waits are seconds here (the configuration allows any duration); the service
runs on the real clock, so these tests wait for real time to pass — seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from alerts.smtp import EmbeddedSmtpServer, ReceivedMail
from alerts.store import AttemptRow, IncidentRow, NotificationRow
from devservers.kafka import KafkaBroker
from devservers.postgres import PostgresServer, postgres_installed
from envmon.bus import ALARMS, ALL_TOPICS, NOTIFICATIONS, READINGS, Message
from envmon.commands.alerts import build_service
from envmon.config import load_site
from envmon.models import AlarmEvent, AlarmKind, Direction, Level, Reading
from envmon.settings import Settings
from envmon.timeutil import utcnow
from excursions.migrate import upgrade
from stream.kafka.app import StreamWorker
from stream.kafka.bus import KafkaBus
from stream.kafka.topics import create_topics
from stream.timeseries.sink import SqliteSink
from tests.unit.alerts.sites import freezer_site

from .faust_counter import wait_ready
from .test_worker import read_topic

pytestmark = pytest.mark.timeout(180)
if not postgres_installed():  # pragma: no cover - the machine has the Debian packages
    pytest.skip("PostgreSQL is not installed (apt-get install postgresql)", allow_module_level=True)

PARTITIONS = 4
STEP_S = 4  # each escalation step waits this long
ALERTING = """\
alerting:
  grouping: {window: %(window)s}
  contacts:
    - id: alice
      name: Alice
      channels: [{id: email, url: "mailto://127.0.0.1:%(port)d?to=alice@example.org&from=envmon@example.org"}]
    - id: bob
      name: Bob
      channels: [{id: email, url: "mailto://127.0.0.1:%(port)d?to=bob@example.org&from=envmon@example.org"}]
  policies:
    - id: freezers
      steps:
        - {notify: {contact: alice}, wait: %(step)ds}
        - {notify: {contact: bob}, wait: %(step)ds}
  routes:
    - {policy: freezers}
"""


def site_file(path: Path, smtp_port: int, freezers: int = 20, window: str = "0.3s") -> Path:
    head = freezer_site(
        freezers=freezers, grade=None, name="Alert test site", area=("cold-store", "Cold store")
    )
    text = head + ALERTING % {
        "port": smtp_port,
        "step": STEP_S,
        "window": window,
    }
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def store(postgres: PostgresServer, topic_prefix: str) -> Iterator[tuple[str, Engine]]:
    url = postgres.create_database(f"alerts_{topic_prefix}")
    engine = create_engine(url)
    upgrade(engine)
    yield url, engine
    engine.dispose()
    postgres.drop_database(f"alerts_{topic_prefix}")


@pytest.fixture
def smtp() -> Iterator[EmbeddedSmtpServer]:
    with EmbeddedSmtpServer() as server:
        yield server


def settings_for(
    kafka: KafkaBroker, prefix: str, tmp_path: Path, site: Path, db_url: str
) -> Settings:
    return Settings(
        site=site,
        bus="kafka",
        kafka_bootstrap=kafka.bootstrap,
        kafka_partitions=PARTITIONS,
        app_id=prefix,
        topic_prefix=f"{prefix}.",
        data_dir=tmp_path,
        records_db=db_url,
        collect_metrics_port=0,
        worker_metrics_port=0,
        records_metrics_port=0,
        tick_s=0,
    )


async def prepared(
    kafka: KafkaBroker,
    prefix: str,
    tmp_path: Path,
    store: tuple[str, Engine],
    smtp: EmbeddedSmtpServer,
    **site_options: Any,
) -> tuple[Settings, Engine]:
    """Write the test's site file, make its topics; return its settings and store."""
    url, engine = store
    site = site_file(tmp_path / "site.yaml", smtp.port, **site_options)
    settings = settings_for(kafka, prefix, tmp_path, site, url)
    await make_topics(settings)
    return settings, engine


async def make_topics(settings: Settings) -> None:
    await create_topics(
        settings.kafka_bootstrap, {settings.topic(t): PARTITIONS for t in ALL_TOPICS}
    )


def raised(n: int, *, at_s: float = 0) -> AlarmEvent:
    return AlarmEvent(
        event=AlarmKind.RAISED,
        sensor_id=f"frz-{n}.temperature",
        area="cold-store",
        parameter="temperature",
        unit="degC",
        ts=utcnow() + timedelta(seconds=at_s),
        level=Level.ALERT,
        direction=Direction.HIGH,
        value=-65.2,
        limit=-70.0,
        excursion_id=f"exc-{n}",
    )


async def publish_alarms(settings: Settings, alarms: list[AlarmEvent]) -> None:
    bus = KafkaBus(settings.kafka_bootstrap, topic_prefix=settings.topic_prefix)
    await bus.start()
    try:
        await bus.publish(
            [Message(ALARMS, a.sensor_id, a.model_dump_json().encode()) for a in alarms]
        )
    finally:
        await bus.stop()


@contextlib.asynccontextmanager
async def service_in_process(
    settings: Settings, engine: Engine, *, instance: str, batch: int | None = None
) -> AsyncIterator[None]:
    bus = KafkaBus(settings.kafka_bootstrap, client_id=instance, topic_prefix=settings.topic_prefix)
    await bus.start()
    service = build_service(
        load_site(settings.site),
        settings.site,
        bus=bus,
        db=engine,
        group=f"{settings.app_id}-alerts",
        instance=instance,
        environ={},
        poll_s=0.05,
    )
    service.dispatcher.retry_base_s = 0.5
    if batch is not None:
        service.dispatcher.batch = batch
    task = asyncio.create_task(service.run())
    try:
        yield
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)
        await bus.stop()


def start_service(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "envmon.cli", "alerts", "run"],
            env={**os.environ, **settings.as_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def pages(mails: list[ReceivedMail]) -> collections.Counter[tuple[str, str]]:
    """How often each person was told about each incident (a grouped mail lists several).

    More than once is a duplicate.
    """
    told: collections.Counter[tuple[str, str]] = collections.Counter()
    for mail in mails:
        for line in mail.body.splitlines():
            if line.startswith("• "):
                told[(mail.recipients[0], line.split(" — ")[0])] += 1
    return told


def duplicates(told: collections.Counter[tuple[str, str]]) -> int:
    return sum(n - 1 for n in told.values())


async def settle(smtp: EmbeddedSmtpServer, count: int, timeout: float) -> list[ReceivedMail]:
    """Wait until ``count`` pages arrived, then a while longer (a duplicate would show)."""
    deadline = time.monotonic() + timeout
    while sum(pages(smtp.messages).values()) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)
    return list(smtp.messages)


def count(engine: Engine, *where: object) -> int:
    with Session(engine) as session:
        return int(
            session.scalar(select(func.count()).select_from(NotificationRow).where(*where)) or 0
        )


class TestWholePath:
    async def test_readings_through_the_worker_page_on_call_staff_by_mail(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path, store, smtp
    ) -> None:
        """Readings beyond a limit → stream worker → alarm → alerts service → one mail each."""
        settings, engine = await prepared(kafka, topic_prefix, tmp_path, store, smtp, freezers=3)
        start = utcnow() - timedelta(minutes=5)
        readings = [
            Reading(sensor_id=f"frz-{n}.temperature", ts=start + timedelta(seconds=10 * i), value=v)
            for n in (1, 2, 3)
            for i, v in enumerate([-80.0, -79.5, -66.0, -65.5, -65.0])
        ]
        bus = KafkaBus(settings.kafka_bootstrap, topic_prefix=settings.topic_prefix)
        await bus.start()
        await bus.publish([Message(READINGS, r.sensor_id, r.to_json()) for r in readings])
        await bus.stop()
        worker = StreamWorker(
            settings,
            load_site(settings.site).sensors(),
            SqliteSink(tmp_path / "ts.sqlite3"),
            on_fatal=lambda _e: None,
        )
        await worker.app.start()
        try:
            await wait_ready(worker.app)
            async with service_in_process(settings, engine, instance="a"):
                mails = await settle(smtp, 3, 60)
        finally:
            await worker.app.stop()
            await worker.sink.close()
        told = pages(mails)
        assert sorted(who for who, _ in told) == ["alice@example.org"] * 3
        assert duplicates(told) == 0
        assert all("Freezer" in m.subject and "ALERT" in m.subject for m in mails)
        assert any("−66.0 °C (limit −70.0 °C)" in m.body for m in mails), mails[0].body
        notifications = await read_topic(settings, NOTIFICATIONS, until=3)
        assert sorted(n["status"] for n in notifications) == ["sent"] * 3
        assert all("SMTP 250" in n["detail"] for n in notifications)


class TestFaults:
    async def test_killed_between_two_steps_sends_the_second_step_once(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path, store, smtp
    ) -> None:
        """SIGKILL after step 1: after the restart, step 2 goes out exactly once."""
        settings, _engine = await prepared(kafka, topic_prefix, tmp_path, store, smtp)
        log = tmp_path / "alerts.log"
        process = start_service(settings, log)
        try:
            await publish_alarms(settings, [raised(1)])
            first = await settle(smtp, 1, 60)
            assert [m.recipients[0] for m in first] == ["alice@example.org"]
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            await asyncio.sleep(STEP_S)  # step 2 falls due while nothing runs
            process = start_service(settings, log)
            mails = await settle(smtp, 2, 60)
            await asyncio.sleep(STEP_S + 1)  # the policy ends after step 2: nothing more
            mails = list(smtp.messages)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        told = pages(mails)
        print(
            f"\nkilled between steps: expected 2, sent {sum(told.values())}, duplicates "
            f"{duplicates(told)}"
        )
        assert [m.recipients[0] for m in mails] == ["alice@example.org", "bob@example.org"]
        assert process.returncode == 0, log.read_text()

    async def test_an_alarm_delivered_twice_pages_nobody_twice(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path, store, smtp
    ) -> None:
        """The same alarm published twice (at-least-once delivery) makes one page."""
        settings, engine = await prepared(kafka, topic_prefix, tmp_path, store, smtp)
        alarms = [raised(n) for n in range(1, 6)]
        await publish_alarms(settings, alarms + alarms)
        async with service_in_process(settings, engine, instance="a"):
            mails = await settle(smtp, 5, 60)
        told = pages(mails)
        print(
            f"\nredelivered: expected 5, sent {sum(told.values())}, duplicates {duplicates(told)}"
        )
        assert sum(told.values()) == 5
        assert duplicates(told) == 0

    async def test_two_instances_never_send_the_same_notification(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path, store, smtp
    ) -> None:
        """Two services on one store and one group: every page of two steps exactly once.

        No grouping and small claims, so that both instances send at the same time.
        """
        settings, engine = await prepared(kafka, topic_prefix, tmp_path, store, smtp, window="0s")
        await publish_alarms(settings, [raised(n) for n in range(1, 21)])
        async with (
            service_in_process(settings, engine, instance="one", batch=2),
            service_in_process(settings, engine, instance="two", batch=2),
        ):
            mails = await settle(smtp, 40, 60)
            await asyncio.sleep(STEP_S)  # the policy ends after step 2: nothing more
            mails = list(smtp.messages)
        told = pages(mails)
        with Session(engine) as session:
            incidents = session.scalar(select(func.count()).select_from(IncidentRow))
            senders = set(session.scalars(select(NotificationRow.claimed_by)).all())
        print(
            f"\ntwo instances: expected 40, sent {sum(told.values())} in {len(mails)} mails,"
            f" duplicates {duplicates(told)}, senders {sorted(map(str, senders))}"
        )
        assert incidents == 20
        assert sum(told.values()) == 40  # 20 incidents x 2 steps
        assert duplicates(told) == 0
        assert senders == {"one", "two"}
        assert count(engine, NotificationRow.status == "sent") == 40
        with Session(engine) as session:
            attempts = session.scalar(select(func.count()).select_from(AttemptRow))
        assert attempts == 40

    async def test_the_mail_server_refusing_for_a_while_loses_and_doubles_nothing(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path, store, smtp
    ) -> None:
        """SMTP answers 451 for a while, then takes mail: each page arrives once."""
        settings, engine = await prepared(kafka, topic_prefix, tmp_path, store, smtp)
        smtp.fail_with(451)
        await publish_alarms(settings, [raised(n) for n in range(1, 4)])
        async with service_in_process(settings, engine, instance="a"):
            deadline = time.monotonic() + 30
            while smtp.refused < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            smtp.fail_with(None)
            mails = await settle(smtp, 3, 30)
        told = pages(mails)
        with Session(engine) as session:
            failed = session.scalar(
                select(func.count()).select_from(AttemptRow).where(AttemptRow.ok.is_(False))
            )
        print(
            f"\nSMTP down: expected 3, sent {sum(told.values())}, duplicates "
            f"{duplicates(told)}, refused {smtp.refused}, failed attempts stored {failed}"
        )
        assert smtp.refused >= 2
        assert failed is not None
        assert failed >= 2
        assert sum(told.values()) == 3
        assert duplicates(told) == 0
        assert count(engine, NotificationRow.status == "sent") == 3
