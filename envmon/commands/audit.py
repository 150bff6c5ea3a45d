"""``envmon audit keygen|checkpoint|verify``: the audit trail's anchor, and its check.

``verify`` checks, in one snapshot of the record store: the hash chain and its head
(``excursions.audit``), every signed checkpoint it is given (``excursions.checkpoints``)
as an anchor the chain must still hold, and every record, user and signature row against
what the trail last recorded (``excursions.integrity``). ``checkpoint`` first checks the
chain from the newest checkpoint on, then signs the head, appends it to the checkpoint file
and publishes it on the bus; it signs nothing when the check fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from envmon.bus import AUDIT, Bus, Message
from envmon.errors import EnvmonError
from envmon.settings import Settings, SettingsError
from envmon.timeutil import utcnow
from excursions.audit import Anchor, Problem, Verification, verify
from excursions.checkpoints import (
    Checkpoint,
    CheckpointError,
    append,
    key_id,
    latest,
    load_private_key,
    load_public_keys,
    read_lines,
    sign,
)
from excursions.integrity import RowCheck, check_rows


class CheckpointRefusedError(EnvmonError):
    """The chain does not verify from the newest checkpoint on: nothing was signed."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.subject}: {p.text}" for p in problems))
        self.problems = problems


def reading_engine(url: str) -> Engine:
    """Return a snapshot-reading engine on an existing, migrated store (else ``SettingsError``)."""
    from envmon.commands.records import migrated_engine

    return migrated_engine(url, snapshot=True)


@dataclass(frozen=True, slots=True)
class CheckpointsRead:
    """What a checkpoint file held: the anchors that verified and the lines that did not."""

    path: Path
    lines: int = 0
    anchors: tuple[Anchor, ...] = ()
    problems: tuple[Problem, ...] = ()
    latest: Checkpoint | None = None  #: the newest whose signature holds


def read_checkpoints(path: Path, keys_file: Path | None, site: str | None) -> CheckpointsRead:
    """Read every checkpoint of a file; each line whose signature does not hold is a problem."""
    if keys_file is None:
        raise SettingsError(
            f"checkpoints in {path} but no public key to check them: set audit_public_key_file"
            " (ENVMON_AUDIT_PUBLIC_KEY_FILE) or pass --public-key"
        )
    if not path.is_file():
        raise SettingsError(f"checkpoint file {path}: not found")
    try:
        keys = load_public_keys(keys_file)
        anchors, problems, newest, count = [], [], None, 0
        for line in read_lines(path):
            count += 1
            checkpoint = line.checkpoint
            why = line.problem or (checkpoint.problem(keys, site) if checkpoint else None)
            if checkpoint is None or why is not None:
                seq = checkpoint.seq if checkpoint is not None else None
                problems.append(
                    Problem(f"checkpoint file {path.name}, line {line.number}", str(why), seq)
                )
                continue
            anchors.append(Anchor(checkpoint.seq, checkpoint.hash, line.label))
            if newest is None or (checkpoint.seq, checkpoint.at) >= (newest.seq, newest.at):
                newest = checkpoint
    except CheckpointError as exc:
        raise SettingsError(str(exc)) from None
    return CheckpointsRead(path, count, tuple(anchors), tuple(problems), newest)


@dataclass(frozen=True, slots=True)
class Report:
    """What ``verify_store`` found."""

    chain: Verification
    rows: RowCheck
    checkpoints: CheckpointsRead | None = None
    stale: Problem | None = None  #: the newest checkpoint is older than allowed
    extra: list[Problem] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        """Every problem: the chain's, the checkpoint file's, then the rows'."""
        found = list(self.chain.problems)
        if self.checkpoints is not None:
            found.extend(self.checkpoints.problems)
        if self.stale is not None:
            found.append(self.stale)
        return [*found, *self.rows.problems]

    @property
    def ok(self) -> bool:
        """Whether nothing was found wrong."""
        return not self.problems and not self.rows.more

    def as_json(self) -> dict[str, Any]:
        """Return the report as the JSON ``envmon audit verify --json`` prints."""
        chain = self.chain
        read = self.checkpoints
        return {
            "ok": self.ok,
            "entries_checked": chain.entries,
            "head_seq": chain.head_seq,
            "broken_seq": chain.broken_seq,
            "problem": chain.problem,
            "anchored_seq": chain.anchored_seq,
            "checkpoints": None
            if read is None
            else {
                "file": str(read.path),
                "lines": read.lines,
                "verified": len(read.anchors),
                "latest": None
                if read.latest is None
                else {"seq": read.latest.seq, "at": read.latest.at, "key": read.latest.key},
            },
            "rows": {
                "records": self.rows.records,
                "users": self.rows.users,
                "signatures": self.rows.signatures,
            },
            "problems": [
                {"subject": p.subject, "seq": p.seq, "text": p.text} for p in self.problems
            ],
            "more_problems": self.rows.more,
        }


def verify_store(
    url: str,
    *,
    checkpoint_file: Path | None = None,
    public_keys: Path | None = None,
    site: str | None = None,
    max_checkpoint_age: timedelta | None = None,
    now: Callable[[], datetime] = utcnow,
) -> Report:
    """Check the store's trail against its head, the checkpoints and its rows (one snapshot)."""
    read = read_checkpoints(checkpoint_file, public_keys, site) if checkpoint_file else None
    stale = None
    if max_checkpoint_age is not None:
        newest = read.latest if read is not None else None
        if newest is None:
            stale = Problem("checkpoints", "no valid checkpoint to check the age of")
        elif now() - newest.time > max_checkpoint_age:
            stale = Problem(
                "checkpoints",
                f"the newest checkpoint ({newest.at}) is older than {max_checkpoint_age}:"
                " is the checkpoint timer running?",
            )
    engine = reading_engine(url)
    try:
        with Session(engine) as session, session.begin():
            chain = verify(session, read.anchors if read is not None else ())
            rows = check_rows(session)
    finally:
        engine.dispose()
    return Report(chain, rows, read, stale)


def make_checkpoint(
    url: str,
    *,
    key_file: Path,
    checkpoint_file: Path,
    site: str,
    public_keys: Path | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Checkpoint:
    """Check the chain from the newest checkpoint on, then sign its head and append it.

    Raises ``CheckpointRefusedError`` (nothing signed) when the newest checkpoint in the file
    does not verify or the chain no longer holds it; ``SettingsError`` when the key, the
    file or the store cannot be used.
    """
    try:
        private = load_private_key(key_file)
        keys = {key_id(private.public_key()): private.public_key()}
        if public_keys is not None and public_keys.is_file():
            keys.update(load_public_keys(public_keys))  # earlier keys, across a rotation
        newest = latest(checkpoint_file)
    except CheckpointError as exc:
        raise SettingsError(str(exc)) from None
    start = None
    if newest is not None:
        found = newest.checkpoint
        why = newest.problem or (found.problem(keys, site) if found is not None else None)
        if found is None or why is not None:
            subject = f"checkpoint file {checkpoint_file.name}, line {newest.number}"
            raise CheckpointRefusedError([Problem(subject, f"the newest checkpoint: {why}")])
        start = Anchor(found.seq, found.hash, newest.label)
    engine = reading_engine(url)
    try:
        with Session(engine) as session, session.begin():
            checked = verify(session, start=start)
    finally:
        engine.dispose()
    if not checked.ok or checked.head_seq is None:
        raise CheckpointRefusedError(list(checked.problems))
    # Intact: the head is the last entry, whose hash the walk ended on.
    checkpoint = sign(private, site=site, seq=checked.head_seq, hash_=checked.last_hash, at=clock())
    try:
        append(checkpoint_file, checkpoint)
    except CheckpointError as exc:
        raise SettingsError(str(exc)) from None
    return checkpoint


async def publish_checkpoint(bus: Bus, checkpoint: Checkpoint) -> None:
    """Publish a checkpoint on ``envmon.audit`` (keyed by site), as the line the file holds."""
    await bus.publish([Message(AUDIT, checkpoint.site, checkpoint.line().encode())])


async def publish_to_kafka(settings: Settings, checkpoint: Checkpoint) -> None:
    """Create the audit topic if needed and publish a checkpoint to it on Kafka."""
    from stream.kafka.bus import KafkaBus
    from stream.kafka.topics import ensure_audit_topic

    await ensure_audit_topic(settings)
    bus = KafkaBus(
        settings.kafka_bootstrap,
        client_id=f"{settings.kafka_client_id}-audit",
        topic_prefix=settings.topic_prefix,
    )
    try:
        await bus.start()
        await publish_checkpoint(bus, checkpoint)
    finally:
        await bus.stop()


def publish(settings: Settings, checkpoint: Checkpoint) -> None:
    """Publish a checkpoint on Kafka (the settings' bus must be ``kafka``)."""
    asyncio.run(publish_to_kafka(settings, checkpoint))
