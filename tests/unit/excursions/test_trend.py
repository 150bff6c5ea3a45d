"""The trend chart: its window, decimation and runs, ticks, and the SVG and PDF renderings."""

from __future__ import annotations

import io
import itertools
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reportlab.graphics import renderPDF
from reportlab.graphics.shapes import Drawing, Line
from reportlab.lib.colors import HexColor
from reportlab.platypus import Flowable, SimpleDocTemplate

from envmon.models import (
    DataGap,
    Direction,
    ExcursionRecord,
    ExcursionStatus,
    Level,
    LimitsInForce,
    Quality,
    Reading,
)
from envmon.timeutil import NaiveTimestampError, parse_ts
from excursions.trend.layout import PlotArea, limit_label_positions, spread
from excursions.trend.model import (
    ACTION_COLOUR,
    EMPTY_TEXT,
    GAP_FILL,
    MAX_WINDOW,
    WINDOWS,
    Trend,
    build_trend,
    trend_json,
    trend_window,
    zone_offsets,
)
from excursions.trend.pdf import PDF_FONT_SIZE, trend_drawing
from excursions.trend.svg import SVG_FONT_SIZE, trend_svg

T0 = parse_ts("2026-01-05T08:00:00Z")
NOW = parse_ts("2026-01-06T08:00:00Z")
UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
SVG = "{http://www.w3.org/2000/svg}"
MINUTE = timedelta(minutes=1)
LIMITS = LimitsInForce(alert_high=8, action_high=10, alert_low=2, action_low=0)


def excursion(
    start: datetime = T0,
    end: datetime | None = T0 + timedelta(hours=1),
    *,
    sensor_id: str = "fridge-1.temperature",
    peak: float = 12.5,
    peak_ts: datetime | None = None,
    limits: LimitsInForce = LIMITS,
) -> dict[str, Any]:
    """An excursion record as the QA store keeps it (the model's JSON form)."""
    record = ExcursionRecord(
        id="exc-1",
        revision=3,
        status=ExcursionStatus.OPEN if end is None else ExcursionStatus.CLOSED,
        sensor_id=sensor_id,
        area="cold-store",
        instrument="fridge-1",
        parameter="temperature",
        unit="degC",
        direction=Direction.HIGH,
        level=Level.ACTION,
        limit=10,
        limits=limits,
        start=start,
        end=end,
        duration_s=None if end is None else (end - start).total_seconds(),
        peak=peak,
        peak_ts=peak_ts or start + timedelta(minutes=10),
        min=8.1,
        max=peak,
        samples=60,
        time_beyond_limit_s=600,
        integral_beyond_limit=42,
    )
    return record.model_dump(mode="json")


def data_gap(
    start: datetime = T0, end: datetime | None = T0 + timedelta(hours=2)
) -> dict[str, Any]:
    """A data gap record as the QA store keeps it."""
    gap = DataGap(
        id="gap-1",
        sensor_id="fridge-1.temperature",
        area="cold-store",
        parameter="temperature",
        start=start,
        end=end,
        duration_s=None if end is None else (end - start).total_seconds(),
    )
    return gap.model_dump(mode="json")


def series(
    values: list[float | None],
    *,
    start: datetime = T0,
    every: timedelta = MINUTE,
    quality: Quality = Quality.GOOD,
) -> list[Reading]:
    """Readings at a regular interval (``trusted``: 100,000 of them must be cheap)."""
    return [
        Reading.trusted("fridge-1.temperature", v, "degC", start + i * every, None, quality, "")
        for i, v in enumerate(values)
    ]


def closed_trend(readings: list[Reading] | None = None, **kwargs: Any) -> Trend:
    """The trend of a one-hour excursion, with a wave through it unless told otherwise."""
    record = excursion(**kwargs)
    window = trend_window(record, NOW)
    if readings is None:
        count = int((window[1] - window[0]) / MINUTE)
        values: list[float | None] = [5 + 6 * math.sin(i / 20) for i in range(count)]
        readings = series(values, start=window[0])
    return build_trend(record, readings, window, zone=UTC_ZONE)


def drawn(trend: Trend) -> list[tuple[datetime, float]]:
    return [(p.ts, p.value) for run in trend.runs for p in run]


def svg_root(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def by_id(root: ET.Element, ident: str) -> ET.Element:
    found = root.find(f".//*[@id='{ident}']")
    assert found is not None, ident
    return found


def with_class(root: ET.Element, css: str) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("class") == css]


class TestTrendWindow:
    """``trend_window`` pads the record by half its duration, 15 minutes to 12 hours."""

    def test_closed_record_padded_by_half_its_duration(self) -> None:
        """A one-hour excursion is shown from 30 minutes before to 30 minutes after."""
        start, end = trend_window(excursion(), NOW)
        assert start == T0 - timedelta(minutes=30)
        assert end == T0 + timedelta(minutes=90)
        assert start.tzinfo is UTC
        assert end.tzinfo is UTC

    def test_short_record_padded_by_at_least_15_minutes(self) -> None:
        """A two-minute excursion still shows a quarter of an hour on each side."""
        record = excursion(T0, T0 + 2 * MINUTE, peak_ts=T0 + MINUTE)
        assert trend_window(record, NOW) == (T0 - 15 * MINUTE, T0 + 17 * MINUTE)

    def test_long_record_padding_capped_at_12_hours(self) -> None:
        """A three-day excursion gets 12 hours on each side, not a day and a half."""
        end = T0 + timedelta(days=3)
        start, stop = trend_window(excursion(T0, end), end + timedelta(days=5))
        assert (start, stop) == (T0 - timedelta(hours=12), end + timedelta(hours=12))

    def test_open_record_runs_until_now(self) -> None:
        """An open excursion runs to now, padded before by half its age so far."""
        now = T0 + timedelta(hours=4)
        assert trend_window(excursion(end=None), now) == (T0 - timedelta(hours=2), now)

    def test_never_after_now(self) -> None:
        """A record closed five minutes ago is shown up to now, not 15 minutes ahead."""
        now = T0 + timedelta(minutes=65)
        assert trend_window(excursion(), now)[1] == now

    def test_record_ending_after_now_stays_whole(self) -> None:
        """A record ending after ``now`` (skewed clocks) is still inside the window."""
        end = T0 + timedelta(hours=1)
        assert trend_window(excursion(T0, end), T0 + MINUTE)[1] == end

    def test_data_gap(self) -> None:
        """A data gap (no unit, no limits) is padded like an excursion."""
        assert trend_window(data_gap(), NOW) == (T0 - timedelta(hours=1), T0 + timedelta(hours=3))

    def test_offsets_converted_to_utc(self) -> None:
        """Times with another offset come back as UTC."""
        record = excursion() | {"start": "2026-01-05T09:00:00+01:00"}
        start, _end = trend_window(record, NOW)
        assert start == T0 - timedelta(minutes=30)
        assert start.utcoffset() == timedelta(0)

    def test_naive_times_refused(self) -> None:
        """A naive time in the record or as ``now`` is refused: it would be ambiguous."""
        with pytest.raises(NaiveTimestampError):
            trend_window(excursion() | {"start": "2026-01-05T08:00:00"}, NOW)
        with pytest.raises(NaiveTimestampError):
            trend_window(excursion(), NOW.replace(tzinfo=None))


class TestDecimation:
    """Min-max decimation per time bucket: never hides an extreme, never the peak."""

    def test_100000_readings_into_1000_points_keep_min_max_and_peak(self) -> None:
        """100,000 readings become at most 1,000 points holding the global min, max, peak."""
        values: list[float | None] = [20 + math.sin(i / 50) for i in range(100_000)]
        values[31_337] = 26.75  # a one-sample spike: the peak
        values[77_001] = 14.25  # and a one-sample dip
        record = excursion(T0, T0 + timedelta(hours=24))
        window = trend_window(record, NOW + timedelta(days=2))
        readings = series(values, start=window[0], every=(window[1] - window[0]) / 100_000)
        peak_ts = readings[31_337].ts
        record |= {"peak": 26.75, "peak_ts": peak_ts.isoformat()}
        trend = build_trend(record, readings, window, zone=UTC_ZONE)
        points = drawn(trend)
        assert trend.readings == 100_000
        assert 900 <= len(points) == trend.points <= 1000
        assert (peak_ts, 26.75) in points
        assert (readings[77_001].ts, 14.25) in points
        assert trend.peak is not None
        assert (trend.peak.ts, trend.peak.value) == (peak_ts, 26.75)
        assert "of 100,000 values drawn" in trend.note
        assert [ts for ts, _ in points] == sorted(ts for ts, _ in points)

    def test_few_readings_all_kept(self) -> None:
        """Fewer readings than ``max_points`` are all drawn, and no note says otherwise."""
        readings = series([5.0 + i % 7 for i in range(120)], start=T0 - 30 * MINUTE)
        trend = closed_trend(readings)
        assert drawn(trend) == [(r.ts, r.value) for r in readings]
        assert trend.note == ""

    @settings(max_examples=60, database=None, deadline=None, derandomize=True)
    @given(
        values=st.lists(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=400
        ),
        max_points=st.integers(min_value=2, max_value=80),
    )
    def test_decimation_keeps_extremes(self, values: list[float], max_points: int) -> None:
        """Whatever the values, the drawn points are readings, in order, with min and max."""
        readings = series(list(values), start=T0)
        record = excursion(T0, T0 + len(values) * MINUTE, peak=max(values))
        trend = build_trend(
            record, readings, trend_window(record, NOW), zone=UTC_ZONE, max_points=max_points
        )
        points = drawn(trend)
        assert len(trend.runs) == 1
        assert len(points) <= max(max_points, len(values))
        assert set(points) <= {(r.ts, r.value) for r in readings}
        assert [ts for ts, _ in points] == sorted(ts for ts, _ in points)
        assert min(v for _, v in points) == min(values)
        assert max(v for _, v in points) == max(values)
        low, high = trend.y_range
        assert low < min(values)
        assert max(values) < high


class TestRuns:
    """The line breaks at a missing value, at bad quality and across a long gap."""

    def test_missing_value_breaks_the_line(self) -> None:
        """A reading without a value splits the series; nothing is interpolated."""
        trend = closed_trend(series([5, 6, None, 7, 8], start=T0))
        assert [[p.value for p in run] for run in trend.runs] == [[5, 6], [7, 8]]
        assert trend.bad_quality == ()

    def test_bad_quality_breaks_the_line_and_is_marked(self) -> None:
        """Bad readings split the series and are drawn as markers (on the axis if valueless)."""
        readings = series([5, 6], start=T0)
        readings += series([99.0, None], start=T0 + 2 * MINUTE, quality=Quality.BAD)
        readings += series([9], start=T0 + 4 * MINUTE)
        trend = closed_trend(readings)
        assert [[p.value for p in run] for run in trend.runs] == [[5, 6], [9]]
        assert [(m.ts, m.value) for m in trend.bad_quality] == [
            (readings[2].ts, 99.0),
            (readings[3].ts, None),
        ]
        assert trend.y_range[1] < 99  # a faulty value does not flatten the chart

    def test_uncertain_quality_stays_in_the_line(self) -> None:
        """Uncertain readings are drawn as part of the series."""
        readings = series([5, 6, 7], start=T0, quality=Quality.UNCERTAIN)
        assert len(closed_trend(readings).runs) == 1

    def test_gap_longer_than_three_median_intervals_breaks_the_line(self) -> None:
        """Readings every minute, then 3.5 minutes apart: a break; 2.5 minutes: none."""
        times = [0, 1, 2, 3, 4, 7.5, 8.5, 9.5, 12, 13, 14]
        readings = [
            Reading.trusted("s", 5.0, "degC", T0 + t * MINUTE, None, Quality.GOOD, "")
            for t in times
        ]
        trend = closed_trend(readings)
        assert [len(run) for run in trend.runs] == [5, 6]

    def test_readings_outside_the_window_ignored(self) -> None:
        """Readings the store returned beyond the window are not drawn."""
        window = trend_window(excursion(), NOW)
        readings = series([1, 2, 3], start=window[0] - 2 * MINUTE)
        assert drawn(closed_trend(readings)) == [(readings[2].ts, 3)]


class TestScale:
    """The value axis holds data, limits and peak; ticks are nice numbers."""

    def test_y_range_covers_data_limits_and_peak_with_margin(self) -> None:
        """Limits 0..10 and a 12.5 peak widen a range whose data stay near 5."""
        trend = closed_trend(series([5, 5.5, 4.5], start=T0), peak=12.5)
        low, high = trend.y_range
        assert low < 0
        assert high > 12.5
        assert 0 < trend.y_fraction(12.5) < 1
        assert [line.label for line in trend.limits] == [
            "action high 10.0 °C",
            "alert high 8.0 °C",
            "alert low 2.0 °C",
            "action low 0.0 °C",
        ]

    def test_value_ticks_are_nice_and_inside(self) -> None:
        """Ticks are evenly spaced by 1, 2, 2.5 or 5 × 10ⁿ and lie within the range."""
        trend = closed_trend(series([3.1, 3.3, 3.2], start=T0), limits=LimitsInForce())
        ticks = [t.value for t in trend.value_ticks]
        steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
        assert len(ticks) >= 3
        assert len(steps) == 1
        (step,) = steps
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in {1, 2, 2.5, 5}
        low, high = trend.y_range
        assert all(low <= v <= high for v in ticks)


class TestTimeTicks:
    """Time ticks at round local times, labelled in the site's zone."""

    def test_labels_in_the_site_zone(self) -> None:
        """08:00 UTC is labelled 09:00 in Berlin; the window of 2 h ticks every 15 minutes."""
        record = excursion()
        window = trend_window(record, NOW)
        trend = build_trend(record, [], window, zone=BERLIN)
        labels = [t.label for t in trend.time_ticks]
        assert labels[0] == "05 Jan 08:30"
        assert "09:00" in labels
        assert [t.ts for t in trend.time_ticks] == [
            window[0] + i * 15 * MINUTE for i in range(len(labels))
        ]
        assert "Europe/Berlin" in trend.caption
        assert "CET" in trend.caption

    @pytest.mark.parametrize(
        ("start", "end"),
        [
            ("2026-03-29T00:10:00Z", "2026-03-29T01:40:00Z"),  # spring forward: 02:00 skipped
            ("2026-10-25T00:10:00Z", "2026-10-25T01:40:00Z"),  # fall back: 02:00-03:00 twice
            ("2026-10-24T18:00:00Z", "2026-10-25T10:00:00Z"),  # fall back, hour steps
        ],
    )
    def test_across_daylight_saving_changes(self, start: str, end: str) -> None:
        """Across DST, ticks increase, each label is the tick's local time, none repeats."""
        record = excursion(parse_ts(start), parse_ts(end))
        trend = build_trend(record, [], trend_window(record, NOW), zone=BERLIN)
        svg_root(trend_svg(trend))  # renders without error
        ticks = trend.time_ticks
        assert len(ticks) >= 4
        assert all(a.ts < b.ts for a, b in itertools.pairwise(ticks))
        assert len({t.label for t in ticks}) == len(ticks)
        for tick in ticks:
            local = tick.ts.astimezone(BERLIN)
            assert tick.label.split(" CE")[0].endswith(f"{local:%H:%M}")
            if tick.label.endswith(("CET", "CEST")):
                assert tick.label.endswith(f" {local.tzname()}")
        # the local times the labels show, read back with their zone, increase
        instants = [_instant_of(tick.label, tick.ts.astimezone(BERLIN), BERLIN) for tick in ticks]
        assert instants == [t.ts for t in ticks]

    def test_spring_forward_labels_monotonic(self) -> None:
        """On the night the clocks go forward, the labels' local times strictly increase."""
        record = excursion(parse_ts("2026-03-29T00:10:00Z"), parse_ts("2026-03-29T01:40:00Z"))
        trend = build_trend(record, [], trend_window(record, NOW), zone=BERLIN)
        clocks = [t.label[-5:] for t in trend.time_ticks]
        assert clocks == sorted(clocks)
        assert not any(c.startswith("02:") for c in clocks)

    def test_day_ticks_for_long_windows(self) -> None:
        """A week-long excursion gets day ticks at local midnights, labelled with the date."""
        record = excursion(T0, T0 + timedelta(days=7))
        trend = build_trend(record, [], trend_window(record, NOW + timedelta(days=9)), zone=BERLIN)
        assert [t.label for t in trend.time_ticks] == [f"{d:02d} Jan" for d in range(5, 13)]
        assert all(t.ts.astimezone(BERLIN).hour == 0 for t in trend.time_ticks)


def _instant_of(label: str, local: datetime, zone: ZoneInfo) -> datetime:
    """Read a tick label's HH:MM (and abbreviation, if any) back as an instant."""
    parts = label.split()
    abbreviation = parts[-1] if parts[-1].isalpha() and parts[-1].isupper() else None
    clock = parts[-2] if abbreviation else parts[-1]
    hour, minute = (int(x) for x in clock.split(":"))
    wall = local.replace(hour=hour, minute=minute, tzinfo=None)
    candidates = [wall.replace(tzinfo=zone, fold=f) for f in (0, 1)]  # (a set: they are equal)
    matches = [c for c in candidates if abbreviation in (None, c.tzname())]
    instants = {c.astimezone(UTC) for c in matches}
    assert len(instants) == 1, label
    return instants.pop()


class TestSvg:
    """The inline SVG: well-formed, self-contained, escaped, placed by the trend's scale."""

    def test_structure_and_accessibility(self) -> None:
        """One <svg id="trend" role="img"> with a viewBox, a <title> and the named parts."""
        trend = closed_trend()
        root = svg_root(trend_svg(trend))
        assert root.tag == f"{SVG}svg"
        assert root.get("id") == "trend"
        assert root.get("role") == "img"
        assert root.get("viewBox") == "0 0 860 300"
        title = root.find(f"{SVG}title")
        assert title is not None
        assert title.text == trend.title
        for css in ("series", "limit action", "limit alert", "excursion-span", "peak"):
            assert with_class(root, css), css
        assert len(with_class(root, "series")) == len(trend.runs)

    def test_limit_lines_at_their_values(self) -> None:
        """Each limit is a horizontal line at the y the trend's scale gives its value."""
        trend = closed_trend()
        root = svg_root(trend_svg(trend, width=860, height=300))
        area = PlotArea.of(trend, 860, 300, font_size=SVG_FONT_SIZE)
        assert len(trend.limits) == 4
        for limit in trend.limits:
            line = by_id(root, f"trend-limit-{limit.kind}-{limit.side}")
            assert line.get("class") == f"limit {limit.kind}"
            expected = 300 - (
                area.bottom + trend.y_fraction(limit.value) * (area.top - area.bottom)
            )
            assert float(line.get("y1", "nan")) == pytest.approx(expected, abs=0.01)
            assert float(line.get("y2", "nan")) == pytest.approx(expected, abs=0.01)
        assert by_id(root, "trend-limit-action-high").get("stroke") == ACTION_COLOUR
        assert by_id(root, "trend-limit-alert-high").get("stroke-dasharray")

    def test_span_covers_the_excursion(self) -> None:
        """The shaded rectangle runs from the excursion's start to its end."""
        trend = closed_trend()
        root = svg_root(trend_svg(trend))
        area = PlotArea.of(trend, 860, 300, font_size=SVG_FONT_SIZE)
        span = by_id(root, "trend-span")
        assert span.get("class") == "excursion-span"
        x, width = float(span.get("x", "nan")), float(span.get("width", "nan"))
        assert x == pytest.approx(area.x(T0), abs=0.01)
        assert x + width == pytest.approx(area.x(T0 + timedelta(hours=1)), abs=0.02)

    def test_data_gap_span_grey_and_no_limits(self) -> None:
        """A data gap is shaded grey, with neither limits nor a peak."""
        record = data_gap()
        trend = build_trend(record, [], trend_window(record, NOW), zone=UTC_ZONE)
        root = svg_root(trend_svg(trend))
        span = by_id(root, "trend-span")
        assert span.get("class") == "gap-span"
        assert span.get("fill") == GAP_FILL
        assert not [e for e in root.iter() if (e.get("class") or "").startswith("limit ")]
        assert root.find(".//*[@id='trend-peak']") is None

    def test_peak_marked(self) -> None:
        """The record's peak is a circle at its time and value."""
        trend = closed_trend(peak=12.5)
        root = svg_root(trend_svg(trend))
        area = PlotArea.of(trend, 860, 300, font_size=SVG_FONT_SIZE)
        peak = by_id(root, "trend-peak")
        assert float(peak.get("cx", "nan")) == pytest.approx(area.x(T0 + 10 * MINUTE), abs=0.01)
        assert float(peak.get("cy", "nan")) == pytest.approx(300 - area.y(12.5), abs=0.01)
        assert "peak 12.5 °C" in "".join(root.itertext())

    def test_hostile_names_escaped(self) -> None:
        """A sensor id carrying markup is shown as text, never as an element."""
        hostile = '<script>alert("x")</script>&"'
        record = excursion() | {"sensor_id": hostile, "parameter": "<b onload=x>"}
        trend = build_trend(record, [], trend_window(record, NOW), zone=UTC_ZONE)
        svg = trend_svg(trend)
        assert "<script" not in svg
        assert "<b " not in svg
        root = svg_root(svg)
        assert not [e for e in root.iter() if e.tag in (f"{SVG}script", f"{SVG}b")]
        assert hostile in "".join(root.itertext())

    def test_self_contained(self) -> None:
        """No script, no external reference, no style the CSP would block."""
        svg = trend_svg(closed_trend())
        root = svg_root(svg)
        for element in root.iter():
            assert not any(
                name == "style" or name.startswith("on") or "href" in name
                for name in element.attrib
            )
            assert element.tag not in (f"{SVG}script", f"{SVG}style", f"{SVG}image")
        assert "javascript:" not in svg
        assert "url(" not in svg

    def test_empty_says_so(self) -> None:
        """Without readings, the chart says none are stored and still shows limits and span."""
        trend = closed_trend([])
        assert trend.empty
        assert trend.runs == ()
        root = svg_root(trend_svg(trend))
        assert by_id(root, "trend-empty").text == EMPTY_TEXT
        assert with_class(root, "limit action")
        assert with_class(root, "excursion-span")

    def test_too_small_refused(self) -> None:
        """A size without room for the plot is refused rather than drawn wrong."""
        with pytest.raises(ValueError, match="does not fit"):
            trend_svg(closed_trend(), width=40, height=20)


class TestDrawing:
    """The reportlab drawing: the same chart in the PDF report."""

    def test_renders_into_a_pdf_with_the_labels(self, tmp_path: Path) -> None:
        """The drawing renders to a PDF whose text holds the title and the limit labels."""
        trend = closed_trend()
        path = tmp_path / "trend.pdf"
        renderPDF.drawToFile(trend_drawing(trend, width=480, height=220), str(path))
        reader = pypdf.PdfReader(io.BytesIO(path.read_bytes()))
        text = "\n".join(page.extract_text() for page in reader.pages)
        for label in (
            "action high 10.0 °C",
            "alert high 8.0 °C",
            "alert low 2.0 °C",
            "peak 12.5 °C",
        ):
            assert label in text
        assert "fridge-1.temperature" in text

    def test_flowable_in_a_document(self, tmp_path: Path) -> None:
        """The drawing is a platypus flowable: a report can put it in its story."""
        drawing = trend_drawing(closed_trend([]), width=480, height=200)
        assert isinstance(drawing, Flowable)
        path = tmp_path / "doc.pdf"
        SimpleDocTemplate(str(path)).build([drawing])
        text = pypdf.PdfReader(str(path)).pages[0].extract_text()
        assert EMPTY_TEXT in text

    def test_agrees_with_the_svg(self) -> None:
        """Limit lines sit at the same fraction of the plot height in both renderings."""
        trend = closed_trend()
        drawing = trend_drawing(trend, width=480, height=220)
        assert isinstance(drawing, Drawing)
        pdf_area = PlotArea.of(trend, 480, 220, font_size=PDF_FONT_SIZE)
        svg_area = PlotArea.of(trend, 860, 300, font_size=SVG_FONT_SIZE)
        root = svg_root(trend_svg(trend))
        red = HexColor(ACTION_COLOUR)
        pdf_lines = sorted(
            line.y1
            for line in drawing.contents
            if isinstance(line, Line)
            and line.strokeColor == red
            and line.y1 == line.y2
            and line.x1 == pdf_area.left  # not the legend's swatch
        )
        svg_lines = sorted(
            (300 - float(e.get("y1", "nan")) for e in with_class(root, "limit action")),
        )
        assert len(pdf_lines) == len(svg_lines) == 2
        for pdf_y, svg_y in zip(pdf_lines, svg_lines, strict=True):
            pdf_fraction = (pdf_y - pdf_area.bottom) / (pdf_area.top - pdf_area.bottom)
            svg_fraction = (svg_y - svg_area.bottom) / (svg_area.top - svg_area.bottom)
            assert pdf_fraction == pytest.approx(svg_fraction, abs=1e-4)


# --- windows, marks, labels (the interactive chart's model) ----------------------------------


class TestWindows:
    """The record's own window and the wider ones: always the record, never over 7 days."""

    @pytest.mark.parametrize("name", list(WINDOWS))
    def test_each_window_holds_the_record(self, name: str) -> None:
        record = excursion()
        start, end = trend_window(record, NOW, name)
        assert start < T0
        assert end > T0 + timedelta(hours=1)
        assert end <= NOW

    def test_wider_windows_pad_by_their_width(self) -> None:
        """±6 h, ±24 h pad each side by that much (to the app's clock)."""
        record = excursion()
        assert trend_window(record, NOW, "6h") == (
            T0 - timedelta(hours=6),
            T0 + timedelta(hours=7),
        )
        later = NOW + timedelta(days=10)
        assert trend_window(record, later, "3d") == (
            T0 - timedelta(days=3),
            T0 + timedelta(hours=1, days=3),
        )

    def test_never_more_than_seven_days_nor_less_than_the_record_window(self) -> None:
        """A 6-day record's ±3 days are cut to 7 days in all, but no less than its own."""
        later = NOW + timedelta(days=30)
        record = excursion(T0, T0 + timedelta(days=6))
        start, end = trend_window(record, later, "3d")
        assert end - start == MAX_WINDOW
        longer = excursion(T0, T0 + timedelta(days=9))
        own = trend_window(longer, later)
        assert trend_window(longer, later, "3d") == own  # the record itself is longer

    @pytest.mark.parametrize("name", ["", "1y", "Record", "3d ", "record\x00"])
    def test_an_unknown_window_is_refused(self, name: str) -> None:
        with pytest.raises(ValueError, match="unknown window"):
            trend_window(excursion(), NOW, name)


ALARMS = [
    {"ts": T0 + timedelta(minutes=10), "event": "raised", "level": "alert"},
    {"ts": T0 + timedelta(minutes=25), "event": "escalated", "level": "action"},
    {"ts": T0 + timedelta(minutes=40), "event": "raised", "level": "alert"},  # a repeat
    {"ts": T0 + timedelta(minutes=60), "event": "cleared", "level": None},
]


class TestMarks:
    """The limit crossed (the record's start) and each level reached (after the delay)."""

    def marked(self, events: list[dict[str, Any]] = ALARMS) -> Trend:
        record = excursion()
        window = trend_window(record, NOW)
        return build_trend(record, [], window, zone=BERLIN, events=events)

    def test_crossing_and_each_levels_first_alarm(self) -> None:
        trend = self.marked()
        assert [(m.kind, m.ts) for m in trend.marks] == [
            ("crossed", T0),
            ("alert", T0 + timedelta(minutes=10)),
            ("action", T0 + timedelta(minutes=25)),
        ]
        assert trend.marks[1].label == "alert level reached 2026-01-05 09:10:00 CET"
        legend = [e.text for e in trend.legend]
        assert "limit crossed (record start)" in legend
        assert "alert level reached (after the rule's delay)" in legend

    def test_marks_drawn_in_svg_and_pdf(self, tmp_path: Path) -> None:
        """Both renderings draw a line per mark, its short name and the legend."""
        trend = self.marked()
        root = svg_root(trend_svg(trend))
        for kind in ("crossed", "alert", "action"):
            assert by_id(root, f"trend-mark-{kind}").get("class") == f"mark {kind}"
        text = "".join(root.itertext())
        assert "limit crossed (record start)" in text
        path = tmp_path / "marks.pdf"
        renderPDF.drawToFile(trend_drawing(trend, width=480, height=260), str(path))
        pdf = pypdf.PdfReader(str(path)).pages[0].extract_text()
        for words in ("crossed", "action level reached", "Europe/Berlin"):
            assert words in pdf

    def test_a_data_gap_marks_its_events_and_shows_given_limits(self) -> None:
        """A gap holds no limits: those given are drawn and the value axis includes them."""
        record = data_gap()
        window = trend_window(record, NOW)
        readings = series([4.0, 4.2, 4.1], start=window[0])
        events = [{"ts": T0 + timedelta(minutes=10), "event": "stale", "level": None}]
        limits = {"alert_high": 8, "action_high": 10, "alert_low": None}
        trend = build_trend(
            record,
            readings,
            window,
            zone=UTC_ZONE,
            events=events,
            limits=limits,
            limits_note="limits from the site",
        )
        assert [line.value for line in trend.limits] == [10, 8]
        low, high = trend.y_range
        assert low < 4.0
        assert high > 10
        assert [m.kind for m in trend.marks] == ["stale"]
        assert "limits from the site" in "".join(svg_root(trend_svg(trend)).itertext())
        without = build_trend(record, readings, window, zone=UTC_ZONE)
        assert without.limits == ()
        assert without.y_range[1] < 8


class TestLabels:
    """Values written as the pages write them; limit labels never overlap."""

    def test_a_particle_peak_reads_like_its_axis(self) -> None:
        """``1,059,223 particles/m³``, never ``1.05922e+06``; ticks with thousands commas."""
        record = excursion(peak=1_059_223, limits=LimitsInForce(alert_high=3520, action_high=1e6))
        record |= {"unit": "particles/m3", "parameter": "particles_0_5"}
        window = trend_window(record, NOW)
        trend = build_trend(record, [], window, zone=UTC_ZONE)
        assert trend.peak is not None
        assert trend.peak.label == "peak 1,059,223 particles/m³"
        assert trend.limits[0].label == "action high 1,000,000 particles/m³"
        assert all("e+" not in t.label for t in trend.value_ticks)
        assert any(t.label == "1,000,000" for t in trend.value_ticks)

    def test_close_limits_get_labels_apart(self) -> None:
        """Alert 8.0 and action 8.1: their labels are stacked, at least a line apart."""
        trend = closed_trend(limits=LimitsInForce(alert_high=8.0, action_high=8.1))
        area = PlotArea.of(trend, 860, 300, font_size=SVG_FONT_SIZE)
        first, second = limit_label_positions(area)
        assert abs(first - second) >= SVG_FONT_SIZE * 0.85 * 1.25 - 1e-9
        root = svg_root(trend_svg(trend))
        ys = sorted(float(e.get("y", "nan")) for e in with_class(root, "limit-label action"))
        ys += sorted(float(e.get("y", "nan")) for e in with_class(root, "limit-label alert"))
        assert abs(ys[0] - ys[1]) >= SVG_FONT_SIZE * 0.85

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.floats(-50, 350, allow_nan=False), max_size=6),
        st.floats(1, 20),
    )
    def test_spread_keeps_order_gap_and_bounds(self, wanted: list[float], gap: float) -> None:
        placed = spread(wanted, gap, 0.0, 300.0)
        order = sorted(range(len(wanted)), key=lambda i: wanted[i])
        ranked = [placed[i] for i in order]
        assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(ranked))
        if len(wanted) * gap <= 300:  # room for all: inside the bounds
            assert all(-1e-9 <= p <= 300 + 1e-9 for p in placed)


class TestJson:
    """What the page's chart reads: breaks as None, times in epoch seconds, zone offsets."""

    def test_breaks_and_decimation_keep_extremes(self) -> None:
        values: list[float | None] = [5 + math.sin(i / 7) for i in range(5000)]
        values[1234] = 40.0  # a one-sample spike
        values[2500] = None  # a bad sample: the line breaks
        record = excursion(T0, T0 + timedelta(days=3), peak=40.0)
        window = trend_window(record, NOW + timedelta(days=5))
        readings = series(values, start=window[0])
        trend = build_trend(record, readings, window, zone=UTC_ZONE, max_points=500)
        body = trend_json(trend)
        drawn_values = [v for v in body["series"]["v"] if v is not None]
        assert len(drawn_values) <= 500 + 2
        assert max(drawn_values) == 40.0
        assert min(drawn_values) == min(v for v in values if v is not None)
        assert body["series"]["v"].count(None) == len(trend.runs) - 1 >= 1
        assert body["decimated"]
        assert "minimum and maximum" in body["note"]
        assert body["x_range"] == [t.timestamp() for t in trend.x_range]

    def test_zone_offsets_across_a_change(self) -> None:
        """The night the clocks go back: CEST until 01:00 UTC, CET after."""
        start, end = parse_ts("2026-10-24T12:00:00Z"), parse_ts("2026-10-26T12:00:00Z")
        offsets = zone_offsets(start, end, BERLIN)
        assert offsets == [
            (start.timestamp(), 7200, "CEST"),
            (parse_ts("2026-10-25T01:00:00Z").timestamp(), 3600, "CET"),
        ]
