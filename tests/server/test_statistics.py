"""The statistics report on a real SQLite file: a small library whose every number is
counted by hand below, loans made through the circulation core and written straight
into the ledger (for other months, conflicts and the edges of the school year)."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert, select

from server.circulation import Conflict
from server.config import LibraryConfig, ServerConfig
from server.models import Copy, CopyStatus, LedgerEntry, Reader, StationEvent, Title, Visit
from server.reports import registry, statistics
from server.reports.pdf import render_pdf
from server.reports.registry import ReportParams
from server.reports.statistics import build_for, collect, level_of_grade, statistics_snapshot
from server.reports.xlsx import render_xlsx_bytes

from circulation_sample import AN, BINH, HOA, NV, TK, TN, Library, local

D = dt.date
CHECKOUT = "loan.checkout"
YEAR = ReportParams(school_year=2026)
TODAY = D(2026, 11, 5)
NEWCOMER = "HS-2025-0001"      # a 6A1 student registered last school year
EQUIPMENT = "TB.00001"


def _id(db: Any, model: Any, column: Any, value: str) -> int:
    return db.scalar(select(model.id).where(column == value))


def _ledger(library: Library, reader: str, accession: str, at: dt.datetime,
            conflict: Conflict | None = None) -> None:
    with library.sessions.begin() as db:
        db.add(LedgerEntry(request_id=str(uuid.uuid4()), op="checkout",
                           copy_id=_id(db, Copy, Copy.accession_number, accession),
                           reader_id=_id(db, Reader, Reader.code, reader), station="kiosk-1",
                           station_at=at, server_at=at, conflict=conflict and conflict.value))


def _visit(library: Library, since: dt.datetime, count: int) -> None:
    with library.sessions.begin() as db:
        event = StationEvent(station="gate-1", event_id=str(uuid.uuid4()), type="gate.visitors",
                             at=since, received_at=since, data={})
        db.add(event)
        db.flush()
        db.add(Visit(station="gate-1", since=since, until=since + dt.timedelta(hours=1),
                     count=count, event_id=event.id))


@pytest.fixture
def year(library: Library, ask: Any, clock: Any) -> Library:
    """The small library of these tests; the counts each test expects are worked out here.

    Loans in 2026-2027, by month:
      9/2026  AN x2 (TN.00003, and TN.00004 at 00:30 on 1 September, local time), BINH x1
              (TN.00005, an offline replay that met a blocked reader: applied, counted)
      10/2026 AN TN.00001, BINH TN.00002 + TK.00001, HOA NV.00001 (through the circulation
              core on 5 October) and HOA the equipment TB.00001 (in the ledger)
      11/2026 AN TK.00002 (circulation core, 4 November)
    Not counted: BINH on 21/09 (an offline checkout of a copy lent to someone else: it
    changed no loan), AN at 23:30 on 31 August local time and on 20 August (last year),
    and AN's return on 4 November (a return is no loan).
    """
    with library.sessions.begin() as db:
        titles = {t.title: t for t in db.scalars(select(Title))}
        titles["Dế Mèn phiêu lưu ký"].subject = "Văn học"
        titles["Toán 6 tập một"].subject = "Toán học"
        kit = Title(title="Bộ thí nghiệm quang học", material="equipment")
        db.add(kit)
        db.add(Copy(title=kit, accession_number=EQUIPMENT, kind="TB"))
        db.scalars(select(Copy).where(Copy.accession_number == TK[3])).one().status = \
            CopyStatus.WITHDRAWN
        db.add(Reader(code=NEWCOMER, name="Đỗ Gia Huy", kind="student", class_name="6A1", grade=6,
                      created_at=local(2025, 10, 1)))
    for reader, item in ((AN, TN[0]), (BINH, TN[1]), (BINH, TK[0]), (HOA, NV)):
        reply, _ = ask(CHECKOUT, patron=reader, item=item)
        assert reply.ok, reply.error
    clock.advance(days=30)
    reply, _ = ask("loan.return", item=TN[0])
    assert reply.ok, reply.error
    reply, _ = ask(CHECKOUT, patron=AN, item=TK[1])
    assert reply.ok, reply.error
    _ledger(library, AN, TN[2], local(2026, 9, 15))
    _ledger(library, AN, TN[3], local(2026, 9, 1, 0, 30))
    _ledger(library, BINH, TN[4], local(2026, 9, 20), Conflict.READER_BLOCKED)
    _ledger(library, BINH, TN[4], local(2026, 9, 21), Conflict.ON_LOAN_TO_OTHER)
    _ledger(library, AN, TN[2], local(2026, 8, 31, 23, 30))
    _ledger(library, AN, TN[2], local(2026, 8, 20))
    _ledger(library, HOA, EQUIPMENT, local(2026, 10, 8))
    _visit(library, local(2026, 9, 10, 7), 30)
    _visit(library, local(2026, 10, 2, 7), 12)
    _visit(library, local(2026, 8, 25, 7), 99)   # last school year
    return library


def test_stock_by_kind_and_subject(year: Library, config: ServerConfig) -> None:
    s = collect(year.sessions, config, YEAR, TODAY)
    kinds = {k.prefix: (k.name.vi, k.titles, k.copies, k.withdrawn) for k in s.kinds}
    # TK: TK.00001-3, the reference dictionary and the lost copy (lost stays until weeded);
    # TK.00004 is withdrawn and counted apart.
    assert kinds == {"GK": ("Sách giáo khoa", 1, 3, 0), "TK": ("Sách tham khảo", 2, 5, 1),
                     "NV": ("Sách nghiệp vụ", 1, 1, 0), "TN": ("Sách thiếu nhi", 1, 5, 0),
                     "TB": ("Thiết bị dạy học", 1, 1, 0)}
    assert (s.stock, s.withdrawn) == (15, 1)
    assert s.subjects == [("Toán học", 1, 3), ("Văn học", 1, 5), (None, 4, 7)]


def test_loans_by_month_reader_class_grade_kind(year: Library, config: ServerConfig) -> None:
    s = collect(year.sessions, config, YEAR, TODAY)
    assert s.loans == 9
    assert s.loans_by_month == [("9/2026", 3), ("10/2026", 5), ("11/2026", 1), ("12/2026", 0),
                                ("1/2027", 0), ("2/2027", 0), ("3/2027", 0), ("4/2027", 0),
                                ("5/2027", 0), ("6/2027", 0), ("7/2027", 0), ("8/2027", 0)]
    assert s.loans_by_kind == [("student", 7), ("teacher", 2)]
    assert s.loans_by_grade == [(6, 4), (7, 3)]
    # 8A3 has one registered (blocked) student with no grade and no loans; it sorts as 8.
    assert s.loans_by_class == [("6A1", 6, 2, 4), ("7A2", 7, 1, 3), ("8A3", None, 1, 0)]
    assert [(r.code, r.loans) for r in s.top_readers] == [(AN, 4), (BINH, 3), (HOA, 2)]
    assert s.top_titles == [("Dế Mèn phiêu lưu ký", "Tô Hoài", 5), ("Tuyển tập đề thi Toán 6", None, 2),
                            ("Bộ thí nghiệm quang học", None, 1),
                            ("Phương pháp dạy học tích cực", None, 1)]
    assert [(r.code, r.loans) for r in s.equipment] == [(HOA, 1)]


def test_visits_readers_and_overdue(year: Library, config: ServerConfig) -> None:
    s = collect(year.sessions, config, YEAR, TODAY)
    assert s.visits_by_month[:3] == [("9/2026", 30), ("10/2026", 12), ("11/2026", 0)]
    # Registered: not inactive (the blocked student counts); new: created in the year.
    assert s.readers == [("student", 4, 3), ("teacher", 1, 1), ("staff", 0, 0)]
    # On 5 November: BINH's TN.00002 and TK.00001 (due 12 October) and HOA's NV.00001
    # (due 4 November) are overdue; AN's TK.00002, borrowed on 4 November, is not.
    assert s.overdue_by_class == [("7A2", 1, 2), (None, 1, 1)]
    later = collect(year.sessions, config, YEAR, D(2026, 11, 20))
    assert later.overdue_by_class == [("6A1", 1, 1), ("7A2", 1, 2), (None, 1, 1)]


def test_since_until_narrows_the_period(year: Library, config: ServerConfig) -> None:
    october = ReportParams(since=D(2026, 10, 1), until=D(2026, 10, 31))
    s = collect(year.sessions, config, october, TODAY)
    assert (s.loans, s.loans_by_month) == (5, [("10/2026", 5)])
    assert s.readers[0] == ("student", 4, 0)   # nobody registered in October
    assert s.window.school_year is None
    with pytest.raises(ValueError, match="Khoảng thời gian sai.* / bad period"):
        collect(year.sessions, config, ReportParams(since=D(2026, 10, 31), until=D(2026, 10, 1)))


def test_copies_per_student_against_the_minimum(year: Library, config: ServerConfig) -> None:
    # 4 students; 14 books (the equipment is no book): 3.5 a student, under 4.
    [coverage] = collect(year.sessions, config, YEAR, TODAY).coverage
    assert (coverage.level, coverage.students, coverage.copies, coverage.minimum) == \
        ("lower_secondary", 4, 14, 4)
    assert coverage.ratio == pytest.approx(3.5) and coverage.meets is False


@pytest.mark.parametrize(("copies", "meets"), [(1_600, True), (1_599, False)])
def test_a_lower_secondary_school_of_400_students(library: Library, config: ServerConfig,
                                                  copies: int, meets: bool) -> None:
    with library.sessions.begin() as db:
        db.execute(insert(Reader), [
            {"code": f"HS-X-{n:04d}", "name": f"Học sinh {n}", "kind": "student",
             "class_name": f"{6 + n % 4}A1", "grade": 6 + n % 4, "created_at": local(2026, 9, 1)}
            for n in range(397)])   # with AN, BINH and the blocked student: 400
        title = Title(title="Truyện đọc thêm")
        db.add(title)
        db.flush()
        already = 15   # the sample's copies, all books, none withdrawn
        db.execute(insert(Copy), [{"title_id": title.id, "accession_number": f"TK.{n + 1000:05d}",
                                   "kind": "TK"} for n in range(copies - already)])
    [coverage] = collect(library.sessions, config, YEAR, TODAY).coverage
    assert (coverage.students, coverage.copies) == (400, copies)
    assert coverage.ratio == pytest.approx(copies / 400)
    assert coverage.meets is meets


def test_level_of_grade() -> None:
    both = ["primary", "lower_secondary"]
    assert level_of_grade(3, "3A", both) == "primary"
    assert level_of_grade(None, "9A2", both) == "lower_secondary"
    assert level_of_grade(None, "Lá 1", both) is None           # a preschool class here
    assert level_of_grade(0, "Chồi", ["preschool", "primary"]) == "preschool"
    assert level_of_grade(None, None, ["preschool", "primary"]) == "preschool"
    assert level_of_grade(11, "11A", both) is None
    assert level_of_grade(11, "11A", ["lower_secondary"]) == "lower_secondary"  # one level: all
    assert level_of_grade(None, "12.6", ["lower_secondary", "upper_secondary"]) == "upper_secondary"


def test_multi_level_school(year: Library, config: ServerConfig) -> None:
    config = config.model_copy(update={"library": LibraryConfig(levels=["primary", "lower_secondary"])})
    with year.sessions.begin() as db:
        db.add_all([Reader(code=f"HS-TH-{n}", name=f"Học sinh {n}", kind="student", class_name="3A",
                           grade=3, created_at=local(2026, 9, 1)) for n in range(2)])
        db.add(Reader(code="HS-MN-1", name="Bé Na", kind="student", class_name="Lá",
                      created_at=local(2026, 9, 1)))
        tieng_viet = Title(title="Tiếng Việt 3 – Tập một")
        db.add_all([Copy(title=tieng_viet, accession_number=f"GK.{n:05d}", kind="GK")
                    for n in range(10, 14)])
    s = collect(year.sessions, config, YEAR, TODAY)
    levels = {c.level: c for c in s.coverage}
    # Books 18: own textbooks primary 4 (Tiếng Việt 3), lower secondary 3 (Toán 6); 11 shared
    # among the 6 students with a level; the "Lá" child has no level in this school.
    primary, lower, unknown = levels["primary"], levels["lower_secondary"], levels[None]
    assert (primary.students, primary.own_copies, primary.minimum) == (2, 4, 3)
    assert (lower.students, lower.own_copies, lower.minimum) == (4, 3, 4)
    assert (unknown.students, unknown.copies, unknown.meets) == (1, 0, None)
    assert primary.ratio == pytest.approx(4 / 2 + 11 / 6)
    assert lower.ratio == pytest.approx(3 / 4 + 11 / 6)
    assert primary.copies + lower.copies == pytest.approx(18)
    assert primary.meets is True and lower.meets is False


def test_preschool_teacher_minimum(year: Library, config: ServerConfig) -> None:
    preschool = config.model_copy(update={"library": LibraryConfig(levels=["preschool"])})
    teachers = collect(year.sessions, preschool, YEAR, TODAY).teachers
    assert (teachers.teachers, teachers.kinds, teachers.copies, teachers.minimum) == (1, ["NV"], 1, 3)
    assert teachers.meets is False
    more = collect(year.sessions, preschool, ReportParams(school_year=2026,
                                                          options={"teacher_kinds": "NV, TN"}), TODAY)
    assert (more.teachers.copies, more.teachers.meets) == (6, True)
    assert collect(year.sessions, config, YEAR, TODAY).teachers.meets is None  # no count asked


def _pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def test_pdf_has_the_vietnamese_headings(year: Library, config: ServerConfig, tmp_path: Path) -> None:
    path = tmp_path / "statistics.pdf"
    render_pdf(build_for(year.sessions, config, YEAR, TODAY), path)
    text = _pdf_text(path)
    for heading in ("THỐNG KÊ HOẠT ĐỘNG THƯ VIỆN", "Năm học 2026-2027", "Vốn tài liệu theo loại",
                    "Vốn tài liệu theo môn loại", "Lượt mượn theo tháng", "Lượt mượn theo khối",
                    "Lượt mượn của học sinh theo lớp", "Lượt vào thư viện theo tháng",
                    "Mười đầu sách được mượn nhiều nhất", "Mười bạn đọc mượn nhiều nhất",
                    "Sách quá hạn theo lớp", "Sử dụng thiết bị dạy học theo giáo viên",
                    "Lượt đọc tại chỗ", "chưa được ghi nhận", "Dế Mèn phiêu lưu ký", "Lê Thị Hoa",
                    "Chưa đạt"):
        assert heading in text, heading


def test_xlsx_reads_back(year: Library, config: ServerConfig) -> None:
    data = render_xlsx_bytes(build_for(year.sessions, config, YEAR, TODAY))
    sheet = load_workbook(io.BytesIO(data)).active
    rows = [tuple(c.value for c in row) for row in sheet.iter_rows()]
    start = next(i for i, row in enumerate(rows) if row[0] and str(row[0]).startswith("4. Lượt mượn"))
    assert rows[start + 2][:2] == ("9/2026", 3)
    assert rows[start + 3][:2] == ("10/2026", 5)
    assert ("Tổng", 9) in [row[:2] for row in rows[start:start + 16]]


def test_snapshot_is_plain_json(year: Library, config: ServerConfig) -> None:
    snapshot = statistics_snapshot(year.sessions, config, YEAR, TODAY)
    again = json.loads(json.dumps(snapshot))
    assert again == snapshot
    assert set(snapshot) == {"schema_version", "site", "school", "levels", "period", "generated_at",
                             "stock", "coverage", "loans", "visits", "readers", "top_titles",
                             "top_readers", "overdue", "equipment_by_teacher"}
    assert snapshot["period"] == {"school_year": "2026-2027", "first_day": "2026-09-01",
                                  "last_day": "2027-08-31"}
    assert snapshot["loans"]["total"] == 9 and snapshot["loans"]["read_in_library"] is None
    assert snapshot["loans"]["by_month"][1] == {"month": "10/2026", "loans": 5}
    assert snapshot["coverage"]["levels"][0]["per_student"] == 3.5
    assert snapshot["visits"]["total"] == 42
    assert snapshot["overdue"]["by_class"][0] == {"class": "7A2", "readers": 1, "loans": 2}


def test_registered_with_json(config: ServerConfig) -> None:
    spec = registry.all_reports()["statistics"]
    assert spec.build is statistics.build and spec.snapshot is statistics_snapshot
    assert spec.formats == ("pdf", "xlsx", "json") and spec.group.vi == "Thống kê"


def test_builder_runs_with_the_registry_signature(year: Library, config: ServerConfig) -> None:
    report = registry.get_report("statistics").build(year.sessions, config, YEAR)
    assert report.name == "statistics" and report.tables()[0].totals[3] == 15
