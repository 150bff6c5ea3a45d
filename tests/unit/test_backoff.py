"""The one retry schedule: capped, exponential, jittered; a loop's failures counted against it."""

import pytest

from envmon.backoff import Backoff, Retries


class TestBackoff:
    """The schedule."""

    def test_capped_exponential(self):
        """Waits double from the initial value up to the maximum."""
        b = Backoff(initial_s=1.0, maximum_s=5.0, jitter=0.0)
        assert [b.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]

    def test_jitter_only_shortens(self):
        """The jitter takes up to its share off the wait, never adds to it."""
        b = Backoff(initial_s=2.0, maximum_s=2.0, jitter=0.25)
        assert b.delay(1, rng=lambda: 0.0) == 2.0
        assert b.delay(1, rng=lambda: 1.0) == 1.5

    @pytest.mark.parametrize(
        "kwargs",
        [{"initial_s": 0}, {"initial_s": 2, "maximum_s": 1}, {"multiplier": 0.5}, {"jitter": 1}],
    )
    def test_invalid(self, kwargs):
        """Nonsense settings are refused."""
        with pytest.raises(ValueError, match=r"must|needs"):
            Backoff(**kwargs)


class TestRetries:
    """One loop's consecutive failures."""

    def test_counts_up_and_resets(self):
        """Each failure waits longer until the cap; a success starts again from the shortest."""
        retries = Retries(Backoff(initial_s=1.0, maximum_s=4.0, jitter=0.0))
        assert [retries.next() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
        assert retries.attempt == 4
        retries.reset()
        assert retries.next() == 1.0

    def test_longest_jumps_to_the_cap_and_stays(self):
        """A failure that waiting will not fix waits the longest at once, and next() stays there."""
        retries = Retries(Backoff(initial_s=1.0, maximum_s=8.0, jitter=0.0))
        assert retries.longest() == 8.0
        assert [retries.next() for _ in range(2)] == [8.0, 8.0]
        retries.reset()
        assert retries.next() == 1.0
