"""``dashboards push`` against a fake of Grafana's HTTP API (devservers/grafana.py).

The tree is written here (two dashboards, one data source), not by the generator, so these
tests say what push does with any tree of that shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from dashboards.push import (
    GrafanaError,
    PushInputError,
    PushReport,
    expand,
    push_tree,
    read_tree,
)
from devservers.grafana import FakeGrafana
from envmon.cli import app
from envmon.netutil import free_port

TOKEN = "glsa_testtoken_3f9a1c"
INFLUX_SECRET = "influx-secret-7c1d"
ENV = {"ENVMON_INFLUX_TOKEN": INFLUX_SECRET}
FOLDER_UID = "test-site-folder"
FOLDER_TITLE = "envmon — Test site"
DS_UID = "envmon-influxdb"
OVERVIEW = "test-site-overview"
AREA = "test-site-area-cold-room"
ROOT = Path(__file__).resolve().parents[3]


def dashboard(uid: str, title: str, measurement: str) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "editable": False,
        "schemaVersion": 41,
        "tags": ["envmon"],
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "Europe/Amsterdam",
        "panels": [
            {
                "id": 1,
                "type": "timeseries",
                "title": "Temperature",
                "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                "datasource": {"type": "influxdb", "uid": DS_UID},
                "targets": [
                    {
                        "refId": "A",
                        "rawQuery": True,
                        "query": f'SELECT mean("value") FROM "{measurement}" WHERE $timeFilter',
                    }
                ],
            }
        ],
    }


def write_tree(out: Path) -> Path:
    datasources = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "envmon InfluxDB",
                "uid": DS_UID,
                "type": "influxdb",
                "access": "proxy",
                "url": "http://influxdb:8086",
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    "dbName": "envmon",
                    "httpMode": "POST",
                    "version": "InfluxQL",
                    "httpHeaderName1": "Authorization",
                },
                "secureJsonData": {"httpHeaderValue1": "Token $__env{ENVMON_INFLUX_TOKEN}"},
            }
        ],
    }
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "envmon",
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": "/var/lib/grafana/dashboards/envmon"},
            }
        ],
    }
    files = {
        "provisioning/datasources/envmon.yaml": yaml.safe_dump(datasources, sort_keys=False),
        "provisioning/dashboards/envmon.yaml": yaml.safe_dump(provider, sort_keys=False),
        f"dashboards/{OVERVIEW}.json": json.dumps(
            dashboard(OVERVIEW, "Test site — overview", "temperature"), indent=2
        ),
        f"dashboards/{AREA}.json": json.dumps(
            dashboard(AREA, "Test site — cold room", "cold_room"), indent=2
        ),
    }
    for relative, text in files.items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_text(text, encoding="utf-8")
    return out


def model_file(tree: Path, uid: str) -> Path:
    return tree / "dashboards" / f"{uid}.json"


def change_model(tree: Path, which: str, **changes: Any) -> None:
    path = model_file(tree, which)
    model = json.loads(path.read_text(encoding="utf-8"))
    model.update(changes)
    path.write_text(json.dumps(model), encoding="utf-8")


def outcomes(report: PushReport) -> dict[tuple[str, str], str]:
    return {(item.kind, item.uid): item.outcome for item in report.items}


@pytest.fixture
def grafana():
    with FakeGrafana(TOKEN) as server:
        yield server


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "out")


def push(tree: Path, grafana: FakeGrafana, **options: Any) -> PushReport:
    options.setdefault("env", ENV)
    options.setdefault("timeout_s", 5.0)
    return push_tree(tree, grafana.url, TOKEN, **options)


class TestFirstPush:
    def test_creates_the_folder_the_data_source_and_every_dashboard(self, tree, grafana):
        """A first push creates the folder, the data source and both dashboards in it."""
        report = push(tree, grafana)

        assert outcomes(report) == {
            ("folder", FOLDER_UID): "created",
            ("datasource", DS_UID): "created",
            ("dashboard", AREA): "created",
            ("dashboard", OVERVIEW): "created",
        }
        assert report.changed
        assert report.grafana_version == "11.6.0"
        assert report.finished_at.utcoffset() == UTC.utcoffset(None)
        assert grafana.folders[FOLDER_UID]["title"] == FOLDER_TITLE
        source = grafana.datasources[DS_UID]
        assert source["jsonData"]["dbName"] == "envmon"
        assert source["isDefault"] is True
        assert grafana.secure_values[DS_UID] == {"httpHeaderValue1": f"Token {INFLUX_SECRET}"}
        for uid in (OVERVIEW, AREA):
            stored = grafana.dashboards[uid]
            assert stored.folder_uid == FOLDER_UID
            sent = json.loads(model_file(tree, uid).read_text(encoding="utf-8"))
            assert {k: v for k, v in stored.model.items() if k not in {"id", "version"}} == sent

    def test_writes_are_the_documented_calls_with_the_bearer_token(self, tree, grafana):
        """Each write is one documented call, dashboards saved with overwrite and folderUid."""
        push(tree, grafana)

        writes = [(r.method, r.path) for r in grafana.writes]
        assert writes == [
            ("POST", "/api/folders"),
            ("POST", "/api/datasources"),
            ("POST", "/api/dashboards/db"),
            ("POST", "/api/dashboards/db"),
        ]
        saves = [r.json for r in grafana.writes if r.path == "/api/dashboards/db"]
        assert {save["dashboard"]["uid"] for save in saves} == {OVERVIEW, AREA}
        assert all(save["overwrite"] is True for save in saves)
        assert all(save["folderUid"] == FOLDER_UID for save in saves)
        assert all("id" not in save["dashboard"] for save in saves)
        created = grafana.writes[1].json
        assert "editable" not in created
        assert created["secureJsonData"] == {"httpHeaderValue1": f"Token {INFLUX_SECRET}"}
        api_calls = [r for r in grafana.requests if r.path != "/api/health"]
        assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in api_calls)


class TestIdempotence:
    def test_a_second_push_sends_no_write_request(self, tree, grafana):
        """Pushing the same tree again only reads: every item is unchanged."""
        push(tree, grafana)
        grafana.clear_requests()

        report = push(tree, grafana)

        assert grafana.writes == []
        assert grafana.requests, "the second push must still compare with Grafana"
        assert not report.changed
        assert set(outcomes(report).values()) == {"unchanged"}

    def test_a_changed_dashboard_is_updated_alone(self, tree, grafana):
        """Only the dashboard whose file changed is saved again, at the next version."""
        push(tree, grafana)
        change_model(tree, AREA, panels=[], title="Test site — cold room (renamed)")
        grafana.clear_requests()

        report = push(tree, grafana)

        assert [(r.method, r.path) for r in grafana.writes] == [("POST", "/api/dashboards/db")]
        assert grafana.writes[0].json["dashboard"]["uid"] == AREA
        assert outcomes(report)[("dashboard", AREA)] == "updated"
        assert outcomes(report)[("dashboard", OVERVIEW)] == "unchanged"
        (item,) = [i for i in report.items if i.uid == AREA]
        assert item.detail == "changed: panels, title; version 2"
        assert grafana.dashboards[AREA].model["version"] == 2
        grafana.clear_requests()
        push(tree, grafana)
        assert grafana.writes == []

    def test_a_dashboard_edited_in_grafana_is_restored(self, tree, grafana):
        """A change made in Grafana (a UI save) differs from the tree, so push saves it back."""
        push(tree, grafana)
        grafana.edit_dashboard(OVERVIEW, title="edited in the UI", refresh="5s")

        report = push(tree, grafana)

        assert outcomes(report)[("dashboard", OVERVIEW)] == "updated"
        stored = grafana.dashboards[OVERVIEW].model
        assert stored["title"] == "Test site — overview"
        assert "refresh" not in stored

    def test_a_dashboard_moved_out_of_the_folder_is_moved_back(self, tree, grafana):
        """A dashboard in another folder is saved into the provider's folder again."""
        push(tree, grafana)
        grafana.move_dashboard(AREA, "")

        report = push(tree, grafana)

        (item,) = [i for i in report.items if i.uid == AREA]
        assert item.outcome == "updated"
        assert "moved from folder (General)" in item.detail
        assert grafana.dashboards[AREA].folder_uid == FOLDER_UID

    def test_a_changed_data_source_field_is_updated_and_its_secret_kept(self, tree, grafana):
        """A non-secret field that differs is put back without sending the secure values."""
        push(tree, grafana)
        grafana.datasources[DS_UID]["url"] = "http://elsewhere:8086"
        grafana.clear_requests()

        report = push(tree, grafana)

        (put,) = grafana.writes
        assert (put.method, put.path) == ("PUT", f"/api/datasources/uid/{DS_UID}")
        assert "secureJsonData" not in put.json
        assert grafana.datasources[DS_UID]["url"] == "http://influxdb:8086"
        assert grafana.secure_values[DS_UID] == {"httpHeaderValue1": f"Token {INFLUX_SECRET}"}
        (item,) = [i for i in report.items if i.kind == "datasource"]
        assert (item.outcome, item.detail) == ("updated", "changed: url")

    def test_a_new_secret_is_sent_only_when_asked(self, tree, grafana):
        """Grafana cannot show a secure value: a changed one is sent with update_secrets only."""
        push(tree, grafana)
        grafana.clear_requests()
        rotated = {"ENVMON_INFLUX_TOKEN": "rotated-secret-99"}

        push(tree, grafana, env=rotated)
        assert grafana.writes == []

        report = push(tree, grafana, env=rotated, update_secrets=True)
        (put,) = grafana.writes
        assert put.json["secureJsonData"] == {"httpHeaderValue1": "Token rotated-secret-99"}
        assert grafana.secure_values[DS_UID]["httpHeaderValue1"] == "Token rotated-secret-99"
        assert outcomes(report)[("datasource", DS_UID)] == "updated"

    def test_a_secure_field_grafana_lacks_is_set(self, tree, grafana):
        """A secure field Grafana says is not set is sent, alone."""
        push(tree, grafana)
        grafana.secure_values[DS_UID].clear()
        grafana.datasources[DS_UID]["secureJsonFields"] = {}
        grafana.clear_requests()

        push(tree, grafana)

        (put,) = grafana.writes
        assert put.json["secureJsonData"] == {"httpHeaderValue1": f"Token {INFLUX_SECRET}"}

    def test_a_folder_that_exists_is_left(self, tree, grafana):
        """An existing folder is not created again, even with another title."""
        push(tree, grafana)
        grafana.folders[FOLDER_UID]["title"] = "Renamed by an admin"
        grafana.clear_requests()

        report = push(tree, grafana)

        assert grafana.writes == []
        (item,) = [i for i in report.items if i.kind == "folder"]
        assert item.outcome == "unchanged"
        assert "Renamed by an admin" in item.detail


class TestRefusedBeforeAnyRequest:
    def test_a_missing_variable_is_named(self, tree, grafana):
        """A variable the data source needs and the environment lacks stops the push."""
        with pytest.raises(PushInputError, match="ENVMON_INFLUX_TOKEN is not set") as caught:
            push(tree, grafana, env={"OTHER": "value-not-to-show"})
        assert "datasources/envmon.yaml" in str(caught.value)
        assert "value-not-to-show" not in str(caught.value)
        assert grafana.requests == []

    @pytest.mark.parametrize(
        ("damage", "named"),
        [
            (lambda t: (t / "provisioning/dashboards/envmon.yaml").unlink(), "dashboards/envmon"),
            (lambda t: (t / "provisioning/datasources/envmon.yaml").unlink(), "datasources/envm"),
            (
                lambda t: (t / "provisioning/datasources/envmon.yaml").write_text(
                    "apiVersion: 1\ndatasources:\n  - name: x\n    password: hunter2: [\n"
                ),
                "datasources/envmon.yaml: not valid YAML at line 4",
            ),
            (lambda t: model_file(t, AREA).write_text("{not json"), f"{AREA}.json: not valid"),
            (lambda t: change_model(t, AREA, uid="a/b"), f"{AREA}.json: uid: must be 1 to 40"),
            (lambda t: change_model(t, AREA, uid=OVERVIEW), f"uid {OVERVIEW} is also the uid of"),
            (lambda t: change_model(t, AREA, title="  "), f"{AREA}.json: title"),
            (
                lambda t: (t / "provisioning/dashboards/envmon.yaml").write_text(
                    "apiVersion: 1\nproviders: []\n"
                ),
                "exactly one provider",
            ),
            (
                lambda t: (t / "provisioning/datasources/envmon.yaml").write_text(
                    "apiVersion: 1\ndatasources:\n  - {name: x, uid: x, type: t, passwd: y}\n"
                ),
                "unknown field(s) passwd",
            ),
            (
                lambda t: [p.unlink() for p in (t / "dashboards").glob("*.json")],
                "no dashboards",
            ),
        ],
    )
    def test_a_missing_or_malformed_file_is_named(self, tree, grafana, damage, named):
        """Each problem of the tree is refused with the file named, nothing sent."""
        damage(tree)
        with pytest.raises(PushInputError) as caught:
            push(tree, grafana)
        assert named in str(caught.value)
        assert "hunter2" not in str(caught.value)
        assert grafana.requests == []

    @pytest.mark.parametrize(
        ("url", "token", "reason"),
        [
            ("http://admin:secret@127.0.0.1:3000", TOKEN, "must not hold credentials"),
            ("ftp://127.0.0.1", TOKEN, "http:// or https://"),
            ("http://127.0.0.1:3000", "two words", "spaces or control characters"),
            ("http://127.0.0.1:3000", "  ", "no Grafana token"),
        ],
    )
    def test_an_unusable_url_or_token_is_refused(self, tree, url, token, reason):
        """A URL with credentials or another scheme, or a malformed token, is refused."""
        with pytest.raises(PushInputError, match=reason) as caught:
            push_tree(tree, url, token, env=ENV)
        assert "secret" not in str(caught.value)
        assert "two words" not in str(caught.value)


class TestExpansion:
    def test_the_forms_grafana_expands(self):
        """$__env{NAME}, ${NAME} and $NAME are expanded and $$ is a dollar sign."""
        env = {"HOST": "influx", "PORT": "8086", "DB": "envmon"}
        text, used = expand("http://$__env{HOST}:${PORT}/$DB?a=$$b", env, where="w")
        assert text == "http://influx:8086/envmon?a=$b"
        assert used == ["influx", "8086", "envmon"]

    def test_a_value_put_in_is_not_expanded_again(self):
        """A secret holding a dollar sign is sent as it is."""
        assert expand("$__env{P}", {"P": "pa$word"}, where="w")[0] == "pa$word"

    @pytest.mark.parametrize("text", ["$__file{/run/secrets/x}", "$__vault{kv:x}"])
    def test_other_providers_are_refused(self, text):
        """Push reads no files and no vault: only variables."""
        with pytest.raises(PushInputError, match="not supported by push"):
            expand(text, {}, where="w")

    def test_variables_in_plain_fields_are_expanded(self, tree):
        """Every text of a data source entry is expanded, nested ones too."""
        path = tree / "provisioning/datasources/envmon.yaml"
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        document["datasources"][0]["url"] = "http://${INFLUX_HOST}:8086"
        document["datasources"][0]["jsonData"]["dbName"] = "$INFLUX_DB"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")

        read = read_tree(tree, {**ENV, "INFLUX_HOST": "influx.lab", "INFLUX_DB": "site1"})

        (source,) = read.datasources
        assert source.fields["url"] == "http://influx.lab:8086"
        assert source.fields["jsonData"]["dbName"] == "site1"


class TestGrafanaErrors:
    def test_a_bad_token_gives_grafanas_401_message(self, tree, grafana):
        """A token Grafana does not take is a 401, with its message, and the token unsaid."""
        with pytest.raises(GrafanaError) as caught:
            push_tree(tree, grafana.url, "glsa_wrong_token", env=ENV)
        message = str(caught.value)
        assert message.startswith(f"folder {FOLDER_UID} ")
        assert "401 Unauthorized: Invalid API key" in message
        assert "glsa_wrong_token" not in message
        assert caught.value.done == ()

    @pytest.mark.parametrize(
        ("status", "path", "grafana_says", "item"),
        [
            (
                403,
                "/api/datasources",
                "You'll need additional permissions",
                f"data source {DS_UID}",
            ),
            (
                412,
                "/api/dashboards/db",
                "The dashboard has been changed by someone else",
                "dashboard test-site-area-cold-room",
            ),
            (500, "/api/folders", "Failed to create folder", f"folder {FOLDER_UID}"),
            (503, "/api/health", "database is failing", "Grafana at http://127.0.0.1"),
        ],
    )
    def test_an_error_answer_names_the_item_and_grafanas_message(
        self, tree, grafana, status, path, grafana_says, item
    ):
        """An error answer becomes one line: the item, the status, Grafana's message."""
        grafana.fail(status, message=grafana_says, path=path)
        with pytest.raises(GrafanaError) as caught:
            push(tree, grafana)
        message = str(caught.value)
        assert message.startswith(item)
        assert f"answered {status} " in message
        assert grafana_says in message
        assert "\n" not in message

    def test_what_was_done_before_an_error_is_kept(self, tree, grafana):
        """The error lists what the push had changed before it."""
        grafana.fail(500, message="boom", path="/api/dashboards/db")
        with pytest.raises(GrafanaError) as caught:
            push(tree, grafana)
        done = {(item.kind, item.outcome) for item in caught.value.done}
        assert done == {("folder", "created"), ("datasource", "created")}

    def test_a_body_that_is_not_json_gives_one_bounded_line(self, tree, grafana):
        """A proxy's HTML error page is quoted on one line, cut short."""
        page = b"<html>\n<body>\n<h1>502 Bad Gateway</h1>\n" + b"x" * 5000 + b"\n</body></html>"
        grafana.fail(502, body=page, content_type="text/html", path="/api/folders")
        with pytest.raises(GrafanaError) as caught:
            push(tree, grafana)
        message = str(caught.value)
        assert "answered 502 Bad Gateway: <html> <body> <h1>502 Bad Gateway</h1>" in message
        assert "\n" not in message
        assert len(message) < 400

    def test_a_success_that_is_not_json_is_an_error(self, tree, grafana):
        """A 200 whose body is not JSON (a login page, say) is refused."""
        grafana.fail(200, body=b"<html>login</html>", content_type="application/json")
        with pytest.raises(GrafanaError, match="answer is not JSON"):
            push(tree, grafana)

    def test_secrets_grafana_echoes_are_not_repeated(self, tree, grafana):
        """Secure values and the token in Grafana's message are replaced by ***."""
        echo = f"invalid header value 'Token {INFLUX_SECRET}' (auth Bearer {TOKEN})"
        grafana.fail(400, message=echo, path="/api/datasources")
        with pytest.raises(GrafanaError) as caught:
            push(tree, grafana)
        message = str(caught.value)
        assert INFLUX_SECRET not in message
        assert TOKEN not in message
        assert "invalid header value '***' (auth Bearer ***)" in message

    def test_no_answer_in_time_is_a_timeout(self, tree, grafana):
        """A Grafana that does not answer within the timeout is named with the timeout."""
        grafana.hang(3.0, path="/api/folders")
        with pytest.raises(
            GrafanaError, match=r"no answer from http://127\.0\.0\.1:\d+ within 0\.5 s"
        ):
            push(tree, grafana, timeout_s=0.5)

    @pytest.mark.parametrize("suffix", ["/grafana", "/grafana/"])
    def test_a_sub_path_is_kept(self, tree, grafana, suffix):
        """A Grafana served under a sub-path is asked there (and this fake is not)."""
        with pytest.raises(GrafanaError, match="answered 404 Not Found: Not found"):
            push_tree(tree, grafana.url + suffix, TOKEN, env=ENV)
        assert [r.path for r in grafana.requests] == ["/grafana/api/health"]

    def test_a_server_that_is_down_is_named(self, tree):
        """Nothing listening at the URL: the connection is refused, said plainly."""
        url = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(
            GrafanaError, match=r"cannot connect to .*: Connection refused"
        ) as caught:
            push_tree(tree, url, TOKEN, env=ENV, timeout_s=2.0)
        assert str(caught.value).startswith(f"Grafana at {url}: ")

    def test_a_provisioned_data_source_is_not_updated(self, tree, grafana):
        """A data source Grafana provisions from files (read-only) is refused, not put."""
        push(tree, grafana)
        grafana.datasources[DS_UID].update(readOnly=True, url="http://from-a-file:8086")
        grafana.clear_requests()
        with pytest.raises(GrafanaError, match=f"data source {DS_UID} .*provisions it from"):
            push(tree, grafana)
        assert grafana.writes == []

    def test_a_provisioned_dashboard_is_not_overwritten(self, tree, grafana):
        """A dashboard Grafana provisions from files is refused without trying to save it."""
        other = json.loads(model_file(tree, AREA).read_text(encoding="utf-8"))
        grafana.seed_dashboard({**other, "title": "old"}, folder_uid=FOLDER_UID, provisioned=True)
        with pytest.raises(GrafanaError, match="provisions it from files"):
            push(tree, grafana)
        saved = [r.json["dashboard"]["uid"] for r in grafana.writes if "dashboards" in r.path]
        assert AREA not in saved


def one_line(text: str) -> str:
    return " ".join(text.split())


def site_file(folder: Path, grafana_url: str | None) -> Path:
    """Write the example site with ``dashboards.grafana_url`` set to ``grafana_url`` (or none)."""
    config = yaml.safe_load((ROOT / "deploy/examples/site.yaml").read_text(encoding="utf-8"))
    section = config.setdefault("dashboards", {})
    section.pop("grafana_url", None)
    if grafana_url is not None:
        section["grafana_url"] = grafana_url
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def run(tree: Path, *args: str, env: Mapping[str, str | None]) -> Result:
    return CliRunner().invoke(
        app, ["dashboards", "push", "--from", str(tree), *args], env={"COLUMNS": "200", **env}
    )


class TestCommand:
    def test_push_then_nothing_changed(self, tree, grafana):
        """The command reports what it created, then that nothing changed."""
        env = {"GRAFANA_TOKEN": TOKEN, **ENV}
        first = run(tree, "--url", grafana.url, env=env)
        assert first.exit_code == 0, first.output
        assert "4 created, 0 updated, 0 unchanged" in first.output
        assert OVERVIEW in first.output

        again = run(tree, "--url", grafana.url, env=env)
        assert again.exit_code == 0, again.output
        assert "nothing changed (1 folder, 1 data source, 2 dashboards as in the tree)" in (
            again.output
        )

    def test_the_token_variable_can_be_named(self, tree, grafana):
        """--token-env names the variable that holds the token."""
        result = run(
            tree, "--url", grafana.url, "--token-env", "MY_TOKEN", env={"MY_TOKEN": TOKEN, **ENV}
        )
        assert result.exit_code == 0, result.output

    @pytest.mark.parametrize(
        ("script", "token", "said"),
        [
            (None, "glsa_wrong_token", "answered 401 Unauthorized: Invalid API key"),
            ((412, "/api/dashboards/db"), TOKEN, "answered 412 Precondition Failed: no"),
            ((500, "/api/datasources"), TOKEN, "answered 500 Internal Server Error: no"),
        ],
    )
    def test_grafana_errors_exit_1_with_the_message(self, tree, grafana, script, token, said):
        """Grafana's refusal gives exit 1 and its message on stderr, no traceback."""
        if script is not None:
            grafana.fail(script[0], message="no", path=script[1])
        result = run(tree, "--url", grafana.url, env={"GRAFANA_TOKEN": token, **ENV})
        assert result.exit_code == 1, result.output
        assert said in one_line(result.stderr)
        assert result.stderr.startswith("push failed: ")
        assert "Traceback" not in result.output
        assert "glsa_wrong_token" not in result.output

    def test_a_server_that_is_down_exits_1(self, tree):
        """No Grafana at the URL: exit 1 and a plain message."""
        url = f"http://127.0.0.1:{free_port()}"
        result = run(tree, "--url", url, env={"GRAFANA_TOKEN": TOKEN, **ENV})
        assert result.exit_code == 1, result.output
        assert "Connection refused" in one_line(result.stderr)
        assert "Nothing was changed." in result.stdout
        assert "Traceback" not in result.output

    @pytest.mark.parametrize(
        ("env", "said"),
        [
            ({"GRAFANA_TOKEN": TOKEN, "ENVMON_INFLUX_TOKEN": None}, "ENVMON_INFLUX_TOKEN is not"),
            ({"GRAFANA_TOKEN": None, **ENV}, "variable GRAFANA_TOKEN is not set"),
        ],
    )
    def test_unusable_input_exits_2_before_any_request(self, tree, grafana, env, said):
        """A missing variable or token exits 2 and Grafana hears nothing."""
        result = run(tree, "--url", grafana.url, env=env)
        assert result.exit_code == 2, result.output
        assert said in one_line(result.stderr)
        assert "Traceback" not in result.output
        assert grafana.requests == []

    def test_the_url_comes_from_the_site_file(self, tree, grafana, tmp_path):
        """Without --url the site's dashboards.grafana_url is used."""
        site = site_file(tmp_path, grafana.url)
        result = run(tree, "--site", str(site), env={"GRAFANA_TOKEN": TOKEN, **ENV})
        assert result.exit_code == 0, result.output
        assert len(grafana.dashboards) == 2

    def test_no_url_anywhere_is_refused(self, tree, tmp_path):
        """No --url and a site without grafana_url: exit 2 saying how to give one."""
        site = site_file(tmp_path, None)
        result = run(tree, "--site", str(site), env={"GRAFANA_TOKEN": TOKEN, **ENV})
        assert result.exit_code == 2, result.output
        assert "no Grafana URL: give --url" in one_line(result.stderr)
