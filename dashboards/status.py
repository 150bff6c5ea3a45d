"""The live status page of the QA app: every channel of the site now, and the open alarms.

Facilities see the site without Grafana: per area (name, classification, occupancy now),
per instrument, per channel the parameter, the newest value rounded with its unit, the
limits in force, a state badge, when the last reading was taken (site time, zone named,
and how long ago), the channel's open alarms (links to the record) and links to its
excursions and, when the site names ``dashboards.grafana_url``, to its Grafana panel over
the last six hours. Then every open alarm of the site. ``add_status`` adds it to the app
(``excursions.web.app.create_app(extensions=…)``, by the command that builds the app):

- ``GET /status``: the page, for every signed-in role (it shows no record's content);
  without a session a redirect to sign-in. It is complete without script; a small script
  of its own (``/static/status/status.js``, allowed by the app's CSP as a file of the app,
  never inline) polls the JSON every ``POLL_S`` second and updates values, states, times
  and the alarms in place: a new reading shows within two seconds.
- ``GET /api/v1/status``: the same as JSON (401 without a session). It changes nothing,
  so it needs no CSRF token; the session and role checks are the API's own dependencies.

A channel's state, first rule that holds (``channel_state``):

- ``stale``: no reading for longer than the channel's ``stale_after`` (``DEFAULT_STALE_AFTER_S``
  when it has none), or none in the last ``LOOKBACK`` at all — the data cannot be trusted
  to say what the room is doing;
- ``fault``: the last reading has bad quality or no value (a sensor or probe failure);
- ``action`` / ``alert``: the record store holds an open excursion of that level for it;
- ``normal``: otherwise (an ``uncertain`` quality is shown, not judged).

Readings come through ``envmon.timeseries.SeriesReader`` (one query for the whole site),
records through ``excursions.queries.open_records``; the clock is injected, so a test
reaches staleness by moving it.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
import dataclasses
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Cookie, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from dashboards.labels import parameter_label
from dashboards.naming import PanelLinks
from envmon.config import SiteConfig
from envmon.config.formatting import format_number
from envmon.display import duration_text, format_time, relative, unit_label
from envmon.display import label as human_label
from envmon.errors import EnvmonError
from envmon.models import Quality, Reading
from envmon.sensors import LimitSet, SensorSpec
from envmon.timeseries import SeriesReader
from envmon.timeutil import to_us
from excursions.policy import TEMPLATE_GLOBALS, Permission, may
from excursions.queries import OpenRecord, open_records
from excursions.users import User
from excursions.web.api import PREFIX, Services, role_dependency, user_dependency
from excursions.web.security import StrictJSONRoute, csrf_token

logger = logging.getLogger(__name__)

#: The status page's templates first, then the QA app's (``base.html``).
TEMPLATE_DIRS: Final = (
    Path(__file__).parent / "templates",
    Path(__file__).parents[1] / "excursions" / "web" / "templates",
)
TEMPLATES: Final = Jinja2Templates(directory=[str(d) for d in TEMPLATE_DIRS])
TEMPLATES.env.globals.update(TEMPLATE_GLOBALS)
STATIC: Final = Path(__file__).parent / "static"
STATIC_PREFIX: Final = "/static/status"
#: A channel without ``stale_after`` is shown stale after this long without a reading:
#: ten sample intervals of the slowest instruments envmon knows (particle counters, one a
#: minute), so that a missed sample or two never flags, while an hour's silence does.
DEFAULT_STALE_AFTER_S: Final = 600.0
#: How far back the newest reading is looked for; a channel silent for longer is shown
#: as having no reading in that time (and stale).
LOOKBACK: Final = timedelta(hours=24)
#: The span of the "open in Grafana" link of a channel.
GRAFANA_SPAN: Final = timedelta(hours=6)
#: How often the page's script asks for the status (seconds): every second, so that a new
#: reading is on the screen within two (one interval, the request and the query); with a
#: two-second interval it would be two seconds plus the request.
POLL_S: Final = 1
NORMAL, ALERT, ACTION, STALE, FAULT = "normal", "alert", "action", "stale", "fault"
#: Every state, in the order the page counts them.
STATES: Final = (ACTION, ALERT, FAULT, STALE, NORMAL)
STATE_LABELS: Final = {
    NORMAL: "Normal",
    ALERT: "Alert",
    ACTION: "Action",
    STALE: "Stale",
    FAULT: "Fault",
}
OCCUPANCY_LABELS: Final = {"at_rest": "at rest", "in_operation": "in operation"}
NOT_A_ROLE: Final = "your role may not see the status page"


@dataclass(frozen=True, slots=True)
class StatusServices:
    """What the status page reads: the site, the newest readings and (optionally) a clock.

    ``latest`` None: no time-series store is configured (every channel shows stale).
    ``clock`` None: the app's (``Services.clock``), which is what the records use too.
    """

    site: SiteConfig
    latest: SeriesReader | None
    clock: Callable[[], datetime] | None = None
    default_stale_after_s: float = DEFAULT_STALE_AFTER_S
    lookback: timedelta = LOOKBACK


@dataclass(frozen=True, slots=True)
class ChannelState:
    """A channel's state and, in a few words, why."""

    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AlarmView:
    """An open excursion or data gap as the page lists it."""

    id: str
    url: str
    kind: str
    level: str | None
    title: str
    sensor_id: str
    channel: str
    area: str
    since: datetime
    since_text: str
    ago: str
    qa_state: str
    excursions_url: str
    level_text: str = ""  #: the level (or "Data gap") as people read it
    qa_state_text: str = ""  #: the QA state as people read it


@dataclass(frozen=True, slots=True)
class ChannelView:
    """One channel now."""

    sensor_id: str
    label: str
    unit: str
    value: float | None
    value_text: str
    limits_text: str
    state: str
    state_label: str
    reason: str
    quality: str | None
    last_ts: datetime | None
    last_text: str
    ago: str
    excursions_url: str
    grafana_url: str | None
    alarms: list[AlarmView] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InstrumentView:
    """One instrument and its channels."""

    id: str
    name: str
    kind: str
    channels: list[ChannelView]


@dataclass(frozen=True, slots=True)
class AreaView:
    """One area: its classification, the occupancy now, its instruments."""

    id: str
    name: str
    classification: str
    occupancy: str
    counts: dict[str, int]
    summary: str
    attention: bool  #: a channel is not normal
    instruments: list[InstrumentView]


@dataclass(frozen=True, slots=True)
class StatusView:
    """The whole page (and the JSON of ``/api/v1/status``)."""

    site: str
    timezone: str
    now: datetime
    now_text: str
    counts: dict[str, int]
    summary: str
    store_error: str
    areas: list[AreaView]
    alarms: list[AlarmView]
    poll_s: int = POLL_S


def channel_state(
    reading: Reading | None,
    *,
    now: datetime,
    stale_after_s: float,
    open_level: str | None,
    lookback: timedelta = LOOKBACK,
) -> ChannelState:
    """Return a channel's state from its newest reading and its open excursion's level.

    The rules, first that holds: stale (no reading for longer than ``stale_after_s``, or
    none at all since ``now - lookback``), fault (bad quality or no value), the open
    excursion's level (``alert`` / ``action``), normal.
    """
    if reading is None:
        return ChannelState(STALE, f"no reading in the last {span_text(lookback.total_seconds())}")
    age = (now - reading.ts).total_seconds()
    if age > stale_after_s:
        return ChannelState(
            STALE, f"no reading for {span_text(age)} (stale after {span_text(stale_after_s)})"
        )
    if reading.quality is Quality.BAD:
        return ChannelState(FAULT, "sensor fault: bad quality")
    if reading.value is None:
        return ChannelState(FAULT, "sensor fault: no value")
    if open_level in (ACTION, ALERT):
        return ChannelState(open_level)  # the page lists the open excursion beside it
    if reading.quality is Quality.UNCERTAIN:
        return ChannelState(NORMAL, "uncertain quality")
    return ChannelState(NORMAL)


def limits_in_force(spec: SensorSpec, now: datetime) -> LimitSet:
    """Return the limits the channel is judged by at ``now`` (those of the occupancy then)."""
    rules = spec.rules
    if rules.limits_by_occupancy is not None and spec.schedule is not None:
        occupancy, _ = spec.schedule.state_at(to_us(now))
        return rules.limits_by_occupancy.get(occupancy, rules.limits)
    return rules.limits


def limits_text(limits: LimitSet) -> str:
    """Return the limits in a few words (``alert > 7 · action > 8``, ``alert outside 3–7``).

    Without the unit: the value beside them carries it.
    """
    parts = []
    for level, low, high in (
        ("alert", limits.alert_low, limits.alert_high),
        ("action", limits.action_low, limits.action_high),
    ):
        if low is not None and high is not None:
            between = " to " if low < 0 or high < 0 else "–"  # −25 to −15, not −25–−15
            parts.append(f"{level} outside {_number(low)}{between}{_number(high)}")
        elif high is not None:
            parts.append(f"{level} > {_number(high)}")
        elif low is not None:
            parts.append(f"{level} < {_number(low)}")
    # No break inside a part: "action >" never ends a line with its number on the next.
    return " · ".join(part.replace(" ", "\N{NO-BREAK SPACE}") for part in parts) or "none"


def _number(value: float) -> str:
    return format_number(value).replace("-", "−")


def grafana_linker(site: SiteConfig) -> Callable[[str, datetime, datetime], str | None] | None:
    """Return the site's "open in Grafana" links (``Services.grafana_link``), or None.

    None when the site's ``dashboards:`` section names no ``grafana_url``. The command
    layer builds it and hands it to the app: ``excursions`` does not import ``dashboards``.
    """
    grafana_url = site.dashboards.grafana_url
    if grafana_url is None:
        return None
    return PanelLinks(grafana_url, site.site_id, site.sensors())


def excursions_url(sensor_id: str) -> str:
    """Return the link to a channel's excursion list (the list filtered on the sensor)."""
    return "/excursions?" + urllib.parse.urlencode({"sensor": sensor_id})


def span_text(seconds: float) -> str:
    """Return a span for people: seconds under two minutes, else minutes and hours."""
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 2 * 86400:
        return duration_text(timedelta(seconds=seconds))
    return f"{round(seconds / 86400)} days"


def _summary(counts: Mapping[str, int]) -> str:
    """Return ``2 action · 1 stale`` (the states other than normal), or ``all normal``."""
    shown = [f"{counts[s]} {s}" for s in STATES if s != NORMAL and counts.get(s)]
    if not shown:
        return "all normal" if counts.get(NORMAL) else "no channels"
    return " · ".join(shown)


class StatusBuilder:
    """Builds the site's ``StatusView`` now (one read of the readings, one of the records)."""

    def __init__(self, services: Services, status: StatusServices) -> None:
        self.services = services
        self.status = status
        self.site = status.site
        self.zone = ZoneInfo(self.site.timezone)
        self.clock = status.clock or services.clock
        self.specs = self.site.sensor_map()
        self.display = self.site.display()  #: the site's digits per sensor, its zone

    def local(self, at: datetime, now: datetime) -> str:
        """Return a time of today as ``09:14:02 CET``, any other in full (site zone, named)."""
        if at.astimezone(self.zone).date() == now.astimezone(self.zone).date():
            return at.astimezone(self.zone).strftime("%H:%M:%S %Z")
        return format_time(at, self.zone)

    def readings(self, now: datetime) -> tuple[Mapping[str, Reading], str]:
        """Return the newest reading of every channel, and why there are none (or "")."""
        latest = self.status.latest
        if latest is None:
            return {}, "no time-series store is configured or written yet"
        try:
            return latest.latest(list(self.specs), now - self.status.lookback), ""
        except (EnvmonError, OSError) as exc:
            logger.warning("status: the time-series store did not answer: %s", exc)
            return {}, f"the time-series store did not answer: {exc}"

    def alarm(self, record: OpenRecord, now: datetime) -> AlarmView:
        """Return an open record as the page lists it."""
        sensor_id = str(record.sensor_id)
        spec = self.specs.get(sensor_id)
        channel = parameter_label(spec.parameter) if spec else sensor_id
        area = spec.area_name or spec.area if spec else str(record.area or "")
        if record.kind == "data_gap":
            title = "Data gap"
        else:
            level = str(record.level or "alert").capitalize()
            direction = record.direction
            title = f"{level} excursion" + (f", {direction}" if direction else "")
        since: datetime = record.start
        record_id = str(record.id)
        return AlarmView(
            id=record_id,
            url=f"/excursions/{urllib.parse.quote(record_id, safe='')}",
            kind=str(record.kind),
            level=record.level,
            title=title,
            sensor_id=sensor_id,
            channel=channel,
            area=area,
            since=since,
            since_text=self.local(since, now),
            ago=relative(since, now),
            qa_state=str(record.qa_state or ""),
            excursions_url=excursions_url(sensor_id),
            level_text=human_label(record.level or "data_gap"),
            qa_state_text=human_label(str(record.qa_state or "")),
        )

    def channel(
        self,
        spec: SensorSpec,
        label: str,
        reading: Reading | None,
        alarms: list[AlarmView],
        now: datetime,
    ) -> ChannelView:
        """Return one channel now."""
        levels = {a.level for a in alarms if a.kind == "excursion"}
        level = ACTION if ACTION in levels else ALERT if ALERT in levels else None
        stale_after = spec.rules.stale_after_s or self.status.default_stale_after_s
        state = channel_state(
            reading,
            now=now,
            stale_after_s=stale_after,
            open_level=level,
            lookback=self.status.lookback,
        )
        value = reading.value if reading is not None else None
        unit = reading.unit if reading is not None and reading.unit else spec.unit
        link = self.services.grafana_link
        return ChannelView(
            sensor_id=spec.sensor_id,
            label=label,
            unit=unit_label(unit),
            value=value,
            value_text=self.display.value(
                value, unit, sensor=spec.sensor_id, parameter=spec.parameter
            ),
            limits_text=limits_text(limits_in_force(spec, now)),
            state=state.state,
            state_label=STATE_LABELS[state.state],
            reason=state.reason,
            quality=reading.quality.value if reading is not None else None,
            last_ts=reading.ts if reading is not None else None,
            last_text=self.local(reading.ts, now) if reading is not None else "no reading",
            ago=relative(reading.ts, now, seconds=True) if reading is not None else "",
            excursions_url=excursions_url(spec.sensor_id),
            grafana_url=link(spec.sensor_id, now - GRAFANA_SPAN, now) if link else None,
            alarms=alarms,
        )

    def build(self) -> StatusView:
        """Return the site now."""
        now = self.clock()
        readings, error = self.readings(now)
        alarms = [self.alarm(r, now) for r in open_records(self.services.engine)]
        by_sensor: dict[str, list[AlarmView]] = {}
        for alarm in alarms:
            by_sensor.setdefault(alarm.sensor_id, []).append(alarm)
        areas = []
        total = dict.fromkeys(STATES, 0)
        for area in self.site.areas:
            instruments = []
            counts = dict.fromkeys(STATES, 0)
            occupancy = ""
            for instrument in area.instruments:
                channels = []
                for config in instrument.channels:
                    sensor_id = config.sensor_id or f"{instrument.id}.{config.channel_id}"
                    spec = self.specs[sensor_id]
                    label = parameter_label(spec.parameter)
                    if config.channel_id != spec.parameter:  # two channels of one parameter
                        label = f"{label} ({config.channel_id})"
                    view = self.channel(
                        spec, label, readings.get(sensor_id), by_sensor.get(sensor_id, []), now
                    )
                    counts[view.state] += 1
                    channels.append(view)
                    if spec.schedule is not None and not occupancy:
                        now_in, _ = spec.schedule.state_at(to_us(now))
                        occupancy = OCCUPANCY_LABELS.get(now_in.value, now_in.value)
                instruments.append(
                    InstrumentView(instrument.id, instrument.name, instrument.kind, channels)
                )
            for state, n in counts.items():
                total[state] += n
            areas.append(
                AreaView(
                    id=area.id,
                    name=area.name,
                    classification=area.classification,
                    occupancy=occupancy,
                    counts=counts,
                    summary=_summary(counts),
                    attention=counts[NORMAL] != sum(counts.values()),
                    instruments=instruments,
                )
            )
        return StatusView(
            site=self.site.name,
            timezone=self.zone.key,
            now=now,
            now_text=format_time(now, self.zone),
            counts=total,
            summary=_summary(total),
            store_error=error,
            areas=areas,
            alarms=alarms,
        )


def add_status(
    app: FastAPI,
    services: Services,
    status_services: StatusServices,
    *,
    site_name: str = "envmon",
) -> None:
    """Add ``/status``, ``/api/v1/status`` and the page's script to the QA app."""
    builder = StatusBuilder(services, status_services)
    current_user = services.user_of
    incidents_nav = any(getattr(route, "path", "") == "/incidents" for route in app.routes)
    app.state.status_page = True  # base.html links the page in its navigation

    @app.get("/status", include_in_schema=False)
    def status_page(
        request: Request, envmon_session: Annotated[str | None, Cookie()] = None
    ) -> Response:
        user = current_user(envmon_session)
        if user is None:
            return RedirectResponse("/login?next=/status", status_code=303)
        context: dict[str, object] = {
            "site_name": site_name,
            "site_timezone": builder.zone.key,
            "csrf": csrf_token(envmon_session or ""),
            "incidents_nav": incidents_nav,
            "user": user,
        }
        if not may(user.role, Permission.READ_STATUS):
            context["error"] = NOT_A_ROLE
            return TEMPLATES.TemplateResponse(request, "base.html", context, status_code=403)
        return TEMPLATES.TemplateResponse(
            request,
            "status.html",
            {
                **context,
                "s": builder.build(),
                "static": STATIC_PREFIX,
                "states": STATES,
                "state_labels": STATE_LABELS,
            },
        )

    router = APIRouter(prefix=PREFIX, route_class=StrictJSONRoute, tags=["status"])
    # The page's own polling is not a use of the session: it still ends when idle.
    signed_in = user_dependency(services, touch=False)

    @router.get("/status")
    def api_status(
        _user: Annotated[User, role_dependency(signed_in, Permission.READ_STATUS)],
    ) -> dict[str, Any]:
        """Return the site now: each channel's newest value, state and reading time; open alarms."""
        return dataclasses.asdict(builder.build())

    app.include_router(router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC), name="status-static")


def status_extension(
    services: Services, status_services: StatusServices, *, site_name: str = "envmon"
) -> Callable[[FastAPI], None]:
    """Return ``add_status`` bound to its services, for ``create_app(extensions=…)``."""

    def extend(app: FastAPI) -> None:
        add_status(app, services, status_services, site_name=site_name)

    return extend
