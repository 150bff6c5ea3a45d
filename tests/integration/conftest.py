"""Shared by the integration tests: leaked sockets and transports are charged to their test.

The suite turns warnings into errors. An unclosed socket or asyncio transport warns only
when the garbage collector finds it, which can be several tests later, so the failure
lands on an innocent test at random (seen once: a server-side OPC-UA socket of an earlier
test collected in the middle of another). Collecting after every integration test makes
such a leak fail the test that caused it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_garbage_after_test() -> Iterator[None]:
    yield
    gc.collect()
