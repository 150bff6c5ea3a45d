"""The QA app's pages draw the trend as SVG: importing them does not import reportlab."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import {module}
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "reportlab")
print(",".join(loaded))
"""


@pytest.mark.parametrize(
    "module",
    [
        "excursions.web.app",
        "excursions.web.pages",
        "excursions.web.admin_pages",
        "excursions.trend.layout",
        "excursions.trend.svg",
        "alerts.web",
        "dashboards.status",
    ],
)
def test_the_web_app_does_not_import_reportlab(module: str) -> None:
    """Only the PDF route imports reportlab, when it prints."""
    found = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert found.stdout.strip() == ""


def test_the_pdf_renderer_is_what_imports_reportlab() -> None:
    """The probe is not vacuous: ``excursions.trend.pdf`` does import it."""
    found = subprocess.run(
        [sys.executable, "-c", PROBE.format(module="excursions.trend.pdf")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "reportlab" in found.stdout
