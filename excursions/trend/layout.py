"""Where a ``Trend`` is drawn: the ``PlotArea`` of a rendering and the marks both renderers draw.

``chart_marks`` lays a trend out, back to front, as rectangles, lines, polylines, circles
and texts in the plot area's coordinates (y upward, as in PDF); ``excursions.trend.svg``
and ``excursions.trend.pdf`` translate the same marks, so the two renderings agree. Texts
are measured with the PDF's Helvetica metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from excursions.trend.model import (
    ACTION_COLOUR,
    ALERT_COLOUR,
    AXIS_COLOUR,
    BACKGROUND,
    BAD_QUALITY_COLOUR,
    EMPTY_TEXT,
    EXCURSION_FILL,
    GAP_FILL,
    GRID_COLOUR,
    MARK_STYLE,
    PEAK_COLOUR,
    SERIES_COLOUR,
    TEXT_COLOUR,
    LegendEntry,
    LimitLine,
    PeakMark,
    Span,
    Trend,
)

#: The font texts are measured and printed in (the SVG names it first, so widths agree).
PDF_FONT: Final = "Helvetica"


def text_width(text: str, size: float) -> float:
    """Return the width of ``text`` set in ``PDF_FONT`` at ``size`` (reportlab's metrics).

    reportlab is imported on the first measurement, not with this module.
    """
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return float(stringWidth(text, PDF_FONT, size))


@dataclass(frozen=True, slots=True)
class PlotArea:
    """Where a rendering of ``width`` × ``height`` puts the data; y grows upward (as in PDF).

    Margins follow the font size: the title and the span's label above, value labels left,
    and below the time labels, the legend (as many rows as it needs), the caption, the
    decimation note and where the limits come from.
    """

    trend: Trend
    width: float
    height: float
    font_size: float
    left: float
    bottom: float
    right: float
    top: float

    @classmethod
    def of(cls, trend: Trend, width: float, height: float, *, font_size: float) -> PlotArea:
        """Lay out the plot area of ``trend`` in a rendering of the given size."""
        rows = len(_legend_rows(trend, width, font_size))
        notes = sum(1 for text in (trend.note, trend.limits_note) if text)
        lines_below = 1.5 + 1.3 * (1 + rows + notes)
        left, right = font_size * 5.5, width - font_size * 1.5
        bottom, top = font_size * (lines_below + 0.3), height - font_size * 3.2
        if right - left < font_size * 4 or top - bottom < font_size * 2:
            raise ValueError(f"a trend chart does not fit in {width} × {height}")
        return cls(trend, width, height, font_size, left, bottom, right, top)

    def x(self, ts: datetime) -> float:
        """Return the horizontal position of ``ts``."""
        return self.left + self.trend.x_fraction(ts) * (self.right - self.left)

    def y(self, value: float) -> float:
        """Return the vertical position of ``value`` (from the bottom)."""
        return self.bottom + self.trend.y_fraction(value) * (self.top - self.bottom)


# The marks both renderers translate: positions are PlotArea's (y upward), ``css`` is the
# SVG class, ``ident`` an optional SVG id.


@dataclass(frozen=True, slots=True)
class RectMark:
    """A filled rectangle (``x``, ``y``: its lower left corner)."""

    css: str
    x: float
    y: float
    w: float
    h: float
    fill: str
    ident: str = ""


@dataclass(frozen=True, slots=True)
class LineMark:
    """A straight line, optionally dashed."""

    css: str
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str
    width: float = 1.0
    dash: tuple[float, ...] = ()
    ident: str = ""


@dataclass(frozen=True, slots=True)
class PolyMark:
    """A polyline (a run of the series)."""

    css: str
    points: tuple[tuple[float, float], ...]
    stroke: str
    width: float
    ident: str = ""


@dataclass(frozen=True, slots=True)
class CircleMark:
    """A circle, filled or not."""

    css: str
    cx: float
    cy: float
    r: float
    stroke: str
    fill: str | None
    width: float = 1.0
    ident: str = ""


@dataclass(frozen=True, slots=True)
class TextMark:
    """A text at a baseline point, anchored at its start, middle or end."""

    css: str
    x: float
    y: float
    text: str
    size: float
    anchor: Literal["start", "middle", "end"] = "start"
    fill: str = TEXT_COLOUR
    bold: bool = False
    ident: str = ""


Mark = RectMark | LineMark | PolyMark | CircleMark | TextMark


def chart_marks(area: PlotArea) -> list[Mark]:
    """Lay the trend out as marks, back to front."""
    trend, font = area.trend, area.font_size
    marks: list[Mark] = [
        RectMark("background", 0, 0, area.width, area.height, BACKGROUND),
        TextMark("title", area.left, area.height - font * 1.4, trend.title, font, bold=True),
    ]
    if trend.span is not None:
        marks += _span_marks(area, trend.span)
    marks += _axis_marks(area)
    marks += _event_line_marks(area)
    for limit in trend.limits:
        marks += _limit_marks(area, limit)
    marks += _series_marks(area)
    if trend.peak is not None:
        marks += _peak_marks(area, trend.peak)
    marks += _limit_label_marks(area)
    marks += _event_label_marks(area)
    if trend.empty:
        centre = ((area.left + area.right) / 2, (area.bottom + area.top) / 2)
        marks.append(
            TextMark("empty", *centre, EMPTY_TEXT, font, "middle", AXIS_COLOUR, ident="trend-empty")
        )
    line_y = area.bottom - font * 2.7
    for row in _legend_rows(trend, area.width, font):
        marks += _legend_marks(area, row, line_y)
        line_y -= font * 1.3
    for css, text in (
        ("caption", trend.caption),
        ("note", trend.note),
        ("note", trend.limits_note),
    ):
        if text:
            marks.append(TextMark(css, area.left, line_y, text, font * 0.85))
            line_y -= font * 1.3
    return marks


def spread(wanted: Sequence[float], gap: float, low: float, high: float) -> list[float]:
    """Return positions near ``wanted`` at least ``gap`` apart, inside ``[low, high]``.

    Labels of lines that are close are stacked rather than drawn over each other: taken
    in order, each is pushed past the one before it, and the stack is then shifted back
    inside the bounds (if it fits; if not, it starts at ``low``). The order is kept.
    """
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed: dict[int, float] = {}
    previous = -math.inf
    for i in order:
        placed[i] = max(min(max(wanted[i], low), high), previous + gap)
        previous = placed[i]
    if order and placed[order[-1]] > high:
        shift = placed[order[-1]] - high
        floor = low
        for i in order:  # shift the stack down, as far as its bottom allows
            placed[i] = max(placed[i] - shift, floor)
            floor = placed[i] + gap
    return [placed[i] for i in range(len(wanted))]


def limit_label_positions(area: PlotArea) -> list[float]:
    """Return the baseline of each limit's label (in ``trend.limits`` order).

    A label sits just above its line (a low limit's just below), at the plot's right
    edge; labels of close limits are stacked so they never overlap.
    """
    small = area.font_size * 0.85
    wanted = [
        area.y(line.value) + (small * 0.35 if line.side == "high" else -small * 1.05)
        for line in area.trend.limits
    ]
    return spread(wanted, small * 1.25, area.bottom + small * 0.3, area.top - small * 1.05)


def _limit_label_marks(area: PlotArea) -> list[Mark]:
    """Write the limits' labels at the right edge on a light backing, stacked when close."""
    small = area.font_size * 0.85
    marks: list[Mark] = []
    for limit, y in zip(area.trend.limits, limit_label_positions(area), strict=True):
        colour = ACTION_COLOUR if limit.kind == "action" else ALERT_COLOUR
        width = text_width(limit.label, small)
        x = area.right - 3
        marks.append(
            RectMark(
                "label-backing", x - width - 2, y - small * 0.25, width + 4, small * 1.2, BACKGROUND
            )
        )
        marks.append(TextMark(f"limit-label {limit.kind}", x, y, limit.label, small, "end", colour))
    return marks


def _event_line_marks(area: PlotArea) -> list[Mark]:
    """Draw each moment (limit crossed, level reached, gap events) as a vertical line."""
    marks: list[Mark] = []
    for mark in area.trend.marks:
        colour, dash = MARK_STYLE[mark.kind]
        x = area.x(mark.ts)
        ident = f"trend-mark-{mark.kind}"
        marks.append(
            LineMark(f"mark {mark.kind}", x, area.bottom, x, area.top, colour, 1.25, dash, ident)
        )
    return marks


def event_label_positions(area: PlotArea) -> list[tuple[float, float, Literal["start", "end"]]]:
    """Return where each moment's short label goes: ``(x, baseline, anchor)``.

    Labels hang from the top of the plot beside their line (to its left near the right
    edge); one that would run into the label before it goes one row lower.
    """
    small = area.font_size * 0.8
    rows: list[float] = []  # the right end of the last label in each row
    placed: list[tuple[float, float, Literal["start", "end"]]] = []
    for mark in area.trend.marks:
        x = area.x(mark.ts)
        width = text_width(mark.short, small)
        anchor: Literal["start", "end"] = "start" if x + width + 3 <= area.right else "end"
        begin = x + 3 if anchor == "start" else x - 3 - width
        row = next((i for i, end in enumerate(rows) if begin >= end + small * 0.5), len(rows))
        if row == len(rows):
            rows.append(0.0)
        rows[row] = begin + width
        placed.append(
            (x + 3 if anchor == "start" else x - 3, area.top - small * (1.1 + 1.15 * row), anchor)
        )
    return placed


def _event_label_marks(area: PlotArea) -> list[Mark]:
    """Write each moment's short name beside its line, at the top of the plot."""
    small = area.font_size * 0.8
    marks: list[Mark] = []
    for mark, (x, y, anchor) in zip(area.trend.marks, event_label_positions(area), strict=True):
        colour, _dash = MARK_STYLE[mark.kind]
        marks.append(TextMark(f"mark-label {mark.kind}", x, y, mark.short, small, anchor, colour))
    return marks


def _legend_rows(trend: Trend, width: float, font_size: float) -> list[list[LegendEntry]]:
    """Break the legend into rows that fit the width (a swatch and a gap before each text)."""
    small = font_size * 0.85
    room = width - font_size * 7
    rows: list[list[LegendEntry]] = []
    used = math.inf
    for entry in trend.legend:
        need = small * 2.6 + text_width(entry.text, small)
        if used + need > room:
            rows.append([])
            used = 0.0
        rows[-1].append(entry)
        used += need
    return rows


def _legend_marks(area: PlotArea, row: Sequence[LegendEntry], y: float) -> list[Mark]:
    """Draw one legend row: each entry's swatch, as on the plot, and its meaning."""
    small = area.font_size * 0.85
    x = area.left
    mid = y + small * 0.3
    marks: list[Mark] = []
    for entry in row:
        swatch = x + small * 1.4
        kind = entry.kind
        if kind in ("excursion", "data_gap"):
            fill = GAP_FILL if kind == "data_gap" else EXCURSION_FILL
            marks.append(
                RectMark("legend-swatch", x, y - small * 0.1, small * 1.4, small * 0.9, fill)
            )
        elif kind.startswith("limit-"):
            action = kind == "limit-action"
            colour = ACTION_COLOUR if action else ALERT_COLOUR
            pattern: tuple[float, ...] = () if action else (6.0, 3.0)
            marks.append(LineMark("legend-swatch", x, mid, swatch, mid, colour, 1.25, pattern))
        elif kind.startswith("mark-"):
            colour, dash = MARK_STYLE[kind.removeprefix("mark-")]
            top, bottom, centre = y + small * 0.95, y - small * 0.2, x + small * 0.7
            marks.append(LineMark("legend-swatch", centre, bottom, centre, top, colour, 1.25, dash))
        elif kind == "peak":
            marks.append(
                CircleMark(
                    "legend-swatch", x + small * 0.7, mid, small * 0.4, PEAK_COLOUR, None, 1.5
                )
            )
        else:
            arm = small * 0.3
            cx = x + small * 0.7
            marks.append(
                LineMark(
                    "legend-swatch", cx - arm, mid - arm, cx + arm, mid + arm, BAD_QUALITY_COLOUR
                )
            )
            marks.append(
                LineMark(
                    "legend-swatch", cx - arm, mid + arm, cx + arm, mid - arm, BAD_QUALITY_COLOUR
                )
            )
        marks.append(TextMark("legend", swatch + small * 0.4, y, entry.text, small))
        x = swatch + small * 1.2 + text_width(entry.text, small) + small * 0.8
    return marks


def _span_marks(area: PlotArea, span: Span) -> list[Mark]:
    """Shade the excursion (light red) or data gap (light grey), labelled above the plot."""
    x1, x2 = area.x(span.start), area.x(span.end)
    fill, css = (
        (GAP_FILL, "gap-span") if span.kind == "data_gap" else (EXCURSION_FILL, "excursion-span")
    )
    height = area.top - area.bottom
    return [
        RectMark(css, x1, area.bottom, x2 - x1, height, fill, ident="trend-span"),
        TextMark(
            "span-label", x1, area.top + area.font_size * 0.35, span.label, area.font_size * 0.85
        ),
    ]


def _axis_marks(area: PlotArea) -> list[Mark]:
    """Draw the grid, the axes and the tick labels (time labels that would overlap left out)."""
    trend, small = area.trend, area.font_size * 0.85
    left, right, bottom, top = area.left, area.right, area.bottom, area.top
    marks: list[Mark] = []
    for value_tick in trend.value_ticks:
        y = area.y(value_tick.value)
        marks.append(LineMark("grid", left, y, right, y, GRID_COLOUR, 0.5))
        label = value_tick.label
        marks.append(TextMark("tick-label y", left - 4, y - small * 0.35, label, small, "end"))
    free_from = 0.0  # a label starting left of this would overlap the previous one
    for time_tick in trend.time_ticks:
        x = area.x(time_tick.ts)
        marks.append(LineMark("grid", x, bottom, x, top, GRID_COLOUR, 0.5))
        marks.append(LineMark("tick x", x, bottom, x, bottom - 4, AXIS_COLOUR, 0.75))
        half = text_width(time_tick.label, small) / 2
        centre = min(max(x, half), area.width - half)  # kept inside the canvas
        if centre - half >= free_from:
            label_y = bottom - small * 1.3
            marks.append(
                TextMark("tick-label x", centre, label_y, time_tick.label, small, "middle")
            )
            free_from = centre + half + small
    marks.append(LineMark("axis x", left, bottom, right, bottom, AXIS_COLOUR, 0.75))
    marks.append(LineMark("axis y", left, bottom, left, top, AXIS_COLOUR, 0.75))
    return marks


def _limit_marks(area: PlotArea, limit: LimitLine) -> list[Mark]:
    """Draw a limit line (action solid red, alert dashed amber); its label comes later."""
    y = area.y(limit.value)
    colour = ACTION_COLOUR if limit.kind == "action" else ALERT_COLOUR
    dash = () if limit.kind == "action" else (6.0, 3.0)  # told apart by more than colour
    ident = f"trend-limit-{limit.kind}-{limit.side}"
    return [LineMark(f"limit {limit.kind}", area.left, y, area.right, y, colour, 1.25, dash, ident)]


def _series_marks(area: PlotArea) -> list[Mark]:
    """Draw each run as a polyline (a lone point as a dot) and bad readings as crosses."""
    trend, bottom, top = area.trend, area.bottom, area.top
    marks: list[Mark] = []
    for run in trend.runs:
        points = tuple((area.x(p.ts), area.y(p.value)) for p in run)
        if len(points) == 1:
            ((x, y),) = points
            marks.append(CircleMark("series-point", x, y, 1.5, SERIES_COLOUR, SERIES_COLOUR))
        else:
            marks.append(PolyMark("series", points, SERIES_COLOUR, 1.25))
    arm = area.font_size * 0.3
    for bad in trend.bad_quality:
        # Out of range or without a value: on the plot's edge, never outside it.
        fraction = 0.0 if bad.value is None else trend.y_fraction(bad.value)
        x, y = area.x(bad.ts), bottom + min(max(fraction, 0.0), 1.0) * (top - bottom)
        marks.append(
            LineMark("bad-quality", x - arm, y - arm, x + arm, y + arm, BAD_QUALITY_COLOUR)
        )
        marks.append(
            LineMark("bad-quality", x - arm, y + arm, x + arm, y - arm, BAD_QUALITY_COLOUR)
        )
    return marks


def _peak_marks(area: PlotArea, peak: PeakMark) -> list[Mark]:
    """Ring the peak and label it, on whichever side leaves the label inside the plot."""
    trend, font = area.trend, area.font_size
    x, y = area.x(peak.ts), area.y(peak.value)
    anchor: Literal["start", "end"] = "start" if trend.x_fraction(peak.ts) < 0.7 else "end"
    dx = font * 0.6 if anchor == "start" else -font * 0.6
    label_y = y + font * 0.5 if trend.y_fraction(peak.value) < 0.85 else y - font
    return [
        CircleMark("peak", x, y, font * 0.35, PEAK_COLOUR, None, 1.5, "trend-peak"),
        TextMark("peak-label", x + dx, label_y, peak.label, font * 0.85, anchor, PEAK_COLOUR),
    ]
