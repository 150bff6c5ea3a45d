"""``envmon dashboards push``: bring a Grafana in line with a generated tree; show what changed.

A tree, URL, token or variable that cannot be used raises ``PushInputError`` (nothing was
sent) for the caller to report; a Grafana that refuses or cannot be reached is reported
here, with what had changed before, and gives exit code 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dashboards.push import (
    DEFAULT_TIMEOUT_S,
    GrafanaError,
    PushInputError,
    PushItem,
    PushReport,
    push_tree,
)
from envmon.config import load_site
from envmon.timeutil import format_ts

EXIT_OK: Final = 0
EXIT_GRAFANA: Final = 1
_STYLES: Final = {"created": "green", "updated": "yellow", "unchanged": "dim"}
_KINDS: Final = {"folder": "folder", "datasource": "data source", "dashboard": "dashboard"}


def push_command(
    out: Path,
    url: str | None,
    token_env: str,
    update_secrets: bool,
    console: Console,
    *,
    err_console: Console | None = None,
    env: Mapping[str, str] = os.environ,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Push the tree under ``out`` to the Grafana at ``url``; print the report; return the code.

    The token is read from the variable ``token_env``. Returns 1 (``EXIT_GRAFANA``) when
    Grafana refused a request or could not be reached, else 0.
    """
    if url is None:
        raise PushInputError(
            "no Grafana URL: give --url, or set dashboards.grafana_url in the site file"
        )
    token = env.get(token_env, "")
    if not token.strip():
        raise PushInputError(
            f"the environment variable {token_env} is not set: put a Grafana service account"
            " token in it (or name another variable with --token-env)"
        )
    try:
        report = push_tree(
            out, url, token, env=env, timeout_s=timeout_s, update_secrets=update_secrets
        )
    except GrafanaError as exc:
        changed = [item for item in exc.done if item.outcome != "unchanged"]
        if changed:
            console.print("Changed before the error:")
            console.print(_table(changed))
        else:
            console.print("Nothing was changed.")
        errors = err_console if err_console is not None else Console(stderr=True)
        errors.print(f"push failed: {exc}", markup=False, highlight=False)
        return EXIT_GRAFANA
    print_report(report, console)
    return EXIT_OK


def print_report(report: PushReport, console: Console) -> None:
    """Print a one-line summary and, when something changed, a table of every item."""
    where = f"{report.url} (Grafana {report.grafana_version}) at {format_ts(report.finished_at)}"
    if not report.changed:
        console.print(Text(f"{where}: nothing changed ({_tally(report.items)} as in the tree)"))
        return
    counts = ", ".join(
        f"{report.count(outcome)} {outcome}" for outcome in ("created", "updated", "unchanged")
    )
    console.print(Text(f"{where}: {counts}"))
    console.print(_table(report.items))


def site_grafana_url(site_file: Path) -> str | None:
    """Return ``dashboards.grafana_url`` of the site file, None when it has none."""
    url = load_site(site_file).dashboards.grafana_url
    return None if url is None else str(url)


def _tally(items: Sequence[PushItem]) -> str:
    """Say what was checked: ``1 folder, 1 data source, 2 dashboards``."""
    parts = []
    for kind, name in _KINDS.items():
        count = sum(item.kind == kind for item in items)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return ", ".join(parts)


def _table(items: Sequence[PushItem]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("kind", no_wrap=True)
    table.add_column("uid", no_wrap=True)
    table.add_column("title", overflow="fold")
    table.add_column("outcome", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for item in items:
        table.add_row(
            Text(_KINDS[item.kind]),
            Text(item.uid),
            Text(item.title),
            Text(item.outcome, style=_STYLES[item.outcome]),
            Text(item.detail),
        )
    return table
