"""The Grafana dashboards of a site, generated from its validated configuration.

What Grafana draws as a limit is what the stream processor enforces: the limit lines come
from the ``limits`` series the processor writes as it evaluates (``stream.timeseries.context``), and
the panels, names, units and uids from the same site file. Four kinds of dashboard:

- **site overview** (``<site>-overview``): counts of channels in action, alert, stale and
  fault; the open alarms; per area every channel's current value, state and time since
  its last reading (the ``status`` series); the recent alarm events;
- **one per area** (``<site>-area-<area>``): the channels' current state, a state
  timeline (alarm state and reading quality per channel), and per instrument the trend of
  each channel with its alert and action limits as they were in force at each moment,
  excursions as regions and alarm events as annotations; data gaps and bad-quality
  stretches stay gaps (``fill(null)``, joined only across gaps shorter than the channel's
  stale-data timeout);
- **cold storage** (``<site>-cold``): freezers, fridges and LN2 dewars;
- **particles** (``<site>-particles``): every counter, both sizes, the maximum per
  interval so that peaks are never averaged away.

Every query is InfluxQL on the ``stream.timeseries.schema`` / ``stream.timeseries.context``
measurements through the data source of fixed uid ``envmon-influxdb``; every dashboard is
``editable: false`` (the generated JSON is the controlled configuration item).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards import naming
from dashboards.influxql import (
    AnnotationTargetBuilder,
    InfluxAnnotationTarget,
    InfluxQL,
    Sql,
    datasource_ref,
    ident,
    regex_of,
    tag_is,
)
from dashboards.labels import (
    COLD_KINDS,
    KIND_LABELS,
    PARTICLE_KIND,
    QUALITY_STYLE,
    STATUS_STYLE,
    grafana_unit,
    parameter_label,
)
from envmon.config import SiteConfig
from envmon.config.schema import AreaConfig, InstrumentConfig
from envmon.display import unit_label
from envmon.sensors import SensorSpec
from stream.timeseries import context as tscontext
from stream.timeseries import schema as tsschema

#: How far back the overviews look for the processor's status points (written every minute).
STATUS_WINDOW: Final = "10m"
#: The trends' smallest interval: one point per minute at most, whatever the zoom.
TREND_INTERVAL: Final = "1m"
SCHEMA_VERSION: Final = 41  # Grafana 11.6's dashboard schema version
GRID_WIDTH: Final = 24
TAGS: Final = ["envmon"]
TREND_TIME: Final = ("now-24h", "now")
OVERVIEW_TIME: Final = ("now-6h", "now")

_LIMIT_FIELDS: Final = (
    ("action_high", "Action limit (high)", "red"),
    ("alert_high", "Alert limit (high)", "orange"),
    ("alert_low", "Alert limit (low)", "orange"),
    ("action_low", "Action limit (low)", "red"),
)


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel as the dashboards show it."""

    spec: SensorSpec
    instrument: InstrumentConfig
    area: AreaConfig

    @property
    def label(self) -> str:
        """``Temperature`` (the parameter's human name)."""
        return parameter_label(self.spec.parameter)


def channels_of(site: SiteConfig) -> list[Channel]:
    """Return every channel of the site, in the site file's order."""
    specs = {spec.sensor_id: spec for spec in site.sensors()}
    out: list[Channel] = []
    for area in site.areas:
        for instrument in area.instruments:
            for channel in instrument.channels:
                sensor_id = channel.sensor_id or f"{instrument.id}.{channel.channel_id}"
                out.append(Channel(specs[sensor_id], instrument, area))
    return out


def to_json(builder: dash.Dashboard) -> dict[str, Any]:
    """Return a dashboard's JSON model (what Grafana stores), through the SDK's encoder."""
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return data


# -- common pieces --------------------------------------------------------------------


def _site_filter(site: SiteConfig) -> str:
    return tag_is(tsschema.TAG_SITE, site.site_id)


def _mapping(options: dict[str, tuple[str, str]]) -> model.ValueMap:
    return model.ValueMap(
        options={
            key: model.ValueMappingResult(text=text, color=color, index=index)
            for index, (key, (text, color)) in enumerate(options.items())
        }
    )


def _status_mapping() -> model.ValueMap:
    return _mapping({str(code): style for code, style in STATUS_STYLE.items()})


def _base_thresholds() -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=None, color="text")])
    )


def _override(
    name: str, *properties: tuple[str, object]
) -> dash.DashboardFieldConfigSourceOverrides:
    return (
        dash.DashboardFieldConfigSourceOverrides()
        .matcher(model.MatcherConfig(id_val="byName", options=name))
        .properties(
            [model.DynamicConfigValue(id_val=key, value=value) for key, value in properties]
        )
    )


def _names(channels: Iterable[Channel]) -> dict[str, tuple[str, str]]:
    """Instrument ids → their names, for value mappings."""
    return {c.instrument.id: (c.instrument.name or c.instrument.id, "text") for c in channels}


def _status_table(
    site: SiteConfig, title: str, channels: Sequence[Channel], where: str, panel_id: int
) -> table.Panel:
    """Return a table of channels: instrument, channel, state, value, unit, last reading."""
    query = (
        f'SELECT last("code") AS "state", last("value") AS "value",'
        f' last("last_reading") AS "last_reading" FROM {ident(tscontext.STATUS)}'
        f" WHERE {_site_filter(site)} AND {where} AND time > now() - {STATUS_WINDOW}"
        f' GROUP BY "area", "instrument", "parameter", "sensor", "unit"'
    )
    parameters = {c.spec.parameter: (c.label, "text") for c in channels}
    units = {c.spec.unit: (unit_label(c.spec.unit), "text") for c in channels}
    areas = {c.area.id: (c.area.name or c.area.id, "text") for c in channels}
    return (
        table.Panel()
        .id(panel_id)
        .title(title)
        .frame_index(0)
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        .datasource(datasource_ref())
        .with_target(InfluxQL("A", query).table())
        .height(max(4, 3 + len(channels)))
        .span(GRID_WIDTH)
        .no_value("No status in the last 10 minutes: is the stream processor running?")
        .thresholds(_base_thresholds())
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "sensor": True},
                    "indexByName": {
                        "area": 0,
                        "instrument": 1,
                        "parameter": 2,
                        "state": 3,
                        "value": 4,
                        "unit": 5,
                        "last_reading": 6,
                    },
                    "renameByName": {
                        "area": "Area",
                        "instrument": "Instrument",
                        "parameter": "Channel",
                        "state": "State",
                        "value": "Value",
                        "unit": "Unit",
                        "last_reading": "Last reading",
                    },
                },
            )
        )
        .overrides(
            [
                _override(
                    "state",
                    ("mappings", [_status_mapping()]),
                    ("custom.cellOptions", {"type": "color-background"}),
                    ("custom.width", 110),
                ),
                _override("last_reading", ("unit", "dateTimeFromNow"), ("custom.width", 150)),
                _override("instrument", ("mappings", [_mapping(_names(channels))])),
                _override("parameter", ("mappings", [_mapping(parameters)])),
                _override("unit", ("mappings", [_mapping(units)]), ("custom.width", 120)),
                _override("area", ("mappings", [_mapping(areas)])),
                _override("value", ("decimals", 2), ("custom.width", 120)),
            ]
        )
    )


def _count_stat(
    site: SiteConfig, panel_id: int, title: str, condition: str, color: str
) -> stat.Panel:
    query = (
        f'SELECT count("code") FROM (SELECT last("code") AS "code" FROM'
        f" {ident(tscontext.STATUS)} WHERE {_site_filter(site)} AND time > now() - {STATUS_WINDOW}"
        f' GROUP BY "sensor") WHERE {condition}'
    )
    return (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .datasource(datasource_ref())
        .with_target(InfluxQL("A", query).alias(title))
        .height(4)
        .span(6)
        .no_value("0")
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.CENTER)
        .text_mode(common.BigValueTextMode.VALUE)
        .wide_layout(True)
        .show_percent_change(False)
        .percent_change_color_mode(common.PercentChangeColorMode.STANDARD)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(
            dash.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps(
                [model.Threshold(value=None, color="green"), model.Threshold(value=1, color=color)]
            )
        )
    )


def _annotations(site: SiteConfig, where: str) -> list[Builder[model.AnnotationQuery]]:
    """Excursions and data gaps as regions, alarm events as points."""
    records = (
        f'SELECT "text", "end_ms", "level", "kind" FROM {ident(tscontext.RECORD)}'
        f" WHERE {_site_filter(site)} AND {where} AND $timeFilter"
    )
    alarms = (
        f'SELECT "text", "event", "level" FROM {ident(tscontext.ALARM)}'
        f" WHERE {_site_filter(site)} AND {where} AND $timeFilter"
    )
    return [
        dash.AnnotationQuery()
        .name("Excursions and data gaps")
        .datasource(datasource_ref())
        .enable(True)
        .icon_color("red")
        .target(
            AnnotationTargetBuilder(
                InfluxAnnotationTarget(records, text="text", tags="kind,level", time_end="end_ms")
            )
        ),
        dash.AnnotationQuery()
        .name("Alarm events")
        .datasource(datasource_ref())
        .enable(True)
        .icon_color("orange")
        .target(
            AnnotationTargetBuilder(InfluxAnnotationTarget(alarms, text="text", tags="event,level"))
        ),
    ]


def _dashboard(
    site: SiteConfig, uid: str, title: str, description: str, time: tuple[str, str]
) -> dash.Dashboard:
    refresh = f"{max(5, round(site.dashboards.refresh))}s"
    builder = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([*TAGS, site.site_id])
        .timezone(site.timezone)
        .time(*time)
        .refresh(refresh)
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .timepicker(dash.TimePicker().refresh_intervals(["5s", "10s", "30s", "1m", "5m", "15m"]))
        .readonly()
    )
    builder._internal.editable = False
    return builder


def _custom_variable(
    name: str, label: str, values: Sequence[tuple[str, str]]
) -> dash.CustomVariable:
    """Return a multi-value variable with "All" (values as ``text : value`` pairs)."""
    query = ",".join(f"{text.replace(',', ' ')} : {value}" for text, value in values)
    return (
        dash.CustomVariable(name)
        .label(label)
        .values(query)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def _links(site: SiteConfig) -> list[Builder[model.DashboardLink]]:
    return [
        dash.DashboardLink("envmon dashboards")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags([*TAGS, site.site_id])
        .as_dropdown(True)
        .include_vars(False)
        .keep_time(True)
    ]


# -- the site overview ----------------------------------------------------------------


def overview(site: SiteConfig) -> dict[str, Any]:
    """Return the site overview dashboard."""
    channels = channels_of(site)
    areas = [(area.name or area.id, area.id) for area in site.areas]
    builder = _dashboard(
        site,
        naming.uid(site.site_id, naming.OVERVIEW),
        f"{site.name} — site overview",
        "Every area's channels: current value, state (normal, alert, action, stale, fault) and"
        " time since the last reading; open alarms; recent alarm events. Generated by envmon"
        " from the site file: do not edit here.",
        OVERVIEW_TIME,
    )
    builder.with_variable(_custom_variable("area", "Area", areas))
    builder.links(_links(site))
    for panel_id, (title, condition, color) in enumerate(
        (
            ("Channels in action", '"code" = 2', "red"),
            ("Channels in alert", '"code" = 1', "orange"),
            ("Channels stale (no data)", '"code" = 3', "purple"),
            ("Channels in sensor fault", '"code" = 4', "dark-red"),
        ),
        start=1,
    ):
        builder.with_panel(_count_stat(site, panel_id, title, condition, color))
    open_alarms = (
        'SELECT "state", "value", "last_reading" FROM (SELECT last("code") AS "state",'
        ' last("value") AS "value", last("last_reading") AS "last_reading" FROM'
        f' {ident(tscontext.STATUS)} WHERE {_site_filter(site)} AND "area" =~ /^$area$/'
        f' AND time > now() - {STATUS_WINDOW} GROUP BY "area", "instrument", "parameter",'
        ' "sensor", "unit") WHERE "state" > 0 GROUP BY "area", "instrument", "parameter",'
        ' "sensor", "unit"'
    )
    alarms_table = _status_table(site, "Open alarms", channels, '"area" =~ /^$area$/', 5)
    alarms_table._internal.targets = [InfluxQL("A", open_alarms).table().build()]
    alarms_table.no_value("No open alarms").height(6)
    builder.with_panel(alarms_table)
    panel_id = 10
    for area in site.areas:
        members = [c for c in channels if c.area.id == area.id]
        builder.with_row(dash.Row(f"{area.name or area.id} — {area.classification}").id(panel_id))
        builder.with_panel(
            _status_table(
                site, f"{area.name or area.id}", members, tag_is("area", area.id), panel_id + 1
            ).links(
                [
                    dash.DashboardLink("Area dashboard")
                    .type(model.DashboardLinkType.LINK)
                    .url(f"/d/{naming.uid(site.site_id, naming.AREA, area.id)}")
                    .keep_time(True)
                ]
            )
        )
        panel_id += 2
    builder.with_row(dash.Row("Recent alarm events").id(panel_id))
    events = (
        f'SELECT "text", "value", "limit_value" FROM {ident(tscontext.ALARM)} WHERE'
        f' {_site_filter(site)} AND "area" =~ /^$area$/ AND $timeFilter'
        ' GROUP BY "area", "event", "level" ORDER BY time DESC LIMIT 100'
    )
    builder.with_panel(
        table.Panel()
        .id(panel_id + 1)
        .frame_index(0)
        .show_header(True)
        .title("Alarm events in the time range (newest first)")
        .datasource(datasource_ref())
        .with_target(InfluxQL("A", events).table())
        .height(10)
        .span(GRID_WIDTH)
        .no_value("No alarm events in the time range")
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "indexByName": {"Time": 0, "area": 1, "event": 2, "level": 3, "text": 4},
                    "renameByName": {
                        "area": "Area",
                        "event": "Event",
                        "level": "Level",
                        "text": "What happened",
                        "value": "Value",
                        "limit_value": "Limit",
                    },
                },
            )
        )
        .overrides([_override("Time", ("unit", "dateTimeAsIso"), ("custom.width", 190))])
    )
    if site.dashboards.record_store is not None:
        builder.with_row(dash.Row("QA records (the record store)").id(panel_id + 2))
        builder.with_panel(_records_table(panel_id + 3))
    builder.annotations(_annotations(site, '"area" =~ /^$area$/'))
    return to_json(builder)


#: The QA record store's excursion records that QA has not closed yet (PostgreSQL).
OPEN_RECORDS_SQL: Final = (
    'SELECT start AS "Start", "end" AS "End", area AS "Area", instrument AS "Instrument",'
    ' parameter AS "Channel", kind AS "Kind", level AS "Level", qa_state AS "QA state"'
    " FROM excursion_records WHERE qa_state <> 'closed' ORDER BY start DESC LIMIT 200"
)


def _records_table(panel_id: int) -> table.Panel:
    """Return the table of records QA has not closed, from the record store."""
    states = {
        "open": ("Open", "red"),
        "acknowledged": ("Acknowledged", "orange"),
        "under_review": ("Under review", "blue"),
        "reopened": ("Reopened", "red"),
    }
    return (
        table.Panel()
        .id(panel_id)
        .title("Excursion records QA has not closed (newest first)")
        .datasource(Sql("A", "").build().datasource)
        .with_target(Sql("A", OPEN_RECORDS_SQL))
        .frame_index(0)
        .show_header(True)
        .height(8)
        .span(GRID_WIDTH)
        .no_value("Every record is closed")
        .overrides(
            [
                _override("QA state", ("mappings", [_mapping(states)])),
                _override("Start", ("unit", "dateTimeAsIso")),
                _override("End", ("unit", "dateTimeAsIso")),
            ]
        )
    )


# -- one per area ---------------------------------------------------------------------


def _trend(site: SiteConfig, channel: Channel, panel_id: int, width: int) -> timeseries.Panel:
    spec = channel.spec
    sensor = tag_is(tsschema.TAG_SENSOR, spec.sensor_id)
    particles = spec.instrument_kind == PARTICLE_KIND
    reading = ident(tsschema.MEASUREMENT)
    if particles:  # counts: the maximum per interval, so a burst is never averaged away
        values = f'max("value") AS "{channel.label} (max)"'
    else:
        values = f'mean("value") AS "{channel.label}"'
    value_query = (
        f"SELECT {values} FROM {reading} WHERE {_site_filter(site)} AND {sensor}"
        " AND $timeFilter GROUP BY time($__interval) fill(null)"
    )
    limits = [f for f in _LIMIT_FIELDS if _has_limit(spec, f[0])]
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(f"{channel.label} — {channel.instrument.name or channel.instrument.id}")
        .description(
            f"Sensor {spec.sensor_id}. Limits as they were in force at each moment"
            + (" (at rest / in operation by the room's schedule)." if _scheduled(spec) else ".")
            + (f" Alarm delay {spec.rules.delay_s:g} s." if spec.rules.delay_s else "")
        )
        .datasource(datasource_ref())
        .with_target(InfluxQL("A", value_query))
        .interval(TREND_INTERVAL)
        .height(8)
        .span(width)
        .unit(grafana_unit(spec.unit))
        .line_width(2)
        .fill_opacity(8)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(_join_below_ms(spec))
        .legend(_legend())
        .thresholds(_base_thresholds())
    )
    if limits:
        selects = ", ".join(f'last("{name}") AS "{label}"' for name, label, _color in limits)
        limit_query = (
            f"SELECT {selects} FROM {ident(tscontext.LIMITS)} WHERE {_site_filter(site)}"
            f" AND {sensor} AND time >= ${{__from}}ms - {tscontext.LIMITS_LOOKBACK}"
            " AND time <= ${__to}ms GROUP BY time($__interval) fill(previous)"
        )
        panel.with_target(InfluxQL("B", limit_query))
        panel.overrides(
            [
                _override(
                    label,
                    ("color", {"mode": "fixed", "fixedColor": color}),
                    ("custom.lineStyle", {"fill": "dash", "dash": [10, 6]}),
                    ("custom.lineInterpolation", "stepAfter"),
                    ("custom.fillOpacity", 0),
                    ("custom.lineWidth", 1),
                    ("custom.spanNulls", True),
                )
                for _name, label, color in limits
            ]
        )
    if particles:
        panel.scale_distribution(_log_scale())
    return panel


def _legend() -> common_builders.VizLegendOptions:
    """Return the legend: a list below the chart."""
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _log_scale() -> common_builders.ScaleDistributionConfig:
    return common_builders.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10)


def _has_limit(spec: SensorSpec, name: str) -> bool:
    sets = [spec.rules.limits]
    if spec.rules.limits_by_occupancy is not None:
        sets += list(spec.rules.limits_by_occupancy.values())
    return any(getattr(limits, name) is not None for limits in sets)


def _scheduled(spec: SensorSpec) -> bool:
    return spec.rules.limits_by_occupancy is not None


def _join_below_ms(spec: SensorSpec) -> int:
    """Gaps shorter than the stale-data timeout are joined; longer ones stay gaps."""
    stale = spec.rules.stale_after_s or 300.0
    return int(stale * 1000)


def _state_timeline(
    site: SiteConfig, area: AreaConfig, channels: Sequence[Channel], panel_id: int
) -> statetimeline.Panel:
    where = (
        f'{_site_filter(site)} AND {tag_is("area", area.id)} AND "instrument" =~ /^$instrument$/'
    )
    reading = ident(tsschema.MEASUREMENT)
    state = (
        f'SELECT last("state") FROM {reading} WHERE {where} AND $timeFilter'
        ' GROUP BY time($__interval), "sensor" fill(null)'
    )
    quality = (
        f'SELECT last("quality") FROM {reading} WHERE {where} AND $timeFilter'
        ' GROUP BY time($__interval), "sensor" fill(null)'
    )
    states = {str(code): STATUS_STYLE[code] for code in (0, 1, 2)}
    return (
        statetimeline.Panel()
        .id(panel_id)
        .title("Alarm state and reading quality per channel (gaps: no data)")
        .datasource(datasource_ref())
        .with_target(InfluxQL("A", state).alias("$tag_sensor state"))
        .with_target(InfluxQL("B", quality).alias("$tag_sensor quality"))
        .interval(TREND_INTERVAL)
        .height(max(5, 2 + len(channels)))
        .span(GRID_WIDTH)
        .mappings([_mapping({**states, **QUALITY_STYLE})])
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .thresholds(_base_thresholds())
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
    )


def area_dashboard(site: SiteConfig, area: AreaConfig) -> dict[str, Any]:
    """Return the dashboard of one area."""
    channels = [c for c in channels_of(site) if c.area.id == area.id]
    panel_ids = naming.channel_panel_ids(site.sensors())
    title = area.name or area.id
    builder = _dashboard(
        site,
        naming.uid(site.site_id, naming.AREA, area.id),
        f"{site.name} — {title}",
        f"{title} ({area.classification}): every channel's trend with its alert and action"
        " limits as they were in force, excursions and alarm events. Generated by envmon from"
        " the site file: do not edit here.",
        TREND_TIME,
    )
    builder.with_variable(
        _custom_variable(
            "instrument", "Instrument", [(i.name or i.id, i.id) for i in area.instruments]
        )
    )
    builder.links(_links(site))
    builder.with_panel(
        _status_table(
            site,
            "Now",
            channels,
            f'{tag_is("area", area.id)} AND "instrument" =~ /^$instrument$/',
            1,
        )
    )
    builder.with_panel(_state_timeline(site, area, channels, 2))
    row_id = 10
    for instrument in area.instruments:
        members = [c for c in channels if c.instrument.id == instrument.id]
        kind = KIND_LABELS.get(instrument.kind, instrument.kind)
        row = dash.Row(f"{instrument.name or instrument.id} ({kind})").id(row_id)
        row_id += 1
        builder.with_row(row)
        width = (
            GRID_WIDTH
            if len(members) == 1
            else GRID_WIDTH // 2
            if len(members) in (2, 4)
            else GRID_WIDTH // 3
        )
        for channel in members:
            builder.with_panel(_trend(site, channel, panel_ids[channel.spec.sensor_id], width))
    builder.annotations(_annotations(site, tag_is("area", area.id)))
    return to_json(builder)


# -- cold storage and particles -------------------------------------------------------


def _group_trend(
    site: SiteConfig,
    panel_id: int,
    title: str,
    members: Sequence[Channel],
    aggregate: str,
    width: int = GRID_WIDTH,
    *,
    variable: str,
) -> timeseries.Panel:
    parameter = members[0].spec.parameter
    instruments = regex_of(sorted({c.instrument.id for c in members}))
    query = (
        f'SELECT {aggregate}("value") FROM {ident(tsschema.MEASUREMENT)} WHERE'
        f' {_site_filter(site)} AND "instrument" =~ {instruments}'
        f' AND "instrument" =~ /^${variable}$/ AND {tag_is("parameter", parameter)}'
        ' AND $timeFilter GROUP BY time($__interval), "instrument" fill(null)'
    )
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .datasource(datasource_ref())
        .with_target(InfluxQL("A", query).alias("$tag_instrument"))
        .interval(TREND_INTERVAL)
        .height(9)
        .span(width)
        .unit(grafana_unit(members[0].spec.unit))
        .line_width(2)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(min(_join_below_ms(c.spec) for c in members))
        .legend(_legend())
        .thresholds(_base_thresholds())
        .overrides(
            [
                _override(c.instrument.id, ("displayName", c.instrument.name or c.instrument.id))
                for c in members
            ]
        )
    )
    return panel


def _instruments_dashboard(
    site: SiteConfig,
    kind: str,
    title: str,
    description: str,
    channels: Sequence[Channel],
    variable: tuple[str, str],
    trends: Iterable[timeseries.Panel],
) -> dict[str, Any]:
    """Return a dashboard of a group of instruments: a variable, their state now, trends."""
    name, label = variable
    instruments = list(
        dict.fromkeys((c.instrument.name or c.instrument.id, c.instrument.id) for c in channels)
    )
    members = regex_of(sorted({c.instrument.id for c in channels}))
    builder = _dashboard(
        site,
        naming.uid(site.site_id, kind),
        f"{site.name} — {title}",
        f"{description} Generated by envmon from the site file: do not edit here.",
        TREND_TIME,
    )
    builder.with_variable(_custom_variable(name, label, instruments))
    builder.links(_links(site))
    builder.with_panel(
        _status_table(
            site, "Now", channels, f'"instrument" =~ {members} AND "instrument" =~ /^${name}$/', 1
        )
    )
    for panel in trends:
        builder.with_panel(panel)
    builder.annotations(_annotations(site, f'"instrument" =~ {members}'))
    return to_json(builder)


def cold_storage(site: SiteConfig) -> dict[str, Any] | None:
    """Return the cold-storage overview (None when the site has no freezer, fridge or dewar)."""
    channels = [c for c in channels_of(site) if c.spec.instrument_kind in COLD_KINDS]
    if not channels:
        return None
    groups = list(dict.fromkeys((c.spec.instrument_kind, c.spec.parameter) for c in channels))
    groups.sort(key=lambda group: COLD_KINDS.index(group[0]))  # freezers, fridges, dewars
    trends = []
    for panel_id, (kind, parameter) in enumerate(groups, start=10):
        members = [
            c for c in channels if (c.spec.instrument_kind, c.spec.parameter) == (kind, parameter)
        ]
        title = f"{KIND_LABELS[kind]} — {parameter_label(parameter)}"
        trends.append(_group_trend(site, panel_id, title, members, "mean", variable="instrument"))
    return _instruments_dashboard(
        site,
        naming.COLD,
        "cold storage",
        "Freezers, fridges and LN2 dewars: current state and trends.",
        channels,
        ("instrument", "Instrument"),
        trends,
    )


def particles(site: SiteConfig) -> dict[str, Any] | None:
    """Return the particles overview (None when the site has no particle counter)."""
    channels = [c for c in channels_of(site) if c.spec.instrument_kind == PARTICLE_KIND]
    if not channels:
        return None
    trends = []
    for panel_id, parameter in enumerate(
        dict.fromkeys(c.spec.parameter for c in channels), start=10
    ):
        members = [c for c in channels if c.spec.parameter == parameter]
        panel = _group_trend(
            site,
            panel_id,
            f"{parameter_label(parameter)} — maximum per interval",
            members,
            "max",
            variable="counter",
        )
        trends.append(panel.scale_distribution(_log_scale()))
    return _instruments_dashboard(
        site,
        naming.PARTICLES,
        "particles",
        "Every particle counter, both sizes: the maximum per interval, so that peaks are never"
        " averaged away.",
        channels,
        ("counter", "Counter"),
        trends,
    )


def generate_dashboards(site: SiteConfig) -> dict[str, dict[str, Any]]:
    """Return every dashboard of the site by file name (``<uid>.json``)."""
    models: list[dict[str, Any] | None] = [
        overview(site),
        *(area_dashboard(site, area) for area in site.areas),
        cold_storage(site),
        particles(site),
    ]
    return {f"{m['uid']}.json": m for m in models if m is not None}
