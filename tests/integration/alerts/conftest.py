"""Fixtures of the alerting tests: a real Alertmanager, shared and per test."""

from __future__ import annotations

from functools import partial

from devservers.alertmanager import Alertmanager, buildable, cached_binary
from devservers.fixtures import server_fixtures

#: Alertmanager's resolve_timeout in the tests: short, so that its own time passes quickly.
ALERTMANAGER_RESOLVE_TIMEOUT_S = 3.0


def _no_alertmanager() -> str | None:
    if buildable():
        return None
    return (
        f"go is not installed and {cached_binary()} is not built"
        " (apt-get install golang-go, then deploy/scripts/alertmanager.sh fetch)"
    )


alertmanager, own_alertmanager = server_fixtures(
    "alertmanager",
    partial(Alertmanager, resolve_timeout_s=ALERTMANAGER_RESOLVE_TIMEOUT_S),
    missing=_no_alertmanager,
)
