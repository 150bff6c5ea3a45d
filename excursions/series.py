"""The time-series port of the QA app: a record's sensor readings around the excursion.

``excursions`` reads time series only through ``SeriesReader``; the adapters live with the
writers that own the stores (``stream.timeseries.SqliteTimeSeries`` for the embedded
default, ``stream.influxdb.InfluxSeriesReader`` for InfluxDB) and are chosen by the
command that builds the app (``envmon excursions serve``, ``envmon demo``).

A store that cannot answer does not stop a review: ``fetch_trend`` returns the reason and
the page and report say "trend unavailable: …" in place of the chart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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
