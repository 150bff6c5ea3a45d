"""The house rules, checked on the source: which package may import which.

- The runtime (envmon, collectors, stream, excursions, alerts, dashboards) never imports the
  development servers (``devservers``), the tests or the benchmarks.
- collectors, stream and excursions never import each other: they meet in envmon's ports.
- Every server version is pinned once, in ``deploy/versions.env``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from devservers.versions import DEPLOY, REPO_ROOT, pins, version

RUNTIME = ("envmon", "collectors", "stream", "excursions", "alerts", "dashboards")
NOT_SHIPPED = ("devservers", "tests", "bench")
SEPARATE = ("collectors", "stream", "excursions")


def imported_packages(path: Path) -> set[str]:
    """Return the top-level names a module imports (at any depth, lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    """Return the package's Python files."""
    return sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", RUNTIME)
def test_the_runtime_never_imports_what_is_not_shipped(package):
    """No module of the product reaches into the development servers, tests or benchmarks."""
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_packages(path) & set(NOT_SHIPPED))
        for path in modules(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("package", SEPARATE)
def test_collectors_stream_and_excursions_never_import_each_other(package):
    """Each of the three meets the others only through envmon (bus, models, time-series port)."""
    others = set(SEPARATE) - {package}
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_packages(path) & others)
        for path in modules(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule above can fail: a lazy import inside a function is found too."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from stream.core import evaluator\n", encoding="utf-8")
    assert imported_packages(module) == {"stream"}


def test_every_server_version_is_pinned_once():
    """The scripts and poms take their versions from deploy/versions.env, never their own."""
    assert set(pins()) >= {
        "KAFKA_VERSION",
        "QUESTDB_VERSION",
        "INFLUXDB_VERSION",
        "ALERTMANAGER_VERSION",
    }
    literal = re.compile("|".join(re.escape(v) for v in pins().values()))
    places = [*sorted((DEPLOY / "scripts").glob("*.sh")), *sorted(DEPLOY.glob("*/pom.xml"))]
    pinned_again = {}
    for path in places:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if literal.search(line) and not line.lstrip().startswith(("#", "<!--")):
                pinned_again[f"{path.relative_to(REPO_ROOT)}:{number}"] = line.strip()
    assert pinned_again == {}
    assert version("kafka") == pins()["KAFKA_VERSION"]


def test_a_missing_pin_is_named():
    """Asking for a server that has no pin says which file lacks it."""
    with pytest.raises(KeyError, match=r"versions\.env pins no NOSUCH_VERSION"):
        version("nosuch")
