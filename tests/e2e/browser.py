"""What the browser tests share: Debian's Chromium, where screenshots go, how it starts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

#: Debian's Chromium (``ENVMON_CHROMIUM`` for another).
CHROMIUM: Final = Path(os.environ.get("ENVMON_CHROMIUM", "/usr/bin/chromium"))
#: Where screenshots and PDFs are kept to be looked at (``ENVMON_TEST_ARTIFACTS``).
ARTIFACTS: Final = Path(os.environ.get("ENVMON_TEST_ARTIFACTS", "var/test-artifacts"))


def launch(p: Any) -> Any:
    """Start a headless Chromium from ``p`` (``playwright.sync_playwright()``'s handle)."""
    return p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
