"""``envmon demo``'s web app options: a taken port is refused before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envmon.cli import app


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
