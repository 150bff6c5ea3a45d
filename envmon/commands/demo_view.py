"""The live terminal view of ``envmon demo``, and its plain lines when there is no terminal.

The view fits the terminal it is drawn on, from 80×24 up: a header that keeps the site, the
simulated clock in the site's zone, the QA app's address and the sign-in line in sight; one
line per channel with its value (rounded by the site's :class:`~envmon.display.Display`)
and its state; the newest alarms. When the channels do not fit, they are shown a page at a
time (pages turn every ``PAGE_S`` seconds) under a line that names every area with its
worst state. Wider terminals get fuller names and each channel's limits.

A channel's state is one of: no data yet, OK, beyond a limit while its delay or count runs
(``beyond alert · delay 4 min left``: no alarm yet), bad quality (not yet a fault), ALERT,
ACTION, STALE, FAULT.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from envmon.config import SiteConfig
from envmon.display import Display, format_value, unit_label
from envmon.models import AlarmEvent, AlarmKind, Reading, SystemEvent
from envmon.sensors import LimitSet, SensorSpec
from envmon.timeutil import US_PER_S, to_us
from stream.core import Pending, SensorState

#: Real seconds each page of channels stays on screen when they do not all fit.
PAGE_S: Final = 5.0
#: Below this width the view is compact: short names and units.
WIDE: Final = 120
#: From this width on, states are in full (``beyond alert · delay 4 min left``).
LONG_STATES: Final = 96
#: At least this many alarm lines stay on screen (the newest first).
MIN_ALARMS: Final = 4
MAX_ALARMS: Final = 12
MAX_PAGES_SENT: Final = 6

_STYLE: Final = {
    "ok": "green",
    "alert": "bold yellow",
    "action": "bold white on red",
    "stale": "bold magenta",
    "fault": "bold magenta",
    "pending": "yellow",
    "bad": "yellow",
    "waiting": "dim",
}
#: How bad a state is, for an area's worst state.
_RANK: Final = {
    "waiting": 0,
    "ok": 1,
    "bad": 2,
    "pending": 2,
    "alert": 3,
    "stale": 4,
    "fault": 4,
    "action": 5,
}
#: How a progress line counts the channels of each kind.
_KIND_WORDS: Final = {
    "waiting": "no data yet",
    "ok": "OK",
    "bad": "bad quality",
    "pending": "beyond a limit (delay running)",
    "alert": "alert",
    "stale": "stale",
    "fault": "fault",
    "action": "action",
}
#: Short parameter names for narrow terminals.
_SHORT: Final = {
    "temperature": "temp",
    "humidity": "RH",
    "co2": "CO₂",
    "o2": "O₂",
    "level": "level",
    "pressure": "P",
    "differential_pressure": "ΔP",
    "particles_0_3um": "≥0.3 µm",
    "particles_0_5um": "≥0.5 µm",
    "particles_1_0um": "≥1.0 µm",
    "particles_5_0um": "≥5.0 µm",
    "particles_10um": "≥10 µm",
    "particles_25um": "≥25 µm",
}


@dataclass(frozen=True, slots=True)
class ChannelState:
    """What the view says about one channel: a kind (a key of the styles) and its words."""

    kind: str
    text: str
    short: str


def channel_state(
    state: SensorState, pending: Pending | None, now: datetime, display: Display
) -> ChannelState:
    """Return a channel's state for people: stale, fault, action, alert, beyond, OK, waiting."""
    if state.stale:
        evidence = state.evidence
        if evidence is None:
            return ChannelState("stale", "STALE", "STALE")
        silent = display.duration((to_us(now) - evidence) / US_PER_S)
        return ChannelState("stale", f"STALE · no data for {silent}", f"STALE · no data {silent}")
    if state.fault:
        return ChannelState("fault", "FAULT · bad quality", "FAULT")
    level = max(
        state.high.level if state.high.open else 0, state.low.level if state.low.open else 0
    )
    if level:
        word = "ACTION" if level == 2 else "ALERT"
        side = "high" if state.high.open else "low"
        if pending is not None:
            long, short = _waiting(pending, display)
            return ChannelState(
                "action" if level == 2 else "alert", f"{word} {side} · {long}", f"{word} · {short}"
            )
        return ChannelState("action" if level == 2 else "alert", f"{word} {side}", word)
    if pending is not None:
        long, short = _waiting(pending, display)
        return ChannelState("pending", long, short)
    if state.last_ts is None:
        return ChannelState("waiting", "no data yet", "no data yet")
    if state.bad_run:
        samples = "sample" if state.bad_run == 1 else "samples"
        return ChannelState(
            "bad", f"bad quality · {state.bad_run} {samples}, no fault yet", "bad quality"
        )
    return ChannelState("ok", "OK", "OK")


def _waiting(pending: Pending, display: Display) -> tuple[str, str]:
    """Return the long and short words of a run still waiting for its delay or count."""
    beyond = f"beyond {pending.level.value}"
    long, short = [], []
    if pending.delay_left_s > 0:
        long.append(f"delay {display.duration(pending.delay_left_s)} left")
        minutes = math.ceil(pending.delay_left_s / 60) * 60  # to the minute when short
        short.append(f"{display.duration(minutes if minutes > 60 else pending.delay_left_s)} left")
    if pending.samples_left > 0:
        more = f"{pending.samples_left} more sample" + ("s" if pending.samples_left > 1 else "")
        long.append(more)
        short.append(more)
    if not long:
        return f"{beyond} · pending", f"{beyond} · pending"
    return f"{beyond} · {', '.join(long)}", f"{beyond} · {', '.join(short)}"


def short_unit(unit: str) -> str:
    """Return a unit as written in a narrow view (``particles/m3`` → ``/m³``)."""
    label = unit_label(unit)
    return "/m³" if label == "particles/m³" else label


def channel_value(
    reading: Reading | None, spec: SensorSpec, display: Display, *, compact: bool
) -> str:
    """Return a channel's last value rounded for its sensor, with its (short) unit."""
    if reading is None:
        return "—"
    if reading.value is None:
        return f"— ({reading.quality.value})"
    if not compact:
        return display.value(
            reading.value, spec.unit, sensor=spec.sensor_id, parameter=spec.parameter
        )
    number = display.value(reading.value, sensor=spec.sensor_id, parameter=spec.parameter)
    return f"{number} {short_unit(spec.unit)}".rstrip()


def channel_name(spec: SensorSpec, display: Display, *, compact: bool) -> str:
    """Return a channel's name: its instrument and its parameter (short when compact)."""
    parameter = _SHORT.get(spec.parameter) if compact else None
    return f"{spec.instrument} {parameter or display.label(spec.parameter)}"


def limits_text(spec: SensorSpec, display: Display, limits: LimitSet | None = None) -> str:
    """Return a channel's limits in force, e.g. ``alert > 7.0 · action > 8.0``.

    ``limits`` are those in force now (they may follow room occupancy); the channel's
    configured limits when not given.
    """
    limits = limits or spec.rules.limits
    parts = []
    for word, high, low in (
        ("alert", limits.alert_high, limits.alert_low),
        ("action", limits.action_high, limits.action_low),
    ):
        bounds = []
        if low is not None:
            bounds.append(
                "< " + display.value(low, sensor=spec.sensor_id, parameter=spec.parameter)
            )
        if high is not None:
            bounds.append(
                "> " + display.value(high, sensor=spec.sensor_id, parameter=spec.parameter)
            )
        if bounds:
            parts.append(f"{word} {' '.join(bounds)}")
    return " · ".join(parts)


def area_title(site: SiteConfig, area_id: str, *, compact: bool) -> str:
    """Return an area as the view names it: its id when compact, else its name's first part."""
    if compact:
        return area_id
    for area in site.areas:
        if area.id == area_id and area.name:
            return area.name.split(" (", 1)[0]
    return area_id


def event_time(display: Display, at: datetime, *, compact: bool) -> str:
    """Return an event's time in the site's zone (only the time of day when compact)."""
    text = display.time(at)
    return text.split(" ", 1)[1] if compact else text


def _detail(event: SystemEvent) -> str:
    """Return a system event's detail without repeating the event's own word."""
    word = event.event.value.replace("_", " ")
    detail = event.detail.strip()
    if detail.lower().startswith(word + " "):
        detail = detail[len(word) + 1 :]
    return detail


def event_line(event: AlarmEvent | SystemEvent, display: Display, units: Mapping[str, str]) -> str:
    """Return one alarm or system event as a plain line (the demo's output without a terminal)."""
    when = display.time(event.ts)
    if isinstance(event, AlarmEvent):
        words = [when, display.label(event.event.value)]
        if event.level is not None:
            words.append(display.label(event.level.value))
        words.append(event.sensor_id)
        if event.value is not None:
            unit = units.get(event.sensor_id, "")
            value = display.value(event.value, unit, sensor=event.sensor_id)
            if event.event is AlarmKind.RATE_OF_CHANGE:
                value += "/min"
            words.append("value " + value)
        elif event.detail:  # e.g. "bad quality"; a value says the rest
            words.append(f"({event.detail})")
        return "  ".join(words)
    detail = _detail(event)
    return f"{when}  {display.label(event.event.value)}  {event.component}" + (
        f"  ({detail})" if detail else ""
    )


def progress_line(
    display: Display,
    *,
    now: datetime,
    readings: int,
    alarms: int,
    excursions: int,
    buffered: int,
    states: Iterable[ChannelState],
) -> str:
    """Return one plain progress line: the simulated time, counts and the channels' states."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state.kind] = counts.get(state.kind, 0) + 1
    kinds = ", ".join(
        f"{n} {_KIND_WORDS[kind]}"
        for kind, n in sorted(counts.items(), key=lambda item: -_RANK[item[0]])
    )
    return (
        f"{display.time(now)}  readings {_count(readings)} · alarm events {_count(alarms)}"
        f" · excursions {_count(excursions)} · buffered {_count(buffered)} · channels: {kinds}"
    )


def _count(n: int) -> str:
    return format_value(n, decimals=0)


@dataclass(frozen=True, slots=True)
class _Row:
    spec: SensorSpec
    state: ChannelState
    value: str
    short_value: str
    limits: LimitSet | None = None


class DemoView:
    """The whole screen, laid out for the console's width and height when it is drawn.

    Never more lines than the console is high nor wider than it is wide: the header and the
    alarm lines always show; the channels show in full or a page at a time.
    """

    def __init__(
        self,
        site: SiteConfig,
        display: Display,
        *,
        now: datetime,
        speed: float,
        rows: Sequence[_Row],
        recent: Sequence[AlarmEvent | SystemEvent],
        counters: Mapping[str, Mapping[str, int]],
        excursions: int,
        buffered: int,
        app_url: str | None,
        passwords: Mapping[str, str] | None,
        pages: Sequence[tuple[datetime, str, str]],
        page_at: float,
        readings: int = 0,
    ) -> None:
        self.site = site
        self.display = display
        self.now = now
        self.speed = speed
        self.rows = rows
        self.recent = list(reversed(recent))  # newest first
        self.counters = counters
        self.excursions = excursions
        self.buffered = buffered
        self.app_url = app_url
        self.passwords = passwords
        self.pages = list(reversed(pages))
        self.page_at = page_at
        self.readings = readings
        self.units = {row.spec.sensor_id: row.spec.unit for row in rows}

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Lay the screen out for ``options``' width and height (the console's)."""
        width = options.max_width
        height = options.height or options.size.height
        compact = width < WIDE
        header = self._header(width)
        footer = self._footer(width) if height >= 30 else []
        channels = len(self.rows)
        alarms_wanted = min(max(len(self.recent), 1), MAX_ALARMS)
        fixed = len(header) + 1 + 1 + len(footer)  # + table head + alarm rule
        full = fixed + channels + min(alarms_wanted, MIN_ALARMS) <= height
        if full:
            strip: list[Text] = []
            page_rows: Sequence[_Row] = self.rows
            alarm_rows = min(alarms_wanted, height - fixed - channels)
        else:
            alarm_rows = max(1, min(alarms_wanted, MIN_ALARMS + max(0, height - 24) // 4))
            strip = self._strip(width, [self.rows], 0)  # its height, for the page size
            per_page = max(1, height - fixed - alarm_rows - len(strip))
            pages = _paginate(self.rows, per_page)
            index = int(self.page_at // PAGE_S) % len(pages)
            strip = self._strip(width, pages, index)
            page_rows = pages[index]
        yield from header
        yield from strip
        yield self._table(page_rows, compact, width)
        yield Rule(
            Text(f"recent alarms, newest first ({self.display.zone.key})", style="bold"),
            align="left",
            style="dim",
        )
        yield self._alarms(alarm_rows, compact)
        spare = height - len(header) - len(strip) - 1 - len(page_rows) - 1 - alarm_rows
        spare -= len(footer)
        if full and self.pages and spare >= 3:
            shown = min(len(self.pages), MAX_PAGES_SENT, spare - 1)
            yield Rule(
                Text("pages sent (embedded mail server)", style="bold"), align="left", style="dim"
            )
            yield self._pages_sent(shown, compact)
        yield from footer

    # ------------------------------------------------------------------ parts

    def _header(self, width: int) -> list[Text]:
        zone = self.display.zone.key
        clock = self.display.time(self.now.replace(microsecond=0))
        title = Text.assemble(
            (self.site.name, "bold"),
            "  ",
            (clock, "bold cyan"),
            f" ({zone})",
            f"  {self.speed:g}× real time" if width >= 100 else f"  {self.speed:g}×",
        )
        lines = [title]
        facts = f"excursions {_count(self.excursions)} · buffered {_count(self.buffered)}"
        if self.readings:
            facts = f"readings {_count(self.readings)} · {facts}"
        if self.app_url:
            lines.append(Text.assemble("QA app ", (self.app_url, "bold underline"), f"  {facts}"))
            if self.passwords:
                lines.extend(
                    _wrap(
                        "sign in ",
                        (f"{user} {password}" for user, password in self.passwords.items()),
                        width,
                        style="bold",
                    )
                )
            else:
                lines.append(Text("sign in with the demo users printed above the view"))
        else:
            lines.append(Text(f"QA app off  {facts}"))
        for line in lines:
            line.no_wrap = True
            line.truncate(width, overflow="ellipsis")
        return lines

    def _strip(self, width: int, pages: Sequence[Sequence[_Row]], index: int) -> list[Text]:
        """One line (or more) naming every area with its worst state; this page's in bold."""
        on_page = {row.spec.area for row in pages[index]}
        worst: dict[str, ChannelState] = {}
        for row in self.rows:
            area = row.spec.area
            if area not in worst or _RANK[row.state.kind] > _RANK[worst[area].kind]:
                worst[area] = row.state
        words = []
        for area, state in worst.items():
            word = Text(area, style="bold" if area in on_page else "dim")
            word.append(" ")
            word.append(state.short.split(" · ")[0], style=_STYLE[state.kind])
            words.append(word)
        return _wrap(f"page {index + 1}/{len(pages)}  ", words, width)

    def _table(self, rows: Sequence[_Row], compact: bool, width: int) -> Table:
        table = Table(
            box=None,
            show_edge=False,
            pad_edge=False,
            header_style="dim",
            padding=(0, 1),
        )
        table.add_column("area", no_wrap=True, overflow="ellipsis")
        table.add_column("channel", no_wrap=True, overflow="ellipsis")
        table.add_column("value", justify="right", no_wrap=True)
        table.add_column("state", no_wrap=True, overflow="ellipsis")
        detail = width >= WIDE
        if detail:
            table.add_column("limits", no_wrap=True, overflow="ellipsis", style="dim")
        previous = ""
        for row in rows:
            spec = row.spec
            area = spec.area if spec.area != previous else ""
            previous = spec.area
            cells: list[RenderableType] = [
                Text(area_title(self.site, area, compact=compact) if area else "", style="bold"),
                channel_name(spec, self.display, compact=compact),
                row.short_value if compact else row.value,
                Text.assemble(  # styled words, not a styled cell
                    (
                        row.state.text if width >= LONG_STATES else row.state.short,
                        _STYLE[row.state.kind],
                    )
                ),
            ]
            if detail:
                cells.append(limits_text(spec, self.display, row.limits))
            table.add_row(*cells)
        return table

    def _alarms(self, count: int, compact: bool) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column("time", no_wrap=True)
        table.add_column("event", no_wrap=True)
        table.add_column("level", no_wrap=True)
        table.add_column("sensor", no_wrap=True, overflow="ellipsis")
        table.add_column("value", no_wrap=True, justify="right")
        if not self.recent:
            table.add_row("", Text("no alarms yet", style="dim"), "", "", "")
        for event in self.recent[:count]:
            when = event_time(self.display, event.ts, compact=compact)
            name = self.display.label(event.event.value)
            if isinstance(event, AlarmEvent):
                level = event.level.value if event.level else ""
                style = _STYLE["action" if level == "action" else "alert"] if level else ""
                unit = self.units.get(event.sensor_id, "")
                value = ""
                if event.value is not None:
                    number = self.display.value(event.value, sensor=event.sensor_id)
                    value = f"{number} {short_unit(unit) if compact else unit_label(unit)}"
                    if event.event is AlarmKind.RATE_OF_CHANGE:
                        value += "/min"
                table.add_row(
                    when,
                    Text.assemble((name, style)),
                    Text.assemble((self.display.label(level), style)),
                    event.sensor_id,
                    value.rstrip(),
                )
            else:
                what = event.component
                detail = _detail(event)
                if detail and not compact:
                    what += f" ({detail})"
                table.add_row(when, Text(name, style="cyan"), "", what, "")
        return table

    def _pages_sent(self, count: int, compact: bool) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column("time", no_wrap=True)
        table.add_column("to", no_wrap=True, overflow="ellipsis", max_width=30)
        table.add_column("page", no_wrap=True, overflow="ellipsis")
        for at, to, subject in self.pages[:count]:
            table.add_row(event_time(self.display, at, compact=compact), to, subject)
        return table

    def _footer(self, width: int) -> list[Text]:
        words = [
            f"{source}: "
            + ", ".join(
                f"{self.display.label(k).lower()} {_count(v)}" for k, v in values.items() if v
            )
            for source, values in self.counters.items()
        ]
        if not words:
            return []
        return _wrap("", (Text(word, style="dim") for word in words), width, sep="   ")[:2]


def _paginate(rows: Sequence[_Row], per_page: int) -> list[list[_Row]]:
    """Split rows into pages of at most ``per_page``, keeping an area whole when it fits."""
    pages: list[list[_Row]] = [[]]
    for area_rows in _by_area(rows):
        page = pages[-1]
        if page and len(page) + len(area_rows) > per_page and len(area_rows) <= per_page:
            pages.append(page := [])
        for row in area_rows:
            if len(page) >= per_page:
                pages.append(page := [])
            page.append(row)
    return pages


def _by_area(rows: Sequence[_Row]) -> Iterator[list[_Row]]:
    group: list[_Row] = []
    for row in rows:
        if group and row.spec.area != group[0].spec.area:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _wrap(
    prefix: str,
    words: Iterable[str | Text],
    width: int,
    *,
    style: str = "",
    sep: str = " · ",
) -> list[Text]:
    """Return ``words`` after ``prefix`` on as few lines of ``width`` as they need."""
    lines = [Text.assemble((prefix, "dim"))]
    indent = " " * len(prefix)
    for word in words:
        text = word if isinstance(word, Text) else Text(word, style=style)
        line = lines[-1]
        gap = sep if line.cell_len > len(prefix) else ""
        if line.cell_len > len(prefix) and line.cell_len + len(gap) + text.cell_len > width:
            lines.append(line := Text(indent))
            gap = ""
        line.append(gap, style="dim")
        line.append_text(text)
    for line in lines:
        line.no_wrap = True
        line.truncate(width, overflow="ellipsis")
    return lines


def render(
    site: SiteConfig,
    *,
    now: datetime,
    speed: float,
    states: Mapping[str, SensorState],
    last: Mapping[str, Reading],
    recent: Sequence[AlarmEvent | SystemEvent],
    counters: Mapping[str, Mapping[str, int]],
    excursions: int,
    buffered: int,
    app_url: str | None = None,
    pages: Sequence[tuple[datetime, str, str]] = (),
    pending: Mapping[str, Pending] | None = None,
    passwords: Mapping[str, str] | None = None,
    display: Display | None = None,
    page_at: float = 0.0,
    limits: Mapping[str, LimitSet] | None = None,
    readings: int = 0,
) -> DemoView:
    """Build the whole screen; it lays itself out when drawn.

    ``states`` and ``last`` are each channel's evaluation state and last reading,
    ``pending`` its run beyond a limit still waiting for its delay or count,
    ``passwords`` the demo users' (shown with the app's address), ``page_at`` a real-time
    clock in seconds that turns the pages when the channels do not fit, ``limits`` each
    channel's limits in force now (else its configured ones), ``readings`` how many the
    stream evaluated.
    """
    display = display or site.display()
    waiting = pending or {}
    rows = []
    for spec in site.sensors():
        state = channel_state(states[spec.sensor_id], waiting.get(spec.sensor_id), now, display)
        reading = last.get(spec.sensor_id)
        rows.append(
            _Row(
                spec,
                state,
                channel_value(reading, spec, display, compact=False),
                channel_value(reading, spec, display, compact=True),
                (limits or {}).get(spec.sensor_id),
            )
        )
    return DemoView(
        site,
        display,
        now=now,
        speed=speed,
        rows=rows,
        recent=recent,
        counters=counters,
        excursions=excursions,
        buffered=buffered,
        app_url=app_url,
        passwords=passwords,
        pages=pages,
        page_at=page_at,
        readings=readings,
    )
