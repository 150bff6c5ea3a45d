"""The printable record report (PDF, reportlab): summary, trend, assessment, signatures, trail.

``write_report`` lays one excursion or data-gap record out on A4 or US Letter as a
controlled document: a running header (site, printed time) and footer (record, "Page N of
M") on every page; every value, limit, duration and time written by the site's
``envmon.display.Display`` (rounded per sensor with its unit, times in the site's zone with
the zone named, the audit trail with UTC beneath); a signature manifest (printed name, user
id, meaning, date and time with the zone); the timeline and the audit trail as tables.

Layout rules: a heading is kept with what follows it; a table's columns are as wide as
their longest unbreakable token (a word, a number, an id, a whole timestamp), the free
text column takes the rest and wraps at spaces only. A token wider than its column
(hostile input: a 500-character word) is broken deliberately, each piece ending in
``CONTINUED`` — ordinary tokens are never split. Control and format characters (bidi
overrides, zero-width marks) print as ``[U+XXXX]``, so nothing in a record is invisible or
reorders the text around it. Every accepted input prints, whatever its length: a long text
in a table goes on in further rows, and the table splits between rows across pages.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, get_args
from xml.sax.saxutils import escape

import orjson
import reportlab
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from envmon.display import Display, format_value, unit_label
from excursions.queries import RecordDetail, SignatureItem
from excursions.series import TrendResult
from excursions.trend.pdf import trend_drawing

#: The paper sizes a report is laid out for.
Paper = Literal["a4", "letter"]
PAPERS: Final[tuple[str, ...]] = get_args(Paper)
PAGE_SIZES: Final = {"a4": A4, "letter": LETTER}

MARGIN: Final = 18 * mm
TOP: Final = 24 * mm  # room for the running header
BOTTOM: Final = 20 * mm  # room for the running footer
#: Ends each piece of a token too wide for its column.
CONTINUED: Final = "¬"
#: The tallest piece of a long text in one table row (points, about 12 lines).
CHUNK: Final = 120.0
#: A cell's padding on either side, and the page frame's (reportlab's defaults).
PAD: Final = 6.0
FRAME_PAD: Final = 6.0
#: The free-text column of a table takes at least this share of the width, unless the
#: other columns' tokens need more; then at least ``MIN_FLEX``.
FLEX_SHARE: Final = 0.4
MIN_FLEX: Final = 0.25
#: A short column takes at most this share of the width (longer tokens are broken).
CAP_SHARE: Final = 0.3

#: Fonts with the glyphs people's names and texts need (DejaVu where the system has it),
#: else reportlab's own Vera.
FONT_CANDIDATES: Final = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
)
FONT: Final = "EnvmonSans"
BOLD: Final = "EnvmonSans-Bold"

#: Core fields whose audit values are times, durations or values in the record's unit.
TIME_FIELDS: Final = frozenset({"start", "end", "peak_ts"})
DURATION_FIELDS: Final = frozenset({"duration_s", "time_beyond_limit_s"})
VALUE_FIELDS: Final = frozenset({"peak", "limit", "min", "max"})
LABEL_FIELDS: Final = frozenset({"qa_state", "core_status", "level", "root_cause_category"})


@cache
def fonts() -> tuple[str, str]:
    """Register the report's regular and bold fonts once; return their names."""
    regular = bold = ""
    for path, bold_name in FONT_CANDIDATES:
        if Path(path).is_file() and (Path(path).parent / bold_name).is_file():
            regular, bold = path, str(Path(path).parent / bold_name)
            break
    else:
        here = Path(reportlab.__file__).parent / "fonts"
        regular, bold = str(here / "Vera.ttf"), str(here / "VeraBd.ttf")
    pdfmetrics.registerFont(TTFont(FONT, regular))
    pdfmetrics.registerFont(TTFont(BOLD, bold))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=FONT, boldItalic=BOLD)
    return FONT, BOLD


def clean(text: object) -> str:
    """Return text with control and format characters shown as ``[U+XXXX]`` (tabs as spaces).

    Line breaks stay. Bidi overrides, zero-width marks and escape sequences would otherwise
    hide or reorder what a record says.
    """
    out: list[str] = []
    for ch in "" if text is None else str(text):
        if ch == "\n":
            out.append(ch)
        elif ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(f"[U+{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def _measure(font: str, size: float) -> Callable[[str], float]:
    return lambda text: pdfmetrics.stringWidth(text, font, size)


def break_token(token: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Return a token as pieces that fit ``width``, each but the last ending in ``CONTINUED``.

    A token that fits is returned whole.
    """
    if measure(token) <= width:
        return [token]
    room = max(width - measure(CONTINUED), measure("W"))
    pieces: list[str] = []
    start, used = 0, 0.0
    for i, ch in enumerate(token):
        w = measure(ch)
        if used + w > room and i > start:
            pieces.append(token[start:i] + CONTINUED)
            start, used = i, 0.0
        used += w
    pieces.append(token[start:])
    return pieces


def wrap_words(line: str, width: float, measure: Callable[[str], float]) -> str:
    """Return a line with every token wider than ``width`` broken (``break_token``)."""
    return " ".join(" ".join(break_token(word, width, measure)) for word in line.split(" ") if word)


def _paragraphs(text: object, style: ParagraphStyle, width: float) -> list[Flowable]:
    """Return text as paragraphs ``width`` wide, one per line, wrapping at spaces only.

    Plain paragraphs (no markup, no ``<br/>``) take reportlab's fast path.
    """
    measure = _measure(style.fontName, style.fontSize)
    room = width - style.leftIndent - style.rightIndent
    flowables: list[Flowable] = []
    for line in clean(text).split("\n"):
        if not line.strip():
            flowables.append(Spacer(1, style.leading / 2))
            continue
        flowables.append(Paragraph(escape(wrap_words(line, room, measure)), style))
    return flowables or [Paragraph("", style)]


def _tokens_width(text: str, measure: Callable[[str], float], atomic: bool) -> float:
    """Return the width of a text's widest line (``atomic``) or widest token.

    Tokens are split at spaces and line breaks only: a no-break space joins.
    """
    if atomic:
        return max((measure(line) for line in text.split("\n")), default=0.0)
    return max((measure(word) for word in text.replace("\n", " ").split(" ")), default=0.0)


def nobreak(text: str) -> str:
    """Return a formatted value, time or duration that never wraps (``10.0 °C``)."""
    return text.replace(" ", "\u00a0")


def column_widths(
    columns: Sequence[Sequence[str]],
    available: float,
    measure: Callable[[str], float],
    *,
    flex: int,
    atomic: Iterable[int] = (),
) -> list[float]:
    """Return widths for a table's columns of texts (``columns[i]``: column i's cells).

    Each column but ``flex`` is as wide as its longest unbreakable token (of ``atomic``
    columns: its longest line, a timestamp) and, where there is room, its longest line; the
    ``flex`` column (free text) takes the rest: ``FLEX_SHARE`` of the width or more where
    the others' tokens leave it, never less than ``MIN_FLEX`` (then the others shrink and
    their tokens are broken). A column whose token would take more than ``CAP_SHARE`` of
    the width is capped (the token is broken).
    """
    fixed = set(atomic)
    need = [
        min(
            max((_tokens_width(t, measure, i in fixed) for t in cells), default=0.0) + 2 * PAD,
            available * CAP_SHARE,
        )
        for i, cells in enumerate(columns)
    ]
    want = [
        max(n, max((_tokens_width(t, measure, True) for t in cells), default=0.0) + 2 * PAD)
        for n, cells in zip(need, columns, strict=True)
    ]
    need[flex] = want[flex] = 0.0
    short = sum(need)
    if available - short < available * MIN_FLEX:  # hostile: tokens too wide, scale down
        need = [n * available * (1 - MIN_FLEX) / short for n in need]
    extra = max(0.0, available * (1 - FLEX_SHARE) - sum(need))
    more = sum(w - n for w, n in zip(want, need, strict=True))
    widths = [
        n + (w - n) * min(1.0, extra / more) if more > 0 else n
        for w, n in zip(want, need, strict=True)
    ]
    widths[flex] = available - sum(widths)
    return widths


class _Styles:
    """The report's paragraph styles, in the report's fonts."""

    def __init__(self) -> None:
        regular, bold = fonts()
        self.body = ParagraphStyle("body", fontName=regular, fontSize=8.5, leading=11)
        self.small = ParagraphStyle("small", parent=self.body, fontSize=8, leading=10)
        self.head = ParagraphStyle("head", parent=self.small, fontName=bold)
        self.label = ParagraphStyle(
            "label", parent=self.body, fontName=bold, spaceBefore=5, keepWithNext=1
        )
        self.title = ParagraphStyle(
            "title", parent=self.body, fontName=bold, fontSize=16, leading=20, spaceAfter=4
        )
        self.subtitle = ParagraphStyle(
            "subtitle", parent=self.body, fontName=bold, fontSize=11, leading=14
        )
        self.heading = ParagraphStyle(
            "heading",
            parent=self.body,
            fontName=bold,
            fontSize=12,
            leading=15,
            spaceBefore=10,
            spaceAfter=4,
            keepWithNext=1,
        )
        self.long_heading = ParagraphStyle("long-heading", parent=self.heading, keepWithNext=0)
        self.warning = ParagraphStyle(
            "warning", parent=self.body, fontName=bold, textColor=colors.darkred
        )


class _Writer:
    """Lays out one record: the sections, each value through the site's ``Display``."""

    def __init__(self, detail: RecordDetail, display: Display, width: float) -> None:
        self.detail = detail
        self.record: dict[str, Any] = detail.record
        self.show = display
        self.width = width
        self.styles = _Styles()
        self.unit = str(self.record.get("unit") or detail.unit or "")

    # values -------------------------------------------------------------------------------

    def value(self, value: float | None) -> str:
        """Return a value of the record's sensor, rounded for it, with its unit."""
        return nobreak(
            self.show.value(
                value,
                self.unit,
                sensor=self.detail.sensor_id,
                parameter=self.detail.parameter,
            )
        )

    def time(self, at: datetime | str | None) -> str:
        """Return a time in the site's zone, the zone named, that never wraps."""
        return nobreak(self.show.time(at))

    def utc(self, at: datetime | str | None) -> str:
        """Return a time in UTC that never wraps."""
        return nobreak(self.show.utc(at))

    def duration(self, seconds: float | None) -> str:
        """Return a measured duration (``2 min 44 s``) that never wraps."""
        return nobreak(self.show.duration(seconds))

    def integral(self, value: float | None) -> str:
        """Return the integral beyond the limit, in the unit times seconds (``°C·s``)."""
        if value is None:
            return "—"
        number = format_value(value)  # digits by its size: the sensor's are for its unit
        return nobreak(f"{number} {unit_label(self.unit)}·s" if self.unit else f"{number} s")

    def audit_value(self, name: str | None, stored: str | None) -> str | None:
        """Return an audit value for reading: decoded, and written like the field's value."""
        if stored is None:
            return None
        try:
            decoded = orjson.loads(stored)
        except orjson.JSONDecodeError:
            return stored
        if decoded is None:
            return "—"
        if decoded == "":
            return "(empty)"
        if isinstance(decoded, dict):
            return "; ".join(
                f"{self.show.label(str(k))}: {self.audit_value(str(k), orjson.dumps(v).decode())}"
                for k, v in decoded.items()
            )
        if isinstance(decoded, bool):
            return "Yes" if decoded else "No"
        if isinstance(decoded, int | float):
            number = float(decoded)
            if name in DURATION_FIELDS:
                return self.duration(number)
            if name in VALUE_FIELDS:
                return self.value(number)
            if name == "integral_beyond_limit":
                return self.integral(number)
            return nobreak(format_value(number, decimals=0 if isinstance(decoded, int) else None))
        if isinstance(decoded, str):
            if name in TIME_FIELDS or (name or "").endswith("_at"):
                try:
                    return self.time(decoded)
                except ValueError:
                    return decoded
            if name in LABEL_FIELDS:
                return self.show.label(decoded)
            if len(decoded) == 64 and all(c in "0123456789abcdef" for c in decoded):
                return " ".join(decoded[i : i + 8] for i in range(0, 64, 8))  # a SHA-256
            return decoded
        return stored

    # building blocks ----------------------------------------------------------------------

    def section(self, title: str, *first: Flowable, long: bool = False) -> list[Flowable]:
        """Return a section's heading kept together with its ``first`` flowables.

        A heading is never the last line of a page: a page with less than 30 mm left
        starts the section on the next one, and the heading moves with what follows it.
        A ``long`` section (a table that may span pages) is not kept together (reportlab
        would lay a split table's parts over each other): it starts on the next page
        unless 45 mm are left, room for the heading, the table's head and a first row.
        """
        if long:
            heading = Paragraph(escape(title), self.styles.long_heading)
            return [CondPageBreak(45 * mm), heading, *first]
        heading = Paragraph(escape(title), self.styles.heading)
        return [CondPageBreak(30 * mm), KeepTogether([heading, *first])]

    def table(
        self,
        header: Sequence[str] | None,
        rows: Sequence[Sequence[object]],
        *,
        flex: int,
        atomic: Iterable[int] = (),
        bold_first: bool = False,
    ) -> Table:
        """Return a table whose columns fit their tokens (``column_widths``).

        ``rows`` hold text or a list of texts (shown as paragraphs in the cell). A long text
        in the ``flex`` column goes on in further rows of at most ``CHUNK`` points, without
        a rule between them: the table splits between rows (reportlab's split inside a row
        can lay two parts of a table on one page and lose words).
        """
        texts = [[_joined(c) for c in row] for row in ([header] if header else []) + list(rows)]
        small = self.styles.small
        measure = _measure(self.styles.head.fontName, small.fontSize)  # bold is the wider
        widths = column_widths(
            [[row[i] for row in texts] for i in range(len(texts[0]))],
            self.width,
            measure,
            flex=flex,
            atomic=atomic,
        )
        data: list[list[Any]] = []
        style: list[Any] = [("VALIGN", (0, 0), (-1, -1), "TOP")]
        for n, row in enumerate(([header] if header else []) + list(rows)):
            cells: list[list[Flowable]] = []
            for i, value in enumerate(row):
                is_head = (header is not None and n == 0) or (bold_first and i == 0)
                parts = value if isinstance(value, list) else [value]
                flow: list[Flowable] = []
                for part in parts:
                    flow += _paragraphs(
                        part, self.styles.head if is_head else small, widths[i] - 2 * PAD
                    )
                cells.append(flow)
            pieces = _chunks(cells[flex], widths[flex] - 2 * PAD, CHUNK)
            first = len(data)
            for k, piece in enumerate(pieces):
                out = [(c if k == 0 else []) for c in cells]
                out[flex] = piece
                data.append([c[0] if len(c) == 1 else c for c in out])
            last = len(data) - 1
            if last > first:  # one entry in several rows (a page may end between them)
                style += [
                    ("BOTTOMPADDING", (0, first), (-1, last - 1), 0),
                    ("TOPPADDING", (0, first + 1), (-1, last), 0),
                ]
            style.append(("LINEBELOW", (0, last), (-1, last), 0.25, colors.grey))
        if header:
            style += [
                ("BOX", (0, 0), (-1, -1), 0.25, colors.grey),
                ("LINEAFTER", (0, 0), (-2, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
            ]
        else:
            style.append(("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.lightgrey))
        return Table(
            data,
            colWidths=widths,
            style=TableStyle(style),
            repeatRows=1 if header else 0,
            splitInRow=0,
            hAlign="LEFT",
        )

    # sections -----------------------------------------------------------------------------

    def title(self, site_name: str, printed_at: datetime) -> list[Flowable]:
        d, s = self.detail, self.styles
        kind = "Data gap report" if d.kind == "data_gap" else "Excursion report"
        what = " · ".join(
            clean(x)
            for x in (
                self.show.label(d.parameter),
                d.instrument or d.sensor_id,
                d.area,
            )
            if x
        )
        story: list[Flowable] = [
            *_paragraphs(f"{kind} — {site_name}", s.title, self.width),
            *_paragraphs(what, s.subtitle, self.width),
            *_paragraphs(
                f"Record {d.id} · QA state: {self.show.label(d.qa_state)} · "
                f"printed {self.time(printed_at)}",
                s.body,
                self.width,
            ),
        ]
        newest = _newest(d)
        if newest is not None and printed_at < newest:
            story += _paragraphs(
                f"The printing clock ({self.time(printed_at)}) is behind the record's "
                f"last entry ({self.time(newest)}): check the clock before filing.",
                s.warning,
                self.width,
            )
        return story

    def summary(self) -> list[Flowable]:
        d, r, show = self.detail, self.record, self.show
        rows: list[tuple[str, object]] = [
            ("Record", d.id),
            ("Kind", show.label(d.kind)),
            ("Sensor", d.sensor_id),
            ("Instrument", d.instrument or "—"),
            ("Area", d.area),
            ("Parameter", show.label(d.parameter)),
            ("QA state", show.label(d.qa_state)),
            ("Status", show.label(d.core_status)),
            ("Start", self.time(r.get("start") or d.start)),
            ("End", self.time(r["end"]) if r.get("end") else "Open (still going on)"),
            ("Duration", self.duration(r.get("duration_s"))),
        ]
        if d.kind != "data_gap":
            level = " ".join(x for x in (d.level, r.get("direction")) if x)
            rows += [
                ("Level", show.label(level) if level else "—"),
                ("Limit", self.value(r.get("limit"))),
                ("Limits in force", self.limits(r.get("limits") or {})),
                ("Peak", f"{self.value(r.get('peak'))} at {self.time(r.get('peak_ts'))}"),
                ("Minimum", self.value(r.get("min"))),
                ("Maximum", self.value(r.get("max"))),
                ("Samples", _count(r.get("samples"))),
                ("Time beyond limit", self.duration(r.get("time_beyond_limit_s"))),
                ("Integral beyond limit", self.integral(r.get("integral_beyond_limit"))),
            ]
        table = self.table(None, [[k, v] for k, v in rows], flex=1, bold_first=True)
        return self.section("Summary", table)

    def limits(self, limits: dict[str, Any]) -> str:
        shown = [
            f"{self.show.label(name)} {self.value(limits[name])}"
            for name in ("action_low", "alert_low", "alert_high", "action_high")
            if limits.get(name) is not None
        ]
        return "; ".join(shown) or "—"

    def trend(self, chart: TrendResult | None) -> list[Flowable]:
        if chart is not None and chart.trend is not None:
            drawing = trend_drawing(chart.trend, width=self.width, height=self.width * 0.4)
            return self.section("Trend", drawing)
        reason = chart.error if chart is not None else "not requested"
        text = _paragraphs(f"Trend unavailable: {reason}", self.styles.body, self.width)
        return self.section("Trend", *text)

    def assessment(self) -> list[Flowable]:
        """Return the QA fields: each label kept with the first paragraph of its text."""
        blocks: list[list[Flowable]] = []
        for name, value in self.detail.qa.items():  # paragraphs: 10,000 characters split
            shown = (self.show.label(value) if name in LABEL_FIELDS else value) or "—"
            title = Paragraph(escape(self.show.label(name)), self.styles.label)
            blocks.append([title, *_paragraphs(shown, self.styles.body, self.width)])
        story: list[Flowable] = []
        for n, (head, first, *rest) in enumerate(blocks):
            if n == 0:
                story += self.section("QA assessment", head, first)
            else:
                story.append(KeepTogether([head, first]))
            story += rest
        return story

    def signatures(self) -> list[Flowable]:
        """Return the signature manifest: each signature's name, id, meaning, time, scope."""
        signed = self.detail.signatures
        if not signed:
            none = _paragraphs("No electronic signatures.", self.styles.body, self.width)
            return self.section("Electronic signatures", *none)
        story: list[Flowable] = []
        for n, s in enumerate(signed, 1):
            rows: list[list[object]] = [
                ["Printed name", s.printed_name],
                ["User id", s.signer],
                ["Meaning", self.show.label(s.meaning)],
                ["Action signed", self.show.label(s.action)],
                ["Date and time", [self.time(s.signed_at), self.utc(s.signed_at)]],
                ["Covers the current record", _covers(s)],
            ]
            title = Paragraph(f"Signature {n} of {len(signed)}", self.styles.label)
            table = self.table(None, rows, flex=1, atomic=(0,), bold_first=True)
            if n == 1:
                story += self.section("Electronic signatures", title, table)
            else:
                story.append(KeepTogether([title, table]))
        return story

    def timeline(self) -> list[Flowable]:
        """Return the timeline: alarms, notifications, actions and signatures, oldest first.

        Each event's time, its title above who did it, and its detail.
        """
        entries = list(self.detail.timeline)
        if not entries:
            return self.section(
                "Timeline", *_paragraphs("Nothing yet.", self.styles.body, self.width)
            )
        rows = [[self.time(e.at), [_sentence(e.title), e.who], e.detail or ""] for e in entries]
        header = ("Time", "Event, by", "Detail")
        table = self.table(header, rows, flex=2, atomic=(0,))
        return self.section("Timeline", table, long=True)

    def audit(self) -> list[Flowable]:
        """Return the audit trail: number, time (site and UTC), user, action, field, change.

        The user, the action and the field are one column, one above the other: the change
        (old and new values, the reason) takes the rest of the width.
        """
        rows: list[list[object]] = []
        for e in self.detail.audit:
            old = self.audit_value(e.field, e.old)
            new = self.audit_value(e.field, e.new)
            why = e.reason
            if why is not None and why == new:
                why = "(as the new value: a comment is its own reason)"
            change = [
                f"{label}: {value}"
                for label, value in (("Old", old), ("New", new), ("Reason", why))
                if value is not None
            ]
            rows.append(
                [
                    str(e.seq),
                    [self.time(e.at), self.utc(e.at)],
                    [e.actor, self.show.label(e.action), self.show.label(e.field) or "—"],
                    change or "—",
                ]
            )
        if not rows:
            return self.section(
                "Audit trail", *_paragraphs("No entries.", self.styles.body, self.width)
            )
        header = ("#", "Time", "User, action, field", "Change and reason")
        table = self.table(header, rows, flex=3, atomic=(0, 1))
        return self.section("Audit trail", table, long=True)


def _chunks(flowables: list[Flowable], width: float, height: float) -> list[list[Flowable]]:
    """Return a cell's flowables in pieces at most ``height`` tall (paragraphs split by line).

    A flowable that cannot be split and is taller stays whole in a piece of its own.
    """
    pieces: list[list[Flowable]] = []
    current: list[Flowable] = []
    used = 0.0
    queue = list(flowables)
    while queue:
        item = queue.pop(0)
        _w, tall = item.wrap(width, 1e9)
        if used + tall <= height:
            current.append(item)
            used += tall
            continue
        parts = item.split(width, height - used) if isinstance(item, Paragraph) else []
        if len(parts) == 2:
            current.append(parts[0])
            queue.insert(0, parts[1])
        elif not current:
            current.append(item)  # too tall and whole: as it is
        else:
            queue.insert(0, item)
        pieces.append(current)
        current, used = [], 0.0
    if current:
        pieces.append(current)
    return pieces or [[]]


def _joined(value: object) -> str:
    """Return a cell's text (a list of texts: one per line) cleaned, for measuring."""
    parts = value if isinstance(value, list) else [value]
    return "\n".join(clean(p) for p in parts)


def _sentence(text: object) -> str:
    """Return a title as a sentence (``alarm raised`` → ``Alarm raised``)."""
    words = str(text or "")
    return words[:1].upper() + words[1:]


def _count(value: object) -> str:
    return "—" if value is None else format_value(float(str(value)), decimals=0)


def _newest(detail: RecordDetail) -> datetime | None:
    """Return the time of the record's last signature, audit entry or timeline event."""
    times = [s.signed_at for s in detail.signatures]
    times += [e.at for e in detail.audit]
    times += [e.at for e in detail.timeline]
    aware = [t for t in times if isinstance(t, datetime) and t.tzinfo is not None]
    return max(aware, default=None)


def _covers(signature: SignatureItem) -> str:
    """Say whether a signature still covers the record (and why not)."""
    if signature.covers_current_content:
        return "Yes"
    if not signature.matches_audit_trail:
        return "No — does not match its audit-trail entry (altered outside the application)"
    return "No — the record changed since signing"


def _fit(text: str, width: float, measure: Callable[[str], float]) -> str:
    """Return ``text``, cut with an ellipsis to fit ``width`` (a long site name in a header)."""
    if measure(text) <= width:
        return text
    while text and measure(text + "…") > width:
        text = text[:-1]
    return text + "…"


class _NumberedCanvas(Canvas):
    """A canvas that draws the running header and footer once it knows the page count."""

    def __init__(
        self,
        *args: Any,  # noqa: ANN401 - reportlab's signature
        header: tuple[str, str] = ("", ""),
        footer: str = "",
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []
        self._header = header
        self._footer = footer

    def showPage(self) -> None:  # noqa: N802 - reportlab's name
        self._pages.append(dict(self.__dict__))
        self._startPage()  # type: ignore[attr-defined]  # reportlab's numbered-canvas recipe

    def save(self) -> None:
        total = len(self._pages)
        regular, _bold = fonts()
        for state in self._pages:
            self.__dict__.update(state)
            width, height = self._pagesize  # type: ignore[attr-defined]  # reportlab's
            self.setFont(regular, 8)
            self.setStrokeColor(colors.grey)
            self.setLineWidth(0.25)
            left, right = self._header
            room = width - 2 * MARGIN - self.stringWidth(right) - 6 * mm
            top = height - 14 * mm
            self.drawString(MARGIN, top, _fit(left, room, self.stringWidth))
            self.drawRightString(width - MARGIN, top, right)
            self.line(MARGIN, top - 2 * mm, width - MARGIN, top - 2 * mm)
            number = f"Page {self.getPageNumber()} of {total}"
            room = width - 2 * MARGIN - self.stringWidth(number) - 6 * mm
            self.line(MARGIN, 14 * mm, width - MARGIN, 14 * mm)
            self.drawString(MARGIN, 10 * mm, _fit(self._footer, room, self.stringWidth))
            self.drawRightString(width - MARGIN, 10 * mm, number)
            super().showPage()
        super().save()


def write_report(
    detail: RecordDetail,
    target: Path | BinaryIO,
    *,
    site_name: str,
    display: Display,
    printed_at: datetime,
    chart: TrendResult | None = None,
    paper: str = "a4",
) -> None:
    """Write the PDF report of one record to a file or a binary stream.

    ``detail`` is ``excursions.queries.record_detail``'s form; ``display`` the site's
    (``SiteConfig.display()``); ``printed_at`` the time from the clock the records are
    written with (a report printed before its last entry says so); ``paper`` ``a4`` or
    ``letter`` (anything else: ``ValueError``).
    """
    if paper not in PAGE_SIZES:
        raise ValueError(f"paper must be one of {', '.join(PAPERS)}, not {paper!r}")
    size = PAGE_SIZES[paper]
    writer = _Writer(detail, display, size[0] - 2 * MARGIN - 2 * FRAME_PAD)
    site = clean(site_name).replace("\n", " ")
    story: list[Flowable] = [
        *writer.title(site, printed_at),
        *writer.summary(),
        *writer.trend(chart),
        *writer.assessment(),
        *writer.signatures(),
        *writer.timeline(),
        *writer.audit(),
    ]
    kind = "Data gap" if detail.kind == "data_gap" else "Excursion"
    header = (site, f"Printed {display.time(printed_at)}")
    footer = f"{kind} record {clean(detail.id)} · envmon"
    document = SimpleDocTemplate(
        str(target) if isinstance(target, Path) else target,
        pagesize=size,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=TOP,
        bottomMargin=BOTTOM,
        title=f"{kind} record {detail.id}",
        author=site,
    )
    document.build(
        story,
        canvasmaker=lambda *a, **k: _NumberedCanvas(*a, header=header, footer=footer, **k),
    )
