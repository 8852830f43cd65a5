"""bench/search.py keeps working: a small run prints its figures in the agreed shape.

Speed itself is judged from the benchmark's JSON, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_search_bench_small_run() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "search.py"), "--titles", "600", "--queries", "20"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout)
    build = figures["build"]
    assert build["titles"] == 600 and build["copies"] >= 600
    assert build["index_s"] >= 0 and build["insert_s"] > 0
    assert set(figures["latency_ms"]) == {"words", "prefix", "author", "isbn", "accession", "filtered"}
    for kind, latency in figures["latency_ms"].items():
        assert latency["count"] == 20, kind
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    # Queries made from titles that exist must find them (the filtered kind may not).
    assert all(figures["no_result"][k] == 0 for k in ("words", "prefix", "author", "isbn", "accession"))
    assert figures["target_p95_ms"] == 30.0 and isinstance(figures["meets_target"], bool)


def test_search_bench_refuses_a_tiny_catalogue() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "search.py"), "--titles", "3"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2 and "--titles must be at least 10" in run.stderr
