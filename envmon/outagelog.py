"""A client library's flood of connection errors, told as one outage.

aiokafka logs every failed attempt to reach a broker at ERROR ("Unable connect to node",
"Unable to update metadata"): a 20-second broker restart gave 221,660 such lines from
one collector and 134,208 from one stream worker. ``OutageLog`` is a ``logging.Filter``
put on the library's loggers that turns its connection errors (``KAFKA_TROUBLE``: how
their format strings begin) into three kinds of line:

- **one warning when an outage starts** (its first connection error), with its text;
- **a reminder** every ``reminder_s`` while errors keep coming, with how long it has
  lasted and what was held back (each kind of message counted, the latest text of each);
- **one line when it ends**: no connection error for ``quiet_s`` (checked every second by
  a daemon thread, or by ``check``), with the outage's length and count.

Every other record passes unchanged: below WARNING, carrying an exception (an unexpected
error is never summarised), or not about reaching the broker (a rebalance, a missing
topic: rare, and not an outage; counted as one, they kept a false outage open for good).
The filter is shared by ``envmon collect``, ``envmon stream worker`` and ``envmon
excursions consume`` (``kafka_outage_log``); it is thread-safe (faust runs aiokafka
consumers in threads of their own). The clock is injectable (``check`` with a fake clock
tests it without sleeping).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Final

logger = logging.getLogger(__name__)

#: The loggers aiokafka logs through (``aiokafka`` itself is its client's); others found
#: under ``aiokafka.`` at install time are added.
KAFKA_LOGGERS: Final = (
    "aiokafka",
    "aiokafka.admin.client",
    "aiokafka.cluster",
    "aiokafka.conn",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.consumer.subscription_state",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)
#: How aiokafka's messages about an unreachable broker begin (their format strings). Its
#: other warnings (a rebalance, an unknown topic) are not an outage and pass unchanged.
KAFKA_TROUBLE: Final = (
    "Unable connect to",
    "Unable to request metadata",
    "Unable to update metadata",
    "Got error produce response",
    "Cannot send ",
    "Could not send ",
    "Failed fetch messages",
    "Failed fetch offsets",
    "Group Coordinator Request failed",
    "FindCoordinator Request failed",
    "Error sending ",
    "Marking the coordinator dead",
    "Heartbeat session expired",
    "Heartbeat send request failed",
    "Heartbeat failed for group %s: coordinator",
    "OffsetCommit failed",
    "Auto offset commit failed",
)
DEFAULT_REMINDER_S: Final = 60.0
DEFAULT_QUIET_S: Final = 10.0
_SUMMARY_KINDS: Final = 3  # kinds of message a reminder names (the most frequent)
_TEXT_CHARS: Final = 300


class OutageLog(logging.Filter):
    """Summarises the warnings and errors of ``loggers`` as outages (module docstring)."""

    def __init__(
        self,
        name: str = "kafka",
        *,
        loggers: Iterable[str] = KAFKA_LOGGERS,
        prefix: str | None = "aiokafka.",
        trouble: tuple[str, ...] = KAFKA_TROUBLE,
        reminder_s: float = DEFAULT_REMINDER_S,
        quiet_s: float = DEFAULT_QUIET_S,
        clock: Callable[[], float] = time.monotonic,
        out: logging.Logger = logger,
    ) -> None:
        super().__init__()
        self.what = name
        self.logger_names = tuple(loggers)
        self.prefix = prefix
        self.trouble = trouble
        self.reminder_s = reminder_s
        self.quiet_s = quiet_s
        self.out = out
        self._clock = clock
        self._lock = threading.Lock()
        self._installed: list[logging.Logger] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.outages = 0  #: outages seen since created
        self.suppressed = 0  #: records held back since created
        self._since: float | None = None  # when the current outage started
        self._last_error = 0.0
        self._last_report = 0.0
        self._total = 0  # records of the current outage
        self._counts: Counter[str] = Counter()  # per kind (format string), since the last line
        self._latest: dict[str, str] = {}

    @property
    def in_outage(self) -> bool:
        """True from the first error of an outage until its end is logged."""
        return self._since is not None

    def filter(self, record: logging.LogRecord) -> bool:
        """Let the record through, or count it into the current outage (and say so)."""
        kind = str(record.msg)
        if record.levelno < logging.WARNING or record.exc_info or not kind.startswith(self.trouble):
            return True
        text = _short(record.getMessage())
        line: tuple[str, tuple[object, ...]] | None = None
        with self._lock:
            now = self._clock()
            self._last_error = now
            if self._since is None:
                self._since = self._last_report = now
                self._total = 1
                self._counts.clear()
                self._latest.clear()
                self.outages += 1
                line = (
                    "%s: connection trouble: %s (its further errors are summarised: a "
                    "reminder every %.0f s, one line when it ends)",
                    (self.what, text, self.reminder_s),
                )
            else:
                self._total += 1
                self.suppressed += 1
                self._counts[kind] += 1
                self._latest[kind] = text
                if now - self._last_report >= self.reminder_s:
                    self._last_report = now
                    line = (
                        "%s: still failing after %.0f s, %s",
                        (self.what, now - self._since, self._summary()),
                    )
                    self._counts.clear()
        if line is not None:
            self.out.warning(line[0], *line[1])
        return False

    def check(self) -> None:
        """End the outage if no error came for ``quiet_s`` (called every second)."""
        line: tuple[str, tuple[object, ...]] | None = None
        with self._lock:
            since = self._since
            if since is not None and self._clock() - self._last_error >= self.quiet_s:
                line = (
                    "%s: no connection errors for %.0f s: working again (the outage lasted "
                    "%.0f s, %d warnings and errors)",
                    (self.what, self.quiet_s, self._last_error - since, self._total),
                )
                self._since = None
        if line is not None:
            self.out.warning(line[0], *line[1])

    def _summary(self) -> str:
        """Name what was held back since the last line (hold the lock)."""
        held = sum(self._counts.values())
        kinds = "; ".join(
            f"{count:,} × {self._latest[kind]}"
            for kind, count in self._counts.most_common(_SUMMARY_KINDS)
        )
        return f"{held:,} warnings and errors held back: {kinds}"

    def install(self, *, watch: bool = True) -> None:
        """Filter the loggers (and start the thread that notices an outage's end)."""
        names = set(self.logger_names)
        if self.prefix:
            names |= {n for n in logging.root.manager.loggerDict if n.startswith(self.prefix)}
        for name in sorted(names):
            target = logging.getLogger(name)
            if self not in target.filters:
                target.addFilter(self)
                self._installed.append(target)
        if watch and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, name=f"{self.what}-outage-log", daemon=True
            )
            self._thread.start()

    def uninstall(self) -> None:
        """Remove the filter; an outage not yet ended is summarised."""
        for target in self._installed:
            target.removeFilter(self)
        self._installed.clear()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=5)
        with self._lock:
            since, self._since = self._since, None
            now = self._clock()
            summary = self._summary() if self._counts else "none held back since the last line"
        if since is not None:
            self.out.warning(
                "%s: stopping %.0f s into an outage, its last error %.0f s ago; %s",
                self.what,
                now - since,
                now - self._last_error,
                summary,
            )

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self.check()


@contextmanager
def kafka_outage_log(
    *, reminder_s: float = DEFAULT_REMINDER_S, quiet_s: float = DEFAULT_QUIET_S
) -> Iterator[OutageLog]:
    """Summarise aiokafka's connection errors while the block runs (see the module doc)."""
    outage_log = OutageLog("kafka", reminder_s=reminder_s, quiet_s=quiet_s)
    outage_log.install()
    try:
        yield outage_log
    finally:
        outage_log.uninstall()


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_CHARS else text[: _TEXT_CHARS - 1] + "…"
