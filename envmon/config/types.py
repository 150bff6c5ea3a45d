"""Building blocks of the configuration schema: the base model and validated value types.

Shared by the site schema (``schema.py``) and the collector schemas (``collectors.py``,
``mqtt.py``, ``opcua.py``).
"""

from __future__ import annotations

import re
from typing import Annotated, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

from envmon.config.durations import parse_duration
from envmon.models import SENSOR_ID_PATTERN

SLUG_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SENSOR_ID = re.compile(SENSOR_ID_PATTERN)


def _check_slug(value: str) -> str:
    if not SLUG_PATTERN.match(value):
        raise ValueError(
            "must be an id of letters, digits, '-', '_' and '.' (starting with a letter or "
            f"digit, at most 63 characters), got {value!r}"
        )
    return value


def _check_sensor_id(value: str) -> str:
    if not _SENSOR_ID.match(value):
        raise ValueError(
            "must be a sensor id of letters, digits and '_', '.', ':', '/', '-' "
            f"(at most 128 characters), got {value!r}"
        )
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as 'Europe/Amsterdam'"
        ) from None
    return value


#: A name that can name an environment variable.
ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_name(value: str) -> str:
    if not ENV_NAME.match(value):
        raise ValueError(
            "must be the name of an environment variable (letters, digits and '_', not "
            f"starting with a digit), got {value!r}"
        )
    return value


def _check_http_url(value: str) -> str:
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    if scheme.lower() not in ("http", "https") or not host or "@" in host:
        raise ValueError(  # not quoted: it might hold a password
            "must be an http(s) URL such as 'https://envmon.example.org' (without a user "
            "name or password)"
        )
    return value


Number = Annotated[float, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]
Slug = Annotated[str, Strict(), AfterValidator(_check_slug)]
SensorIdText = Annotated[str, Strict(), AfterValidator(_check_sensor_id)]
TimezoneName = Annotated[str, Strict(), AfterValidator(_check_timezone)]
Fraction = Annotated[float, Strict(), Field(gt=0, le=1)]
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
EnvName = Annotated[str, Strict(), AfterValidator(_check_env_name)]
HttpUrl = Annotated[str, Strict(), AfterValidator(_check_http_url)]


class ConfigModel(BaseModel):
    """Base of every schema model: frozen, unknown keys refused, no NaN or infinity."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True
    )

    def explicit(self) -> dict[str, object]:
        """Return the fields written in the file (including explicit nulls), by name."""
        return {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name in self.model_fields_set
        }
