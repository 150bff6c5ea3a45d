"""The ``envmon audit`` commands as the audit tests run them: verify, keygen, checkpoint.

Shared by the anchor tests on SQLite (here) and on PostgreSQL (tests/integration/postgres).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from envmon.cli import app
from envmon.testing import DEFAULT_T0
from excursions.checkpoints import Checkpoint, load_private_key, sign

from .tampering import cut_tail, signed_store, tamper
from .test_audit import fill

SITE = Path(__file__).parents[3] / "deploy" / "examples" / "site.yaml"


def url_of(engine: Engine) -> str:
    """Return the engine's URL with its password (what ``--db`` takes)."""
    return engine.url.render_as_string(hide_password=False)


def verify_cli(engine: Engine, *extra: str) -> Result:
    """Run ``envmon audit verify`` on the store for the example site."""
    return CliRunner().invoke(
        app, ["audit", "verify", "--db", url_of(engine), "--site", str(SITE), *extra]
    )


class Keys:
    """A signing key, its public key and a checkpoint file in a test's directory."""

    def __init__(self, directory: Path) -> None:
        self.key = directory / "audit" / "checkpoint.key"
        self.public = directory / "audit" / "checkpoint.key.pub"
        self.file = directory / "checkpoints.jsonl"

    @classmethod
    def made(cls, directory: Path) -> Keys:
        """Return the keys with a new key pair generated."""
        keys = cls(directory)
        result = keys.keygen()
        assert result.exit_code == 0, result.output
        return keys

    def keygen(self) -> Result:
        return CliRunner().invoke(app, ["audit", "keygen", "--key-file", str(self.key)])

    def checkpoint(self, engine: Engine, *extra: str) -> Result:
        return CliRunner().invoke(
            app,
            [
                "audit",
                "checkpoint",
                "--db",
                url_of(engine),
                "--site",
                str(SITE),
                "--key-file",
                str(self.key),
                "--checkpoints",
                str(self.file),
                *extra,
            ],
        )

    def sign(self, *, site: str, seq: int, hash_: str) -> Checkpoint:
        """Sign a checkpoint with the private key, dated ``DEFAULT_T0``."""
        return sign(load_private_key(self.key), site=site, seq=seq, hash_=hash_, at=DEFAULT_T0)

    def verify(self, engine: Engine, *extra: str) -> Result:
        return verify_cli(
            engine, "--checkpoints", str(self.file), "--public-key", str(self.public), *extra
        )


def check_truncated_tail_is_named(engine: Engine, removed: int) -> None:
    """Delete the newest ``removed`` of 20 entries (guards off): verify names the range."""
    fill(engine, 20)
    cut_tail(engine, 20 - removed)
    result = verify_cli(engine)
    assert result.exit_code == 1, result.output
    first = 21 - removed
    missing = "entry 20 was" if removed == 1 else f"entries {first} to 20 were"
    assert f"BROKEN at entry {first}: the trail ends at entry {first - 1}" in result.output
    assert f"{missing} removed (a truncated tail)" in result.output


def broken(result: Result) -> str:
    """Return the output of a run that failed with exit code 1 (a verify naming a break)."""
    assert result.exit_code == 1, result.output
    return result.output


def tampered_signed_store(engine: Engine, statement: str) -> str:
    """Store a signed record, run ``statement`` with the guards off; return verify's failure."""
    signed_store(engine)
    tamper(engine, statement)
    return broken(verify_cli(engine))
