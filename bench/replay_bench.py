"""Benchmark of ``envmon replay``: readings/s and peak memory over a large generated file.

Generates a site with N sensors (cold-storage channels with alert/action limits, delay,
deadband, rate of change and stale-data timeout) and a CSV of readings, one timestamp per
10 s for every sensor: a mean-reverting random walk with door openings that cause real
excursions. Then runs the real command line, pinned to one CPU, for two file lengths so
that peak memory can be compared, next to a baseline that only parses the same CSV.

    python -m bench.replay_bench --readings 10000000 --sensors 1000
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
STEP_S = 10
PIN_ONE_CPU = ["taskset", "-c", "0"]  # util-linux: "on one core" means one CPU


def write_site(path: Path, sensors: int) -> None:
    """Write a site configuration with ``sensors`` fridge temperature channels."""
    lines = [
        "site:",
        "  name: Replay benchmark site",
        "  timezone: UTC",
        "areas:",
        "  - id: cold-store",
        "    name: Cold store",
        "    instruments:",
    ]
    for i in range(sensors):
        lines += [
            f"      - id: fridge-{i:04d}",
            f"        name: Fridge {i}",
            "        kind: fridge",
            "        channels:",
            "          - parameter: temperature",
            "            unit: degC",
            "            limits:",
            "              alert_high: 7.0",
            "              action_high: 8.0",
            "              alert_low: 3.0",
            "              action_low: 2.0",
            "              delay: 5m",
            "              deadband: 0.3",
            "              rate_of_change_per_min: 3.0",
            "              stale_after: 5m",
            "              bad_after: 3",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


#: (probability per sensor and step that a door opens, warming per step while open)
PROFILES = {
    "calm": (0.0002, 0.05),  # a realistic cold store: a few excursions a day
    "stormy": (0.01, 0.6),  # a bad day: frequent long door openings, fast rises (ROC alarms)
}


def write_readings(
    path: Path, readings: int, sensors: int, profile: str = "calm", seed: int = 7
) -> None:
    """Write ``readings`` CSV rows: every sensor once per ``STEP_S`` seconds."""
    door_prob, warming = PROFILES[profile]
    rnd = random.Random(seed)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    values = [5.0] * sensors
    door = [0] * sensors  # remaining steps of a door opening
    names = [f"fridge-{i:04d}.temperature" for i in range(sensors)]
    gauss = rnd.gauss
    rand = rnd.random
    with path.open("w", encoding="utf-8", buffering=1 << 22) as fh:
        fh.write("sensor_id,ts,value\n")
        for step in range(readings // sensors):
            ts = (t0 + timedelta(seconds=step * STEP_S)).isoformat().replace("+00:00", "Z")
            rows = []
            for i in range(sensors):
                v = values[i]
                if door[i]:
                    door[i] -= 1
                    v = min(v + warming, 15.0)
                elif rand() < door_prob:
                    door[i] = rnd.randint(6, 90)  # 1 to 15 minutes open
                v += 0.02 * (5.0 - v) + gauss(0.0, 0.03)
                values[i] = v
                rows.append(f"{names[i]},{ts},{v:.3f}\n")
            fh.write("".join(rows))


def run_replay(site: Path, data: Path) -> tuple[float, int]:
    """Run ``envmon replay`` pinned to one CPU; return (seconds, peak RSS in KiB)."""
    cmd = [
        *PIN_ONE_CPU,
        sys.executable,
        "-m",
        "envmon.cli",
        "replay",
        "--config",
        str(site),
        "--input",
        str(data),
        "--output",
        os.devnull,
        "--json",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    # the JSON summary is small, so the pipe cannot fill while we wait for the child
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}): {out!r}")
    rss = usage.ru_maxrss
    print(out.decode().strip())
    return elapsed, rss


def run_baseline(data: Path) -> float:
    """Parse the same CSV (csv.reader, float, timestamp) without evaluating: seconds."""
    code = (
        "import csv,sys;from datetime import datetime\n"
        "last=None\n"
        "with open(sys.argv[1],newline='') as f:\n"
        " r=csv.reader(f);next(r)\n"
        " for s,t,v in r:\n"
        "  float(v)\n"
        "  if t!=last: datetime.fromisoformat(t);last=t\n"
    )
    started = time.perf_counter()
    subprocess.run([*PIN_ONE_CPU, sys.executable, "-c", code, str(data)], check=True)
    return time.perf_counter() - started


def main() -> None:
    """Generate, run and print the results as a Markdown table row per size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--small", type=int, default=1_000_000, help="second, shorter run")
    parser.add_argument("--stormy", type=int, default=1_000_000, help="readings, stormy day")
    args = parser.parse_args()
    DATA_DIR.mkdir(exist_ok=True)
    site = DATA_DIR / f"site-{args.sensors}.yaml"
    write_site(site, args.sensors)
    rows = []
    runs = [("calm", args.small), ("calm", args.readings), ("stormy", args.stormy)]
    for profile, n in runs:
        data = DATA_DIR / f"readings-{profile}-{n}-{args.sensors}.csv"
        if not data.exists():
            t = time.perf_counter()
            write_readings(data, n, args.sensors, profile)
            print(
                f"generated {data} ({data.stat().st_size / 1e6:.0f} MB) in "
                f"{time.perf_counter() - t:.1f} s"
            )
        base = run_baseline(data)
        elapsed, rss = run_replay(site, data)
        rows.append((profile, n, elapsed, rss, base))
    columns = ["profile", "readings", "sensors", "replay s", "readings/s", "peak RSS MiB"]
    columns += ["parse-only s", "replay/parse"]
    print("\n| " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for profile, n, elapsed, rss, base in rows:
        print(
            f"| {profile} | {n:,} | {args.sensors:,} | {elapsed:.1f} | {n / elapsed:,.0f} "
            f"| {rss / 1024:.0f} | {base:.1f} | {elapsed / base:.2f} |"
        )


if __name__ == "__main__":
    main()
