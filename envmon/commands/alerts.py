"""``envmon alerts run``: the alerting service on Kafka and the record store, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from alerts.delivery import AppriseNotifier, Notifier
from alerts.dispatcher import Dispatcher
from alerts.engine import AlertEngine
from alerts.links import LinkError, LinkSigner
from alerts.rota import Rota
from alerts.routing import site_context
from alerts.service import GROUP_SUFFIX, AlertService
from envmon.bus import Bus
from envmon.config import SiteConfig, load_site
from envmon.config.alerting import AlertingConfig
from envmon.settings import Settings, SettingsError
from envmon.timeutil import utcnow


def alerting_of(site: SiteConfig, source: str) -> AlertingConfig:
    """Return the site's ``alerting:`` section; refuse a site without one."""
    if site.alerting is None:
        raise SettingsError(
            f"{source}: the site file has no alerting: section (contacts, schedules, policies,"
            " routes): see deploy/examples/site.yaml"
        )
    return site.alerting


def link_signer(alerting: AlertingConfig, environ: Mapping[str, str]) -> LinkSigner | None:
    """Return the signer of acknowledge links, or None when links are not configured."""
    links = alerting.links
    if links is None:
        return None
    secret = environ.get(links.secret_env, "")
    if not secret:
        raise SettingsError(
            f"alerting.links.secret_env: the environment variable {links.secret_env} is not set"
            " (it holds the key that signs acknowledge links)"
        )
    try:
        return LinkSigner(secret, valid_for=timedelta(seconds=links.valid_for))
    except LinkError as exc:
        raise SettingsError(f"{links.secret_env}: {exc}") from None


def build_service(
    site: SiteConfig,
    site_path: Path,
    *,
    bus: Bus,
    db: Engine,
    group: str,
    notifier: Notifier | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = utcnow,
    instance: str | None = None,
    poll_s: float | None = None,
) -> AlertService:
    """Compose the alerting service for a site (the CLI and ``envmon demo`` use this)."""
    environ = os.environ if environ is None else environ
    alerting = alerting_of(site, str(site_path))
    rota = Rota.from_config(alerting, site_tz=site.tzinfo, base_dir=site_path.parent)
    engine = AlertEngine(alerting, rota, site_context(site), site_tz=site.tzinfo, clock=clock)
    dispatcher = Dispatcher(
        db,
        engine,
        notifier or AppriseNotifier(),
        site_name=site.name,
        site_tz=site.tzinfo,
        instance=instance or f"{socket.gethostname()}-{os.getpid()}",
        signer=link_signer(alerting, environ),
        environ=environ,
        clock=clock,
    )
    forwarder = None
    if alerting.alertmanager is not None:
        from alerts.alertmanager import AlertmanagerForwarder

        forwarder = AlertmanagerForwarder(alerting.alertmanager, site=site.name, clock=clock)
    extra = {} if poll_s is None else {"poll_s": poll_s}
    return AlertService(
        bus=bus,
        db=db,
        engine=engine,
        dispatcher=dispatcher,
        group=group,
        clock=clock,
        forwarder=forwarder,
        **extra,
    )


async def run_alerts(settings: Settings, url: str, *, stop: asyncio.Event | None = None) -> None:
    """Run the alerting service on Kafka until ``stop`` (or SIGTERM / SIGINT)."""
    from envmon.commands.records import open_engine, require_migrated
    from stream.kafka.bus import KafkaBus
    from stream.kafka.topics import ensure_topics

    if settings.bus != "kafka":
        raise SettingsError(
            "ENVMON_BUS / bus: envmon alerts run reads Kafka; set bus: kafka"
            " (envmon demo runs the alerting service in-process)"
        )
    site = load_site(settings.site)
    engine = open_engine(url)
    try:
        require_migrated(engine)
        await ensure_topics(settings)
        bus = KafkaBus(
            settings.kafka_bootstrap,
            client_id=f"{settings.kafka_client_id}-alerts",
            topic_prefix=settings.topic_prefix,
        )
        service = build_service(
            site, settings.site, bus=bus, db=engine, group=f"{settings.app_id}{GROUP_SUFFIX}"
        )
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        await bus.start()
        try:
            running = asyncio.create_task(service.run())
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            service.stop()
            if running in done:
                running.result()
            else:
                await asyncio.wait_for(running, 10)
        finally:
            await bus.stop()
    finally:
        engine.dispose()
