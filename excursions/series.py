"""The QA app's reading of time series: a record's trend and what the chart marks beside it.

``excursions`` reads time series only through the port's ``envmon.timeseries.SeriesReader``
(``query``: one sensor over a range, the trend of a record; ``latest``: the newest reading of
many sensors, the live status page of ``dashboards.status``); the adapters live with the
writers that own the stores (``stream.timeseries.sqlite.SqliteTimeSeries`` for the embedded
default, ``stream.timeseries.influxdb.InfluxSeriesReader`` for InfluxDB) and are chosen by the
command that builds the app (``envmon excursions serve``, ``envmon demo``).

A store that cannot answer does not stop a review: ``fetch_trend`` returns the reason and
the page and report say "trend unavailable: …" in place of the chart.

``trend_context`` reads from the QA store what the chart marks beside the readings: the
record's alarm events (when each level was reached) and, for a data gap (which holds no
limits), the limits of the same sensor's nearest excursion.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from envmon.config.schema import SiteConfig
from envmon.display import Display
from envmon.errors import EnvmonError
from envmon.timeseries import SeriesReader
from excursions.db import ExcursionRow, TimelineEventRow
from excursions.trend.model import DEFAULT_MAX_POINTS, Trend, build_trend, trend_window

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrendResult:
    """The chart of a record, or why there is none."""

    trend: Trend | None
    error: str = ""


#: A data gap's own events are matched to it by time, within this slack (as its timeline).
_SLACK: Final = timedelta(seconds=1)
#: The most alarm events read for one record's marks (each level's first is drawn).
_MAX_EVENTS: Final = 500


@dataclass(frozen=True, slots=True)
class TrendContext:
    """What the QA store adds to a record's readings on its chart.

    ``events`` are alarm events (``ts``, ``event``, ``level``); ``limits`` (a data gap's
    only: None keeps the record's own) with ``limits_note`` saying where they come from.
    """

    events: tuple[Mapping[str, Any], ...] = ()
    limits: Mapping[str, Any] | None = None
    limits_note: str = ""
    unit: str = ""


def trend_context(
    engine: Engine, record: Mapping[str, Any], site: SiteConfig | None = None
) -> TrendContext:
    """Return the record's alarm events and, for a data gap, its sensor's limits.

    An excursion's events are those carrying its id. A data gap's are its sensor's
    ``stale`` and ``restored`` within the gap; its limits are those the ``site``
    configuration puts in force at the gap's start (by occupancy, if it has a schedule)
    or, without the sensor in it, those of the same sensor's excursion that started
    nearest to the gap (the limits the core recorded then). ``limits_note`` says which;
    without either the chart draws no limit and says that too.
    """
    record_id, sensor_id = str(record.get("id") or ""), str(record.get("sensor_id") or "")
    with Session(engine) as session:
        query = select(TimelineEventRow.ts, TimelineEventRow.event, TimelineEventRow.payload)
        query = query.where(TimelineEventRow.kind == "alarm")
        if record.get("kind") != "data_gap":
            query = query.where(TimelineEventRow.excursion_id == record_id)
            rows = session.execute(query.order_by(TimelineEventRow.ts).limit(_MAX_EVENTS))
            return TrendContext(tuple(_event(*row) for row in rows))
        start = _aware(record["start"])
        query = query.where(
            TimelineEventRow.sensor_id == sensor_id,
            TimelineEventRow.event.in_(("stale", "restored")),
            TimelineEventRow.ts >= start - _SLACK,
        )
        if record.get("end") is not None:
            query = query.where(TimelineEventRow.ts <= _aware(record["end"]) + _SLACK)
        rows = session.execute(query.order_by(TimelineEventRow.ts).limit(_MAX_EVENTS))
        events = tuple(_event(*row) for row in rows)
        configured = _configured_limits(site, sensor_id, start)
        if configured is not None:
            return TrendContext(events, *configured)
        same = select(ExcursionRow.id, ExcursionRow.start, ExcursionRow.record).where(
            ExcursionRow.sensor_id == sensor_id, ExcursionRow.kind == "excursion"
        )
        before = session.execute(
            same.where(ExcursionRow.start <= start).order_by(ExcursionRow.start.desc()).limit(1)
        ).first()
        after = session.execute(
            same.where(ExcursionRow.start > start).order_by(ExcursionRow.start).limit(1)
        ).first()
    found = [row for row in (before, after) if row is not None]
    nearest = min(found, key=lambda row: abs(_aware(row.start) - start), default=None)
    if nearest is None or not isinstance(nearest.record.get("limits"), dict):
        note = "limits not shown: no excursion of this sensor records the limits in force"
        return TrendContext(events, None, note)
    note = f"limits as recorded with excursion {nearest.id} of this sensor"
    unit = str(nearest.record.get("unit") or "")
    return TrendContext(events, nearest.record["limits"], note, unit)


def _configured_limits(
    site: SiteConfig | None, sensor_id: str, at: datetime
) -> tuple[dict[str, float | None], str, str] | None:
    """Return the site's limits of ``sensor_id`` in force ``at``, a note and the unit."""
    spec = next((s for s in site.sensors() if s.sensor_id == sensor_id), None) if site else None
    if spec is None:
        return None
    limits, by_occupancy, note = spec.rules.limits, spec.rules.limits_by_occupancy, ""
    if spec.schedule is not None and by_occupancy is not None:
        occupancy, _until = spec.schedule.state_at(int(at.timestamp() * 1_000_000))
        limits, note = by_occupancy[occupancy], f" ({occupancy.value})"
    if limits.is_empty():
        return None
    in_force = {
        "alert_high": limits.alert_high,
        "action_high": limits.action_high,
        "alert_low": limits.alert_low,
        "action_low": limits.action_low,
    }
    return (
        in_force,
        f"limits in force at the gap's start{note}, from the site configuration",
        spec.unit,
    )


def _aware(value: object) -> datetime:
    """Return a stored time (aware datetime or ISO text) as an aware UTC datetime."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _event(ts: datetime, event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"ts": ts, "event": event, "level": payload.get("level")}


def fetch_trend(
    reader: SeriesReader | None,
    record: Mapping[str, Any],
    *,
    now: datetime,
    zone: ZoneInfo,
    window: str = "record",
    display: Display | None = None,
    context: TrendContext | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
) -> TrendResult:
    """Read the record's sensor over ``window`` (a key of ``trend.WINDOWS``), build its chart.

    ``context`` (``trend_context``) adds the alarm marks and a data gap's limits;
    ``display`` writes the values (default: the zone's).
    """
    span = trend_window(record, now, window)
    if reader is None:
        return TrendResult(None, "no time-series store is configured or written yet")
    sensor_id = str(record["sensor_id"])
    try:
        readings = reader.query(sensor_id, *span)
    except (EnvmonError, OSError) as exc:
        logger.warning("trend of %s unavailable: %s", sensor_id, exc)
        return TrendResult(None, f"the time-series store did not answer: {exc}")
    found = context or TrendContext()
    if found.unit and not record.get("unit"):
        record = {**record, "unit": found.unit}
    trend = build_trend(
        record,
        readings,
        span,
        zone=zone,
        display=display,
        events=found.events,
        limits=found.limits,
        limits_note=found.limits_note,
        window_name=window,
        max_points=max_points,
    )
    return TrendResult(trend)
