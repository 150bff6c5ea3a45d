"""``envmon dashboards generate``: the site's Grafana provisioning tree."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dashboards.provisioning import DEFAULT_DASHBOARDS_PATH, build_tree
from envmon.config import load_site
from envmon.settings import load_settings


def run_generate(
    site_file: Path,
    out: Path,
    *,
    dashboards_path: str = DEFAULT_DASHBOARDS_PATH,
    settings_file: Path | None = None,
    console: Console,
) -> int:
    """Write the tree for ``site_file`` under ``out``; print what was written."""
    site = load_site(site_file)
    settings = load_settings(settings_file, site=site_file)
    tree = build_tree(site, influx_url=settings.influx_url, dashboards_path=dashboards_path)
    written = tree.write(out)
    console.print(f"Wrote {len(written)} files for {site.name} under {out}:")
    for path in written:
        console.print(f"  {path.relative_to(out)}")
    console.print(
        f"Point Grafana's provisioning at {out / 'provisioning'} and copy {out / 'dashboards'}"
        f" to {dashboards_path} (docs/operations.md, 'Grafana dashboards')."
    )
    return 0
