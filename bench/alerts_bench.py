"""Benchmark of the alerting service: page latency under a burst, and timer cost vs open incidents.

1. *latency*: 1,000 alarms across 100 areas (10 sensors each) are published at once on the
   in-process bus; the real service (intake, engine, dispatcher, apprise) runs on a SQLite
   store (and PostgreSQL with ``--postgres``) and mails an aiosmtpd server on 127.0.0.1.
   For each alarm: the time from its publication until the dispatcher recorded that the
   SMTP server took the first page about it (grouped and storm-merged mails carry
   several). Reported: p50, p99, max.
2. *timers*: the store holds N open incidents whose timers lie in the future (N = 100,
   1,000, 10,000) plus 10 that are due each tick; a tick (``AlertEngine.tick``) and a
   dispatcher claim (``Dispatcher.claim``) are timed over many rounds. The figure that
   matters is the ratio of the per-tick cost at 10,000 to that at 100 (1.0: flat).

    python -m bench.alerts_bench
    python -m bench.alerts_bench --postgres     # also on a PostgreSQL server it starts
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, func, select, update
from sqlalchemy.orm import Session

from alerts.smtp import EmbeddedSmtpServer
from alerts.store import PENDING, SENT, TRIGGERED, IncidentRow, NotificationRow, incident_id
from envmon.bus import ALARMS, InMemoryBus, Message
from envmon.commands.alerts import build_service
from envmon.config import parse_site
from envmon.config.schema import SiteConfig
from envmon.models import AlarmEvent, AlarmKind, Direction, Level
from envmon.timeutil import utcnow
from excursions.db import store_engine
from excursions.migrate import upgrade

AREAS = 100
PER_AREA = 10


def site_text(smtp_port: int, window: str, areas: int = AREAS) -> str:
    """Return a site of ``areas`` rooms with ``PER_AREA`` temperature sensors each."""
    lines = ["site: {name: Alert benchmark site, timezone: Europe/Amsterdam}", "areas:"]
    for a in range(areas):
        lines += [f"  - id: room-{a}", f"    name: Room {a}", "    instruments:"]
        for s in range(PER_AREA):
            lines += [
                f"      - id: ts-{a}-{s}",
                f"        name: Sensor {a}-{s}",
                "        kind: room_sensor",
                "        channels:",
                "          - {parameter: temperature, unit: degC,"
                " limits: {alert_high: 25, action_high: 27}}",
            ]
    url = f"mailto://127.0.0.1:{smtp_port}?to=oncall@example.org&from=envmon@example.org"
    lines += [
        "alerting:",
        f"  grouping: {{window: {window}}}",
        "  contacts:",
        f'    - {{id: oncall, name: On call, channels: [{{id: email, url: "{url}"}}]}}',
        "  policies:",
        "    - {id: rooms, steps: [{notify: {contact: oncall}, wait: 10m},"
        " {notify: {contact: oncall}, wait: 10m}]}",
        "  routes:",
        "    - {policy: rooms}",
    ]
    return "\n".join(lines) + "\n"


def alarm(area: int, sensor: int) -> AlarmEvent:
    """Return a raised alert of one sensor."""
    return AlarmEvent(
        event=AlarmKind.RAISED,
        sensor_id=f"ts-{area}-{sensor}.temperature",
        area=f"room-{area}",
        parameter="temperature",
        unit="degC",
        ts=utcnow(),
        level=Level.ALERT,
        direction=Direction.HIGH,
        value=25.4,
        limit=25.0,
        excursion_id=f"exc-{area}-{sensor}",
    )


def first_pages(db: Engine) -> list[datetime]:
    """When each incident's first page was recorded as taken by the mail server."""
    with Session(db) as session:
        return list(
            session.scalars(
                select(func.min(NotificationRow.sent_at))
                .where(NotificationRow.status == SENT)
                .group_by(NotificationRow.incident_id)
            )
        )


async def latency(db: Engine, site: SiteConfig, smtp: EmbeddedSmtpServer) -> dict[str, Any]:
    """Publish 1,000 alarms at once; return the latency figures until their first page.

    A page counts from the moment the dispatcher recorded the server's acceptance (after
    the SMTP server answered 250): an upper bound of the acceptance time.
    """
    bus = InMemoryBus()
    service = build_service(
        site, Path("bench-site.yaml"), bus=bus, db=db, group="bench", environ={}, poll_s=0.02
    )
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.5)  # the loops are up
    alarms = [alarm(a, s) for a in range(AREAS) for s in range(PER_AREA)]
    messages = [Message(ALARMS, e.sensor_id, e.model_dump_json().encode()) for e in alarms]
    published = utcnow()
    await bus.publish(messages)
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
        if len(await asyncio.to_thread(first_pages, db)) >= len(alarms):
            break
    service.stop()
    await task
    waits = sorted((at - published).total_seconds() for at in first_pages(db))
    return {
        "alarms": len(alarms),
        "paged": len(waits),
        "missing": len(alarms) - len(waits),
        "mails": len(smtp.messages),
        "p50_s": round(statistics.median(waits), 3),
        "p99_s": round(waits[int(0.99 * (len(waits) - 1))], 3),
        "max_s": round(waits[-1], 3),
    }


def fill(db: Engine, start: int, stop: int) -> None:
    """Store open incidents ``start``..``stop - 1``, timers an hour ahead (plus sent pages)."""
    now = utcnow()
    with Session(db) as session, session.begin():
        for n in range(start, stop):
            key = f"excursion:bench-{n}"
            session.add(
                IncidentRow(
                    id=incident_id(key),
                    key=key,
                    kind="excursion",
                    sensor_id=f"ts-{n % AREAS}-0.temperature",
                    area=f"room-{n % AREAS}",
                    instrument=f"ts-{n % AREAS}-0",
                    parameter="temperature",
                    component=None,
                    excursion_id=f"bench-{n}",
                    level="alert",
                    title=f"Sensor {n} temperature: beyond its high limit",
                    event=alarm(n % AREAS, 0).model_dump(mode="json"),
                    policy_id="rooms",
                    route=0,
                    state=TRIGGERED,
                    opened_at=now,
                    updated_at=now,
                    step=0,
                    cycle=0,
                    pages=1,
                    reminders=0,
                    next_at=now + timedelta(hours=1),
                    next_kind="step",
                    row_version=1,
                )
            )
            session.add(
                NotificationRow(
                    id=f"bench-{n}",
                    incident_id=incident_id(key),
                    contact_id="oncall",
                    channel_id="email",
                    purpose="page",
                    step=0,
                    cycle=0,
                    group_key=f"oncall|email|page|room-{n % AREAS}",
                    status=SENT,
                    due_at=now,
                    attempts=1,
                    created_at=now,
                    detail="",
                )
            )


def timers(db: Engine, site: SiteConfig, counts: list[int], rounds: int) -> list[dict[str, Any]]:
    """Time a tick and a claim with 10 timers due, at each number of open incidents."""
    from alerts.delivery import CapturingNotifier

    results = []
    held = 0
    for count in counts:
        fill(db, held, count)
        held = count
        service = build_service(
            site,
            Path("bench-site.yaml"),
            bus=InMemoryBus(),
            db=db,
            group="bench",
            notifier=CapturingNotifier(),
            environ={},
        )
        ticks, claims = [], []
        for r in range(rounds):
            now = utcnow()
            with Session(db) as session, session.begin():  # 10 timers fall due
                session.execute(
                    update(IncidentRow)
                    .where(
                        IncidentRow.id.in_(
                            [
                                incident_id(f"excursion:bench-{(r * 10 + i) % count}")
                                for i in range(10)
                            ]
                        )
                    )
                    .values(
                        next_at=now - timedelta(seconds=1),
                        next_kind="step",
                        state=TRIGGERED,
                        step=0,
                        cycle=0,
                    )
                )
            started = time.perf_counter()
            with Session(db) as session, session.begin():
                service.engine.tick(session)
            ticks.append(time.perf_counter() - started)
            started = time.perf_counter()
            service.dispatcher.claim()
            claims.append(time.perf_counter() - started)
            with Session(db) as session, session.begin():  # what the claim took, as sent
                session.execute(
                    update(NotificationRow)
                    .where(NotificationRow.status.in_(("sending", PENDING)))
                    .values(status=SENT)
                )
        results.append(
            {
                "open": count,
                "tick_ms": statistics.median(ticks) * 1000,
                "claim_ms": statistics.median(claims) * 1000,
            }
        )
    return results


async def run(args: argparse.Namespace) -> None:
    """Run both measurements on each store asked for and print the figures."""
    stores: list[tuple[str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="envmon-alerts-bench-"))
    stores.append(("SQLite", f"sqlite:///{tmp / 'store.sqlite3'}"))
    server = None
    if args.postgres:
        from devservers.postgres import PostgresServer

        server = PostgresServer(tmp / "postgres")
        server.start()
        stores.append(("PostgreSQL", server.create_database("bench")))
    try:
        for name, url in stores:
            with EmbeddedSmtpServer() as smtp:
                for window in ("0s", "0.25s"):
                    db = store_engine(url) if url.startswith("sqlite") else create_engine(url)
                    if url.startswith("sqlite"):
                        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
                        db = store_engine(url)
                    else:
                        from excursions.migrate import downgrade

                        downgrade(db, "base")
                    upgrade(db)
                    site = parse_site(site_text(smtp.port, window), source="bench-site.yaml")
                    smtp.clear()
                    figures = await latency(db, site, smtp)
                    print(f"{name} latency, grouping window {window}: {figures}", flush=True)
                    db.dispose()
                db = store_engine(url) if url.startswith("sqlite") else create_engine(url)
                site = parse_site(site_text(smtp.port, "0s"), source="bench-site.yaml")
                with Session(db) as session, session.begin():
                    session.execute(delete(IncidentRow))
                    session.execute(delete(NotificationRow))
                for row in timers(db, site, [100, 1_000, 10_000], args.rounds):
                    print(f"{name} timers: {row}", flush=True)
                db.dispose()
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--rounds", type=int, default=200, help="ticks timed per size")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
