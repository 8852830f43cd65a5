"""Every report over a large library: the time to build it, and to render it to Excel and PDF.

    .venv/bin/python bench/reports.py                  # 100,000 copies, 2,000 readers, 1,000,000 entries
    .venv/bin/python bench/reports.py --copies 2000 --entries 20000 --readers 300 --repeat 1
    .venv/bin/python bench/reports.py --db /tmp/big.db  # build into this file once, reuse it next time

Builds a migrated SQLite file (`server.db.upgrade`) holding a lower-secondary school: titles
and copies of every kind (GK, TK, NV, TN, TB) brought in by ~200 receipts, a few weeding
rounds, two closed stocktakes with their scans, students in classes 6A1..9A12 and teachers,
gate visits, and a ledger of checkout/return pairs from the start of the last school year
to now, with the loans still open. Then, for every report in `server.reports.registry`,
times `spec.build(sessions, config, params)` (SQL and shaping) and, apart, rendering the
report to xlsx and to pdf. One JSON object goes to stdout; progress to stderr.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib
import importlib.util
import json
import os
import pkgutil
import platform
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python bench/reports.py`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402  (comes with opencv-python-headless)

from bench.circulation import _say, run_and_print  # noqa: E402
from bench.search import _isbn13, _vocabulary  # noqa: E402

TARGET_BUILD_S = 2.0
# Report modules the lead has not listed in `registry._MODULES` yet are imported too, so a
# run made while the reports are being written still times them all.
EXTRA_MODULES = ("server.weeding", "server.stocktake", "server.equipment")

UTC = dt.timezone.utc
VIETNAM = dt.timezone(dt.timedelta(hours=7))  # no daylight saving in Vietnam
DAY_US = 86_400_000_000
EPOCH = dt.date(1970, 1, 1).toordinal()

# Share of the copies per kind, and copies per title (class sets of textbooks, a few of a
# novel): together about copies/5 titles.
KIND_SHARE = {"GK": 0.35, "TK": 0.28, "TN": 0.22, "NV": 0.08, "TB": 0.07}
COPIES_PER_TITLE = {"GK": 20, "TK": 4, "TN": 3, "NV": 3, "TB": 5}
# Who borrows what, as a share of all checkouts.
BORROWING = {("student", "TN"): 0.45, ("student", "TK"): 0.30, ("student", "GK"): 0.10,
             ("teacher", "TK"): 0.04, ("teacher", "NV"): 0.05, ("teacher", "TN"): 0.02,
             ("teacher", "GK"): 0.02, ("teacher", "TB"): 0.02}
OPEN_SHARE = 0.01        # of the entries: loans still open now
CONFLICT_SHARE = 0.0005  # offline checkouts replayed onto a copy lent meanwhile: no loan
OFFLINE_SHARE = 0.02
# (subject, DDC class) per kind: the statistics group by subject (môn loại).
SUBJECTS = {
    "GK": [("Ngữ văn", "807"), ("Toán", "510"), ("Tiếng Anh", "428"), ("Khoa học tự nhiên", "500"),
           ("Lịch sử và Địa lí", "900"), ("Giáo dục công dân", "170"), ("Tin học", "004"),
           ("Công nghệ", "600"), ("Nghệ thuật", "700"), ("Hoạt động trải nghiệm", "370")],
    "TK": [("Văn học Việt Nam", "895.92"), ("Văn học nước ngoài", "808"), ("Toán học", "510"),
           ("Lịch sử", "959.7"), ("Địa lí", "915.97"), ("Từ điển", "413"), ("Tin học", "004")],
    "TN": [("Thiếu nhi", "895.9223"), ("Truyện tranh", "741.5"), ("Văn học dân gian", "398.2"),
           ("Khoa học thường thức", "500")],
    "NV": [("Nghiệp vụ sư phạm", "371"), ("Quản lý giáo dục", "379"), ("Tâm lý học", "150")],
    "TB": [("Thiết bị Khoa học tự nhiên", "507.8"), ("Thiết bị Toán", "510.78"),
           ("Bản đồ, tranh ảnh", "912"), ("Thiết bị Công nghệ", "607.8")],
}
EQUIPMENT_NAMES = ("Bộ thí nghiệm", "Mô hình", "Bản đồ", "Bộ tranh", "Bộ dụng cụ")
PUBLISHERS = ("NXB Giáo dục Việt Nam", "NXB Kim Đồng", "NXB Trẻ", "NXB Văn học",
              "NXB Đại học Sư phạm", "NXB Hội Nhà văn")
SOURCES = ("bought", "district", "province", "donated", "other")
WITHDRAWALS = (("worn", 0.003, 3), ("old_curriculum", 0.005, 2), ("lost", 0.002, 1))


def _date(day: dt.date) -> str:
    return day.isoformat()  # SQLAlchemy's Date on SQLite


def _stamp(us: int) -> str:
    """A UTC instant in microseconds as SQLAlchemy's DateTime stores it on SQLite."""
    day, rest = divmod(us, DAY_US)
    seconds, micro = divmod(rest, 1_000_000)
    return (f"{dt.date.fromordinal(EPOCH + day).isoformat()} {seconds // 3600:02d}:"
            f"{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micro:06d}")


def _local_us(day: dt.date, seconds: float) -> int:
    """UTC microseconds of `seconds` after local (Vietnam) midnight of `day`."""
    return (day.toordinal() - EPOCH) * DAY_US + int((seconds - 7 * 3600) * 1_000_000)


def _local_day(us: int) -> dt.date:
    return dt.date.fromordinal(EPOCH + (us + 7 * 3_600_000_000) // DAY_US)


def _school_year_first(day: dt.date) -> int:
    return day.year if day.month >= 9 else day.year - 1


def _open(day: dt.date) -> bool:
    # Sundays, the summer and the Tết week are closed: no loans then.
    return day.weekday() != 6 and day.month not in (6, 7, 8) and not (
        day.month == 2 and 10 <= day.day <= 20)


# --- the library -----------------------------------------------------------------------------

@dataclass
class Built:
    """What the build made: the sizes, and what the reports' parameters refer to."""

    sizes: dict[str, Any]
    school_year: int
    now: str
    build_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"sizes": self.sizes, "school_year": self.school_year, "now": self.now,
                "build_s": self.build_s}


class Builder:
    """Fills a migrated SQLite file through one raw sqlite3 connection, in big transactions."""

    def __init__(self, db: sqlite3.Connection, rng: random.Random, now: dt.datetime,
                 config: Any) -> None:
        self.db, self.rng = db, rng
        self.library = config.library
        self.policies = {(p.reader_kind, p.item_kind): (p.loan_days, p.long_loan)
                         for p in config.circulation.policy}
        self.now_us = int((now - dt.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
        self.today = now.astimezone(VIETNAM).date()
        self.year = _school_year_first(self.today) - 1   # the last school year
        self.created = _stamp(self.now_us)
        self.sizes: dict[str, Any] = {}
        self.phases: dict[str, float] = {}

    def phase(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.phases[name] = round(now - started, 2)
        _say(f"{name}: {self.phases[name]} s")
        return now

    # --- readers ---

    def readers(self, count: int) -> None:
        from server.seed import _adult_name, _student_name

        rng = self.rng
        teachers = max(1, round(count * 0.05))
        staff = 2 if count > teachers + 10 else 0
        students = count - teachers - staff
        classes = [f"{grade}A{n}" for grade in (6, 7, 8, 9) for n in range(1, 13)]
        rows = []
        for i in range(students):
            class_name = classes[i % len(classes)]
            gender = rng.choice(("Nam", "Nữ"))
            born = dt.date(self.year - int(class_name[0]) - 5, rng.randint(1, 12), rng.randint(1, 28))
            # A few left the school during the year: kept, never deleted.
            status = "inactive" if rng.random() < 0.01 else "active"
            rows.append((f"HS-{i + 1:05d}", f"01{i + 1:08d}", _student_name(rng, gender),
                         "student", class_name, int(class_name[0]), _date(born), gender, status))
        for i in range(teachers):
            gender = rng.choice(("Nam", "Nữ"))
            rows.append((f"GV-{i + 1:04d}", None, _adult_name(rng, gender), "teacher", None, None,
                         None, gender, "active"))
        for i in range(staff):
            rows.append((f"CB-{i + 1:04d}", None, _adult_name(rng, "Nữ"), "staff", None, None,
                         None, "Nữ", "active"))
        self.db.executemany(
            "INSERT INTO readers (code, moet_id, name, kind, class_name, grade, birth_date, "
            "gender, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, self.created) for row in rows])
        self.sizes.update(readers=count, students=students, teachers=teachers, staff=staff,
                          classes=len({row[4] for row in rows if row[4]}))

    # --- titles, receipts, copies ---

    def catalogue(self, copies: int) -> None:
        rng = self.rng
        words = _vocabulary(rng, 2500)
        weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(words))]
        # Receipts from ten years back to the last summer.
        first_year = self.year - 10
        receipts = max(10, copies // 500)
        dates = sorted(dt.date(first_year, 6, 1) + dt.timedelta(days=rng.randint(0, 365 * 11 + 60))
                       for _ in range(receipts))
        dates = [d - dt.timedelta(days=1) if d.weekday() == 6 else d for d in dates]
        receipt_rows = [(n, f"PN-{d.year}-{n:03d}", _date(d), rng.choice(SOURCES),
                         rng.choice(PUBLISHERS), None, "thuthu", self.created)
                        for n, d in enumerate(dates, 1)]
        self.db.executemany(
            "INSERT INTO receipts (number, receipt_no, received_on, source, source_detail, note, "
            "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", receipt_rows)

        titles: list[tuple[Any, ...]] = []
        plan: list[tuple[int, str, int, int]] = []   # (title id, kind, copies, main receipt)
        wants = {kind: round(copies * share) for kind, share in KIND_SHARE.items()}
        wants["GK"] += copies - sum(wants.values())
        for kind, want in wants.items():
            made = 0
            while made < want:
                n = min(want - made, max(1, round(rng.expovariate(1 / COPIES_PER_TITLE[kind]))))
                title_id = len(titles) + 1
                receipt = rng.randrange(receipts)
                subject, ddc = rng.choice(SUBJECTS[kind])
                text = " ".join(rng.choices(words, weights, k=rng.randint(2, 6))).capitalize()
                if kind == "GK":
                    text = f"{subject} {rng.randint(6, 9)} – {text}"
                elif kind == "TB":
                    text = f"{rng.choice(EQUIPMENT_NAMES)} {text}"
                year = max(1990, dates[receipt].year - rng.randint(0, 2))
                titles.append((title_id, text, f"Nhiều tác giả {title_id % 97}", rng.choice(PUBLISHERS),
                               year, _isbn13(rng, title_id), subject,
                               f"{ddc} {text[0].upper()}{100 + title_id % 900}", "vie",
                               "equipment" if kind == "TB" else "book"))
                plan.append((title_id, kind, n, receipt))
                made += n
        self.db.executemany(
            "INSERT INTO titles (id, title, author, publisher, year, isbn, subject, call_number, "
            "language, material) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", titles)

        pending = []
        for title_id, kind, n, receipt in plan:
            for i in range(n):
                # A class set is topped up by a later receipt.
                r = receipt if i < (n + 1) // 2 or n < 10 else rng.randint(receipt, receipts - 1)
                pending.append((r, title_id, kind))
        # ĐKCB numbers run in intake order per kind and are never reused, as in the register.
        pending.sort()
        library = self.library
        shelves = {"GK": "Kho sách giáo khoa", "TN": "Góc thiếu nhi", "NV": "Kho nghiệp vụ",
                   "TB": "Phòng thiết bị"}
        counters: Counter[str] = Counter()
        rows = []
        for r, title_id, kind in pending:
            counters[kind] += 1
            number = library.accession_number(kind, counters[kind])
            rows.append((title_id, number, number.replace(library.accession_separator, ""), kind,
                         "available", shelves.get(kind, "Kho mở"), rng.randint(15, 250) * 1000,
                         receipt_rows[r][2], r + 1))
        self.db.executemany(
            "INSERT INTO copies (title_id, accession_number, barcode, kind, status, location, price, "
            "acquired_on, receipt_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT INTO accession_counters (kind, last) VALUES (?, ?)",
                            sorted(counters.items()))
        self.sizes.update(titles=len(titles),
                          titles_by_kind=dict(sorted(Counter(p[1] for p in plan).items())),
                          copies=len(rows), receipts=receipts,
                          receipts_in_school_year=sum(_in_year(r[2], self.year) for r in receipt_rows),
                          copies_by_kind=dict(sorted(counters.items())))

    def set_aside(self) -> None:
        """Weeding rounds, and copies that are reference-only, lost or damaged."""
        rng, db = self.rng, self.db
        ids = [row[0] for row in db.execute("SELECT id FROM copies ORDER BY id")]
        rng.shuffle(ids)
        taken = 0
        rounds = {}
        for number, (reason, share, years_ago) in enumerate(WITHDRAWALS, 1):
            decided = dt.date(self.year + 2 - years_ago, 7, 15)
            decision = f"{number:02d}/QĐ-THCS-{decided.year}"
            db.execute("INSERT INTO withdrawals (number, decision_no, decided_on, note, created_by, "
                       "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (number, decision, _date(decided), None, "thuthu", self.created))
            n = max(1, round(len(ids) * share))
            rounds[number] = (n, decided)
            chosen = ids[taken:taken + n]
            taken += n
            db.executemany(
                "UPDATE copies SET status = 'withdrawn', withdrawal_id = ?, withdrawal_reason = ?, "
                "note = ? WHERE id = ?",
                [(number, reason, f"Thanh lý theo QĐ {decision}", copy_id) for copy_id in chosen])
        for status, share in (("reference", 0.02), ("lost", 0.002), ("damaged", 0.002)):
            n = round(len(ids) * share)
            db.executemany(f"UPDATE copies SET status = '{status}' WHERE id = ?",
                           [(copy_id,) for copy_id in ids[taken:taken + n]])
            taken += n
        # The weeding list is timed on the biggest round.
        biggest = max(rounds, key=lambda number: rounds[number][0])
        self.sizes.update(
            withdrawals=len(WITHDRAWALS), withdrawn_copies=sum(n for n, _ in rounds.values()),
            withdrawals_in_school_year=sum(_in_year(_date(d), self.year) for _, d in rounds.values()),
            weeding_decision=biggest, weeding_decision_copies=rounds[biggest][0])

    def stocktakes(self) -> None:
        """Two closed stocktakes, each at the end of a school year, with a scan per copy found."""
        db = self.db
        for number, first in enumerate((self.year - 1, self.year), 1):
            day = dt.date(first + 1, 6, 20)
            at = _stamp(_local_us(day, 9 * 3600))
            closed = _stamp(_local_us(day + dt.timedelta(days=3), 16 * 3600))
            db.execute("INSERT INTO stocktakes (id, number, name, started_at, started_by, closed_at, "
                       "closed_by) VALUES (?, ?, ?, ?, 'thuthu', ?, 'thuthu')",
                       (number, number, f"Kiểm kê cuối năm học {first}-{first + 1}", at, closed))
            # A few copies are not found, a few are found on the wrong shelf.
            db.execute(
                "INSERT INTO stocktake_scans (stocktake_id, copy_id, shelf, station, at) "
                "SELECT ?, id, CASE WHEN abs(random()) % 200 = 0 THEN 'Kho mở' ELSE location END, "
                "'quay', ? FROM copies WHERE acquired_on <= ? AND status NOT IN ('withdrawn', 'lost') "
                "AND abs(random()) % 1000 >= 4", (number, at, _date(day)))
            present, misplaced = db.execute(
                "SELECT count(*), sum(s.shelf IS NOT c.location) FROM stocktake_scans s "
                "JOIN copies c ON c.id = s.copy_id WHERE s.stocktake_id = ?", (number,)).fetchone()
            missing, value = db.execute(
                "SELECT count(*), coalesce(sum(price), 0) FROM copies WHERE acquired_on <= ? AND "
                "status NOT IN ('withdrawn', 'lost') AND id NOT IN "
                "(SELECT copy_id FROM stocktake_scans WHERE stocktake_id = ?)",
                (_date(day), number)).fetchone()
            result = {"present": present, "missing": missing, "misplaced": misplaced or 0,
                      "on_loan": 0, "value_missing": value}
            db.execute("UPDATE stocktakes SET result = ? WHERE id = ?", (json.dumps(result), number))
        self.sizes.update(stocktakes=2, stocktakes_in_school_year=1, stocktake_scans=db.execute(
            "SELECT count(*) FROM stocktake_scans").fetchone()[0])

    # --- gate visits ---

    def visits(self, days: list[dt.date]) -> None:
        rng = self.rng
        events, visits = [], []
        for day in days:
            for hour in range(7, 17):
                since, until = _local_us(day, hour * 3600), _local_us(day, (hour + 1) * 3600)
                count = rng.randint(0, 40)
                n = len(events) + 1
                events.append((n, "gate-1", f"visitors-{n}", "gate.visitors", _stamp(until),
                               _stamp(until + 200_000),
                               json.dumps({"since": _stamp(since), "count": count})))
                visits.append(("gate-1", _stamp(since), _stamp(until), count, n))
        self.db.executemany("INSERT INTO station_events (id, station, event_id, type, at, received_at, "
                            "data) VALUES (?, ?, ?, ?, ?, ?, ?)", events)
        self.db.executemany("INSERT INTO visits (station, since, until, count, event_id) "
                            "VALUES (?, ?, ?, ?, ?)", visits)
        self.sizes["visits"] = len(visits)

    # --- the ledger ---

    def ledger(self, entries: int) -> list[dt.date]:
        """Checkout/return pairs from the last school year's start to now, and the open
        loans. Drawn as numpy columns: a million entries one by one in Python would be most
        of the build."""
        rng, db, policies = self.rng, self.db, self.policies
        g = np.random.default_rng(rng.getrandbits(64))
        start = dt.date(self.year, 9, 5)
        days = [d for d in (start + dt.timedelta(days=i) for i in range((self.today - start).days))
                if _open(d)]
        day_ord = np.array([d.toordinal() for d in days], dtype=np.int64)
        year_end = np.array([dt.date(_school_year_first(d) + 1, 5, 31).toordinal() for d in days])
        readers = {kind: [row[0] for row in db.execute(
            "SELECT id FROM readers WHERE kind = ? AND status = 'active' ORDER BY id", (kind,))]
            for kind in ("student", "teacher")}
        pools = self._pools()
        groups = [group for group in BORROWING if pools.get(group[1]) and readers[group[0]]]
        shares = np.array([BORROWING[group] for group in groups])
        # Heavy and light readers, popular and forgotten titles.
        who = {kind: _zipf(g, ids, 0.7) for kind, ids in readers.items() if ids}
        what = {kind: _zipf(g, pool, 0.8) for kind, pool in pools.items()}

        open_loans = min(round(entries * OPEN_SHARE), sum(len(p) for p in pools.values()) // 2)
        conflicts = round(entries * CONFLICT_SHARE) if open_loans else 0
        pairs, odd = divmod(entries - open_loans - conflicts, 2)
        open_loans += odd
        parts = []
        for (reader_kind, kind), n in zip(groups, g.multinomial(pairs, shares / shares.sum())):
            loan_days, long_loan = policies.get((reader_kind, kind), (7, False))
            parts += _pairs(g, int(n), who[reader_kind], what[kind], day_ord, year_end,
                            loan_days, long_loan)
        loans, opened = self._open_loans(open_loans, groups, pools, who, days)
        parts += [opened, self._conflicts(conflicts, loans, who["student"])]
        columns = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        self._insert(columns, loans)
        at = columns["at"]
        school_start = _local_us(dt.date(self.year, 9, 1), 0)
        school_end = _local_us(dt.date(self.year + 1, 9, 1), 0)
        self.sizes.update(
            checkouts_in_school_year=self._checkouts(school_start, school_end),
            entries=len(at), loans_closed=pairs, open_loans=len(loans),
            open_loans_late=sum(1 for loan in loans if not loan[4] and loan[3] < self.today.toordinal()),
            conflicts=conflicts,
            ledger_first=_local_day(int(at.min())).isoformat(),
            ledger_last=_local_day(int(at.max())).isoformat(),
            entries_in_school_year=int(((at >= school_start) & (at < school_end)).sum()))
        return days

    def _open_loans(self, count: int, groups: list[tuple[str, str]], pools: dict[str, list[int]],
                    who: dict[str, Callable[[int], Any]], days: list[dt.date],
                    ) -> tuple[list[tuple[int, int, int, int, bool]], dict[str, Any]]:
        """Textbooks lent for this school year, and short loans of the last weeks, some
        late: one loan per copy, as the `loans` table allows."""
        rng = self.rng
        current = [d for d in days if _school_year_first(d) == self.year + 1] or days[-1:]
        recent = days[-30:]
        free = {kind: rng.sample(pool, len(pool)) for kind, pool in pools.items()}
        loans: list[tuple[int, int, int, int, bool]] = []   # copy, reader, at, due, long
        for reader_kind, kind in rng.choices(groups, [BORROWING[g] for g in groups], k=count):
            if not free[kind]:
                kind = max(free, key=lambda k: len(free[k]))
            loan_days, long_loan = self.policies.get((reader_kind, kind), (7, False))
            day = rng.choice(current if long_loan else recent)
            due = _due(day, loan_days, long_loan)
            loans.append((free[kind].pop(), int(who[reader_kind](1)[0]),
                          _local_us(day, rng.uniform(7 * 3600, 16.5 * 3600)), due.toordinal(),
                          long_loan))
        n = len(loans)
        at = np.array([loan[2] for loan in loans], dtype=np.int64)
        return loans, _block(
            at=at, server=at + np.array([rng.randint(20_000, 300_000) for _ in range(n)], dtype=np.int64),
            op=0, copy=[loan[0] for loan in loans], reader=[loan[1] for loan in loans],
            station=[rng.randrange(3) for _ in range(n)], due=[loan[3] for loan in loans],
            late=-1, offline=0, conflict=False, loan=np.arange(n))

    def _conflicts(self, count: int, loans: list[tuple[int, int, int, int, bool]],
                   students: Callable[[int], Any]) -> dict[str, Any]:
        """Offline checkouts replayed onto a copy lent meanwhile: recorded, no loan changed."""
        rng = self.rng
        chosen = [rng.choice(loans) for _ in range(count)]
        hour = 3_600_000_000
        at = np.array([loan[2] + rng.randint(hour, max(hour, self.now_us - loan[2] - hour))
                       for loan in chosen], dtype=np.int64)
        return _block(at=at, server=at + np.array([rng.randint(60, 3600) * 1_000_000 for _ in chosen],
                                                  dtype=np.int64),
                      op=0, copy=[loan[0] for loan in chosen], reader=students(count), station=1,
                      due=0, late=-1, offline=1, conflict=True, loan=-1)

    def _insert(self, columns: dict[str, Any], loans: list[tuple[int, int, int, int, bool]]) -> None:
        # seq in server order, as the server hands it out.
        order = np.lexsort((columns["op"], columns["server"]))
        c = {key: value[order] for key, value in columns.items()}
        n = len(order)
        due = np.array(_days(c["due"]), dtype=object)
        due[c["due"] == 0] = None
        late = c["late"].astype(object)
        late[c["late"] < 0] = None
        conflict = np.where(c["conflict"], "on_loan_to_other", None)
        self.db.executemany(
            "INSERT INTO ledger_entries (seq, request_id, op, copy_id, reader_id, station, "
            "station_at, server_at, due_on, days_late, offline, conflict) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            zip(range(1, n + 1), (f"bench-{seq:08d}" for seq in range(1, n + 1)),
                np.array(("checkout", "return"), dtype=object)[c["op"]].tolist(),
                c["copy"].tolist(), c["reader"].tolist(),
                np.array(STATIONS, dtype=object)[c["station"]].tolist(),
                _stamps(c["at"]), _stamps(c["server"]), due.tolist(), late.tolist(),
                c["offline"].tolist(), conflict.tolist()))
        seqs = dict(zip(c["loan"].tolist(), range(1, n + 1)))
        self.db.executemany(
            "INSERT INTO loans (copy_id, reader_id, loaned_at, due_on, renewals, long_loan, "
            "checkout_seq) VALUES (?, ?, ?, ?, 0, ?, ?)",
            [(copy, reader, _stamp(at), dt.date.fromordinal(due).isoformat(), int(long_loan), seqs[i])
             for i, (copy, reader, at, due, long_loan) in enumerate(loans)])
        self.db.execute("UPDATE copies SET status = 'on_loan' WHERE id IN (SELECT copy_id FROM loans)")

    def _checkouts(self, start: int, end: int) -> dict[str, int]:
        """Checkouts of books (not equipment) in the school year that made a loan, per kind
        of reader: what the loan registers list."""
        counts = dict.fromkeys(("student", "teacher", "staff"), 0)
        counts.update(self.db.execute(
            "SELECT r.kind, count(*) FROM ledger_entries l JOIN readers r ON r.id = l.reader_id "
            "JOIN copies c ON c.id = l.copy_id JOIN titles t ON t.id = c.title_id "
            "WHERE l.op = 'checkout' AND l.conflict IS NULL AND l.station_at >= ? "
            "AND l.station_at < ? AND t.material != 'equipment' GROUP BY r.kind",
            (_stamp(start), _stamp(end))).fetchall())
        return counts

    def _pools(self) -> dict[str, list[int]]:
        """Per kind, the copies that circulate."""
        pools: dict[str, list[int]] = {}
        for copy, kind in self.db.execute(
                "SELECT id, kind FROM copies WHERE status = 'available' ORDER BY id"):
            pools.setdefault(kind, []).append(copy)
        return pools


STATIONS = ("kiosk-1", "kiosk-2", "quay", "returnbox-1")
_KEYS = ("at", "server", "op", "copy", "reader", "station", "due", "late", "offline", "conflict", "loan")


def _block(**values: Any) -> dict[str, Any]:
    """Columns of entries; a scalar fills its column."""
    n = len(values["at"])
    return {key: np.full(n, values[key], dtype=np.int64) if np.isscalar(values[key])
            else np.asarray(values[key], dtype=np.int64) for key in _KEYS}


def _pairs(g: Any, n: int, who: Callable[[int], Any], what: Callable[[int], Any], day_ord: Any,
           year_end: Any, loan_days: int, long_loan: bool) -> list[dict[str, Any]]:
    """n checkouts and their returns, on open days, some late, a few offline."""
    i = g.integers(0, len(day_ord), n)
    day = day_ord[i]
    at = _local_array(day, g.integers(7 * 3600, 16 * 3600 + 1800, n)) + g.integers(0, 1_000_000, n)
    if long_loan:
        due = year_end[i]
        back = np.minimum(due, day + g.integers(1, 241, n))
    else:
        due = day + loan_days
        due += _weekday(due) == 6
        on_time = g.random(n) < 0.8
        back = np.where(on_time, day + g.integers(0, loan_days + 1, n),
                        due + 1 + g.exponential(10, n).astype(np.int64))
    back = np.minimum(back, day_ord[-1])
    back -= _weekday(back) == 6
    offline = g.random(n) < OFFLINE_SHARE
    # An offline checkout reaches the server minutes or hours later, before its return.
    delay = np.where(offline, g.integers(120, 10_801, n) * 1_000_000, g.integers(20_000, 300_001, n))
    back_at = np.maximum(_local_array(back, g.integers(7 * 3600, 16 * 3600 + 1800, n))
                         + g.integers(0, 1_000_000, n),
                         at + delay + g.integers(300, 7201, n) * 1_000_000)
    late = np.maximum(0, (back_at + 7 * 3_600_000_000) // DAY_US + EPOCH - due)
    readers, copies = who(n), what(n)
    return [_block(at=at, server=at + delay, op=0, copy=copies, reader=readers,
                   station=np.where(offline, 0, g.integers(0, 3, n)), due=due, late=-1,
                   offline=offline, conflict=False, loan=-1),
            _block(at=back_at, server=back_at + g.integers(20_000, 300_001, n), op=1, copy=copies,
                   reader=readers, station=g.integers(0, 4, n), due=0, late=late, offline=0,
                   conflict=False, loan=-1)]


def _weekday(ordinal: Any) -> Any:
    return (ordinal - 1) % 7   # date.fromordinal(1) is a Monday; 6 is Sunday


def _local_array(day: Any, seconds: Any) -> Any:
    return (day - EPOCH) * DAY_US + (seconds - 7 * 3600) * 1_000_000


def _stamps(us: Any) -> list[str]:
    """UTC microseconds as SQLAlchemy's DateTime stores them on SQLite, for a whole column."""
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="us").astype("S26")
    raw = text.view(np.uint8).reshape(-1, 26)
    raw[:, 10] = ord(" ")
    return raw.view("S26").ravel().astype("U26").tolist()


def _days(ordinals: Any) -> list[str]:
    return np.datetime_as_string((ordinals - EPOCH).astype("datetime64[D]")).tolist()


def _in_year(day: str, first: int) -> bool:
    """Whether an ISO date falls in the school year starting in `first`."""
    return f"{first}-09-01" <= day <= f"{first + 1}-08-31"


def _due(day: dt.date, loan_days: int, long_loan: bool) -> dt.date:
    if long_loan:
        return dt.date(_school_year_first(day) + 1, 5, 31)
    due = day + dt.timedelta(days=loan_days)
    return due + dt.timedelta(days=1) if due.weekday() == 6 else due


def _zipf(g: Any, population: list[int], exponent: float) -> Callable[[int], Any]:
    order = g.permutation(np.asarray(population, dtype=np.int64))
    weights = 1.0 / np.arange(1, len(order) + 1) ** exponent
    weights /= weights.sum()
    return lambda k: g.choice(order, size=k, p=weights)


@contextlib.contextmanager
def _bulk_load(db: sqlite3.Connection, tables: tuple[str, ...]) -> Iterator[None]:
    """Without the tables' indexes and triggers meanwhile: one sort per index afterwards is
    much cheaper than a b-tree insert per row, and the search index is rebuilt once. They
    come back from their own SQL in sqlite_master, as the migrations made them."""
    marks = ", ".join("?" for _ in tables)
    saved = db.execute(f"SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
                       f"AND sql IS NOT NULL AND tbl_name IN ({marks})", tables).fetchall()
    for kind, name, _sql in saved:
        db.execute(f'DROP {kind.upper()} "{name}"')
    yield
    for _kind, _name, sql in saved:
        db.execute(sql)


def build_library(path: Path, config: Any, copies: int, readers: int, entries: int, seed: int) -> Built:
    """A migrated SQLite file at `path` filled with the school; its sizes."""
    from server.db import make_engine, session_factory, upgrade
    from server.search import rebuild_index
    from server.stations import register

    started = time.perf_counter()
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    for name, kind in (("kiosk-1", "kiosk"), ("kiosk-2", "kiosk"), ("returnbox-1", "returnbox"),
                       ("gate-1", "gate"), ("quay", "desk")):
        register(session_factory(engine), name, kind)
    engine.dispose()
    now = dt.datetime.now(UTC).replace(microsecond=0)
    db = sqlite3.connect(path, isolation_level=None)
    # No journal and no fsync while building: a failed build is thrown away anyway.
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    builder = Builder(db, random.Random(seed), now, config)
    mark = builder.phase("migrate", started)
    db.execute("BEGIN")
    with _bulk_load(db, ("titles", "copies", "ledger_entries", "stocktake_scans")):
        builder.readers(readers)
        builder.catalogue(copies)
        builder.set_aside()
        mark = builder.phase("catalogue", mark)
        builder.stocktakes()
        mark = builder.phase("stocktakes", mark)
        days = builder.ledger(entries)
        mark = builder.phase("ledger", mark)
        builder.visits(days)
        mark = builder.phase("visits", mark)
    db.execute("COMMIT")
    db.close()
    engine = make_engine(url)
    with engine.begin() as connection:
        rebuild_index(connection)
    engine.dispose()
    mark = builder.phase("indexes", mark)
    db = sqlite3.connect(path, isolation_level=None)
    broken = db.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the built library breaks foreign keys: {broken[:5]}")
    db.execute("PRAGMA journal_mode=WAL")  # as the server opens it
    db.close()
    builder.phase("check", mark)
    builder.phases["total"] = round(time.perf_counter() - started, 2)
    builder.sizes["db_mb"] = round(path.stat().st_size / 1e6, 1)
    return Built(builder.sizes, builder.year, now.isoformat(), builder.phases)


# --- the reports -----------------------------------------------------------------------------

def discover_reports() -> tuple[dict[str, Any], dict[str, str]]:
    """Every report the registry knows, with the modules not yet listed in it imported too;
    the modules that failed to import, with why."""
    import server.reports
    from server.reports.registry import all_reports

    failed: dict[str, str] = {}
    names = [f"server.reports.{m.name}" for m in pkgutil.iter_modules(server.reports.__path__)]
    for name in (*names, *EXTRA_MODULES):
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  (another helper's module may be half-written)
            failed[name] = f"{type(exc).__name__}: {exc}"
    return all_reports(), failed


def server_config(path: Path, today: dt.date) -> Any:
    """The demo's config (policies, calendar of the current school year) on `path`."""
    from protocol.configfile import load_toml
    from server.config import ServerConfig
    from thuvien.demo import server_toml

    text = server_toml(path, 1883, today)
    text = re.sub(r'(?m)^site = ".*"$', 'site = "thcs-bench"', text, count=1)
    text = re.sub(r'(?m)^school_name = ".*"$', 'school_name = "Trường THCS Bench (dữ liệu thử)"',
                  text, count=1)
    return load_toml(text, "bench", ServerConfig)


def params_for(name: str, built: Built, options: dict[str, str] | None = None) -> Any:
    from server.reports.registry import ReportParams

    chosen = dict(options or {})
    if name == "weeding-list":
        chosen.setdefault("decision", str(built.sizes["weeding_decision"]))
    return ReportParams(school_year=built.school_year, options=chosen)


def _rows(report: Any) -> list[int]:
    return [len(table.rows) for table in report.tables()]


def _timed(action: Callable[[], Any], repeat: int, budget_s: float) -> tuple[dict[str, Any], Any]:
    """min and median over `repeat` runs; fewer when the runs so far took over `budget_s`."""
    samples, result = [], None
    while len(samples) < repeat and (not samples or sum(samples) < budget_s):
        gc.collect()
        started = time.perf_counter()
        result = action()
        samples.append(time.perf_counter() - started)
    return {"min": round(min(samples), 3), "median": round(statistics.median(samples), 3),
            "runs": len(samples)}, result


def time_report(spec: Any, sessions: Any, config: Any, built: Built, out: Path,
                args: argparse.Namespace) -> dict[str, Any]:
    from server.reports.pdf import render_pdf
    from server.reports.xlsx import render_xlsx

    params = params_for(spec.name, built)
    build_s, report = _timed(lambda: spec.build(sessions, config, params), args.repeat, args.budget)
    tables = _rows(report)
    rows = sum(tables)
    figures: dict[str, Any] = {"build_s": build_s, "rows": rows, "tables": tables,
                               "options": dict(params.options)}
    if args.builds_only:
        return figures
    xlsx = out / f"{spec.name}.xlsx"
    figures["xlsx_s"], _ = _timed(lambda: render_xlsx(report, xlsx), args.repeat, args.budget)
    figures["xlsx_kb"] = round(xlsx.stat().st_size / 1024)
    del report
    if rows < args.pdf_max_rows:
        report = spec.build(sessions, config, params)
        pdf = out / f"{spec.name}.pdf"
        figures["pdf_s"], _ = _timed(lambda: render_pdf(report, pdf), args.repeat, args.budget)
        figures["pdf_kb"] = round(pdf.stat().st_size / 1024)
        return figures
    figures["pdf"] = f"skipped ({rows} rows)"
    narrowed = _narrowed(spec, sessions, config, built, rows, args.pdf_max_rows)
    if narrowed is not None:
        options, report, narrowed_rows = narrowed
        pdf = out / f"{spec.name}-narrowed.pdf"
        pdf_s, _ = _timed(lambda: render_pdf(report, pdf), args.repeat, args.budget)
        figures["pdf_narrowed"] = {"options": options, "rows": narrowed_rows, "pdf_s": pdf_s,
                                   "pdf_kb": round(pdf.stat().st_size / 1024)}
    return figures


def _narrowed(spec: Any, sessions: Any, config: Any, built: Built, rows: int,
              pdf_max_rows: int) -> tuple[dict[str, str], Any, int] | None:
    """The same report narrowed by an option it takes (one kind of copy, one class), the
    biggest such part under `pdf_max_rows`: what a librarian would print."""
    kinds = sorted(built.sizes.get("copies_by_kind", {}).items(), key=lambda item: -item[1])
    choices = [{"kind": kind} for kind, _ in kinds] + [{"class": "6A1"}]
    best: tuple[dict[str, str], Any, int] | None = None
    for options in choices:
        try:
            report = spec.build(sessions, config, params_for(spec.name, built, options))
        except Exception:  # noqa: BLE001  (the report takes no such option)
            continue
        n = sum(_rows(report))
        if n < rows and n < pdf_max_rows and (best is None or n > best[2]):
            best = (options, report, n)
    return best


# --- the run ---------------------------------------------------------------------------------

def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".bench.json")


def prepare(args: argparse.Namespace, folder: Path, config: Any) -> tuple[Path, Built, bool]:
    """The library file: reused when `--db` names one this bench built with the same sizes."""
    path = Path(args.db) if args.db else folder / "library.db"
    wanted = {"copies": args.copies, "readers": args.readers, "entries": args.entries, "seed": args.seed}
    sidecar = _sidecar(path)
    if path.exists():
        if not sidecar.exists():
            raise RuntimeError(f"{path} exists but was not built by this bench; remove it or pick "
                               "another --db")
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
        if saved["wanted"] != wanted:
            raise RuntimeError(f"{path} was built with {saved['wanted']}, not {wanted}; remove it "
                               "or pick another --db")
        from server.db import upgrade

        upgrade(f"sqlite:///{path}")  # a migration added since: the reports expect it
        _say(f"reusing {path}")
        built = saved["built"]
        return path, Built(built["sizes"], built["school_year"], built["now"], built["build_s"]), True
    _say(f"building {args.copies} copies, {args.readers} readers, {args.entries} ledger entries ...")
    built = build_library(path, config, args.copies, args.readers, args.entries, args.seed)
    sidecar.write_text(json.dumps({"wanted": wanted, "built": built.as_dict()}, ensure_ascii=False,
                                  indent=2) + "\n", encoding="utf-8")
    return path, built, False


def run(args: argparse.Namespace) -> dict[str, Any]:
    from server.db import make_engine, session_factory
    from server.reports.pdf import register_fonts

    load_start = [round(x, 2) for x in os.getloadavg()]
    folder = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    try:
        path = Path(args.db) if args.db else folder / "library.db"
        config = server_config(path, dt.datetime.now(VIETNAM).date())
        path, built, reused = prepare(args, folder, config)
        reports, failed = discover_reports()
        if args.only:
            reports = {name: spec for name, spec in reports.items() if name in args.only}
        register_fonts()
        engine = make_engine(f"sqlite:///{path}", config.database.sqlite_synchronous)
        sessions = session_factory(engine)
        out = folder / "out"
        out.mkdir()
        figures: dict[str, Any] = {}
        for name, spec in sorted(reports.items()):
            _say(f"{name} ...")
            try:
                figures[name] = time_report(spec, sessions, config, built, out, args)
            except Exception as exc:  # noqa: BLE001  (one broken report must not hide the others)
                figures[name] = {"error": f"{type(exc).__name__}: {exc}"}
            _say(f"{name}: {json.dumps(figures[name], ensure_ascii=False)}")
        engine.dispose()
    finally:
        if not args.keep:
            _remove(folder)
        else:
            _say(f"kept {folder}" + (f" and {args.db}" if args.db else ""))
    slowest = max((f["build_s"]["median"] for f in figures.values() if "build_s" in f), default=0.0)
    return {
        "machine": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "cpus": os.cpu_count(), "loadavg_at_start": load_start,
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "sizes": built.sizes, "school_year": f"{built.school_year}-{built.school_year + 1}",
        "built_at": built.now, "build_s": built.build_s, "reused": reused,
        "repeat": args.repeat, "pdf_max_rows": args.pdf_max_rows,
        "reports": figures, "import_errors": failed,
        "target_build_s": TARGET_BUILD_S, "slowest_build_median_s": slowest,
        "ok": bool(figures) and not failed and all(
            "build_s" in f and f["build_s"]["median"] < TARGET_BUILD_S for f in figures.values()),
    }


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/reports.py", description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100_000)
    parser.add_argument("--readers", type=int, default=2_000)
    parser.add_argument("--entries", type=int, default=1_000_000, help="ledger entries")
    parser.add_argument("--repeat", type=int, default=3, help="runs per report; min and median")
    parser.add_argument("--pdf-max-rows", type=int, default=20_000,
                        help="render the PDF only under this many rows (else one kind of it)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="stop repeating a measure once its runs took this many seconds")
    parser.add_argument("--builds-only", action="store_true", help="time the builds, render nothing")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME", help="time only these reports")
    parser.add_argument("--db", default=None, metavar="PATH",
                        help="build the library into this file and keep it; reuse it if built before")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (DB, outputs)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json-out", default=None, help="also write the JSON to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.copies < 500 or args.readers < 100 or args.entries < 1000 or args.repeat < 1:
        parser.error("--copies >= 500, --readers >= 100, --entries >= 1000, --repeat >= 1")
    return run_and_print(run, args, ok=lambda result: result["ok"])


if __name__ == "__main__":
    sys.exit(main())
