"""The PDF report as a controlled document: paper sizes, whole tokens, kept headings, values.

The PDFs are read back with pypdf; the ones laid out here are kept in ``ARTIFACTS`` (with
a PNG of their first pages where ``pdftoppm`` is installed) to be looked at.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pypdf
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from envmon.cli import app
from envmon.display import Display
from envmon.testing import DEFAULT_T0, FakeClock
from excursions.lifecycle import Lifecycle
from excursions.queries import AuditItem, RecordDetail, record_detail
from excursions.report import (
    CONTINUED,
    FONT_CANDIDATES,
    PAGE_SIZES,
    break_token,
    column_widths,
    write_report,
)
from excursions.web.app import create_app

from .conftest import app_services, stored_excursion
from .lifecycle_cases import ASSESSMENT, sign
from .test_pages import PASSWORD, FormClient, sign_in
from .test_records import core_readings

ARTIFACTS = Path(os.environ.get("ENVMON_TEST_ARTIFACTS", "var/test-artifacts"))
ZONE = ZoneInfo("Europe/Berlin")
SENSOR_DIGITS = 2
#: The site's way of writing values: the fridge's temperatures to two digits.
SHOWN = Display(ZONE, {"fridge-1.temperature": SENSOR_DIGITS})
PRINTED = DEFAULT_T0 + timedelta(days=3, hours=4, minutes=5, seconds=6)
HEADINGS = ("Summary", "Trend", "QA assessment", "Electronic signatures", "Timeline")
HOSTILE_WORD = "W" + "unbroken" * 62 + "END"  # 500 characters, no space
#: Words of the long texts: none may be split across lines.
WORDS = ("Temperaturaufzeichnung", "B-0042-ALPHA", "CAPA-2026-0117", "reconciliation")


def rich_record(engine: Engine) -> tuple[RecordDetail, str]:
    """Return a closed record with many comments and long texts (its tables span pages)."""
    clock = FakeClock(DEFAULT_T0)
    record_id, users = stored_excursion(engine, clock)
    qa = users.add("quinn.example", "Quinn Example", "qa", PASSWORD, actor="admin", reason="t")
    life = Lifecycle(engine, users, clock=clock)
    detail = record_detail(engine, record_id)
    assert detail is not None
    v = detail.row_version
    sentence = " ".join(WORDS) + " checked against the logger printout. "
    for n in range(24):
        clock.advance(7 * 60 + 13)
        v = life.comment(record_id, qa, f"Comment {n}: " + sentence * (1 + n % 5), version=v)
    v = life.acknowledge(record_id, qa, "seen", version=v)
    v = life.start_review(record_id, qa, "review", version=v)
    fields = {**ASSESSMENT, "capa_ref": "CAPA-2026-0117", "impact_text": sentence * 20}
    v = life.assess(record_id, qa, fields, "assessment", version=v)
    clock.advance(180)
    sign(
        life.close,
        record_id,
        version=v,
        reason="no impact",
        signer="quinn.example",
        password=PASSWORD,
    )
    found = record_detail(engine, record_id, ZONE)
    assert found is not None
    return ugly_numbers(found), record_id


def ugly_numbers(detail: RecordDetail) -> RecordDetail:
    """Give the record the raw floats the core computes (they must print rounded)."""
    detail.record.update(
        peak=-57.39237443852002,
        limit=-50.0,
        min=-57.39237443852002,
        max=-49.51234,
        time_beyond_limit_s=164.25981966278954,
        integral_beyond_limit=110148167.1125354,
        duration_s=3725.123456,
    )
    at = detail.audit[-1].at
    update = AuditItem(
        10_000, at, "system:records", "update", "peak", "-57.39237443852002", "-58.123456789", None
    )
    return replace(detail, audit=(*detail.audit, update))


def lines_of(page: pypdf.PageObject) -> list[str]:
    """Return a page's text lines, no-break spaces as spaces."""
    return [line.replace("\u00a0", " ") for line in page.extract_text().splitlines()]


def body_lines(page: pypdf.PageObject) -> list[str]:
    """Return a page's lines without the running header and footer (drawn last)."""
    lines = [line for line in lines_of(page) if line.strip()]
    assert re.fullmatch(r"Page \d+ of \d+", lines[-1]), lines[-4:]
    return lines[:-4]


#: The cells of the tables' headers, repeated at the top of a page the table goes on to.
TABLE_HEADS = frozenset(
    ("#", "Time", "User, action, field", "Change and reason", "Event, by", "Detail")
)


def body_text(reader: pypdf.PdfReader) -> str:
    """Return the report's text without running headers, footers and repeated table heads."""
    pages = []
    for page in reader.pages:
        lines = body_lines(page)
        while lines and lines[0].strip() in TABLE_HEADS:
            lines.pop(0)
        pages.append("\n".join(lines))
    return "\n".join(pages)


def render(detail: RecordDetail, name: str, **kwargs: Any) -> pypdf.PdfReader:
    """Write the report into ``ARTIFACTS`` as ``name`` and read it back."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    options: dict[str, Any] = {"site_name": "Plant A", "display": SHOWN, "printed_at": PRINTED}
    write_report(detail, path, **(options | kwargs))
    if shutil.which("pdftoppm"):  # a picture of the first pages, to look at
        stem = str(path.with_suffix(""))
        subprocess.run(["pdftoppm", "-r", "60", "-l", "3", "-png", str(path), stem], check=True)
    return pypdf.PdfReader(path)


@pytest.fixture
def rich(engine: Engine) -> RecordDetail:
    return rich_record(engine)[0]


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_the_report_is_laid_out_for_the_paper(rich: RecordDetail, paper: str) -> None:
    reader = render(rich, f"report-{paper}.pdf", paper=paper)
    width, height = PAGE_SIZES[paper]
    assert len(reader.pages) >= 3
    for page in reader.pages:
        box = page.mediabox
        assert (round(float(box.width)), round(float(box.height))) == (round(width), round(height))
    total = len(reader.pages)
    for number, page in enumerate(reader.pages, 1):
        lines = lines_of(page)
        assert f"Page {number} of {total}" in lines
        assert "Printed 2026-01-08 13:05:06 CET" in lines  # the injected clock, site time
        assert "Plant A" in lines


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_no_token_is_split_across_lines(rich: RecordDetail, paper: str) -> None:
    reader = render(rich, f"report-{paper}-tokens.pdf", paper=paper)
    pages = [lines_of(page) for page in reader.pages]
    text = "\n".join("\n".join(lines) for lines in pages)
    joined = text.replace("\n", "")
    header = [n for n, lines in enumerate(pages) if "Change and reason" in lines]
    assert len(header) >= 2, "the audit trail should span pages (its header repeated)"
    for lines in pages:  # a table's parts follow each other, one head per page
        assert lines.count("Change and reason") <= 1
        assert lines.count("Event, by") <= 1
    record_id = rich.id
    tokens = [
        record_id,
        "quinn.example",
        "system:records",
        "Acknowledge",
        "Start review",
        "Comment",
        "Close",
        "Update",
        "−57.39 °C",
        "−58.12 °C",
        "110,148,167 °C·s",
        "2 min 44 s",
        "1 h 2 min",
        "2026-01-05 09:00:00 CET",
        "2026-01-05 08:00:00 UTC",
        *WORDS,
    ]
    for token in tokens:
        assert token in text, token
        assert text.count(token) == joined.count(token), f"{token!r} is split across lines"
    assert CONTINUED not in text  # no ordinary token was broken


def test_no_heading_ends_a_page(engine: Engine) -> None:
    """Whatever the length of the texts before them, headings stay with what follows."""
    detail = rich_record(engine)[0]
    base = detail.qa["conclusion"]
    ends = set()
    for extra in range(0, 60, 4):  # each a few lines longer: the headings move down the page
        detail.qa["conclusion"] = base + "\nA further line of the conclusion." * extra
        reader = render(detail, "report-headings.pdf")
        labels = {"Impact on products", "Impact products", "Conclusion", "Signature 1 of 1"}
        for page in reader.pages[:-1]:
            last = body_lines(page)[-1]
            ends.add(last)
            assert last not in HEADINGS, f"{last!r} ends a page"
            assert last not in labels, f"{last!r} ends a page"
    assert len(ends) > 3  # the pages ended at different places


def test_values_are_written_by_the_sites_display(rich: RecordDetail) -> None:
    reader = render(rich, "report-values.pdf", chart=None)
    text = "\n".join("\n".join(lines_of(page)) for page in reader.pages)
    flat = " ".join(text.split())
    for raw in ("57.3923", "110148167", "164.259", "3725.12", "-50.0", ".123456"):
        assert raw not in text, raw
    decimals = re.findall(r"\d\.(\d+)", text)
    assert decimals
    assert all(len(d) <= SENSOR_DIGITS for d in decimals), decimals
    assert "Peak −57.39 °C at 2026-01-05" in flat
    assert "Limit −50.00 °C" in flat
    assert "Time beyond limit 2 min 44 s" in flat
    assert "Integral beyond limit 110,148,167 °C·s" in flat
    assert "Duration 1 h 2 min" in flat
    assert "Old: −57.39 °C" in flat
    assert "New: −58.12 °C" in flat
    assert not re.search(r"\d\d:\d\d:\d\d[.,]\d", text), "microseconds"
    assert not re.search(r"\d{4}-\d\d-\d\dT", text), "ISO times"
    dates = re.findall(r"\d{4}-\d\d-\d\d", text)
    times = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:CET|UTC)\b", text)
    assert len(dates) == len(times) > 10  # one format for every time
    assert "Under review" in text
    assert "under_review" not in text
    assert "Peak time" in text
    assert "peak_ts" not in text


def test_the_signature_manifest_and_the_printed_time(rich: RecordDetail) -> None:
    reader = render(rich, "report-signatures.pdf")
    text = "\n".join("\n".join(lines_of(page)) for page in reader.pages)
    flat = " ".join(text.split())
    (signature,) = rich.signatures
    signed = SHOWN.time(signature.signed_at)
    for part in (
        "Printed name Quinn Example",
        "User id quinn.example",
        "Meaning Approved",
        "Action signed Close",
        f"Date and time {signed} {SHOWN.utc(signature.signed_at)}",
        "Covers the current record Yes",
    ):
        assert part in flat, part
    printed = re.findall(r"Printed (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T)", text)
    assert set(printed) == {SHOWN.time(PRINTED)}
    assert datetime.strptime(printed[0][:19], "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=ZONE
    ) >= signature.signed_at.astimezone(ZONE)
    assert "behind the record" not in text


def test_a_report_printed_before_its_last_entry_says_so(rich: RecordDetail) -> None:
    early = rich.signatures[0].signed_at - timedelta(minutes=1)
    reader = render(rich, "report-early.pdf", printed_at=early)
    flat = " ".join(" ".join(lines_of(page)) for page in reader.pages)
    assert "The printing clock" in flat
    assert "is behind the record's last entry" in flat


def test_hostile_input_prints_visibly(rich: RecordDetail) -> None:
    rich.qa["root_cause_text"] = (
        f"start {HOSTILE_WORD} end\n"
        "ESC\x1b[31mred\x1b[0m NUL\x00 BEL\x07 tab\tstop\n"
        "RTL: שלום עולם مرحبا بالعالم\n"
        "bidi \u202eevil\u202c zero\u200bwidth\n"
        "<b>not bold</b> <script>alert(1)</script> &amp; <br/> <para>"
    )
    rich = replace(
        rich,
        signatures=(
            replace(rich.signatures[0], printed_name="Dr. " + HOSTILE_WORD),
            *rich.signatures[1:],
        ),
        audit=(*rich.audit[:-1], replace(rich.audit[-1], reason=HOSTILE_WORD)),
        timeline=(*rich.timeline[:-1], replace(rich.timeline[-1], detail=HOSTILE_WORD)),
    )
    for paper in ("a4", "letter"):
        reader = render(rich, f"report-{paper}-hostile.pdf", paper=paper)
        text = body_text(reader)
        flat = "".join(text.replace(CONTINUED, "").split())
        assert flat.count(HOSTILE_WORD) == 4  # whole, in pieces marked as continued
        for line in text.splitlines():  # only the hostile word is broken
            for word in line.split():
                if CONTINUED in word:
                    assert word.removesuffix(CONTINUED) in HOSTILE_WORD, line
        assert "[U+001B][31mred[U+001B][0m" in flat
        assert "NUL[U+0000]" in flat
        assert "BEL[U+0007]" in flat
        assert "bidi [U+202E]evil[U+202C] zero[U+200B]width" in " ".join(text.split())
        assert "<b>notbold</b><script>alert(1)</script>&amp;<br/><para>" in flat
        if any(Path(font).is_file() for font, _bold in FONT_CANDIDATES):  # else Vera: no Hebrew
            assert "שלום" in text or "םולש" in text


def test_break_token_marks_the_pieces() -> None:
    def measure(text: str) -> float:
        return float(len(text))

    assert break_token("short", 10, measure) == ["short"]
    pieces = break_token("x" * 25, 10, measure)
    assert pieces == ["x" * 9 + CONTINUED, "x" * 9 + CONTINUED, "x" * 7]


def test_columns_are_as_wide_as_their_longest_token() -> None:
    def measure(text: str) -> float:
        return 5.0 * len(text)

    widths = column_widths(
        [["#", "12"], ["Time", "2026-01-05 09:00:00 CET"], ["Text", "a " * 300]],
        500,
        measure,
        flex=2,
        atomic=(1,),
    )
    assert widths[0] >= 5 * 2 + 12
    assert widths[1] >= 5 * 23 + 12
    assert sum(widths) == pytest.approx(500)
    hostile = column_widths([["x" * 400], ["free text"]], 500, measure, flex=1)
    assert hostile[1] >= 500 * 0.25  # the free text keeps its room; the long token breaks


@pytest.fixture
def web(engine: Engine) -> tuple[TestClient, str, FakeClock]:
    clock = FakeClock(DEFAULT_T0 + timedelta(days=2))
    record_id, users = stored_excursion(engine, FakeClock(DEFAULT_T0))
    users.add("vic", "Vic Example", "viewer", PASSWORD, actor="admin", reason="t")
    services = app_services(engine, users, clock, display=SHOWN)
    client = FormClient(create_app(services, site_name="Plant A"))
    sign_in(client, "vic")
    return client, record_id, clock


def test_the_web_report_takes_the_paper_and_the_apps_clock(
    web: tuple[TestClient, str, FakeClock],
) -> None:
    client, record_id, clock = web
    for query, paper in (("", "a4"), ("?paper=a4", "a4"), ("?paper=letter", "letter")):
        r = client.get(f"/excursions/{record_id}/report.pdf{query}")
        assert r.status_code == 200, r.text
        reader = pypdf.PdfReader(io.BytesIO(r.content))
        box = reader.pages[0].mediabox
        assert round(float(box.width)) == round(PAGE_SIZES[paper][0])
        assert f"Printed {SHOWN.time(clock())}" in reader.pages[0].extract_text()
    for bad in ("legal", "A4 ", "<script>", "x" * 5000):
        r = client.get(f"/excursions/{record_id}/report.pdf", params={"paper": bad})
        assert r.status_code == 422
        assert "paper: one of a4, letter" in r.text
        assert "<script>" not in r.text


def test_the_report_command_takes_the_paper(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream.timeseries.sqlite import SqliteTimeSeries

    monkeypatch.setenv("ENVMON_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    series = SqliteTimeSeries(tmp_path / "data" / "timeseries.sqlite3")
    series.write(core_readings())
    series.close()
    record_id = stored_excursion(engine, FakeClock(DEFAULT_T0))[0]
    url = engine.url.render_as_string(hide_password=False)
    out = tmp_path / "letter.pdf"
    runner = CliRunner()
    args = ["excursions", "report", record_id, "-o", str(out), "--db", url]
    result = runner.invoke(app, [*args, "--paper", "letter"])
    assert result.exit_code == 0, result.output
    box = pypdf.PdfReader(out).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (612, 792)
    refused = runner.invoke(app, [*args, "--paper", "legal"])
    assert refused.exit_code == 2
    assert "one of a4, letter" in refused.output
