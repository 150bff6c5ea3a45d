"""Fixtures of the time-series tests: each test's own ``site`` tag.

The servers (``questdb`` with the readings table, ``influxdb``, and their ``own_`` forms)
are the suite's, from ``tests/conftest.py``; the writer contract runs on both.
"""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def site() -> str:
    """A site id of this test's own: every query filters on it."""
    return f"test-{uuid.uuid4().hex[:12]}"
