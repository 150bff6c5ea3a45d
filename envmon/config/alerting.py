"""The ``alerting:`` section of the site file: contacts, on-call schedules, policies, routes.

Validated like the rest of the site file, so every problem names its YAML path and line.
References between parts (a route's policy, a step's schedule, a team's members) are checked
while the section validates: each list is validated with the lists before it known (the
order of the fields), and the site's areas, instruments and sensors are known while the
whole section validates inside ``SiteConfig`` (``site_facts``). Validated on its own (a unit
test, a tool), the section has no site: the checks against the site are skipped then.

Secrets never live in the file: a channel's apprise URL names them as ``${NAME}``
placeholders (or the whole URL comes from ``url_env``), and no message here echoes a URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Final, Literal, NoReturn, TypeVar, get_args
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from envmon.config.particles import Grade
from envmon.config.schedule import (
    NEVER_US,
    WEEKDAYS,
    WeeklySchedule,
    WeeklyWindow,
    expand_days,
    parse_time_of_day,
)
from envmon.config.types import (
    ENV_NAME,
    ConfigModel,
    Duration,
    EnvName,
    HttpUrl,
    PositiveDuration,
    Slug,
    Text,
    TimezoneName,
)
from envmon.errors import EnvmonError
from envmon.models import AlarmKind, SystemEventKind
from envmon.sensors import Occupancy
from envmon.timeutil import from_us, to_us

logger = logging.getLogger(__name__)

DEFAULT_LINK_VALID_FOR: Final = 24 * 3600.0
DEFAULT_GROUPING_WINDOW: Final = 2.0
DEFAULT_SHELVE_MAX: Final = 8 * 3600.0
DEFAULT_STEP_WAIT: Final = 5 * 60.0
DEFAULT_ROTATION_EVERY: Final = 7 * 86_400.0
DEFAULT_RESEND_EVERY: Final = 60.0

#: Alarm kinds a route may name: the ones that open (or raise) an incident.
ROUTABLE_ALARMS: Final = (
    AlarmKind.RAISED,
    AlarmKind.ESCALATED,
    AlarmKind.STALE,
    AlarmKind.SENSOR_FAULT,
    AlarmKind.RATE_OF_CHANGE,
)
#: System events a route may name: the ones that open an incident (their ends close it).
ROUTABLE_SYSTEM_EVENTS: Final = (
    SystemEventKind.DISCONNECTED,
    SystemEventKind.SUBSCRIPTION_SILENT,
    SystemEventKind.BUFFER_FULL,
    SystemEventKind.BUFFER_STALLED,
    SystemEventKind.TIMESERIES_UNAVAILABLE,
    SystemEventKind.READINGS_MISSING,
)
_ENDS: Final = {
    AlarmKind.CLEARED.value: "raised",
    AlarmKind.RESTORED.value: "stale or sensor_fault",
    SystemEventKind.CONNECTED.value: "disconnected",
    SystemEventKind.RESUBSCRIBED.value: "subscription_silent",
    SystemEventKind.BUFFER_OK.value: "buffer_full",
    SystemEventKind.BUFFER_FLOWING.value: "buffer_stalled",
    SystemEventKind.TIMESERIES_RESTORED.value: "timeseries_unavailable",
}
_GRADES: Final[tuple[str, ...]] = get_args(Grade)
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_SECRET_QUERY_KEYS: Final = frozenset({"pass", "password", "pwd", "secret"})
#: What stands in for ``${NAME}`` placeholders when apprise checks a URL, tried in turn.
#: What ``${NAME}`` placeholders are replaced with when apprise checks a URL, tried in
#: turn: one that fits alphanumeric and hexadecimal tokens (and Twilio's ``AC…`` ids), a
#: phone number, an address.
PLACEHOLDER_DUMMIES: Final = (
    "ac0123456789abcdef0123456789abcdef",
    "15550100100",
    "envmon@example.org",
)
#: What stands in for a URL in a validation error's ``input`` (never the URL itself).
_HIDDEN: Final = "<hidden>"
_ENV_ADVICE: Final = (
    "put the password in an environment variable and write ${NAME} in its place "
    "(or give the whole URL with url_env)"
)


class AlertingConfigError(EnvmonError):
    """A configured value that cannot be used at run time (an environment variable not set)."""


# ---- what the section may refer to ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteFacts:
    """What the site file holds that routes and maintenance windows may name."""

    areas: frozenset[str]
    grades: frozenset[str]
    instrument_kinds: frozenset[str]
    instruments: frozenset[str]
    parameters: frozenset[str]
    sensors: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a reference may resolve to while the section validates (None: not checked).

    ``ids`` holds every id written in the section's lists, valid or not, so that a
    reference to an item with an error elsewhere is not refused as well; the validated
    lists (for the channels a step may use) are known once they have validated.
    """

    site: SiteFacts | None = None
    ids: Mapping[str, frozenset[str]] | None = None
    contacts: Mapping[str, ContactConfig] | None = None
    teams: Mapping[str, TeamConfig] | None = None
    schedules: Mapping[str, ScheduleConfig] | None = None


_SCOPE: ContextVar[_Scope | None] = ContextVar("envmon_alerting_scope", default=None)
_LISTS: Final = {
    "contacts": "contact",
    "teams": "team",
    "schedules": "schedule",
    "policies": "policy",
    "maintenance": "maintenance window",
}


def _scope() -> _Scope:
    """Return what references may resolve to right now (nothing known outside validation)."""
    return _SCOPE.get() or _Scope()


@contextlib.contextmanager
def _using(scope: _Scope) -> Iterator[None]:
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


@contextlib.contextmanager
def site_facts(facts: SiteFacts) -> Iterator[None]:
    """Make the site's areas, sensors, … known to the ``alerting:`` validators in the block."""
    with _using(_Scope(site=facts)):
        yield


def _hint(value: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _reference(field: str) -> object:
    """Return an after-validator refusing an id that the list ``field`` does not hold."""
    kind = _LISTS[field]

    def check(value: str) -> str:
        ids = _scope().ids
        known = None if ids is None else ids.get(field)
        if known is not None and value not in known:
            raise ValueError(f"no {kind} {value!r} in alerting.{field}{_hint(value, known)}")
        return value

    return AfterValidator(check)


def _ids_in(items: object) -> list[tuple[int, str]]:
    """Return the ids written in a raw list of mappings, with their index."""
    if not isinstance(items, list | tuple):
        return []
    return [
        (index, item["id"])
        for index, item in enumerate(items)
        if isinstance(item, Mapping) and isinstance(item.get("id"), str)
    ]


def _raw_ids(data: object) -> dict[str, frozenset[str]]:
    """Return the ids written in each list of a raw ``alerting:`` mapping."""
    if not isinstance(data, Mapping):
        return {}
    return {
        field: frozenset(i for _, i in _ids_in(items))
        for field in _LISTS
        if isinstance(items := data.get(field), list | tuple)  # absent: its own error
    }


def _site_value(kind: str, pick: Callable[[SiteFacts], frozenset[str]]) -> object:
    """Return an after-validator refusing a value the site does not have."""

    def check(value: str) -> str:
        site = _scope().site
        if site is not None and value not in pick(site):
            raise ValueError(f"no {kind} {value!r} in this site{_hint(value, pick(site))}")
        return value

    return AfterValidator(check)


Problem = tuple[tuple[int | str, ...], str]
"""A problem found by a validator here: its location below the value validated, and why."""


def _fail(
    problems: Sequence[Problem], *, hide: bool = False, also: ValidationError | None = None
) -> NoReturn:
    """Raise every problem at once (with the errors of ``also``), each at its location.

    ``hide`` keeps the value out of the error (a URL may hold a secret).
    """
    earlier = [] if also is None else also.errors(include_url=False)
    raise ValidationError.from_exception_data(
        "alerting",
        [
            *(
                InitErrorDetails(
                    type=PydanticCustomError(error["type"], error["msg"], error.get("ctx")),
                    loc=error["loc"],
                    input=error["input"],
                )
                for error in earlier
            ),
            *(
                InitErrorDetails(
                    type=PydanticCustomError("value_error", "{error}", {"error": message}),
                    loc=loc,
                    input=_HIDDEN if hide else None,
                )
                for loc, message in problems
            ),
        ],
    )


# ---- value types -------------------------------------------------------------------------------


def _one_or_many(value: object) -> object:
    """Let a single value stand for a list of one (``who: alice``, ``days: sat``)."""
    return [value] if isinstance(value, str | dict) else value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _days(value: object) -> object:
    """Expand ``mon-fri`` in a list of weekdays (or one day) the way occupancy schedules do."""
    return expand_days(_one_or_many(value))


def _local_datetime(value: object) -> object:
    """Read ``"2026-12-24 18:00"``: a local date and time (the zone is the schedule's)."""
    if not isinstance(value, str):
        raise ValueError("must be a local date and time in quotes, e.g. '2026-12-24 18:00'")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"must be a local date and time 'YYYY-MM-DD HH:MM', got {value!r}"
        ) from None
    if parsed.tzinfo is not None:
        raise ValueError(
            f"must be a local time without a UTC offset (the zone is the schedule's or the "
            f"site's), got {value!r}"
        )
    return parsed


def _calendar_date(value: object) -> object:
    """Read ``2026-01-05`` (YAML dates stay strings here) as a date."""
    if not isinstance(value, str):
        raise ValueError("must be a date 'YYYY-MM-DD', e.g. 2026-01-05")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"must be a date 'YYYY-MM-DD', got {value!r}") from None


def _whole_days(value: float) -> float:
    if value % 86_400:
        raise ValueError("must be a whole number of days, such as '1d' or '7d'")
    return value


def _before_midnight(value: int) -> int:
    if value >= 24 * 60:
        raise ValueError("must be a time of day before 24:00 (write '00:00' for midnight)")
    return value


def _grade(value: str) -> str:
    if value not in _GRADES:
        raise ValueError(f"must be one of {', '.join(_GRADES)}, got {value!r}")
    site = _scope().site
    if site is not None and value not in site.grades:
        raise ValueError(f"no area of this site has grade {value}")
    return value


def _routable(kind: str, allowed: Sequence[str]) -> object:
    def check(value: str) -> str:
        if value in allowed:
            return value
        if value in _ENDS:
            raise ValueError(
                f"{value!r} ends an incident and is not routed; route the event it ends "
                f"({_ENDS[value]})"
            )
        raise ValueError(f"unknown {kind} {value!r}; use one of {', '.join(allowed)}")

    return AfterValidator(check)


TimeOfDay = Annotated[int, BeforeValidator(parse_time_of_day)]
BeforeMidnight = Annotated[
    int, BeforeValidator(parse_time_of_day), AfterValidator(_before_midnight)
]
LocalDateTime = Annotated[datetime, BeforeValidator(_local_datetime)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Weekdays = Annotated[tuple[Weekday, ...], BeforeValidator(_days), Field(min_length=1)]

ContactRef = Annotated[Slug, _reference("contacts")]
Who = Annotated[tuple[ContactRef, ...], BeforeValidator(_one_or_many), Field(min_length=1)]
AreaRef = Annotated[str, Strict(), _site_value("area", lambda f: f.areas)]
InstrumentRef = Annotated[str, Strict(), _site_value("instrument", lambda f: f.instruments)]
SensorRef = Annotated[str, Strict(), _site_value("sensor", lambda f: f.sensors)]
KindRef = Annotated[str, Strict(), _site_value("instrument of kind", lambda f: f.instrument_kinds)]
ParameterRef = Annotated[str, Strict(), _site_value("parameter", lambda f: f.parameters)]
GradeRef = Annotated[str, Strict(), BeforeValidator(_upper), AfterValidator(_grade)]
AlarmRef = Annotated[str, Strict(), _routable("alarm kind", [k.value for k in ROUTABLE_ALARMS])]
SystemRef = Annotated[
    str, Strict(), _routable("system event", [k.value for k in ROUTABLE_SYSTEM_EVENTS])
]


AreaRefs = Annotated[tuple[AreaRef, ...], BeforeValidator(_one_or_many)]
InstrumentRefs = Annotated[tuple[InstrumentRef, ...], BeforeValidator(_one_or_many)]
SensorRefs = Annotated[tuple[SensorRef, ...], BeforeValidator(_one_or_many)]


# ---- apprise URLs ------------------------------------------------------------------------------

_QUIET_APPRISE: ContextVar[bool] = ContextVar("envmon_quiet_apprise", default=False)


class _QuietFilter(logging.Filter):
    """Drop apprise's log records while a URL is checked here (they quote the URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _QUIET_APPRISE.get()


def import_apprise_quietly() -> None:
    """Import apprise without the deprecation warning of the stdlib module it pulls in.

    apprise's PGP helper imports the standard library's ``imghdr``, deprecated since Python
    3.11; importing that first, quietly, keeps the warning out of every caller (the tests
    turn warnings into errors). Call before ``import apprise``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(ModuleNotFoundError):  # gone in 3.13; apprise shims it there
            importlib.import_module("imghdr")


@functools.cache
def _apprise_schemes() -> frozenset[str]:
    """Return the URL schemes apprise knows (loading its plugins once; ~0.2 s)."""
    import_apprise_quietly()
    import apprise

    logging.getLogger(apprise.LOGGER_NAME).addFilter(_QuietFilter())
    manager = apprise.manager_plugins.NotificationManager()  # type: ignore[no-untyped-call]
    return frozenset(s.lower() for s in manager.schemas())  # type: ignore[no-untyped-call]


def _apprise_accepts(url: str) -> bool:
    """Return True when apprise can build a notifier from ``url`` (nothing is sent).

    ``${NAME}`` placeholders are replaced by each of ``PLACEHOLDER_DUMMIES`` in turn (a token, a
    phone number, an address): the URL is accepted if one of them makes it acceptable.
    """
    import apprise

    _apprise_schemes()  # loads the plugins quietly and installs the filter
    token = _QUIET_APPRISE.set(True)
    try:
        for dummy in PLACEHOLDER_DUMMIES if _PLACEHOLDER.search(url) else ("",):
            candidate = _PLACEHOLDER.sub(dummy, url)
            plugin = apprise.Apprise.instantiate(
                candidate, asset=apprise.AppriseAsset(), suppress_exceptions=True
            )
            if plugin is not None:
                return True
    finally:
        _QUIET_APPRISE.reset(token)
    return False


def _split_url(url: str) -> tuple[str, str, str]:
    """Return a URL's scheme, its user information (before ``@``) and its query."""
    scheme, _, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    query = rest.partition("?")[2].partition("#")[0]
    return scheme, authority.rpartition("@")[0], query


def url_problem(url: str) -> str | None:
    """Return why ``url`` cannot be a channel's apprise URL, or None; never quotes the URL.

    ``${NAME}`` placeholders stand for environment variables; a password written in the URL
    itself is refused. Apprise checks the URL with every placeholder replaced by a dummy
    value; where a placeholder stands for more than a password (a token of a fixed format),
    only the scheme is checked.
    """
    for name in _PLACEHOLDER.findall(url):
        if not ENV_NAME.match(name):
            return (
                "a ${...} placeholder must name an environment variable (letters, digits "
                "and '_', not starting with a digit)"
            )
    if "${" in _PLACEHOLDER.sub("", url):
        return "has a '${' without its closing '}'"
    scheme, userinfo, query = _split_url(url)
    if not scheme or "://" not in url:
        return "must be an apprise URL such as 'mailto://…', 'json://…' or 'ntfy://…'"
    if ":" in userinfo and _PLACEHOLDER.sub("", userinfo.split(":", 1)[1]):
        return f"has a password written in it: {_ENV_ADVICE}"
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in _SECRET_QUERY_KEYS and _PLACEHOLDER.sub("", value):
            return f"has a password written in its {key!r} parameter: {_ENV_ADVICE}"
    if scheme.lower() not in _apprise_schemes():
        return (
            f"unknown apprise scheme {scheme[:20]!r}:// (see https://github.com/caronc/apprise"
            "/wiki for the services and their URLs)"
        )
    if _apprise_accepts(url):
        return None
    password_only = not _PLACEHOLDER.findall(url.replace(userinfo, "", 1) if userinfo else url)
    if _PLACEHOLDER.search(url) and not password_only:
        return None  # a token of a fixed format behind a placeholder: checked when sent
    return (
        f"apprise cannot read this {scheme.lower()}:// URL (a part it needs is missing or "
        f"malformed; see the apprise wiki page of {scheme.lower()}://)"
    )


def _substitute(url: str, environ: Mapping[str, str], channel: str) -> str:
    """Replace ``${NAME}`` placeholders; values in the user information are %-encoded."""
    _, userinfo, _ = _split_url(url)
    userinfo_end = url.find(userinfo) + len(userinfo) if userinfo else -1

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = environ.get(name)
        if found is None:
            raise AlertingConfigError(
                f"channel {channel!r}: the environment variable {name} is not set "
                "(its URL names it as ${" + name + "})"
            )
        return quote(found, safe="") if match.start() < userinfo_end else found

    return _PLACEHOLDER.sub(value, url)


# ---- the models --------------------------------------------------------------------------------


class LinksConfig(ConfigModel):
    """Acknowledge-by-link: where the QA app is, and which variable holds the signing key."""

    base_url: HttpUrl
    secret_env: EnvName
    valid_for: PositiveDuration = DEFAULT_LINK_VALID_FOR


class GroupingConfig(ConfigModel):
    """Alarms of one area within ``window`` seconds become one notification per person."""

    window: Duration = DEFAULT_GROUPING_WINDOW


class ShelvingConfig(ConfigModel):
    """The longest an alarm may be shelved from the app (seconds)."""

    max: PositiveDuration = DEFAULT_SHELVE_MAX


class ContactChannelConfig(ConfigModel):
    """One way to reach a contact: an apprise URL written here or held in a variable."""

    id: Slug
    url: Annotated[str, Strict(), Field(min_length=1)] | None = None
    url_env: EnvName | None = None

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, value: str | None) -> str | None:
        problem = None if value is None else url_problem(value)
        if problem is not None:
            _fail([((), problem)], hide=True)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ContactChannelConfig:
        if (self.url is None) == (self.url_env is None):
            _fail(
                [((), "give either url (an apprise URL) or url_env (a variable holding one)")],
                hide=True,
            )
        return self

    def resolve_url(self, environ: Mapping[str, str]) -> str:
        """Return the apprise URL with its variables filled in from ``environ``.

        Raises ``AlertingConfigError`` naming a variable that is not set (never a value).
        """
        if self.url_env is not None:
            url = environ.get(self.url_env, "")
            if not url:
                raise AlertingConfigError(
                    f"channel {self.id!r}: the environment variable {self.url_env} is not set "
                    "(it holds the channel's apprise URL)"
                )
            return url
        assert self.url is not None
        return _substitute(self.url, environ, self.id)


class ContactConfig(ConfigModel):
    """A person (or a shared endpoint such as a webhook) that can be notified."""

    id: Slug
    name: Text
    user: Text | None = None
    channels: Annotated[tuple[ContactChannelConfig, ...], Field(min_length=1)]

    @field_validator("channels", mode="wrap")
    @classmethod
    def _unique_channels(
        cls, value: object, handler: ValidatorFunctionWrapHandler
    ) -> tuple[ContactChannelConfig, ...]:
        problems = _duplicate_problems("channel", "channels", _ids_in(value))
        return _validate_with(handler, value, problems)  # type: ignore[no-any-return]

    def channel(self, channel_id: str) -> ContactChannelConfig:
        """Return the channel with id ``channel_id`` (``KeyError`` if there is none)."""
        for channel in self.channels:
            if channel.id == channel_id:
                return channel
        raise KeyError(channel_id)


class TeamConfig(ConfigModel):
    """A named group of contacts, all notified together."""

    id: Slug
    name: Text | None = None
    members: Annotated[tuple[ContactRef, ...], Field(min_length=1)]


class RotationConfig(ConfigModel):
    """People taking turns: ``every`` days from ``start``, handing over at ``handover`` (local)."""

    people: Annotated[tuple[ContactRef, ...], Field(min_length=1)]
    start: Annotated[date, BeforeValidator(_calendar_date)]
    every: Annotated[PositiveDuration, AfterValidator(_whole_days)] = DEFAULT_ROTATION_EVERY
    handover: BeforeMidnight

    @property
    def every_days(self) -> int:
        """The length of a turn in days."""
        return int(self.every // 86_400)

    @property
    def handover_time(self) -> time:
        """The local time of day of every hand-over."""
        return time(self.handover // 60, self.handover % 60)


class WeeklyWindowConfig(ConfigModel):
    """A weekly stretch: ``{days: mon-fri, from: "08:00", to: "17:00"}`` (to < from: overnight)."""

    days: Weekdays
    start: BeforeMidnight = Field(alias="from")
    end: TimeOfDay = Field(alias="to")

    @field_validator("end")
    @classmethod
    def _not_empty(cls, value: int, info: ValidationInfo) -> int:
        if value == info.data.get("start"):
            raise ValueError(
                "must differ from 'from' (for a whole day write from: '00:00', to: '24:00')"
            )
        return value

    def windows(self) -> list[WeeklyWindow]:
        """Return one runtime window per day (``envmon.config.schedule``)."""
        return [WeeklyWindow(WEEKDAYS.index(day), self.start, self.end) for day in self.days]


class ShiftConfig(WeeklyWindowConfig):
    """A fixed weekly shift of one or more contacts."""

    who: Who


class OverrideConfig(ConfigModel):
    """A dated stretch (local times in the schedule's zone) that wins over everything else."""

    who: Who
    start: LocalDateTime = Field(alias="from")
    end: LocalDateTime = Field(alias="to")

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError(f"must be after 'from' ({start:%Y-%m-%d %H:%M})")
        return value


class ScheduleConfig(ConfigModel):
    """Who is on call: a rotation, weekly shifts or an iCalendar file, plus dated overrides."""

    id: Slug
    name: Text | None = None
    timezone: TimezoneName | None = None
    rotation: RotationConfig | None = None
    shifts: tuple[ShiftConfig, ...] = ()
    ical: Text | None = None
    overrides: tuple[OverrideConfig, ...] = ()

    @model_validator(mode="after")
    def _something_to_follow(self) -> ScheduleConfig:
        if self.rotation is None and not self.shifts and self.ical is None:
            raise ValueError(
                "give whom the schedule follows: a rotation or an ical file, and/or shifts"
            )
        if self.rotation is not None and self.ical is not None:
            _fail([(("ical",), "give either a rotation or an ical file, not both")])
        return self

    @property
    def label(self) -> str:
        """The schedule's name, or its id when it has none."""
        return self.name or self.id

    def zone(self, site_tz: ZoneInfo) -> ZoneInfo:
        """Return the schedule's time zone (the site's unless one is given here)."""
        return site_tz if self.timezone is None else ZoneInfo(self.timezone)

    def contact_ids(self) -> tuple[str, ...] | None:
        """Return every contact the file names here; None when an iCalendar file names more."""
        if self.ical is not None:
            return None
        named = [
            *(self.rotation.people if self.rotation is not None else ()),
            *(person for shift in self.shifts for person in shift.who),
            *(person for override in self.overrides for person in override.who),
        ]
        return tuple(dict.fromkeys(named))


class NotifyTarget(ConfigModel):
    """Whom a step notifies: a schedule's on-call people, one contact, or a team."""

    schedule: Annotated[Slug, _reference("schedules")] | None = None
    contact: ContactRef | None = None
    team: Annotated[Slug, _reference("teams")] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> NotifyTarget:
        given = [key for key in ("schedule", "contact", "team") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of schedule, contact or team")
        return self


class StepConfig(ConfigModel):
    """One escalation step: notify someone on some channels, then wait before the next."""

    notify: NotifyTarget
    channels: Annotated[tuple[Slug, ...], BeforeValidator(_one_or_many)] = ()
    wait: Duration = DEFAULT_STEP_WAIT

    @field_validator("channels")
    @classmethod
    def _channels_exist(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        notify: NotifyTarget | None = info.data.get("notify")
        people = None if notify is None or not value else _people(notify, _scope())
        if people is None:
            return value
        have = {channel.id for person in people for channel in person.channels}
        names = ", ".join(person.id for person in people)
        problems = [
            ((i,), f"no channel {channel!r} on {names} (channels: {', '.join(sorted(have))})")
            for i, channel in enumerate(value)
            if channel not in have
        ]
        if problems:
            _fail(problems)
        return value


def _people(notify: NotifyTarget, scope: _Scope) -> list[ContactConfig] | None:
    """Return the contacts a step may reach; None when that cannot be told yet."""
    contacts = scope.contacts
    if contacts is None:
        return None
    ids: Sequence[str] | None = None
    if notify.contact is not None:
        ids = (notify.contact,)
    elif notify.team is not None and scope.teams is not None:
        ids = scope.teams[notify.team].members if notify.team in scope.teams else None
    elif notify.schedule is not None and scope.schedules is not None:
        schedule = scope.schedules.get(notify.schedule)
        ids = None if schedule is None else schedule.contact_ids()
        if schedule is not None and ids is None:  # an iCalendar file may name anyone
            ids = tuple(contacts)
    if ids is None or any(person not in contacts for person in ids):
        return None
    return [contacts[person] for person in ids]


class PolicyConfig(ConfigModel):
    """An escalation policy: steps in order, repeated, then reminders while acknowledged."""

    id: Slug
    steps: Annotated[tuple[StepConfig, ...], Field(min_length=1)]
    repeat: Annotated[int, Strict(), Field(ge=0)] = 0
    reminder: PositiveDuration | None = None


class MatchConfig(ConfigModel):
    """What a route matches: every key given must match; a list means any of its values."""

    area: AreaRefs = ()
    grade: Annotated[tuple[GradeRef, ...], BeforeValidator(_one_or_many)] = ()
    instrument_kind: Annotated[tuple[KindRef, ...], BeforeValidator(_one_or_many)] = ()
    parameter: Annotated[tuple[ParameterRef, ...], BeforeValidator(_one_or_many)] = ()
    sensor: SensorRefs = ()
    level: Annotated[tuple[Literal["alert", "action"], ...], BeforeValidator(_one_or_many)] = ()
    alarm: Annotated[tuple[AlarmRef, ...], BeforeValidator(_one_or_many)] = ()
    system: Annotated[tuple[SystemRef, ...], BeforeValidator(_one_or_many)] = ()

    @model_validator(mode="after")
    def _meaningful(self) -> MatchConfig:
        given = [name for name in type(self).model_fields if getattr(self, name)]
        if not given:
            raise ValueError(
                "give at least one key to match on (a route without match is the default route)"
            )
        if self.system and len(given) > 1:
            others = ", ".join(name for name in given if name != "system")
            _fail(
                [
                    (
                        ("system",),
                        f"system events have no {others}: a route matches system events "
                        "or alarms, not both",
                    )
                ]
            )
        return self


class RouteConfig(ConfigModel):
    """Alarms that match go to ``policy``; the last route (without match) takes the rest."""

    match: MatchConfig | None = None
    policy: Annotated[Slug, _reference("policies")]


class MaintenanceScope(ConfigModel):
    """What a maintenance window silences: areas, instruments, sensors (any of them)."""

    area: AreaRefs = ()
    instrument: InstrumentRefs = ()
    sensor: SensorRefs = ()

    @model_validator(mode="after")
    def _something(self) -> MaintenanceScope:
        if not (self.area or self.instrument or self.sensor):
            raise ValueError("give at least one of area, instrument or sensor")
        return self


class MaintenanceConfig(ConfigModel):
    """A window in which notifications (only) are suppressed: once, or every week."""

    id: Slug
    reason: Text
    scope: MaintenanceScope
    start: LocalDateTime | None = Field(default=None, alias="from")
    end: LocalDateTime | None = Field(default=None, alias="to")
    weekly: Annotated[tuple[WeeklyWindowConfig, ...], BeforeValidator(_one_or_many)] = ()

    @model_validator(mode="after")
    def _one_window(self) -> MaintenanceConfig:
        once = self.start is not None or self.end is not None
        if once and self.weekly:
            _fail([(("weekly",), "give either from/to (once) or weekly, not both")])
        if not once and not self.weekly:
            raise ValueError("give from and to (local times in the site's zone) or weekly")
        if once and (self.start is None or self.end is None):
            missing = "from" if self.start is None else "to"
            _fail([((missing,), "is required with " + ("to" if missing == "from" else "from"))])
        if self.start is not None and self.end is not None and self.end <= self.start:
            _fail([(("to",), f"must be after 'from' ({self.start:%Y-%m-%d %H:%M})")])
        if self.weekly and _weekly(self.weekly, "UTC").state_at(0)[1] == NEVER_US:
            _fail([(("weekly",), "covers the whole week: that is no maintenance window")])
        return self

    def active(self, at: datetime, tz: ZoneInfo) -> bool:
        """Return True when ``at`` (aware) falls in the window (local times in ``tz``)."""
        return self.end_after(at, tz) is not None

    def end_after(self, at: datetime, tz: ZoneInfo) -> datetime | None:
        """Return when the window ``at`` falls in ends (aware UTC), or None outside it."""
        if self.start is not None and self.end is not None:
            start = self.start.replace(tzinfo=tz).astimezone(UTC)
            end = self.end.replace(tzinfo=tz).astimezone(UTC)
            return end if start <= at < end else None
        state, until = _weekly(self.weekly, tz.key).state_at(to_us(at))
        return from_us(until) if state is Occupancy.IN_OPERATION else None


@functools.lru_cache(maxsize=256)
def _weekly(windows: tuple[WeeklyWindowConfig, ...], timezone: str) -> WeeklySchedule:
    return WeeklySchedule(timezone, tuple(w for window in windows for w in window.windows()))


class AlertmanagerConfig(ConfigModel):
    """The optional forwarder to a Prometheus Alertmanager (v2 API)."""

    url: HttpUrl
    resend_every: PositiveDuration = DEFAULT_RESEND_EVERY


class AlertingConfig(ConfigModel):
    """The ``alerting:`` section: who is told about which alarms, how and when."""

    links: LinksConfig | None = None
    grouping: GroupingConfig = GroupingConfig()
    shelving: ShelvingConfig = ShelvingConfig()
    contacts: Annotated[tuple[ContactConfig, ...], Field(min_length=1)]
    teams: tuple[TeamConfig, ...] = ()
    schedules: tuple[ScheduleConfig, ...] = ()
    policies: Annotated[tuple[PolicyConfig, ...], Field(min_length=1)]
    routes: Annotated[tuple[RouteConfig, ...], Field(min_length=1)]
    maintenance: tuple[MaintenanceConfig, ...] = ()
    alertmanager: AlertmanagerConfig | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _ids_known(cls, data: object, handler: ValidatorFunctionWrapHandler) -> AlertingConfig:
        """Validate with every id written in the section known to the references."""
        with _using(dataclasses.replace(_scope(), ids=_raw_ids(data))):
            return handler(data)  # type: ignore[no-any-return]

    @field_validator(*_LISTS, "routes", mode="wrap")
    @classmethod
    def _lists(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> tuple[object, ...]:
        """Validate a list with the lists before it known; refuse duplicate ids in it."""
        field = str(info.field_name)
        scope = dataclasses.replace(
            _scope(),
            contacts=_by_id(info.data.get("contacts")),
            teams=_by_id(info.data.get("teams")),
            schedules=_by_id(info.data.get("schedules")),
        )
        if field == "routes":
            problems = _default_route_problems(value)
        else:
            problems = _duplicate_problems(_LISTS[field], field, _ids_in(value))
        with _using(scope):
            return _validate_with(handler, value, problems)  # type: ignore[no-any-return]

    def contact(self, contact_id: str) -> ContactConfig:
        """Return the contact with id ``contact_id`` (``KeyError`` if there is none)."""
        return _find(self.contacts, contact_id)

    def team(self, team_id: str) -> TeamConfig:
        """Return the team with id ``team_id`` (``KeyError`` if there is none)."""
        return _find(self.teams, team_id)

    def schedule(self, schedule_id: str) -> ScheduleConfig:
        """Return the schedule with id ``schedule_id`` (``KeyError`` if there is none)."""
        return _find(self.schedules, schedule_id)

    def policy(self, policy_id: str) -> PolicyConfig:
        """Return the policy with id ``policy_id`` (``KeyError`` if there is none)."""
        return _find(self.policies, policy_id)

    def route_schedules(self, route: RouteConfig) -> tuple[str, ...]:
        """Return the schedules the policy of ``route`` notifies, in step order."""
        steps = self.policy(route.policy).steps
        return tuple(dict.fromkeys(s.notify.schedule for s in steps if s.notify.schedule))


_Item = TypeVar("_Item", ContactConfig, TeamConfig, ScheduleConfig, PolicyConfig)


def _find(items: tuple[_Item, ...], item_id: str) -> _Item:
    for item in items:
        if item.id == item_id:
            return item
    raise KeyError(item_id)


def _by_id(items: object) -> dict[str, Any] | None:
    """Return validated items by id (None when the list is absent or failed validation)."""
    if not isinstance(items, tuple):
        return None
    return {item.id: item for item in items}


def _validate_with(
    handler: ValidatorFunctionWrapHandler, value: object, problems: Sequence[Problem]
) -> Any:  # noqa: ANN401 - whatever the handler returns
    """Validate ``value`` and report ``problems`` together with the handler's own errors."""
    try:
        result = handler(value)
    except ValidationError as exc:
        if problems:
            _fail(problems, also=exc)
        raise
    if problems:
        _fail(problems)
    return result


def _duplicate_problems(kind: str, field: str, found: list[tuple[int, str]]) -> list[Problem]:
    """Refuse an id used twice in one list, at the later use."""
    first: dict[str, int] = {}
    problems: list[Problem] = []
    for index, item_id in found:
        seen = first.setdefault(item_id, index)
        if seen != index:
            problems.append(
                ((index, "id"), f"duplicate {kind} id {item_id!r} (first used at {field}[{seen}])")
            )
    return problems


def _default_route_problems(routes: object) -> list[Problem]:
    """Only the last route leaves out ``match``: it takes every alarm no other route took."""
    if not isinstance(routes, list | tuple) or not routes:
        return []
    matches = [isinstance(route, Mapping) and route.get("match") is not None for route in routes]
    problems: list[Problem] = [
        (
            (index,),
            "only the last route may leave out match (the routes after it would never be used)",
        )
        for index, has_match in enumerate(matches[:-1])
        if not has_match
    ]
    if matches[-1]:
        problems.append(
            (
                (len(routes) - 1, "match"),
                "the last route is the default route: leave out its match so that every alarm "
                "goes somewhere",
            )
        )
    return problems
