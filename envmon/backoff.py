"""Capped exponential back-off with jitter: the one retry schedule every loop in envmon uses.

``Backoff`` is the schedule (a value); ``Retries`` counts one loop's consecutive failures
against it. Both are pure: the caller sleeps, so tests pass a fixed ``rng`` and never wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """The n-th wait is ``min(initial_s * multiplier**(n-1), maximum_s)`` less up to ``jitter``.

    The jitter keeps clients that failed together from retrying together.
    """

    initial_s: float = 0.5
    maximum_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.maximum_s < self.initial_s or self.multiplier < 1:
            raise ValueError("backoff needs 0 < initial_s <= maximum_s and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Return the wait before retry number ``attempt`` (1-based)."""
        base = min(self.initial_s * self.multiplier ** (max(attempt, 1) - 1), self.maximum_s)
        return base * (1.0 - self.jitter * rng())


class Retries:
    """One loop's consecutive failures: ``next()`` gives the wait, ``reset()`` after a success."""

    def __init__(self, backoff: Backoff, rng: Callable[[], float] = random.random) -> None:
        self.backoff = backoff
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        """Count one more failure and return how long to wait before the next try."""
        self.attempt += 1
        return self.backoff.delay(self.attempt, self._rng)

    def longest(self) -> float:
        """Count a failure that retrying soon cannot fix: wait the longest, now and after."""
        backoff = self.backoff
        while backoff.multiplier > 1 and (
            backoff.initial_s * backoff.multiplier**self.attempt < backoff.maximum_s
        ):
            self.attempt += 1
        return self.next()

    def reset(self) -> None:
        """Start again from the shortest wait (after a success)."""
        self.attempt = 0
