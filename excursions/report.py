"""The printable excursion report (PDF, reportlab): record, trend, timeline, signatures, audit.

Every page carries the site name, the record id and "page N of M". The trend chart is the
page's chart (``excursions.trend``, drawn with reportlab graphics from the same geometry);
the timeline lists alarms, notifications, people's actions and signatures in UTC and site
time; signatures show the printed name, meaning, time in UTC and in the site's zone, and
whether they still cover the record's current content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, Final
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from envmon.timeutil import utcnow
from excursions.series import TrendResult
from excursions.trend import trend_drawing

MARGIN: Final = 18 * mm


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
            self.drawString(MARGIN, 10 * mm, self._header)
            self.drawRightString(width - MARGIN, 10 * mm, f"page {self.getPageNumber()} of {total}")
            super().showPage()
        super().save()


def _cell(text: object, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape("" if text is None else str(text)), style)


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
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
        ]
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
        Table([[_cell(k, small), _cell(v, small)] for k, v in metrics], colWidths=[50 * mm, None])
    )
    story += [Spacer(1, 4 * mm), Paragraph("Trend", styles["Heading2"])]
    if chart is not None and chart.trend is not None:
        width = A4[0] - 2 * MARGIN
        story.append(trend_drawing(chart.trend, width=width, height=width * 0.4))
    else:
        reason = chart.error if chart is not None else "not requested"
        story.append(Paragraph(escape(f"Trend unavailable: {reason}"), styles["BodyText"]))
    story += [Spacer(1, 4 * mm), Paragraph("QA assessment", styles["Heading2"])]
    story.append(
        Table(
            [[_cell(k, small), _cell(v, small)] for k, v in detail["qa"].items()],
            colWidths=[50 * mm, None],
        )
    )
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
                _cell(
                    "yes" if s["covers_current_content"] else "no — changed since signing",
                    small,
                ),
            ]
        )
    if len(rows) == 1:
        rows.append([_cell("none", small)] + [_cell("", small)] * 5)
    widths = [38 * mm, 18 * mm, 14 * mm, 36 * mm, 46 * mm, None]
    story.append(Table(rows, style=grid, repeatRows=1, colWidths=widths))
    story += [Spacer(1, 4 * mm), Paragraph("Timeline", styles["Heading2"])]
    timeline = [[_cell(h, small) for h in ("UTC", "Site time", "What", "Who", "Detail")]]
    for e in detail.get("timeline", ()):
        timeline.append(
            [
                _cell(e["at"].isoformat(timespec="seconds"), small),
                _cell(e["at_site"], small),
                _cell(e["title"], small),
                _cell(e["who"], small),
                _cell(e["detail"], small),
            ]
        )
    if len(timeline) == 1:
        timeline.append([_cell("none", small)] + [_cell("", small)] * 4)
    story.append(
        Table(
            timeline,
            style=grid,
            repeatRows=1,
            colWidths=[30 * mm, 30 * mm, 36 * mm, 28 * mm, None],
        )
    )
    story += [Spacer(1, 4 * mm), Paragraph("Audit trail", styles["Heading2"])]
    audit = [
        [_cell(h, small) for h in ("#", "When (UTC)", "Who", "What", "Field", "Old", "New", "Why")]
    ]
    for e in detail["audit"]:
        audit.append(
            [
                _cell(e["seq"], small),
                _cell(e["at"].isoformat(timespec="seconds"), small),
                _cell(e["actor"], small),
                _cell(e["action"], small),
                _cell(e["field"], small),
                _cell(e["old"], small),
                _cell(e["new"], small),
                _cell(e["reason"], small),
            ]
        )
    story.append(
        Table(
            audit,
            style=grid,
            repeatRows=1,
            colWidths=[9 * mm, 28 * mm, 27 * mm, 20 * mm, 28 * mm, 20 * mm, 20 * mm, None],
        )
    )
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
