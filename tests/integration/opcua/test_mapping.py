"""Notifications become readings: quality, timestamps, units, node addressing, dead letters."""

from __future__ import annotations

import math
from datetime import timedelta

from asyncua import ua

from envmon.models import Quality
from envmon.testing import eventually
from envmon.timeutil import parse_ts, utcnow

from .helpers import PointsServer, config_for, dead_letters, readings, specs_for

T0 = parse_ts("2026-01-05T08:00:00Z")
NS = "urn:envmon:simulator"


def latest(outbox, sensor_id):
    """The last reading of a sensor in the buffer."""
    return [r for r in readings(outbox) if r.sensor_id == sensor_id][-1]


class TestQualityAndTime:
    async def test_status_code_severity_sets_the_quality(self, endpoint, outbox, make_collector):
        """Good, Uncertain and Bad StatusCodes (with sub-codes) map to the three qualities."""
        codes = {
            "good": ua.StatusCodes.Good,
            "override": ua.StatusCodes.GoodLocalOverride,
            "uncertain": ua.StatusCodes.UncertainLastUsableValue,
            "bad": ua.StatusCodes.BadSensorFailure,
        }
        server = PointsServer(list(codes), endpoint=endpoint)
        await server.start()
        try:
            nodes = [{"sensor_id": f"p.{k}", "node_id": server.node_id(k)} for k in codes]
            collector = make_collector(
                config_for(endpoint, nodes), specs_for([n["sensor_id"] for n in nodes])
            )
            await collector.start()
            await collector.wait_connected(10)
            for key, code in codes.items():
                await server.write(key, 5.0, status=code)
            await eventually(lambda: len(readings(outbox)) == 8, what="8 readings", timeout=10)
            assert latest(outbox, "p.good").quality is Quality.GOOD
            assert latest(outbox, "p.override").quality is Quality.GOOD
            uncertain = latest(outbox, "p.uncertain")
            assert (uncertain.quality, uncertain.value) == (Quality.UNCERTAIN, 5.0)
            bad = latest(outbox, "p.bad")
            assert (bad.quality, bad.value) == (Quality.BAD, None)  # the server drops bad values
            assert dead_letters(outbox) == []
        finally:
            await server.stop()

    async def test_source_or_server_timestamp_as_configured(self, endpoint, outbox, make_collector):
        """``timestamp: source`` keeps the device's time; ``server`` takes the server's."""
        server = PointsServer(["src", "srv"], endpoint=endpoint)
        await server.start()
        try:
            nodes = [
                {"sensor_id": "p.src", "node_id": server.node_id("src"), "timestamp": "source"},
                {"sensor_id": "p.srv", "node_id": server.node_id("srv"), "timestamp": "server"},
            ]
            collector = make_collector(config_for(endpoint, nodes), specs_for(["p.src", "p.srv"]))
            await collector.start()
            await collector.wait_connected(10)
            await server.write("src", 1.0, source_timestamp=T0)
            await server.write("srv", 1.0, source_timestamp=T0)
            await eventually(lambda: len(readings(outbox)) == 4, what="4 readings", timeout=10)
            src, srv = latest(outbox, "p.src"), latest(outbox, "p.srv")
            assert src.ts == T0
            assert abs(srv.ts - utcnow()) < timedelta(seconds=10)
            for reading in (src, srv):
                assert reading.ts.utcoffset() == timedelta(0)
                assert reading.received_at is not None
                assert reading.source == "test"
        finally:
            await server.stop()


class TestAddressingAndUnits:
    async def test_nsu_ids_browse_paths_and_unit_conversion(self, endpoint, outbox, make_collector):
        """Nodes by namespace URI, by bare and indexed browse paths; °F arrives as °C."""
        server = PointsServer(["a", "b", "c", "f"], endpoint=endpoint)
        await server.start()
        try:
            ns = server.namespace_index
            nodes = [
                {"sensor_id": "p.a", "node_id": f"nsu={NS};s=a"},
                {"sensor_id": "p.b", "browse_path": "Test/b"},
                {"sensor_id": "p.c", "browse_path": f"{ns}:Test/{ns}:c"},
                {"sensor_id": "p.f", "node_id": server.node_id("f"), "unit": "degF"},
            ]
            config = config_for(endpoint, nodes, namespace=NS)
            collector = make_collector(config, specs_for([n["sensor_id"] for n in nodes]))
            await collector.start()
            await collector.wait_connected(10)
            for key in ("a", "b", "c"):
                await server.write(key, 3.5)
            await server.write("f", 212.0)
            await eventually(lambda: len(readings(outbox)) == 8, what="8 readings", timeout=10)
            assert [latest(outbox, f"p.{k}").value for k in "abc"] == [3.5, 3.5, 3.5]
            fahrenheit = latest(outbox, "p.f")
            assert fahrenheit.value == 100.0
            assert fahrenheit.unit == "degC"
        finally:
            await server.stop()


class TestDeadLetters:
    async def test_unmappable_values_and_nodes_go_to_the_dead_letter(
        self, endpoint, outbox, make_collector
    ):
        """Text, arrays, NaN, good without value, unknown nodes: dead letters; no stop."""
        server = PointsServer(
            ["v", "text", "array", "empty"],
            kinds={"text": "string", "array": "array", "empty": "any"},
            endpoint=endpoint,
        )
        await server.start()
        try:
            nodes = [
                {"sensor_id": "p.v", "node_id": server.node_id("v")},
                {"sensor_id": "p.text", "node_id": server.node_id("text")},
                {"sensor_id": "p.array", "node_id": server.node_id("array")},
                {"sensor_id": "p.empty", "node_id": server.node_id("empty")},
                {"sensor_id": "p.missing", "node_id": f"ns={server.namespace_index};s=missing"},
                {"sensor_id": "p.nopath", "browse_path": "Test/nope"},
                {"sensor_id": "p.otherns", "node_id": "nsu=urn:other;s=v"},
            ]
            config = config_for(endpoint, nodes, namespace=NS)
            collector = make_collector(config, specs_for([n["sensor_id"] for n in nodes]))
            await collector.start()
            await collector.wait_connected(10)
            await server.write("text", "door open", variant_type=ua.VariantType.String)
            await server.write("array", [1.0, 2.0], variant_type=ua.VariantType.Double)
            await server.write("v", math.nan)
            await server.write("empty", None)
            await server.write("v", 7.25)
            await eventually(
                lambda: len(dead_letters(outbox)) >= 8, what="8 dead letters", timeout=10
            )
            await eventually(
                lambda: latest(outbox, "p.v").value == 7.25,
                what="the reading after them",
                timeout=10,
            )
            reasons = {(d.origin, d.reason) for d in dead_letters(outbox)}
            assert reasons == {
                (server.node_id("text"), "value is not numeric (String: '')"),
                (server.node_id("text"), "value is not numeric (String: 'door open')"),
                (server.node_id("array"), "value is not numeric (array of Double: [0.0])"),
                (server.node_id("array"), "value is not numeric (array of Double: [1.0, 2.0])"),
                (server.node_id("v"), "value is not finite (nan)"),
                (server.node_id("empty"), "no value with status Good"),
                (
                    f"ns={server.namespace_index};s=missing",
                    "the server refused to monitor the node (BadNodeIdUnknown)",
                ),
                ("Test/nope", "browse path not found (BadNoMatch)"),
                ("nsu=urn:other;s=v", "the server has no namespace 'urn:other'"),
            }
            assert all(d.source == "test" for d in dead_letters(outbox))
            assert collector.connected
            assert collector.counters.dead_lettered == 10  # the empty node's initial value too
        finally:
            await server.stop()
