"""The trend chart as a reportlab ``Drawing`` for the PDF report (the only reportlab user here)."""

from __future__ import annotations

from typing import Final

from reportlab.graphics.shapes import Circle, Drawing, Line, PolyLine, Rect, String
from reportlab.lib.colors import HexColor

from excursions.trend.layout import (
    PDF_FONT,
    CircleMark,
    LineMark,
    Mark,
    PlotArea,
    PolyMark,
    RectMark,
    chart_marks,
)
from excursions.trend.model import Trend

PDF_FONT_SIZE: Final = 7.5
PDF_BOLD_FONT: Final = "Helvetica-Bold"


def _pdf_shape(mark: Mark) -> Rect | Line | PolyLine | Circle | String:
    """Return one mark as a reportlab shape."""
    if isinstance(mark, RectMark):
        rect = Rect(mark.x, mark.y, mark.w, mark.h)
        rect.fillColor, rect.strokeColor = (
            HexColor(mark.fill),
            None,
        )  # (the stub's kwargs are wrong)
        return rect
    if isinstance(mark, LineMark):
        line = Line(
            mark.x1,
            mark.y1,
            mark.x2,
            mark.y2,
            strokeColor=HexColor(mark.stroke),
            strokeWidth=mark.width,
        )
        if mark.dash:
            line.strokeDashArray = list(mark.dash)
        return line
    if isinstance(mark, PolyMark):
        return PolyLine(
            [c for point in mark.points for c in point],
            strokeColor=HexColor(mark.stroke),
            strokeWidth=mark.width,
            strokeLineJoin=1,
        )
    if isinstance(mark, CircleMark):
        return Circle(
            mark.cx,
            mark.cy,
            mark.r,
            strokeColor=HexColor(mark.stroke),
            strokeWidth=mark.width,
            fillColor=None if mark.fill is None else HexColor(mark.fill),
        )
    return String(
        mark.x,
        mark.y,
        mark.text,
        fontName=PDF_BOLD_FONT if mark.bold else PDF_FONT,
        fontSize=mark.size,
        fillColor=HexColor(mark.fill),
        textAnchor=mark.anchor,
    )


def trend_drawing(trend: Trend, *, width: float, height: float) -> Drawing:
    """Return the chart as a reportlab ``Drawing`` (a platypus flowable) for the PDF report."""
    area = PlotArea.of(trend, width, height, font_size=PDF_FONT_SIZE)
    return Drawing(width, height, *(_pdf_shape(mark) for mark in chart_marks(area)))
