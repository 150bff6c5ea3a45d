"""What a collector binding may point at: the site's sensors, known while ``collectors`` validates.

A binding (an OPC-UA node, an MQTT channel) names a ``sensor_id`` that must exist in the
site. The collector schemas are validated inside the whole ``SiteConfig``, where the areas
have already been validated; ``SiteConfig`` publishes their sensor ids and units here
for the duration of the ``collectors`` validation, so that a binding's own field validator
can refuse an unknown sensor and the error carries that field's YAML path and line.

Validated on its own (a unit test, a tool), a collector schema has no site: the check is
skipped then.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

_SITE_SENSORS: ContextVar[Mapping[str, str] | None] = ContextVar(
    "envmon_site_sensors", default=None
)


@contextmanager
def site_sensors(units: Mapping[str, str]) -> Iterator[None]:
    """Make the site's sensors (id → unit) known to binding validators inside the block."""
    token = _SITE_SENSORS.set(units)
    try:
        yield
    finally:
        _SITE_SENSORS.reset(token)


def site_sensor_unit(sensor_id: str) -> str | None:
    """Return the unit of a sensor of the site; None when no site is being validated.

    Raises ``ValueError`` (worded for a configuration issue) when a site is being validated
    and has no such sensor.
    """
    units = _SITE_SENSORS.get()
    if units is None:
        return None
    unit = units.get(sensor_id)
    if unit is None:
        close = difflib.get_close_matches(sensor_id, list(units), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"no sensor {sensor_id!r} in this site{hint}")
    return unit
