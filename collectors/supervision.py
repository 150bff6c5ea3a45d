"""What the protocol supervisors (MQTT, OPC-UA) share: the reconnect back-off and events."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final

from envmon.backoff import Backoff
from envmon.config.base_collector import ReconnectConfig
from envmon.models import SystemEvent, SystemEventKind

#: Share of a reconnect wait taken off at random, so that clients do not retry in step.
RECONNECT_JITTER: Final = 0.2

EventHandler = Callable[[SystemEvent], None]
Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def reconnect_backoff(reconnect: ReconnectConfig) -> Backoff:
    """Return the back-off of ``reconnect`` (the configuration keeps maximum ≥ initial)."""
    return Backoff(
        initial_s=reconnect.initial, maximum_s=reconnect.maximum, jitter=RECONNECT_JITTER
    )


class EventReporter:
    """Logs a component's events on ``log`` and hands them to ``on_event``.

    Alarms are logged as warnings, the rest as info; a failing handler is logged, never raised.
    """

    def __init__(
        self,
        component: str,
        on_event: EventHandler | None,
        clock: Clock,
        log: logging.Logger,
    ) -> None:
        self.component = component
        self.on_event = on_event
        self.clock = clock
        self.log = log

    def __call__(self, kind: SystemEventKind, detail: str, *, alarm: bool = False) -> None:
        """Log the event, then hand it to the handler (if any) stamped by the clock."""
        (self.log.warning if alarm else self.log.info)("%s: %s", self.component, detail)
        if self.on_event is None:
            return
        event = SystemEvent(
            event=kind, component=self.component, ts=self.clock(), alarm=alarm, detail=detail
        )
        try:
            self.on_event(event)
        except Exception:
            self.log.exception("%s: event handler failed", self.component)
