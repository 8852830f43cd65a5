"""bench/province.py keeps working: a tiny province, run as the benchmark runs (a
subprocess, its own PostgreSQL databases, a real Mosquitto and `thuvien aggregate`),
prints figures whose counts match what it sent, and drops its databases.

Speed is judged from the benchmark's JSON, never here: a rate under the target only turns
`ok` false and the exit code to 1, which this test accepts as long as the two agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from pg import admin_url

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "province.py"
SCHOOLS, ENTRIES, COMMUNES, MQTT_SCHOOLS, SEED = 12, 120, 3, 8, 7
TINY = ["--schools", str(SCHOOLS), "--entries-per-school", str(ENTRIES), "--communes", str(COMMUNES),
        "--mqtt-schools", str(MQTT_SCHOOLS), "--publishers", "2", "--repeat", "1",
        "--duplicates", "0.25", "--chunk-schools", "5", "--seed", str(SEED), "--mqtt-timeout", "120"]


@pytest.fixture(scope="module")
def tiny_run() -> tuple[dict[str, Any], int, int, str]:
    admin = admin_url()
    process = subprocess.Popen([sys.executable, str(BENCH), *TINY, "--pg-url", admin], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode in (0, 1), stderr[-4000:]
    return json.loads(stdout), process.returncode, process.pid, admin


def _expected(schools: int) -> dict[str, int]:
    """What the bench's schools publish, counted here from its generator."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench.province import plan_schools, school_year_entries
    finally:
        sys.path.remove(str(ROOT))
    totals = {"entries": 0, "checkouts": 0, "returns": 0, "renewals": 0, "loans": 0}
    for plan in plan_schools(SCHOOLS, ENTRIES, COMMUNES, SEED)[:schools]:
        entries, figures = school_year_entries(plan, SEED)
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        totals["entries"] += len(entries)
        for op, key in (("checkout", "checkouts"), ("return", "returns"), ("renew", "renewals")):
            totals[key] += sum(1 for e in entries if e["op"] == op)
        totals["loans"] += figures.loans
    return totals


def _check_path(path: dict[str, Any], schools: int) -> None:
    sent, stored = path["sent"], path["stored"]
    expected = _expected(schools)
    assert sent["schools"] == schools == stored["schools_with_entries"]
    for name, value in expected.items():
        assert sent[name] == value, name
        assert stored[name] == value, name
    assert stored["school_entry_counters"] == expected["entries"]
    assert sent["snapshots"] == stored["snapshots"] == 2 * schools
    # Some batches went twice, and the aggregate saw each resent entry and stored it once.
    assert sent["duplicate_batches"] > 0 and sent["duplicate_entries"] > 0
    assert stored["duplicates_counted"] >= sent["duplicate_entries"]
    assert stored["malformed"] == 0
    assert path["entries_counted_once"] is True and path["loans_match"] is True
    assert path["seconds"] > 0 and path["rate_per_s"] > 0 and path["database_mb"] > 0


def test_the_database_path_stores_each_entry_once(tiny_run: tuple[dict[str, Any], int, int, str]) -> None:
    figures = tiny_run[0]
    database = figures["database"]
    _check_path(database, SCHOOLS)
    assert database["new_entries_returned"] == database["sent"]["entries"]
    assert database["stored"]["duplicates_counted"] == database["sent"]["duplicate_entries"]


def test_the_mqtt_path_through_mosquitto_and_thuvien_aggregate(
        tiny_run: tuple[dict[str, Any], int, int, str]) -> None:
    mqtt = tiny_run[0]["mqtt"]
    _check_path(mqtt, MQTT_SCHOOLS)
    assert mqtt["complete"] is True and mqtt["publishers"] == 2
    assert 0 < mqtt["publish_seconds"] <= mqtt["seconds"]


def test_the_province_report_adds_up(tiny_run: tuple[dict[str, Any], int, int, str]) -> None:
    figures = tiny_run[0]
    report = figures["report"]
    checks = report["checks"]
    assert checks["schools"] == checks["listed"] == SCHOOLS == checks["tt16_schools"]
    assert checks["loans"] == checks["loans_sent"] == _expected(SCHOOLS)["loans"]
    assert checks["loans_match"] and checks["months_match"] and checks["school_loans_match"]
    assert checks["communes"] == COMMUNES and checks["communes_match"]
    for name in ("views_s", "build_s", "xlsx_s", "pdf_s"):
        assert 0 < report[name]["min"] <= report[name]["median"], name
    assert report["xlsx_kb"] > 0 and report["pdf_kb"] > 0


def test_ok_is_the_targets_and_the_exit_code_says_the_same(
        tiny_run: tuple[dict[str, Any], int, int, str]) -> None:
    figures, returncode, _pid, _admin = tiny_run
    targets = figures["targets"]
    assert targets["ingest_per_s"] == 5000 and targets["report_s"] == 5
    assert targets["ingest_met"] is (figures["database"]["new_entries_per_s"] >= 5000)
    assert targets["report_met"] is (figures["report"]["build_s"]["median"] < 5)
    assert figures["counted_once"] is True
    assert figures["ok"] is (targets["ingest_met"] and targets["report_met"])
    assert returncode == (0 if figures["ok"] else 1)
    machine = figures["machine"]
    assert machine["cpus"] >= 1 and len(machine["loadavg_at_start"]) == 3 and machine["postgresql"]


def test_the_bench_drops_its_databases(tiny_run: tuple[dict[str, Any], int, int, str]) -> None:
    _figures, _returncode, pid, admin = tiny_run
    engine = create_engine(admin, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            left = connection.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :name"),
                                      {"name": f"thuvien\\_bench\\_province\\_{pid}\\_%"}).scalars().all()
    finally:
        engine.dispose()
    assert left == []
