"""The benchmark keeps working: a short run answers every request and prints its figures.

Speed itself is judged from the benchmark's JSON, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_circulation_bench_short_run() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "circulation.py"), "--stations", "3", "--seconds", "1",
         "--warmup", "0.2", "--think-ms", "10", "--echo-seconds", "0.2", "--echo-samples", "50"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout)
    assert figures["stations"] == 3 and figures["errors"] == 0
    assert figures["transactions"] > 0 and figures["tps"] > 0
    for op in ("patron.identify", "loan.checkout", "loan.return"):
        latency = figures["latency_ms"][op]
        assert latency["count"] > 0 and 0 < latency["p50"] <= latency["p99"]
    assert 0 < figures["echo_ms"]["p50"] <= figures["echo_ms"]["p99"]
    assert set(figures["targets"]) == {"p99_under_20ms", "checkout_p50_within_10x_echo"}
