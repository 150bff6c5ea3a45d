"""Every generated panel and annotation query, run on a real InfluxDB 1.8 after a real day.

The example site's scripted day (plus half an hour before it, when the grade B room is at
rest) goes through Kafka and the stream worker into InfluxDB 1.8, as in production. Then
every query of every generated dashboard runs with Grafana's macros substituted as Grafana
does (``$timeFilter``, ``$__interval``, multi-value variables at "All"). Each must run and
return the series its panel shows; the burst, the data gap and the occupancy switch must be
in the data as the dashboards would draw them.

``ENVMON_DASHBOARD_QUERIES=FILE`` writes what each query returned (for the closing note).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboards import naming
from dashboards.provisioning import build_tree
from devservers.influxdb import InfluxDB, InfluxDBServerError, cached_binary, go_binary
from devservers.kafka import KafkaBroker
from envmon.commands.stream_worker import build_worker
from envmon.config import load_site
from envmon.models import Reading
from envmon.timeutil import parse_ts

from .faust_counter import wait_ready
from .test_worker import SITE, make_topics, publish, scenario_csv, settings_for

START = parse_ts("2026-01-05T05:30:00Z")  # 06:30 CET: the grade B room is at rest
END = parse_ts("2026-01-05T12:00:00Z")
INTERVAL = "1m"


def _influx_buildable() -> bool:
    try:
        go_binary()
    except InfluxDBServerError:
        return cached_binary().is_file()
    return True


pytestmark = pytest.mark.skipif(not _influx_buildable(), reason="go is not installed")


@dataclass
class Day:
    server: InfluxDB
    tree: Any
    site_id: str
    readings: int


def before_the_day() -> list[Reading]:
    """Half an hour before the scripted day (06:30–07:00 CET), and a two-minute burst.

    The grade B room is at rest then (its in-operation limits start at 07:00 CET). The
    isolator's and the corridor's counters see a four-minute burst of 5 µm particles at
    05:40 UTC, so their dashboards have excursions to draw too.
    """
    out: list[Reading] = []
    for minute in range(30):
        ts = START + timedelta(minutes=minute)
        burst = 10 <= minute < 14  # 3 in a row raise the corridor's alarm
        out.append(Reading(sensor_id="pc-grade-b.particles_0_5um", ts=ts, value=1_200.0))
        out.append(Reading(sensor_id="pc-grade-b.particles_5_0um", ts=ts, value=4.0))
        out.append(
            Reading(sensor_id="pc-isolator-1.particles_5_0um", ts=ts, value=40.0 if burst else 0.0)
        )
        out.append(
            Reading(
                sensor_id="pc-grade-d.particles_5_0um", ts=ts, value=40_000.0 if burst else 900.0
            )
        )
    return out


def now_in_action() -> list[Reading]:
    """Readings up to the wall clock's now: the corridor's 5 µm counter in action, still open.

    Three in a row, a minute apart: the corridor's counter needs three samples beyond.
    """
    now = datetime.now(UTC)
    return [
        Reading(sensor_id="pc-grade-d.particles_5_0um", ts=now - timedelta(minutes=m), value=4e4)
        for m in (2, 1, 0)
    ]


async def _run_day(kafka: KafkaBroker, server: InfluxDB, workdir: Path) -> int:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    settings = settings_for(
        kafka,
        prefix,
        workdir / "worker",
        timeseries="influx",
        influx_url=server.url,
        influx_bucket=server.bucket,
    )
    readings = before_the_day() + scenario_csv(workdir / "day.csv") + now_in_action()
    await make_topics(settings)
    await publish(settings, readings)
    worker = build_worker(settings, load_site(SITE))
    worker.on_fatal = lambda _exc: None
    await worker.app.start()
    try:
        await wait_ready(worker.app)
        async with asyncio.timeout(120):
            while worker.readings < len(readings):
                await asyncio.sleep(0.2)
    finally:
        await worker.app.stop()
        await worker.sink.close()
    assert worker.fatal is None
    return len(readings)


@pytest.fixture(scope="module")
def day(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    workdir = tmp_path_factory.mktemp("dashboard-day")
    server = InfluxDB(workdir / "influxdb")
    server.start()
    try:
        count = asyncio.run(_run_day(kafka, server, workdir))
        site = load_site(SITE)
        tree = build_tree(site, influx_url=server.url)
        yield Day(server, tree, site.site_id, count)
    finally:
        server.stop()


def substitute(query: str, variables: dict[str, list[str]]) -> str:
    """Replace Grafana's macros and variables the way Grafana does for InfluxQL."""
    time_filter = (
        f"time >= {int(START.timestamp() * 1000)}ms and time <= {int(END.timestamp() * 1000)}ms"
    )
    text = query.replace("$timeFilter", time_filter).replace("$__interval", INTERVAL)
    text = text.replace("${__from}", str(int(START.timestamp() * 1000)))
    text = text.replace("${__to}", str(int(END.timestamp() * 1000)))
    for name, values in variables.items():  # "All" of a multi-value variable, in a regex
        text = text.replace(f"${name}", "(" + "|".join(re.escape(v) for v in values) + ")")
    assert not re.search(r"\$[\w{]", text), text  # a regex's own $ anchor stays
    return text


def variables_of(model: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for variable in model["templating"]["list"]:
        pairs = [part.split(" : ") for part in variable["query"].split(",")]
        out[variable["name"]] = [value for _text, value in pairs]
    return out


def run(day: Day, query: str) -> list[dict[str, Any]]:
    """Return the series of a query's (single statement's) result."""
    (result,) = day.server.influxql(query)
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def every_query(day: Day) -> Iterator[tuple[str, str, str, str]]:
    """(dashboard, panel or annotation, refId, query with macros substituted)."""
    for name, model in sorted(day.tree.dashboards.items()):
        variables = variables_of(model)
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                yield name, panel["title"], target["refId"], substitute(target["query"], variables)
        for annotation in model["annotations"]["list"]:
            if "target" in annotation:
                query = substitute(annotation["target"]["query"], variables)
                yield name, f"annotation: {annotation['name']}", "Anno", query


def status_now(day: Day) -> dict[str, int]:
    """Sensor → its state code now, from the overview's per-area tables."""
    model = day.tree.dashboards[f"{naming.uid(day.site_id, naming.OVERVIEW)}.json"]
    codes: dict[str, int] = {}
    for panel in model["panels"]:
        if panel["type"] != "table" or panel["title"] == "Open alarms":
            continue
        for target in panel["targets"]:
            if 'FROM "status"' not in target["query"]:
                continue
            for series in run(day, substitute(target["query"], variables_of(model))):
                for row in _columns(series):
                    codes[series["tags"]["sensor"]] = row["state"]
    return codes


COUNT_STATS = {
    "Channels in action": 2,
    "Channels in alert": 1,
    "Channels stale (no data)": 3,
    "Channels in sensor fault": 4,
}


def test_every_query_runs_and_returns_what_its_panel_shows(day: Day) -> None:
    codes = status_now(day)
    report: list[dict[str, Any]] = []
    wrong: list[str] = []
    for name, title, ref, query in every_query(day):
        series = run(day, query)
        rows = sum(len(s.get("values", [])) for s in series)
        report.append(
            {
                "dashboard": name,
                "panel": title,
                "ref": ref,
                "series": len(series),
                "rows": rows,
                "query": query,
            }
        )
        if title in COUNT_STATS:  # a count of channels: none is "0" on the panel
            expected = sum(1 for code in codes.values() if code == COUNT_STATS[title])
            got = series[0]["values"][0][1] if series else 0
            if got != expected:
                wrong.append(f"{name} / {title}: {got}, the tables say {expected}")
        elif not rows:
            wrong.append(f"{name} / {title} / {ref} returned nothing: {query}")
    if os.environ.get("ENVMON_DASHBOARD_QUERIES"):
        Path(os.environ["ENVMON_DASHBOARD_QUERIES"]).write_text(json.dumps(report, indent=1))
    assert len(report) > 50
    assert wrong == []
    assert codes["pc-grade-d.particles_5_0um"] == 2  # the reading at now: in action


def _panel(day: Day, area: str, sensor: str) -> dict[str, Any]:
    site = load_site(SITE)
    model = day.tree.dashboards[f"{naming.uid(day.site_id, naming.AREA, area)}.json"]
    panel_id = naming.channel_panel_ids(site.sensors())[sensor]
    panel: dict[str, Any] = next(p for p in model["panels"] if p["id"] == panel_id)
    return panel


def _columns(series: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(series["columns"], row, strict=True)) for row in series.get("values", [])]


def _query(day: Day, panel: dict[str, Any], ref: str) -> list[dict[str, Any]]:
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    (series,) = run(day, substitute(target["query"], {}))
    return _columns(series)


def test_grade_b_burst_exceeds_the_action_limit_in_force(day: Day) -> None:
    panel = _panel(day, "grade-b-room", "pc-grade-b.particles_0_5um")
    value = "Particles ≥ 0.5 µm (max)"
    values = {row["time"]: row[value] for row in _query(day, panel, "A")}
    limits = {row["time"]: row["Action limit (high)"] for row in _query(day, panel, "B")}
    above = sorted(t for t, v in values.items() if v is not None and v > limits[t])
    assert above == [f"2026-01-05T10:0{minute}:00Z" for minute in range(5)]  # the burst only
    assert limits[above[0]] == 352_000.0  # in operation


def test_fridge_gap_comes_back_as_nulls(day: Day) -> None:
    panel = _panel(day, "cold-store", "fridge-2.temperature")
    rows = _query(day, panel, "A")
    gap = [r for r in rows if "2026-01-05T11:0" in r["time"] or "2026-01-05T11:1" in r["time"]]
    assert len(gap) == 20
    assert all(r["Temperature"] is None for r in gap)
    before = [r for r in rows if r["time"].startswith("2026-01-05T10:5")]
    assert all(r["Temperature"] is not None for r in before)


def test_scheduled_room_shows_both_limits_at_the_right_times(day: Day) -> None:
    panel = _panel(day, "grade-b-room", "pc-grade-b.particles_0_5um")
    limits = {row["time"]: row["Action limit (high)"] for row in _query(day, panel, "B")}
    assert limits["2026-01-05T05:45:00Z"] == 3_520.0  # 06:45 CET: at rest
    assert limits["2026-01-05T05:59:00Z"] == 3_520.0
    assert limits["2026-01-05T06:00:00Z"] == 352_000.0  # 07:00 CET: in operation
    assert limits["2026-01-05T11:00:00Z"] == 352_000.0


def test_overview_has_every_channel_now(day: Day) -> None:
    codes = status_now(day)
    assert set(codes) == {spec.sensor_id for spec in load_site(SITE).sensors()}
    open_alarms = next(
        p
        for p in day.tree.dashboards[f"{naming.uid(day.site_id, naming.OVERVIEW)}.json"]["panels"]
        if p["title"] == "Open alarms"
    )
    variables = {"area": [area.id for area in load_site(SITE).areas]}
    series = run(day, substitute(open_alarms["targets"][0]["query"], variables))
    assert [s["tags"]["sensor"] for s in series] == ["pc-grade-d.particles_5_0um"]


def test_excursions_come_back_as_regions(day: Day) -> None:
    model = day.tree.dashboards[f"{naming.uid(day.site_id, naming.AREA, 'cold-store')}.json"]
    records = next(a for a in model["annotations"]["list"] if a["name"].startswith("Excursions"))
    (series,) = run(day, substitute(records["target"]["query"], {}))
    rows = _columns(series)
    freezer = [r for r in rows if r["kind"] == "excursion"]
    gaps = [r for r in rows if r["kind"] == "data_gap"]
    assert freezer
    assert all(r["end_ms"] is not None for r in freezer)
    assert gaps  # the fridge's 20 minutes without data
    assert all("peak" in r["text"] for r in freezer)
