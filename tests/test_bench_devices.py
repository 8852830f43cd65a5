"""The device benchmark keeps working: a short run decodes every generated frame, takes a
decision for every book through the gate on both readers, gets every alarm's event over
Mosquitto, and prints its figures in the documented shape.

Speed itself is judged from the benchmark's JSON, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
def test_devices_bench_short_run() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "devices.py"), "--passages", "9", "--camera-seconds", "0.2",
         "--poll-ms", "20", "--on-loan", "100"],
        capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout)
    assert figures["errors"] == 0
    for frame in ("ean13_isbn", "code128_accession", "empty"):
        assert figures["camera"][frame]["frames"] >= 1 and figures["camera"][frame]["fps"] > 0
    assert [gate["reader"] for gate in figures["gate"]] == ["simulated", "feig-emulated"]
    for gate in figures["gate"]:
        assert gate["decision_ms"]["count"] == 9
        # A third of the books pass by their AFI, a third by the on-loan set, a third alarm.
        assert {name: s["count"] for name, s in gate["decision_ms_by_case"].items()} == {
            "alarm_afi": 3, "pass_afi_on_loan": 3, "pass_on_loan": 3}
        assert gate["inventory_to_event_ms"]["count"] == 3
        assert 0 < gate["decision_ms"]["p50"] <= gate["decision_ms"]["p99"]
