"""The trend chart as an inline SVG for the record page (no script, no style, for a strict CSP)."""

from __future__ import annotations

from typing import Final
from xml.sax.saxutils import escape, quoteattr

from excursions.trend.layout import (
    CircleMark,
    LineMark,
    Mark,
    PlotArea,
    PolyMark,
    RectMark,
    chart_marks,
)
from excursions.trend.model import Trend

SVG_FONT_SIZE: Final = 12.0
#: The PDF's Helvetica first, so the measured widths agree.
FONT_FAMILY: Final = "Helvetica, Arial, sans-serif"


def _n(value: float) -> str:
    """Format a coordinate compactly (hundredths are far below a pixel)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _svg_mark(mark: Mark, height: float) -> str:
    """Return one mark as an SVG element (y flipped: SVG's y grows downward)."""
    ident = f" id={quoteattr(mark.ident)}" if mark.ident else ""
    css = f"class={quoteattr(mark.css)}{ident}"
    if isinstance(mark, RectMark):
        return (
            f'<rect {css} x="{_n(mark.x)}" y="{_n(height - mark.y - mark.h)}" '
            f'width="{_n(mark.w)}" height="{_n(mark.h)}" fill="{mark.fill}"/>'
        )
    if isinstance(mark, LineMark):
        dash = f' stroke-dasharray="{" ".join(_n(d) for d in mark.dash)}"' if mark.dash else ""
        return (
            f'<line {css} x1="{_n(mark.x1)}" y1="{_n(height - mark.y1)}" x2="{_n(mark.x2)}" '
            f'y2="{_n(height - mark.y2)}" stroke="{mark.stroke}" '
            f'stroke-width="{_n(mark.width)}"{dash}/>'
        )
    if isinstance(mark, PolyMark):
        points = " ".join(f"{_n(x)},{_n(height - y)}" for x, y in mark.points)
        return (
            f'<polyline {css} points="{points}" fill="none" stroke="{mark.stroke}" '
            f'stroke-width="{_n(mark.width)}" stroke-linejoin="round"/>'
        )
    if isinstance(mark, CircleMark):
        return (
            f'<circle {css} cx="{_n(mark.cx)}" cy="{_n(height - mark.cy)}" r="{_n(mark.r)}" '
            f'fill="{mark.fill or "none"}" stroke="{mark.stroke}" '
            f'stroke-width="{_n(mark.width)}"/>'
        )
    weight = ' font-weight="bold"' if mark.bold else ""
    return (
        f'<text {css} x="{_n(mark.x)}" y="{_n(height - mark.y)}" '
        f'font-size="{_n(mark.size)}" text-anchor="{mark.anchor}" '
        f'fill="{mark.fill}"{weight}>{escape(mark.text)}</text>'
    )


def trend_svg(trend: Trend, *, width: int = 860, height: int = 300) -> str:
    """Return the chart as a self-contained inline ``<svg>`` element (``id="trend"``).

    Accessible (``role="img"``, ``<title>`` and ``<desc>``), scalable (``viewBox``, as wide
    as its container), every text escaped; no script, no external resource and no style,
    for a strict CSP.
    """
    area = PlotArea.of(trend, width, height, font_size=SVG_FONT_SIZE)
    body = "\n".join(_svg_mark(mark, height) for mark in chart_marks(area))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="trend" class="trend" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'font-family={quoteattr(FONT_FAMILY)} aria-labelledby="trend-title trend-desc">\n'
        f'<title id="trend-title">{escape(trend.title)}</title>\n'
        f'<desc id="trend-desc">{escape(" ".join(filter(None, (trend.caption, trend.note))))}'
        f"</desc>\n{body}\n</svg>"
    )
