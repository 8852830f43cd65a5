"""Three schools in two communes and one school not in the list, as they report upward,
with every figure the views must show counted by hand (see the comments).

School year 2026 (September 2026 - August 2027), Vietnam time (UTC+7). NOW is 25 May 2027.

th-an-hoi (Phường An Hội, primary) - checkouts in the year: 5 (Sep 2, Oct 3)
  1 checkout 10/09 student 3A (grade 3)
  2 checkout 30/09 18:30 UTC = 01/10 01:30 local: October; class 4B, no grade -> grade 4
  3 return; 4 checkout teacher (no grade); 5 checkout on_loan_to_other (changed no loan: not
  counted); 6 checkout reader_blocked (applied: counted, grade 5); 7 renew
  8 checkout 31/08 17:30 UTC = 01/09/2026 00:30 local: this year, September, grade 1
  9 checkout 31/08 16:30 UTC = 31/08 23:30 local: last school year, not counted
  10 return 20/05/2027 (its newest entry: fresh)
thcs-an-hoi (Phường An Hội, lower secondary) - 4 (Nov 3, May 1)
  1-3 checkouts 03/11 grades 6, 7, 8; 4 checkout 20/05/2027 grade 9;
  5 checkout not_loanable (not counted); 6 return
thcs-phu-tuc (Xã Phú Túc, primary + lower secondary) - 2 (Dec 1, Jan 1); newest entry
  15/01/2027: stale on 25/05 (more than 14 days); no Thông tư 16 snapshot
  1 checkout 01/12 student grade 2; 2 checkout 15/01/2027 staff
th-la (not listed; announces itself as primary) - 1 (Sep): 1 checkout 20/09 grade 1

Snapshots for 2026: th-an-hoi statistics (1,200 copies; 300 primary students, 1,000 books)
and tt16 level 1 (an older statistics snapshot arrives after it: ignored); thcs-an-hoi
statistics (2,000; 400 students, 1,800 books) and tt16 level 2; thcs-phu-tuc statistics
(900; 100 + 200 students, 300.4 + 500.3 books -> 801). th-an-hoi also has a 2025 statistics
snapshot (1,100 copies) that the 2026 views must not use.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from protocol.configfile import MqttConfig
from protocol.upward import (
    UpwardEntry,
    UpwardLedgerBatch,
    UpwardReport,
    UpwardSchool,
    upward_ledger,
    upward_report,
    upward_school,
)
from server.aggregate.config import AggregateConfig, SchoolEntry

UTC = dt.UTC
YEAR = 2026
NOW = dt.datetime(2027, 5, 25, 3, 0, tzinfo=UTC)
A, B, C, U = "th-an-hoi", "thcs-an-hoi", "thcs-phu-tuc", "th-la"
AN_HOI, PHU_TUC = "Phường An Hội", "Xã Phú Túc"

SCHOOLS = [
    SchoolEntry(site=A, name="Trường Tiểu học An Hội", commune=AN_HOI, levels=["primary"]),
    SchoolEntry(site=B, name="Trường THCS An Hội", commune=AN_HOI, levels=["lower_secondary"]),
    SchoolEntry(site=C, name="Trường TH-THCS Phú Túc", commune=PHU_TUC,
                levels=["primary", "lower_secondary"]),
]


def config(url: str, mqtt_port: int = 1883, client_id: str | None = None, **changes: Any) -> AggregateConfig:
    return AggregateConfig(name="Sở GD&ĐT Tỉnh Bến Tre", level="province", database={"url": url},
                           mqtt=MqttConfig(host="127.0.0.1", port=mqtt_port, client_id=client_id),
                           schools=SCHOOLS, **changes)


def at(text: str) -> dt.datetime:
    """"2026-09-10 02:00" in UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def entry(seq: int, op: str, when: str, *, kind: str = "student", klass: str | None = None,
          grade: int | None = None, conflict: str | None = None, item: str | None = None) -> UpwardEntry:
    moment = at(when)
    return UpwardEntry(seq=seq, op=op, item=item or f"TK.{seq:05d}", item_kind="TK", reader_kind=kind,
                       reader_class=klass, reader_grade=grade, station="kiosk-1", station_at=moment,
                       server_at=moment + dt.timedelta(seconds=1), conflict=conflict,
                       offline=conflict is not None)


LEDGERS: dict[str, list[UpwardEntry]] = {
    A: [
        entry(1, "checkout", "2026-09-10 02:00", klass="3A", grade=3),
        entry(2, "checkout", "2026-09-30 18:30", klass="4B"),
        entry(3, "return", "2026-10-02 03:00", klass="3A", grade=3),
        entry(4, "checkout", "2026-10-05 03:00", kind="teacher"),
        entry(5, "checkout", "2026-10-06 03:00", klass="5A", grade=5, conflict="on_loan_to_other"),
        entry(6, "checkout", "2026-10-07 03:00", klass="5A", grade=5, conflict="reader_blocked"),
        entry(7, "renew", "2026-10-08 03:00", klass="5A", grade=5),
        entry(8, "checkout", "2026-08-31 17:30", klass="1A", grade=1),
        entry(9, "checkout", "2026-08-31 16:30", klass="1A", grade=1),
        entry(10, "return", "2027-05-20 03:00", klass="1A", grade=1),
    ],
    B: [
        entry(1, "checkout", "2026-11-03 02:00", klass="6A1", grade=6),
        entry(2, "checkout", "2026-11-03 02:10", klass="7A1", grade=7),
        entry(3, "checkout", "2026-11-03 02:20", klass="8A1", grade=8),
        entry(4, "checkout", "2027-05-20 02:00", klass="9A1", grade=9),
        entry(5, "checkout", "2027-05-20 02:05", klass="9A1", grade=9, conflict="not_loanable"),
        entry(6, "return", "2027-05-20 02:10", klass="6A1", grade=6),
    ],
    C: [
        entry(1, "checkout", "2026-12-01 02:00", klass="2A", grade=2),
        entry(2, "checkout", "2027-01-15 02:00", kind="staff"),
    ],
    U: [entry(1, "checkout", "2026-09-20 02:00", klass="1B", grade=1)],
}

# The hand counts of the views for 2026 (see the module's docstring).
LOANS = {A: 5, B: 4, C: 2, U: 1}
MONTHS = {202609: 3, 202610: 3, 202611: 3, 202612: 1, 202701: 1, 202705: 1}
BY_READER = [("staff", -1, 1), ("student", 1, 2), ("student", 2, 1), ("student", 3, 1), ("student", 4, 1),
             ("student", 5, 1), ("student", 6, 1), ("student", 7, 1), ("student", 8, 1),
             ("student", 9, 1), ("teacher", -1, 1)]


def batches(site: str, size: int = 3) -> list[UpwardLedgerBatch]:
    entries = LEDGERS[site]
    return [UpwardLedgerBatch(site=site, entries=entries[i:i + size]) for i in range(0, len(entries), size)]


def statistics(site: str, year: int, copies: int, levels: list[tuple[str, int, float]],
               generated: str, loans: int = 0) -> UpwardReport:
    data = {
        "schema_version": 1, "site": site, "school": site, "levels": [lv for lv, _, _ in levels],
        "period": {"school_year": f"{year}-{year + 1}"}, "generated_at": generated,
        "stock": {"copies": copies, "withdrawn": 0, "by_kind": [], "by_subject": []},
        "coverage": {"levels": [{"level": lv, "students": n, "copies": c} for lv, n, c in levels]},
        "loans": {"total": loans, "by_month": []},
        "top_readers": [{"code": "HS-2026-0001", "name": "Nguyễn Văn An", "class": "6A1", "loans": 9}],
        "equipment_by_teacher": [{"code": "GV-01", "name": "Trần Thị Bình", "loans": 2}],
    }
    return UpwardReport(site=site, name="statistics", school_year=year, generated_at=at(generated), data=data)


def tt16(site: str, year: int, level: int | None, generated: str) -> UpwardReport:
    data = {"schema_version": 1, "circular": "16/2022/TT-BGDĐT", "site": site, "overall_level": level,
            "groups": [{"id": "1", "name_vi": "Tài nguyên thông tin và học liệu",
                        "name_en": "Information resources", "level": level, "criteria": []}]}
    return UpwardReport(site=site, name="tt16", school_year=year, generated_at=at(generated), data=data)


# In the order they are sent: the older th-an-hoi statistics after the newer one.
REPORTS: list[UpwardReport] = [
    statistics(A, YEAR, 1200, [("primary", 300, 1000.0)], "2027-05-01 01:00", loans=5),
    statistics(A, YEAR, 999, [("primary", 1, 1.0)], "2027-04-01 01:00"),
    statistics(A, YEAR - 1, 1100, [("primary", 280, 900.0)], "2026-08-01 01:00"),
    tt16(A, YEAR, 1, "2027-05-01 01:00"),
    statistics(B, YEAR, 2000, [("lower_secondary", 400, 1800.0)], "2027-05-02 01:00", loans=4),
    tt16(B, YEAR, 2, "2027-05-02 01:00"),
    statistics(C, YEAR, 900, [("primary", 100, 300.4), ("lower_secondary", 200, 500.3)],
               "2027-05-03 01:00", loans=2),
]

ANNOUNCEMENT = UpwardSchool(site=U, school_name="Trường Tiểu học Lá", levels=["primary"],
                            software_version="1.4.0", at=at("2027-05-01 00:00"))


def messages() -> list[tuple[str, bytes, bool]]:
    """Every message as a school sends it: (topic, payload, retained)."""
    out: list[tuple[str, bytes, bool]] = [(upward_school(U), ANNOUNCEMENT.model_dump_json().encode(), True)]
    for site in (A, B, C, U):
        out += [(upward_ledger(site), batch.model_dump_json().encode(), False) for batch in batches(site)]
    out += [(upward_report(r.site, r.name, r.school_year), r.model_dump_json().encode(), True) for r in REPORTS]
    return out


def malformed() -> list[tuple[str, bytes]]:
    """Five payloads that must be counted as malformed, and nothing stored of them."""
    good = batches(A)[0]
    other_site = UpwardLedgerBatch(site=B, entries=[entry(99, "checkout", "2026-10-01 01:00")])
    long_item = UpwardLedgerBatch(site=A, entries=[entry(98, "checkout", "2026-10-01 01:00", item="X" * 100)])
    wrong_year = REPORTS[3].model_copy(update={"school_year": 2030})
    return [
        (upward_ledger(A), b"{not json"),
        (upward_ledger(A), other_site.model_dump_json().encode()),      # names another site
        (upward_ledger(A), long_item.model_dump_json().encode()),       # does not fit the column
        (upward_report(A, "tt16", YEAR), wrong_year.model_dump_json().encode()),
        ("thuvien/v1/th-an-hoi/upward/ledger/extra", good.model_dump_json().encode()),
    ]


def payload_json(message: tuple[str, bytes, bool]) -> dict[str, Any]:
    return json.loads(message[1])
