"""The printable excursion report (PDF, reportlab): record, trend, timeline, signatures, audit.

Every page carries the site name, the record id and "page N of M". The trend chart is the
page's chart (``excursions.trend``, drawn with reportlab graphics from the same geometry);
the timeline lists alarms, notifications, people's actions and signatures in UTC and site
time; signatures show the printed name, meaning, time in UTC and in the site's zone, and
whether they still cover the record's current content.

Every accepted input prints, whatever its length. Long texts — the assessment's fields,
comments and reasons in the timeline, old and new values and reasons in the audit trail —
are paragraphs across the page, not table cells: a paragraph splits at any line, while a
table cell taller than a page raised ``LayoutError`` (and reportlab's ``splitInRow`` slices
a spanned cell at the width of its first column). The remaining tables hold short values
and split inside a row all the same; long unbroken words are broken (``splitLongWords``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final
from xml.sax.saxutils import escape

import orjson
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from envmon.timeutil import utcnow
from excursions.series import TrendResult
from excursions.trend import trend_drawing

MARGIN: Final = 18 * mm
GRID: Final = (
    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
)


def _fit(text: str, width: float, measure: Callable[[str], float]) -> str:
    """Return ``text``, cut with an ellipsis to fit ``width`` (a long site name in a footer)."""
    if measure(text) <= width:
        return text
    while text and measure(text + "…") > width:
        text = text[:-1]
    return text + "…"


class _NumberedCanvas(Canvas):
    """A canvas that knows the page count when it draws each footer ("page N of M")."""

    def __init__(self, *args: Any, header: str = "", **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []
        self._header = header

    def showPage(self) -> None:  # noqa: N802 - reportlab's name
        self._pages.append(dict(self.__dict__))
        self._startPage()  # type: ignore[attr-defined]  # reportlab's numbered-canvas recipe

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self.setFont("Helvetica", 8)
            width, _height = A4
            number = f"page {self.getPageNumber()} of {total}"
            room = width - 2 * MARGIN - self.stringWidth(number) - 6 * mm
            self.drawString(MARGIN, 10 * mm, _fit(self._header, room, self.stringWidth))
            self.drawRightString(width - MARGIN, 10 * mm, number)
            super().showPage()
        super().save()


def _markup(text: object) -> str:
    """Return text as paragraph markup: escaped, its line breaks kept."""
    return escape("" if text is None else str(text)).replace("\n", "<br/>")


def _value(stored: str | None) -> str | None:
    """Return an audit value for reading: a JSON string as its text, anything else as JSON."""
    if stored is None:
        return None
    try:
        decoded = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return stored
    return decoded if isinstance(decoded, str) else stored


def _text(text: str, style: ParagraphStyle, label: str | None = None) -> list[Flowable]:
    """Return a long text as paragraphs, one per line, ``label`` in the left margin.

    Plain paragraphs (no markup, no ``<br/>``) take reportlab's fast path: a label or a
    line break inside would make one 4,000-character comment cost six times as much.
    """
    flowables: list[Flowable] = []
    for line in text.split("\n"):
        if not line.strip():
            flowables.append(Spacer(1, style.leading))
            continue
        bullet = label if not flowables and label else None
        flowables.append(Paragraph(escape(line), style, bulletText=bullet))
    return flowables or [Paragraph("", style, bulletText=label)]


def _cell(text: object, style: ParagraphStyle) -> Paragraph:
    return Paragraph(_markup(text), style)


def _table(rows: list[list[Any]], widths: list[Any]) -> Table:
    """Return a gridded table whose rows split across pages (no cell can be too tall)."""
    return Table(rows, colWidths=widths, style=TableStyle(GRID), repeatRows=1, splitInRow=1)


def _entry(
    head: str, parts: list[tuple[str, object]], styles: tuple[ParagraphStyle, ...]
) -> list[Any]:
    """Return one timeline or audit entry: ``head`` (markup), then each long text.

    The texts are paragraphs across the page, indented, which split at any line.
    """
    first, indented = styles
    story: list[Flowable] = [Paragraph(head, first)]
    for label, value in parts:
        story += _text(str(value), indented, f"{label}:")
    return story


def _timeline(entries: list[dict[str, Any]], styles: tuple[ParagraphStyle, ...]) -> list[Any]:
    """Return the timeline: each event's time, title and who, then its detail."""
    if not entries:
        return [Paragraph("Nothing yet.", styles[0])]
    story: list[Any] = []
    for e in entries:
        head = (
            f"{_markup(e['at'].isoformat(timespec='seconds'))} UTC ({_markup(e['at_site'])})"
            f" · <b>{_markup(e['title'])}</b> · {_markup(e['who'])}"
        )
        story += _entry(head, [("Detail", e["detail"])] if e["detail"] else [], styles)
    return story


def _audit(entries: list[dict[str, Any]], styles: tuple[ParagraphStyle, ...]) -> list[Any]:
    """Return the audit trail: number, time, actor, action, field; old, new and why."""
    story: list[Any] = []
    for e in entries:
        field = f" · field {_markup(e['field'])}" if e["field"] else ""
        head = (
            f"<b>#{e['seq']}</b> · {_markup(e['at'].isoformat(timespec='seconds'))} UTC"
            f" · <b>{_markup(e['actor'])}</b> · {_markup(e['action'])}{field}"
        )
        old, new, why = _value(e["old"]), _value(e["new"]), e["reason"]
        if why is not None and why == new:
            why = "(as the new value: a comment is its own reason)"
        parts = [
            (label, value)
            for label, value in (("Old", old), ("New", new), ("Why", why))
            if value is not None
        ]
        story += _entry(head, parts, styles)
    return story


def write_report(
    detail: dict[str, Any],
    target: Path | BinaryIO,
    *,
    site_name: str,
    chart: TrendResult | None = None,
) -> None:
    """Write the PDF report of one record to a file or a binary stream.

    ``detail`` is ``excursions.queries.record_detail``'s form.
    """
    styles = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=styles["BodyText"], fontSize=8, leading=10)
    label = ParagraphStyle("label", parent=small, fontName="Helvetica-Bold", spaceBefore=4)
    entry = (
        ParagraphStyle("entry", parent=small, spaceBefore=5),
        ParagraphStyle(
            "entry-text",
            parent=small,
            leftIndent=10 * mm,
            bulletIndent=2 * mm,
            bulletFontName="Helvetica-Bold",
            bulletFontSize=small.fontSize,
        ),
    )
    record = detail["record"]
    story: list[Any] = [
        Paragraph(escape(f"Excursion report — {site_name}"), styles["Title"]),
        Paragraph(
            escape(
                f"{detail['parameter']} · {detail['instrument'] or detail['sensor_id']} · "
                f"{detail['area']} — record {detail['id']}"
            ),
            styles["Heading3"],
        ),
        Paragraph(
            escape(
                f"QA state: {detail['qa_state']}; excursion {detail['core_status']}. "
                f"Printed {utcnow().isoformat(timespec='seconds')} (UTC)."
            ),
            styles["BodyText"],
        ),
        Spacer(1, 4 * mm),
        Paragraph("Metrics", styles["Heading2"]),
    ]
    metrics = [
        ("Start (UTC)", record.get("start")),
        ("End (UTC)", record.get("end") or "open"),
        ("Duration (s)", record.get("duration_s")),
        ("Level", detail.get("level")),
        ("Peak", f"{record.get('peak')} {record.get('unit', '')} at {record.get('peak_ts')}"),
        ("Limit", record.get("limit")),
        ("Time beyond limit (s)", record.get("time_beyond_limit_s")),
        ("Integral beyond limit", record.get("integral_beyond_limit")),
    ]
    story.append(
        Table(
            [[_cell(k, small), _cell(v, small)] for k, v in metrics],
            colWidths=[50 * mm, None],
            splitInRow=1,
        )
    )
    story += [Spacer(1, 4 * mm), Paragraph("Trend", styles["Heading2"])]
    if chart is not None and chart.trend is not None:
        width = A4[0] - 2 * MARGIN
        story.append(trend_drawing(chart.trend, width=width, height=width * 0.4))
    else:
        reason = chart.error if chart is not None else "not requested"
        story.append(Paragraph(escape(f"Trend unavailable: {reason}"), styles["BodyText"]))
    story += [Spacer(1, 4 * mm), Paragraph("QA assessment", styles["Heading2"])]
    for name, value in detail["qa"].items():  # paragraphs, not a table: 10,000 characters split
        story += [Paragraph(_markup(name), label), *_text(value or "—", small)]
    story += [Spacer(1, 4 * mm), Paragraph("Electronic signatures", styles["Heading2"])]
    rows = [
        [
            _cell(h, small)
            for h in ("Printed name", "Meaning", "Action", "UTC", "Site time", "Covers")
        ]
    ]
    for s in detail["signatures"]:
        rows.append(
            [
                _cell(s["printed_name"], small),
                _cell(s["meaning"], small),
                _cell(s["action"], small),
                _cell(s["signed_at"].isoformat(timespec="seconds"), small),
                _cell(f"{s['signed_at_site']} ({s['site_timezone']})", small),
                _cell(_covers(s), small),
            ]
        )
    if len(rows) == 1:
        rows.append([_cell("none", small)] + [_cell("", small)] * 5)
    story.append(_table(rows, [38 * mm, 18 * mm, 14 * mm, 36 * mm, 46 * mm, None]))
    story += [Spacer(1, 4 * mm), Paragraph("Timeline", styles["Heading2"])]
    story += _timeline(list(detail.get("timeline", ())), entry)
    story += [Spacer(1, 4 * mm), Paragraph("Audit trail", styles["Heading2"])]
    story += _audit(detail["audit"], entry)
    header = f"{site_name} · excursion {detail['id']}"
    document = SimpleDocTemplate(
        str(target) if isinstance(target, Path) else target,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=f"Excursion {detail['id']}",
        author=site_name,
    )
    document.build(story, canvasmaker=lambda *a, **k: _NumberedCanvas(*a, header=header, **k))


def _covers(signature: dict[str, Any]) -> str:
    """Say whether a signature still covers the record (and why not)."""
    if signature["covers_current_content"]:
        return "yes"
    if not signature.get("matches_audit_trail", True):
        return "no — does not match its audit-trail entry (altered outside the application)"
    return "no — changed since signing"
