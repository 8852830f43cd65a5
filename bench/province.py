"""A province's aggregate server fed by thousands of schools: ingest rate and report time.

    .venv/bin/python bench/province.py                          # 2,000 schools, ~3 million entries
    .venv/bin/python bench/province.py --schools 200 --entries-per-school 300   # a quick look
    .venv/bin/python bench/province.py --mqtt-schools 0         # the database path only

Makes a fresh PostgreSQL database (dropped after unless --keep), migrates it as an
aggregate database (server/aggregate) and feeds it what `--schools` simulated schools
publish upward in a school year (protocol/upward.py): each school's ledger, compressed
(checkouts, returns, a few renewals, offline replays and conflicts, ~`--entries-per-school`
entries, in batches of `--batch-size`), its `upward/school` message and its statistics and
Thông tư 16 snapshots. A share of the batches (`--duplicates`) is sent twice, as a school
resending after a restart does. Two paths:

(a) **database**: the batches, already parsed, straight into `ingest_batches` (the
    aggregate's own writer): the rate the database sustains.
(b) **mqtt**: `--mqtt-schools` schools (a shorter run) published by `--publishers`
    processes through a real Mosquitto to the aggregate server running in its own
    process (`python -m thuvien.cli aggregate --config FILE`) on a second fresh database:
    the end-to-end rate, from the first publish to the last entry committed.

Then times the province report over the database of path (a): the views
(`province_report`), then rendering it to xlsx and to PDF apart. One JSON object goes to
stdout, progress to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python bench/province.py`
    sys.path.insert(0, str(ROOT))

from bench.circulation import _say, run_and_print  # noqa: E402

TARGET_INGEST_PER_S = 5_000.0
TARGET_REPORT_S = 5.0
PG_URL_ENVS = ("THUVIEN_BENCH_PG_URL", "THUVIEN_TEST_PG_URL")
# Where this machine's PostgreSQL lets root in (Debian's cluster, trust on loopback).
DEFAULT_PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/postgres"
DB_PREFIX = "thuvien_bench_province_"

UTC = dt.timezone.utc
VIETNAM = dt.timezone(dt.timedelta(hours=7))  # no daylight saving in Vietnam
SCHOOL_YEAR = 2025                            # 2025-2026: a whole year, September to May
YEAR_START = dt.date(2025, 9, 5)
YEAR_END = dt.date(2026, 5, 31)
HOLIDAYS = {dt.date(2026, 1, 1), *(dt.date(2026, 2, 14) + dt.timedelta(days=d) for d in range(9)),
            dt.date(2026, 4, 27), dt.date(2026, 4, 30), dt.date(2026, 5, 1)}
SCHOOL_DAYS = [YEAR_START + dt.timedelta(days=d) for d in range((YEAR_END - YEAR_START).days + 1)
               if (YEAR_START + dt.timedelta(days=d)).weekday() != 6
               and YEAR_START + dt.timedelta(days=d) not in HOLIDAYS]

# (level, share of schools, grades); a few schools have two levels (liên cấp).
LEVELS = (("primary", 0.50, range(1, 6)), ("lower_secondary", 0.35, range(6, 10)),
          ("upper_secondary", 0.15, range(10, 13)))
# Who borrows what: (reader kind, item kind, loan days, share of the loans).
BORROWING = (("student", "TN", 7, 0.45), ("student", "TK", 3, 0.28), ("student", "GK", 150, 0.08),
             ("teacher", "NV", 30, 0.10), ("teacher", "TK", 14, 0.05), ("teacher", "TB", 7, 0.04))
OFFLINE_SHARE = 0.02
CONFLICT_SHARE = 0.002     # offline checkouts replayed onto a copy lent meanwhile: no loan
RENEW_SHARE = 0.03
LATE_SHARE = 0.12
# Conflict marks that changed no loan (server.circulation.NOT_APPLIED): counted by nobody.
NOT_APPLIED = frozenset({"on_loan_to_other", "not_loanable", "not_on_loan", "lent_again"})


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


# --- the simulated province -----------------------------------------------------------------

@dataclass(frozen=True)
class SchoolPlan:
    index: int
    site: str
    name: str
    commune: str
    levels: tuple[str, ...]
    entries: int            # about this many ledger entries in the year


def plan_schools(schools: int, entries_per_school: int, communes: int, seed: int) -> list[SchoolPlan]:
    """`schools` schools spread over `communes` commune offices; a school's size varies
    0.5x-1.5x around the mean, so the total stays about schools x entries_per_school."""
    rng = random.Random(seed)
    plans = []
    for index in range(schools):
        roll = rng.random()
        levels: tuple[str, ...]
        if roll < 0.05:
            levels = ("primary", "lower_secondary")
        else:
            cumulative = 0.0
            levels = (LEVELS[-1][0],)
            for name, share, _grades in LEVELS:
                cumulative += share
                if roll < cumulative:
                    levels = (name,)
                    break
        commune = index % communes
        plans.append(SchoolPlan(
            index=index, site=f"truong-{index + 1:04d}", name=f"Trường {index + 1:04d}",
            commune=f"Phường {commune + 1:03d}", levels=levels,
            entries=max(4, int(entries_per_school * rng.uniform(0.5, 1.5)))))
    return plans


@dataclass
class SchoolYearFigures:
    """What one school's own report would say, to check the aggregate against."""

    entries: int = 0
    checkouts: int = 0          # checkout entries (a conflict's included)
    returns: int = 0
    renewals: int = 0
    loans: int = 0              # checkouts that changed a loan: what the statistics count
    conflicts: int = 0
    by_month: Counter[str] = field(default_factory=Counter)      # "2025-09" -> loans
    by_grade: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)


def _grades(levels: Sequence[str]) -> list[int]:
    return [g for name, _share, grades in LEVELS if name in levels for g in grades]


def school_year_entries(plan: SchoolPlan, seed: int) -> tuple[list[dict[str, Any]], SchoolYearFigures]:
    """The school's ledger for the year as UpwardEntry JSON values, oldest first."""
    rng = random.Random(seed * 1_000_003 + plan.index)
    grades = _grades(plan.levels)
    classes = {g: [f"{g}A{k}" for k in range(1, rng.randint(3, 8))] for g in grades}
    copies = {kind: max(50, plan.entries // 3) for _r, kind, _d, _s in BORROWING}
    weights = [share for *_rest, share in BORROWING]
    day_count = len(SCHOOL_DAYS)
    events: list[tuple[dt.datetime, int, dict[str, Any]]] = []
    figures = SchoolYearFigures()
    order = 0
    planned = 0
    while planned < plan.entries:
        reader_kind, item_kind, loan_days, _share = rng.choices(BORROWING, weights)[0]
        day = SCHOOL_DAYS[min(day_count - 1, int(rng.random() ** 1.3 * day_count))]
        at = dt.datetime.combine(day, dt.time(7), VIETNAM) + dt.timedelta(seconds=rng.randrange(10 * 3600))
        item = f"{item_kind}.{rng.randrange(1, copies[item_kind]):05d}"
        reader: dict[str, Any] = {"reader_kind": reader_kind}
        if reader_kind == "student":
            grade = rng.choice(grades)
            reader.update(reader_class=rng.choice(classes[grade]), reader_grade=grade)
        due = day + dt.timedelta(days=loan_days)
        offline = rng.random() < OFFLINE_SHARE
        server_at = at + dt.timedelta(minutes=rng.randint(5, 600)) if offline else at + dt.timedelta(
            milliseconds=rng.randint(5, 400))
        station = "kiosk-1" if rng.random() < 0.7 else "desk-1"
        checkout = {"op": "checkout", "item": item, "item_kind": item_kind, **reader, "station": station,
                    "station_at": _iso(at), "server_at": _iso(server_at), "due": due.isoformat()}
        if offline:
            checkout["offline"] = True
        conflict = offline and rng.random() < CONFLICT_SHARE / OFFLINE_SHARE
        if conflict:
            checkout["conflict"] = "on_loan_to_other"
        events.append((at, order, checkout))
        order += 1
        planned += 1
        if conflict:
            continue
        if rng.random() < RENEW_SHARE and planned < plan.entries:
            renew_at = at + dt.timedelta(days=max(1, loan_days - 1))
            due = due + dt.timedelta(days=loan_days)
            events.append((renew_at, order, {
                "op": "renew", "item": item, "item_kind": item_kind, **reader, "station": "desk-1",
                "station_at": _iso(renew_at), "server_at": _iso(renew_at), "due": due.isoformat()}))
            order += 1
            planned += 1
        late = rng.random() < LATE_SHARE
        back = due + dt.timedelta(days=rng.randint(1, 20)) if late else \
            day + dt.timedelta(days=rng.randint(0, loan_days))
        if back > YEAR_END or planned >= plan.entries:
            continue  # still on loan at the end of the year
        back_at = dt.datetime.combine(back, dt.time(7), VIETNAM) + dt.timedelta(
            seconds=rng.randrange(10 * 3600))
        back_at = max(back_at, at + dt.timedelta(minutes=1))
        ret = {"op": "return", "item": item, "item_kind": item_kind, **reader, "station": station,
               "station_at": _iso(back_at), "server_at": _iso(back_at + dt.timedelta(milliseconds=80)),
               "due": due.isoformat()}
        if back > due:
            ret["days_late"] = (back - due).days
        events.append((back_at, order, ret))
        order += 1
        planned += 1
    events.sort(key=lambda e: (e[0], e[1]))
    entries = []
    for seq, (at, _order, entry) in enumerate(events, start=1):
        entry = {"seq": seq, **entry}
        entries.append(entry)
        figures.entries += 1
        op = entry["op"]
        if op == "checkout":
            figures.checkouts += 1
            if entry.get("conflict") in NOT_APPLIED:
                figures.conflicts += 1
                continue
            figures.loans += 1
            figures.by_month[at.astimezone(VIETNAM).strftime("%Y-%m")] += 1
            figures.by_kind[entry["reader_kind"]] += 1
            if "reader_grade" in entry:
                figures.by_grade[entry["reader_grade"]] += 1
        elif op == "return":
            figures.returns += 1
        else:
            figures.renewals += 1
    return entries, figures


def ledger_payloads(site: str, entries: list[dict[str, Any]], batch_size: int) -> list[bytes]:
    """UpwardLedgerBatch payloads, as the school's publisher sends them (`"v":1` first)."""
    return [json.dumps({"v": 1, "site": site, "entries": entries[i:i + batch_size]},
                       ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            for i in range(0, len(entries), batch_size)]


def statistics_snapshot(plan: SchoolPlan, figures: SchoolYearFigures, rng: random.Random) -> dict[str, Any]:
    """A statistics snapshot (server/reports/statistics.py, schema 1) as the school's
    publisher sends it: the loans as its own ledger counts them, people reduced to class."""
    grades = _grades(plan.levels)
    students_per_grade = {g: rng.randint(80, 400) for g in grades}
    students = sum(students_per_grade.values())
    copies = int(students * rng.uniform(1.5, 6.0))
    level_students = {name: sum(n for g, n in students_per_grade.items() if g in grades_)
                      for name, _s, grades_ in LEVELS if name in plan.levels}
    minimum = {"primary": 2.0, "lower_secondary": 3.0, "upper_secondary": 3.0}
    coverage = []
    for level, count in level_students.items():
        level_copies = copies * count / students
        coverage.append({"level": level, "students": count, "own_copies": 0,
                         "shared_copies": round(level_copies, 2), "copies": round(level_copies, 2),
                         "per_student": round(level_copies / count, 2), "minimum": minimum[level],
                         "meets": level_copies / count >= minimum[level]})
    teachers = rng.randint(20, 80)
    return {
        "schema_version": 1, "site": plan.site, "school": plan.name, "levels": list(plan.levels),
        "period": {"school_year": SCHOOL_YEAR, "first_day": YEAR_START.isoformat(),
                   "last_day": YEAR_END.isoformat()},
        "generated_at": _iso(dt.datetime.now(UTC)),
        "stock": {"by_kind": [{"prefix": kind, "name_vi": kind, "name_en": kind, "titles": n // 4,
                               "copies": n, "withdrawn": n // 50}
                              for kind, n in (("GK", copies * 35 // 100), ("TK", copies * 28 // 100),
                                              ("TN", copies * 22 // 100), ("NV", copies * 8 // 100),
                                              ("TB", copies * 7 // 100))],
                  "by_subject": [], "copies": copies, "withdrawn": copies // 50},
        "coverage": {"levels": coverage,
                     "teachers": {"teachers": teachers, "kinds": ["NV"], "copies": teachers * 2,
                                  "per_teacher": 2.0, "minimum": None, "meets": None}},
        "loans": {"total": figures.loans, "read_in_library": None,
                  "by_month": [{"month": m, "loans": n} for m, n in sorted(figures.by_month.items())],
                  "by_grade": [{"grade": g, "loans": n} for g, n in sorted(figures.by_grade.items())],
                  "by_class": [],
                  "by_reader_kind": [{"kind": k, "loans": n} for k, n in sorted(figures.by_kind.items())]},
        "visits": {"total": 0, "by_month": []},
        "readers": [{"kind": "student", "registered": students, "new": students // 4},
                    {"kind": "teacher", "registered": teachers, "new": 2}],
        "top_titles": [],
        "top_readers": [{"class": f"{grades[0]}A1", "loans": 40}],
        "overdue": {"as_of": YEAR_END.isoformat(), "by_class": []},
        "equipment_by_teacher": [{"loans": 12}],
    }


def tt16_snapshot(plan: SchoolPlan, rng: random.Random) -> dict[str, Any]:
    """A Thông tư 16 snapshot (server/reports/tt16.py, schema 1), trimmed to a few criteria."""
    level = rng.choice((0, 1, 1, 1, 2, None))
    criterion = {"id": "1.3", "text_vi": "Tài liệu", "text_en": "Resources", "source": "data",
                 "value_type": "bool", "unit": None, "value": level != 0, "required_for": 1,
                 "indicator": False, "threshold_level1": None,
                 "meets_level1": None if level is None else level >= 1,
                 "meets_level2": None if level is None else level >= 2}
    return {"schema_version": 1, "circular": "16/2022/TT-BGDĐT", "site": plan.site, "school": plan.name,
            "levels": list(plan.levels), "school_year": f"{SCHOOL_YEAR}-{SCHOOL_YEAR + 1}",
            "first_day": YEAR_START.isoformat(), "last_day": YEAR_END.isoformat(),
            "generated_at": _iso(dt.datetime.now(UTC)), "overall_level": level,
            "groups": [{"id": str(g), "name_vi": f"Nhóm {g}", "name_en": f"Group {g}", "level": level,
                        "criteria": [criterion] if g == 1 else []} for g in range(1, 6)]}


@dataclass
class SchoolMessages:
    """Everything one school publishes upward in the year, as (topic, payload, retained)."""

    plan: SchoolPlan
    figures: SchoolYearFigures
    ledger: list[bytes]
    retained: list[tuple[str, bytes]]


def school_messages(plan: SchoolPlan, seed: int, batch_size: int) -> SchoolMessages:
    from protocol.upward import upward_report, upward_school

    entries, figures = school_year_entries(plan, seed)
    rng = random.Random(seed * 7 + plan.index)
    now = _iso(dt.datetime.now(UTC))
    retained = [
        (upward_school(plan.site), json.dumps(
            {"v": 1, "site": plan.site, "school_name": plan.name, "levels": list(plan.levels),
             "software_version": "bench", "at": now}, ensure_ascii=False).encode("utf-8")),
        *((upward_report(plan.site, name, SCHOOL_YEAR), json.dumps(
            {"v": 1, "site": plan.site, "name": name, "school_year": SCHOOL_YEAR, "generated_at": now,
             "data": data}, ensure_ascii=False).encode("utf-8"))
          for name, data in (("statistics", statistics_snapshot(plan, figures, rng)),
                             ("tt16", tt16_snapshot(plan, rng)))),
    ]
    return SchoolMessages(plan, figures, ledger_payloads(plan.site, entries, batch_size), retained)


def duplicated(count: int, share: float, rng: random.Random) -> list[int]:
    """Indexes of the batches sent a second time."""
    return sorted(rng.sample(range(count), round(count * share))) if share > 0 and count else []


# --- PostgreSQL: a fresh database per path ----------------------------------------------------

def admin_url(given: str | None) -> str:
    for candidate in (given, *(os.environ.get(name) for name in PG_URL_ENVS)):
        if candidate:
            return candidate
    return DEFAULT_PG_URL


class Databases:
    """Creates fresh databases on the server of `admin` and drops them at close (unless
    `keep`). Names carry this process's id."""

    def __init__(self, admin: str, keep: bool) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        self._url = make_url(admin)
        if self._url.get_backend_name() != "postgresql":
            raise RuntimeError(f"--pg-url must be a postgresql URL, not {self._url.drivername}")
        # CREATE / DROP DATABASE refuse to run inside a transaction.
        self._admin = create_engine(self._url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._keep = keep
        self._made: list[str] = []
        try:
            with self._admin.connect() as connection:
                self.server_version = connection.exec_driver_sql("SHOW server_version").scalar()
        except Exception as exc:  # noqa: BLE001  (say which server did not answer, and why)
            raise RuntimeError(f"PostgreSQL at {self._url.render_as_string(hide_password=True)} "
                               f"does not answer: {exc}") from None

    def create(self, label: str) -> str:
        name = f"{DB_PREFIX}{os.getpid()}_{label}"
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        self._made.append(name)
        return self._url.set(database=name).render_as_string(hide_password=False)

    def size_mb(self, url: str) -> float:
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with self._admin.connect() as connection:
            size = connection.exec_driver_sql(f"SELECT pg_database_size('{name}')").scalar()
        return round(int(size or 0) / 1e6, 1)

    def close(self) -> None:
        for name in self._made:
            if self._keep:
                _say(f"kept the database {name}")
                continue
            with contextlib.suppress(Exception), self._admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin.dispose()


def aggregate_config(url: str, plans: Sequence[SchoolPlan], mqtt_port: int | None = None) -> Any:
    from protocol.configfile import MqttConfig
    from server.aggregate.config import AggregateConfig, DatabaseConfig, SchoolEntry

    return AggregateConfig(
        name="Sở GD&ĐT Tỉnh Thử nghiệm", level="province", database=DatabaseConfig(url=url),
        mqtt=MqttConfig(host="127.0.0.1", port=mqtt_port or 1883),
        schools=[SchoolEntry(site=p.site, name=p.name, commune=p.commune, levels=list(p.levels))
                 for p in plans])


def aggregate_toml(path: Path, url: str, plans: Sequence[SchoolPlan], mqtt_port: int) -> Path:
    """The aggregate server's config file, its schools in a CSV beside it (as a province
    lists thousands)."""
    csv_path = path.with_name("schools.csv")
    with csv_path.open("w", encoding="utf-8", newline="") as out:
        out.write("site,name,commune,levels\n")
        for p in plans:
            out.write(f"{p.site},{p.name},{p.commune},{';'.join(p.levels)}\n")
    path.write_text(
        'version = 1\nname = "Sở GD&ĐT Tỉnh Thử nghiệm"\nlevel = "province"\n'
        f'schools_file = "{csv_path.name}"\n\n[database]\nurl = "{url}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\n\n[web]\nenabled = false\n',
        encoding="utf-8")
    return path


# --- (a) the database path -----------------------------------------------------------------------

@dataclass
class Sent:
    """What was sent, to check what the database counted."""

    schools: int = 0
    entries: int = 0            # distinct (site, seq)
    batches: int = 0
    duplicate_batches: int = 0
    duplicate_entries: int = 0  # entries sent a second time
    checkouts: int = 0
    returns: int = 0
    renewals: int = 0
    loans: int = 0              # checkouts that changed a loan
    snapshots: int = 0
    by_month: Counter[str] = field(default_factory=Counter)

    def add(self, messages: SchoolMessages) -> None:
        f = messages.figures
        self.schools += 1
        self.entries += f.entries
        self.checkouts += f.checkouts
        self.returns += f.returns
        self.renewals += f.renewals
        self.loans += f.loans
        self.by_month.update(f.by_month)
        self.batches += len(messages.ledger)
        self.snapshots += sum(1 for topic, _ in messages.retained if "/report/" in topic)

    def as_dict(self) -> dict[str, Any]:
        return {"schools": self.schools, "entries": self.entries, "batches": self.batches,
                "duplicate_batches": self.duplicate_batches, "duplicate_entries": self.duplicate_entries,
                "checkouts": self.checkouts, "returns": self.returns, "renewals": self.renewals,
                "loans": self.loans, "snapshots": self.snapshots}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def database_path(url: str, plans: Sequence[SchoolPlan], args: argparse.Namespace) -> dict[str, Any]:
    """Every school's year through `Ingest.ingest_batches`; only the ingest calls are timed."""
    from protocol.upward import UpwardLedgerBatch
    from server.aggregate.ingest import Ingest
    from server.aggregate.schema import make_engine, upgrade

    upgrade(url)
    engine = make_engine(url)
    config = aggregate_config(url, plans)
    ingest = Ingest(engine, config)
    ingest.sync_schools()
    rng = random.Random(args.seed)
    sent = Sent()
    ingest_s = generate_s = parse_s = snapshots_s = 0.0
    new_entries = 0
    replay: list[UpwardLedgerBatch] = []  # resent with the next chunk, as after a restart
    started = time.perf_counter()
    last_said = started
    try:
        for chunk in _chunks(plans, args.chunk_schools):
            t0 = time.perf_counter()
            made = [school_messages(plan, args.seed, args.batch_size) for plan in chunk]
            t1 = time.perf_counter()
            batches = [UpwardLedgerBatch.model_validate_json(p) for m in made for p in m.ledger]
            retained = [item for m in made for item in m.retained]
            t2 = time.perf_counter()
            for m in made:
                sent.add(m)
            again = [batches[i] for i in duplicated(len(batches), args.duplicates, rng)]
            t3 = time.perf_counter()
            new_entries += ingest.ingest_batches(replay + batches)
            t4 = time.perf_counter()
            result = ingest.ingest_payloads(retained)
            t5 = time.perf_counter()
            if result.malformed:
                raise RuntimeError(f"the aggregate refused {result.malformed} of the bench's snapshots")
            sent.duplicate_batches += len(replay)
            sent.duplicate_entries += sum(len(b.entries) for b in replay)
            replay = again
            generate_s += t1 - t0
            parse_s += t2 - t1
            ingest_s += t4 - t3
            snapshots_s += t5 - t4
            if time.monotonic() - last_said > 10 or sent.schools == len(plans):
                last_said = time.monotonic()
                _say(f"database path: {sent.schools}/{len(plans)} schools, {sent.entries:,} entries, "
                     f"{sent.entries / ingest_s:,.0f}/s in ingest")
        if replay:
            t3 = time.perf_counter()
            new_entries += ingest.ingest_batches(replay)
            ingest_s += time.perf_counter() - t3
            sent.duplicate_batches += len(replay)
            sent.duplicate_entries += sum(len(b.entries) for b in replay)
        stored = stored_counts(engine)
    finally:
        engine.dispose()
    return {
        "sent": sent.as_dict(),
        "stored": stored,
        "new_entries_returned": new_entries,
        "entries_counted_once": stored["entries"] == sent.entries == new_entries
        and stored["duplicates_counted"] == sent.duplicate_entries,
        "loans_match": stored["loans"] == sent.loans,
        "seconds": round(ingest_s, 3),
        "rate_per_s": round((sent.entries + sent.duplicate_entries) / ingest_s, 1) if ingest_s else None,
        "new_entries_per_s": round(new_entries / ingest_s, 1) if ingest_s else None,
        "snapshots_seconds": round(snapshots_s, 3),
        "generate_seconds": round(generate_s, 3),
        "parse_seconds": round(parse_s, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "_sent": sent,
    }


def stored_counts(engine: Any) -> dict[str, int]:
    """What the aggregate database holds, counted from its tables."""
    from sqlalchemy import text

    with engine.connect() as connection:
        entries, checkouts, returns, renewals = connection.execute(text(
            "SELECT count(*), count(*) FILTER (WHERE op = 'checkout'), "
            "count(*) FILTER (WHERE op = 'return'), count(*) FILTER (WHERE op = 'renew') "
            "FROM agg_entries")).one()
        loans = connection.execute(text("SELECT coalesce(sum(checkouts), 0) FROM agg_monthly_loans")).scalar()
        snapshots = connection.execute(text("SELECT count(*) FROM agg_snapshots")).scalar()
        schools = connection.execute(text("SELECT count(*) FROM agg_schools WHERE entries > 0")).scalar()
        counted = connection.execute(text("SELECT coalesce(sum(entries), 0) FROM agg_schools")).scalar()
        counters = dict(connection.execute(text("SELECT name, value FROM agg_counters")).all())
    return {"entries": int(entries), "checkouts": int(checkouts), "returns": int(returns),
            "renewals": int(renewals), "loans": int(loans), "snapshots": int(snapshots),
            "schools_with_entries": int(schools), "school_entry_counters": int(counted),
            # The aggregate's own counters: entries it saw again, payloads it refused.
            "duplicates_counted": int(counters.get("entries_duplicate", 0)),
            "malformed": int(counters.get("malformed", 0))}


# --- (b) the MQTT path ------------------------------------------------------------------------------

def _no_delay(_client: Any, _userdata: Any, sock: Any) -> None:
    # STACK.md: without TCP_NODELAY every QoS 1 acknowledgement waits ~40 ms for Nagle.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def publisher(number: int, port: int, plans: list[SchoolPlan], seed: int, batch_size: int,
              duplicates: float, inflight: int, ready: Any, go: Any, results: Any) -> None:
    """One publisher process: what its schools' bridges carry up in the year, sent as
    fast as the broker takes it (QoS 1), the duplicates resent at the end."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol.upward import upward_ledger

    try:
        rng = random.Random(seed * 31 + number)
        messages: list[tuple[str, bytes, bool]] = []
        ledger: list[tuple[str, bytes, bool]] = []
        sent = Sent()
        for plan in plans:
            made = school_messages(plan, seed, batch_size)
            sent.add(made)
            topic = upward_ledger(plan.site)
            ledger += [(topic, payload, False) for payload in made.ledger]
            messages += [(topic, payload, False) for payload in made.ledger]
            messages += [(topic_, payload, True) for topic_, payload in made.retained]
        # Resent at the end, as bridges do after a reconnect: chosen over all the batches
        # (a school has too few for a share of 2 % to pick any of its own).
        for index in duplicated(len(ledger), duplicates, rng):
            messages.append(ledger[index])
            sent.duplicate_batches += 1
            sent.duplicate_entries += ledger[index][1].count(b'"seq":')
        acked = threading.Semaphore(0)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-province-{os.getpid()}-{number}")
        client.on_socket_open = _no_delay
        client.on_publish = lambda *_a: acked.release()
        client.max_inflight_messages_set(inflight)
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port)
        client.loop_start()
        ready.put((number, len(messages)))
        go.wait()
        started = time.perf_counter()
        for topic, payload, retain in messages:
            info = client.publish(topic, payload, qos=1, retain=retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
        for _ in messages:
            if not acked.acquire(timeout=300):
                raise RuntimeError("the broker stopped acknowledging")
        seconds = time.perf_counter() - started
        client.disconnect()
        client.loop_stop()
        results.put((number, {"messages": len(messages), "seconds": seconds, "sent": sent.as_dict(),
                              "by_month": dict(sent.by_month)}))
    except BaseException as exc:  # noqa: BLE001  (the parent reports it)
        results.put((number, {"error": f"{type(exc).__name__}: {exc}"}))


LISTENER_SCRIPT = """
import logging, signal, sys, threading
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
from server.aggregate.config import load
from server.aggregate.ingest import Ingest
from server.aggregate.listener import UpwardListener
from server.aggregate.schema import make_engine
config = load(sys.argv[1])
engine = make_engine(config.database.url)
ingest = Ingest(engine, config)
ingest.sync_schools()
listener = UpwardListener(config, ingest)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
listener.start()
stop.wait()
listener.stop()
engine.dispose()
"""


class AggregateProcess:
    """`python -m thuvien.cli aggregate --config FILE` in its own process, stopped by SIGTERM."""

    def __init__(self, config_path: Path, log_path: Path, how: str = "cli") -> None:
        self._log = log_path.open("ab")
        if how == "cli":
            command = [sys.executable, "-m", "thuvien.cli", "aggregate", "--config", str(config_path)]
        else:  # the listener alone, no web: P3's MQTT ingest as `thuvien aggregate` runs it
            command = [sys.executable, "-c", LISTENER_SCRIPT, str(config_path)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.log_path = log_path

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
            raise RuntimeError(f"the aggregate server exited with code {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _say("the aggregate server ignored SIGTERM; killing it")
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def mqtt_path(url: str, plans: Sequence[SchoolPlan], args: argparse.Namespace, workdir: Path,
              databases: Databases) -> dict[str, Any]:
    from sqlalchemy import text

    from server.aggregate.schema import make_engine, upgrade
    from thuvien.broker import MosquittoBroker

    upgrade(url)
    # A province broker must queue for the aggregate server what thousands of bridges
    # send at once after an outage: Mosquitto's default (1,000 messages) drops the rest.
    broker = MosquittoBroker(extra_config="max_queued_messages 1000000\nmax_queued_bytes 0\n")
    broker.start()
    context = mp.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    workers: list[Any] = []
    server: AggregateProcess | None = None
    engine = make_engine(url)
    try:
        config_path = aggregate_toml(workdir / "aggregate.toml", url, plans, broker.port)
        server = AggregateProcess(config_path, workdir / "aggregate.log", args.aggregate)
        slices = [list(plans[i::args.publishers]) for i in range(args.publishers)]
        for number, mine in enumerate(slices):
            if not mine:
                continue
            worker = context.Process(target=publisher, name=f"publisher-{number}", args=(
                number, broker.port, mine, args.seed, args.batch_size, args.duplicates, args.inflight,
                ready, go, results))
            worker.start()
            workers.append(worker)
        _say(f"mqtt path: {len(workers)} publishers building {len(plans)} schools' messages ...")
        for _ in workers:
            number, count = ready.get(timeout=600)
            _say(f"publisher {number} ready with {count:,} messages")
        _wait_aggregate_ready(server, engine, broker.port, timeout=60)
        started = time.perf_counter()
        go.set()
        answers: dict[int, dict[str, Any]] = {}
        sent = Sent()
        while len(answers) < len(workers):
            server.check()
            number, answer = results.get(timeout=600)
            if "error" in answer:
                raise RuntimeError(f"publisher {number}: {answer['error']}")
            answers[number] = answer
            for key, value in answer["sent"].items():
                setattr(sent, key, getattr(sent, key) + value)
            sent.by_month.update(answer["by_month"])
        published_s = time.perf_counter() - started
        expected = sent.entries
        _say(f"mqtt path: {sent.entries:,} entries published in {published_s:.1f} s; waiting for the "
             "aggregate server")
        deadline = time.monotonic() + args.mqtt_timeout
        stored_entries = 0
        with engine.connect() as connection:
            # Done when every entry is stored and every resent one was seen (and counted
            # as a duplicate): the resends come last.
            while True:
                stored_entries = int(connection.execute(text(
                    "SELECT coalesce(sum(entries), 0) FROM agg_schools")).scalar())
                seen_again = int(connection.execute(text(
                    "SELECT coalesce(sum(value), 0) FROM agg_counters WHERE name = 'entries_duplicate'")).scalar())
                connection.commit()
                if (stored_entries >= expected and seen_again >= sent.duplicate_entries) \
                        or time.monotonic() > deadline:
                    break
                server.check()
                time.sleep(0.05)
        done_s = time.perf_counter() - started
        # The snapshots travel after each school's ledger: wait for the last of them too.
        snapshots_deadline = time.monotonic() + 30
        while stored_counts(engine)["snapshots"] < sent.snapshots and time.monotonic() < snapshots_deadline:
            time.sleep(0.2)
        stored = stored_counts(engine)
    finally:
        go.set()
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
        if server is not None:
            server.stop()
        engine.dispose()
        broker.stop()
    return {
        "schools": len(plans), "publishers": len(workers), "inflight_per_publisher": args.inflight,
        "sent": sent.as_dict(), "stored": stored,
        # A broker may deliver a message twice (QoS 1): more duplicates seen is no error.
        "entries_counted_once": stored["entries"] == sent.entries
        and stored["duplicates_counted"] >= sent.duplicate_entries,
        "loans_match": stored["loans"] == sent.loans,
        "complete": stored_entries >= sent.entries,
        "publish_seconds": round(published_s, 3),
        "seconds": round(done_s, 3),
        "rate_per_s": round((sent.entries + sent.duplicate_entries) / done_s, 1) if done_s else None,
        "new_entries_per_s": round(sent.entries / done_s, 1) if done_s else None,
        "database_mb": databases.size_mb(url),
    }


PROBE_SITE = "bench-probe"


def _wait_aggregate_ready(server: AggregateProcess, engine: Any, port: int, timeout: float) -> None:
    """Until the aggregate server stores what it is sent: a probe school's `upward/school`
    message, published every half second, shows up in `agg_schools` (the probe has no
    entries and is left out of every figure)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from sqlalchemy import text

    from protocol.upward import upward_school

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-province-probe-{os.getpid()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = json.dumps({"v": 1, "site": PROBE_SITE, "school_name": "probe", "levels": ["primary"],
                          "software_version": "bench", "at": _iso(dt.datetime.now(UTC))}).encode()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            server.check()
            client.publish(upward_school(PROBE_SITE), payload, qos=1)
            time.sleep(0.5)
            with engine.connect() as connection:
                if connection.execute(text("SELECT count(*) FROM agg_schools WHERE site = :site"),
                                      {"site": PROBE_SITE}).scalar():
                    return
    finally:
        client.disconnect()
        client.loop_stop()
    raise RuntimeError(f"the aggregate server stored nothing within {timeout:g} s (see {server.log_path})")


# --- the province report ------------------------------------------------------------------------

def report_timing(url: str, plans: Sequence[SchoolPlan], sent: Sent, args: argparse.Namespace,
                  workdir: Path) -> dict[str, Any]:
    """The province report over the database of the database path, `--repeat` times
    each (min and median): the views alone (`build_views`: the SQL and the rows), the
    whole report (`province_report`: views + the report's tables), then rendering it to
    xlsx and to PDF apart. Judged at the end of the simulated school year, so that a
    school that sent its year counts as reporting."""
    import statistics

    from server.aggregate.reports import province_report, render
    from server.aggregate.schema import make_engine
    from server.aggregate.views import Filters, build_views
    from server.db import session_factory
    from server.reports.pdf import register_fonts

    engine = make_engine(url)
    sessions = session_factory(engine)
    config = aggregate_config(url, plans)
    now = dt.datetime.combine(YEAR_END, dt.time(18), VIETNAM)
    register_fonts()
    try:
        timings: dict[str, list[float]] = {"views": [], "build": [], "xlsx": [], "pdf": []}
        sizes: dict[str, int] = {}
        views = report = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            views = build_views(sessions, config, Filters(SCHOOL_YEAR), now)
            t1 = time.perf_counter()
            report = province_report(sessions, SCHOOL_YEAR, config, now=now)
            t2 = time.perf_counter()
            timings["views"].append(t1 - t0)
            timings["build"].append(t2 - t1)
        for kind in ("xlsx", "pdf"):
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                data = render(report, kind)
                timings[kind].append(time.perf_counter() - t0)
            sizes[kind] = len(data)
            (workdir / f"province.{kind}").write_bytes(data)
        commune = plans[0].commune
        t0 = time.perf_counter()
        province_report(sessions, SCHOOL_YEAR, config, commune=commune, now=now)
        commune_s = time.perf_counter() - t0
    finally:
        engine.dispose()
    return {**{f"{name}_s": {"min": round(min(values), 3), "median": round(statistics.median(values), 3)}
               for name, values in timings.items()},
            "one_commune_build_s": round(commune_s, 3),
            **{f"{kind}_kb": round(size / 1024, 1) for kind, size in sizes.items()},
            "checks": report_checks(views, plans, sent)}


def report_checks(views: Any, plans: Sequence[SchoolPlan], sent: Sent) -> dict[str, Any]:
    """The views' province totals against what was sent."""
    total = views.total
    months = {f"{m // 100}-{m % 100:02d}": n for m, n in views.months if n}
    communes = {p.commune for p in plans}
    return {
        "schools": total.schools, "listed": total.listed, "reported": total.reported,
        "loans": total.loans, "loans_sent": sent.loans,
        "loans_match": total.loans == sent.loans,
        "months_match": months == dict(sent.by_month),
        "school_loans_match": all(row.school_loans == row.loans for row in views.schools if row.listed),
        "communes": len(views.by_commune), "communes_match": len(views.by_commune) == len(communes),
        "tt16_schools": sum(total.tt16.values()),
    }


# --- the run ---------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="bench-province-"))
    databases = Databases(admin_url(args.pg_url), args.keep)
    plans = plan_schools(args.schools, args.entries_per_school, args.communes, args.seed)
    result: dict[str, Any] = {}
    try:
        _say(f"database path: {len(plans)} schools, about {sum(p.entries for p in plans):,} entries ...")
        url = databases.create("db")
        database = database_path(url, plans, args)
        sent: Sent = database.pop("_sent")
        database["database_mb"] = databases.size_mb(url)
        result["database"] = database
        _say(f"database path: {json.dumps(database, ensure_ascii=False)}")
        _say("province report ...")
        result["report"] = report_timing(url, plans, sent, args, workdir)
        _say(f"province report: {json.dumps(result['report'], ensure_ascii=False)}")
        if args.mqtt_schools:
            mqtt_plans = plans[:args.mqtt_schools]
            result["mqtt"] = mqtt_path(databases.create("mqtt"), mqtt_plans, args, workdir, databases)
            _say(f"mqtt path: {json.dumps(result['mqtt'], ensure_ascii=False)}")
    finally:
        databases.close()
        if args.keep:
            _say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    database, report, mqtt = result["database"], result["report"], result.get("mqtt")
    counted_once = database["entries_counted_once"] and (mqtt is None or mqtt["entries_counted_once"])
    ingest_ok = database["new_entries_per_s"] >= TARGET_INGEST_PER_S
    report_ok = report["build_s"]["median"] < TARGET_REPORT_S
    return {
        "machine": {"python": platform.python_version(), "postgresql": databases.server_version,
                    "cpus": os.cpu_count(), "loadavg_at_start": load_start,
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "schools": args.schools, "communes": args.communes, "school_year": f"{SCHOOL_YEAR}-{SCHOOL_YEAR + 1}",
        "batch_size": args.batch_size, "duplicates_share": args.duplicates,
        **result,
        "targets": {"ingest_per_s": TARGET_INGEST_PER_S, "report_s": TARGET_REPORT_S,
                    "ingest_met": ingest_ok, "report_met": report_ok,
                    "mqtt_ingest_met": None if mqtt is None else mqtt["new_entries_per_s"] >= TARGET_INGEST_PER_S},
        "counted_once": counted_once,
        "ok": bool(ingest_ok and report_ok and counted_once),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/province.py", description=__doc__.splitlines()[0])
    parser.add_argument("--schools", type=int, default=2000)
    parser.add_argument("--entries-per-school", type=int, default=1500,
                        help="ledger entries per school in the year, on average (0.5x-1.5x)")
    parser.add_argument("--communes", type=int, default=100, help="commune offices the schools belong to")
    parser.add_argument("--batch-size", type=int, default=200, help="entries per UpwardLedgerBatch "
                        "(the school publisher's default)")
    parser.add_argument("--duplicates", type=float, default=0.02, help="share of the batches sent twice")
    parser.add_argument("--chunk-schools", type=int, default=50,
                        help="database path: schools generated, then ingested, at a time")
    parser.add_argument("--mqtt-schools", type=int, default=200,
                        help="schools sent through Mosquitto (0: skip the MQTT path)")
    parser.add_argument("--publishers", type=int, default=4, help="MQTT publisher processes")
    parser.add_argument("--inflight", type=int, default=20, help="unacknowledged QoS 1 messages per publisher")
    parser.add_argument("--mqtt-timeout", type=float, default=900.0,
                        help="seconds to wait for the aggregate server to store everything")
    parser.add_argument("--aggregate", choices=("cli", "listener"), default="cli",
                        help="mqtt path: run `thuvien aggregate --config FILE` (cli), or only its "
                             "MQTT listener and ingest, without the web (listener)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the province report; min and median")
    parser.add_argument("--pg-url", default=None,
                        help="a PostgreSQL role that may create databases (default: $THUVIEN_BENCH_PG_URL, "
                             f"$THUVIEN_TEST_PG_URL, else {DEFAULT_PG_URL})")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the temporary folder")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json-out", default=None, help="also write the JSON to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.schools < 1 or args.entries_per_school < 4 or args.repeat < 1 or args.publishers < 1:
        parser.error("--schools >= 1, --entries-per-school >= 4, --repeat >= 1, --publishers >= 1")
    if not 0 <= args.duplicates <= 1 or not 1 <= args.batch_size <= 500:
        parser.error("--duplicates in 0..1, --batch-size in 1..500 (protocol.upward.MAX_BATCH)")
    if args.mqtt_schools > args.schools:
        parser.error("--mqtt-schools cannot exceed --schools")
    return run_and_print(run, args, ok=lambda result: result["ok"])


if __name__ == "__main__":
    sys.exit(main())
