"""README's "The librarian's records", line by line, as a librarian types it.

Each test runs one command of the README's block through the installed `thuvien`
console script, in one working folder, against one fresh SQLite server whose config is
`config/server.example.toml` with the database moved into the folder and the web off.
The tests share that folder and run in file order: each builds on the one before, as
the walkthrough does. The files a librarian brings (the sector database's export, the
teachers' list, a MARC file, a phiếu nhập) are made here with openpyxl and pymarc;
what comes out is read back with pdftotext, openpyxl and json.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from pymarc import Field, Indicators, MARCWriter, Record, Subfield

ROOT = Path(__file__).resolve().parents[1]
RECEIPT_NO = "01/PN"
RECEIPT_DAY = "2026-09-05"

# The sector database's export: a preamble, then the header the README names.
SECTOR_PREAMBLE: list[list[Any]] = [
    ["SỞ GIÁO DỤC VÀ ĐÀO TẠO TIỀN GIANG"], ["PHÒNG GD&ĐT HUYỆN CHỢ GẠO"],
    ["TRƯỜNG THCS NHỰT TẢO"], [], ["DANH SÁCH HỌC SINH NĂM HỌC 2026-2027"], []]
SECTOR_HEADER = ["STT", "Mã định danh Bộ GD&ĐT", "Họ tên", "Ngày sinh", "Giới tính", "Lớp học",
                 "Khối học"]
CLASS = "6A1"
STUDENTS_6A1 = ["Nguyễn Thị Mai", "Trần Văn Bình", "Lê Hoàng Yến", "Đặng Quốc Việt"]
STUDENTS = [  # (MOET id, name, born, gender, class, grade)
    ("0123450001", STUDENTS_6A1[0], "05/03/2015", "Nữ", CLASS, "Khối 6"),
    ("0123450002", STUDENTS_6A1[1], "11/07/2015", "Nam", CLASS, "Khối 6"),
    ("0123450003", STUDENTS_6A1[2], dt.datetime(2015, 1, 30), "Nữ", CLASS, "Khối 6"),
    ("0123450004", STUDENTS_6A1[3], "22/12/2015", "Nam", CLASS, "Khối 6"),
    ("0123450005", "Phạm Thu Hà", "02/02/2014", "Nữ", "7A2", "Khối 7"),
]
BROKEN_STUDENT = ("01234", "Võ Minh Quân", "09/09/2015", "Nam", CLASS, "Khối 6")  # 5-digit id
TEACHERS = [("GV-0101", "Trần Thị Hương", "12/05/1985", "Nữ", "Ngữ văn"),
            ("GV-0102", "Nguyễn Văn Lộc", "03/10/1979", "Nam", "Toán")]


def isbn13(first12: str) -> str:
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(first12))
    return first12 + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class Book:
    title: str
    author: str | None
    publisher: str
    year: int
    isbn: str
    subject: str
    call_number: str
    kind: str          # the ĐKCB prefix the receipt gives it
    quantity: int
    price: int


BOOKS = [
    Book("Dế Mèn phiêu lưu ký", "Tô Hoài", "Kim Đồng", 2020, isbn13("978604215007"),
         "Văn học Việt Nam", "895.9223 T450H", "TN", 3, 45_000),
    Book("Lịch sử Việt Nam bằng tranh", "Trần Bạch Đằng", "Trẻ", 2019, isbn13("978604111222"),
         "Lịch sử", "959.7 L302S", "TK", 4, 38_000),
    Book("Ngữ văn 6 tập một", None, "Giáo dục Việt Nam", 2021, isbn13("978604300123"),
         "Ngữ văn", "807 NG550V", "GK", 2, 24_000),
]
# On the receipt only: a title the catalogue does not have yet.
NEW_BOOK = Book("Từ điển Tiếng Việt thông dụng", "Hoàng Phê", "Đà Nẵng", 2018,
                isbn13("978604847001"), "Ngôn ngữ", "495.922 T550Đ", "TK", 2, 150_000)
TOTAL_VALUE = sum(b.quantity * b.price for b in [*BOOKS, NEW_BOOK])
COPIES = sum(b.quantity for b in [*BOOKS, NEW_BOOK])
EXPECTED_RANGES = {"GK": ("GK.00001", "GK.00002"), "TK": ("TK.00001", "TK.00006"),
                   "TN": ("TN.00001", "TN.00003")}
ALL_ACCESSIONS = [f"{kind}.{n:05d}" for kind, last in (("GK", 2), ("TK", 6), ("TN", 3))
                  for n in range(1, last + 1)]


# --- the librarian's files ----------------------------------------------------------------

def write_xlsx(path: Path, rows: Sequence[Sequence[Any]], sheet_title: str) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = sheet_title
    for row in rows:
        sheet.append(list(row))
    book.save(path)
    return path


def sector_export(path: Path) -> Path:
    rows: list[list[Any]] = [*SECTOR_PREAMBLE, SECTOR_HEADER]
    for n, student in enumerate([*STUDENTS, BROKEN_STUDENT], start=1):
        rows.append([n, *student])
    rows += [[], [None, None, "Người lập danh sách"]]
    return write_xlsx(path, rows, "Danh sách học sinh")


def teachers_list(path: Path) -> Path:
    rows: list[list[Any]] = [["TRƯỜNG THCS NHỰT TẢO"], [], ["DANH SÁCH GIÁO VIÊN"],
                             ["STT", "Họ và tên", "Mã giáo viên", "Ngày sinh", "Giới tính",
                              "Tổ chuyên môn"]]
    rows += [[n, name, code, born, gender, group]
             for n, (code, name, born, gender, group) in enumerate(TEACHERS, start=1)]
    return write_xlsx(path, rows, "Giáo viên")


def marc_record(book: Book) -> Record:
    record = Record(force_utf8=True)
    record.add_field(Field("020", Indicators(" ", " "), [Subfield("a", book.isbn)]))
    record.add_field(Field("090", Indicators(" ", " "), [Subfield("a", book.call_number)]))
    if book.author:
        record.add_field(Field("100", Indicators("1", " "), [Subfield("a", book.author + ",")]))
    record.add_field(Field("245", Indicators("1", "0"), [Subfield("a", book.title + " /")]))
    record.add_field(Field("264", Indicators(" ", "1"), [
        Subfield("a", "Hà Nội :"), Subfield("b", f"{book.publisher},"),
        Subfield("c", f"{book.year}.")]))
    record.add_field(Field("650", Indicators(" ", "7"), [Subfield("a", book.subject + ".")]))
    return record


def marc_file(path: Path) -> Path:
    with path.open("wb") as handle:
        writer = MARCWriter(handle)
        for book in BOOKS:
            writer.write(marc_record(book))
        writer.close(close_fh=False)
    return path


def receipt_file(path: Path) -> Path:
    rows: list[list[Any]] = [["PHÒNG GD&ĐT HUYỆN CHỢ GẠO"], ["TRƯỜNG THCS NHỰT TẢO"], [],
                             [None, None, "PHIẾU NHẬP SÁCH"], [None, None, f"Số: {RECEIPT_NO}"], [],
                             ["STT", "Tên sách", "Tác giả", "NXB", "Năm XB", "ISBN", "Môn loại",
                              "Ký hiệu xếp giá", "Loại", "Số lượng", "Đơn giá", "Thành tiền"]]
    for n, b in enumerate([*BOOKS, NEW_BOOK], start=1):
        rows.append([n, b.title, b.author, b.publisher, b.year, b.isbn, b.subject, b.call_number,
                     b.kind, b.quantity, b.price, b.quantity * b.price])
    rows += [[None, "Tổng cộng", None, None, None, None, None, None, None, COPIES, None,
              TOTAL_VALUE],
             [], ["Người lập phiếu", None, None, "Thủ trưởng đơn vị"]]
    return write_xlsx(path, rows, "Phiếu nhập")



# --- running the README's commands ---------------------------------------------------------

@dataclass(frozen=True)
class Desk:
    """The librarian's working folder and the config the README calls $S."""

    folder: Path
    config: Path

    def thuvien(self, *args: str) -> subprocess.CompletedProcess[str]:
        # The console script the install puts beside the interpreter: `thuvien` as typed.
        command = Path(sys.executable).with_name("thuvien")
        return subprocess.run([str(command), *args], capture_output=True, text=True, timeout=300,
                              cwd=self.folder)

    def ok(self, *args: str) -> str:
        run = self.thuvien(*args)
        assert run.returncode == 0, (f"`thuvien {' '.join(args)}` exited {run.returncode}\n"
                                     f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}")
        return run.stdout

    def pdf_text(self, name: str) -> str:
        path = self.folder / name
        assert path.read_bytes()[:5] == b"%PDF-", f"{name} is not a PDF"
        run = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                             text=True, check=True)
        return run.stdout


def server_toml(folder: Path) -> str:
    """The example config, as the README's install step has the librarian copy it, with
    the database in `folder` and no web (tests run side by side)."""
    text = (ROOT / "config" / "server.example.toml").read_text(encoding="utf-8")
    database = f'url = "sqlite:///{folder / "thuvien.db"}"'
    text, changed = re.subn(r'^url = "sqlite:///[^"]*"$', database, text, count=1, flags=re.M)
    assert changed == 1, "config/server.example.toml has no sqlite url line any more"
    web = text.index("\n[web]\n")
    head, tail = text[:web], text[web:]
    tail, changed = re.subn(r"^enabled = true$", "enabled = false", tail, count=1, flags=re.M)
    assert changed == 1, "config/server.example.toml's [web] has no `enabled = true` line any more"
    return head + tail


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Desk:
    folder = tmp_path_factory.mktemp("thu-vien")
    config = folder / "server.toml"
    config.write_text(server_toml(folder), encoding="utf-8")
    return Desk(folder, config)


def S(desk: Desk) -> str:  # noqa: N802 - the README's $S
    return str(desk.config)


# --- the walkthrough, in README order --------------------------------------------------------

def test_db_upgrade(desk: Desk) -> None:
    from server.db import head_revision

    out = desk.ok("db", "upgrade", "--config", S(desk))
    assert f"is at schema {head_revision()}" in out
    assert (desk.folder / "thuvien.db").is_file()


def test_import_readers_from_the_sector_export(desk: Desk) -> None:
    sector_export(desk.folder / "hoc-sinh.xlsx")
    run = desk.thuvien("import", "readers", "hoc-sinh.xlsx", "--config", S(desk))
    # Taken, with the broken row named: exit 3 says "done, but look at these rows".
    assert run.returncode == 3, run.stderr
    assert f"{len(STUDENTS)} mới / new" in run.stdout
    broken_row = len(SECTOR_PREAMBLE) + 1 + len(STUDENTS) + 1
    assert re.search(rf"dòng / row {broken_row}: .*10 chữ số.* / .*10 digits", run.stdout), run.stdout


def test_import_teachers(desk: Desk) -> None:
    teachers_list(desk.folder / "giao-vien.xlsx")
    out = desk.ok("import", "teachers", "giao-vien.xlsx", "--config", S(desk))
    assert f"{len(TEACHERS)} mới / new" in out


def test_import_catalogue_from_marc(desk: Desk) -> None:
    marc_file(desk.folder / "sach.mrc")
    out = desk.ok("import", "catalogue", "sach.mrc", "--config", S(desk))
    assert f"Đã đọc / read {len(BOOKS)}" in out
    assert f"{len(BOOKS)} đầu sách mới / new titles" in out


def test_intake_add(desk: Desk) -> None:
    receipt_file(desk.folder / "phieu-nhap-01.xlsx")
    out = desk.ok("intake", "add", "phieu-nhap-01.xlsx", "--receipt-no", RECEIPT_NO, "--date",
                  RECEIPT_DAY, "--source", "bought", "--config", S(desk))
    assert f"phiếu / receipt {RECEIPT_NO}, số thứ tự vào sổ / register number 1" in out
    copies = COPIES
    assert f"{copies} bản / copies, 1 đầu sách mới / new titles, {len(BOOKS)} đầu sách đã có" in out
    for first, last in EXPECTED_RANGES.values():
        count = int(last[-5:]) - int(first[-5:]) + 1
        assert f"ĐKCB {first}–{last} ({count})" in out, out


def test_intake_add_refuses_a_bad_line_and_writes_nothing(desk: Desk) -> None:
    # Not a README line, but its promise: "One bad line and nothing is written".
    bad = write_xlsx(desk.folder / "phieu-sai.xlsx", [
        ["Tên sách", "Loại", "Số lượng", "Đơn giá"],
        ["Sách tốt", "TK", 1, 10_000], ["Sách lạ", "ZZ", 1, 10_000]], "Phiếu nhập")
    run = desk.thuvien("intake", "add", bad.name, "--receipt-no", "02/PN", "--date", RECEIPT_DAY,
                       "--source", "donated", "--config", S(desk))
    assert run.returncode == 1
    assert "ZZ" in run.stderr and "thuvien intake add:" in run.stderr
    assert "02/PN" not in desk.ok("intake", "list", "--config", S(desk))


def test_intake_list(desk: Desk) -> None:
    out = desk.ok("intake", "list", "--config", S(desk))
    line = next(line for line in out.splitlines() if RECEIPT_NO in line)
    copies = COPIES
    assert line.split(" | ")[:3] == ["    1", RECEIPT_NO, "05/09/2026"]
    assert "Trường tự mua" in line and f"| {copies} |" in line
    assert f"{TOTAL_VALUE:,}".replace(",", ".") + " đ" in line


def test_labels_for_the_receipt(desk: Desk) -> None:
    out = desk.ok("labels", "--receipt", "1", "--layout", "3x8", "--out", "nhan.pdf",
                  "--config", S(desk))
    assert f"{len(ALL_ACCESSIONS)} nhãn / labels, 1 trang / pages (3x8)" in out
    text = desk.pdf_text("nhan.pdf")
    for accession in ALL_ACCESSIONS:
        assert accession in text, f"{accession} not on the label sheet"
    assert "895.9223 T450H" in text  # the shelf mark from the catalogue


def test_cards_for_a_class(desk: Desk) -> None:
    out = desk.ok("cards", "--class", CLASS, "--out", f"the-{CLASS}.pdf", "--config", S(desk))
    assert f"{len(STUDENTS_6A1)} thẻ / cards" in out
    text = " ".join(desk.pdf_text(f"the-{CLASS}.pdf").split())
    for name in STUDENTS_6A1:
        assert name.casefold() in text.casefold(), f"{name} not on the cards"
    assert "Phạm Thu Hà" not in text  # 7A2
    assert "Võ Minh Quân" not in text  # the row that was not taken


def test_report_register_general(desk: Desk) -> None:
    desk.ok("report", "register-general", "--out", "so-tong-quat.pdf", "--config", S(desk))
    text = desk.pdf_text("so-tong-quat.pdf")
    assert "SỔ ĐĂNG KÝ TỔNG QUÁT" in text
    assert "Trường THCS Nhựt Tảo" in text
    line = next((line for line in text.splitlines() if RECEIPT_NO in line), None)
    assert line is not None, text
    copies = COPIES
    # Part I's line of the receipt: entry no., date, receipt no., source, copies, copies
    # per kind in the config's order (GK TK NV TN TB), value.
    assert line.split() == ["1", "05/09/2026", RECEIPT_NO, "Trường", "tự", "mua", str(copies),
                            "2", "6", "0", "3", "0", f"{TOTAL_VALUE:,}".replace(",", ".")], line
    for heading in ("Phần I. Tổng số sách nhập thư viện", "Phần II. Tổng số sách xuất khỏi thư viện",
                    "Phần III. Kiểm kê"):
        assert heading in text


def test_report_register_individual_as_xlsx(desk: Desk) -> None:
    desk.ok("report", "register-individual", "--option", "kind=TK", "--format", "xlsx",
            "--out", "ca-biet-TK.xlsx", "--config", S(desk))
    book = openpyxl.load_workbook(desk.folder / "ca-biet-TK.xlsx")
    rows = [row for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)]
    found = {cell: row for row in rows for cell in row if isinstance(cell, str)
             and re.fullmatch(r"[A-Z]{2}\.\d{5}", cell)}
    assert sorted(found) == [f"TK.{n:05d}" for n in range(1, 7)]  # TK only, every copy
    history = found["TK.00001"]
    assert any(isinstance(c, str) and c.startswith("Lịch sử Việt Nam bằng tranh") for c in history)
    assert 38_000 in history  # a price, as a number
    assert any(isinstance(c, (dt.date, dt.datetime)) and c.strftime("%Y-%m-%d") == RECEIPT_DAY
               for c in history), history
    assert 1 in history[history.index("TK.00001"):]  # the general register's entry no.
    assert 150_000 in found["TK.00006"]
    totals = next(row for row in rows if isinstance(row[0], str) and row[0].startswith("Cộng"))
    assert 4 * 38_000 + 2 * 150_000 in totals
    texts = [c for row in rows for c in row if isinstance(c, str)]
    assert any("SỔ ĐĂNG KÝ CÁ BIỆT" in c for c in texts)


def test_report_tt16_pdf(desk: Desk) -> None:
    desk.ok("report", "tt16", "--out", "tt16.pdf", "--config", S(desk))
    text = desk.pdf_text("tt16.pdf")
    assert "THÔNG TƯ 16/2022/TT-BGDĐT" in text
    assert "Trường THCS Nhựt Tảo" in text
    for group in ("Tài nguyên thông tin", "Cơ sở vật chất", "Thiết bị chuyên dùng",
                  "Hoạt động thư viện", "Quản lý thư viện"):
        assert group in text, group


def test_report_tt16_json(desk: Desk) -> None:
    desk.ok("report", "tt16", "--format", "json", "--out", "tt16.json", "--config", S(desk))
    data = json.loads((desk.folder / "tt16.json").read_text(encoding="utf-8"))
    assert {"schema_version", "circular", "site", "school", "levels", "school_year", "first_day",
            "last_day", "generated_at", "overall_level", "groups"} <= set(data)
    assert (data["schema_version"], data["circular"], data["site"], data["school"],
            data["levels"]) == (1, "16/2022/TT-BGDĐT", "thcs-nhut-tao", "Trường THCS Nhựt Tảo",
                                ["lower_secondary"])
    assert [g["id"] for g in data["groups"]] == ["1", "2", "3", "4", "5"]
    criterion_keys = {"id", "text_vi", "text_en", "source", "value_type", "unit", "value",
                      "required_for", "indicator", "threshold_level1", "meets_level1",
                      "meets_level2"}
    criteria = {c["id"]: c for g in data["groups"] for c in g["criteria"]}
    assert all(criterion_keys <= set(c) for c in criteria.values())
    assert {c["source"] for c in criteria.values()} == {"data", "librarian"}
    # Filled from the data: copies per student against the lower-secondary minimum.
    # 11 copies for 5 students is 2.2, under the 4 a lower-secondary school needs.
    per_student = criteria["1.1.THCS"]
    assert (per_student["source"], per_student["value"], per_student["threshold_level1"],
            per_student["meets_level1"]) == ("data", round(COPIES / len(STUDENTS), 2), 4, False)
    assert data["overall_level"] == 0


def test_report_tt16_with_the_librarians_answers(desk: Desk) -> None:
    # The README: "`--option answers=FILE.json` fills those" (the criteria data cannot tell).
    (desk.folder / "tra-loi.json").write_text('{"2.1": true, "2.2": 64}', encoding="utf-8")
    desk.ok("report", "tt16", "--format", "json", "--option", "answers=tra-loi.json",
            "--out", "tt16-tra-loi.json", "--config", S(desk))
    data = json.loads((desk.folder / "tt16-tra-loi.json").read_text(encoding="utf-8"))
    criteria = {c["id"]: c for g in data["groups"] for c in g["criteria"]}
    assert (criteria["2.1"]["value"], criteria["2.1"]["meets_level1"]) == (True, True)
    assert (criteria["2.2"]["value"], criteria["2.2"]["meets_level1"]) == (64, True)
    # An answer to a criterion the data fills is refused, naming it, and nothing is written.
    (desk.folder / "sai.json").write_text('{"1.1.THCS": 9}', encoding="utf-8")
    run = desk.thuvien("report", "tt16", "--option", "answers=sai.json", "--out", "sai.pdf",
                       "--config", S(desk))
    assert run.returncode == 1 and "1.1.THCS" in run.stderr, run.stderr
    assert not (desk.folder / "sai.pdf").exists()


def test_report_list(desk: Desk) -> None:
    out = desk.ok("report", "list")
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"register-general", "register-individual", "register-textbooks", "loans-teachers",
            "loans-students", "statistics", "tt16", "weeding-list", "stocktake-missing"} <= names
    assert "Sổ đăng ký tổng quát / General accession register" in out
