"""Commands that never touch Kafka's stream processor do not import faust or aiokafka.

The QA app, ``db upgrade`` and ``audit verify`` import ``envmon.commands.records``; the CLI
imports the worker only when it runs one. A fresh interpreter shows what an import pulls in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
import envmon.commands.records
import excursions.web.app
import envmon.cli
loaded = sorted(m for m in ("faust", "aiokafka") if m in sys.modules)
print(",".join(loaded))
"""


def test_records_the_qa_app_and_the_cli_import_neither_faust_nor_aiokafka() -> None:
    """Importing them in a fresh interpreter leaves faust and aiokafka unloaded."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported: {done.stdout.strip()}"
