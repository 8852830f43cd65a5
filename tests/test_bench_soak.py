"""The soak bench keeps working: a short run with an outage answers every request,
empties every outbox and prints its figures. Speed is judged from the JSON, not here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_soak_short_run_prints_its_figures() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.3", "--stations", "2",
         "--rate", "8", "--outage-requests", "120", "--outage-seconds", "1", "--warmup", "1",
         "--replay-window", "8", "--replay-timeout", "90", "--request-timeout", "10"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    # The figures (stdout) say which requests failed and why; stderr says how far it got.
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    figures = json.loads(run.stdout)
    assert figures["benchmark"] == "soak" and figures["stations"] == 2
    assert figures["errors"] == 0 and figures["errors_by_kind"] == {} and figures["all_answered"]

    requests = figures["requests"]
    assert requests["live_ok"] > 0
    assert requests["offline_accepted"] >= 120  # the outage's queue, and any timed-out try
    assert 0 <= requests["timed_out_online"] <= requests["offline_accepted"] - 120
    assert requests["replayed"] == requests["offline_accepted"]
    assert requests["done"] == requests["live_ok"] + requests["offline_accepted"] \
        + requests["offline_answered"]

    replay = figures["replay"]
    assert replay["queued"] == 120 and replay["replayed"] == 120 and replay["drained"]
    assert replay["window"] == 8 and len(replay["per_station"]) == 2
    assert replay["seconds"] > 0 and replay["rate_per_s"] > 0
    assert replay["restore_to_drained_s"] >= replay["restore_to_first_answer_s"] >= 0
    assert isinstance(replay["target_10000_in_60s"], bool)

    assert set(figures["processes"]) == {"server", "bench-001", "bench-002"}
    for sample in figures["processes"].values():
        for moment in ("start", "end"):
            assert sample[moment]["rss_kb"] > 0 and sample[moment]["fds"] > 0
        assert sample["growth"] == {key: sample["end"][key] - sample["start"][key]
                                    for key in ("rss_kb", "fds")}
    assert figures["outbox_at_end"] == {"bench-001": 0, "bench-002": 0}
