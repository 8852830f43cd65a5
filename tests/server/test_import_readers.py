"""Reader import from generated sector-database exports (.xlsx via openpyxl, and CSV)
into a real, migrated SQLite file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

import import_files
from import_files import empty_library

from server.importers.readers import ImportReport, ReaderImportError, import_readers
from server.models import Reader, ReaderKind, ReaderStatus

TODAY = dt.date(2026, 8, 20)
PREAMBLE = [["SỞ GIÁO DỤC VÀ ĐÀO TẠO HÀ NỘI"], ["TRƯỜNG THCS NGUYỄN DU"], [],
            ["DANH SÁCH HỌC SINH NĂM HỌC 2026-2027"], []]
HEADER = ["STT", "Mã định danh Bộ GD&ĐT", "Họ tên", "Ngày sinh", "Giới tính", "Dân tộc",
          "Lớp học", "Khối học"]


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    yield from empty_library(tmp_path)


def write_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    return import_files.write_xlsx(path, rows, "Danh sách")


def student(n: int, moet_id: str, name: str, born: Any, gender: str, class_name: str,
            grade: Any) -> list[Any]:
    return [n, moet_id, name, born, gender, "Kinh", class_name, grade]


def readers(sessions: sessionmaker[Session]) -> dict[str, Reader]:
    with sessions() as session:
        return {r.moet_id or r.code: r for r in session.scalars(select(Reader))}


def test_preamble_header_found_and_students_created(sessions, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "ds.xlsx", PREAMBLE + [HEADER] + [
        student(1, "0123456789", "Nguyễn  Thị Mai", "05/03/2015", "Nữ", "6A1", "Khối 6"),
        student(2, "0123456790", "Trần Văn Bình", dt.datetime(2014, 11, 30), "Nam", "7A2", 7),
        [],  # a blank row inside the list is not a row of data
        student(3, "0123456791", "Lê Gia Bảo", "1/9/2013", "nam", "8a3", ""),
    ])
    report = import_readers(sessions, path, today=TODAY)
    assert report.header_row == 6 and report.sheet == "Danh sách"
    assert (report.created, report.updated, report.unchanged, report.rows) == (3, 0, 0, 3)
    assert report.not_taken == []
    got = readers(sessions)
    mai = got["0123456789"]
    assert (mai.name, mai.class_name, mai.grade, mai.birth_date, mai.gender, mai.kind,
            mai.status) == ("Nguyễn Thị Mai", "6A1", 6, dt.date(2015, 3, 5), "Nữ",
                            ReaderKind.STUDENT, ReaderStatus.ACTIVE)
    assert got["0123456790"].birth_date == dt.date(2014, 11, 30)  # an Excel date cell
    assert (got["0123456791"].class_name, got["0123456791"].grade) == ("8A3", 8)
    # The seed's scheme: the cohort year it entered grade 6, then a serial.
    assert [mai.code, got["0123456790"].code, got["0123456791"].code] == [
        "HS-2026-0001", "HS-2025-0001", "HS-2024-0001"]


def test_columns_in_another_order_and_spelled_differently(sessions, tmp_path: Path) -> None:
    header = ["KHỐI", "lop", "Ghi chú", "HỌ VÀ TÊN", "ma dinh danh", "gioi tinh", "NGÀY SINH"]
    path = write_xlsx(tmp_path / "ds.xlsx", [["Danh sách lớp"], header,
                                            ["Khối 12", "12.6", "x", "Phạm Đức Anh",
                                             "0212345678", "Nam", "20/10/2009"]])
    report = import_readers(sessions, path, today=TODAY)
    assert (report.created, report.header_row) == (1, 2)
    anh = readers(sessions)["0212345678"]
    assert (anh.name, anh.class_name, anh.grade, anh.birth_date) == (
        "Phạm Đức Anh", "12.6", 12, dt.date(2009, 10, 20))
    assert anh.code == "HS-2024-0001"  # grade 12 in 2026: entered grade 10 in 2024


def test_csv_utf8_with_bom_and_semicolons(sessions, tmp_path: Path) -> None:
    path = tmp_path / "ds.csv"
    path.write_text("Trường THCS Nguyễn Du;;;\n;;;\n"
                    "Mã định danh;Họ và tên;Ngày sinh;Lớp\n"
                    "0123456789;Đỗ Thu Hà;12/12/2014;7A1\n"
                    "012345678;Vũ Minh;12/12/2014;7A1\n", encoding="utf-8-sig")
    report = import_readers(sessions, path, today=TODAY)
    assert (report.created, report.header_row) == (1, 3)
    assert [(p.row, p.reason_en) for p in report.not_taken] == [
        (5, "the MOET id must be exactly 10 digits: '012345678'")]
    assert readers(sessions)["0123456789"].name == "Đỗ Thu Hà"


def test_reimport_updates_by_moet_id_and_promotes(sessions, tmp_path: Path) -> None:
    first = write_xlsx(tmp_path / "2025.xlsx", PREAMBLE + [HEADER] + [
        student(1, "0123456789", "Nguyễn Thị Mai", "05/03/2014", "Nữ", "6A1", "Khối 6"),
        student(2, "0123456790", "Trần Văn Bình", "06/04/2014", "Nam", "6A2", "Khối 6"),
    ])
    import_readers(sessions, first, today=dt.date(2025, 9, 1))
    code = readers(sessions)["0123456789"].code
    second = write_xlsx(tmp_path / "2026.xlsx", PREAMBLE + [HEADER] + [
        student(1, "0123456789", "Nguyễn Thị Mai", "05/03/2014", "Nữ", "7A1", "Khối 7"),
        student(2, "0123456790", "Trần Văn Bình", "06/04/2014", "Nam", "6A2", "Khối 6"),
    ])
    report = import_readers(sessions, second, today=TODAY)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    mai = readers(sessions)["0123456789"]
    assert (mai.class_name, mai.grade, mai.code) == ("7A1", 7, code)
    assert len(readers(sessions)) == 2


def test_new_year_list_deactivates_graduates(sessions, tmp_path: Path) -> None:
    old = write_xlsx(tmp_path / "old.xlsx", [HEADER] + [
        student(1, "0100000001", "Học Sinh Một", "01/01/2011", "Nam", "9A1", 9),
        student(2, "0100000002", "Học Sinh Hai", "01/01/2012", "Nữ", "8A1", 8),
        student(3, "0100000003", "Học Sinh Ba", "01/01/2012", "Nữ", "8A2", 8),
    ])
    import_readers(sessions, old, today=dt.date(2025, 9, 1))
    with sessions.begin() as session:  # a teacher and a blocked 9th-grader stay as they are
        session.add(Reader(code="GV-0001", name="Cô Lan", kind=ReaderKind.TEACHER,
                           status=ReaderStatus.ACTIVE, created_at=dt.datetime.now(dt.timezone.utc)))
        session.add(Reader(code="HS-2022-0009", moet_id="0100000009", name="Bị Khóa",
                           kind=ReaderKind.STUDENT, class_name="9A1", grade=9,
                           status=ReaderStatus.BLOCKED,
                           created_at=dt.datetime.now(dt.timezone.utc)))
    new = write_xlsx(tmp_path / "new.xlsx", PREAMBLE + [HEADER] + [
        student(1, "0100000002", "Học Sinh Hai", "01/01/2012", "Nữ", "9A1", 9),
        # On the list but with a broken date: not taken, and not deactivated either.
        student(2, "0100000003", "Học Sinh Ba", "31/02/2012", "Nữ", "9A2", 9),
        student(3, "0100000004", "Học Sinh Bốn", "01/01/2015", "Nam", "6A1", 6),
    ])
    report = import_readers(sessions, new, today=TODAY, school_year_start=dt.date(2026, 9, 5))
    assert (report.created, report.updated, report.deactivated) == (1, 1, 1)
    assert [p.row for p in report.not_taken] == [8]
    got = readers(sessions)
    assert got["0100000001"].status == ReaderStatus.INACTIVE  # graduated, still there
    assert got["0100000002"].status == ReaderStatus.ACTIVE
    assert got["0100000003"].status == ReaderStatus.ACTIVE
    assert got["0100000009"].status == ReaderStatus.BLOCKED
    assert got["GV-0001"].status == ReaderStatus.ACTIVE
    assert got["0100000004"].code == "HS-2026-0001"
    # Without school_year_start nobody is deactivated.
    again = import_readers(sessions, new, today=TODAY)
    assert again.deactivated == 0


def test_bad_rows_reported_with_row_numbers_and_not_written(sessions, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "ds.xlsx", PREAMBLE + [HEADER] + [
        student(1, "0123456789", "Đúng Người", "05/03/2014", "Nữ", "6A1", 6),       # row 7
        student(2, "", "Không Mã", "05/03/2014", "Nữ", "6A1", 6),                    # row 8
        student(3, "012345678", "Chín Số", "05/03/2014", "Nữ", "6A1", 6),            # row 9
        student(4, "0123456700", "Trùng Một", "05/03/2014", "Nữ", "6A1", 6),         # row 10
        student(5, "0123456700", "Trùng Hai", "06/03/2014", "Nam", "6A2", 6),        # row 11
        student(6, "0123456701", "Sai Ngày", "32/13/2014", "Nữ", "6A1", 6),          # row 12
        student(7, "0123456702", "Sai Khối", "05/03/2014", "Nữ", "6A1", "Khối 7"),   # row 13
        student(8, "0123456703", "", "05/03/2014", "Nữ", "6A1", 6),                  # row 14
        student(9, "0123456704", "Sai Lớp", "05/03/2014", "Nữ", "A1", 6),            # row 15
        student(10, "0123456705", "Lặp Lại", "05/03/2014", "Nữ", "6A3", 6),          # row 16
        student(10, "0123456705", "Lặp Lại", "05/03/2014", "Nữ", "6A3", 6),          # row 17
    ])
    report = import_readers(sessions, path, today=TODAY)
    assert (report.created, report.rows) == (2, 11)
    reasons = {p.row: p.reason_vi for p in report.not_taken}
    assert sorted(reasons) == [8, 9, 10, 11, 12, 13, 14, 15, 17]
    assert reasons[8] == "Thiếu mã định danh Bộ GD&ĐT"
    assert "10 chữ số" in reasons[9]
    assert reasons[10] == "Mã định danh 0123456700 trùng với dòng 11"
    assert reasons[11] == "Mã định danh 0123456700 trùng với dòng 10"
    assert "Ngày sinh không hợp lệ: '32/13/2014'" in reasons[12]
    assert reasons[13] == "Lớp 6A1 không thuộc khối 7"
    assert reasons[14] == "Thiếu họ tên"
    assert "Lớp không hợp lệ: 'A1'" in reasons[15]
    assert "0123456705" in reasons[17]
    assert all(p.reason_en for p in report.not_taken)
    assert sorted(readers(sessions)) == ["0123456705", "0123456789"]


def test_number_cell_id_gets_its_leading_zero_back(sessions, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "ds.xlsx", [HEADER, student(1, 123456789, "Số Hóa", "01/01/2014",
                                                             "Nam", "6A1", 6)])  # type: ignore[arg-type]
    assert import_readers(sessions, path, today=TODAY).created == 1
    assert "0123456789" in readers(sessions)


def test_no_header_is_a_clear_error_and_nothing_written(sessions, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "ds.xlsx", PREAMBLE + [["STT", "Tên", "Lớp"],
                                                       [1, "Nguyễn Văn A", "6A1"]])
    with pytest.raises(ReaderImportError) as caught:
        import_readers(sessions, path, today=TODAY)
    assert "Mã định danh Bộ GD&ĐT" in caught.value.message_vi
    assert "no header row" in str(caught.value)
    assert readers(sessions) == {}


@pytest.mark.parametrize("name, content", [
    ("broken.xlsx", b"PK\x03\x04 not really a zip"),
    ("old.xls", b"\xd0\xcf\x11\xe0"),
    ("list.pdf", b"%PDF-1.4"),
    ("latin.csv", b"Ma dinh danh;Ho t\xean;L\xf5p\n"),  # a Windows-1258 CSV
])
def test_unreadable_files_are_clear_errors(sessions, tmp_path: Path, name: str,
                                           content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ReaderImportError) as caught:
        import_readers(sessions, path, today=TODAY)
    assert caught.value.message_vi and caught.value.message_en
    assert readers(sessions) == {}


def test_database_error_rolls_back_everything(sessions, tmp_path: Path) -> None:
    first = write_xlsx(tmp_path / "a.xlsx", [HEADER, student(1, "0123456789", "Nguyễn Mai",
                                                             "01/01/2014", "Nữ", "6A1", 6)])
    import_readers(sessions, first, today=TODAY)
    with sessions.begin() as session:  # the database refuses one of the new rows
        session.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON readers "
                             "WHEN NEW.name = 'Từ Chối' BEGIN SELECT RAISE(ABORT, 'no'); END"))
    second = write_xlsx(tmp_path / "b.xlsx", [HEADER,
                                             student(1, "0123456789", "Nguyễn Mai", "01/01/2014",
                                                     "Nữ", "7A1", 7),
                                             student(2, "0123456790", "Từ Chối", "01/01/2014",
                                                     "Nữ", "7A1", 7)])
    with pytest.raises(ReaderImportError, match="nothing was written"):
        import_readers(sessions, second, today=TODAY, school_year_start=dt.date(2026, 9, 5))
    got = readers(sessions)
    assert sorted(got) == ["0123456789"] and got["0123456789"].class_name == "6A1"


def test_codes_continue_past_the_highest_ever_issued(sessions, tmp_path: Path) -> None:
    with sessions.begin() as session:
        session.add(Reader(code="HS-2026-0041", moet_id="0199999999", name="Đã Nghỉ",
                           kind=ReaderKind.STUDENT, class_name="6A1", grade=6,
                           status=ReaderStatus.INACTIVE,
                           created_at=dt.datetime.now(dt.timezone.utc)))
    path = write_xlsx(tmp_path / "ds.xlsx", [HEADER] + [
        student(n, f"01000000{n:02d}", f"Học Sinh {n}", "01/01/2015", "Nam", "6A1", 6)
        for n in range(1, 3)])
    report = import_readers(sessions, path, today=TODAY)
    assert report.created_codes == ["HS-2026-0042", "HS-2026-0043"]


def test_progress_called_for_long_imports(sessions, tmp_path: Path) -> None:
    rows = [student(n, f"01{n:08d}", f"Học Sinh {n}", "01/01/2015", "Nam", f"6A{n % 5 + 1}", 6)
            for n in range(1, 1001)]
    rows[10][1] = "bad"  # a rejected row still counts towards the total
    path = write_xlsx(tmp_path / "ds.xlsx", PREAMBLE + [HEADER] + rows)
    calls: list[tuple[int, int]] = []
    report: ImportReport = import_readers(sessions, path, today=TODAY,
                                          progress=lambda done, total: calls.append((done, total)),
                                          progress_every=100)
    assert report.created == 999 and len(report.not_taken) == 1
    assert len(calls) >= 10 and calls[-1] == (1000, 1000)
    assert all(total == 1000 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
