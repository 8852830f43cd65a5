"""bench/grid.py keeps working: a short run against a real server, web and Mosquitto.

Speed itself is judged from the benchmark's JSON, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path



ROOT = Path(__file__).resolve().parents[1]


def test_grid_bench_short_run_delivers_every_change() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "grid.py"), "--stations", "12", "--clients", "2",
         "--rate", "12", "--seconds", "2", "--connections", "3"],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-2000:]
    figures = json.loads(run.stdout)
    assert figures["stations"] == 12 and figures["browsers"] == 2
    assert figures["changes_published"] == 24
    assert figures["deliveries"] == figures["deliveries_expected"] == 48
    assert figures["missing"] == 0 and figures["browser_errors"] == []
    latency = figures["latency_ms"]
    assert latency["count"] == 48
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert 0 <= figures["server_cpu_cores"] < 2.5
    assert len(figures["machine"]["loadavg_at_start"]) == 3


def test_grid_bench_refuses_nonsense() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "grid.py"), "--stations", "0"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2 and "must be positive" in run.stderr
