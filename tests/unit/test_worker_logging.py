"""``envmon stream worker`` keeps the log level it is given (faust's spinner would not)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest

from envmon.commands.stream_worker import faust_worker


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, its level and handlers put back after the test."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    handler_levels = [h.level for h in handlers]
    yield root
    root.handlers[:] = handlers  # faust's logging set-up replaces the root's handlers
    for handler, handler_level in zip(handlers, handler_levels, strict=True):
        handler.setLevel(handler_level)
    root.setLevel(level)


@pytest.mark.parametrize("loglevel", ["warning", "error"])
def test_debug_records_stay_off_at_warning_and_above(
    loglevel: str, tmp_path: Path, root_logger: logging.Logger
) -> None:
    """faust's Worker alone sets the root logger to DEBUG at WARN and above; ours does not."""
    app = faust.App("log-test", datadir=str(tmp_path), web_enabled=False, autodiscover=False)
    bare = faust.Worker(app, loglevel=loglevel, quiet=True)
    bare._setup_logging()  # what faust's start does
    assert logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)  # the behaviour avoided

    root_logger.setLevel(logging.WARNING)
    ours = faust_worker(app, loglevel)
    ours._setup_logging()
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.INFO)
    assert logging.getLogger("aiokafka").isEnabledFor(getattr(logging, loglevel.upper()))
