"""What the time-series writer tests share, whichever real server they write to."""

from __future__ import annotations

from typing import Any, Final

from envmon.backoff import Backoff
from envmon.models import DeadLetter, SystemEvent
from stream.timeseries.influxdb import InfluxWriter

#: Retries fast enough for a test, slow enough to see an outage.
FAST: Final = Backoff(initial_s=0.05, maximum_s=0.5)


class Sinks:
    """Collects the writer's dead letters and system events."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.events: list[SystemEvent] = []


def writer(
    url: str, token: str, org: str, bucket: str, sinks: Sinks, **kwargs: Any
) -> InfluxWriter:
    """An ``InfluxWriter`` reporting into ``sinks``, with fast retries."""
    return InfluxWriter(
        url,
        token,
        org,
        bucket,
        dead_letter=sinks.letters.append,
        on_event=sinks.events.append,
        backoff=FAST,
        **kwargs,
    )
