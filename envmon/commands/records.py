"""``envmon db upgrade|grant`` and ``envmon excursions …``: the QA record store from the shell.

(``envmon audit …`` is in ``envmon.commands.audit``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from envmon.bus import ALARMS, NOTIFICATIONS
from envmon.config import SiteConfig
from envmon.metrics import Describe, MetricSet, describe_outages, registry_of, serve_metrics
from envmon.outagelog import kafka_outage_log
from envmon.settings import Settings, SettingsError
from envmon.timeseries import SeriesReader
from envmon.timeutil import utcnow
from excursions.consumer import consume_events, consume_records
from excursions.db import store_engine
from excursions.migrate import current, grant_app_role, newest, upgrade
from excursions.records import RecordStore
from excursions.timeline import TimelineStore
from stream.timeseries.sqlite import SqliteTimeSeries

if TYPE_CHECKING:
    from alerts.web import IncidentServices
    from stream.kafka.bus import KafkaBus
    from stream.timeseries.influxdb import InfluxSeriesReader


def open_engine(url: str) -> Engine:
    """Return an engine for the store (creating a SQLite file's folder if needed)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return store_engine(url)


def require_migrated(engine: Engine) -> None:
    """Refuse to run on a store that is not at the code's newest revision."""
    if current(engine) != newest():
        raise SettingsError(
            f"record store at revision {current(engine) or 'empty'}, the code needs "
            f"{newest()}: run envmon db upgrade first"
        )


def migrated_engine(url: str, *, snapshot: bool = False) -> Engine:
    """Return an engine on an existing, migrated store (else ``SettingsError``).

    A SQLite file that does not exist is not created, a store that was never migrated (or
    is behind the code) is named with the command that fixes it, and a connection that
    fails is reported without a traceback or the URL's password. ``snapshot``: for readers
    that need one consistent view (``envmon audit verify``).
    """
    parsed = make_url(url)
    database = parsed.database
    local = parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
    if local and not Path(str(database)).is_file():
        raise SettingsError(f"no record store at {database} (envmon db upgrade creates it)")
    engine = store_engine(url, snapshot=snapshot)
    try:
        require_migrated(engine)
    except (OperationalError, DBAPIError) as exc:
        engine.dispose()
        reason = (
            str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        )
        where = parsed.render_as_string(hide_password=True)
        raise SettingsError(f"cannot read the record store {where}: {reason}") from None
    except SettingsError:
        engine.dispose()
        raise
    return engine


def upgrade_db(url: str) -> tuple[str | None, str | None]:
    """Migrate the store to the newest revision; return (before, after)."""
    engine = open_engine(url)
    try:
        before = current(engine)
        upgrade(engine)
        return before, current(engine)
    finally:
        engine.dispose()


def grant_db(url: str, role: str, *, read_only: bool = False) -> None:
    """Give a PostgreSQL role exactly the application's rights, or read rights (as owner)."""
    engine = open_engine(url)
    try:
        grant_app_role(engine, role, read_only=read_only)
    finally:
        engine.dispose()


async def run_consume(
    settings: Settings,
    url: str,
    *,
    stop: asyncio.Event | None = None,
    store_out: list[RecordStore] | None = None,
    events_out: list[TimelineStore] | None = None,
) -> None:
    """Consume records, alarms and notifications from Kafka until ``stop`` (or SIGTERM).

    aiokafka's connection errors are summarised per outage (``envmon.outagelog``) and the
    consumer's counters served to Prometheus (``records_metrics_port``) while it runs.
    """
    if settings.bus != "kafka":
        raise SettingsError(
            "ENVMON_BUS / bus: envmon excursions consume reads Kafka; set bus: kafka "
            "(inside envmon demo the in-process bus feeds the store directly)"
        )
    from stream.kafka.bus import KafkaBus  # aiokafka: only for the consumer
    from stream.kafka.topics import ensure_topics

    engine = open_engine(url)
    try:
        require_migrated(engine)
        with kafka_outage_log() as outage_log:
            await ensure_topics(settings)
            stop = stop or asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signum, stop.set)
            store = RecordStore(engine)
            events = TimelineStore(engine)
            if store_out is not None:
                store_out.append(store)
            if events_out is not None:
                events_out.append(events)
            bus = KafkaBus(
                settings.kafka_bootstrap,
                client_id=f"{settings.kafka_client_id}-records",
                topic_prefix=settings.topic_prefix,
            )
            registry = registry_of(
                describe_consumer(bus, store, events), describe_outages(outage_log)
            )
            with serve_metrics(
                registry,
                settings.metrics_host,
                settings.records_metrics_port,
                setting="ENVMON_RECORDS_METRICS_PORT / --metrics-port",
            ):
                await _consume(settings, bus, store, events, stop)
    finally:
        engine.dispose()


async def _consume(
    settings: Settings,
    bus: KafkaBus,
    store: RecordStore,
    events: TimelineStore,
    stop: asyncio.Event,
) -> None:
    """Run the three consumers until ``stop``; raise what stopped one of them."""
    await bus.start()
    consumers = {
        asyncio.create_task(consume_records(bus, store, group=f"{settings.app_id}-records")),
        *(
            asyncio.create_task(
                consume_events(bus, events, topic, group=f"{settings.app_id}-timeline")
            )
            for topic in (ALARMS, NOTIFICATIONS)
        ),
    }
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({*consumers, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in done & consumers:
            task.result()  # a consumer never ends by itself: raise its error
    finally:
        for task in (*consumers, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.stop()


def describe_consumer(bus: KafkaBus, store: RecordStore, events: TimelineStore) -> Describe:
    """Describe what the record consumer stored, how far behind it is and when it last did."""

    def describe(m: MetricSet) -> None:
        for stats in list(bus.subscriptions.values()):
            labels = {"topic": stats.topic, "group": stats.group}
            m.counter("consumer_messages", "messages taken and stored", stats.handled, **labels)
            m.gauge("consumer_lag", "messages on Kafka not yet fetched", stats.lag, **labels)
            m.timestamp(
                "consumer_last_message_timestamp_seconds",
                "when a message was last stored (Unix time)",
                stats.last_handled_at,
                **labels,
            )
        m.counter("records_applied", "record revisions applied to the store", store.applied)
        m.counter("records_rejected", "messages that were not records", store.rejected)
        m.counter("timeline_applied", "alarm events and notifications stored", events.applied)
        m.counter("timeline_rejected", "messages that were not events", events.rejected)
        m.counter("bus_published", "messages Kafka acknowledged", bus.published, bus="records")

    return describe


def series_reader(
    settings: Settings, site: SiteConfig
) -> SqliteTimeSeries | InfluxSeriesReader | None:
    """Return the read side of the time-series store the settings name (None: ``none``).

    Both adapters are the port's ``SeriesReader`` (trends and the status page).
    """
    if settings.timeseries == "sqlite":
        path = settings.data_dir / "timeseries.sqlite3"  # the stream worker's
        return SqliteTimeSeries(path) if path.exists() else None
    if settings.timeseries == "influx":
        from stream.timeseries.influxdb import InfluxSeriesReader

        return InfluxSeriesReader(
            settings.influx_url,
            settings.influx_token.get_secret_value(),
            settings.influx_org,
            settings.influx_bucket,
            timeout_s=settings.influx_timeout_s,
            site=site.site_id,
        )
    return None


def incident_services(
    site: SiteConfig,
    site_path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> IncidentServices:
    """Build what the incidents pages need: the alerting engine and the link signer (no bus).

    Raise ``SettingsError`` for a site without ``alerting:``, or with acknowledge links whose
    secret is not in the environment.
    """
    from alerts.engine import AlertEngine
    from alerts.rota import Rota
    from alerts.routing import site_context
    from alerts.web import IncidentServices
    from envmon.commands.alerts import alerting_of, link_signer

    alerting = alerting_of(site, str(site_path))
    rota = Rota.from_config(alerting, site_tz=site.tzinfo, base_dir=site_path.parent)
    engine = AlertEngine(alerting, rota, site_context(site), site_tz=site.tzinfo, clock=clock)
    return IncidentServices(
        engine, link_signer(alerting, os.environ if environ is None else environ)
    )


def serve(
    url: str,
    *,
    host: str,
    port: int,
    secure_cookie: bool = True,
    site_timezone: str = "UTC",
    site_name: str = "envmon",
    series: SeriesReader | None = None,
    site: SiteConfig | None = None,
    site_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    latest: SeriesReader | None = None,
) -> None:
    """Serve the QA app on ``host:port`` with uvicorn until SIGTERM / Ctrl-C.

    Given the site (and its file's path, for iCalendar rotas) with an ``alerting:`` section,
    the app also serves the incidents pages and API. Given the site, it serves the live
    status page (``dashboards.status``, reading ``latest``) and, when the site names a
    Grafana, links channels and records to their panels.
    """
    import uvicorn

    from dashboards.status import StatusServices, grafana_linker, status_extension
    from excursions.lifecycle import Lifecycle
    from excursions.sessions import Sessions
    from excursions.users import UserStore
    from excursions.web.api import Services
    from excursions.web.app import create_app

    incidents = None
    if site is not None and site.alerting is not None:
        incidents = incident_services(site, site_path or Path("site.yaml"), environ=environ)
    engine = open_engine(url)
    try:
        require_migrated(engine)
        users = UserStore(engine)
        services = Services(
            engine,
            Sessions(engine, users),
            Lifecycle(engine, users),
            secure_cookie=secure_cookie,
            site_timezone=site_timezone,
            series=series,
            grafana_link=grafana_linker(site) if site is not None else None,
            display=site.display() if site is not None else None,
            site=site,
        )
        extensions = []
        if site is not None:
            status = StatusServices(site, latest)
            extensions.append(status_extension(services, status, site_name=site_name))
        app = create_app(services, site_name=site_name, incidents=incidents, extensions=extensions)
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        engine.dispose()


def report(
    url: str,
    record_id: str,
    output: Path,
    site: SiteConfig,
    series: SeriesReader | None = None,
    *,
    paper: str = "a4",
    clock: Callable[[], datetime] = utcnow,
) -> Path:
    """Write the PDF report of one record; raise ``LookupError`` for an unknown id.

    ``paper`` is ``a4`` or ``letter``; the report is printed at ``clock()`` (the clock the
    records are written with), its values written with the site's ``Display``.
    """
    from excursions.queries import record_detail
    from excursions.report import write_report
    from excursions.series import fetch_trend

    engine = open_engine(url)
    try:
        require_migrated(engine)
        detail = record_detail(engine, record_id, site.tzinfo, site.display())
    finally:
        engine.dispose()
    if detail is None:
        raise LookupError(f"no record {record_id!r}")
    now = clock()
    chart = fetch_trend(series, detail.record, now=now, zone=site.tzinfo)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_report(
        detail,
        output,
        site_name=site.name,
        chart=chart,
        display=site.display(),
        printed_at=now,
        paper=paper,
    )
    return output
