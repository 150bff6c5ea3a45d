"""The one polling helper of the tests: waits for a condition, fails naming what it waited for."""

import pytest

from envmon.testing import eventually


async def test_returns_once_the_condition_holds():
    """A condition that becomes true after a few polls ends the wait."""
    calls = []

    def ready() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await eventually(ready, what="three polls", interval=0)
    assert len(calls) == 3


async def test_async_conditions_are_awaited():
    """An async predicate is awaited, not taken as a truthy coroutine."""

    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for the topic"):
        await eventually(never, what="the topic", timeout=0.05, interval=0.01)
