"""The ``dashboards:`` section of the site file: where Grafana is and how it reaches the data.

Everything here is optional; without the section ``envmon dashboards generate`` writes a
tree for an InfluxDB at the runtime settings' ``influx_url`` and the QA app shows no
"open in Grafana" links. Secrets never live in the file: the InfluxDB token and the record
store's password are named by their environment variables, which Grafana's provisioning
expands (``$__env{NAME}``) and ``envmon dashboards push`` reads.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field

from envmon.config.types import ConfigModel, EnvName, HttpUrl, PositiveDuration, Text

DEFAULT_TOKEN_ENV: Final = "ENVMON_INFLUX_TOKEN"  # noqa: S105 - a variable name
DEFAULT_DATABASE: Final = "envmon"


class InfluxSourceConfig(ConfigModel):
    """The InfluxDB as Grafana reaches it (InfluxQL: 1.8, or 2.x/3.x through their v1 API)."""

    url: HttpUrl | None = None  # default: the runtime settings' influx_url
    database: Text = DEFAULT_DATABASE
    token_env: EnvName = DEFAULT_TOKEN_ENV


class RecordStoreSourceConfig(ConfigModel):
    """The QA record store (PostgreSQL) as a Grafana data source, read-only user."""

    host: Text  # host:port
    database: Text = "envmon"
    user: Text = "envmon_grafana"
    password_env: EnvName = "ENVMON_GRAFANA_DB_PASSWORD"  # noqa: S105 - a variable name
    ssl_mode: Annotated[str, Field(pattern="^(disable|require|verify-ca|verify-full)$")] = "require"


class DashboardsConfig(ConfigModel):
    """Grafana's address (links, push), its folder and its data sources."""

    grafana_url: HttpUrl | None = None
    folder: Text | None = None  # default: "envmon — <site name>"
    refresh: PositiveDuration = 10.0  # seconds between dashboard refreshes
    influxdb: InfluxSourceConfig = InfluxSourceConfig()
    record_store: RecordStoreSourceConfig | None = None
