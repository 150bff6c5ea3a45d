"""The ``envmon`` command line.

The CLI is the composition root: it is the only place in the kernel that reaches into the
other packages, and it does so lazily inside each command so that ``envmon`` starts fast
and the kernel itself never depends on ``stream/`` and friends at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="envmon",
    help="Environmental monitoring for GMP manufacturing of cell and gene therapies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INVALID = 2


@contextlib.contextmanager
def _refused(*errors: type[Exception]) -> Iterator[None]:
    """Print any of ``errors`` (a bad input: nothing was started) to stderr and exit 2."""
    try:
        yield
    except errors as exc:
        from rich.console import Console

        Console(stderr=True).print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None


@app.callback()
def _root() -> None:
    """Environmental monitoring for GMP manufacturing of cell and gene therapies."""


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="Site configuration YAML file.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the resolved limits as JSON for machines.")
    ] = False,
) -> None:
    """Validate a site configuration and print the resolved limits of every channel."""
    from envmon.commands.check_config import run

    raise typer.Exit(run(file, json_output=json_output))


@app.command("replay")
def replay(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site configuration YAML.")],
    input_file: Annotated[
        Path, typer.Option("--input", "-i", help="Readings: CSV or JSON lines ('-' for stdin).")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write events as JSON lines here (default stdout)."),
    ] = None,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first bad line with exit code 2.")
    ] = False,
    input_format: Annotated[
        str | None,
        typer.Option("--format", help="csv or jsonl (default: from the file extension)."),
    ] = None,
) -> None:
    """Re-evaluate recorded readings against the site's limits, offline."""
    from stream.replay_cli import run

    raise typer.Exit(
        run(
            config=config,
            input_file=input_file,
            output=output,
            json_summary=json_summary,
            strict=strict,
            input_format=input_format,
        )
    )


@app.command("demo")
def demo(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site configuration YAML.")] = Path(
        "deploy/examples/site.yaml"
    ),
    scenario: Annotated[
        Path | None, typer.Option("--scenario", help="Fault scenario YAML (simulated time).")
    ] = Path("deploy/examples/demo-scenario.yaml"),
    speed: Annotated[
        float, typer.Option("--speed", min=0.1, help="Simulated seconds per real second.")
    ] = 30.0,
    duration: Annotated[
        float | None, typer.Option("--duration", min=1, help="Stop after this many real seconds.")
    ] = None,
    summary: Annotated[
        Path | None, typer.Option("--summary", help="Write what happened as JSON (no live view).")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep buffer and databases here.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Simulation seed.")] = None,
    web_port: Annotated[
        int,
        typer.Option("--web-port", min=0, max=65535, help="Port of the QA app (0: a free one)."),
    ] = 8000,
    no_web: Annotated[bool, typer.Option("--no-web", help="Do not serve the QA app.")] = False,
) -> None:
    """Run the whole pipeline on simulated equipment, with a live view of every room.

    The QA web app is served on http://127.0.0.1:8000 with demo users whose passwords are
    printed at start.
    """
    import asyncio
    import sys

    from rich.console import Console

    from envmon.commands.demo import DemoError, DemoOptions, run_demo
    from envmon.errors import ConfigError

    live = summary is None and sys.stdout.isatty()
    options = DemoOptions(
        config=config,
        scenario=scenario,
        speed=speed,
        duration=duration,
        summary=summary,
        workdir=workdir,
        seed=seed,
        live=live,
        web_port=None if no_web else web_port,
    )
    console = Console()
    try:
        with _refused(ConfigError, DemoError):
            result = asyncio.run(run_demo(options, console))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    console.print(
        f"{len(result['alarms'])} alarm events, {len(result['excursions'])} excursion records, "
        f"{result['stream']['readings']:,} readings in {result['duration_s']} s",
        markup=False,
    )


@app.command("simulate")
def simulate(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site configuration YAML.")] = Path(
        "deploy/examples/site.yaml"
    ),
    scenario: Annotated[
        Path | None, typer.Option("--scenario", help="Fault scenario YAML (simulated time).")
    ] = None,
    speed: Annotated[
        float, typer.Option("--speed", min=0.1, help="Simulated seconds per real second.")
    ] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Simulation seed.")] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", min=1, help="Stop after this many real seconds.")
    ] = None,
    mqtt_host: Annotated[str | None, typer.Option("--mqtt-host", help="Broker host.")] = None,
    mqtt_port: Annotated[int | None, typer.Option("--mqtt-port", help="Broker port.")] = None,
    opcua_endpoint: Annotated[
        str | None, typer.Option("--opcua-endpoint", help="Endpoint of the simulated gateway.")
    ] = None,
    mqtt: Annotated[bool, typer.Option(help="Run the MQTT devices.")] = True,
    opcua: Annotated[bool, typer.Option(help="Run the OPC-UA gateway.")] = True,
) -> None:
    """Run the site's simulated equipment against a real broker and as an OPC-UA server."""
    import asyncio

    from rich.console import Console

    from envmon.commands.simulate import SimulateOptions, run_simulate
    from envmon.errors import ConfigError

    options = SimulateOptions(
        config=config,
        scenario=scenario,
        speed=speed,
        seed=seed,
        duration=duration,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        opcua_endpoint=opcua_endpoint,
        mqtt=mqtt,
        opcua=opcua,
    )
    try:
        with _refused(ConfigError):
            asyncio.run(run_simulate(options, Console()))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


SettingsFileOption = Annotated[
    Path | None,
    typer.Option("--settings", help="YAML settings file (else ENVMON_SETTINGS_FILE)."),
]
SiteOption = Annotated[
    Path | None, typer.Option("--site", help="Site configuration (else ENVMON_SITE).")
]
MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        help="Port of the Prometheus /metrics endpoint (0: off; else the service's setting).",
    ),
]
MetricsHostOption = Annotated[
    str | None,
    typer.Option(
        "--metrics-host", help="Address /metrics listens on (else ENVMON_METRICS_HOST, 127.0.0.1)."
    ),
]


def _metrics_overrides(setting: str, port: int | None, host: str | None) -> dict[str, object]:
    """Return the settings the --metrics-* options override."""
    overrides: dict[str, object] = {}
    if port is not None:
        overrides[setting] = port
    if host is not None:
        overrides["metrics_host"] = host
    return overrides


@app.command("collect")
def collect(
    settings_file: SettingsFileOption = None,
    site: SiteOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = None,
) -> None:
    """Run the site's MQTT and OPC-UA collectors, publishing readings to Kafka."""
    import asyncio
    import logging

    from envmon.commands.collect import run_collect
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    overrides = _metrics_overrides("collect_metrics_port", metrics_port, metrics_host)
    if site is not None:
        overrides["site"] = site
    with _refused(SettingsError, ConfigError):
        asyncio.run(run_collect(load_settings(settings_file, **overrides)))


stream_app = typer.Typer(help="The stream processor on Kafka (faust-streaming).")
app.add_typer(stream_app, name="stream")


@stream_app.command("worker")
def stream_worker(
    settings_file: SettingsFileOption = None,
    site: SiteOption = None,
    loglevel: Annotated[str, typer.Option("--loglevel", help="faust/python log level.")] = "info",
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = None,
) -> None:
    """Run one stream worker: readings from Kafka through the core, alarms and records out."""
    from envmon.commands.stream_worker import run_worker
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    overrides = _metrics_overrides("worker_metrics_port", metrics_port, metrics_host)
    overrides["bus"] = "kafka"
    if site is not None:
        overrides["site"] = site
    with _refused(SettingsError, ConfigError):
        settings = load_settings(settings_file, **overrides)
        run_worker(settings, loglevel=loglevel)


db_app = typer.Typer(help="The QA record store's database (SQLAlchemy, Alembic).")
app.add_typer(db_app, name="db")
audit_app = typer.Typer(help="The QA record store's audit trail.")
app.add_typer(audit_app, name="audit")
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL of the store (default: settings records_db)."),
]


def _records_url(settings_file: Path | None, db: str | None) -> str:

    from envmon.settings import SettingsError, load_settings

    if db:
        return db
    with _refused(SettingsError):
        return load_settings(settings_file).records_url


@db_app.command("upgrade")
def db_upgrade(settings_file: SettingsFileOption = None, db: DbOption = None) -> None:
    """Create or migrate the record store's tables to the newest revision."""
    from envmon.commands.records import upgrade_db

    before, after = upgrade_db(_records_url(settings_file, db))
    typer.echo(f"record store at revision {after} (was {before or 'empty'})")


@db_app.command("grant")
def db_grant(
    role: Annotated[str, typer.Argument(help="The application's PostgreSQL role.")],
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Grant the application's role what it needs, and no more (PostgreSQL; as the owner).

    SELECT and INSERT only on the append-only tables (audit trail, signatures, timeline).
    """
    from envmon.commands.records import grant_db

    with _refused(ValueError):
        grant_db(_records_url(settings_file, db), role)
    typer.echo(f"granted {role} the application's rights")


@audit_app.command("verify")
def audit_verify(
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check the audit trail's hash chain; exit 1 naming the first broken entry."""
    import json

    from envmon.commands.records import verify_db

    result = verify_db(_records_url(settings_file, db))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "entries_checked": result.entries,
                    "broken_seq": result.broken_seq,
                    "problem": result.problem,
                }
            )
        )
    elif result.ok:
        typer.echo(f"audit trail intact: {result.entries} entries")
    else:
        typer.echo(
            f"audit trail BROKEN at entry {result.broken_seq}: {result.problem} "
            f"({result.entries} entries before it are intact)",
            err=True,
        )
    if not result.ok:
        raise typer.Exit(1)


users_app = typer.Typer(help="Local users of the QA app (roles: viewer, operator, qa, admin).")
app.add_typer(users_app, name="users")
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


def _password(from_stdin: bool) -> str:
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _user_change(settings_file: Path | None, db: str | None, change: str, *args: object) -> None:
    """Run one ``UserStore`` change as ``cli:<login>``; report refusals with exit 2."""
    import getpass

    from envmon.commands.records import open_engine
    from excursions.users import UserError, UserStore

    engine = open_engine(_records_url(settings_file, db))
    try:
        method = getattr(UserStore(engine), change)
        method(*args[:-1], actor=f"cli:{getpass.getuser()}", reason=args[-1])
    except UserError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        engine.dispose()


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name (lowercase).")],
    full_name: Annotated[str, typer.Option("--name", help="Printed name on signatures.")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator, qa or admin.")],
    reason: ReasonOption,
    password_stdin: PasswordStdinOption = False,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Create a user (the password is prompted for, or read with --password-stdin)."""
    password = _password(password_stdin)
    _user_change(settings_file, db, "add", username, full_name, role, password, reason)
    typer.echo(f"user {username} added ({role})")


@users_app.command("disable")
def users_disable(
    username: str,
    reason: ReasonOption,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Disable a user: no more logins (their records and signatures stay)."""
    _user_change(settings_file, db, "disable", username, reason)
    typer.echo(f"user {username} disabled")


@users_app.command("enable")
def users_enable(
    username: str,
    reason: ReasonOption,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Enable a disabled user (also clears a lockout)."""
    _user_change(settings_file, db, "enable", username, reason)
    typer.echo(f"user {username} enabled")


@users_app.command("set-role")
def users_set_role(
    username: str,
    role: str,
    reason: ReasonOption,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Change a user's role."""
    _user_change(settings_file, db, "set_role", username, role, reason)
    typer.echo(f"user {username} is now {role}")


@users_app.command("reset-password")
def users_reset_password(
    username: str,
    reason: ReasonOption,
    password_stdin: PasswordStdinOption = False,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Set a new password for a user (also clears a lockout)."""
    password = _password(password_stdin)
    _user_change(settings_file, db, "reset_password", username, password, reason)
    typer.echo(f"password of {username} reset")


excursions_app = typer.Typer(help="Excursion records: the QA record store.")
app.add_typer(excursions_app, name="excursions")


@excursions_app.command("consume")
def excursions_consume(
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = None,
) -> None:
    """Store the excursion records and data gaps published on Kafka, until SIGTERM."""
    import asyncio
    import logging

    from envmon.commands.records import run_consume
    from envmon.settings import SettingsError, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    overrides = _metrics_overrides("records_metrics_port", metrics_port, metrics_host)
    with _refused(SettingsError):
        settings = load_settings(settings_file, **overrides)
        asyncio.run(run_consume(settings, db or settings.records_url))


@excursions_app.command("serve")
def excursions_serve(
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    insecure_cookie: Annotated[
        bool,
        typer.Option(
            "--insecure-cookie",
            help="Session cookie without the Secure flag (plain HTTP, development only).",
        ),
    ] = False,
) -> None:
    """Serve the QA app (the JSON API under /api/v1) until SIGTERM / Ctrl-C."""
    from envmon.commands.records import series_reader, serve
    from envmon.config import load_site
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    with _refused(SettingsError, ConfigError):
        settings = load_settings(settings_file)
        site = load_site(settings.site)
        serve(
            db or settings.records_url,
            host=host,
            port=port,
            secure_cookie=not insecure_cookie,
            site_timezone=site.timezone,
            site_name=site.name,
            series=series_reader(settings, site),
        )


@excursions_app.command("report")
def excursions_report(
    record_id: Annotated[str, typer.Argument(help="The excursion's id.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The PDF file to write.")],
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Write the printable PDF report of one excursion."""
    from envmon.commands.records import report, series_reader
    from envmon.config import load_site
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    with _refused(SettingsError, ConfigError, LookupError):
        settings = load_settings(settings_file)
        site = load_site(settings.site)
        series = series_reader(settings, site)
        written = report(db or settings.records_url, record_id, output, site, series)
    typer.echo(f"wrote {written}")


def main() -> None:
    """Entry point of the ``envmon`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
