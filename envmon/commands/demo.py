"""``envmon demo``: the whole pipeline in one process on the embedded defaults.

An embedded MQTT broker (amqtt), the example site's simulated equipment (MQTT particle
counters and incubators, an OPC-UA cold-store gateway), both collectors, the durable
buffer, the in-process bus, the evaluation core, SQLite for readings and for the QA record
store (records, alarms for the timeline, audit trail, users), the QA web app on
http://127.0.0.1:8000 with demo users whose passwords are printed at start, and a live
terminal view. Simulated time runs ``speed`` times faster than real time, so a ten-minute
alarm delay passes in seconds; the scenario scripts the faults. The record store and the
app run on the simulated clock too (an acknowledgement lands in the timeline after the
alarm it answers); sign-in sessions and throttling run on the real clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import uvicorn
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.live import Live
from sqlalchemy import Engine

from alerts.service import AlertService
from alerts.smtp import EmbeddedSmtpServer, ReceivedMail
from alerts.web import IncidentServices
from collectors.buffer import Outbox
from collectors.embedded_broker import EmbeddedBroker
from collectors.mqtt import MqttCollector
from collectors.opcua import OpcUaCollector
from collectors.pipeline import CollectorPipeline
from collectors.simulators.equipment import Simulation
from collectors.simulators.mqtt_devices import MqttDeviceSimulator
from collectors.simulators.opcua_server import EquipmentServer
from collectors.simulators.scenario import load_scenario
from dashboards.provisioning import build_tree
from dashboards.status import StatusServices, grafana_linker, status_extension
from envmon.bus import ALARMS, NOTIFICATIONS, InMemoryBus
from envmon.commands.alerts import build_service
from envmon.commands.demo_view import DemoView, event_line, progress_line, render
from envmon.config import SiteConfig, load_site
from envmon.display import Display
from envmon.errors import EnvmonError
from envmon.models import AlarmEvent, SystemEvent
from envmon.netutil import free_port
from envmon.settings import DEFAULT_INFLUX_URL
from envmon.timeutil import ScaledClock, to_us, utcnow
from excursions.consumer import consume_events, consume_records
from excursions.db import store_engine
from excursions.lifecycle import Lifecycle
from excursions.migrate import upgrade
from excursions.queries import core_records, count_records
from excursions.records import RecordStore
from excursions.sessions import Sessions
from excursions.timeline import TimelineStore
from excursions.users import UserStore
from excursions.web.api import Services
from excursions.web.app import create_app
from stream.embedded import StreamProcessor
from stream.timeseries.sqlite import SqliteTimeSeries

logger = logging.getLogger(__name__)

DEFAULT_SITE: Final = Path("deploy/examples/site.yaml")
DEFAULT_SCENARIO: Final = Path("deploy/examples/demo-scenario.yaml")
DEFAULT_SPEED: Final = 30.0
DEFAULT_WEB_PORT: Final = 8000
#: How long the demo waits for each collector to listen before its scenario starts (s).
_LISTEN_S: Final = 10.0
#: The demo's users: user id → (printed name, role).
DEMO_USERS: Final = {
    "operator": ("Olga Operator", "operator"),
    "qa": ("Quinn QA", "qa"),
    "viewer": ("Vic Viewer", "viewer"),
    "admin": ("Ada Admin", "admin"),
}
REFRESH_PER_S: Final = 4
#: The demo's log in its work directory: envmon's lines from INFO, the libraries' warnings.
LOG_FILE: Final = "demo.log"
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: The packages whose loggers are envmon's own (their warnings are shown on screen).
OWN_LOGGERS: Final = frozenset(
    {"envmon", "collectors", "stream", "excursions", "alerts", "dashboards"}
)
#: Real seconds between two progress lines when there is no live view.
PROGRESS_S: Final = 10.0
WEB_START_TIMEOUT_S: Final = 10.0
ACTOR: Final = "system:demo"
_ALARM_OR_SYSTEM = TypeAdapter(AlarmEvent | SystemEvent)


class DemoError(EnvmonError):
    """The demo cannot start (e.g. the web app's port is taken)."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the demo: Ctrl-C and SIGTERM stay the demo's, not the app's.

    ``uvicorn.Server.serve`` takes over SIGINT and SIGTERM, stops the app first and only
    then raises the signal again; the demo stops the app itself, after the collectors and
    the stream, so that the app answers until the end.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the signal handlers alone."""
        yield


@dataclass
class DemoOptions:
    """What ``envmon demo`` was asked to do."""

    config: Path = DEFAULT_SITE
    scenario: Path | None = DEFAULT_SCENARIO
    speed: float = DEFAULT_SPEED
    duration: float | None = None
    summary: Path | None = None
    workdir: Path | None = None
    seed: int | None = None
    live: bool = True
    web_host: str = "127.0.0.1"
    web_port: int | None = DEFAULT_WEB_PORT  #: None: no web app; 0: a free port
    #: Where to write the site's Grafana provisioning tree (None: not written).
    grafana_out: Path | None = None


@dataclass
class DemoRecorder:
    """Everything the demo saw, for the live view and the summary."""

    alarms: list[AlarmEvent] = field(default_factory=list)
    system: list[SystemEvent] = field(default_factory=list)
    recent: deque[AlarmEvent | SystemEvent] = field(default_factory=lambda: deque(maxlen=50))
    #: mails the embedded SMTP server took: (simulated time, to, subject)
    pages: deque[tuple[datetime, str, str]] = field(default_factory=lambda: deque(maxlen=50))
    pages_total: int = 0

    total: int = 0

    def page(self, at: datetime, mail: ReceivedMail) -> None:
        """Record one page the embedded mail server took."""
        self.pages_total += 1
        self.pages.append((at, ", ".join(mail.recipients), mail.subject))

    def add(self, event: AlarmEvent | SystemEvent) -> None:
        """Record one alarm or system event."""
        self.total += 1
        (self.alarms if isinstance(event, AlarmEvent) else self.system).append(event)  # type: ignore[arg-type]
        self.recent.append(event)


def demo_alerting(site: SiteConfig, *, smtp_port: int, app_url: str | None) -> SiteConfig:
    """Send every channel of every contact to the demo's mail server; links to its app."""
    alerting = site.alerting
    if alerting is None:
        return site
    contacts = tuple(
        contact.model_copy(
            update={
                "channels": tuple(
                    channel.model_copy(
                        update={
                            "url": (
                                f"mailto://127.0.0.1:{smtp_port}?to={contact.id}"
                                f".{channel.id}@demo.invalid&from=envmon@demo.invalid"
                            ),
                            "url_env": None,
                        }
                    )
                    for channel in contact.channels
                )
            }
        )
        for contact in alerting.contacts
    )
    update: dict[str, object] = {"contacts": contacts}
    if alerting.links is not None:
        update["links"] = (
            alerting.links.model_copy(update={"base_url": app_url}) if app_url else None
        )
    return site.model_copy(update={"alerting": alerting.model_copy(update=update)})


def retarget(site: SiteConfig, *, mqtt_port: int, opcua_port: int, workdir: Path) -> SiteConfig:
    """Point the site's collectors at the demo's own broker, gateway and buffer."""
    collectors = site.collectors
    mqtt = tuple(
        c.model_copy(update={"host": "127.0.0.1", "port": mqtt_port, "protocol": "3.1.1"})
        for c in collectors.mqtt
    )
    opcua = tuple(
        c.model_copy(update={"endpoint": f"opc.tcp://127.0.0.1:{opcua_port}/envmon/"})
        for c in collectors.opcua
    )
    buffer = collectors.buffer.model_copy(update={"path": str(workdir / "buffer.sqlite3")})
    return site.model_copy(
        update={
            "collectors": collectors.model_copy(
                update={"mqtt": mqtt, "opcua": opcua, "buffer": buffer}
            )
        }
    )


async def run_demo(options: DemoOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the demo until ``duration`` real seconds passed (or forever); return the summary."""
    console = console or Console()
    site = load_site(options.config)
    instruments = {i.id for area in site.areas for i in area.instruments}
    scenario = (
        load_scenario(options.scenario, instruments=instruments) if options.scenario else None
    )
    web_port = _web_port(options)  # a taken port is refused before anything starts
    if options.grafana_out is not None:
        _write_grafana_tree(site, options.grafana_out, console)
    async with (
        _workdir(options.workdir) as workdir,
        demo_logging(workdir / LOG_FILE, console, live=options.live),
    ):
        mqtt_port, opcua_port = free_port(), free_port()
        site = retarget(site, mqtt_port=mqtt_port, opcua_port=opcua_port, workdir=workdir)
        start = utcnow().replace(second=0, microsecond=0)
        # Paused while everything starts (the app's users take seconds of argon2 hashing):
        # at 60x a few seconds are the scenario's first minutes, e.g. its particle burst.
        clock = ScaledClock(start, options.speed, paused=True)
        simulation = Simulation(site, start=start, scenario=scenario, seed=options.seed)
        recorder = DemoRecorder()
        display = site.display()
        passwords: dict[str, str] = {}
        bus = InMemoryBus()
        outbox = Outbox(
            site.collectors.buffer.path,
            max_messages=site.collectors.buffer.max_messages,
            on_event=recorder.add,
            clock=clock,
        )
        timeseries = SqliteTimeSeries(workdir / "readings.sqlite3")
        engine = store_engine(f"sqlite:///{workdir / 'records.sqlite3'}")
        await asyncio.to_thread(upgrade, engine)
        records = RecordStore(engine, clock=clock)
        events = TimelineStore(engine, clock=clock)
        smtp = EmbeddedSmtpServer(on_message=lambda mail: recorder.page(clock(), mail))
        if site.alerting is not None:
            smtp.start()
            app_url = f"http://{options.web_host}:{web_port}" if web_port is not None else None
            site = demo_alerting(site, smtp_port=smtp.port, app_url=app_url)
        alerting = _alert_service(site, options.config, bus, engine, clock)
        web = _web_app(options, web_port, site, engine, timeseries, clock, alerting)
        processor = StreamProcessor(
            bus, site.sensors(), store=timeseries, clock=clock, tick_s=0.25, site=site.site_id
        )
        broker = EmbeddedBroker(mqtt_port)
        gateway = (
            EquipmentServer.for_site(
                site, simulation, clock=clock, endpoint=site.collectors.opcua[0].endpoint
            )
            if site.collectors.opcua
            else None
        )
        devices = MqttDeviceSimulator(
            site, simulation, host="127.0.0.1", port=mqtt_port, clock=clock
        )

        def pipeline(source: str) -> CollectorPipeline:
            return CollectorPipeline(outbox, source=source, clock=clock)

        collectors: list[MqttCollector | OpcUaCollector] = [
            MqttCollector(c, site, pipeline(f"mqtt:{c.id}"), clock=clock, on_event=recorder.add)
            for c in site.collectors.mqtt
            if c.enabled
        ]
        collectors += [
            OpcUaCollector(
                c, site.sensors(), pipeline(f"opcua:{c.id}"), clock=clock, on_event=recorder.add
            )
            for c in site.collectors.opcua
            if c.enabled
        ]
        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        try:
            await broker.start()
            if gateway is not None:
                await gateway.start()
            await processor.start()
            tasks = [
                asyncio.create_task(outbox.forward(bus), name="forward"),
                asyncio.create_task(consume_records(bus, records), name="records"),
                asyncio.create_task(consume_events(bus, events, ALARMS), name="timeline"),
                asyncio.create_task(
                    consume_events(bus, events, NOTIFICATIONS), name="timeline-notifications"
                ),
                asyncio.create_task(_listen_alarms(bus, recorder.add), name="alarms"),
            ]
            if alerting is not None:
                tasks.append(asyncio.create_task(alerting.run(), name="alerts"))
            if web is not None:
                tasks.append(asyncio.create_task(web.serve(), name="web"))
                await _started(web, tasks[-1])
                passwords = await asyncio.to_thread(_demo_users, engine)
                _print_sign_in(console, web, passwords)
            for collector in collectors:
                await collector.start()
            await _listening(collectors)
            clock.resume()
            started = time.monotonic()
            await devices.start()

            excursions = {"applied": -1, "count": 0}  # the store's count, read when it changed

            def screen() -> DemoView:
                if excursions["applied"] != records.applied:
                    excursions["applied"] = records.applied
                    excursions["count"] = count_records(engine, "excursion")
                now = clock()
                evaluator = processor.evaluator
                now_us = to_us(now)
                return render(
                    site,
                    now=now,
                    speed=options.speed,
                    states={s: evaluator.state_of(s) for s in evaluator.sensor_ids},
                    pending={
                        s: found
                        for s in evaluator.sensor_ids
                        if (found := evaluator.pending(s, now_us)) is not None
                    },
                    limits={
                        s: evaluator.channel(s).limits_at(now_us) for s in evaluator.sensor_ids
                    },
                    passwords=passwords,
                    display=display,
                    page_at=time.monotonic(),
                    last=processor.last,
                    readings=processor.readings,
                    recent=recorder.recent,
                    counters={c.pipeline.source: c.counters.as_dict() for c in collectors},
                    excursions=excursions["count"],
                    buffered=len(outbox),
                    app_url=_url(web) if web is not None else None,
                    pages=recorder.pages,
                )

            await _run_for(options, started, screen, console, recorder, display)
        finally:
            with contextlib.suppress(Exception):
                await devices.stop()
            for collector in collectors:
                with contextlib.suppress(Exception):
                    await collector.stop()
            with contextlib.suppress(Exception):
                await outbox.drain(bus, timeout=10)
            await asyncio.sleep(0.5)  # let the processor and consumers take the last messages
            await processor.stop()
            if web is not None:
                web.should_exit = True
            for task in tasks:
                if task.get_name() != "web":
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if gateway is not None:
                with contextlib.suppress(Exception):
                    await gateway.stop()
            smtp.stop()
            with contextlib.suppress(Exception):
                await broker.stop()
        summary = _summary(
            options, started, recorder, engine, processor, collectors, outbox, timeseries
        )
        if alerting is not None:
            summary["alerts"] = {
                "pages": recorder.pages_total,
                "handled": alerting.handled,
                "sent": alerting.dispatcher.sent,
                "failed": alerting.dispatcher.failed,
            }
        if web is not None:
            summary["web"] = {
                "url": _url(web),
                "users": {name: role for name, (_, role) in DEMO_USERS.items()},
            }
        outbox.close()
        timeseries.close()
        engine.dispose()
    if options.summary is not None:
        options.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


async def _run_for(
    options: DemoOptions,
    started: float,
    screen: Callable[[], DemoView],
    console: Console,
    recorder: DemoRecorder,
    display: Display,
) -> None:
    """Show the live view until the deadline; without one, plain lines (alarms, progress)."""
    deadline = None if options.duration is None else started + options.duration
    if not options.live:
        if not console.is_terminal:
            note = "The live view needs a terminal (stdout is not one)"
        else:
            note = "No live view with --summary"
        _plain(
            console, f"{note}: printing alarms as they happen and progress every {PROGRESS_S:g} s."
        )
        printed = 0
        units = screen().units
        progress_at = time.monotonic() + PROGRESS_S
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            printed = _print_new(console, recorder, printed, display, units)
            if time.monotonic() >= progress_at:
                progress_at += PROGRESS_S
                _plain(console, _progress(screen(), recorder, display))
        _plain(console, _progress(screen(), recorder, display))
        return
    with Live(
        screen(),
        console=console,
        refresh_per_second=REFRESH_PER_S,
        screen=False,
        vertical_overflow="crop",
    ) as live:
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(1 / REFRESH_PER_S)
            live.update(screen())


def _plain(console: Console, line: str) -> None:
    """Print one plain line, never wrapped (for logs and pipes)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _progress(view: DemoView, recorder: DemoRecorder, display: Display) -> str:
    return progress_line(
        display,
        now=view.now,
        readings=view.readings,
        alarms=len(recorder.alarms),
        excursions=view.excursions,
        buffered=view.buffered,
        states=[row.state for row in view.rows],
    )


def _print_new(
    console: Console,
    recorder: DemoRecorder,
    printed: int,
    display: Display,
    units: Mapping[str, str],
) -> int:
    """Print the events recorded since ``printed`` events; return how many are printed now."""
    events = list(recorder.recent)
    new = recorder.total - printed
    for event in events[len(events) - min(new, len(events)) :] if new else ():
        _plain(console, event_line(event, display, units))
    return recorder.total


async def _listen_alarms(bus: InMemoryBus, add: Callable[[AlarmEvent | SystemEvent], None]) -> None:
    async for message in bus.subscribe(ALARMS, "demo"):
        with contextlib.suppress(ValidationError):
            add(_ALARM_OR_SYSTEM.validate_json(message.value))


def _web_port(options: DemoOptions) -> int | None:
    """Return the port the app will listen on (None: no app); refuse one that is taken."""
    if options.web_port is None:
        return None
    port = options.web_port or free_port()
    with socket.socket() as probe:  # a clear message instead of uvicorn's exit
        try:
            probe.bind((options.web_host, port))
        except OSError as exc:
            raise DemoError(
                f"--web-port {port}: cannot listen on {options.web_host}:{port} ({exc.strerror});"
                " choose another port (0 picks a free one) or --no-web"
            ) from None
    return port


def _alert_service(
    site: SiteConfig,
    site_path: Path,
    bus: InMemoryBus,
    engine: Engine,
    clock: Callable[[], datetime],
) -> AlertService | None:
    """Build the in-process alerting service (None when the site has no alerting section)."""
    if site.alerting is None:
        return None
    environ = {}
    if site.alerting.links is not None:  # a fresh key each run: old links die with the demo
        environ[site.alerting.links.secret_env] = secrets.token_urlsafe(32)
    return build_service(
        site,
        site_path,
        bus=bus,
        db=engine,
        group="alerts",
        environ=environ,
        clock=clock,
        instance="demo",
    )


def _web_app(
    options: DemoOptions,
    port: int | None,
    site: SiteConfig,
    engine: Engine,
    timeseries: SqliteTimeSeries,
    clock: Callable[[], datetime],
    alerting: AlertService | None = None,
) -> uvicorn.Server | None:
    """Build the QA app's server on the demo's store (None when the app is off).

    Its live status page reads the demo's time series as the stream processor writes it,
    on the simulated clock.
    """
    if port is None:
        return None
    users = UserStore(engine)
    services = Services(
        engine,
        Sessions(engine, users),
        Lifecycle(engine, users, clock=clock),
        secure_cookie=False,  # plain HTTP on the loopback
        site_timezone=site.timezone,
        series=timeseries,
        clock=clock,
        grafana_link=grafana_linker(site),
        display=site.display(),
        site=site,
    )
    status = StatusServices(site, timeseries)
    config = uvicorn.Config(
        create_app(
            services,
            site_name=site.name,
            incidents=(
                IncidentServices(alerting.engine, alerting.dispatcher.signer)
                if alerting is not None
                else None
            ),
            extensions=[status_extension(services, status, site_name=site.name)],
        ),
        host=options.web_host,
        port=port,
        log_level="warning",
        log_config=None,  # its loggers go to the demo's log (see demo_logging)
        access_log=False,
        lifespan="off",
    )
    return _EmbeddedServer(config)


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Wait until the app listens (raise what stopped it otherwise)."""
    async with asyncio.timeout(WEB_START_TIMEOUT_S):
        while not server.started:
            if task.done():
                task.result()
                raise DemoError(f"the QA app did not start on {_url(server)}")
            await asyncio.sleep(0.05)


def _url(server: uvicorn.Server) -> str:
    return f"http://{server.config.host}:{server.config.port}"


def _demo_users(engine: Engine) -> dict[str, str]:
    """Create the demo users with fresh random passwords; return user id → password."""
    users = UserStore(engine)
    existing = {str(user["username"]) for user in users.list()}
    passwords = {}
    for username, (full_name, role) in DEMO_USERS.items():
        password = secrets.token_urlsafe(12)
        if username not in existing:
            users.add(username, full_name, role, password, actor=ACTOR, reason="demo user")
        else:  # a kept --workdir: new passwords, printed again
            users.reset_password(username, password, actor=ACTOR, reason="demo restarted")
        passwords[username] = password
    return passwords


def _print_sign_in(console: Console, server: uvicorn.Server, passwords: dict[str, str]) -> None:
    console.print(
        f"QA app: {_url(server)}  (live status: {_url(server)}/status;"
        " times in the app are the demo's simulated time)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for username, password in passwords.items():
        role = DEMO_USERS[username][1]
        console.print(
            f"  sign in as {username:<9} password {password}   ({role})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _write_grafana_tree(site: SiteConfig, out: Path, console: Console) -> None:
    """Write the site's Grafana provisioning tree (``envmon dashboards generate``)."""
    try:
        build_tree(site, influx_url=DEFAULT_INFLUX_URL).write(out)
    except OSError as exc:
        raise DemoError(f"cannot write the Grafana tree to {out}: {exc.strerror}") from exc
    console.print(
        f"Grafana dashboards for this site: {out} (to point a Grafana at them, see"
        " docs/operations.md, 'Grafana dashboards'; the demo itself keeps its readings in"
        " SQLite, so the QA app's Status page shows the rooms live)",
        markup=False,
        highlight=False,
    )


class _Shown(logging.Filter):
    """Pass envmon's own warnings and errors, and only the errors of libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.partition(".")[0] in OWN_LOGGERS
        return record.levelno >= (logging.WARNING if own else logging.ERROR)


class _ConsoleHandler(logging.Handler):
    """Print log lines through the demo's console: the live view draws them above itself."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # a log line must never stop the demo
            self.handleError(record)


@contextlib.asynccontextmanager
async def demo_logging(path: Path, console: Console, *, live: bool) -> AsyncIterator[None]:
    """Log envmon's lines from INFO, the libraries' from WARNING, to ``path``; show less.

    On screen only envmon's warnings and the libraries' errors show: through the live
    view's console (drawn above the view), or on stderr without it. The libraries' routine
    messages (amqtt's and asyncua's sessions, uvicorn's, the mail server's) are not logged
    at all. Levels and handlers are restored on exit.
    """
    root = logging.getLogger()
    own = [logging.getLogger(name) for name in sorted(OWN_LOGGERS)]
    levels = [root.level, *(logger.level for logger in own)]
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    shown: logging.Handler = _ConsoleHandler(console) if live else logging.StreamHandler()
    shown.addFilter(_Shown())
    shown.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.setLevel(logging.WARNING)
    for logger in own:
        logger.setLevel(logging.INFO)
    root.addHandler(to_file)
    root.addHandler(shown)
    try:
        yield
    finally:
        root.removeHandler(shown)
        root.removeHandler(to_file)
        for logger, level in zip([root, *own], levels, strict=True):
            logger.setLevel(level)
        to_file.close()


@contextlib.asynccontextmanager
async def _workdir(path: Path | None) -> AsyncIterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="envmon-demo-") as tmp:
        yield Path(tmp)


def _summary(
    options: DemoOptions,
    started: float,
    recorder: DemoRecorder,
    engine: Engine,
    processor: StreamProcessor,
    collectors: list[MqttCollector | OpcUaCollector],
    outbox: Outbox,
    timeseries: SqliteTimeSeries,
) -> dict[str, Any]:
    return {
        "duration_s": round(time.monotonic() - started, 1),
        "speed": options.speed,
        "alarms": [json.loads(a.model_dump_json()) for a in recorder.alarms],
        "system_events": [json.loads(e.model_dump_json()) for e in recorder.system],
        "excursions": core_records(engine, "excursion"),
        "data_gaps": core_records(engine, "data_gap"),
        "collectors": {c.pipeline.source: c.counters.as_dict() for c in collectors},
        "buffer": {"pending": len(outbox), **vars(outbox.stats)},
        "stream": {
            "readings": processor.readings,
            "rejected": processor.rejected,
            "stored": timeseries.count(),
        },
    }


async def _listening(collectors: list[MqttCollector | OpcUaCollector]) -> None:
    """Wait (a while) until every collector is subscribed: the scenario starts after."""
    for collector in collectors:
        with contextlib.suppress(TimeoutError):
            if isinstance(collector, MqttCollector):
                await collector.wait_ready(_LISTEN_S)
            else:
                await collector.wait_connected(_LISTEN_S)
