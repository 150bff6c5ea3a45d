"""Runtime settings of the services: which bus, which time-series store, where they are.

The site configuration (``envmon/config``) says *what* is monitored; these settings say
*how this process runs*: the bus (``memory`` in one process, ``kafka`` across processes),
the Kafka addresses and topic layout, the time-series store (``sqlite`` embedded,
``influx`` in production) and the stream worker's batching. They come, highest priority
first, from ``ENVMON_*`` environment variables, then from a YAML settings file named by
``ENVMON_SETTINGS_FILE`` (or passed with ``--settings``), then the defaults below::

    ENVMON_BUS=kafka ENVMON_KAFKA_BOOTSTRAP=10.0.0.5:9092 envmon stream worker

    # settings.yaml
    bus: kafka
    kafka_bootstrap: kafka-1:9092,kafka-2:9092
    kafka_partitions: 12
    kafka_replication: 3
    timeseries: influx
    influx_url: https://influx.example:8086
    influx_org: plant-a
    influx_bucket: envmon

Secrets (``influx_token``) belong in the environment, not in the file. A bad value is
refused before anything starts, naming the variable or the file key (``load_settings``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from envmon.errors import EnvmonError

ENV_PREFIX: Final = "ENVMON_"
SETTINGS_FILE_VAR: Final = "ENVMON_SETTINGS_FILE"
#: Ports of the services' Prometheus endpoints (``/metrics``), on ``metrics_host``.
DEFAULT_COLLECT_METRICS_PORT: Final = 9471
DEFAULT_WORKER_METRICS_PORT: Final = 9472
DEFAULT_RECORDS_METRICS_PORT: Final = 9473


#: Where envmon looks for InfluxDB unless told (``influx_url``).
DEFAULT_INFLUX_URL: Final = "http://127.0.0.1:8086"


class SettingsError(EnvmonError):
    """The settings cannot be used; the message names each bad variable or key."""


class Settings(BaseSettings):
    """How an envmon process runs (see the module docstring for the sources)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    site: Path = Field(
        default=Path("deploy/examples/site.yaml"), description="the site configuration (YAML)"
    )
    data_dir: Path = Field(
        default=Path("var/envmon"), description="local state: SQLite stores, faust data"
    )

    bus: Literal["memory", "kafka"] = "memory"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = Field(default=8, ge=1, le=10_000)
    kafka_replication: int = Field(default=1, ge=1, le=16)
    kafka_client_id: str = "envmon"
    kafka_session_timeout_s: float = Field(
        default=10.0,
        ge=6,
        le=300,
        description="a worker silent this long is out of the group: its partitions move",
    )
    app_id: str = Field(
        default="envmon-stream",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="the faust app id: consumer group and prefix of its changelog topics",
    )
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="prepended to every topic name (several installations on one cluster)",
    )

    batch_max: int = Field(default=5_000, ge=1, le=100_000, description="readings per batch")
    batch_within_s: float = Field(default=0.02, gt=0, le=10)
    checkpoint_interval_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description=(
            "how often a worker saves its sensors' states and commits its offsets"
            " (0: after every batch); a restarted worker repeats at most this much"
        ),
    )
    tick_s: float = Field(
        default=1.0,
        ge=0,
        description="wall-clock tick for stale data while caught up (0: data time only)",
    )

    timeseries: Literal["sqlite", "influx", "none"] = "sqlite"
    influx_url: str = DEFAULT_INFLUX_URL
    influx_token: SecretStr = SecretStr("")
    influx_org: str = "envmon"
    influx_bucket: str = "envmon"
    influx_timeout_s: float = Field(default=10.0, gt=0)
    timeseries_batch_max: int = Field(
        default=50_000,
        ge=1,
        le=1_000_000,
        description="most readings per time-series write (also written at every checkpoint)",
    )

    metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="address the services' Prometheus endpoints listen on (loopback only)",
    )
    collect_metrics_port: int = Field(
        default=DEFAULT_COLLECT_METRICS_PORT,
        ge=0,
        le=65_535,
        description="port of envmon collect's /metrics (0: off)",
    )
    worker_metrics_port: int = Field(
        default=DEFAULT_WORKER_METRICS_PORT,
        ge=0,
        le=65_535,
        description="port of envmon stream worker's /metrics (0: off; one per worker on a host)",
    )
    records_metrics_port: int = Field(
        default=DEFAULT_RECORDS_METRICS_PORT,
        ge=0,
        le=65_535,
        description="port of envmon excursions consume's /metrics (0: off)",
    )

    records_db: SecretStr = Field(
        default=SecretStr(""),
        description="SQLAlchemy URL of the QA record store (empty: SQLite in data_dir)",
    )

    audit_key_file: Path | None = Field(
        default=None,
        description=(
            "the private Ed25519 key that signs audit checkpoints (envmon audit keygen);"
            " only the checkpoint service's user may read it"
        ),
    )
    audit_public_key_file: Path | None = Field(
        default=None,
        description=(
            "PEM public key(s) audit checkpoints are verified with (default: the key file"
            " with .pub appended)"
        ),
    )
    audit_checkpoint_file: Path | None = Field(
        default=None, description="the append-only JSON-lines file of signed audit checkpoints"
    )

    @model_validator(mode="after")
    def _influx_complete(self) -> Settings:
        if self.timeseries == "influx" and not self.influx_url:
            raise ValueError("timeseries is influx but influx_url is empty")
        return self

    @property
    def faust_broker(self) -> str:
        """Return the bootstrap servers in faust's URL form."""
        return ";".join(f"kafka://{server.strip()}" for server in self.kafka_bootstrap.split(","))

    @property
    def records_url(self) -> str:
        """Return the record store's URL (may hold a password: do not log it)."""
        url = self.records_db.get_secret_value()
        return url or f"sqlite:///{self.data_dir / 'records.sqlite3'}"

    @property
    def audit_public_keys(self) -> Path | None:
        """Return the file of the checkpoints' public keys (None: none configured)."""
        if self.audit_public_key_file is not None:
            return self.audit_public_key_file
        if self.audit_key_file is not None:
            return self.audit_key_file.with_name(self.audit_key_file.name + ".pub")
        return None

    def as_env(self) -> dict[str, str]:
        """Return these settings as ``ENVMON_*`` variables (to start another process)."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:  # unset: the default again in the other process
                continue
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            env[f"{ENV_PREFIX}{name.upper()}"] = text
        return env

    def topic(self, name: str) -> str:
        """Return the full name of one of envmon's topics (with the prefix)."""
        return f"{self.topic_prefix}{name}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then ``ENVMON_*`` variables, then the YAML file, then defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(SETTINGS_FILE_VAR)
        if path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_settings(path: Path | None = None, **overrides: object) -> Settings:
    """Read the settings; raise ``SettingsError`` naming every bad variable or key.

    ``path`` (a YAML file) takes the place of ``ENVMON_SETTINGS_FILE``; ``overrides`` win
    over everything (command-line options).
    """
    file = path if path is not None else os.environ.get(SETTINGS_FILE_VAR)
    if file is not None and not Path(file).is_file():
        raise SettingsError(f"settings file {file}: not found")
    previous = os.environ.get(SETTINGS_FILE_VAR)
    try:
        if file is not None:
            os.environ[SETTINGS_FILE_VAR] = str(file)
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            where = f"{ENV_PREFIX}{name.upper()} / {file or 'no settings file'}: {name}"
            problems.append(f"{where}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None
    finally:
        if previous is None:
            os.environ.pop(SETTINGS_FILE_VAR, None)
        else:
            os.environ[SETTINGS_FILE_VAR] = previous
