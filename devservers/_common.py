"""What the server runners share: finding java and go, fetching into the cache, asking over HTTP.

``StartStop`` makes a server a context manager (``start`` on entry, ``stop`` on exit).
``staging_beside`` and ``run_fetch`` build or download a file next to its cache folder, so
an interrupted fetch never looks like a cached one. ``http_ok`` is a readiness probe;
``http_json`` asks for JSON and turns a refusal into the runner's error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")
#: Lines of a failed fetch's output an error shows.
_OUTPUT_LINES: Final = 20


class StartStop:
    """A server used as a context manager: ``start`` on entry, ``stop`` on exit."""

    def start(self) -> None:
        """Start the server."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def find_java() -> str | None:
    """Return the java executable: ``$JAVA_HOME/bin/java``, else the one on PATH, else None."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def find_go() -> str | None:
    """Return the go command: on PATH, else the official ``/usr/local/go``, else None."""
    return shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")


@contextlib.contextmanager
def staging_beside(cache: Path) -> Iterator[Path]:
    """Yield a new temporary folder beside ``cache`` (same file system); remove it after."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_fetch(
    command: list[str],
    *,
    produces: Path,
    failed: str,
    error: type[Exception],
    timeout: float,
    source: str = "",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run a build or download ``command`` that must leave the file ``produces``.

    Raises ``error`` starting with ``failed`` (e.g. "could not build influxd 1.8.10"),
    naming the command, when it cannot run, times out, fails (then with the end of its
    output, ``source`` after ``failed``) or leaves no file.
    """
    shown = " ".join(command)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=cwd
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{failed}: {exc}\n  command: {shown}") from exc
    if done.returncode != 0 or not produces.is_file():
        text = _ANSI.sub("", done.stdout + done.stderr).strip()
        output = "\n".join(text.splitlines()[-_OUTPUT_LINES:])
        raise error(f"{failed}{source} (exit {done.returncode})\n  command: {shown}\n{output}")


def http_ok(url: str, status: int = 200, timeout: float = 1.0) -> bool:
    """Return True if ``GET url`` answers with ``status`` (False when it does not answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == status)
    except (urllib.error.URLError, OSError):
        return False


def http_json(
    request: str | urllib.request.Request,
    *,
    timeout: float,
    error: type[Exception],
    refused: str,
) -> dict[str, Any]:
    """Return the JSON object answering ``request``.

    An error status, or an answer object with an ``error``, raises ``error("<refused>:
    <the server's error or the reason>")``. No answer raises ``urllib.error.URLError`` or
    ``OSError`` as ``urlopen`` does.
    """
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        raise error(f"{refused}: {detail}") from exc
    if "error" in answer:
        raise error(f"{refused}: {answer['error']}")
    return answer
