"""Signed checkpoints of the audit trail's head: the chain's anchor outside the database.

Whoever can write the record store's tables can rewrite an entry and recompute every later
hash and the head; the chain then verifies. A checkpoint is the head (sequence number and
hash) with the site and the time, signed with Ed25519 under a key the database does not
hold: the private key lives in a file (``envmon audit keygen``: mode 0600, refused when
others may read it) that only the checkpoint service reads. Checkpoints are appended to a
JSON-lines file and published on the bus (``envmon.audit``), neither of which the
database can rewrite; ``excursions.audit.verify`` then takes each as an ``Anchor`` that
the chain must still hold.

One checkpoint is one line of canonical JSON (sorted keys)::

    {"at":"2026-11-25T08:15:00.000000+00:00","hash":"9f…","key":"ed25519:3b1c…",
     "seq":118,"sig":"…","site":"plant-a","v":1}

``sig`` is the base64 Ed25519 signature of ``DOMAIN`` followed by the canonical JSON of
the other fields; ``key`` names the public key (the first 16 hex digits of the SHA-256 of
its raw bytes), so keys can be rotated: the public key file may hold several.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from envmon.errors import EnvmonError

FORMAT_VERSION: Final = 1
#: Prepended to what is signed, so a checkpoint signature is never valid as anything else.
DOMAIN: Final = b"envmon-audit-checkpoint-v1\n"
#: The longest line read from a checkpoint file (a checkpoint is about 300 bytes).
MAX_LINE_BYTES: Final = 4_096
#: The largest key file read.
MAX_KEY_FILE_BYTES: Final = 1_000_000
PUBLIC_SUFFIX: Final = ".pub"
_PEM_PUBLIC: Final = re.compile(
    rb"-----BEGIN PUBLIC KEY-----\r?\n.*?-----END PUBLIC KEY-----", re.DOTALL
)


class CheckpointError(EnvmonError):
    """A key or checkpoint file cannot be used; the message names the file and why."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """Return the short name of a public key: ``ed25519:`` and 16 hex digits of its SHA-256."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def public_key_path(key_file: Path) -> Path:
    """Return where ``keygen`` puts the public half of ``key_file`` (beside it, ``.pub``)."""
    return key_file.with_name(key_file.name + PUBLIC_SUFFIX)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, created with ``mode`` (never wider)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise CheckpointError(f"{path}: exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot create: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_key(key_file: Path) -> tuple[Path, str]:
    """Create a new signing key in ``key_file`` (0600) and its public key beside it (0644).

    Returns the public key's path and id. Refuses to overwrite either file.
    """
    public_file = public_key_path(key_file)
    if public_file.exists():
        raise CheckpointError(f"{public_file}: exists; refusing to overwrite a key")
    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_new(key_file, pem, 0o600)
    public = private.public_key()
    _write_new(
        public_file, public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo), 0o644
    )
    return public_file, key_id(public)


def _read_key_file(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
    return data


def load_private_key(key_file: Path) -> Ed25519PrivateKey:
    """Return the signing key; refuse a file that others than its owner may read or write."""
    try:
        mode = key_file.stat().st_mode
    except OSError as exc:
        raise CheckpointError(
            f"{key_file}: {exc.strerror} (create it with envmon audit keygen)"
        ) from None
    if mode & 0o077:
        raise CheckpointError(
            f"{key_file}: mode {mode & 0o777:04o} lets others than its owner at the signing"
            f" key: chmod 600 {key_file}"
        )
    try:
        key = load_pem_private_key(_read_key_file(key_file), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CheckpointError(f"{key_file}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{key_file}: not an Ed25519 key")
    return key


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """Return the Ed25519 public keys of a PEM file (one or more, e.g. across a rotation)."""
    blocks = _PEM_PUBLIC.findall(_read_key_file(path))
    if not blocks:
        raise CheckpointError(f"{path}: no PEM public key (-----BEGIN PUBLIC KEY-----) in it")
    keys = {}
    for number, block in enumerate(blocks, start=1):
        try:
            key = load_pem_public_key(block)
        except (ValueError, UnsupportedAlgorithm):
            raise CheckpointError(f"{path}: public key {number} does not load") from None
        if not isinstance(key, Ed25519PublicKey):
            raise CheckpointError(f"{path}: public key {number} is not an Ed25519 key")
        keys[key_id(key)] = key
    return keys


def format_time(at: datetime) -> str:
    """Return the form a checkpoint's time is signed in (UTC, microseconds)."""
    if at.tzinfo is None:
        raise ValueError(f"checkpoint time {at!r} has no UTC offset")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


class Checkpoint(BaseModel):
    """One signed checkpoint, as one line of the file (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1]
    site: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    at: str = Field(max_length=40)
    key: str = Field(pattern=r"^ed25519:[0-9a-f]{16}$")
    sig: str = Field(pattern=r"^[A-Za-z0-9+/]{86}==$")

    @field_validator("at")
    @classmethod
    def _utc_time(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an ISO 8601 time") from None
        if parsed.tzinfo is None or format_time(parsed) != value:
            raise ValueError("not a UTC time in the signed form (microseconds, +00:00)")
        return value

    @property
    def time(self) -> datetime:
        """The time the checkpoint was signed (aware UTC)."""
        return datetime.fromisoformat(self.at)

    def payload(self) -> bytes:
        """Return the bytes the signature covers."""
        content = self.model_dump(exclude={"sig"})
        return DOMAIN + orjson.dumps(content, option=orjson.OPT_SORT_KEYS)

    def line(self) -> str:
        """Return the checkpoint as one line of canonical JSON (no newline)."""
        return orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS).decode()

    def problem(self, keys: Mapping[str, Ed25519PublicKey], site: str | None = None) -> str | None:
        """Return why this checkpoint is not to be trusted (None: its signature holds)."""
        public = keys.get(self.key)
        if public is None:
            return f"signed by the unknown key {self.key} (not in the public key file)"
        try:
            public.verify(base64.b64decode(self.sig, validate=True), self.payload())
        except (InvalidSignature, ValueError):
            return "its signature does not verify: the checkpoint was altered or forged"
        if site is not None and self.site != site:
            return f"it is a checkpoint of site {self.site!r}, not of {site!r}"
        return None


def sign(
    private_key: Ed25519PrivateKey, *, site: str, seq: int, hash_: str, at: datetime
) -> Checkpoint:
    """Return the checkpoint of ``seq``/``hash_`` at ``at`` signed with ``private_key``."""
    public = private_key.public_key()
    unsigned = {
        "v": FORMAT_VERSION,
        "site": site,
        "seq": seq,
        "hash": hash_,
        "at": format_time(at),
        "key": key_id(public),
    }
    signature = private_key.sign(DOMAIN + orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS))
    return Checkpoint(**unsigned, sig=base64.b64encode(signature).decode())  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a checkpoint file: the checkpoint, or why it is not one."""

    number: int
    checkpoint: Checkpoint | None
    problem: str | None = None

    @property
    def label(self) -> str:
        """How messages name this line's checkpoint."""
        if self.checkpoint is None:
            return f"line {self.number}"
        return f"the checkpoint of {self.checkpoint.at} (line {self.number})"


def read_lines(path: Path) -> Iterator[Line]:
    """Yield every non-empty line of a checkpoint file, parsed (each line at most 4 KB read)."""
    try:
        file = path.open("rb")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    with file:
        number = 0
        while True:
            raw = file.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := file.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass  # skip the rest of an overlong line, bounded reads
                yield Line(number, None, f"longer than {MAX_LINE_BYTES} bytes: not a checkpoint")
                continue
            if not raw.strip():
                continue
            try:
                yield Line(number, Checkpoint.model_validate_json(raw))
            except ValidationError as exc:
                first = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(part) for part in first["loc"]) or "line"
                yield Line(number, None, f"not a checkpoint ({where}: {first['msg']})")


def latest(path: Path) -> Line | None:
    """Return the last non-empty line of a checkpoint file (None: no file, or empty)."""
    if not path.exists():
        return None
    last = None
    for line in read_lines(path):
        last = line
    return last


def append(path: Path, checkpoint: Checkpoint) -> None:
    """Append a checkpoint to the file (created 0644 if new), under a lock, synced to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot open for appending: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = checkpoint.line().encode() + b"\n"
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # after a torn write, start a line of our own
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot append: {exc.strerror}") from None
    finally:
        os.close(fd)
    if created:
        directory = os.open(path.parent, os.O_RDONLY)
        with contextlib.suppress(OSError):
            os.fsync(directory)
        os.close(directory)
