"""The registers (general, individual, textbooks, loans) from a real SQLite library with
receipts, a weeding decision, stocktakes and loans made through the circulation core;
each rendered to PDF (read back with pdftotext) and to Excel (read back with openpyxl)."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

import protocol
from server.config import ServerConfig
from server.models import Copy, Receipt, Stocktake, Title
from server.weeding import withdraw
from server.reports import registers
from server.reports.document import Report
from server.reports.pdf import render_pdf_bytes
from server.reports.registry import ReportParams, get_report
from server.reports.xlsx import render_xlsx_bytes

from circulation_sample import AN, BINH, GK, HOA, NV, TK, TK_LOST, TN, Library, WallClock, local

D = dt.date
YEAR = ReportParams(school_year=2026)
WITHDRAWN_NOTE = "Bìa bị rách; Thanh lý QĐ số 05/QĐ-THCS ngày 20/05/2027: mất"


# --- the library's records -----------------------------------------------------------------

def _records(library: Library) -> None:
    """Receipts 1-2 in school year 2026-2027 and 3 in the next; stocktakes closed in both
    years and one still open."""
    made = local(2026, 9, 1)
    with library.sessions.begin() as db:
        copies = {copy.accession_number: copy for copy in db.scalars(select(Copy))}
        bought = Receipt(number=1, receipt_no="PN01/2026", received_on=D(2026, 9, 10),
                         source="bought", source_detail="Nhà sách Fahasa", created_at=made)
        donated = Receipt(number=2, receipt_no="PN02/2026", received_on=D(2026, 10, 1),
                          source="donated", note="Hội cha mẹ học sinh tặng", created_at=made)
        district = Receipt(number=3, receipt_no="PN01/2027", received_on=D(2027, 9, 15),
                           source="district", created_at=made)
        db.add_all([bought, donated, district])
        for accession, price in [*[(n, 15000) for n in GK], *[(n, 32000) for n in TK], (NV, 50000)]:
            copies[accession].price = price
        for accession in TN:
            copies[accession].price = 25000
        copies[TK_LOST].price, copies[TK_LOST].acquired_on = 45000, D(2020, 1, 6)
        copies[TK_LOST].note = "Bìa bị rách"
        de_men = copies[TN[0]].title
        de_men.publisher, de_men.year = "NXB Kim Đồng", 2019
        copies[TK[0]].title.call_number = "51(075)"
        ngu_van = Title(title="Ngữ văn 7 tập hai", subject="Ngữ văn")
        atlat = Title(title="Atlat Địa lí Việt Nam", author="Nhiều tác giả")
        new = [Copy(title=ngu_van, accession_number=f"GK.{n:05d}", kind="GK", price=18000)
               for n in [*range(4, 11), 12]]
        new.append(Copy(title=atlat, accession_number="TK.100000", kind="TK", price=60000))
        db.add_all(new)
        db.flush()
        for accession in [*GK, *TK, NV]:
            copies[accession].receipt_id = bought.id
        for accession in TN:
            copies[accession].receipt_id = donated.id
        for copy in new:
            copy.receipt_id = district.id
        db.add_all([
            Stocktake(number=1, name="Kiểm kê cuối năm học", started_at=local(2027, 6, 1),
                      closed_at=local(2027, 6, 15, 10),
                      result={"total": 22, "present": 18, "missing": 1, "misplaced": 1,
                              "on_loan": 2, "value_missing": 45000}),
            Stocktake(number=2, name="Kiểm kê kho thiếu nhi", started_at=local(2027, 6, 18),
                      closed_at=local(2027, 6, 20, 10), result={"present": 5}),
            Stocktake(number=3, name="Đang kiểm kê", started_at=local(2027, 6, 25)),
            Stocktake(number=4, name="Kiểm kê đầu năm 2027", started_at=local(2027, 9, 18),
                      closed_at=local(2027, 9, 20, 10), result={"total": 30, "present": 30}),
        ])


@pytest.fixture
def records(library: Library, config: ServerConfig) -> Library:
    _records(library)
    # The weeding round goes through the weeding module, which also writes the copy's note.
    withdraw(library.sessions, config, "05/QĐ-THCS", D(2027, 5, 20),
             [(TK_LOST, "lost"), (TN[4], "worn"), ("GK.00012", "old_curriculum")],
             note="Biên bản ngày 18/05/2027", allow_over_10_percent=True, now=local(2027, 5, 21))
    return library


Due = dict[str, D]


@pytest.fixture
def loans(records: Library, ask: Any, clock: WallClock) -> Due:
    """Loans through the circulation core: TN.00001 lent to An and returned, then to
    Bình and returned; An keeps GK.00001 and TK.00001; Hoa renews NV.00001."""
    def do(op: str, **args: Any) -> protocol.Reply:
        reply, _ = ask(op, **args)
        assert reply.ok, reply.error
        return reply

    clock.now = local(2026, 10, 5)
    for item in (TN[0], GK[0], TK[0]):
        do("loan.checkout", patron=AN, item=item)
    do("loan.checkout", patron=HOA, item=NV)
    clock.now = local(2026, 10, 8, 15)
    do("loan.return", item=TN[0])
    clock.now = local(2026, 10, 9)
    do("loan.checkout", patron=BINH, item=TN[0])
    clock.now = local(2026, 10, 12, 10)
    do("loan.return", item=TN[0])
    clock.now = local(2026, 10, 20)
    renewed = do("loan.renew", patron=HOA, item=NV).result_as(protocol.RenewResult)
    return {"nv_due": renewed.due}


# --- reading the outputs back ---------------------------------------------------------------

def pdf_text(report: Report, tmp_path: Path, language: str = "vi") -> str:
    path = tmp_path / f"{report.name}-{language}.pdf"
    path.write_bytes(render_pdf_bytes(report, language))  # type: ignore[arg-type]
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def sheet(report: Report) -> list[tuple[Any, ...]]:
    book = openpyxl.load_workbook(io.BytesIO(render_xlsx_bytes(report)))
    return list(book.active.iter_rows(values_only=True))


def table(rows: list[tuple[Any, ...]], first_cell: str, skip: int = 0) -> list[tuple[Any, ...]]:
    """The lines under the row whose first cell is `first_cell`, after `skip` more rows
    (1 to pass the header under a heading), up to the next blank row."""
    start = next(i for i, row in enumerate(rows) if row[0] == first_cell) + 1 + skip
    out = []
    for row in rows[start:]:
        if all(value is None for value in row):
            break
        out.append(row)
    return out


def day(value: Any) -> D | None:
    return value.date() if isinstance(value, dt.datetime) else value


def build(name: str, library: Library, config: ServerConfig, params: ReportParams = YEAR) -> Report:
    return get_report(name).build(library.sessions, config, params)


# --- the general register -------------------------------------------------------------------

PART_I = "Phần I. Tổng số sách nhập thư viện"
PART_II = "Phần II. Tổng số sách xuất khỏi thư viện"
PART_III = "Phần III. Kiểm kê"


def test_general_register_parts_in_the_pdf(records: Library, config: ServerConfig,
                                           tmp_path: Path) -> None:
    report = build("register-general", records, config)
    text = pdf_text(report, tmp_path)
    assert "SỔ ĐĂNG KÝ TỔNG QUÁT" in text and "Trường THCS Nhựt Tảo" in text
    assert "Năm học 2026-2027" in text
    for heading in (PART_I, PART_II, PART_III):
        assert heading in text
    lines = text.splitlines()
    first = next(line for line in lines if "PN01/2026" in line)
    assert "10/09/2026" in first and "Trường tự mua" in first and "223.000" in first
    assert any("PN02/2026" in line and "Biếu tặng" in line for line in lines)
    assert "PN01/2027" not in text          # received in the next school year
    assert any("05/QĐ-THCS" in line and "20/05/2027" in line and "88.000" in line for line in lines)
    assert any("Kiểm kê cuối năm học" in line and "15/06/2027" in line and "45.000" in line
               for line in lines)
    assert "Đang kiểm kê" not in text and "Kiểm kê đầu năm 2027" not in text
    assert "Người lập sổ" in text and "Hiệu trưởng" in text
    assert "GK: Sách giáo khoa" in text


def test_general_register_numbers_in_excel(records: Library, config: ServerConfig) -> None:
    rows = sheet(build("register-general", records, config))
    # Entry no., date, receipt no., source, copies, GK TK NV TN TB, value, note
    part_i = table(rows, PART_I, skip=1)
    assert part_i[0][:11] == (1, dt.datetime(2026, 9, 10), "PN01/2026",
                              "Trường tự mua (Nhà sách Fahasa)", 8, 3, 4, 1, 0, 0, 223000)
    assert part_i[1][:11] == (2, dt.datetime(2026, 10, 1), "PN02/2026", "Biếu tặng", 5,
                              0, 0, 0, 5, 0, 125000)
    assert part_i[1][11] == "Hội cha mẹ học sinh tặng"
    assert part_i[2][0] == "Cộng" and part_i[2][4:11] == (13, 3, 4, 1, 5, 0, 348000)
    assert len(part_i) == 3
    # No., date, decision, lost worn outdated pests old-curriculum, copies, value, note
    part_ii = table(rows, PART_II, skip=1)
    assert part_ii[0][:10] == (1, dt.datetime(2027, 5, 20), "05/QĐ-THCS", 1, 1, 0, 0, 1, 3, 88000)
    assert part_ii[1][0] == "Cộng" and part_ii[1][8:10] == (3, 88000)
    part_iii = table(rows, PART_III, skip=1)
    assert part_iii == [
        (1, dt.datetime(2027, 6, 15), "Kiểm kê cuối năm học", 22, 18, 1, 1, 2, 45000, None, None, None),
        (2, dt.datetime(2027, 6, 20), "Kiểm kê kho thiếu nhi", None, 5, None, None, None, None,
         None, None, None),
    ]


def test_general_register_whole_book_and_english(records: Library, config: ServerConfig,
                                                 tmp_path: Path) -> None:
    report = build("register-general", records, config, ReportParams())
    part_i = table(sheet(report), PART_I, skip=1)
    assert [row[0] for row in part_i] == [1, 2, 3, "Cộng"]
    assert part_i[2][4:6] == (9, 8) and part_i[3][4] == 22
    text = pdf_text(report, tmp_path, "en")
    assert "GENERAL ACCESSION REGISTER" in text and "Part III. Stocktakes" in text
    assert "From the district office" in text and "Kiểm kê đầu năm 2027" in text
    assert "Principal" in text


# --- the individual register ----------------------------------------------------------------

def test_individual_register_one_kind_in_order(records: Library, config: ServerConfig,
                                               tmp_path: Path) -> None:
    report = build("register-individual", records, config, ReportParams(options={"kind": "tk"}))
    rows = sheet(report)
    lines = table(rows, "Ngày vào sổ")
    assert [row[1] for row in lines[:-1]] == [*TK, TK_LOST, "TK.00099", "TK.100000"]
    first = lines[0]
    assert first[:8] == (dt.datetime(2026, 9, 10), "TK.00001", "Tuyển tập đề thi Toán 6", None,
                         None, 32000, 1, "51(075)")
    lost = lines[4]
    assert day(lost[0]) == D(2020, 1, 6) and lost[5] == 45000 and lost[8] == WITHDRAWN_NOTE
    assert lines[6][2] == "Atlat Địa lí Việt Nam / Nhiều tác giả" and lines[6][6] == 3
    assert lines[-1][0] == "Cộng: 7 bản" and lines[-1][5] == 4 * 32000 + 45000 + 60000
    text = pdf_text(report, tmp_path)
    assert "SỔ ĐĂNG KÝ CÁ BIỆT" in text and "Sách tham khảo (TK)" in text
    assert WITHDRAWN_NOTE in " ".join(text.split()) and "TK.100000" in text
    assert "GK.00001" not in text
    assert text.index("TK.00099") < text.index("TK.100000")


def test_individual_register_all_kinds(records: Library, config: ServerConfig, tmp_path: Path) -> None:
    report = build("register-individual", records, config, ReportParams())
    lines = table(sheet(report), "Ngày vào sổ")[:-1]
    numbers = [row[1] for row in lines]
    assert numbers[:4] == ["GK.00001", "GK.00002", "GK.00003", "GK.00004"]
    assert numbers.index("GK.00012") < numbers.index("TK.00001") < numbers.index(NV) < numbers.index(TN[0])
    de_men = lines[numbers.index(TN[0])]
    assert de_men[2:5] == ("Dế Mèn phiêu lưu ký / Tô Hoài", "NXB Kim Đồng", 2019)
    assert lines[numbers.index(TN[4])][8] == "Thanh lý QĐ số 05/QĐ-THCS ngày 20/05/2027: rách nát"
    text = " ".join(pdf_text(report, tmp_path, "en").split())   # the note wraps in its cell
    assert "TN.00005 Dế Mèn phiêu lưu ký / Tô Hoài NXB Kim Đồng 2019 25,000 2 " \
        "Withdrawn, decision 05/QĐ-THCS of 20/05/2027: worn out" in text


# --- the textbook register ------------------------------------------------------------------

def test_textbook_register(loans: Due, records: Library, config: ServerConfig, tmp_path: Path) -> None:
    report = build("register-textbooks", records, config)
    lines = table(sheet(report), "Tên sách")
    # Title, grade, copies, ĐKCB runs, unit price, value, on loan, available, withdrawn
    assert lines == [
        ("Toán 6 tập một", 6, 3, "GK.00001-GK.00003", 15000, 45000, 1, 2, 0),
        ("Ngữ văn 7 tập hai", 7, 7, "GK.00004-GK.00010", 18000, 126000, 0, 7, 1),
        ("Cộng", None, 10, None, None, 171000, 1, 9, 1),
    ]
    text = pdf_text(report, tmp_path)
    assert "SỔ ĐĂNG KÝ SÁCH GIÁO KHOA" in text and "GK.00004-GK.00010" in text
    assert "Ngữ văn 7 tập hai" in text


@pytest.mark.parametrize(("title", "grade"), [
    ("Toán 6 tập một", 6), ("Vật lý 8 / Tập 1", 8), ("Tập 2 - Tiếng Việt 3", 3),
    ("Tin học 10", 10), ("Sách bài tập lớp 9", 9), ("Tuyển tập 2024", None), ("Toán 13", None),
])
def test_grade_from_the_title(title: str, grade: int | None) -> None:
    assert registers.grade_of(title) == grade


def test_accession_runs() -> None:
    assert registers.accession_ranges(["GK.00001", "GK.00002", "GK.00003", "GK.00007",
                                       "GK.00009", "GK.00010", "TK.00011"]) == \
        "GK.00001-GK.00003, GK.00007, GK.00009-GK.00010, TK.00011"
    assert registers.accession_ranges([]) == ""


# --- the loan registers ---------------------------------------------------------------------

def test_student_loans_pair_each_checkout_with_its_return(loans: Due, records: Library,
                                                          config: ServerConfig,
                                                          tmp_path: Path) -> None:
    report = build("loans-students", records, config)
    lines = table(sheet(report), "Ngày mượn")
    # Date lent, name, class, ĐKCB, title, due, returned, signature
    assert [(day(r[0]), r[1], r[2], r[3], day(r[6])) for r in lines] == [
        (D(2026, 10, 5), "Nguyễn Văn An", "6A1", TN[0], D(2026, 10, 8)),
        (D(2026, 10, 5), "Nguyễn Văn An", "6A1", GK[0], None),
        (D(2026, 10, 5), "Nguyễn Văn An", "6A1", TK[0], None),
        (D(2026, 10, 9), "Trần Thị Bình", "7A2", TN[0], D(2026, 10, 12)),
    ]
    assert day(lines[0][5]) == D(2026, 10, 12) and lines[0][4] == "Dế Mèn phiêu lưu ký"
    assert all(row[7] is None for row in lines)
    text = pdf_text(report, tmp_path)
    assert "SỔ MƯỢN SÁCH CỦA HỌC SINH" in text and "Ký nhận" in text
    row = next(line for line in text.splitlines() if "Trần Thị Bình" in line)
    assert "09/10/2026" in row and "TN.00001" in row and "12/10/2026" in row
    assert "Số lượt mượn: 4; đã trả: 2; chưa trả: 2." in text


def test_student_loans_of_one_class_and_a_period(loans: Due, records: Library,
                                                 config: ServerConfig, tmp_path: Path) -> None:
    one_class = build("loans-students", records, config,
                      ReportParams(school_year=2026, options={"class": "7A2"}))
    assert [row[1] for row in table(sheet(one_class), "Ngày mượn")] == ["Trần Thị Bình"]
    assert "Lớp 7A2" in pdf_text(one_class, tmp_path)
    early = build("loans-students", records, config,
                  ReportParams(since=D(2026, 10, 1), until=D(2026, 10, 8)))
    lines = table(sheet(early), "Ngày mượn")
    assert [row[3] for row in lines] == [TN[0], GK[0], TK[0]]
    assert "Từ ngày 01/10/2026 đến ngày 08/10/2026" in pdf_text(early, tmp_path)
    next_year = build("loans-students", records, config, ReportParams(school_year=2027))
    assert any(row[0] == "Không có dữ liệu." for row in sheet(next_year))
    assert "Không có dữ liệu." in pdf_text(next_year, tmp_path)


def test_teacher_loans_show_the_renewed_due_date(loans: Due, records: Library,
                                                 config: ServerConfig, tmp_path: Path) -> None:
    report = build("loans-teachers", records, config)
    lines = table(sheet(report), "Ngày mượn")
    assert len(lines) == 1
    lent, name, department, accession, title, due, returned, _ = lines[0]
    assert (day(lent), name, department, accession, title) == (
        D(2026, 10, 5), "Lê Thị Hoa", None, NV, "Phương pháp dạy học tích cực")
    assert day(due) == loans["nv_due"] and day(due) > D(2026, 11, 4) and returned is None
    text = pdf_text(report, tmp_path)
    assert "SỔ MƯỢN SÁCH CỦA GIÁO VIÊN" in text and "Tổ/bộ môn" in text
    assert "Nguyễn Văn An" not in text


# --- bad requests -------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "params", "words"), [
    ("register-individual", ReportParams(options={"kind": "XX"}), "Không có loại sách 'XX'"),
    ("register-individual", ReportParams(options={"klass": "6A1"}), "unknown option: klass"),
    ("loans-students", ReportParams(options={"class": "9Z9"}), "no class named '9Z9'"),
    ("loans-students", ReportParams(since=D(2026, 10, 9), until=D(2026, 10, 1)), "before it starts"),
    ("register-general", ReportParams(options={"kind": "TK"}), "Tùy chọn không dùng được"),
])
def test_bad_requests_say_why_in_both_languages(records: Library, config: ServerConfig, name: str,
                                                params: ReportParams, words: str) -> None:
    with pytest.raises(registers.RegisterError) as error:
        build(name, records, config, params)
    assert words in str(error.value) and " / " in str(error.value)


def test_registers_are_declared_for_the_cli_and_the_web() -> None:
    for name in ("register-general", "register-individual", "register-textbooks",
                 "loans-teachers", "loans-students"):
        spec = get_report(name)
        assert spec.group.vi == "Sổ sách" and spec.formats == ("pdf", "xlsx")
