"""Durations in the site file: plain seconds or compact strings such as ``30s`` or ``1h30m``."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(
    r"^\s*(?:(?P<d>\d+(?:\.\d+)?)\s*d)?\s*(?:(?P<h>\d+(?:\.\d+)?)\s*h)?"
    r"\s*(?:(?P<m>\d+(?:\.\d+)?)\s*m)?\s*(?:(?P<s>\d+(?:\.\d+)?)\s*s)?\s*$"
)
DURATION_HELP = "seconds as a number or a duration such as '30s', '5m', '1h30m' or '1d'"


def parse_duration(value: object) -> float:
    """Return ``value`` (seconds, or a string like ``"1h30m"``) as float seconds.

    Raises ``ValueError`` with a message fit for a configuration issue; negative, infinite
    and boolean values are refused.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be {DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None or not any(match.groupdict().values()):
            raise ValueError(f"must be {DURATION_HELP} (got {value!r})")
        seconds = sum(
            float(amount) * _UNIT_SECONDS[unit]
            for unit, amount in match.groupdict().items()
            if amount is not None
        )
    else:
        raise ValueError(f"must be {DURATION_HELP}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"must be a finite, non-negative duration (got {value!r})")
    return seconds
