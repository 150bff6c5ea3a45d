"""Property tests (hypothesis) of the evaluation core's invariants."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from envmon.models import ExcursionRecord, ExcursionStatus
from envmon.sensors import SensorSpec
from envmon.testing import make_spec
from envmon.timeutil import to_us
from stream.core import Evaluator

T0 = to_us(__import__("envmon.testing", fromlist=["DEFAULT_T0"]).DEFAULT_T0)

#: Anything at all: steps that repeat or go back in time, gaps, missing values.
noise = st.lists(
    st.tuples(
        st.sampled_from(["a.t", "b.t"]),
        st.integers(min_value=-30, max_value=900),  # step in seconds: <=0 gives duplicate/late
        st.one_of(st.none(), st.floats(min_value=-20, max_value=30, allow_nan=False)),
    ),
    max_size=120,
)


#: Which way each sensor's spells go; ``specs`` always gives it that alert limit.
SPELLS = {"a.t": (12.0, 30.0), "b.t": (-20.0, -11.0)}


@st.composite
def episodes(draw: st.DrawFn) -> list[tuple[str, int, float | None]]:
    """Normal readings, then a spell beyond the limits long enough to count, then normal again.

    Steered so that most examples open an excursion and close it (uniform noise rarely
    stays beyond a limit for the delay or the consecutive count a rule asks for).
    """
    out: list[tuple[str, int, float | None]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        sid = draw(st.sampled_from(sorted(SPELLS)))
        step = draw(st.sampled_from([30, 60]))
        out += [(sid, step, 4.0)] * draw(st.integers(min_value=1, max_value=4))
        low, high = SPELLS[sid]
        beyond = draw(st.floats(min_value=low, max_value=high))
        out += [(sid, step, beyond)] * draw(st.integers(min_value=12, max_value=40))
        if draw(st.booleans()):  # a dropout or a late reading inside the spell
            late = draw(st.sampled_from([0, -5, 700]))
            out.append((sid, late, draw(st.none() | st.just(beyond))))
        out += [(sid, step, 4.0)] * draw(st.integers(min_value=4, max_value=12))
    return out


samples = st.one_of(episodes(), episodes(), episodes(), noise)


def mostly(values: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    """Return ``values`` three times in four, else None."""
    return st.one_of(values, values, values, st.none())


@st.composite
def specs(draw: st.DrawFn) -> list[SensorSpec]:
    """Two sensors with random but valid rules."""
    out = []
    for sid in ("a.t", "b.t"):
        # Each limit is there three times in four, the one a sensor's spells cross always;
        # 4.0 is normal even with the widest deadband.
        alert_high = draw(
            st.floats(min_value=6, max_value=10)
            if sid == "a.t"
            else mostly(st.floats(min_value=6, max_value=10))
        )
        action_high = draw(mostly(st.floats(min_value=11, max_value=20)))
        alert_low = draw(
            st.floats(min_value=-2, max_value=2)
            if sid == "b.t"
            else mostly(st.floats(min_value=-2, max_value=2))
        )
        action_low = draw(mostly(st.floats(min_value=-10, max_value=-3)))
        out.append(
            make_spec(
                sid,
                alert_high=alert_high,
                action_high=action_high,
                alert_low=alert_low,
                action_low=action_low,
                delay_s=draw(st.sampled_from([0, 60, 300])),
                consecutive=draw(st.sampled_from([None, 2, 3])),
                deadband=draw(st.sampled_from([0.0, 0.5, 1.0])),
                rate_of_change_per_min=draw(st.sampled_from([None, 2.0])),
                stale_after_s=draw(st.sampled_from([None, 600])),
                bad_after=draw(st.sampled_from([None, 2])),
            )
        )
    return out


def feed(ev: Evaluator, seq: list[tuple[str, int, float | None]], clocks: dict[str, int]) -> list:
    out = []
    for sid, step, value in seq:
        clocks[sid] = clocks.get(sid, T0) + step * 1_000_000
        out.extend(ev.feed(sid, clocks[sid], value, value is not None))
    return out


def dump(events: list) -> list[str]:
    return [e.model_dump_json() for e in events]


class TestInvariants:
    @given(specs(), samples)
    @settings(max_examples=300, deadline=None)
    def test_excursion_never_ends_before_it_starts(self, sp, seq):
        """Every record has start <= peak_ts and, when closed, start < end."""
        events = feed(Evaluator(sp), seq, {})
        for rec in (e for e in events if isinstance(e, ExcursionRecord)):
            assert rec.start <= rec.peak_ts
            if rec.end is not None:
                assert rec.start < rec.end
                assert rec.duration_s is not None
                assert 0 <= rec.time_beyond_limit_s <= rec.duration_s + 1e-6
            assert rec.integral_beyond_limit >= 0

    @given(specs(), samples)
    @settings(max_examples=200, deadline=None)
    def test_replay_is_deterministic(self, sp, seq):
        """Replaying the same readings twice gives the same records and ids."""
        assert dump(feed(Evaluator(sp), seq, {})) == dump(feed(Evaluator(sp), seq, {}))

    @given(specs(), samples)
    @settings(max_examples=300, deadline=None)
    def test_return_to_normal_closes_everything(self, sp, seq):
        """After enough normal readings no excursion is left open."""
        ev = Evaluator(sp)
        clocks: dict[str, int] = {}
        events = feed(ev, seq, clocks)
        normal = [(sid, 60, 4.0) for _ in range(6) for sid in ("a.t", "b.t")]
        events += feed(ev, normal, clocks)
        assert not [r for r in ev.open_records() if isinstance(r, ExcursionRecord)]
        opened = {e.id for e in events if isinstance(e, ExcursionRecord)}
        closed = {
            e.id
            for e in events
            if isinstance(e, ExcursionRecord) and e.status is ExcursionStatus.CLOSED
        }
        assert opened == closed

    @given(specs(), samples, st.integers(min_value=0, max_value=120))
    @settings(max_examples=300, deadline=None)
    def test_split_and_carry_state_equals_one_pass(self, sp, seq, cut):
        """Splitting the input anywhere and carrying the state across changes nothing."""
        whole = feed(Evaluator(sp), seq, {})
        first = Evaluator(sp)
        clocks: dict[str, int] = {}
        part = feed(first, seq[:cut], clocks)
        snapshot = json.loads(json.dumps(first.snapshot()))
        second = Evaluator.restore(sp, snapshot)
        part += feed(second, seq[cut:], clocks)
        assert dump(part) == dump(whole)
        assert dump(first.open_records() if cut >= len(seq) else second.open_records()) == dump(
            Evaluator_open(sp, seq)
        )

    @given(specs(), samples)
    @settings(max_examples=200, deadline=None)
    def test_revisions_increase_per_excursion(self, sp, seq):
        """Updates of one excursion come with strictly increasing revisions."""
        last: dict[str, int] = {}
        for rec in (e for e in feed(Evaluator(sp), seq, {}) if isinstance(e, ExcursionRecord)):
            assert rec.revision > last.get(rec.id, 0)
            last[rec.id] = rec.revision


def Evaluator_open(sp, seq):  # noqa: N802 - reads as "the open records of an evaluator"
    ev = Evaluator(sp)
    feed(ev, seq, {})
    return ev.open_records()


# -- delivery: bursts, backlogs and real pace give the same events ---------------------

_any_delivery = st.lists(
    st.tuples(
        st.sampled_from(["a.t", "b.t"]),
        st.integers(min_value=-30, max_value=900),  # step in seconds: <=0 gives duplicate/late
        st.one_of(
            st.none(), st.just("alive"), st.floats(min_value=-20, max_value=30, allow_nan=False)
        ),
    ),
    max_size=120,
)
deliveries = st.one_of(episodes(), episodes(), _any_delivery)
FAR = 10 * 86_400 * 1_000_000


def in_data_order(seq: list[tuple[str, int, object]]) -> list[tuple[str, int, int, object]]:
    """Give each entry its data time and order them as produced (each sensor's order kept).

    The key of an entry is its sensor's newest data time so far, so that a late or repeated
    sample is produced right after the one it repeats.
    """
    clocks: dict[str, int] = {}
    newest: dict[str, int] = {}
    out = []
    for sid, step, value in seq:
        clocks[sid] = clocks.get(sid, T0) + step * 1_000_000
        newest[sid] = max(newest.get(sid, clocks[sid]), clocks[sid])
        out.append((newest[sid], sid, clocks[sid], value))
    out.sort(key=lambda entry: entry[0])  # stable: each sensor's own order is kept
    return [(key, sid, ts, value) for key, sid, ts, value in out]


def deliver(ev: Evaluator, sid: str, ts: int, value: object, at: int | None) -> list:
    if value == "alive":
        return list(ev.alive(sid, ts, at))
    sample = value if isinstance(value, float) else None
    return list(ev.feed(sid, ts, sample, sample is not None, at))


def per_sensor(events: list) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for event in events:
        out.setdefault(event.sensor_id, []).append(event.model_dump_json())
    return out


class TestDelivery:
    @given(specs(), deliveries, st.data())
    @settings(max_examples=300, deadline=None)
    def test_bursts_backlogs_and_real_pace_give_the_same_events(self, sp, seq, data):
        """Delivered at real pace or faster (a burst, a draining buffer, behind the wall clock),
        with clock ticks anywhere in between, each sensor gets replay's events, in order."""
        produced = in_data_order(seq)
        replay = Evaluator(sp)
        expected: list = []
        for _key, sid, ts, value in produced:
            expected += deliver(replay, sid, ts, value, None)
        end = max((key for key, *_ in produced), default=T0)
        expected += replay.advance(end + FAR)

        live = Evaluator(sp)
        got: list = []
        lag = data.draw(st.integers(min_value=0, max_value=3_600), label="lag s") * 1_000_000
        previous_key, arrived = None, None
        for key, sid, ts, value in produced:
            if previous_key is not None:
                # the backlog shrinks by up to the data time between two entries: 0 is real
                # pace, all of it delivers both at once (a burst)
                share = data.draw(st.sampled_from([0, 1, 2, 3, 4]), label="catch up /4")
                lag = max(0, lag - (key - previous_key) * share // 4)
            arrival = key + lag
            if arrived is not None and data.draw(st.booleans(), label="tick"):
                part = data.draw(st.sampled_from([0, 1, 2, 3, 4]), label="tick at /4")
                got += live.advance(arrived + (arrival - arrived) * part // 4)
            got += deliver(live, sid, ts, value, arrival)
            previous_key, arrived = key, arrival
        got += live.advance((arrived or T0) + FAR)

        assert per_sensor(got) == per_sensor(expected)


def opens_and_closes(sp: list[SensorSpec], seq: list[tuple[str, int, float | None]]) -> bool:
    """Return whether the sequence alone opens an excursion and closes it."""
    events = feed(Evaluator(sp), seq, {})
    records = [e for e in events if isinstance(e, ExcursionRecord)]
    return any(r.status is ExcursionStatus.CLOSED for r in records)


def test_most_examples_open_and_close_an_excursion():
    """The strategies exercise whole excursions, not only quiet data (at least 60 % do)."""
    seen: list[bool] = []

    @given(specs(), samples)
    @settings(max_examples=200, derandomize=True, database=None, deadline=None)
    def probe(sp, seq):
        seen.append(opens_and_closes(sp, seq))

    probe()
    assert len(seen) >= 100
    assert sum(seen) / len(seen) >= 0.6, f"{sum(seen)} of {len(seen)}"
