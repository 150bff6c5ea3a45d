"""Forwards envmon's open alarms to a Prometheus Alertmanager (v2 API), for sites that run one.

``AlertmanagerForwarder`` is told every alarm and system event (``observe``) and keeps the
set of open ones in memory. ``tick(now)`` posts what changed since the last tick, and every
open alarm again once ``resend_every`` has passed, as one ``POST /api/v2/alerts``: an
alert posted without ``endsAt`` stays active in Alertmanager for its ``resolve_timeout``,
so ``resend_every`` must be shorter. When an alarm clears it is posted once more with
``endsAt``. ``observe`` does no I/O; only ``tick`` talks to Alertmanager.

What is open, by key:

- an excursion (``raised``/``escalated`` … ``cleared``, by excursion id);
- a sensor's ``stale`` or ``sensor_fault`` episode (… ``restored`` with that ``cause``);
- a component's system event with ``alarm=True`` (``disconnected`` … ``connected``,
  ``subscription_silent`` … ``resubscribed``, ``buffer_full`` … ``buffer_ok``,
  ``buffer_stalled`` … ``buffer_flowing``, ``timeseries_unavailable`` … ``timeseries_restored``).

``rate_of_change`` and ``readings_missing`` have no end: they are posted once with
``endsAt`` one ``resend_every`` after they are seen. Alertmanager tells alerts apart by
their labels (``alert_labels``), so an escalation from alert to action level resolves the
alert-level alert and opens an action-level one. A clearing event for an alarm the
forwarder does not hold (it restarted) is posted as resolved all the same; a system event
that ends nothing held (``connected`` is routine) is ignored.

A failed post (Alertmanager down, a timeout, HTTP 5xx) is logged once per outage and
retried at the first tick ``retry_s`` later, with every open alarm, since an Alertmanager
that restarted has forgotten them. Alerts refused with another 4xx would be refused again:
they are logged as an error and dropped. Nothing is raised to the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, Self

import aiohttp

from envmon.config.alerting import AlertmanagerConfig
from envmon.models import AlarmEvent, AlarmKind, SystemEvent, SystemEventKind
from envmon.timeutil import format_ts, utcnow

logger = logging.getLogger(__name__)

#: Seconds one POST may take before it counts as failed.
DEFAULT_TIMEOUT_S: Final = 5.0
#: Seconds after a failed post before a tick tries again.
DEFAULT_RETRY_S: Final = 5.0
ALERTS_PATH: Final = "/api/v2/alerts"
ALARM_ALERTNAME: Final = "EnvmonAlarm"
SYSTEM_ALERTNAME: Final = "EnvmonSystem"
#: The ``kind`` label of an excursion's alert (the others carry the alarm kind).
EXCURSION_KIND: Final = "excursion"
_ERROR_TEXT_MAX: Final = 200

#: Alarm kinds that open something, and the key kind they open (excursion, stale, fault).
_ALARM_OPENS: Final[Mapping[AlarmKind, str]] = {
    AlarmKind.RAISED: EXCURSION_KIND,
    AlarmKind.ESCALATED: EXCURSION_KIND,
    AlarmKind.STALE: AlarmKind.STALE.value,
    AlarmKind.SENSOR_FAULT: AlarmKind.SENSOR_FAULT.value,
}
#: Alarm kinds posted once, with an end.
_ALARM_ONE_SHOT: Final = frozenset({AlarmKind.RATE_OF_CHANGE})
#: What a restored alarm can end (its ``cause``).
_RESTORED_CAUSES: Final = (AlarmKind.STALE.value, AlarmKind.SENSOR_FAULT.value)
#: System events that end an outage, and the event that began it.
SYSTEM_CLOSES: Final[Mapping[SystemEventKind, SystemEventKind]] = {
    SystemEventKind.CONNECTED: SystemEventKind.DISCONNECTED,
    SystemEventKind.RESUBSCRIBED: SystemEventKind.SUBSCRIPTION_SILENT,
    SystemEventKind.BUFFER_OK: SystemEventKind.BUFFER_FULL,
    SystemEventKind.BUFFER_FLOWING: SystemEventKind.BUFFER_STALLED,
    SystemEventKind.TIMESERIES_RESTORED: SystemEventKind.TIMESERIES_UNAVAILABLE,
}
_SYSTEM_OPENS: Final = frozenset(SYSTEM_CLOSES.values())

_Key = tuple[str, ...]
_Fingerprint = frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as Alertmanager's v2 API takes it: labels, annotations, start and end."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    fingerprint: _Fingerprint = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", frozenset(self.labels.items()))

    def ended(self, at: datetime) -> Alert:
        """Return this alert resolved at ``at`` (never before it started)."""
        return replace(self, ends_at=max(at, self.starts_at))

    def payload(self) -> dict[str, Any]:
        """Return the JSON object of ``POST /api/v2/alerts``."""
        body: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": format_ts(self.starts_at),
        }
        if self.ends_at is not None:
            body["endsAt"] = format_ts(self.ends_at)
        return body


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"{value:g} {unit}".strip()


def _present(items: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """Keep the items with a value: Alertmanager treats an empty label as no label."""
    return {name: value for name, value in items if value}


def alarm_kind_label(event: AlarmEvent) -> str:
    """Return the ``kind`` label of an alarm: ``excursion``, ``stale``, ``sensor_fault``, …."""
    if event.event in (AlarmKind.RAISED, AlarmKind.ESCALATED, AlarmKind.CLEARED):
        return EXCURSION_KIND
    if event.event is AlarmKind.RESTORED:
        return event.cause or AlarmKind.STALE.value
    return event.event.value


def alert_labels(event: AlarmEvent, site: str, kind: str | None = None) -> dict[str, str]:
    """Return the labels that identify an alarm's alert in Alertmanager."""
    return _present(
        (
            ("alertname", ALARM_ALERTNAME),
            ("site", site),
            ("area", event.area),
            ("sensor", event.sensor_id),
            ("parameter", event.parameter),
            ("level", event.level.value if event.level is not None else None),
            ("direction", event.direction.value if event.direction is not None else None),
            ("kind", kind or alarm_kind_label(event)),
        )
    )


def _alarm_summary(event: AlarmEvent, kind: str) -> str:
    where = f"{event.sensor_id} ({event.parameter}) in {event.area}"
    if kind == EXCURSION_KIND:
        level = event.level.value.capitalize() if event.level is not None else "Limit"
        side = f" {event.direction.value}" if event.direction is not None else ""
        text = f"{level} alarm: {event.parameter}{side} on {event.sensor_id} in {event.area}"
        if event.value is not None:
            text += f": {_number(event.value, event.unit)}"
        if event.limit is not None:
            text += f" (limit {_number(event.limit, event.unit)})"
        return text
    if kind == AlarmKind.STALE.value:
        return f"No data from {where}"
    if kind == AlarmKind.SENSOR_FAULT.value:
        return f"Sensor fault on {where}"
    if kind == AlarmKind.RATE_OF_CHANGE.value:
        return f"Rate of change on {where}"
    return f"{kind} on {where}"


def alarm_alert(event: AlarmEvent, site: str, *, kind: str | None = None) -> Alert:
    """Return the alert of an alarm event, starting at the event's time."""
    kind = kind or alarm_kind_label(event)
    per = f"{event.unit}/min" if event.event is AlarmKind.RATE_OF_CHANGE else event.unit
    annotations = _present(
        (
            ("summary", _alarm_summary(event, kind)),
            ("detail", event.detail),
            ("event", event.event.value),
            ("value", _number(event.value, per)),
            ("limit", _number(event.limit, per)),
            ("excursion_id", event.excursion_id),
        )
    )
    return Alert(alert_labels(event, site, kind), annotations, event.ts)


def system_alert(event: SystemEvent, site: str, *, kind: SystemEventKind | None = None) -> Alert:
    """Return the alert of a system event (``kind``: the event that opened it, if another)."""
    opened = kind or event.event
    labels = _present(
        (
            ("alertname", SYSTEM_ALERTNAME),
            ("site", site),
            ("component", event.component),
            ("kind", opened.value),
        )
    )
    annotations = _present(
        (
            ("summary", f"{event.component}: {opened.value.replace('_', ' ')}"),
            ("detail", event.detail),
            ("event", event.event.value),
        )
    )
    return Alert(labels, annotations, event.ts)


class AlertmanagerForwarder:
    """Keeps envmon's open alarms posted to one Alertmanager (see the module docstring)."""

    def __init__(
        self,
        config: AlertmanagerConfig,
        *,
        site: str,
        clock: Callable[[], datetime] = utcnow,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_s: float = DEFAULT_RETRY_S,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = config.url.rstrip("/") + ALERTS_PATH
        self.resend_every = timedelta(seconds=config.resend_every)
        self.site = site
        self.clock = clock
        self.timeout_s = timeout_s
        self.retry = timedelta(seconds=retry_s)
        self.posts = 0
        self.failures = 0
        self._session = session
        self._own_session = session is None
        self._open: dict[_Key, Alert] = {}
        self._unsent: dict[_Fingerprint, Alert] = {}
        self._next_resend: datetime | None = None
        self._failing_since: datetime | None = None
        self._retry_at: datetime | None = None

    # ---- what is open ---------------------------------------------------------------------

    @property
    def open_alerts(self) -> list[Alert]:
        """The alerts held open now."""
        return list(self._open.values())

    @property
    def unsent(self) -> list[Alert]:
        """The changes the next tick posts (openings, updates, ends, one-shot alerts)."""
        return list(self._unsent.values())

    @property
    def failing(self) -> bool:
        """True while posts fail (between a failed post and the next one that succeeds)."""
        return self._failing_since is not None

    async def observe(self, event: AlarmEvent | SystemEvent) -> None:
        """Take note of an event; ``tick`` posts the change."""
        if isinstance(event, AlarmEvent):
            self._alarm(event)
        else:
            self._system(event)

    def _alarm(self, event: AlarmEvent) -> None:
        if event.event in _ALARM_ONE_SHOT:
            self._one_shot(alarm_alert(event, self.site))
            return
        opens = _ALARM_OPENS.get(event.event)
        if opens is not None:
            self._set_open(self._alarm_key(event, opens), alarm_alert(event, self.site, kind=opens))
            return
        if event.event is AlarmKind.CLEARED:
            self._close(
                self._alarm_key(event, EXCURSION_KIND), event.ts, alarm_alert(event, self.site)
            )
            return
        if event.event is AlarmKind.RESTORED:
            if event.cause in _RESTORED_CAUSES:
                kind = event.cause
                self._close(self._alarm_key(event, kind), event.ts, alarm_alert(event, self.site))
            else:  # no cause given: it ends whichever episode is held
                for kind in _RESTORED_CAUSES:
                    self._close(self._alarm_key(event, kind), event.ts, None)

    @staticmethod
    def _alarm_key(event: AlarmEvent, kind: str) -> _Key:
        if kind == EXCURSION_KIND and event.excursion_id:
            return (kind, event.excursion_id)
        direction = event.direction.value if event.direction is not None else ""
        return (kind, event.sensor_id, direction)

    def _system(self, event: SystemEvent) -> None:
        began = SYSTEM_CLOSES.get(event.event)
        if began is not None:
            self._close(("system", event.component, began.value), event.ts, None)
        elif not event.alarm:
            return
        elif event.event in _SYSTEM_OPENS:
            self._set_open(
                ("system", event.component, event.event.value), system_alert(event, self.site)
            )
        else:
            self._one_shot(system_alert(event, self.site))

    def _set_open(self, key: _Key, alert: Alert) -> None:
        held = self._open.get(key)
        if held is not None:
            if held.fingerprint == alert.fingerprint:
                alert = replace(alert, starts_at=held.starts_at)
            else:  # an escalation: other labels, another alert in Alertmanager
                self._queue(held.ended(alert.starts_at))
        self._open[key] = alert
        self._queue(alert)

    def _close(self, key: _Key, at: datetime, fallback: Alert | None) -> None:
        held = self._open.pop(key, None)
        if held is not None:
            self._queue(held.ended(at))
        elif fallback is not None:
            self._queue(fallback.ended(at))

    def _one_shot(self, alert: Alert) -> None:
        self._queue(alert.ended(max(alert.starts_at, self.clock()) + self.resend_every))

    def _queue(self, alert: Alert) -> None:
        self._unsent[alert.fingerprint] = alert

    # ---- posting --------------------------------------------------------------------------

    async def tick(self, now: datetime) -> None:
        """Post the changes, and every open alarm when a resend is due or after a failure."""
        if self._retry_at is not None and now < self._retry_at:
            return
        resend = self.failing or self._next_resend is None or now >= self._next_resend
        batch = dict(self._unsent)
        if resend:
            for alert in self._open.values():
                batch.setdefault(alert.fingerprint, alert)
        if not batch:
            if resend:
                self._next_resend = now + self.resend_every
            return
        error = await self._post([alert.payload() for alert in batch.values()])
        if error is not None:
            self._failed(now, error)
            return
        for fingerprint, alert in batch.items():
            if self._unsent.get(fingerprint) is alert:  # not changed again meanwhile
                del self._unsent[fingerprint]
        if resend:
            self._next_resend = now + self.resend_every
        if self._failing_since is not None:
            logger.info(
                "Alertmanager %s answers again after %.0f s: posted %d alerts",
                self.url,
                (now - self._failing_since).total_seconds(),
                len(batch),
            )
        self._failing_since = None
        self._retry_at = None

    def _failed(self, now: datetime, error: str) -> None:
        self.failures += 1
        if self._failing_since is None:
            logger.warning(
                "Alertmanager %s: %s; %d open alarms are posted again when it answers",
                self.url,
                error,
                len(self._open),
            )
            self._failing_since = now
        else:
            logger.debug("Alertmanager %s still failing: %s", self.url, error)
        self._retry_at = now + self.retry

    async def _post(self, alerts: list[dict[str, Any]]) -> str | None:
        """POST ``alerts``; return None if Alertmanager took them, else why not."""
        session = self._session_now()
        try:
            async with session.post(
                self.url, json=alerts, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            ) as response:
                if response.status == 200:
                    self.posts += 1
                    return None
                text = (await response.text(errors="replace")).strip()
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        reason = f"HTTP {response.status}: {text[:_ERROR_TEXT_MAX]}"
        if 400 <= response.status < 500 and response.status not in (408, 429):
            # Sending the same alerts again would be refused again: drop them, loudly.
            logger.error("Alertmanager %s refused %d alerts: %s", self.url, len(alerts), reason)
            self.posts += 1
            return None
        return reason

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        """Close the HTTP session if the forwarder made it; idempotent."""
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()
            # Let aiohttp's connector finish closing its transports (no unclosed warnings).
            await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
