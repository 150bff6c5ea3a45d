"""``envmon demo`` as a process of its own, for the end-to-end tests that drive it."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parents[2]


@dataclass
class RunningDemo:
    """A started demo: its process, what it printed before serving, its URL and passwords.

    Once finished, ``output`` holds what it printed on stdout after the banner.
    """

    process: subprocess.Popen[str]
    banner: str
    url: str
    passwords: dict[str, str] = field(default_factory=dict)
    output: str = ""

    def finish(self, timeout: float = 180) -> str:
        """Wait for the demo to end (its ``--duration``); assert exit 0; return its stderr."""
        self.output, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, err[-3000:]
        return err


@contextlib.contextmanager
def running_demo(*args: str) -> Iterator[RunningDemo]:
    """Start ``envmon demo ARGS`` and yield it once the QA app serves; kill it if left running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "envmon.cli", "demo", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed: list[str] = []
        for line in process.stdout:
            printed.append(line)
            if "sign in as admin" in line:
                break
        banner = "".join(printed)
        url = re.search(r"QA app: (http://127\.0\.0\.1:\d+)", banner)
        assert url is not None, banner
        passwords = dict(re.findall(r"sign in as (\w+)\s+password (\S+)", banner))
        yield RunningDemo(process, banner, url.group(1), passwords)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
