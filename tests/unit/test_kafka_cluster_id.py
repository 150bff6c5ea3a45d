"""KRaft cluster ids that the storage tool accepts."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from devservers import kafka as kafka_broker
from devservers.kafka import new_cluster_id


def test_cluster_id_is_a_kafka_uuid() -> None:
    """22 characters of URL-safe base64 encoding 16 bytes."""
    text = new_cluster_id()
    assert len(text) == 22
    assert len(base64.urlsafe_b64decode(text + "==")) == 16


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id starting with '-' would be parsed as an option by kafka-storage: drawn again."""
    dash_first = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    draws = iter([dash_first, uuid.UUID(int=1)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))
    assert new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAQ"


SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "scripts" / "kafka.sh"


def _script_cluster_id(tmp_path: Path, first_draw: bytes | None = None) -> tuple[str, int]:
    """Run ``kafka.sh cluster-id``; with ``first_draw``, the first 16 random bytes are those.

    A ``head`` earlier on PATH stands in for the first read of /dev/urandom and counts the
    reads (the script draws again when an id is refused).
    """
    env = dict(os.environ)
    calls = tmp_path / "calls"
    if first_draw is not None:
        shims = tmp_path / "bin"
        shims.mkdir()
        (shims / "first").write_bytes(first_draw)
        real_head = shutil.which("head")
        shim = shims / "head"
        shim.write_text(
            "#!/bin/sh\n"
            f'echo x >> "{calls}"\n'
            f'if [ "$(wc -l < "{calls}")" -eq 1 ]; then cat "{shims / "first"}"; exit 0; fi\n'
            f'exec "{real_head}" "$@"\n'
        )
        shim.chmod(0o755)
        env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", str(SCRIPT), "cluster-id"], env=env, capture_output=True, text=True, check=True
    )
    reads = len(calls.read_text().splitlines()) if calls.exists() else 0
    return done.stdout.strip(), reads


class TestScriptClusterId:
    def test_is_a_kafka_uuid(self, tmp_path: Path) -> None:
        """deploy/scripts/kafka.sh makes 22 characters of URL-safe base64 of 16 bytes."""
        text, _ = _script_cluster_id(tmp_path)
        assert len(text) == 22
        assert len(base64.urlsafe_b64decode(text + "==")) == 16

    def test_never_starts_with_a_dash(self, tmp_path: Path) -> None:
        """A draw whose id would start with '-' (the storage tool's option syntax) is redrawn."""
        dash_first = base64.urlsafe_b64decode("-" + "A" * 21 + "==")
        text, reads = _script_cluster_id(tmp_path, first_draw=dash_first)
        assert not text.startswith("-"), text
        assert len(text) == 22
        assert reads == 2  # the dash-first draw was refused, the next one taken
