"""The site configuration schema: what people write in the site YAML file (pydantic v2).

Every model is frozen and refuses unknown keys, so a typo such as ``alert_hihg`` is an
error rather than a silently missing limit. Cross-field checks are field validators that
run in field-definition order, so pydantic reports them on the field at fault
(``limits.action_high: must be above alert_high``). Checks that need the whole site
(unique ids, limits after defaults) live in ``envmon.config.loader`` and
``envmon.config.resolve``.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    Strict,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from envmon.config.alerting import AlertingConfig, SiteFacts, site_facts
from envmon.config.bindings import site_sensors
from envmon.config.collectors import CollectorsConfig
from envmon.config.dashboards import DashboardsConfig
from envmon.config.formatting import format_number
from envmon.config.particles import PARTICLE_SIZES_UM, PARTICLE_UNIT, Grade
from envmon.config.resolve import resolve_site
from envmon.config.schedule import (
    WEEKDAYS,
    WeeklySchedule,
    WeeklyWindow,
    expand_days,
    parse_time_of_day,
)
from envmon.config.types import (
    ConfigModel,
    Duration,
    Fraction,
    Number,
    PositiveDuration,
    PositiveInt,
    SensorIdText,
    Slug,
    Text,
    TimezoneName,
)
from envmon.display import MAX_DECIMALS, Display, default_decimals
from envmon.errors import ConfigError, ConfigIssue
from envmon.sensors import Occupancy, SensorSpec

DEFAULT_TIMEZONE: Final = "UTC"
DEFAULT_PARTICLE_ALERT_FRACTION: Final = 0.8

InstrumentKind = Literal[
    "particle_counter", "incubator", "freezer", "fridge", "ln2_dewar", "room_sensor", "other"
]
OccupancyState = Literal["at_rest", "in_operation"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _iso_shorthand(value: object) -> object:
    """``iso_class: 7`` means ISO 7 at rest and in operation."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"at_rest": value, "in_operation": value}
    return value


def _occupancy_shorthand(value: object) -> object:
    """``occupancy: in_operation`` means a fixed state."""
    if isinstance(value, str):
        return {"state": value}
    return value


IsoClassNumber = Annotated[int, Strict(), Field(ge=1, le=9)]


class RulesConfig(ConfigModel):
    """Evaluation rules other than the limit values; every key is optional."""

    delay: Duration | None = None
    consecutive: PositiveInt | None = None
    deadband: Annotated[float, Strict(), Field(ge=0)] | None = None
    rate_of_change_per_min: Annotated[float, Strict(), Field(gt=0)] | None = None
    stale_after: PositiveDuration | None = None
    bad_after: PositiveInt | None = None


class LimitsConfig(RulesConfig):
    """Alert/action limits plus rules of a channel; each key overrides the defaults."""

    alert_high: Number | None = None
    action_high: Number | None = None
    alert_low: Number | None = None
    action_low: Number | None = None

    @field_validator("action_high")
    @classmethod
    def _action_high_above_alert_high(
        cls, value: float | None, info: ValidationInfo
    ) -> float | None:
        alert_high = info.data.get("alert_high")
        if value is not None and alert_high is not None and value <= alert_high:
            raise ValueError(f"must be above alert_high ({format_number(alert_high)})")
        return value

    @field_validator("alert_low")
    @classmethod
    def _alert_low_below_high(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return value
        for upper in ("alert_high", "action_high"):
            limit = info.data.get(upper)
            if limit is not None:
                if value >= limit:
                    raise ValueError(f"must be below {upper} ({format_number(limit)})")
                break
        return value

    @field_validator("action_low")
    @classmethod
    def _action_low_below_alert_low(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return value
        for upper in ("alert_low", "alert_high", "action_high"):
            limit = info.data.get(upper)
            if limit is not None:
                if value >= limit:
                    raise ValueError(f"must be below {upper} ({format_number(limit)})")
                break
        return value


class ChannelConfig(ConfigModel):
    """One measured quantity of an instrument, with its unit and limits."""

    parameter: Slug
    id: Slug | None = None
    sensor_id: SensorIdText | None = None
    unit: Text
    decimals: Annotated[int, Strict(), Field(ge=0, le=MAX_DECIMALS)] | None = None
    alert_fraction: Fraction | None = None
    limits: LimitsConfig = LimitsConfig()

    @field_validator("unit")
    @classmethod
    def _particle_unit(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("parameter") in PARTICLE_SIZES_UM and value != PARTICLE_UNIT:
            raise ValueError(
                f"particle channels are in {PARTICLE_UNIT!r} (counts normalised by the "
                f"sample volume), got {value!r}"
            )
        return value

    @field_validator("alert_fraction")
    @classmethod
    def _fraction_for_particles(cls, value: float | None, info: ValidationInfo) -> float | None:
        parameter = info.data.get("parameter")
        if value is not None and parameter is not None and parameter not in PARTICLE_SIZES_UM:
            raise ValueError(
                "applies only to particle channels (" + ", ".join(PARTICLE_SIZES_UM) + ")"
            )
        return value

    @property
    def channel_id(self) -> str:
        """The channel id: ``id`` when given, else the parameter."""
        return self.id if self.id is not None else self.parameter

    @property
    def particle_size_um(self) -> float | None:
        """The particle size (µm) of a particle channel, else None."""
        return PARTICLE_SIZES_UM.get(self.parameter)


class InstrumentConfig(ConfigModel):
    """One piece of equipment (particle counter, incubator, freezer, ...) and its channels."""

    id: Slug
    name: Text
    kind: InstrumentKind
    sample_volume_m3: Annotated[float, Strict(), Field(gt=0)] | None = None
    channels: Annotated[tuple[ChannelConfig, ...], Field(min_length=1)]

    @field_validator("sample_volume_m3")
    @classmethod
    def _volume_for_counters(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind != "particle_counter":
            raise ValueError("applies only to instruments of kind particle_counter")
        return value


class OperatingWindowConfig(ConfigModel):
    """A weekly window in operation: ``{days: [mon-fri], from: "07:00", to: "19:00"}``."""

    days: Annotated[tuple[Weekday, ...], BeforeValidator(expand_days), Field(min_length=1)]
    start: Annotated[int, BeforeValidator(parse_time_of_day), Field(le=1439)] = Field(alias="from")
    end: Annotated[int, BeforeValidator(parse_time_of_day)] = Field(alias="to")

    def windows(self) -> list[WeeklyWindow]:
        """Return one runtime window per day."""
        return [WeeklyWindow(WEEKDAYS.index(day), self.start, self.end) for day in self.days]


class WeeklyScheduleConfig(ConfigModel):
    """When a room is in operation, week by week; at rest outside the windows."""

    timezone: TimezoneName | None = None
    in_operation: Annotated[tuple[OperatingWindowConfig, ...], Field(min_length=1)]

    def build(self, site_timezone: str) -> WeeklySchedule:
        """Return the runtime schedule (the site's time zone unless one is given here)."""
        windows = tuple(w for window in self.in_operation for w in window.windows())
        return WeeklySchedule(self.timezone or site_timezone, windows)


class OccupancyConfig(ConfigModel):
    """A room's occupancy: a fixed state or a weekly schedule."""

    state: OccupancyState | None = None
    schedule: WeeklyScheduleConfig | None = None

    @model_validator(mode="after")
    def _one_of(self) -> OccupancyConfig:
        if (self.state is None) == (self.schedule is None):
            raise ValueError(
                "must be 'at_rest', 'in_operation' or {schedule: {in_operation: [...]}}"
            )
        return self

    @property
    def fixed(self) -> Occupancy | None:
        """The fixed state, or None when the occupancy follows a schedule."""
        return None if self.state is None else Occupancy(self.state)


class IsoClassConfig(ConfigModel):
    """ISO 14644-1 class of a room at rest and in operation (``iso_class: 7`` sets both)."""

    at_rest: IsoClassNumber
    in_operation: IsoClassNumber

    @field_validator("in_operation")
    @classmethod
    def _not_cleaner_in_operation(cls, value: int, info: ValidationInfo) -> int:
        at_rest = info.data.get("at_rest")
        if at_rest is not None and value < at_rest:
            raise ValueError(f"cannot be a cleaner class than at_rest (ISO {at_rest})")
        return value

    def for_state(self, state: Occupancy) -> int:
        """Return the class that applies in ``state``."""
        return self.at_rest if state is Occupancy.AT_REST else self.in_operation


class AreaConfig(ConfigModel):
    """A room or enclosure: GMP grade or ISO class (or neither), occupancy, instruments."""

    id: Slug
    name: Text
    grade: Annotated[Grade, BeforeValidator(_upper)] | None = None
    iso_class: Annotated[IsoClassConfig, BeforeValidator(_iso_shorthand)] | None = None
    occupancy: Annotated[OccupancyConfig, BeforeValidator(_occupancy_shorthand)] = OccupancyConfig(
        state="at_rest"
    )
    particle_alert_fraction: Fraction | None = None
    instruments: tuple[InstrumentConfig, ...] = ()

    @field_validator("iso_class")
    @classmethod
    def _grade_or_iso(
        cls, value: IsoClassConfig | None, info: ValidationInfo
    ) -> IsoClassConfig | None:
        if value is not None and info.data.get("grade") is not None:
            raise ValueError("give either grade or iso_class, not both")
        return value

    @property
    def classification(self) -> str:
        """Human label of the classification: ``grade B``, ``ISO 7``, ``ISO 5/7`` or ``—``."""
        if self.grade is not None:
            return f"grade {self.grade}"
        if self.iso_class is not None:
            rest, operation = self.iso_class.at_rest, self.iso_class.in_operation
            return f"ISO {rest}" if rest == operation else f"ISO {rest}/{operation}"
        return "unclassified"


class SiteInfo(ConfigModel):
    """Site-wide settings."""

    name: Text
    timezone: TimezoneName = DEFAULT_TIMEZONE
    particle_alert_fraction: Fraction = DEFAULT_PARTICLE_ALERT_FRACTION


class DefaultsConfig(ConfigModel):
    """Site-wide defaults: rules for every channel, and limits and rules per parameter."""

    all: RulesConfig = RulesConfig()
    parameters: dict[Slug, LimitsConfig] = Field(default_factory=dict)


class SiteConfig(ConfigModel):
    """A whole site configuration, validated; ``sensors()`` gives what the core runs on."""

    site: SiteInfo
    defaults: DefaultsConfig = DefaultsConfig()
    areas: Annotated[tuple[AreaConfig, ...], Field(min_length=1)]
    collectors: CollectorsConfig = CollectorsConfig()
    alerting: AlertingConfig | None = None
    dashboards: DashboardsConfig = DashboardsConfig()

    _sensors: tuple[SensorSpec, ...] | None = PrivateAttr(default=None)
    _display: Display | None = PrivateAttr(default=None)

    @field_validator("collectors", mode="wrap")
    @classmethod
    def _bindings_know_the_sensors(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> CollectorsConfig:
        """Validate the collectors with the site's sensors known, so bindings are checked."""
        areas: tuple[AreaConfig, ...] | None = info.data.get("areas")
        if areas is None:  # the areas are invalid themselves: their errors are reported
            return handler(value)  # type: ignore[no-any-return]
        units = {
            channel.sensor_id or f"{instrument.id}.{channel.channel_id}": channel.unit
            for area in areas
            for instrument in area.instruments
            for channel in instrument.channels
        }
        with site_sensors(units):
            return handler(value)  # type: ignore[no-any-return]

    @field_validator("alerting", mode="wrap")
    @classmethod
    def _alerting_knows_the_site(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> AlertingConfig | None:
        """Validate the alerting section with the site's areas and sensors known to its routes."""
        if isinstance(value, str):  # load_site reads the file it names before validation
            raise ValueError(
                "names a file: read the site with envmon.config.load_site, which loads it"
            )
        areas: tuple[AreaConfig, ...] | None = info.data.get("areas")
        if areas is None:  # the areas are invalid themselves: their errors are reported
            return handler(value)  # type: ignore[no-any-return]
        instruments = [instrument for area in areas for instrument in area.instruments]
        facts = SiteFacts(
            areas=frozenset(area.id for area in areas),
            grades=frozenset(area.grade for area in areas if area.grade is not None),
            instrument_kinds=frozenset(instrument.kind for instrument in instruments),
            instruments=frozenset(instrument.id for instrument in instruments),
            parameters=frozenset(
                channel.parameter for instrument in instruments for channel in instrument.channels
            ),
            sensors=frozenset(
                channel.sensor_id or f"{instrument.id}.{channel.channel_id}"
                for instrument in instruments
                for channel in instrument.channels
            ),
        )
        with site_facts(facts):
            return handler(value)  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        """The site's name."""
        return self.site.name

    @property
    def site_id(self) -> str:
        """The site's id in the time series and dashboards: its name as a lowercase slug."""
        return re.sub(r"[^a-z0-9]+", "-", self.site.name.lower()).strip("-") or "site"

    @property
    def timezone(self) -> str:
        """The site's IANA time zone name."""
        return self.site.timezone

    @property
    def tzinfo(self) -> ZoneInfo:
        """The site's time zone."""
        return ZoneInfo(self.site.timezone)

    def display(self) -> Display:
        """Return how this site writes values and times: its zone, each sensor's digits.

        Built once per (frozen) configuration: pages and polls ask for it on every request.
        """
        if self._display is not None:
            return self._display
        decimals: dict[str, int] = {}
        for area in self.areas:
            for instrument in area.instruments:
                for channel in instrument.channels:
                    digits = channel.decimals
                    if digits is None:
                        digits = default_decimals(channel.parameter, channel.unit)
                    if digits is not None:
                        sensor = channel.sensor_id or f"{instrument.id}.{channel.channel_id}"
                        decimals[sensor] = digits
        self._display = Display(self.tzinfo, decimals)
        return self._display

    def area(self, area_id: str) -> AreaConfig:
        """Return the area with id ``area_id`` (``KeyError`` if there is none)."""
        for area in self.areas:
            if area.id == area_id:
                return area
        raise KeyError(area_id)

    def sensors(self) -> list[SensorSpec]:
        """Return every channel resolved into a ``SensorSpec``, in file order.

        Raises ``ConfigError`` when the limits only conflict once defaults are applied
        (``load_site`` and ``parse_site`` have already checked this, with line numbers).
        """
        if self._sensors is None:
            specs, problems = resolve_site(self)
            if problems:
                raise ConfigError(
                    "<site>",
                    [ConfigIssue(problem.rendered_path, problem.message) for problem in problems],
                )
            self._sensors = tuple(specs)
        return list(self._sensors)

    def sensor_map(self) -> dict[str, SensorSpec]:
        """Return the resolved sensors by sensor id."""
        return {spec.sensor_id: spec for spec in self.sensors()}
