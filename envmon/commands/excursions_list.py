"""``envmon excursions list``: what the record store holds, filtered, as a table or JSON.

Kinds: ``excursion`` and ``data_gap`` records (through the QA list's query,
``excursions.queries.list_records``) and ``alarm`` events (the timeline's alarm events).
Without ``--kind`` the records of both kinds are listed; newest first, at most ``limit``.

The JSON output (``--json``) is one object, its shape stable::

    {"kind": "record" | "excursion" | "data_gap" | "alarm",
     "count": <items listed>, "more": <true when the limit cut the list>,
     "items": [...]}

A record item: ``id, kind, sensor_id, area, instrument, parameter, level, start, end,
open, qa_state, peak, unit``; an alarm item: ``id, event, sensor_id, area, parameter,
level, direction, value, limit, unit, ts, excursion_id``. Times are ISO 8601 in UTC
(``2026-01-05T08:00:12+00:00``), values raw numbers (``null`` when absent).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from rich.table import Table
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from envmon.display import Display
from excursions.db import TimelineEventRow
from excursions.queries import MAX_PAGE_SIZE, Filters, RecordSummary, list_records

KINDS: Final = ("excursion", "data_gap", "alarm")
#: The most items one listing prints.
MAX_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class Query:
    """What to list (all filters optional; times aware)."""

    kind: str | None = None
    area: str | None = None
    instrument: str | None = None
    sensor: str | None = None
    parameter: str | None = None
    level: str | None = None
    state: str | None = None
    open: bool | None = None  #: True: only open; False: only closed (records only)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time that names its UTC offset (``Z`` or ``+01:00``).

    Raises ``ValueError`` for text that is not such a time: a time without an offset is
    ambiguous (which zone?) and refused rather than guessed.
    """
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset: write it as 2026-01-05T09:00:00+01:00 or …Z")
    return at.astimezone(UTC)


def listing(engine: Engine, query: Query) -> dict[str, Any]:
    """Return the JSON-ready listing (see the module docstring for its shape)."""
    if not 1 <= query.limit <= MAX_LIMIT:
        raise ValueError(f"--limit must be 1 to {MAX_LIMIT:,}")
    found = _alarms(engine, query) if query.kind == "alarm" else _records(engine, query)
    items: list[dict[str, Any]] = []
    more = False
    for item in found:
        if len(items) == query.limit:
            more = True
            break
        items.append(item)
    return {"kind": query.kind or "record", "count": len(items), "more": more, "items": items}


def _records(engine: Engine, query: Query) -> Iterator[dict[str, Any]]:
    """Yield the matching records newest first, page by page through ``list_records``."""
    filters = Filters(
        area=query.area,
        instrument=query.instrument,
        parameter=query.parameter,
        level=query.level,
        state=query.state,
        start_from=query.since,
        start_to=query.until,
        sensor=query.sensor,
        kind=query.kind,
    )
    page = 1
    while True:
        _, rows = list_records(engine, filters, page=page, page_size=MAX_PAGE_SIZE)
        for row in rows:
            is_open = row.core_status == "open"
            if query.open is None or query.open == is_open:
                yield _record_item(row, is_open)
        if len(rows) < MAX_PAGE_SIZE:
            return
        page += 1


def _record_item(row: RecordSummary, is_open: bool) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "sensor_id": row.sensor_id,
        "area": row.area,
        "instrument": row.instrument,
        "parameter": row.parameter,
        "level": row.level,
        "start": _iso(row.start),
        "end": _iso(row.end),
        "open": is_open,
        "qa_state": row.qa_state,
        "peak": row.peak,
        "unit": row.unit,
    }


def _alarms(engine: Engine, query: Query) -> Iterator[dict[str, Any]]:
    """Yield the stored alarm events matching ``query``, newest first."""
    statement = select(TimelineEventRow).where(TimelineEventRow.kind == "alarm")
    if query.sensor:
        statement = statement.where(TimelineEventRow.sensor_id == query.sensor)
    if query.since is not None:
        statement = statement.where(TimelineEventRow.ts >= query.since)
    if query.until is not None:
        statement = statement.where(TimelineEventRow.ts < query.until)
    statement = statement.order_by(TimelineEventRow.ts.desc(), TimelineEventRow.id)
    wanted = {"area": query.area, "parameter": query.parameter, "level": query.level}
    instrument = query.instrument
    with Session(engine) as session:
        for row in session.execute(statement.execution_options(yield_per=500)).scalars():
            payload = row.payload
            if any(value and payload.get(key) != value for key, value in wanted.items()):
                continue
            if instrument and not row.sensor_id.startswith(f"{instrument}."):
                continue
            yield {
                "id": row.id,
                "event": row.event,
                "sensor_id": row.sensor_id,
                "area": payload.get("area"),
                "parameter": payload.get("parameter"),
                "level": payload.get("level"),
                "direction": payload.get("direction"),
                "value": payload.get("value"),
                "limit": payload.get("limit"),
                "unit": payload.get("unit"),
                "ts": _iso(row.ts),
                "excursion_id": row.excursion_id,
            }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def table(result: dict[str, Any], display: Display) -> Table:
    """Return the listing as a table, every value, time and state through ``display``."""
    items: list[dict[str, Any]] = result["items"]
    zone = display.zone.key
    if result["kind"] == "alarm":
        title = f"{len(items)} alarm event(s), newest first (times {zone})"
        alarms = Table(title=title, title_justify="left")
        for header in ("Time", "Event", "Sensor", "Level", "Value", "Limit", "Excursion"):
            alarms.add_column(
                header, no_wrap=True, justify="right" if header in ("Value", "Limit") else "left"
            )
        for item in items:
            unit, sensor, parameter = item["unit"] or "", item["sensor_id"], item["parameter"]
            alarms.add_row(
                display.time(item["ts"]),
                display.label(item["event"]),
                sensor,
                display.label(item["level"]) if item["level"] else "—",
                display.value(item["value"], unit, sensor=sensor, parameter=parameter),
                display.value(item["limit"], unit, sensor=sensor, parameter=parameter),
                item["excursion_id"] or "—",
            )
        return alarms
    what = {"excursion": "excursion(s)", "data_gap": "data gap(s)"}.get(result["kind"], "record(s)")
    records = Table(title=f"{len(items)} {what}, newest first (times {zone})", title_justify="left")
    for header in ("Id", "Kind", "Sensor", "Level", "Start", "End", "Duration", "Peak", "QA state"):
        numeric = header in ("Duration", "Peak")
        records.add_column(header, no_wrap=True, justify="right" if numeric else "left")
    for item in items:
        sensor = item["sensor_id"]
        records.add_row(
            item["id"],
            display.label(item["kind"]),
            sensor,
            display.label(item["level"]) if item["level"] else "—",
            display.time(item["start"]),
            "open" if item["end"] is None else display.time(item["end"]),
            display.duration(_seconds(item["start"], item["end"])),
            display.value(
                item["peak"], item["unit"] or "", sensor=sensor, parameter=item["parameter"]
            ),
            display.label(item["qa_state"]),
        )
    return records


def _seconds(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
