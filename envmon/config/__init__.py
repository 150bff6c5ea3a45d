"""Site configuration: the YAML schema, its loader with located errors, and resolution.

``load_site`` / ``parse_site`` return a validated ``SiteConfig``; ``SiteConfig.sensors()``
resolves every channel into the ``envmon.sensors.SensorSpec`` the evaluation core runs on.
"""

from envmon.config.loader import load_site, parse_site
from envmon.config.particles import ANNEX1_TABLE5, PARTICLE_SIZES_UM, PARTICLE_UNIT, iso_class_limit
from envmon.config.schedule import WeeklySchedule, WeeklyWindow
from envmon.config.schema import (
    AreaConfig,
    ChannelConfig,
    InstrumentConfig,
    LimitsConfig,
    SiteConfig,
)
from envmon.errors import ConfigError, ConfigIssue

__all__ = [
    "ANNEX1_TABLE5",
    "PARTICLE_SIZES_UM",
    "PARTICLE_UNIT",
    "AreaConfig",
    "ChannelConfig",
    "ConfigError",
    "ConfigIssue",
    "InstrumentConfig",
    "LimitsConfig",
    "SiteConfig",
    "WeeklySchedule",
    "WeeklyWindow",
    "iso_class_limit",
    "load_site",
    "parse_site",
]
