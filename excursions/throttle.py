"""Throttling of failed sign-ins and signatures per client address, instead of account lockout.

A lockout counted per account lets anyone lock anyone out with a few requests, and never
slows a guesser who tries a few passwords on each of many accounts. Failures are therefore
counted per client address (an IPv6 client per /64, which one host usually holds whole):

``CLIENT_RULE``   every attempt from the address, whatever the account: after ``free``
                  failures each further one blocks the address for ``first``, doubling up
                  to ``longest`` (password spraying slows to a crawl);
``ACCOUNT_RULE``  one account from one address: the fifth failure in a row blocks that
                  address for that account (guessing one password), a success resets it.

Nobody elsewhere is affected by a block, so nobody can lock another person out; an admin's
password reset or enable clears the account's blocks. An attempt is counted *before* the
password is checked (and given back if it was right), so parallel requests cannot all slip
past the check. Counters of an address quiet for ``FORGET_AFTER`` are deleted, so the
table holds only the recent past. Times come from the injectable clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from envmon.timeutil import utcnow
from excursions.db import LoginThrottleRow

#: The client of attempts made without a network (the command line, tests).
LOCAL_CLIENT: Final = "local"
FORGET_AFTER: Final = timedelta(hours=1)
_MAX_CLIENT: Final = 64


@dataclass(frozen=True, slots=True)
class Rule:
    """How many failures are free, and the blocks after them (doubling from first to longest)."""

    free: int
    first: timedelta
    longest: timedelta

    def blocked_until(self, failures: int, last: datetime) -> datetime | None:
        """Return the end of the block that ``failures`` (the last at ``last``) earn, if any."""
        if failures <= self.free:
            return None
        doublings = min(failures - self.free - 1, 30)
        delay: timedelta = min(self.first * 2**doublings, self.longest)
        return last + delay


CLIENT_RULE: Final = Rule(free=10, first=timedelta(seconds=1), longest=timedelta(minutes=15))
ACCOUNT_RULE: Final = Rule(free=4, first=timedelta(minutes=15), longest=timedelta(minutes=15))


class BlockedError(Exception):
    """The client may not try (this account) again before ``until``."""

    def __init__(self, until: datetime, *, account: bool) -> None:
        super().__init__(until.isoformat())
        self.until = until
        self.account = account  #: blocked for this account only (else: the whole address)


@dataclass(frozen=True, slots=True)
class Block:
    """A block an attempt began: the address (``username`` None) or one account from it."""

    client: str
    username: str | None
    failures: int
    until: datetime


@dataclass(frozen=True, slots=True)
class Reservation:
    """An attempt counted before the check; ``started`` lists the blocks it began."""

    client: str
    username: str
    started: tuple[Block, ...]

    @property
    def account_blocked(self) -> bool:
        """Whether this attempt, if it fails, blocked the account from this address."""
        return any(block.username is not None for block in self.started)


def client_key(host: str | None) -> str:
    """Return the address an attempt is counted against (IPv6: its /64 network)."""
    if not host:
        return LOCAL_CLIENT
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:_MAX_CLIENT]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginThrottle:
    """Counts failed attempts per client and per (client, account); see the module docstring."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock

    def reserve(self, session: Session, client: str, username: str) -> Reservation:
        """Refuse a blocked client (raise ``BlockedError``), else count the attempt as failed."""
        now = self.clock()
        session.execute(
            delete(LoginThrottleRow).where(
                LoginThrottleRow.last_failure_at < now - FORGET_AFTER,
                or_(LoginThrottleRow.blocked_until.is_(None), LoginThrottleRow.blocked_until < now),
            )
        )
        rows = [self._row(session, client, None), self._row(session, client, username[:64])]
        for row in rows:
            if row.blocked_until is not None and row.blocked_until > now:
                raise BlockedError(row.blocked_until, account=row.username is not None)
        started = []
        for row, rule in zip(rows, (CLIENT_RULE, ACCOUNT_RULE), strict=True):
            row.failures += 1
            row.last_failure_at = now
            row.blocked_until = rule.blocked_until(row.failures, now)
            if row.blocked_until is not None:
                started.append(Block(client, row.username, row.failures, row.blocked_until))
        return Reservation(client, username[:64], tuple(started))

    def succeeded(self, session: Session, reservation: Reservation) -> None:
        """Give the attempt back: the account's count restarts, the address's drops by one."""
        client = self._row(session, reservation.client, None)
        client.failures = max(0, client.failures - 1)
        client.blocked_until = CLIENT_RULE.blocked_until(client.failures, client.last_failure_at)
        session.execute(
            delete(LoginThrottleRow).where(
                LoginThrottleRow.client == reservation.client,
                LoginThrottleRow.username == reservation.username,
            )
        )

    @staticmethod
    def clear_account(session: Session, username: str) -> None:
        """Forget the account's failures from every address (an admin reset or enable)."""
        session.execute(delete(LoginThrottleRow).where(LoginThrottleRow.username == username))

    def blocked_accounts(self, session: Session) -> set[str]:
        """Return the accounts some address may not try now."""
        rows = session.execute(
            select(LoginThrottleRow.username).where(
                LoginThrottleRow.username.is_not(None),
                LoginThrottleRow.blocked_until > self.clock(),
            )
        ).scalars()
        return {name for name in rows if name is not None}

    def _row(self, session: Session, client: str, username: str | None) -> LoginThrottleRow:
        """Return the counter's row, locked; created if missing.

        Two first attempts at once from a new address both insert: the second's insert
        does nothing, and it waits for the first's lock.
        """
        key = f"{client}\n{username}" if username is not None else client
        values = {
            "key": key,
            "client": client,
            "username": username,
            "failures": 0,
            "last_failure_at": self.clock(),
            "blocked_until": None,
        }
        postgres = session.get_bind().dialect.name == "postgresql"
        insert = postgres_insert if postgres else sqlite_insert
        session.execute(insert(LoginThrottleRow).values(values).on_conflict_do_nothing())
        row = session.get(LoginThrottleRow, key, with_for_update=True, populate_existing=True)
        if row is None:  # pragma: no cover - inserted just above, in this transaction
            raise RuntimeError(f"login_throttle row {key!r} vanished")
        return row
