"""The runners' shared helpers: fetching into the cache, asking over HTTP, start/stop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from devservers._common import StartStop, http_json, http_ok, run_fetch, staging_beside
from devservers.http import LocalHttpServer


class FetchError(Exception):
    """What the tests' runner raises."""


def _writer(target: Path, text: str = "x", code: int = 0) -> list[str]:
    script = f"import pathlib, sys; pathlib.Path({str(target)!r}).write_text({text!r});"
    script += f" print('\\x1b[1mlast words\\x1b[0m'); sys.exit({code})"
    return [sys.executable, "-c", script]


def test_a_fetch_leaves_its_file_and_no_staging_folder(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "tool-1.0"
    with staging_beside(cache) as staging:
        assert staging.parent == cache.parent
        made = staging / "tool"
        run_fetch(_writer(made), produces=made, failed="could not", error=FetchError, timeout=30)
        assert made.read_text() == "x"
    assert list(cache.parent.iterdir()) == []


def test_a_failed_fetch_names_the_command_exit_and_output(tmp_path: Path) -> None:
    made = tmp_path / "tool"
    with pytest.raises(FetchError) as info:
        run_fetch(
            _writer(made, code=3),
            produces=made,
            failed="could not fetch tool 1.0",
            source=" from the net",
            error=FetchError,
            timeout=30,
        )
    message = str(info.value)
    assert message.startswith("could not fetch tool 1.0 from the net (exit 3)\n  command: ")
    assert message.endswith("\nlast words")  # colour codes stripped


def test_a_fetch_that_leaves_no_file_fails(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"could not \(exit 0\)"):
        run_fetch(
            _writer(tmp_path / "other"),
            produces=tmp_path / "tool",
            failed="could not",
            error=FetchError,
            timeout=30,
        )


def test_a_command_that_cannot_run_fails(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent")
    with pytest.raises(FetchError, match=rf"could not: .*\n  command: {missing}$"):
        run_fetch(
            [missing], produces=tmp_path / "x", failed="could not", error=FetchError, timeout=9
        )


class Answers(LocalHttpServer):
    """Answers ``/ok`` with 204, ``/json`` with an object, the rest with an error."""

    def respond(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        if path == "/ok":
            return 204, "text/plain", b""
        if path == "/json":
            return 200, "application/json", json.dumps({"results": [1]}).encode()
        if path == "/refused-in-body":
            return 200, "application/json", json.dumps({"error": "bad query"}).encode()
        if path == "/refused-json":
            return 400, "application/json", json.dumps({"error": "no such table"}).encode()
        return 500, "text/plain", b"oops"


def test_http_helpers_against_a_local_server() -> None:
    with Answers() as server:
        base = f"http://127.0.0.1:{server.port}"
        assert http_ok(f"{base}/ok", 204)
        assert not http_ok(f"{base}/ok", 200)
        assert not http_ok(f"{base}/other")
        ask = {"timeout": 5.0, "error": FetchError, "refused": "refused 'q'"}
        assert http_json(f"{base}/json", **ask) == {"results": [1]}
        with pytest.raises(FetchError, match=r"^refused 'q': bad query$"):
            http_json(f"{base}/refused-in-body", **ask)
        with pytest.raises(FetchError, match=r"^refused 'q': no such table$"):
            http_json(f"{base}/refused-json", **ask)
        with pytest.raises(FetchError, match=r"^refused 'q': Internal Server Error$"):
            http_json(f"{base}/other", **ask)
    assert not http_ok(f"{base}/ok", 204)


def test_start_stop_is_a_context_manager() -> None:
    calls: list[str] = []

    class Server(StartStop):
        def start(self) -> None:
            calls.append("start")

        def stop(self) -> None:
            calls.append("stop")

    with Server() as server:
        assert isinstance(server, Server)
        assert calls == ["start"]
    assert calls == ["start", "stop"]
