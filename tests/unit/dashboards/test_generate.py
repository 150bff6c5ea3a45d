"""The generated Grafana tree: Grafana's schemas, invariants, golden files, the command."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dashboards import naming
from dashboards.influxql import MACROS, ident, literal, regex_of
from dashboards.provisioning import build_tree
from envmon.cli import app
from envmon.config import load_site
from excursions.policy import QAState
from tests.unit.dashboards.grafana_schema import problems

ROOT = Path(__file__).resolve().parents[3]
SITE = ROOT / "deploy" / "examples" / "site.yaml"
GOLDEN = Path(__file__).parent / "golden"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)[^}]*\}")
#: Alias patterns of Grafana's InfluxDB source (only in ``alias``, never in a query).
ALIAS_PATTERNS = re.compile(r"^(\$tag_\w+|\$col|[^$])*$")


@pytest.fixture(scope="module")
def tree():
    return build_tree(load_site(SITE), influx_url="http://influxdb.example:8086")


def targets(model: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (panel title, target) of a dashboard, and its annotation targets."""
    out = [(p.get("title", ""), t) for p in model["panels"] for t in p.get("targets", [])]
    out += [(a["name"], a["target"]) for a in model["annotations"]["list"] if "target" in a]
    return out


def test_the_example_site_gives_every_kind_of_dashboard(tree):
    site = load_site(SITE)
    uids = {model["uid"] for model in tree.dashboards.values()}
    expected = {naming.uid(site.site_id, kind) for kind in ("overview", "cold", "particles")}
    expected |= {naming.uid(site.site_id, naming.AREA, area.id) for area in site.areas}
    assert uids == expected


def test_every_dashboard_is_valid_by_grafanas_schemas(tree):
    for name, model in tree.dashboards.items():
        assert problems(model) == [], name


def test_the_schema_check_can_fail(tree):
    model = json.loads(json.dumps(next(iter(tree.dashboards.values()))))
    model["panels"][0]["gridPos"]["w"] = "wide"
    model["refresh"] = 10
    del model["panels"][-1]["options"]["showHeader"]  # the table kind's own schema
    found = problems(model)
    assert any(p.startswith("panels/0/gridPos/w") for p in found)
    assert any(p.startswith("refresh") for p in found)
    assert any("showHeader" in p for p in found)


def test_uids_stable_unique_and_short(tree):
    uids = [model["uid"] for model in tree.dashboards.values()]
    assert len(set(uids)) == len(uids)
    assert all(len(uid) <= naming.MAX_UID for uid in uids)
    again = build_tree(load_site(SITE), influx_url="http://other:8086")
    assert again.dashboards == tree.dashboards  # the data source's URL is not in them


def test_long_ids_keep_kind_and_area_readable():
    uid = naming.uid("a-very-long-site-name-for-a-cleanroom-suite", naming.AREA, "cold-store")
    assert len(uid) <= naming.MAX_UID
    assert uid.endswith("-area-cold-store")
    other = naming.uid("a-very-long-site-name-for-a-cleanroom-suitf", naming.AREA, "cold-store")
    assert other != uid
    long_area = naming.uid("site", naming.AREA, "x" * 60)
    assert len(long_area) <= naming.MAX_UID


def test_panel_ids_and_ref_ids_unique(tree):
    for name, model in tree.dashboards.items():
        ids = [p["id"] for p in model["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in model["panels"]:
            refs = [t["refId"] for t in panel.get("targets", [])]
            assert len(set(refs)) == len(refs), (name, panel["title"])


def test_every_data_source_is_the_provisioned_one(tree):
    provisioned = {d["uid"] for d in tree.datasources["datasources"]}
    for name, model in tree.dashboards.items():
        for panel in model["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in provisioned, (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in provisioned
        for annotation in model["annotations"]["list"]:
            assert annotation["datasource"]["uid"] in provisioned


def test_queries_use_only_grafanas_macros_and_the_dashboards_variables(tree):
    for name, model in tree.dashboards.items():
        variables = {v["name"] for v in model["templating"]["list"]}
        allowed = {m.strip("${}") for m in MACROS} | variables
        for title, target in targets(model):
            used = {a or b for a, b in VARIABLE.findall(target["query"])}
            assert used <= allowed, (name, title, used - allowed)
            assert ALIAS_PATTERNS.match(target.get("alias", "")), (name, title)


def test_dashboards_are_read_only_and_in_the_site_zone(tree):
    for model in tree.dashboards.values():
        assert model["editable"] is False
        assert model["timezone"] == "Europe/Amsterdam"
        assert model["schemaVersion"] >= 39


def test_scheduled_room_trend_draws_the_limits_series(tree):
    site = load_site(SITE)
    area = tree.dashboards[f"{naming.uid(site.site_id, naming.AREA, 'grade-b-room')}.json"]
    ids = naming.channel_panel_ids(site.sensors())
    trend = next(p for p in area["panels"] if p["id"] == ids["pc-grade-b.particles_0_5um"])
    limits = next(t["query"] for t in trend["targets"] if t["refId"] == "B")
    assert 'FROM "limits"' in limits
    assert "fill(previous)" in limits
    assert "at rest / in operation" in trend["description"]
    value = next(t["query"] for t in trend["targets"] if t["refId"] == "A")
    assert 'max("value")' in value  # particles: peaks are never averaged away


def test_provisioning_files(tree):
    (source,) = tree.datasources["datasources"]
    assert source["uid"] == naming.INFLUX_DATASOURCE_UID
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token $__env{ENVMON_INFLUX_TOKEN}"
    (provider,) = tree.provider["providers"]
    assert provider["disableDeletion"] is True
    assert provider["allowUiUpdates"] is False
    assert provider["type"] == "file"


def test_record_store_source_when_configured(tmp_path):
    data = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    data["dashboards"] = {
        "grafana_url": "https://grafana.example",
        "record_store": {"host": "db.example:5432", "password_env": "GRAFANA_DB"},
    }
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    tree = build_tree(load_site(site_file), influx_url="http://influx:8086")
    records = tree.datasources["datasources"][1]
    assert records["uid"] == naming.RECORDS_DATASOURCE_UID
    assert records["secureJsonData"] == {"password": "$__env{GRAFANA_DB}"}
    overview = tree.dashboards[f"{naming.uid(load_site(site_file).site_id, naming.OVERVIEW)}.json"]
    assert problems(overview) == []
    (panel,) = [p for p in overview["panels"] if p["title"].startswith("Excursion records QA")]
    assert panel["datasource"]["uid"] == records["uid"]
    assert panel["targets"][0]["rawSql"].startswith("SELECT")
    (mapping,) = next(
        o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "QA state"
    )["properties"][0]["value"]
    assert set(mapping["options"]) == set(QAState) - {QAState.CLOSED}  # not closed


def test_golden_files(tree, request):
    files = tree.files()
    if request.config.getoption("--update-golden"):
        for old in GOLDEN.rglob("*"):
            if old.is_file():
                old.unlink()
        for relative, text in files.items():
            (GOLDEN / relative).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / relative).write_text(text, encoding="utf-8")
    stored = {p.relative_to(GOLDEN): p.read_text(encoding="utf-8") for p in GOLDEN.rglob("*.*")}
    assert sorted(stored) == sorted(files), "run pytest --update-golden after a deliberate change"
    for relative, text in files.items():
        assert stored[relative] == text, f"{relative} differs: pytest --update-golden if deliberate"


class TestQuoting:
    def test_identifier_and_literal_cannot_break_out(self):
        assert ident('a"b\\') == '"a\\"b\\\\"'
        assert literal("it's\\") == "'it\\'s\\\\'"

    def test_regex_matches_exactly_the_values(self):
        pattern = regex_of(["a.b", "c/d"])
        assert pattern == "/^(a\\.b|c\\/d)$/"


def test_generate_command_writes_the_tree_and_removes_stale_dashboards(tmp_path):
    out = tmp_path / "grafana"
    (out / "dashboards").mkdir(parents=True)
    (out / "dashboards" / "old-dashboard.json").write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["dashboards", "generate", "--site", str(SITE), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert not (out / "dashboards" / "old-dashboard.json").exists()
    sources = yaml.safe_load((out / "provisioning" / "datasources" / "envmon.yaml").read_text())
    assert sources["datasources"][0]["type"] == "influxdb"
    assert len(list((out / "dashboards").glob("*.json"))) == 8


def test_generate_command_refuses_a_bad_site_cleanly(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("site: {name: x}\nareas: []\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["dashboards", "generate", "--site", str(bad), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "areas" in result.output
    assert not (tmp_path / "o").exists()
