"""The one version pin of each server, read from ``deploy/versions.env``; where builds are cached.

The shell scripts in ``deploy/scripts/`` source the same file, so a version changes in one
place. Build caches live in ``$ENVMON_CACHE_DIR``, else ``$XDG_CACHE_HOME/envmon``, else
``~/.cache/envmon``, one folder per server and version.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
DEPLOY: Final = REPO_ROOT / "deploy"
VERSIONS_FILE: Final = DEPLOY / "versions.env"

_LINE: Final = re.compile(r"^([A-Z][A-Z0-9_]*)=([^\s#]+)\s*$")


@cache
def pins(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Return ``NAME_VERSION`` → version from ``deploy/versions.env``."""
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = _LINE.match(text)
        if match is None:
            raise ValueError(f"{path}:{number}: expected NAME=VERSION, got {text[:60]!r}")
        found[match.group(1)] = match.group(2)
    return found


def version(server: str) -> str:
    """Return the pinned version of ``server`` (``kafka``, ``questdb``, ``influxdb``, …)."""
    key = f"{server.upper()}_VERSION"
    try:
        return pins()[key]
    except KeyError:
        raise KeyError(f"{VERSIONS_FILE} pins no {key}") from None


def cache_root() -> Path:
    """Return the folder every server build is cached in."""
    root = os.environ.get("ENVMON_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "envmon"


def cache_dir(server: str, pinned: str | None = None) -> Path:
    """Return the cache folder of one server version (the pinned one by default)."""
    return cache_root() / f"{server}-{pinned or version(server)}"
