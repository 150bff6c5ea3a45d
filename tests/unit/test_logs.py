"""The services' logging: envmon's own lines at INFO, chatty protocol libraries from WARNING."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from envmon.logs import QUIET_LIBRARIES, service_logging


@pytest.fixture
def restored_levels() -> Iterator[None]:
    names = ("", "envmon", *QUIET_LIBRARIES, "asyncua.client.client")
    before = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restored_levels")
def test_library_chatter_is_held_back_but_envmon_and_library_warnings_are_not() -> None:
    logging.getLogger().setLevel(logging.INFO)
    service_logging()
    client = logging.getLogger("asyncua.client.client")  # "opening connection" at INFO
    assert not client.isEnabledFor(logging.INFO)
    assert client.isEnabledFor(logging.WARNING)
    assert logging.getLogger("amqtt.broker").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("amqtt.broker").isEnabledFor(logging.INFO)
    assert logging.getLogger("envmon.commands.collect").isEnabledFor(logging.INFO)
