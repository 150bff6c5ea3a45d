"""End to end: ``envmon demo`` runs the whole embedded pipeline on simulated equipment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the demo for 35 real seconds at 60× (35 simulated minutes), headless."""
    out = tmp_path_factory.mktemp("demo") / "summary.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "envmon.cli",
            "demo",
            "--duration",
            "35",
            "--speed",
            "60",
            "--summary",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


class TestDemo:
    def test_alarms_raised_and_cleared(self, summary):
        """Within the run alarms are raised and cleared."""
        events = {a["event"] for a in summary["alarms"]}
        assert {"raised", "cleared", "sensor_fault", "restored", "stale"} <= events

    def test_excursion_records(self, summary):
        """The particle burst and the freezer door give closed excursion records."""
        closed = {e["sensor_id"] for e in summary["excursions"] if e["status"] == "closed"}
        assert "pc-grade-b.particles_0_5um" in closed
        assert "ult-freezer-1.temperature" in closed

    def test_communication_loss_is_a_data_gap(self, summary):
        """The fridge whose gateway stops answering leaves a data gap."""
        assert [g["sensor_id"] for g in summary["data_gaps"]] == ["fridge-2.temperature"]

    def test_every_reading_accounted_for(self, summary):
        """What the collectors buffered is what the stream evaluated and stored."""
        collected = sum(c["readings"] for c in summary["collectors"].values())
        assert collected > 500
        assert summary["buffer"]["pending"] == 0
        assert summary["buffer"]["forwarded"] >= collected
        assert summary["stream"]["readings"] == summary["stream"]["stored"] == collected
        assert summary["stream"]["rejected"] == 0
        assert all(c["dead_lettered"] == 0 for c in summary["collectors"].values())

    def test_both_protocols_deliver(self, summary):
        """Both the MQTT and the OPC-UA collector delivered readings."""
        assert summary["collectors"]["mqtt:site-broker"]["readings"] > 0
        assert summary["collectors"]["opcua:cold-store-gateway"]["readings"] > 0
