"""``envmon excursions list`` on a SQLite store: filters, JSON shape, table, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from envmon.cli import app
from envmon.models import AlarmEvent
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.records import RecordStore
from excursions.timeline import TimelineStore
from tests.unit.excursions.test_records import FRIDGE, core_events

RECORD_KEYS = {
    "id", "kind", "sensor_id", "area", "instrument", "parameter", "level",
    "start", "end", "open", "qa_state", "peak", "unit",
}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated store holding the fridge's excursion, its data gap and its alarm events."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'records.sqlite3'}"
    assert CliRunner().invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    engine = create_engine(url)
    records, timeline = RecordStore(engine, clock=FakeClock(DEFAULT_T0)), TimelineStore(engine)
    for event in core_events():
        if isinstance(event, AlarmEvent):
            timeline.apply(event)
        else:
            records.apply(event)
    engine.dispose()
    return url


def run(url: str, *args: str, columns: int = 200) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app, ["excursions", "list", "--db", url, *args], env={"COLUMNS": str(columns)}
    )
    return result.exit_code, result.stdout, result.stderr


def test_json_lists_records_newest_first_in_a_stable_shape(store: str) -> None:
    code, out, _ = run(store, "--json")
    assert code == 0, out
    listing = json.loads(out)
    assert set(listing) == {"kind", "count", "more", "items"}
    assert listing["kind"] == "record"
    kinds = {item["kind"] for item in listing["items"]}
    assert kinds == {"excursion", "data_gap"}
    for item in listing["items"]:
        assert set(item) == RECORD_KEYS
        assert item["start"].endswith("+00:00")
        assert item["sensor_id"] == FRIDGE.sensor_id
    starts = [item["start"] for item in listing["items"]]
    assert starts == sorted(starts, reverse=True)
    (excursion,) = [i for i in listing["items"] if i["kind"] == "excursion"]
    assert isinstance(excursion["peak"], float)
    assert excursion["open"] is False


def test_filters_narrow_the_list(store: str) -> None:
    def ids(*args: str) -> list[str]:
        code, out, err = run(store, "--json", *args)
        assert code == 0, err
        return [item["id"] for item in json.loads(out)["items"]]

    everything = ids()
    assert len(everything) == 2
    assert len(ids("--kind", "excursion")) == 1
    assert len(ids("--kind", "data_gap")) == 1
    assert ids("--area", "nowhere") == []
    assert ids("--sensor", FRIDGE.sensor_id) == everything
    assert ids("--level", "action") == ids("--kind", "excursion")
    assert ids("--closed") == everything  # the excursion ended, and so did the gap
    assert ids("--open") == []
    assert ids("--state", "closed") == []
    assert ids("--since", "2999-01-01T00:00:00Z") == []
    assert ids("--until", "2000-01-01T00:00:00+01:00") == []
    assert len(ids("--limit", "1")) == 1


def test_limit_says_there_is_more(store: str) -> None:
    code, out, _ = run(store, "--json", "--limit", "1")
    assert code == 0
    assert json.loads(out)["more"] is True
    code, out, _ = run(store, "--limit", "1")
    assert "raise --limit" in out


def test_alarm_events(store: str) -> None:
    code, out, err = run(store, "--json", "--kind", "alarm")
    assert code == 0, err
    listing = json.loads(out)
    assert listing["kind"] == "alarm"
    events = {item["event"] for item in listing["items"]}
    assert "excursion_start" in events or len(events) >= 2
    assert all(item["ts"].endswith("+00:00") for item in listing["items"])
    code, out, _ = run(store, "--json", "--kind", "alarm", "--level", "action")
    assert {item["level"] for item in json.loads(out)["items"]} == {"action"}


@pytest.mark.parametrize("columns", [80, 200])
def test_the_table_reads_through_the_formatting_layer(store: str, columns: int) -> None:
    code, out, err = run(store, columns=columns)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "(times UTC)" in out
    assert "Data gap" in out
    assert " UTC" in out  # times name their zone
    assert "°C" in out  # the peak with its unit


def test_a_time_without_an_offset_is_refused(store: str) -> None:
    code, _, err = run(store, "--since", "2026-01-05T09:00:00")
    assert code == 2
    assert "no UTC offset" in err


def test_an_unknown_kind_is_refused(store: str) -> None:
    code, _, err = run(store, "--kind", "everything")
    assert code == 2
    assert "excursion, data_gap, alarm" in err


def test_an_unmigrated_store_says_to_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    create_engine(url).connect().close()  # the file exists, with no tables
    code, _, err = run(url)
    assert code == 2
    assert "run envmon db upgrade first" in err
