"""The Alertmanager forwarder against a real Alertmanager 0.31.1 (built from the Go module proxy).

The forwarder's clock is a fake one started a minute before the wall-clock time: Alertmanager
compares ``endsAt`` with its own clock, and an event's time is never ahead of it (the
tests move the fake clock on by a few seconds at most). Only the resolve-timeout test waits
for Alertmanager's own time to pass (about its ``resolve_timeout``, 3 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.alertmanager import AlertmanagerForwarder
from devservers.alertmanager import Alertmanager
from envmon.config.alerting import AlertmanagerConfig
from envmon.models import AlarmKind, Level, SystemEvent, SystemEventKind
from envmon.netutil import free_port
from envmon.testing import FakeClock
from envmon.timeutil import format_ts, parse_ts
from tests.unit.alerts.sites import freezer_alarm

RESEND_EVERY_S = 1.0
#: How far the fake clock starts behind Alertmanager's.
CLOCK_BEHIND_S = 60.0
#: Seconds a test waits at most for Alertmanager's own time to pass.
WAIT_LIMIT_S = 30.0


@pytest.fixture
def site() -> str:
    """A site label of this test's own (the session's Alertmanager is shared)."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clock() -> FakeClock:
    """The forwarder's clock."""
    return FakeClock(now=datetime.now(UTC) - timedelta(seconds=CLOCK_BEHIND_S))


def _forwarder(server: Alertmanager, site: str, clock: FakeClock) -> AlertmanagerForwarder:
    config = AlertmanagerConfig(url=server.url, resend_every=RESEND_EVERY_S)
    return AlertmanagerForwarder(config, site=site, clock=clock, timeout_s=2.0, retry_s=0.0)


@pytest.fixture
async def forwarder(
    alertmanager: Alertmanager, site: str, clock: FakeClock
) -> AsyncIterator[AlertmanagerForwarder]:
    """A forwarder posting to the session's Alertmanager."""
    async with _forwarder(alertmanager, site, clock) as running:
        yield running


_alarm = freezer_alarm


def _active(server: Alertmanager, site: str) -> list[dict[str, Any]]:
    return server.alerts(active="true", filter=f'site="{site}"')


class TestAlertmanagerForwarder:
    """Alarms reach a real Alertmanager, stay active while open and resolve when cleared."""

    async def test_raised_alarm_is_active_with_its_labels(
        self,
        forwarder: AlertmanagerForwarder,
        alertmanager: Alertmanager,
        site: str,
        clock: FakeClock,
    ) -> None:
        """A raised alarm shows in GET /api/v2/alerts as active, with envmon's labels."""
        await forwarder.observe(_alarm(AlarmKind.RAISED, clock.now))
        await forwarder.tick(clock.now)
        [alert] = _active(alertmanager, site)
        assert alert["labels"] == {
            "alertname": "EnvmonAlarm",
            "site": site,
            "area": "freezer-room",
            "sensor": "F-01.temp",
            "parameter": "temperature",
            "level": "action",
            "direction": "high",
            "kind": "excursion",
        }
        assert alert["status"]["state"] == "active"
        assert alert["annotations"]["value"] == "-62.5 °C"
        assert alert["annotations"]["limit"] == "-65 °C"
        assert alert["annotations"]["excursion_id"] == "exc-1"
        assert parse_ts(alert["startsAt"]) == clock.now.replace(
            microsecond=clock.now.microsecond // 1000 * 1000
        )

    async def test_cleared_alarm_leaves_the_active_alerts(
        self,
        forwarder: AlertmanagerForwarder,
        alertmanager: Alertmanager,
        site: str,
        clock: FakeClock,
    ) -> None:
        """Once cleared, the alarm is posted with endsAt and is no longer active."""
        await forwarder.observe(_alarm(AlarmKind.RAISED, clock.now))
        await forwarder.tick(clock.now)
        assert len(_active(alertmanager, site)) == 1
        await forwarder.observe(_alarm(AlarmKind.CLEARED, clock.advance(0.2)))
        await forwarder.tick(clock.now)
        assert _active(alertmanager, site) == []
        assert forwarder.open_alerts == []

    async def test_escalation_replaces_the_alert_level_alert(
        self,
        forwarder: AlertmanagerForwarder,
        alertmanager: Alertmanager,
        site: str,
        clock: FakeClock,
    ) -> None:
        """An alert-level excursion escalated to action is one action-level alert, then none."""
        await forwarder.observe(_alarm(AlarmKind.RAISED, clock.now, level=Level.ALERT))
        await forwarder.tick(clock.now)
        await forwarder.observe(_alarm(AlarmKind.ESCALATED, clock.advance(0.1)))
        await forwarder.tick(clock.now)
        assert [a["labels"]["level"] for a in _active(alertmanager, site)] == ["action"]
        await forwarder.observe(_alarm(AlarmKind.CLEARED, clock.advance(0.1)))
        await forwarder.tick(clock.now)
        assert _active(alertmanager, site) == []

    async def test_system_outage_opens_and_its_pair_closes(
        self,
        forwarder: AlertmanagerForwarder,
        alertmanager: Alertmanager,
        site: str,
        clock: FakeClock,
    ) -> None:
        """A disconnected alarm is active with its component until the component reconnects."""
        await forwarder.observe(
            SystemEvent(
                event=SystemEventKind.DISCONNECTED,
                component="mqtt-hall",
                ts=clock.now,
                alarm=True,
                detail="broker gone",
            )
        )
        await forwarder.tick(clock.now)
        [alert] = _active(alertmanager, site)
        assert alert["labels"]["alertname"] == "EnvmonSystem"
        assert alert["labels"]["component"] == "mqtt-hall"
        assert alert["labels"]["kind"] == "disconnected"
        await forwarder.observe(
            SystemEvent(event=SystemEventKind.CONNECTED, component="mqtt-hall", ts=clock.advance(1))
        )
        await forwarder.tick(clock.now)
        assert _active(alertmanager, site) == []

    async def test_reposting_keeps_an_open_alarm_past_the_resolve_timeout(
        self,
        forwarder: AlertmanagerForwarder,
        alertmanager: Alertmanager,
        site: str,
        clock: FakeClock,
    ) -> None:
        """An open alarm re-posted every resend_every outlives an alert that was posted once."""
        await forwarder.observe(_alarm(AlarmKind.RAISED, clock.now))
        await forwarder.tick(clock.now)
        # The control: posted once without endsAt, as the forwarder posts an open alarm.
        alertmanager.post(
            [
                {
                    "labels": {"alertname": "Control", "site": site},
                    "startsAt": format_ts(datetime.now(UTC)),
                }
            ]
        )
        first_end = parse_ts(_active(alertmanager, site)[0]["endsAt"])
        deadline = time.monotonic() + WAIT_LIMIT_S
        names = {"Control", "EnvmonAlarm"}
        while "Control" in names:  # until Alertmanager's resolve timeout has passed
            assert time.monotonic() < deadline, "Alertmanager never resolved the control alert"
            await asyncio.sleep(0.5)  # Alertmanager's own time must pass
            await forwarder.tick(clock.advance(RESEND_EVERY_S))
            names = {a["labels"]["alertname"] for a in _active(alertmanager, site)}
        [alert] = _active(alertmanager, site)
        assert alert["labels"]["alertname"] == "EnvmonAlarm"
        assert parse_ts(alert["endsAt"]) > first_end
        assert forwarder.posts >= 3

    async def test_tick_reposts_only_when_due(
        self, forwarder: AlertmanagerForwarder, clock: FakeClock
    ) -> None:
        """Between two resends a tick with nothing new posts nothing."""
        await forwarder.observe(_alarm(AlarmKind.RAISED, clock.now))
        await forwarder.tick(clock.now)
        await forwarder.tick(clock.advance(RESEND_EVERY_S / 2))
        assert forwarder.posts == 1
        await forwarder.tick(clock.advance(RESEND_EVERY_S / 2))
        assert forwarder.posts == 2

    async def test_one_shot_alarm_is_posted_with_its_end(
        self, alertmanager: Alertmanager, site: str, clock: FakeClock
    ) -> None:
        """A rate-of-change alarm is posted once, active, with endsAt one resend interval on."""
        resend_s = 2 * CLOCK_BEHIND_S  # ends a minute from now by Alertmanager's clock
        config = AlertmanagerConfig(url=alertmanager.url, resend_every=resend_s)
        async with AlertmanagerForwarder(config, site=site, clock=clock) as forwarder:
            await forwarder.observe(
                _alarm(AlarmKind.RATE_OF_CHANGE, clock.now, level=None, value=4.2, limit=2.0)
            )
            await forwarder.tick(clock.now)
            assert forwarder.open_alerts == []
            assert forwarder.unsent == []
        [alert] = _active(alertmanager, site)
        assert alert["labels"]["kind"] == "rate_of_change"
        assert alert["annotations"]["value"] == "4.2 °C/min"
        assert parse_ts(alert["endsAt"]) - parse_ts(alert["startsAt"]) == pytest.approx(
            timedelta(seconds=resend_s), abs=timedelta(milliseconds=2)
        )


class TestAlertmanagerOutage:
    """The forwarder rides out an Alertmanager that is down and catches up when it is back."""

    async def test_catches_up_on_the_next_tick_after_an_outage(
        self,
        own_alertmanager: Alertmanager,
        site: str,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Alarms seen while Alertmanager was down reach it at the first tick once it is back."""
        async with _forwarder(own_alertmanager, site, clock) as forwarder:
            await forwarder.observe(_alarm(AlarmKind.RAISED, clock.now))
            await forwarder.tick(clock.now)
            own_alertmanager.stop()
            with caplog.at_level(logging.WARNING, logger="alerts.alertmanager"):
                await forwarder.observe(
                    _alarm(
                        AlarmKind.RAISED,
                        clock.advance(0.1),
                        sensor_id="F-02.temp",
                        excursion_id="exc-2",
                    )
                )
                await forwarder.observe(_alarm(AlarmKind.CLEARED, clock.now))  # exc-1 ends
                for _ in range(3):
                    await forwarder.tick(clock.advance(RESEND_EVERY_S))
            assert forwarder.failing
            assert forwarder.failures == 3
            assert len([r for r in caplog.records if r.name == "alerts.alertmanager"]) == 1
            own_alertmanager.start()  # a restarted Alertmanager has forgotten every alert
            await forwarder.tick(clock.advance(0.1))
            assert not forwarder.failing
            assert [a["labels"]["sensor"] for a in _active(own_alertmanager, site)] == ["F-02.temp"]

    async def test_unreachable_alertmanager_raises_nothing(
        self, site: str, clock: FakeClock
    ) -> None:
        """Posting to a port nobody listens on is a logged failure, not an exception."""
        config = AlertmanagerConfig(url=f"http://127.0.0.1:{free_port()}")
        async with AlertmanagerForwarder(config, site=site, clock=clock, retry_s=5.0) as forwarder:
            await forwarder.observe(_alarm(AlarmKind.RAISED, clock.now))
            await forwarder.tick(clock.now)
            await forwarder.tick(clock.advance(1.0))  # within retry_s: not tried again
            assert forwarder.failures == 1
            assert len(forwarder.unsent) == 1
