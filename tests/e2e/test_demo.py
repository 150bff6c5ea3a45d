"""End to end: ``envmon demo`` runs the whole embedded pipeline on simulated equipment."""

from __future__ import annotations

import fcntl
import http.cookiejar
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from typing import Any

import pytest

from .demo import ROOT, running_demo


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the demo for 35 real seconds at 60× (35 simulated minutes), headless.

    While it runs, an operator signs in to the QA app it serves (with the password the demo
    printed), reads the excursions, opens one and acknowledges it. Returns the summary and
    what the app answered.
    """
    out = tmp_path_factory.mktemp("demo") / "summary.json"
    grafana = out.parent / "grafana"
    started = time.monotonic()
    args = ("--duration", "35", "--speed", "60", "--summary", str(out), "--web-port", "0")
    with running_demo(*args, "--grafana-out", str(grafana)) as demo:
        assert "Grafana dashboards for this site:" in demo.banner
        assert (grafana / "provisioning" / "datasources" / "envmon.yaml").is_file()
        assert len(list((grafana / "dashboards").glob("*.json"))) == 8
        time.sleep(max(0.0, 25 - (time.monotonic() - started)))  # let excursions happen
        web = use_the_app(demo.url, demo.passwords["operator"])
        web["passwords"] = demo.passwords
        web["stderr"] = demo.finish()
        web["stdout"] = demo.banner + demo.output
    return json.loads(out.read_text()), web


def use_the_app(base: str, password: str) -> dict[str, Any]:
    """Sign in as the demo's operator, list, open and acknowledge an excursion."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    csrf: dict[str, str] = {}  # the session's X-CSRF-Token, once signed in

    def call(path: str, body: dict[str, Any] | None = None) -> Any:
        data = None
        headers = dict(csrf)
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(base + path, data=data, headers=headers)
        with opener.open(request, timeout=10) as response:
            text = response.read().decode()
            kind = response.headers.get("Content-Type", "")
            return json.loads(text) if kind.startswith("application/json") else text

    signed = call("/api/v1/session", {"username": "operator", "password": password})
    csrf["X-CSRF-Token"] = signed["csrf_token"]
    listing = call("/api/v1/excursions?page_size=200")
    excursions = [i for i in listing["items"] if i["kind"] == "excursion"]
    chosen = excursions[-1]  # the oldest
    page = call(f"/excursions/{chosen['id']}")
    detail = call(f"/api/v1/excursions/{chosen['id']}")
    acknowledged = call(
        f"/api/v1/excursions/{chosen['id']}/acknowledge",
        {"comment": "seen in the demo", "version": detail["row_version"]},
    )
    after = call(f"/api/v1/excursions/{chosen['id']}")
    return {
        "listing": listing,
        "page": page,
        "acknowledged": acknowledged,
        "after": after,
    }


@pytest.fixture(scope="module")
def summary(run: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """What the demo wrote with ``--summary``."""
    return run[0]


@pytest.fixture(scope="module")
def web(run: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """What the QA app answered while the demo ran."""
    return run[1]


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


class TestQaApp:
    def test_demo_users_are_printed_and_can_sign_in(self, summary, web):
        """Four demo users with fresh passwords; the operator signed in with the printed one."""
        assert set(web["passwords"]) == {"operator", "qa", "viewer", "admin"}
        assert summary["web"]["users"]["qa"] == "qa"
        assert all(len(p) >= 12 for p in web["passwords"].values())

    def test_the_app_shows_the_demos_excursions(self, web):
        """The records the pipeline opened are in the app while it runs, with their chart."""
        kinds = {item["kind"] for item in web["listing"]["items"]}
        assert "excursion" in kinds
        assert 'id="trend"' in web["page"]  # the trend from the demo's time series
        assert "alarm raised" in web["page"]  # the timeline from the demo's alarms

    def test_an_operator_acknowledges_in_the_demo(self, web):
        """An acknowledgement through the API lands in the record and its timeline."""
        assert web["after"]["qa_state"] == "acknowledged"
        assert web["after"]["row_version"] == web["acknowledged"]["version"]
        titles = [entry["title"] for entry in web["after"]["timeline"]]
        assert titles.index("acknowledged") > titles.index("alarm raised")


class TestPlainOutput:
    """Piped (no terminal), the demo prints plain lines: no live view, no library noise."""

    def test_says_the_live_view_needs_a_terminal(self, web):
        assert "The live view needs a terminal (stdout is not one)" in web["stdout"]

    def test_alarm_and_progress_lines_in_the_site_zone(self, web):
        lines = web["stdout"].splitlines()
        raised = [line for line in lines if "  Raised  " in line]
        assert raised, web["stdout"]
        assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T  ", line) for line in raised)
        assert any("  readings " in line and " · channels: " in line for line in lines)
        assert "e+0" not in web["stdout"]

    def test_each_collector_connects_once_in_one_line(self, web):
        connected = [line for line in web["stdout"].splitlines() if "  Connected  " in line]
        assert len(connected) == 2, connected
        assert not any("Connected  mqtt:site-broker  (connected" in line for line in connected)

    def test_no_library_noise(self, web):
        for noise in ("Requested session timeout", "amqtt", "asyncua", "HTTP/1.1"):
            assert noise not in web["stderr"]
            assert noise not in web["stdout"]


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]")


def run_in_terminal(args: list[str], *, columns: int, lines: int, timeout: float = 120) -> str:
    """Run ``envmon demo ARGS`` in a pseudo-terminal of ``columns``×``lines``; return its text."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES"}}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(
        [sys.executable, "-m", "envmon.cli", "demo", *args],
        cwd=ROOT,
        stdin=side,
        stdout=side,
        stderr=side,
        env=env,
    )
    os.close(side)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # the demo ended and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    return ANSI.sub("", b"".join(chunks).decode("utf-8", errors="replace"))


def test_the_live_view_in_an_80x24_terminal(tmp_path):
    """In a terminal, the live view keeps to 80 columns with the app and sign-in in sight."""
    text = run_in_terminal(
        ["--duration", "8", "--speed", "60", "--web-port", "0", "--grafana-out", str(tmp_path)],
        columns=80,
        lines=24,
    )
    passwords = dict(re.findall(r"sign in as (\w+)\s+password (\S+)", text))
    assert set(passwords) == {"operator", "qa", "viewer", "admin"}
    view = text[text.index("sign in as admin") :]
    assert f"operator {passwords['operator']}" in view  # in the view's header, not only above
    assert re.search(r"page [1-9]/[1-9]", view)
    assert "recent alarms, newest first (Europe/Amsterdam)" in view
    assert "Requested session timeout" not in text
    assert "The live view needs a terminal" not in text
    for line in re.split(r"\r?\n|\r", view):
        assert len(line) <= 80, line
