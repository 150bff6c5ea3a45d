"""Which OPC-UA nodes get a proof of life, and with what time (asyncua values, no server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from asyncua import ua

from collectors.buffer import Outbox
from collectors.opcua import OpcUaCollector
from collectors.opcua.wire import Session, Subscription
from collectors.pipeline import CollectorPipeline
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.testing import FakeClock, make_spec
from envmon.timeutil import parse_ts

NOW = parse_ts("2026-01-05T08:00:00Z")
SENSORS = ("freezer-1.temperature", "freezer-2.temperature", "fridge-1.temperature")


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    box = Outbox(":memory:")
    yield box
    box.close()


def collector(outbox: Outbox, clock: FakeClock, timestamp: str = "source") -> OpcUaCollector:
    """Two freezers that can go stale (60 s) and a fridge that cannot."""
    nodes: list[dict[str, Any]] = [
        {"sensor_id": sid, "node_id": f"ns=2;s=N{i}", "timestamp": timestamp}
        for i, sid in enumerate(SENSORS)
    ]
    config = OpcUaCollectorConfig.model_validate(
        {"id": "gw", "endpoint": "opc.tcp://127.0.0.1:4840", "nodes": nodes}
    )
    specs = [make_spec(sid, stale_after_s=60) for sid in SENSORS[:2]]
    specs.append(make_spec(SENSORS[2]))
    return OpcUaCollector(config, specs, CollectorPipeline(outbox, source="test"), clock=clock)


def value(status: int = ua.StatusCodes.Good, source_offset_s: float = 0.0) -> ua.DataValue:
    """A value that last changed a while ago; its source clock ``source_offset_s`` ahead."""
    changed = NOW - timedelta(minutes=30)
    return ua.DataValue(
        ua.Variant(-80.0, ua.VariantType.Double),
        StatusCode=ua.StatusCode(status),
        SourceTimestamp=changed + timedelta(seconds=source_offset_s),
        ServerTimestamp=changed,
    )


def session_with(values: dict[int, ua.DataValue]) -> tuple[Session, Subscription]:
    session = Session(client=None)  # type: ignore[arg-type]  # no connection needed
    session.latest.update(values)
    sub = Subscription(1, [1, 2, 3], 0.0)
    session.subscriptions[1] = sub
    return session, sub


def proofs(c: OpcUaCollector) -> dict[str, datetime]:
    out = {p.sensor_id: p.ts for p in c._alive}
    c._alive.clear()
    return out


def proven_once(outbox: Outbox) -> tuple[FakeClock, OpcUaCollector, Session, Subscription]:
    """Both freezers proven (at ``NOW``) and the proofs taken: what comes next is timed."""
    clock = FakeClock(NOW)
    c = collector(outbox, clock)
    session, sub = session_with({1: value(), 2: value()})
    c._prove_alive(session, sub, NOW, clock())
    proofs(c)
    return clock, c, session, sub


class TestProofsOfLife:
    def test_a_new_subscription_proves_every_node_that_can_go_stale(self, outbox):
        """At the first response: each reported node that can go stale, none for the fridge."""
        clock = FakeClock(NOW)
        c = collector(outbox, clock)
        session, sub = session_with({1: value(), 2: value(), 3: value()})
        c._prove_alive(session, sub, NOW, clock())
        assert proofs(c) == {SENSORS[0]: NOW, SENSORS[1]: NOW}

    def test_then_only_once_a_third_of_stale_after_passed(self, outbox):
        """The next proof of an unchanged node comes 20 s (a third of 60 s) later."""
        clock, c, session, sub = proven_once(outbox)
        clock.advance(19)
        c._prove_alive(session, sub, clock(), clock())
        assert proofs(c) == {}
        clock.advance(1)
        c._prove_alive(session, sub, clock(), clock())
        assert set(proofs(c)) == {SENSORS[0], SENSORS[1]}

    def test_a_reading_resets_the_period(self, outbox):
        """A node that just reported needs no proof until a period after its reading."""
        clock, c, session, sub = proven_once(outbox)
        clock.advance(15)
        c._evidence[1] = int(clock().timestamp() * 1_000_000)  # node 1 reported now
        clock.advance(6)
        c._prove_alive(session, sub, clock(), clock())
        assert set(proofs(c)) == {SENSORS[1]}

    def test_no_proof_for_a_bad_status_a_silent_subscription_or_a_lost_session(self, outbox):
        """A bad status, a subscription the server dropped, a lost session: nothing proven."""
        clock = FakeClock(NOW)
        c = collector(outbox, clock)
        session, sub = session_with({1: value(ua.StatusCodes.BadNoCommunication), 2: value()})
        c._prove_alive(session, sub, NOW, clock())
        assert set(proofs(c)) == {SENSORS[1]}
        session.silent.add(sub.subscription_id)
        clock.advance(30)
        c._prove_alive(session, sub, clock(), clock())
        assert proofs(c) == {}
        session.silent.clear()
        session.lose("gone")
        clock.advance(30)
        c._prove_alive(session, sub, clock(), clock())
        assert proofs(c) == {}

    def test_stamped_in_the_nodes_data_time(self, outbox):
        """Publish time plus the node's source-to-server offset; off by a day: not believed."""
        clock = FakeClock(NOW)
        c = collector(outbox, clock)
        session, sub = session_with({1: value(source_offset_s=90), 2: value(source_offset_s=-5)})
        published = NOW - timedelta(seconds=2)
        c._prove_alive(session, sub, published, clock())
        assert proofs(c) == {
            SENSORS[0]: published + timedelta(seconds=90),
            SENSORS[1]: published - timedelta(seconds=5),
        }
        session, sub = session_with({1: value(source_offset_s=3 * 86_400), 2: value()})
        far = parse_ts("9999-12-31T00:00:00Z")
        c._prove_alive(session, sub, far, clock())
        assert proofs(c) == {SENSORS[0]: NOW, SENSORS[1]: NOW}

    def test_server_timestamps_take_the_publish_time_as_it_is(self, outbox):
        """A node read on server timestamps is in the server's time: no offset."""
        clock = FakeClock(NOW)
        c = collector(outbox, clock, timestamp="server")
        session, sub = session_with({1: value(source_offset_s=90)})
        c._prove_alive(session, sub, NOW, clock())
        assert proofs(c) == {SENSORS[0]: NOW}


class TestProofPeriods:
    def test_a_minute_at_most_and_for_a_time_delay_too(self, outbox):
        """A third of stale_after, at most 60 s; a sensor with only a delay gets proofs too.

        The core reaches a delay on a held value only when a proof says it still holds, so
        the period bounds how late a report-by-exception value past its limit is alarmed.
        """
        nodes = [
            {"sensor_id": sid, "node_id": f"ns=2;s=N{i}"}
            for i, sid in enumerate((*SENSORS, "freezer-3.temperature"))
        ]
        config = OpcUaCollectorConfig.model_validate(
            {"id": "gw", "endpoint": "opc.tcp://127.0.0.1:4840", "nodes": nodes}
        )
        specs = [
            make_spec(SENSORS[0], stale_after_s=900, delay_s=600),  # a ULT freezer
            make_spec(SENSORS[1], stale_after_s=60),
            make_spec(SENSORS[2]),  # neither: no proofs
            make_spec("freezer-3.temperature", delay_s=600),
        ]
        c = OpcUaCollector(config, specs, CollectorPipeline(outbox, source="test"))
        periods = {b.sensor_id: c._proof_every.get(b.handle) for b in c.bindings}
        assert periods == {
            SENSORS[0]: 60_000_000,
            SENSORS[1]: 20_000_000,
            SENSORS[2]: None,
            "freezer-3.temperature": 60_000_000,
        }
