"""What the Alertmanager forwarder posts for each event: labels, annotations, start and end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.alertmanager import (
    AlertmanagerForwarder,
    alarm_alert,
    alert_labels,
    system_alert,
)
from envmon.config.alerting import AlertmanagerConfig
from envmon.models import AlarmEvent, AlarmKind, Level, SystemEvent, SystemEventKind
from tests.unit.alerts.sites import freezer_alarm

T0 = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
SITE = "plant-a"


def _alarm(kind: AlarmKind, ts: datetime = T0, **fields: Any) -> AlarmEvent:
    return freezer_alarm(kind, ts, **fields)


def _forwarder(resend_every: float = 60.0) -> AlertmanagerForwarder:
    config = AlertmanagerConfig(url="http://127.0.0.1:9093/", resend_every=resend_every)
    return AlertmanagerForwarder(config, site=SITE, clock=lambda: T0)


class TestAlertMapping:
    """Each envmon event becomes the alert an Alertmanager user expects."""

    def test_excursion_labels_and_annotations(self) -> None:
        """A raised alarm carries site, area, sensor, parameter, level, direction and kind."""
        alert = alarm_alert(_alarm(AlarmKind.RAISED, detail="door open"), SITE)
        assert alert.labels == {
            "alertname": "EnvmonAlarm",
            "site": SITE,
            "area": "freezer-room",
            "sensor": "F-01.temp",
            "parameter": "temperature",
            "level": "action",
            "direction": "high",
            "kind": "excursion",
        }
        assert alert.annotations == {
            "summary": "Action alarm: temperature high on F-01.temp in freezer-room:"
            " -62.5 °C (limit -65 °C)",
            "detail": "door open",
            "event": "raised",
            "value": "-62.5 °C",
            "limit": "-65 °C",
            "excursion_id": "exc-1",
        }

    def test_payload_is_the_v2_api_shape(self) -> None:
        """An open alert has no endsAt; an ended one has it; times are UTC with Z."""
        alert = alarm_alert(_alarm(AlarmKind.RAISED), SITE)
        payload = alert.payload()
        assert payload["startsAt"] == "2026-03-29T01:30:00Z"
        assert "endsAt" not in payload
        ended = alert.ended(T0 + timedelta(minutes=5)).payload()
        assert ended["endsAt"] == "2026-03-29T01:35:00Z"
        assert ended["labels"] == payload["labels"]

    def test_an_end_is_never_before_the_start(self) -> None:
        """Ending an alert before it started ends it when it started (Alertmanager refuses less)."""
        alert = alarm_alert(_alarm(AlarmKind.RAISED), SITE).ended(T0 - timedelta(seconds=1))
        assert alert.ends_at == T0

    def test_stale_alarm_has_no_level_or_direction_labels(self) -> None:
        """Labels without a value are left out (Alertmanager treats empty as absent)."""
        labels = alert_labels(_alarm(AlarmKind.STALE, level=None, direction=None), SITE)
        assert labels["kind"] == "stale"
        assert "level" not in labels
        assert "direction" not in labels

    def test_restored_names_the_same_alert_as_its_cause(self) -> None:
        """A restored event with cause sensor_fault has the labels of the sensor_fault alert."""
        fault = _alarm(AlarmKind.SENSOR_FAULT, level=None, direction=None, value=None)
        restored = _alarm(AlarmKind.RESTORED, level=None, direction=None, cause="sensor_fault")
        assert alert_labels(restored, SITE) == alert_labels(fault, SITE)

    def test_cleared_names_the_same_alert_as_the_escalation(self) -> None:
        """A cleared event at action level has the labels of the escalated alarm."""
        escalated = alert_labels(_alarm(AlarmKind.ESCALATED), SITE)
        assert alert_labels(_alarm(AlarmKind.CLEARED), SITE) == escalated

    def test_rate_of_change_values_are_per_minute(self) -> None:
        """A rate-of-change alarm shows its value and limit in unit per minute."""
        alert = alarm_alert(_alarm(AlarmKind.RATE_OF_CHANGE, level=None, value=4.2), SITE)
        assert alert.annotations["value"] == "4.2 °C/min"
        assert alert.labels["kind"] == "rate_of_change"

    def test_system_alert_labels(self) -> None:
        """A system event is an EnvmonSystem alert of its component and the event that began it."""
        event = SystemEvent(
            event=SystemEventKind.BUFFER_FULL, component="buffer", ts=T0, alarm=True, detail="x"
        )
        alert = system_alert(event, SITE)
        assert alert.labels == {
            "alertname": "EnvmonSystem",
            "site": SITE,
            "component": "buffer",
            "kind": "buffer_full",
        }
        assert alert.annotations["summary"] == "buffer: buffer full"


class TestForwarderState:
    """What the forwarder holds open and what its next tick posts, without any I/O."""

    async def test_escalation_ends_the_alert_level_alert(self) -> None:
        """Raised at alert then escalated: the alert-level alert ends, an action-level one opens."""
        forwarder = _forwarder()
        await forwarder.observe(_alarm(AlarmKind.RAISED, level=Level.ALERT))
        later = T0 + timedelta(minutes=2)
        await forwarder.observe(_alarm(AlarmKind.ESCALATED, later))
        [held] = forwarder.open_alerts
        assert held.labels["level"] == "action"
        ends = {alert.labels["level"]: alert.ends_at for alert in forwarder.unsent}
        assert ends == {"alert": later, "action": None}

    async def test_a_repeated_opening_keeps_its_start(self) -> None:
        """A redelivered raised alarm updates the alert but keeps when it started."""
        forwarder = _forwarder()
        await forwarder.observe(_alarm(AlarmKind.RAISED))
        await forwarder.observe(_alarm(AlarmKind.RAISED, T0 + timedelta(seconds=30), value=-60.0))
        [held] = forwarder.open_alerts
        assert held.starts_at == T0
        assert held.annotations["value"] == "-60 °C"

    async def test_cleared_closes_the_excursion(self) -> None:
        """Cleared removes the excursion from the open alerts and queues its end."""
        forwarder = _forwarder()
        await forwarder.observe(_alarm(AlarmKind.RAISED))
        await forwarder.observe(_alarm(AlarmKind.CLEARED, T0 + timedelta(minutes=1)))
        assert forwarder.open_alerts == []
        [ended] = forwarder.unsent
        assert (ended.starts_at, ended.ends_at) == (T0, T0 + timedelta(minutes=1))

    async def test_cleared_without_its_opening_is_posted_resolved(self) -> None:
        """A cleared alarm the forwarder never saw open (a restart) is still posted as ended."""
        forwarder = _forwarder()
        await forwarder.observe(_alarm(AlarmKind.CLEARED))
        [ended] = forwarder.unsent
        assert ended.ends_at == T0

    async def test_restored_ends_only_its_cause(self) -> None:
        """Restored after a stale period leaves the sensor fault of the same sensor open."""
        forwarder = _forwarder()
        plain: dict[str, Any] = {"level": None, "direction": None, "value": None}
        await forwarder.observe(_alarm(AlarmKind.STALE, **plain))
        await forwarder.observe(_alarm(AlarmKind.SENSOR_FAULT, **plain))
        await forwarder.observe(_alarm(AlarmKind.RESTORED, cause="stale", **plain))
        assert [alert.labels["kind"] for alert in forwarder.open_alerts] == ["sensor_fault"]

    async def test_system_pairs_open_and_close(self) -> None:
        """subscription_silent with alarm opens; resubscribed of the same component closes it."""
        forwarder = _forwarder()
        silent = SystemEvent(
            event=SystemEventKind.SUBSCRIPTION_SILENT, component="opcua-1", ts=T0, alarm=True
        )
        await forwarder.observe(silent)
        other = SystemEvent(event=SystemEventKind.RESUBSCRIBED, component="opcua-2", ts=T0)
        await forwarder.observe(other)
        assert len(forwarder.open_alerts) == 1
        back = SystemEvent(event=SystemEventKind.RESUBSCRIBED, component="opcua-1", ts=T0)
        await forwarder.observe(back)
        assert forwarder.open_alerts == []

    async def test_system_events_without_alarm_are_ignored(self) -> None:
        """A disconnection that is not an alarm, or a routine connected, posts nothing."""
        forwarder = _forwarder()
        for kind in (SystemEventKind.DISCONNECTED, SystemEventKind.CONNECTED):
            await forwarder.observe(SystemEvent(event=kind, component="mqtt", ts=T0))
        assert forwarder.open_alerts == []
        assert forwarder.unsent == []

    async def test_readings_missing_is_one_shot(self) -> None:
        """readings_missing is posted once, ending one resend interval after it was seen."""
        forwarder = _forwarder(resend_every=90.0)
        event = SystemEvent(
            event=SystemEventKind.READINGS_MISSING, component="worker", ts=T0, alarm=True
        )
        await forwarder.observe(event)
        assert forwarder.open_alerts == []
        [alert] = forwarder.unsent
        assert alert.ends_at == T0 + timedelta(seconds=90)
