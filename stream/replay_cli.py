"""``envmon replay``: wiring of files, terminal output and exit codes around the replayer."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from envmon.config import load_site
from envmon.errors import ConfigError, InputError
from envmon.rendering import print_config_error, print_tables
from envmon.timeutil import format_ts
from stream.core.evaluator import Evaluator
from stream.replay import EventSink, ProgressHandler, Replayer, ReplaySummary

EXIT_OK = 0
EXIT_INVALID = 2
MAX_PRINTED_REJECTS = 20


def run(
    *,
    config: Path,
    input_file: Path,
    output: Path | None,
    json_summary: bool,
    strict: bool,
    input_format: str | None,
) -> int:
    """Run a replay from the command line; return the process exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        site = load_site(config)
    except ConfigError as exc:
        print_config_error(exc, console=err)
        return EXIT_INVALID
    fmt = input_format or ("jsonl" if input_file.suffix.lower() in {".jsonl", ".json"} else "csv")
    if fmt not in {"csv", "jsonl"}:
        err.print(f"unknown --format {fmt!r}: use csv or jsonl", markup=False)
        return EXIT_INVALID
    source = "<stdin>" if str(input_file) == "-" else str(input_file)
    if source != "<stdin>" and not input_file.is_file():
        err.print(f"{source}: no such file", markup=False)
        return EXIT_INVALID

    summary = ReplaySummary()
    printed = 0

    def on_reject(line: int, reason: str) -> None:
        nonlocal printed
        if strict:
            return
        printed += 1
        if printed <= MAX_PRINTED_REJECTS:
            err.print(f"{source}:{line}: skipped: {reason}", markup=False)
        elif printed == MAX_PRINTED_REJECTS + 1:
            err.print("… further bad lines are counted in the summary only", markup=False)

    started = time.perf_counter()
    with _open_output(output) as out, _open_input(input_file, fmt) as stream:
        sink = EventSink(out, summary)
        replayer = Replayer(
            Evaluator(site.sensors()),
            sink,
            summary,
            source=source,
            strict=strict,
            on_reject=on_reject,
        )
        try:
            with _progress(err, input_file, stream) as on_progress:
                replayer.on_progress = on_progress
                if fmt == "csv":
                    assert isinstance(stream, io.TextIOBase)
                    replayer.run_csv(stream)
                else:
                    replayer.run_jsonl(stream)  # type: ignore[arg-type]
        except InputError as exc:
            err.print(f"{exc}", markup=False)
            return EXIT_INVALID
        replayer.finish()
    elapsed = time.perf_counter() - started

    to = Console(stderr=output is None, highlight=False, soft_wrap=True)
    if json_summary:
        data = summary.as_dict() | {"elapsed_s": round(elapsed, 3)}
        to.file.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_summary(to, summary, elapsed)
    return EXIT_OK


@contextlib.contextmanager
def _open_output(output: Path | None) -> Iterator[IO[bytes]]:
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with output.open("wb", buffering=1 << 20) as fh:
        yield fh


@contextlib.contextmanager
def _open_input(path: Path, fmt: str) -> Iterator[IO[str] | IO[bytes]]:
    if str(path) == "-":
        yield sys.stdin if fmt == "csv" else sys.stdin.buffer
        return
    if fmt == "csv":
        with path.open("r", encoding="utf-8", newline="", buffering=1 << 20) as text:
            yield text
    else:
        with path.open("rb", buffering=1 << 20) as binary:
            yield binary


@contextlib.contextmanager
def _progress(
    err: Console, path: Path, stream: IO[str] | IO[bytes]
) -> Iterator[ProgressHandler | None]:
    if not err.is_terminal or str(path) == "-":
        yield None
        return
    total = os.path.getsize(path)
    raw = stream.buffer if isinstance(stream, io.TextIOWrapper) else stream
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[readings]:,} readings"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("replay", total=total, readings=0)

        def update(readings: int) -> None:
            progress.update(task, completed=raw.tell(), readings=readings)

        yield update


def _print_summary(console: Console, summary: ReplaySummary, elapsed: float) -> None:
    rate = summary.readings / elapsed if elapsed > 0 else 0.0
    proofs = f" and {summary.proofs:,} proofs of life" if summary.proofs else ""
    console.print(
        f"{summary.readings:,} readings{proofs} from {summary.lines:,} lines in {elapsed:.2f} s "
        f"({rate:,.0f}/s); rejected {summary.rejected:,}, late {summary.late:,}, "
        f"duplicates {summary.duplicates:,}",
        markup=False,
        soft_wrap=True,
    )
    table = Table(title="Excursions per area and level")
    table.add_column("area")
    table.add_column("alert", justify="right")
    table.add_column("action", justify="right")
    table.add_column("data gaps", justify="right")
    areas = sorted({a for a, _ in summary.excursions} | set(summary.gaps))
    for area in areas:
        table.add_row(
            area,
            str(summary.excursions.get((area, "alert"), 0)),
            str(summary.excursions.get((area, "action"), 0)),
            str(summary.gaps.get(area, 0)),
        )
    if not areas:
        table.add_row("(none)", "0", "0", "0")
    tables = [table]
    if summary.listed:
        tables.append(_excursions_table(summary))
    print_tables(*tables, stderr=console.stderr)
    more = sum(summary.excursions.values()) - len(summary.listed)
    if more > 0:
        console.print(f"… and {more:,} more excursion(s) in the output")
    if summary.open_excursions:
        console.print(f"{summary.open_excursions} excursion(s) still open at the end of the input")
    if summary.alarms:
        alarms = ", ".join(f"{k} {v}" for k, v in sorted(summary.alarms.items()))
        console.print(f"alarm events: {alarms}", markup=False, soft_wrap=True)


def _excursions_table(summary: ReplaySummary) -> Table:
    table = Table(title="Excursions")
    for name in ("sensor", "level", "dir", "start (UTC)", "end (UTC)", "duration", "peak"):
        table.add_column(
            name, justify="right" if name in {"duration", "peak"} else "left", no_wrap=True
        )
    for rec in summary.listed:
        table.add_row(
            rec.sensor_id,
            rec.level.value,
            rec.direction.value,
            format_ts(rec.start),
            format_ts(rec.end) if rec.end else "open",
            f"{rec.duration_s:,.0f} s" if rec.duration_s is not None else "—",
            f"{rec.peak:,.6g} {rec.unit}",
        )
    return table
