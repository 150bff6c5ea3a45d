"""Tests of the OPC-UA collector schema: endpoints, security, identity, subscriptions, nodes."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import ValidationError

from envmon.config import ConfigError, parse_site
from envmon.config.opcua import (
    BrowseSegment,
    OpcUaCollectorConfig,
    ParsedNodeId,
    parse_browse_path,
    parse_node_id,
)

SITE = """\
site: {name: Test site}
areas:
  - id: cold-store
    name: Cold store
    instruments:
      - id: fridge-1
        name: Fridge 1
        kind: fridge
        channels:
          - {parameter: temperature, unit: degC}
      - id: dewar
        name: Dewar
        kind: ln2_dewar
        channels:
          - {parameter: level, unit: "%"}
collectors:
  opcua:
    - id: gw
      endpoint: opc.tcp://127.0.0.1:4840/envmon/
"""


def site_with(connection: str) -> str:
    """Return the test site with extra keys (dedented YAML) in its OPC-UA connection."""
    return SITE + textwrap.indent(textwrap.dedent(connection).strip("\n"), " " * 6) + "\n"


def issues(text: str) -> list[str]:
    """Return every issue of an invalid site, rendered ``line N: path: message``."""
    with pytest.raises(ConfigError) as err:
        parse_site(text)
    return [str(issue) for issue in err.value.issues]


class TestNodeIds:
    def test_string_numeric_guid_and_opaque_forms_parse(self):
        """Every OPC-UA string form of a node id parses into namespace, kind and identifier."""
        assert parse_node_id("ns=2;s=Cold.Fridge 1;T") == ParsedNodeId("s", "Cold.Fridge 1;T", 2)
        assert parse_node_id("i=2258") == ParsedNodeId("i", "2258", 0)
        guid = "72962b91-fa75-4ae6-8d28-b404dc7daf63"
        assert parse_node_id(f"ns=1;g={guid}").kind == "g"
        assert parse_node_id("ns=3;b=AQID").identifier == "AQID"

    def test_namespace_uri_form_keeps_the_uri(self):
        """``nsu=`` names the namespace by URI, resolved on every connection."""
        parsed = parse_node_id("nsu=urn:vendor:plant;s=Fridge.T")
        assert parsed.namespace_uri == "urn:vendor:plant"
        assert parsed.identifier == "Fridge.T"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("Freezer1.Temperature", "must be a node id"),
            ("ns=2;i=12a", "numeric identifier"),
            ("ns=70000;i=1", "out of range"),
            ("ns=1;g=not-a-guid", "GUID"),
            ("ns=1;b=***", "base64"),
        ],
    )
    def test_malformed_node_ids_are_refused(self, text, message):
        """A node id that is not in the OPC-UA string form is refused with the reason."""
        with pytest.raises(ValueError, match=message):
            parse_node_id(text)

    def test_browse_path_segments_carry_optional_namespace_indexes(self):
        """``2:ColdStore`` has namespace 2; a bare name takes the connection's namespace."""
        assert parse_browse_path(("2:ColdStore", "fridge-1")) == (
            BrowseSegment("ColdStore", 2),
            BrowseSegment("fridge-1", None),
        )


class TestConnectionSchema:
    def test_defaults_are_anonymous_plain_and_one_second(self):
        """A bare connection is anonymous, unsecured, 1 s publishing and 30 s silence timeout."""
        config = OpcUaCollectorConfig.model_validate({"id": "gw", "endpoint": "opc.tcp://h:4840"})
        assert config.identity is None
        assert not config.security.enabled
        assert config.subscription.publishing_interval == 1.0
        assert config.watchdog.silence_timeout == 30.0

    def test_example_like_connection_is_valid(self):
        """Security, identity, subscription tuning and node settings validate together."""
        site = parse_site(
            site_with(
                """
                security:
                  policy: Basic256Sha256
                  mode: SignAndEncrypt
                  certificate: pki/envmon.der
                  private_key: pki/envmon.pem
                  trusted_server_certificates: [pki/trusted]
                identity: {username: envmon, password_env: ENVMON_OPCUA_PASSWORD}
                subscription: {publishing_interval: 0.5, max_items_per_subscription: 200}
                namespace: urn:envmon:simulator
                node_defaults: {sampling_interval: 2s, queue_size: 5, timestamp: server}
                nodes:
                  - sensor_id: fridge-1.temperature
                    browse_path: ColdStore/fridge-1/temperature
                    unit: degF
                  - {sensor_id: dewar.level, node_id: "ns=2;i=17", deadband: 0.5, timestamp: source}
                """
            )
        )
        connection = site.collectors.opcua[0]
        assert connection.security.enabled
        assert connection.nodes[0].browse_path == ("ColdStore", "fridge-1", "temperature")
        first, second = (connection.settings(node) for node in connection.nodes)
        assert (first.sampling_interval, first.queue_size, first.timestamp) == (2.0, 5, "server")
        assert (second.deadband, second.timestamp) == (0.5, "source")

    @pytest.mark.parametrize(
        ("endpoint", "message"),
        [
            ("http://127.0.0.1:4840/", "opc.tcp://"),
            ("opc.tcp://user:pw@127.0.0.1:4840/", "credentials"),
            ("opc.tcp://:4840/", "must name a host"),
            ("opc.tcp://127.0.0.1:99999/", "invalid port"),
        ],
    )
    def test_bad_endpoints_are_refused(self, endpoint, message):
        """Only opc.tcp URLs with a host and without credentials are accepted."""
        with pytest.raises(ValidationError, match=message):
            OpcUaCollectorConfig.model_validate({"id": "gw", "endpoint": endpoint})

    def test_security_policy_and_mode_must_agree_and_need_certificates(self):
        """A policy needs a mode and the application certificate and key; a mode needs a policy."""
        found = issues(
            site_with(
                """
                security: {policy: Basic256Sha256, mode: None}
                """
            )
        )
        assert any("security.mode: policy Basic256Sha256 needs mode" in i for i in found)
        found = issues(site_with("security: {policy: Aes256_Sha256_RsaPss, mode: Sign}"))
        assert any("needs the application 'certificate'" in i for i in found)
        found = issues(site_with("security: {mode: Sign}"))
        assert any("mode Sign needs a security policy" in i for i in found)

    def test_passwords_are_never_written_in_the_file(self):
        """A ``password`` key is refused, pointing to ``password_env``."""
        found = issues(site_with("identity: {username: envmon, password: secret}"))
        assert any("unknown key 'password'; did you mean 'password_env'?" in i for i in found)
        found = issues(site_with("identity: {username: envmon, password_env: not a name}"))
        assert any("environment variable" in i for i in found)

    def test_lifetime_must_cover_three_keepalives(self):
        """OPC-UA requires the lifetime count to be at least three keep-alive counts."""
        found = issues(site_with("subscription: {keepalive_count: 10, lifetime_count: 20}"))
        assert any("subscription.lifetime_count: must be at least 3" in i for i in found)

    def test_silence_timeout_must_exceed_the_keepalive_period(self):
        """A silence timeout inside the keep-alive period would take quiet for silent."""
        found = issues(
            site_with(
                """
                subscription: {publishing_interval: 5s, keepalive_count: 10, lifetime_count: 30}
                watchdog: {silence_timeout: 30s}
                """
            )
        )
        assert any("watchdog: silence_timeout (30 s) must exceed" in i for i in found)


class TestNodeBindings:
    def test_unknown_sensor_is_reported_at_its_line_with_a_suggestion(self):
        """A node bound to a sensor the site lacks is an error on that node's sensor_id line."""
        found = issues(
            site_with(
                """
                nodes:
                  - {sensor_id: fridge-1.temprature, node_id: "ns=2;s=a"}
                """
            )
        )
        assert found == [
            "line 21: collectors.opcua[0].nodes[0].sensor_id: no sensor 'fridge-1.temprature' "
            "in this site; did you mean 'fridge-1.temperature'?"
        ]

    def test_node_needs_exactly_one_address(self):
        """A node gives its node_id or its browse_path, not both and not neither."""
        found = issues(
            site_with(
                """
                namespace: urn:x
                nodes:
                  - {sensor_id: fridge-1.temperature, node_id: "ns=2;s=a", browse_path: A/B}
                  - {sensor_id: dewar.level}
                """
            )
        )
        assert any("nodes[0].browse_path: give either node_id or browse_path" in i for i in found)
        assert any("nodes[1]: give the node's node_id or its browse_path" in i for i in found)

    def test_bare_browse_names_need_a_namespace(self):
        """Without the connection's ``namespace``, every browse path segment needs an index."""
        found = issues(
            site_with(
                """
                nodes:
                  - {sensor_id: fridge-1.temperature, browse_path: 2:ColdStore/fridge-1}
                """
            )
        )
        assert any("segment 'fridge-1' has no namespace index" in i for i in found)

    def test_unit_must_convert_to_the_channel_unit(self):
        """A node's unit must be convertible to its channel's unit."""
        found = issues(
            site_with(
                """
                nodes:
                  - {sensor_id: dewar.level, node_id: "ns=2;s=a", unit: degF}
                """
            )
        )
        assert any(
            "nodes[0].unit: cannot convert 'degF' to '%'" in i and "the channel's unit is '%'" in i
            for i in found
        )

    def test_a_sensor_or_node_bound_twice_is_refused(self):
        """Two nodes for one sensor, or one node read twice, are configuration mistakes."""
        found = issues(
            site_with(
                """
                nodes:
                  - {sensor_id: fridge-1.temperature, node_id: "ns=2;s=a"}
                  - {sensor_id: fridge-1.temperature, node_id: "ns=2;s=b"}
                """
            )
        )
        assert any("sensor 'fridge-1.temperature' is bound twice" in i for i in found)
        found = issues(
            site_with(
                """
                nodes:
                  - {sensor_id: fridge-1.temperature, node_id: "ns=2;s=a"}
                  - {sensor_id: dewar.level, node_id: "ns=2;s=a"}
                """
            )
        )
        assert any("node 'ns=2;s=a' is read twice" in i for i in found)

    def test_a_leading_objects_segment_is_implied(self):
        """Browse paths start at the Objects folder whether or not they name it."""
        config = OpcUaCollectorConfig.model_validate(
            {
                "id": "gw",
                "endpoint": "opc.tcp://h:4840",
                "namespace": "urn:x",
                "nodes": [{"sensor_id": "a.b", "browse_path": "/Objects/ColdStore/a/b"}],
            }
        )
        assert config.nodes[0].browse_path == ("ColdStore", "a", "b")
        assert config.nodes[0].address == "ColdStore/a/b"
