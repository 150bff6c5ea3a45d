"""The time-series ports of the QA app: a record's readings, and the newest of many sensors.

``excursions`` reads time series only through ``SeriesReader`` (one sensor over a range:
the trend of a record) and ``LatestReader`` (the newest reading of many sensors: the live
status page of ``dashboards.status``); the adapters live with the writers that own the
stores (``stream.timeseries.SqliteTimeSeries`` for the embedded
default, ``stream.influxdb.InfluxSeriesReader`` for InfluxDB) and are chosen by the
command that builds the app (``envmon excursions serve``, ``envmon demo``).

A store that cannot answer does not stop a review: ``fetch_trend`` returns the reason and
the page and report say "trend unavailable: …" in place of the chart.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from envmon.errors import EnvmonError
from envmon.models import Reading
from excursions.trend import Trend, build_trend, trend_window

logger = logging.getLogger(__name__)


class SeriesReader(Protocol):
    """Reads one sensor's stored readings."""

    def query(self, sensor_id: str, start: datetime, end: datetime) -> Sequence[Reading]:
        """Return the readings of ``sensor_id`` with ``start <= ts < end``, oldest first."""
        ...


class LatestReader(Protocol):
    """Reads the newest stored reading of many sensors at once."""

    def latest(self, sensor_ids: Collection[str], since: datetime) -> Mapping[str, Reading]:
        """Return each sensor's newest reading with ``ts >= since``, by sensor id.

        A sensor with no reading since then is left out. A stored quality the adapter
        cannot read comes back as ``bad`` (a quality not known to be good is not good).
        """
        ...


@dataclass(frozen=True, slots=True)
class TrendResult:
    """The chart of a record, or why there is none."""

    trend: Trend | None
    error: str = ""


def fetch_trend(
    reader: SeriesReader | None,
    record: Mapping[str, Any],
    *,
    now: datetime,
    zone: ZoneInfo,
) -> TrendResult:
    """Read the record's sensor around the excursion and build its chart."""
    window = trend_window(record, now)
    if reader is None:
        return TrendResult(None, "no time-series store is configured or written yet")
    sensor_id = str(record["sensor_id"])
    try:
        readings = reader.query(sensor_id, *window)
    except (EnvmonError, OSError) as exc:
        logger.warning("trend of %s unavailable: %s", sensor_id, exc)
        return TrendResult(None, f"the time-series store did not answer: {exc}")
    return TrendResult(build_trend(record, readings, window, zone=zone))
