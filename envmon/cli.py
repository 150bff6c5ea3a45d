"""The ``envmon`` command line.

The CLI is the composition root: it is the only place in the kernel that reaches into the
other packages, and it does so lazily inside each command so that ``envmon`` starts fast
and the kernel itself never depends on ``stream/`` and friends at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from envmon.clihelp import EnvmonTyper
from envmon.logs import service_logging

if TYPE_CHECKING:  # the commands are imported lazily, inside each command
    from envmon.commands.audit import Report
    from envmon.settings import Settings
    from excursions.users import UserStore

app = EnvmonTyper(
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
    from envmon.errors import ConfigError

    try:
        yield
    except errors as exc:
        from rich.console import Console

        if isinstance(exc, ConfigError):  # one format for every command: file:line:col: ...
            from envmon.rendering import print_config_error

            print_config_error(exc)
        else:
            Console(stderr=True).print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"envmon {version('envmon')}")
        except PackageNotFoundError:  # pragma: no cover - run from a tree never installed
            typer.echo("envmon (not installed: no version)")
        raise typer.Exit(0)


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Environmental monitoring for GMP manufacturing of cell and gene therapies."""


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Site configuration YAML file.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the resolved limits as JSON for machines.")
    ] = False,
) -> None:
    """Validate a site configuration and print the resolved limits of every channel."""
    from envmon.commands.check_config import run

    raise typer.Exit(run(file, json_output=json_output))


@app.command("replay")
def replay(
    config: Annotated[
        Path, typer.Option("--config", "-c", metavar="FILE", help="Site configuration YAML.")
    ],
    input_file: Annotated[
        Path,
        typer.Option(
            "--input", "-i", metavar="FILE", help="Readings: CSV or JSON lines ('-' for stdin)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write events as JSON lines here (default stdout).",
        ),
    ] = None,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first bad line with exit code 2.")
    ] = False,
    input_format: Annotated[
        str | None,
        typer.Option(
            "--format", metavar="csv|jsonl", help="csv or jsonl (default: from the file extension)."
        ),
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
    config: Annotated[
        Path, typer.Option("--config", "-c", metavar="FILE", help="Site configuration YAML.")
    ] = Path("deploy/examples/site.yaml"),
    scenario: Annotated[
        Path | None,
        typer.Option("--scenario", metavar="FILE", help="Fault scenario YAML (simulated time)."),
    ] = Path("deploy/examples/demo-scenario.yaml"),
    speed: Annotated[
        float,
        typer.Option(
            "--speed", metavar="FACTOR", min=0.1, help="Simulated seconds per real second."
        ),
    ] = 30.0,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", metavar="SECONDS", min=1, help="Stop after this many real seconds."
        ),
    ] = None,
    summary: Annotated[
        Path | None,
        typer.Option(
            "--summary", metavar="FILE", help="Write what happened as JSON (no live view)."
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", metavar="DIR", help="Keep buffer and databases here."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", metavar="N", help="Simulation seed.")
    ] = None,
    web_port: Annotated[
        int,
        typer.Option(
            "--web-port",
            metavar="PORT",
            min=0,
            max=65535,
            help="Port of the QA app (0: a free one).",
        ),
    ] = 8000,
    no_web: Annotated[bool, typer.Option("--no-web", help="Do not serve the QA app.")] = False,
    grafana_out: Annotated[
        Path | None,
        typer.Option(
            "--grafana-out", metavar="DIR", help="Write the site's Grafana provisioning tree here."
        ),
    ] = Path("build/grafana"),
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
        grafana_out=grafana_out,
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
    config: Annotated[
        Path, typer.Option("--config", "-c", metavar="FILE", help="Site configuration YAML.")
    ] = Path("deploy/examples/site.yaml"),
    scenario: Annotated[
        Path | None,
        typer.Option("--scenario", metavar="FILE", help="Fault scenario YAML (simulated time)."),
    ] = None,
    speed: Annotated[
        float,
        typer.Option(
            "--speed", metavar="FACTOR", min=0.1, help="Simulated seconds per real second."
        ),
    ] = 1.0,
    seed: Annotated[
        int | None, typer.Option("--seed", metavar="N", help="Simulation seed.")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", metavar="SECONDS", min=1, help="Stop after this many real seconds."
        ),
    ] = None,
    mqtt_host: Annotated[
        str | None, typer.Option("--mqtt-host", metavar="HOST", help="Broker host.")
    ] = None,
    mqtt_port: Annotated[
        int | None, typer.Option("--mqtt-port", metavar="PORT", help="Broker port.")
    ] = None,
    opcua_endpoint: Annotated[
        str | None,
        typer.Option("--opcua-endpoint", metavar="URL", help="Endpoint of the simulated gateway."),
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
    typer.Option(
        "--settings", metavar="FILE", help="YAML settings file (else ENVMON_SETTINGS_FILE)."
    ),
]
SiteOption = Annotated[
    Path | None,
    typer.Option("--site", metavar="FILE", help="Site configuration (else ENVMON_SITE)."),
]
MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        metavar="PORT",
        help="Port of the Prometheus /metrics endpoint (0: off; else the service's setting).",
    ),
]
MetricsHostOption = Annotated[
    str | None,
    typer.Option(
        "--metrics-host",
        metavar="HOST",
        help="Address /metrics listens on (else ENVMON_METRICS_HOST, 127.0.0.1).",
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

    from envmon.commands.collect import EXIT_FATAL, CollectFailedError, run_collect
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    service_logging()
    overrides = _metrics_overrides("collect_metrics_port", metrics_port, metrics_host)
    if site is not None:
        overrides["site"] = site
    with _refused(SettingsError, ConfigError):
        try:
            asyncio.run(run_collect(load_settings(settings_file, **overrides)))
        except CollectFailedError:  # logged with its traceback where it happened
            raise typer.Exit(EXIT_FATAL) from None


stream_app = EnvmonTyper(help="The stream processor on Kafka (faust-streaming).")
app.add_typer(stream_app, name="stream")


@stream_app.command("worker")
def stream_worker(
    settings_file: SettingsFileOption = None,
    site: SiteOption = None,
    loglevel: Annotated[
        str, typer.Option("--loglevel", metavar="LEVEL", help="faust/python log level.")
    ] = "info",
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


db_app = EnvmonTyper(help="The QA record store's database (SQLAlchemy, Alembic).")
app.add_typer(db_app, name="db")
audit_app = EnvmonTyper(help="The QA record store's audit trail.")
app.add_typer(audit_app, name="audit")
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", metavar="URL", help="SQLAlchemy URL of the store (default: settings records_db)."
    ),
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
    read_only: Annotated[
        bool,
        typer.Option("--read-only", help="SELECT only (for envmon audit verify and checkpoint)."),
    ] = False,
) -> None:
    """Grant a role what the application needs, and no more (PostgreSQL; as the owner).

    SELECT and INSERT only on the append-only tables (audit trail, signatures, timeline);
    the audit head only moves forward. Rights granted before are revoked first.
    """
    from envmon.commands.records import grant_db

    with _refused(ValueError):
        grant_db(_records_url(settings_file, db), role, read_only=read_only)
    typer.echo(
        f"granted {role} {'read' if read_only else 'the application' + chr(39) + 's'} rights"
    )


CheckpointsOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoints",
        metavar="FILE",
        help="Signed checkpoints, JSON lines (default: audit_checkpoint_file).",
    ),
]
PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        metavar="FILE",
        help="PEM public key(s) of the checkpoints (default: audit_public_key_file).",
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file", metavar="FILE", help="The private signing key (default: audit_key_file)."
    ),
]
EXIT_NOT_PUBLISHED = 3


def _audit_settings(settings_file: Path | None, site: Path | None) -> Settings:
    from envmon.settings import SettingsError, load_settings

    overrides: dict[str, object] = {} if site is None else {"site": site}
    with _refused(SettingsError):
        return load_settings(settings_file, **overrides)


def _site_id(site_file: Path) -> str:
    from envmon.config import load_site
    from envmon.errors import ConfigError

    with _refused(ConfigError):
        return load_site(site_file).site_id


@audit_app.command("keygen")
def audit_keygen(key_file: KeyFileOption = None, settings_file: SettingsFileOption = None) -> None:
    """Create the checkpoints' Ed25519 signing key (mode 0600) and its public key (.pub)."""
    from excursions.checkpoints import CheckpointError, generate_key

    settings = _audit_settings(settings_file, None)
    path = key_file or settings.audit_key_file
    if path is None:
        typer.echo("refused: no key file: pass --key-file or set audit_key_file", err=True)
        raise typer.Exit(EXIT_INVALID)
    with _refused(CheckpointError):
        public, name = generate_key(path)
    typer.echo(f"signing key {name} in {path} (mode 0600); public key in {public}")


@audit_app.command("checkpoint")
def audit_checkpoint(
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
    site: SiteOption = None,
    key_file: KeyFileOption = None,
    checkpoints: CheckpointsOption = None,
    public_key: PublicKeyOption = None,
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Do not publish on the bus (file only).")
    ] = False,
) -> None:
    """Check the chain since the last checkpoint, then sign its head, append and publish it.

    Exit 1 (nothing signed) when the chain does not hold the last checkpoint; 2 on bad
    settings, key or store; 3 when the checkpoint was written but not published on Kafka.
    """
    from envmon.bus import AUDIT
    from envmon.commands.audit import CheckpointRefusedError, make_checkpoint, publish
    from envmon.settings import SettingsError

    settings = _audit_settings(settings_file, site)
    key = key_file or settings.audit_key_file
    file = checkpoints or settings.audit_checkpoint_file
    if key is None or file is None:
        typer.echo(
            "refused: set audit_key_file and audit_checkpoint_file (or --key-file, --checkpoints)",
            err=True,
        )
        raise typer.Exit(EXIT_INVALID)
    url = db or settings.records_url
    try:
        with _refused(SettingsError):
            made = make_checkpoint(
                url,
                key_file=key,
                checkpoint_file=file,
                site=_site_id(settings.site),
                public_keys=public_key or settings.audit_public_keys,
            )
    except CheckpointRefusedError as exc:
        for problem in exc.problems:
            typer.echo(f"checkpoint REFUSED: {problem.subject}: {problem.text}", err=True)
        raise typer.Exit(1) from None
    typer.echo(made.line())
    if settings.bus == "kafka" and not no_publish:
        try:
            publish(settings, made)
        except Exception as exc:  # any failure of the bus: the file holds it
            typer.echo(
                f"checkpoint of entry {made.seq} written to {file} but not published on"
                f" {settings.topic(AUDIT)}: {type(exc).__name__}: {exc}",
                err=True,
            )
            raise typer.Exit(EXIT_NOT_PUBLISHED) from None
    typer.echo(
        f"checkpoint of entry {made.seq} signed ({made.key}) and appended to {file}", err=True
    )


@audit_app.command("verify")
def audit_verify(
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
    site: SiteOption = None,
    checkpoints: CheckpointsOption = None,
    public_key: PublicKeyOption = None,
    max_checkpoint_age: Annotated[
        int | None,
        typer.Option(
            "--max-checkpoint-age",
            min=1,
            help="Minutes: fail if the newest checkpoint is older (the timer stopped).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check the trail's chain, head, checkpoints and rows; exit 1 naming what is wrong.

    Exit 2 when it cannot check (no store, not migrated, unreadable checkpoints or key).
    """
    import json
    from datetime import timedelta

    from envmon.commands.audit import verify_store
    from envmon.settings import SettingsError

    settings = _audit_settings(settings_file, site)
    file = checkpoints or settings.audit_checkpoint_file
    with _refused(SettingsError):
        report = verify_store(
            db or settings.records_url,
            checkpoint_file=file,
            public_keys=public_key or settings.audit_public_keys,
            site=_site_id(settings.site) if file is not None else None,
            max_checkpoint_age=None
            if max_checkpoint_age is None
            else timedelta(minutes=max_checkpoint_age),
        )
    if as_json:
        typer.echo(json.dumps(report.as_json()))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: Report) -> None:
    """Print what ``verify`` found: problems to stderr, the summary to stdout when intact."""
    chain, read, rows = report.chain, report.checkpoints, report.rows
    first = chain.first if chain.broken_seq is not None else None
    if report.ok:
        typer.echo(f"audit trail intact: {chain.entries} entries (head: entry {chain.head_seq})")
    elif first is not None and chain.broken_seq is not None:  # the headline names it
        typer.echo(
            f"audit trail BROKEN at entry {chain.broken_seq}: {chain.problem}"
            f" ({chain.broken_seq - 1} entries before it are intact)",
            err=True,
        )
    else:
        typer.echo(
            f"audit trail: {chain.entries} entries chained, but:",
            err=True,
        )
    for problem in report.problems:
        if problem is not first:
            typer.echo(f"- {problem.subject}: {problem.text}", err=True)
    if rows.more:
        typer.echo(f"- and {rows.more} more problems with rows", err=True)
    err = not report.ok
    if read is None:
        typer.echo(
            "not anchored: no checkpoint file given (audit_checkpoint_file, --checkpoints):"
            " a rewrite of the whole chain would not be seen",
            err=err,
        )
    elif read.latest is not None:
        newest = read.latest
        waiting = chain.head_seq is not None and chain.head_seq > newest.seq
        typer.echo(
            f"anchored: {len(read.anchors)} of {read.lines} checkpoints verified; the newest"
            f" ({newest.at}) vouches for entry {newest.seq}"
            + (f"; entries {newest.seq + 1} to {chain.head_seq} await the next" if waiting else ""),
            err=err,
        )
    typer.echo(
        f"rows checked against the trail: {rows.records} records, {rows.users} users,"
        f" {rows.signatures} signatures",
        err=err,
    )


users_app = EnvmonTyper(help="Local users of the QA app (roles: viewer, operator, qa, admin).")
app.add_typer(users_app, name="users")
ReasonOption = Annotated[
    str, typer.Option("--reason", metavar="TEXT", help="Why (kept in the audit trail).")
]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


def _password(from_stdin: bool) -> str:
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def cli_actor() -> str:
    """Return the audit trail's actor of a command: ``cli:`` and the OS account running it.

    The account of the effective user id from the password database, not ``LOGNAME`` or
    ``USER`` (``getpass.getuser`` reads those first, and anyone can set them). An id
    without an entry (a container's arbitrary uid) is named ``cli:uid:<n>``. Under sudo
    this is the target account (root), which is what acts.
    """
    import os
    import pwd

    uid = os.geteuid()
    try:
        return f"cli:{pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"cli:uid:{uid}"


def _user_change(
    settings_file: Path | None, db: str | None, change: Callable[[UserStore, str], object]
) -> None:
    """Run ``change(store, actor)`` as ``cli_actor()``; report refusals with exit 2."""
    from envmon.commands.records import migrated_engine
    from envmon.settings import SettingsError
    from excursions.users import UserError, UserStore

    with _refused(SettingsError):
        engine = migrated_engine(_records_url(settings_file, db))
    try:
        change(UserStore(engine), cli_actor())
    except UserError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        engine.dispose()


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name (lowercase).")],
    full_name: Annotated[
        str, typer.Option("--name", metavar="NAME", help="Printed name on signatures.")
    ],
    role: Annotated[
        str, typer.Option("--role", metavar="ROLE", help="viewer, operator, qa or admin.")
    ],
    reason: ReasonOption,
    password_stdin: PasswordStdinOption = False,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Create a user (the password is prompted for, or read with --password-stdin)."""
    password = _password(password_stdin)
    _user_change(
        settings_file,
        db,
        lambda users, actor: users.add(
            username, full_name, role, password, actor=actor, reason=reason
        ),
    )
    typer.echo(f"user {username} added ({role})")


@users_app.command("disable")
def users_disable(
    username: str,
    reason: ReasonOption,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Disable a user: no more logins (their records and signatures stay)."""
    _user_change(
        settings_file, db, lambda users, actor: users.disable(username, actor=actor, reason=reason)
    )
    typer.echo(f"user {username} disabled")


@users_app.command("enable")
def users_enable(
    username: str,
    reason: ReasonOption,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """Enable a disabled user (also clears a lockout)."""
    _user_change(
        settings_file, db, lambda users, actor: users.enable(username, actor=actor, reason=reason)
    )
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
    _user_change(
        settings_file,
        db,
        lambda users, actor: users.set_role(username, role, actor=actor, reason=reason),
    )
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
    _user_change(
        settings_file,
        db,
        lambda users, actor: users.reset_password(username, password, actor=actor, reason=reason),
    )
    typer.echo(f"password of {username} reset")


excursions_app = EnvmonTyper(help="Excursion records: the QA record store.")
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

    from envmon.commands.records import run_consume
    from envmon.settings import SettingsError, load_settings

    service_logging()
    overrides = _metrics_overrides("records_metrics_port", metrics_port, metrics_host)
    with _refused(SettingsError):
        settings = load_settings(settings_file, **overrides)
        asyncio.run(run_consume(settings, db or settings.records_url))


@excursions_app.command("serve")
def excursions_serve(
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on.")] = 8000,
    insecure_cookie: Annotated[
        bool,
        typer.Option(
            "--insecure-cookie",
            help="Session cookie without the Secure flag (plain HTTP, development only).",
        ),
    ] = False,
) -> None:
    """Serve the QA app (the JSON API under /api/v1, the live status page) until SIGTERM."""
    from envmon.commands.records import series_reader, serve
    from envmon.config import load_site
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    with _refused(SettingsError, ConfigError):
        settings = load_settings(settings_file)
        site = load_site(settings.site)
        series = series_reader(settings, site)
        serve(
            db or settings.records_url,
            host=host,
            port=port,
            secure_cookie=not insecure_cookie,
            site_timezone=site.timezone,
            site_name=site.name,
            series=series,
            site=site,
            site_path=settings.site,
            latest=series,
        )


@excursions_app.command("report")
def excursions_report(
    record_id: Annotated[str, typer.Argument(metavar="ID", help="The excursion's id.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", metavar="FILE", help="The PDF file to write.")
    ],
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
    paper: Annotated[
        str, typer.Option("--paper", help="The paper size: a4 or letter (US Letter).")
    ] = "a4",
) -> None:
    """Write the printable PDF report of one excursion or data gap (A4 or US Letter)."""
    from envmon.commands.records import report, series_reader
    from envmon.config import load_site
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings
    from excursions.report import PAPERS

    if paper not in PAPERS:
        raise typer.BadParameter(f"one of {', '.join(PAPERS)}", param_hint="--paper")
    with _refused(SettingsError, ConfigError, LookupError):
        settings = load_settings(settings_file)
        site = load_site(settings.site)
        series = series_reader(settings, site)
        url = db or settings.records_url
        written = report(url, record_id, output, site, series, paper=paper)
    typer.echo(f"wrote {written}")


@excursions_app.command("list")
def excursions_list(
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            metavar="excursion|data_gap|alarm",
            help="What to list (default: excursions and data gaps).",
        ),
    ] = None,
    area: Annotated[str | None, typer.Option("--area", metavar="ID", help="One area.")] = None,
    instrument: Annotated[
        str | None, typer.Option("--instrument", metavar="ID", help="One instrument.")
    ] = None,
    sensor: Annotated[
        str | None, typer.Option("--sensor", metavar="ID", help="One channel (sensor id).")
    ] = None,
    parameter: Annotated[
        str | None, typer.Option("--parameter", metavar="NAME", help="One parameter.")
    ] = None,
    level: Annotated[
        str | None, typer.Option("--level", metavar="alert|action", help="One level.")
    ] = None,
    state: Annotated[
        str | None,
        typer.Option("--state", metavar="STATE", help="One QA state (open, closed, ...)."),
    ] = None,
    open_: Annotated[
        bool | None,
        typer.Option("--open/--closed", help="Only records still open, or only ended ones."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="TIME", help="From this time (ISO 8601 with offset)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="TIME", help="Before this time (ISO 8601 with offset)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", help="List at most N (1 to 10,000).")
    ] = 50,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON for machines (times UTC, raw numbers).")
    ] = False,
    site: Annotated[
        Path | None,
        typer.Option(
            "--site", metavar="FILE", help="Site file: values and times as the site shows them."
        ),
    ] = None,
    settings_file: SettingsFileOption = None,
    db: DbOption = None,
) -> None:
    """List the excursions, data gaps or alarm events the record store holds, newest first."""
    import json

    from envmon.commands.excursions_list import KINDS, Query, listing, parse_time, table
    from envmon.commands.records import migrated_engine
    from envmon.config import load_site
    from envmon.display import Display
    from envmon.errors import ConfigError
    from envmon.rendering import print_tables
    from envmon.settings import SettingsError

    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"one of {', '.join(KINDS)}", param_hint="--kind")
    try:
        start = None if since is None else parse_time(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    try:
        end = None if until is None else parse_time(until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--until") from None
    with _refused(ConfigError, SettingsError, ValueError):
        display = load_site(site).display() if site is not None else Display()
        query = Query(
            kind=kind,
            area=area,
            instrument=instrument,
            sensor=sensor,
            parameter=parameter,
            level=level,
            state=state,
            open=open_,
            since=start,
            until=end,
            limit=limit,
        )
        engine = migrated_engine(_records_url(settings_file, db))
        try:
            result = listing(engine, query)
        finally:
            engine.dispose()
    if json_output:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_tables(table(result, display))
        if result["more"]:
            typer.echo(f"… more: raise --limit (now {limit:,}) or narrow the filters")


alerts_app = EnvmonTyper(
    help="Alerts for on-call staff: routing, escalation until acknowledged, on-call rotas."
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("run")
def alerts_run(
    settings_file: SettingsFileOption = None,
    site: SiteOption = None,
    db: DbOption = None,
) -> None:
    """Run the alerting service: alarms from Kafka to pages that escalate, until SIGTERM."""
    import asyncio

    from envmon.commands.alerts import run_alerts
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    service_logging()
    overrides: dict[str, object] = {} if site is None else {"site": site}
    with _refused(SettingsError, ConfigError):
        settings = load_settings(settings_file, **overrides)
        asyncio.run(run_alerts(settings, db or settings.records_url))


@alerts_app.command("check")
def alerts_check(
    site: Annotated[Path, typer.Argument(metavar="FILE", help="The site configuration file.")],
    days: Annotated[
        int, typer.Option("--days", metavar="DAYS", min=1, max=366, help="Days to show.")
    ] = 14,
) -> None:
    """Validate the alerting section; show who is on call now and the coming hand-overs.

    Exits 1 naming every stretch in which a schedule used by a route has nobody on call.
    """
    from rich.console import Console

    from envmon.commands.alerts_check import run_check
    from envmon.errors import ConfigError
    from envmon.timeutil import utcnow

    with _refused(ConfigError, OSError):
        code = run_check(site, now=utcnow(), days=days, console=Console(highlight=False))
    raise typer.Exit(code)


@alerts_app.command("test")
def alerts_test(
    contact: Annotated[str, typer.Argument(help="The id of a contact in the site file.")],
    site: Annotated[
        Path | None,
        typer.Option("--site", metavar="FILE", help="Site configuration (else ENVMON_SITE)."),
    ] = None,
) -> None:
    """Send a test page through every channel of a contact and show what each server said."""
    from rich.console import Console

    from envmon.commands.alerts_test import run_test
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    with _refused(ConfigError, SettingsError, OSError):
        path = site if site is not None else load_settings(None).site
        code = run_test(path, contact, Console(highlight=False))
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``envmon`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


dashboards_app = EnvmonTyper(
    help="Grafana dashboards and data sources generated from the site configuration."
)
app.add_typer(dashboards_app, name="dashboards")
# ``generate`` and ``push`` are added below (envmon/commands/dashboards*.py do the work).


@dashboards_app.command("generate")
def dashboards_generate(
    site: Annotated[
        Path, typer.Option("--site", metavar="FILE", help="The site configuration file.")
    ],
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Directory to write the tree into.")
    ],
    dashboards_path: Annotated[
        str,
        typer.Option(
            "--dashboards-path",
            metavar="DIR",
            help="Where Grafana will read the dashboard JSON files (the provider's path).",
        ),
    ] = "/var/lib/grafana/dashboards/envmon",
    settings_file: SettingsFileOption = None,
) -> None:
    """Write the Grafana provisioning tree (data sources, provider, dashboards) for a site."""
    from rich.console import Console

    from envmon.commands.dashboards import run_generate
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError

    with _refused(ConfigError, SettingsError, OSError):
        code = run_generate(
            site,
            out,
            dashboards_path=dashboards_path,
            settings_file=settings_file,
            console=Console(highlight=False),
        )
    raise typer.Exit(code)


@dashboards_app.command("push")
def dashboards_push(
    tree: Annotated[
        Path,
        typer.Option(
            "--from", metavar="DIR", help="The tree `dashboards generate` wrote (its --out)."
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Grafana's root URL (else the site's dashboards.grafana_url).",
        ),
    ] = None,
    site: Annotated[
        Path | None,
        typer.Option(
            "--site",
            metavar="FILE",
            help="Site file giving the URL without --url (else ENVMON_SITE).",
        ),
    ] = None,
    token_env: Annotated[
        str,
        typer.Option(
            "--token-env", metavar="NAME", help="Variable holding a Grafana service account token."
        ),
    ] = "GRAFANA_TOKEN",  # noqa: S107 - the name of a variable, not a token
    update_secrets: Annotated[
        bool,
        typer.Option(
            "--update-secrets",
            help="Send the data sources' secure values again (else only to set missing ones).",
        ),
    ] = False,
) -> None:
    """Create or update the tree's folder, data sources and dashboards in a running Grafana.

    Only what differs from Grafana is written, so a second push changes nothing; nothing
    is deleted. Exits 1 when Grafana refuses a request or cannot be reached.
    """
    from rich.console import Console

    from dashboards.push import PushInputError
    from envmon.commands.dashboards_push import push_command, site_grafana_url
    from envmon.errors import ConfigError
    from envmon.settings import SettingsError, load_settings

    with _refused(PushInputError, ConfigError, SettingsError):
        if url is None:
            url = site_grafana_url(site if site is not None else load_settings(None).site)
        code = push_command(tree, url, token_env, update_secrets, Console(highlight=False))
    raise typer.Exit(code)
