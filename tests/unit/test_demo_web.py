"""``envmon demo``'s web app: a taken port is refused before anything starts; the live view
names the app."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from envmon.cli import app
from envmon.commands.demo_view import render
from envmon.config import load_site
from envmon.testing import DEFAULT_T0
from stream.core.evaluator import Evaluator


def test_a_taken_web_port_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app,
            [
                "demo",
                "--duration",
                "1",
                "--summary",
                str(tmp_path / "summary.json"),
                "--workdir",
                str(tmp_path / "work"),
                "--web-port",
                str(port),
            ],
        )
    assert result.exit_code == 2, result.output
    assert f"--web-port {port}: cannot listen on 127.0.0.1:{port}" in result.output
    assert "--no-web" in result.output
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_web_port_out_of_range(port: str) -> None:
    result = CliRunner().invoke(app, ["demo", "--web-port", port])
    assert result.exit_code == 2
    assert "--web-port" in result.output


def test_the_live_view_names_the_app() -> None:
    site = load_site(Path("deploy/examples/site.yaml"))
    evaluator = Evaluator(site.sensors())
    console = Console(width=200, record=True)
    console.print(
        render(
            site,
            now=DEFAULT_T0,
            speed=30,
            states={s: evaluator.state_of(s) for s in evaluator.sensor_ids},
            last={},
            recent=[],
            counters={},
            excursions=0,
            buffered=0,
            app_url="http://127.0.0.1:8000",
        )
    )
    assert "QA app http://127.0.0.1:8000" in console.export_text()
