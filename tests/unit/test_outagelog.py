"""A flood of connection errors is told as one outage: start, reminders, end."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from envmon.outagelog import OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outage_log(clock: Clock) -> Iterator[OutageLog]:
    """The filter on a test logger (and its children), without its watching thread."""
    outage_log = OutageLog(
        "kafka",
        loggers=("flood", "flood.conn"),
        prefix="flood.",
        reminder_s=60,
        quiet_s=30,
        clock=clock,
    )
    outage_log.install(watch=False)
    yield outage_log
    outage_log.uninstall()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


class TestOutageLog:
    def test_an_outage_is_one_line_at_its_start_and_one_at_its_end(
        self, outage_log: OutageLog, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """100,000 connection errors in 20 s become two lines."""
        caplog.set_level(logging.INFO)
        flood, conn = logging.getLogger("flood"), logging.getLogger("flood.conn")
        for i in range(100_000):
            clock.now += 0.0002
            if i % 2:
                flood.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
            else:
                conn.error("Unable to update metadata from %s", [1])
            if i % 1_000 == 0:
                outage_log.check()
        assert len(caplog.records) == 1
        assert "connection trouble: Unable to update metadata from [1]" in lines(caplog)[0]
        clock.now += 29
        outage_log.check()
        assert len(caplog.records) == 1  # still within quiet_s of the last error
        clock.now += 1
        outage_log.check()
        assert len(caplog.records) == 2
        assert (
            "working again (the outage lasted 20 s, 100000 warnings and errors)"
            in (lines(caplog)[1])
        )
        assert not outage_log.in_outage
        assert outage_log.suppressed == 99_999

    def test_a_long_outage_is_reminded_with_what_was_held_back(
        self, outage_log: OutageLog, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One reminder per reminder_s, counting each kind of message held back."""
        flood = logging.getLogger("flood")
        for _ in range(300):  # five minutes, an error a second
            flood.error("Unable connect to node with id %s", 1)
            flood.warning("Got error produce response: %s", "NodeNotReadyError")
            clock.now += 1
            outage_log.check()
        assert len(caplog.records) == 5  # the start and four reminders
        reminder = lines(caplog)[1]
        assert "still failing after 60 s" in reminder
        assert "60 × Unable connect to node with id 1" in reminder
        assert "Got error produce response: NodeNotReadyError" in reminder

    def test_a_new_outage_after_the_end_is_told_again(
        self, outage_log: OutageLog, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Two outages apart make two start lines and two end lines."""
        flood = logging.getLogger("flood")
        for _ in range(2):
            flood.error("Unable connect to node with id %s", 1)
            clock.now += 31
            outage_log.check()
        assert outage_log.outages == 2
        assert len(caplog.records) == 4

    def test_exceptions_and_info_pass_unchanged(
        self, outage_log: OutageLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An unexpected error with its traceback, and records below WARNING, are not held."""
        caplog.set_level(logging.INFO)
        flood = logging.getLogger("flood")
        flood.error("Unable connect to node with id %s", 1)
        flood.info("Discovered coordinator %s", 1)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            flood.exception("Unexpected error in sender routine")
        assert [r.name for r in caplog.records] == ["envmon.outagelog", "flood", "flood"]
        assert caplog.records[-1].exc_info is not None

    def test_other_warnings_of_the_library_pass_and_start_no_outage(
        self, outage_log: OutageLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A rebalance's warnings are not connection trouble: shown, and no outage begins."""
        flood = logging.getLogger("flood")
        for _ in range(3):
            flood.warning("Heartbeat failed for group %s because it is rebalancing", "g")
        assert [r.name for r in caplog.records] == ["flood"] * 3
        assert not outage_log.in_outage

    def test_other_loggers_are_not_touched(
        self, outage_log: OutageLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Only the library's loggers are summarised."""
        for _ in range(3):
            logging.getLogger("collectors.buffer").error("buffer: the buffer is full")
        assert len(caplog.records) == 3

    def test_uninstall_says_an_outage_is_still_going_on(
        self, outage_log: OutageLog, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Stopping in an outage leaves a last line, and the loggers unfiltered."""
        flood = logging.getLogger("flood")
        flood.error("Unable connect to node with id %s", 1)
        flood.error("Unable connect to node with id %s", 1)
        clock.now += 5
        outage_log.uninstall()
        assert "stopping 5 s into an outage, its last error 5 s ago" in lines(caplog)[-1]
        flood.error("after")
        assert lines(caplog)[-1] == "after"

    def test_the_watching_thread_ends_the_outage(
        self, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Installed with its thread, the end is noticed without anyone calling check."""
        outage_log = OutageLog("kafka", loggers=("flood",), prefix=None, clock=clock)
        outage_log.install()
        try:
            logging.getLogger("flood").error("Unable connect to node with id %s", 1)
            clock.now += 31  # quiet for longer than quiet_s: the thread's next check ends it
            ended = threading.Event()
            for _ in range(100):  # the thread checks every second
                if not outage_log.in_outage:
                    break
                ended.wait(0.05)
        finally:
            outage_log.uninstall()
        assert "working again" in lines(caplog)[-1]
