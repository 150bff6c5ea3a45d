"""The PDF report: the signature, the assessment and the audit trail, as extracted text."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pypdf
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from envmon.cli import app
from envmon.display import Display
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.lifecycle import MAX_COMMENT, QA_FIELDS, Lifecycle
from excursions.queries import record_detail
from excursions.report import CONTINUED, write_report
from excursions.series import fetch_trend
from stream.timeseries.sqlite import SqliteTimeSeries

from .conftest import stored_excursion
from .lifecycle_cases import ASSESSMENT, sign
from .test_records import core_readings
from .test_report_layout import body_text

PASSWORD = "qa password 123"
PRINTED = DEFAULT_T0 + timedelta(hours=2)
UTC = Display(ZoneInfo("UTC"))


def closed_record(engine: Engine) -> tuple[Lifecycle, str]:
    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    qa = users.add("quinn", "Quinn Example", "qa", PASSWORD, actor="admin", reason="t")
    life = Lifecycle(engine, users, clock=clock)
    detail = record_detail(engine, record_id)
    assert detail is not None
    v = life.acknowledge(record_id, qa, "seen", version=detail.row_version)
    v = life.start_review(record_id, qa, "review", version=v)
    v = life.assess(record_id, qa, ASSESSMENT, "assessment", version=v)
    sign(life.close, record_id, version=v, reason="no impact", password=PASSWORD)
    return life, record_id


def pdf_text(data: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def test_report_has_the_signature_assessment_trail_and_page_numbers(
    engine: Engine, tmp_path: Path, series: SqliteTimeSeries
) -> None:
    _life, record_id = closed_record(engine)
    zone = ZoneInfo("Europe/Amsterdam")
    detail = record_detail(engine, record_id, zone)
    assert detail is not None
    chart = fetch_trend(series, detail.record, now=DEFAULT_T0 + timedelta(days=1), zone=zone)
    assert chart.trend is not None
    path = tmp_path / "report.pdf"
    write_report(
        detail, path, site_name="Plant A", chart=chart, display=Display(zone), printed_at=PRINTED
    )
    pages, text = pdf_text(path.read_bytes())
    assert pages >= 2  # the audit trail alone fills more than one page
    assert "Excursion report" in text
    assert "Plant A" in text
    assert f"Page 1 of {pages}" in text
    assert f"Page {pages} of {pages}" in text
    assert "Quinn Example" in text
    assert "Approved" in text
    assert "CET" in text  # times in the site's zone, the zone named
    assert "No impact on product quality." in text
    assert "system:records" in text  # the audit trail
    for line in ("action high 10", "alert high 8"):  # the chart's limit lines
        assert line in text
    for title in ("Alarm raised", "Alarm cleared", "Acknowledged", "Signed (approved)"):
        assert title in text  # the timeline


def test_report_says_why_there_is_no_trend(engine: Engine, tmp_path: Path) -> None:
    _life, record_id = closed_record(engine)
    detail = record_detail(engine, record_id)
    assert detail is not None
    chart = fetch_trend(None, detail.record, now=DEFAULT_T0, zone=ZoneInfo("UTC"))
    path = tmp_path / "report.pdf"
    write_report(detail, path, site_name="Plant A", chart=chart, display=UTC, printed_at=PRINTED)
    assert "Trend unavailable: no time-series store" in pdf_text(path.read_bytes())[1]


def test_report_command(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVMON_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    series = SqliteTimeSeries(tmp_path / "data" / "timeseries.sqlite3")  # the worker's store
    series.write(core_readings())
    series.close()
    _life, record_id = closed_record(engine)
    url = engine.url.render_as_string(hide_password=False)
    out = tmp_path / "out" / "report.pdf"
    runner = CliRunner()
    result = runner.invoke(app, ["excursions", "report", record_id, "-o", str(out), "--db", url])
    assert result.exit_code == 0, result.output
    text = pdf_text(out.read_bytes())[1]
    assert "Quinn Example" in text
    assert "action high 10" in text  # the chart from the worker's time-series store
    missing = runner.invoke(app, ["excursions", "report", "forged", "-o", str(out), "--db", url])
    assert missing.exit_code == 2
    assert "no record 'forged'" in missing.output


def longest(marker: str, length: int) -> str:
    """A text of exactly ``length`` characters: words, lines, and a long unbroken token."""
    token = f"{marker}TOKEN" + "x" * (min(length, 1200) - len(marker) - 5)
    words = f"{marker} " + "lorem ipsum dolor sit amet\nconsectetur adipiscing " * length
    return (token + " " + words)[: length - 1] + "Z"


def test_every_accepted_input_prints_at_its_longest(engine: Engine, tmp_path: Path) -> None:
    """Comments, reasons and QA fields at their maximum lengths, with long tokens, all print."""
    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    qa = users.add("quinn", longest("NAME", 200), "qa", PASSWORD, actor="admin", reason="t")
    life = Lifecycle(engine, users, clock=clock)
    detail = record_detail(engine, record_id)
    assert detail is not None
    v = detail.row_version
    inputs = {f"C{n}": longest(f"C{n}", MAX_COMMENT) for n in range(8)}
    for text in inputs.values():
        v = life.comment(record_id, qa, text, version=v)
    inputs["ACK"] = longest("ACK", MAX_COMMENT)
    v = life.acknowledge(record_id, qa, inputs["ACK"], version=v)
    inputs["REVIEW"] = longest("REVIEW", MAX_COMMENT)
    v = life.start_review(record_id, qa, inputs["REVIEW"], version=v)
    fields = {
        name: longest(name.upper().replace("_", ""), size)
        for name, size in QA_FIELDS.items()
        if name != "root_cause_category"
    }
    inputs.update({name.upper().replace("_", ""): text for name, text in fields.items()})
    inputs["ASSESS"] = longest("ASSESS", MAX_COMMENT)
    v = life.assess(
        record_id, qa, {**fields, "root_cause_category": "equipment"}, inputs["ASSESS"], version=v
    )
    inputs["CLOSE"] = longest("CLOSE", MAX_COMMENT)
    sign(life.close, record_id, version=v, reason=inputs["CLOSE"], password=PASSWORD)
    detail = record_detail(engine, record_id, ZoneInfo("Europe/Berlin"))
    assert detail is not None
    path = tmp_path / "report.pdf"
    berlin = Display(ZoneInfo("Europe/Berlin"))
    write_report(detail, path, site_name="Plant A", display=berlin, printed_at=PRINTED)
    reader = pypdf.PdfReader(path)
    pages = len(reader.pages)
    text = body_text(reader).replace(CONTINUED, "")  # no running header, footer, table heads
    flat = "".join(text.split())  # broken lines and long words are joined again
    for marker, value in inputs.items():
        assert f"{marker}TOKEN" in flat, marker
        assert "".join(value.split()) in flat, marker  # every character of it, in order
    assert "".join(longest("NAME", 200).split()) in flat  # the signature's printed name
    assert pages < 100
