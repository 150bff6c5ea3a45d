"""CPU time of processes, for the benchmarks' per-process CPU figures (Linux ``/proc``)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds process ``pid`` (all its threads) has used."""
    # Fields after the command name (which may hold spaces): utime and stime are the
    # 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
