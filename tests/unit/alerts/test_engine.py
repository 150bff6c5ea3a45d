"""The alerting decisions and the dispatcher on an embedded store, driven by a fake clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from alerts.delivery import CapturingNotifier, Message, Outcome
from alerts.dispatcher import Dispatcher, retry_delay
from alerts.engine import AlertEngine, IncidentConflictError
from alerts.links import LinkSigner
from alerts.rota import Rota
from alerts.routing import site_context
from alerts.service import AlertService
from alerts.store import (
    ACKNOWLEDGED,
    CANCELLED,
    RESOLVED,
    SENT,
    SUPPRESSED,
    AttemptRow,
    BusOutboxRow,
    IncidentRow,
    NotificationRow,
)
from envmon.bus import ALARMS, DEADLETTER, InMemoryBus
from envmon.bus import Message as BusMessage
from envmon.config import parse_site
from envmon.models import (
    AlarmEvent,
    AlarmKind,
    DeadLetter,
    Direction,
    Level,
    SystemEvent,
    SystemEventKind,
)
from envmon.testing import FakeClock
from envmon.timeutil import parse_ts
from excursions.audit import verify
from excursions.db import store_engine
from excursions.migrate import upgrade
from tests.unit.alerts.sites import freezer_site

T0 = parse_ts("2026-12-07T02:00:00Z")  # a Monday night: alice's rotation week
WINDOW_S = 2.0  # alerting.grouping.window
SITE = (
    freezer_site(freezers=2)
    + """\
  - id: fill-room
    name: Fill room
    grade: B
    instruments:
%(sensors)s
alerting:
  links: {base_url: "https://envmon.example.org", secret_env: LINK_SECRET}
  grouping: {window: 2s}
  shelving: {max: 8h}
  contacts:
    - id: alice
      name: Alice
      user: alice
      channels: [{id: email, url: "mailto://127.0.0.1:2525?to=alice@example.org&from=envmon@example.org"}]
    - id: bob
      name: Bob
      channels: [{id: email, url: "mailto://127.0.0.1:2525?to=bob@example.org&from=envmon@example.org"}]
    - id: carol
      name: Carol
      channels:
        - {id: email, url: "mailto://127.0.0.1:2525?to=carol@example.org&from=envmon@example.org"}
        - {id: hook, url: "json://127.0.0.1:9999/envmon"}
  teams:
    - {id: facilities, name: Facilities, members: [bob, carol]}
  schedules:
    - id: oncall
      name: On call
      rotation: {people: [alice, bob], start: 2026-01-12, every: 7d, handover: "09:00"}
  policies:
    - id: cold
      steps:
        - {notify: {schedule: oncall}, wait: 10m}
        - {notify: {team: facilities}, channels: [email], wait: 10m}
      repeat: 1
      reminder: 1h
    - id: default
      steps:
        - {notify: {contact: carol}, channels: [email], wait: 5m}
  routes:
    - {match: {area: [cold-room]}, policy: cold}
    - {match: {system: [disconnected]}, policy: default}
    - {policy: default}
  maintenance:
    - id: defrost
      reason: Defrost of freezer 2
      scope: {instrument: [frz-2]}
      from: "2026-12-07 02:00"
      to: "2026-12-07 05:00"
"""
)
SENSOR = """\
      - id: ts-%(n)d
        name: Sensor %(n)d
        kind: room_sensor
        channels:
          - {parameter: temperature, unit: degC, limits: {alert_high: 25, action_high: 27}}
"""


def site_text() -> str:
    sensors = "".join(SENSOR % {"n": n} for n in range(1, 11))
    return SITE % {"sensors": sensors.rstrip("\n")}


class ScriptedNotifier(CapturingNotifier):
    """Answers with the scripted outcomes first, then accepts."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[Outcome] = []
        self.outcomes_given: list[Outcome] = []

    async def send(self, url: str, message: Message) -> Outcome:
        outcome = self.outcomes.pop(0) if self.outcomes else await super().send(url, message)
        self.outcomes_given.append(outcome)
        return outcome


class Rig:
    """An engine, a dispatcher with a capturing notifier and a migrated SQLite store."""

    def __init__(self, tmp_path: Path) -> None:
        self.site = parse_site(site_text(), source="site.yaml")
        assert self.site.alerting is not None
        self.alerting = self.site.alerting
        self.clock = FakeClock(T0)
        self.db: Engine = store_engine(f"sqlite:///{tmp_path / 'alerts.sqlite3'}")
        upgrade(self.db)
        tz = ZoneInfo("Europe/Amsterdam")
        rota = Rota.from_config(self.alerting, site_tz=tz, base_dir=tmp_path)
        self.engine = AlertEngine(
            self.alerting, rota, site_context(self.site), site_tz=tz, clock=self.clock
        )
        self.notifier = ScriptedNotifier()
        self.dispatcher = Dispatcher(
            self.db,
            self.engine,
            self.notifier,
            site_name="Test site",
            site_tz=tz,
            instance="test-1",
            signer=LinkSigner("x" * 32, valid_for=timedelta(hours=24)),
            environ={},
            clock=self.clock,
        )

    def handle(self, *events: AlarmEvent | SystemEvent) -> list[bool]:
        results = []
        for event in events:
            with Session(self.db) as session, session.begin():
                results.append(self.engine.handle(session, event))
        return results

    def tick(self) -> int:
        with Session(self.db) as session, session.begin():
            return self.engine.tick(session)

    async def advance(self, seconds: float, *, settle: bool = True) -> list[Message]:
        """Move the clock, take due timers, send what is due; return the new messages.

        ``settle``: then let the grouping window pass too, so that what the timers decided
        is sent (the clock ends ``WINDOW_S`` later).
        """
        before = len(self.notifier.sent)
        self.clock.advance(seconds)
        self.tick()
        await self.dispatcher.dispatch()
        if settle:
            self.clock.advance(WINDOW_S)
            await self.dispatcher.dispatch()
        return [message for _, message in self.notifier.sent[before:]]

    def recipients(self, start: int = 0) -> list[str]:
        found = []
        for url, _ in self.notifier.sent[start:]:
            query = parse_qs(urlsplit(url).query)
            found.append(query["to"][0] if "to" in query else url)
        return found

    def incident(self) -> IncidentRow:
        with Session(self.db) as session:
            rows = session.scalars(select(IncidentRow)).all()
            assert len(rows) == 1, rows
            session.expunge(rows[0])
            return rows[0]

    def count(self, model: type, *where: object) -> int:
        with Session(self.db) as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def alarm(
    kind: AlarmKind = AlarmKind.RAISED,
    *,
    sensor: str = "frz-1.temperature",
    area: str = "cold-room",
    level: Level | None = Level.ALERT,
    value: float | None = -68.04,
    excursion: str | None = "exc-1",
    seconds: float = 0,
    cause: str | None = None,
) -> AlarmEvent:
    return AlarmEvent(
        event=kind,
        sensor_id=sensor,
        area=area,
        parameter="temperature",
        unit="degC",
        ts=T0 + timedelta(seconds=seconds),
        level=level,
        direction=Direction.HIGH if level else None,
        value=value,
        limit=-70.0 if level is Level.ALERT else -60.0 if level else None,
        excursion_id=excursion,
        cause=cause,
    )


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


class TestEscalation:
    async def test_a_raised_alarm_pages_the_person_on_call_after_the_grouping_window(self, rig):
        """An alarm becomes one incident and one page to the on-call person, sent once due."""
        assert rig.handle(alarm()) == [True]
        assert await rig.advance(1, settle=False) == []  # still inside the grouping window
        sent = await rig.advance(1, settle=False)
        assert len(sent) == 1
        assert rig.recipients() == ["alice@example.org"]
        assert "ALERT Freezer 1 temperature in Cold room" in sent[0].title
        assert "−68.0 °C (limit −70.0 °C)" in sent[0].body
        assert "https://envmon.example.org/incidents/ack/" in sent[0].body
        assert "CET" in sent[0].body
        assert rig.count(AttemptRow) == 1
        assert rig.count(BusOutboxRow) == 1

    async def test_an_unacknowledged_incident_escalates_step_by_step_then_repeats_and_stops(
        self, rig
    ):
        """Step 1 (on call), step 2 (team, email only), a second round, then nothing more."""
        rig.handle(alarm())
        await rig.advance(2)
        assert rig.recipients() == ["alice@example.org"]
        await rig.advance(600)
        assert sorted(rig.recipients(1)) == ["bob@example.org", "carol@example.org"]
        await rig.advance(600)
        assert rig.recipients(3) == ["alice@example.org"]
        await rig.advance(600)
        assert sorted(rig.recipients(4)) == ["bob@example.org", "carol@example.org"]
        assert await rig.advance(600) == []
        assert await rig.advance(3600) == []
        assert rig.incident().next_at is None

    async def test_acknowledging_stops_the_escalation_and_reminds_the_acknowledger(self, rig):
        """After an acknowledgement no step follows; a reminder goes to the acknowledger hourly."""
        rig.handle(alarm())
        await rig.advance(2)
        with Session(rig.db) as session, session.begin():
            rig.engine.acknowledge(
                session, rig.incident().id, actor="alice", comment="Going to the freezer now"
            )
        assert await rig.advance(600) == []
        assert await rig.advance(2900) == []
        reminders = await rig.advance(200)
        assert [m.title.startswith("Reminder") for m in reminders] == [True]
        assert rig.recipients(1) == ["alice@example.org"]
        assert rig.incident().state == ACKNOWLEDGED

    async def test_acknowledging_needs_a_comment_and_happens_once(self, rig):
        """A blank comment is refused; a second acknowledgement is a conflict; both audited once."""
        rig.handle(alarm())
        incident = rig.incident().id
        with Session(rig.db) as session, session.begin(), pytest.raises(IncidentConflictError):
            rig.engine.acknowledge(session, incident, actor="alice", comment="  ")
        with Session(rig.db) as session, session.begin():
            rig.engine.acknowledge(session, incident, actor="alice", comment="on my way")
        with Session(rig.db) as session, session.begin(), pytest.raises(IncidentConflictError):
            rig.engine.acknowledge(session, incident, actor="bob", comment="me too")
        with Session(rig.db) as session:
            result = verify(session)
        assert result.ok
        assert result.entries == 2  # state and via of the one acknowledgement

    async def test_a_pending_page_is_cancelled_by_an_acknowledgement_inside_the_window(self, rig):
        """Acknowledged before its grouping window ended, the first page is never sent."""
        rig.handle(alarm())
        with Session(rig.db) as session, session.begin():
            rig.engine.acknowledge(
                session, rig.incident().id, actor="bob", comment="seen on screen"
            )
        assert await rig.advance(5) == []
        assert rig.count(NotificationRow, NotificationRow.status == CANCELLED) == 1

    async def test_the_rise_to_action_pages_again_even_after_an_acknowledgement(self, rig):
        """alert → action on the same excursion re-pages from the first step."""
        rig.handle(alarm())
        await rig.advance(2)
        with Session(rig.db) as session, session.begin():
            rig.engine.acknowledge(session, rig.incident().id, actor="alice", comment="watching it")
        rig.handle(alarm(AlarmKind.ESCALATED, level=Level.ACTION, value=-58.5, seconds=60))
        sent = await rig.advance(2)
        assert [m.title.startswith("ACTION") for m in sent] == [True]
        assert rig.incident().state == "triggered"
        assert rig.incident().pages == 2

    async def test_the_clear_tells_everyone_paged_and_resolves(self, rig):
        """When the alarm clears, each person paged is told once, and the incident resolves."""
        rig.handle(alarm())
        await rig.advance(2)
        await rig.advance(600)
        rig.handle(alarm(AlarmKind.CLEARED, level=None, value=-75.0, seconds=1300))
        sent = await rig.advance(2)
        assert sorted(rig.recipients(3)) == [
            "alice@example.org",
            "bob@example.org",
            "carol@example.org",
        ]
        assert all(m.title.startswith("Cleared") for m in sent)
        assert rig.incident().state == RESOLVED
        assert await rig.advance(1200) == []


class TestIdempotence:
    async def test_a_redelivered_alarm_pages_nobody_twice(self, rig):
        """The same event handled twice makes one incident and one page."""
        assert rig.handle(alarm(), alarm()) == [True, False]
        await rig.advance(2)
        assert len(rig.notifier.sent) == 1

    async def test_the_same_decision_made_twice_adds_no_notification(self, rig):
        """A late copy of a resolved incident's first event does not reopen it."""
        rig.handle(alarm(), alarm(AlarmKind.CLEARED, level=None, seconds=30))
        rig.handle(alarm(AlarmKind.ESCALATED, level=Level.ACTION, seconds=10))
        assert rig.incident().state == RESOLVED
        assert await rig.advance(5) == []


class TestGroupingAndSuppression:
    async def test_a_burst_in_one_area_is_one_page_listing_every_alarm(self, rig):
        """Ten sensors of one room within the window: one message per channel, naming ten."""
        for n in range(1, 11):
            rig.handle(
                alarm(
                    sensor=f"ts-{n}.temperature",
                    area="fill-room",
                    excursion=f"exc-fill-{n}",
                    value=25.4,
                    seconds=n * 0.1,
                )
            )
            rig.clock.advance(0.1)
        sent = await rig.advance(2)
        assert len(sent) == 1
        assert "10 alarms" in sent[0].title
        assert sent[0].body.count("• ") == 10
        assert rig.count(NotificationRow, NotificationRow.status == SENT) == 10

    async def test_maintenance_suppresses_pages_but_keeps_the_incident_and_pages_after(self, rig):
        """In its maintenance window a freezer's alarm is logged as suppressed; after it, paged."""
        rig.handle(alarm(sensor="frz-2.temperature", excursion="exc-2"))
        assert await rig.advance(60) == []
        assert rig.count(NotificationRow, NotificationRow.status == SUPPRESSED) == 1
        assert rig.incident().suppressed_by == "maintenance:defrost"
        sent = await rig.advance(3 * 3600)
        assert len(sent) == 1
        assert rig.incident().suppressed_by is None

    async def test_a_shelve_stops_pages_and_pages_again_when_it_ends(self, rig):
        """Shelved for an hour: no escalation meanwhile, a new page at its end if still open."""
        rig.handle(alarm())
        await rig.advance(2)
        with Session(rig.db) as session, session.begin():
            rig.engine.shelve(
                session,
                rig.incident().id,
                actor="alice",
                reason="door left open for cleaning",
                until=rig.clock() + timedelta(hours=1),
            )
        assert await rig.advance(1800) == []
        sent = await rig.advance(1802)
        assert len(sent) == 1
        assert rig.incident().state == "triggered"

    async def test_a_shelve_longer_than_the_site_allows_is_refused(self, rig):
        """The maximum shelve duration is enforced."""
        rig.handle(alarm())
        with Session(rig.db) as session, session.begin(), pytest.raises(IncidentConflictError):
            rig.engine.shelve(
                session,
                rig.incident().id,
                actor="alice",
                reason="weekend",
                until=rig.clock() + timedelta(hours=9),
            )


class TestOtherIncidents:
    async def test_stale_data_is_one_incident_until_restored(self, rig):
        """stale opens the sensor's episode; a second stale adds nothing; restored resolves it."""
        stale = alarm(AlarmKind.STALE, level=None, value=None, excursion=None)
        rig.handle(stale, alarm(AlarmKind.STALE, level=None, value=None, excursion=None, seconds=5))
        await rig.advance(2)
        assert len(rig.notifier.sent) == 1
        rig.handle(alarm(AlarmKind.RESTORED, level=None, excursion=None, cause="stale", seconds=60))
        assert rig.incident().state == RESOLVED

    async def test_a_system_event_pages_through_its_route_and_its_counterpart_resolves(self, rig):
        """A disconnected collector pages carol; connected again resolves the incident."""
        down = SystemEvent(
            event=SystemEventKind.DISCONNECTED, component="mqtt:plant", ts=T0, alarm=True
        )
        up = SystemEvent(
            event=SystemEventKind.CONNECTED, component="mqtt:plant", ts=T0 + timedelta(seconds=30)
        )
        rig.handle(down)
        sent = await rig.advance(2)
        assert rig.recipients() == ["carol@example.org"]
        assert "mqtt:plant: disconnected" in sent[0].title
        rig.handle(up)
        assert rig.incident().state == RESOLVED

    async def test_a_rate_of_change_alarm_resolves_when_acknowledged(self, rig):
        """An alarm without an end event resolves on acknowledgement."""
        rig.handle(alarm(AlarmKind.RATE_OF_CHANGE, level=None, value=2.5, excursion=None))
        with Session(rig.db) as session, session.begin():
            rig.engine.acknowledge(session, rig.incident().id, actor="bob", comment="door opened")
        assert rig.incident().state == RESOLVED


class TestDelivery:
    async def test_a_failed_attempt_is_retried_with_back_off_and_recorded(self, rig):
        """Two refusals, then success: three attempts stored, the page sent once."""
        rig.notifier.outcomes = [Outcome(False, "SMTP 451"), Outcome(False, "SMTP 451")]
        rig.handle(alarm())
        await rig.advance(2)
        await rig.advance(retry_delay(1))
        await rig.advance(retry_delay(2))
        assert rig.count(AttemptRow) == 3
        assert rig.count(NotificationRow, NotificationRow.status == SENT) == 1
        assert [o.ok for o in rig.notifier.outcomes_given] == [False, False, True]

    async def test_two_dispatchers_never_send_the_same_notification(self, rig, tmp_path):
        """A second instance claiming at the same time finds nothing the first one holds."""
        rig.handle(alarm())
        rig.clock.advance(2)
        other = Dispatcher(
            rig.db,
            rig.engine,
            rig.notifier,
            site_name="Test site",
            site_tz=ZoneInfo("UTC"),
            instance="test-2",
            environ={},
            clock=rig.clock,
        )
        first = rig.dispatcher.claim()
        second = other.claim()
        assert len(first) == 1
        assert second == []


class TestHousekeeping:
    async def test_handled_events_are_forgotten_after_their_retention(self, rig):
        """The seen-event table stays bounded: hashes older than 7 days are pruned."""
        rig.handle(alarm(), alarm(AlarmKind.CLEARED, level=None, seconds=30))
        rig.clock.advance(8 * 86_400)
        with Session(rig.db) as session, session.begin():
            assert rig.engine.prune(session) == 2
        assert rig.handle(alarm()) == [False]  # its incident is resolved: nothing reopens

    async def test_a_page_sent_while_its_alarm_cleared_is_followed_by_the_clear(self, rig):
        """A page on its way when the alarm cleared: the person is told it cleared, too."""
        rig.handle(alarm())
        rig.clock.advance(2)
        batches = rig.dispatcher.claim()
        rig.handle(alarm(AlarmKind.CLEARED, level=None, seconds=2))
        sent = await asyncio.gather(*(rig.dispatcher._send(batch) for batch in batches))
        rig.dispatcher.record(list(zip(batches, sent, strict=True)))
        cleared = await rig.advance(0)
        assert [m.title.startswith("Cleared") for m in cleared] == [True]
        assert rig.recipients(1) == ["alice@example.org"]


class TestServiceIntake:
    async def test_a_message_that_is_no_alarm_is_dead_lettered_and_the_rest_handled(self, rig):
        """Bad input on envmon.alarms goes to the dead letter with a reason; intake goes on."""
        bus = InMemoryBus()
        service = AlertService(
            bus=bus, db=rig.db, engine=rig.engine, dispatcher=rig.dispatcher, group="test"
        )
        dead = bus.subscribe(DEADLETTER, "test")
        await bus.publish(
            [
                BusMessage(ALARMS, "frz-1.temperature", b'{"kind": "alarm", "event": "raised"}'),
                BusMessage(ALARMS, "frz-1.temperature", alarm().model_dump_json().encode()),
            ]
        )
        running = asyncio.create_task(service.run())
        try:
            letter = DeadLetter.model_validate_json((await asyncio.wait_for(anext(dead), 10)).value)
            async with asyncio.timeout(10):
                while service.handled < 1:
                    await asyncio.sleep(0.01)
        finally:
            service.stop()
            await running
        assert letter.reason.startswith("not an alarm or system event: ")
        assert service.rejected == 1
        assert rig.incident().excursion_id == "exc-1"
