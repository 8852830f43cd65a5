"""bench/sip2.py keeps working: a tiny run through our SIP2 server prints its figures.

Only the JSON's shape and its own consistency are checked here; speed is judged from
the benchmark's output, never in a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "sip2.py"


def test_a_tiny_run_prints_checkouts_per_second_and_latency() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--clients", "3", "--seconds", "1.5",
                          "--warmup", "0.5", "--items-per-client", "30"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout)
    assert figures["clients"] == 3 and figures["client_model"] == "threads"
    assert figures["errors"] == 0 and figures["errors_by_kind"] == {}
    assert figures["checkouts"] > 0 and figures["checkins"] > 0
    assert abs(figures["checkouts"] - figures["checkins"]) <= 3  # each client ends its cycle
    assert figures["checkouts_per_s"] == round(figures["checkouts"] / 1.5, 1)
    for op in ("checkout", "checkin", "all"):
        latency = figures["latency_ms"][op]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"], (op, latency)
    assert figures["latency_ms"]["checkout"]["count"] == figures["checkouts"]
    assert set(figures["cpu_cores_used"]) == {"server", "bench_process"}
    assert figures["library"]["copies"] > 0 and figures["machine"]["cpus"] >= 1


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--clients", "0"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert run.returncode != 0 and "--clients" in run.stderr
    assert run.stdout == ""
