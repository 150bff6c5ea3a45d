"""``envmon alerts test CONTACT``: a test page through each of a contact's channels.

Every channel gets one message, sent once (no retries: the point is to see what the
server says now), and one line of output with the server's answer (``SMTP 250 …``,
``HTTP 200``, ``connection refused``). The exit code says whether every channel took it.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.text import Text

from alerts.delivery import AppriseNotifier, Message, Notifier, Outcome
from envmon.config import load_site
from envmon.config.alerting import AlertingConfig, ContactChannelConfig, ContactConfig
from envmon.errors import EnvmonError
from envmon.timeutil import as_utc, utcnow

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_UNKNOWN: Final = 2
DEFAULT_REQUESTER: Final = "envmon alerts test"


def compose_test_page(
    contact: ContactConfig, channel_id: str, *, site_name: str, requested_by: str, now: datetime
) -> Message:
    """Return the test page for one channel of a contact."""
    at = as_utc(now).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Message(
        title=f"envmon test page — {site_name}",
        body=(
            f"This is a test page from envmon at {site_name} for {contact.name}"
            f" (contact {contact.id}, channel {channel_id}).\n"
            "No alarm is active and nothing needs to be done: it checks that pages reach you.\n"
            f"Requested by {requested_by} at {at}."
        ),
    )


async def send_test_page(
    alerting: AlertingConfig,
    contact_id: str,
    *,
    notifier: Notifier,
    environ: Mapping[str, str],
    site_name: str,
    now: datetime,
    requested_by: str = DEFAULT_REQUESTER,
) -> list[tuple[str, Outcome]]:
    """Send a test page through every channel of a contact at once; return each outcome.

    Raises ``KeyError`` for an unknown contact. A channel whose URL cannot be resolved (a
    variable not set) fails without a send; the outcomes keep the channels' order.
    """
    contact = alerting.contact(contact_id)

    async def one(channel: ContactChannelConfig) -> Outcome:
        try:
            url = channel.resolve_url(environ)
        except EnvmonError as exc:
            return Outcome(False, str(exc))
        message = compose_test_page(
            contact, channel.id, site_name=site_name, requested_by=requested_by, now=now
        )
        return await notifier.send(url, message)

    outcomes = await asyncio.gather(*(one(channel) for channel in contact.channels))
    return [
        (channel.id, outcome) for channel, outcome in zip(contact.channels, outcomes, strict=True)
    ]


def run_test(
    site_path: Path,
    contact_id: str,
    console: Console,
    *,
    notifier: Notifier | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Load the site, page ``contact_id`` on every channel, print one line per channel.

    Returns 0 when every channel took the page, 1 when one did not, 2 when the site has no
    alerting section or no such contact (the known contacts are named).
    """
    site = load_site(site_path)
    alerting = site.alerting
    if alerting is None:
        console.print(
            f"{site_path}: the site file has no alerting: section (contacts, schedules, "
            "policies, routes)",
            markup=False,
        )
        return EXIT_UNKNOWN
    known = [contact.id for contact in alerting.contacts]
    if contact_id not in known:
        console.print(
            f"unknown contact {contact_id!r}; the contacts are: {', '.join(known) or '(none)'}",
            markup=False,
        )
        return EXIT_UNKNOWN
    contact = alerting.contact(contact_id)
    console.print(
        f"Test page to {contact.name} ({contact.id}) through "
        f"{len(contact.channels)} channel(s) of {site.name}:",
        markup=False,
    )
    results = asyncio.run(
        send_test_page(
            alerting,
            contact_id,
            notifier=notifier if notifier is not None else AppriseNotifier(),
            environ=os.environ if environ is None else environ,
            site_name=site.name,
            now=utcnow(),
            requested_by=_requester(),
        )
    )
    width = max(len(channel_id) for channel_id, _ in results)
    for channel_id, outcome in results:
        line = Text(f"  {channel_id:<{width}}  ")
        line.append("ok    " if outcome.ok else "failed", style="green" if outcome.ok else "red")
        line.append(f"  {outcome.detail}")
        console.print(line)
    return EXIT_OK if all(outcome.ok for _, outcome in results) else EXIT_FAILED


def _requester() -> str:
    """Return who runs the command, as ``user@host``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        user = "unknown user"
    return f"{user}@{socket.gethostname()}"
