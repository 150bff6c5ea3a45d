"""``envmon excursions serve``: the QA app as its own process, signed in over real HTTP."""

from __future__ import annotations

import http.cookiejar
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envmon.cli import app

from .serving import serving

pytestmark = pytest.mark.timeout(90)


def fetch(opener: urllib.request.OpenerDirector, request: str | urllib.request.Request) -> object:
    with opener.open(request, timeout=5) as response:
        return json.loads(response.read())


def test_serve_sign_in_and_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    added = runner.invoke(
        app,
        [
            "users",
            "add",
            "vera",
            "--name",
            "Vera Viewer",
            "--role",
            "viewer",
            "--reason",
            "test",
            "--password-stdin",
            "--db",
            url,
        ],
        input="a long password 1\n",
    )
    assert added.exit_code == 0, added.output
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with serving(url, tmp_path / "serve.log") as (root, server):
        base = f"{root}/api/v1"
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(opener, f"{base}/me")
        assert refused.value.code == 401
        refused.value.close()
        request = urllib.request.Request(
            f"{base}/session",
            data=json.dumps({"username": "vera", "password": "a long password 1"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        signed = fetch(opener, request)
        assert isinstance(signed, dict)
        assert signed["role"] == "viewer"
        me = fetch(opener, f"{base}/me")
        assert isinstance(me, dict)
        assert me.pop("csrf_token")  # what API clients send back as X-CSRF-Token
        assert me == {"username": "vera", "full_name": "Vera Viewer", "role": "viewer"}
        listing = fetch(opener, f"{base}/excursions")
        assert isinstance(listing, dict)
        assert listing["total"] == 0
    # uvicorn shuts down gracefully, then re-raises the signal (exit status -SIGTERM).
    assert server.returncode in (0, -signal.SIGTERM)
    assert "Finished server process" in (tmp_path / "serve.log").read_text()


def test_serve_refuses_an_unmigrated_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    result = CliRunner(
        env={"ENVMON_ALERT_LINK_SECRET": "test-link-secret-of-32-characters"}
    ).invoke(app, ["excursions", "serve", "--db", url])
    assert result.exit_code == 2
    assert "run envmon db upgrade first" in result.output
