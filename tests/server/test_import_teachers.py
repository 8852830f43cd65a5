"""Teacher import from generated staff lists (.xlsx via openpyxl, and CSV) into a real,
migrated SQLite file."""

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

from server.importers.readers import ReaderImportError
from server.importers.teachers import import_teachers
from server.models import Reader, ReaderKind, ReaderStatus

TODAY = dt.date(2026, 8, 20)
PREAMBLE = [["TRƯỜNG THCS NGUYỄN DU"], [], ["DANH SÁCH GIÁO VIÊN NĂM HỌC 2026-2027"], []]
HEADER = ["STT", "Họ và tên", "Mã giáo viên", "Ngày sinh", "Giới tính", "Tổ chuyên môn",
          "Môn dạy"]


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    yield from empty_library(tmp_path)


def write_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    return import_files.write_xlsx(path, rows, "Giáo viên")


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return path


def teachers(sessions: sessionmaker[Session]) -> dict[str, Reader]:
    with sessions() as session:
        return {r.code: r for r in session.scalars(
            select(Reader).where(Reader.kind == ReaderKind.TEACHER.value))}


def add_teacher(sessions: sessionmaker[Session], code: str, name: str, **fields: Any) -> None:
    with sessions.begin() as session:
        session.add(Reader(code=code, name=name, kind=ReaderKind.TEACHER.value,
                           status=ReaderStatus.ACTIVE.value,
                           created_at=dt.datetime(2025, 9, 1, tzinfo=dt.timezone.utc), **fields))


def test_xlsx_with_preamble_creates_teachers(sessions, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "gv.xlsx", PREAMBLE + [HEADER] + [
        [1, "Nguyễn  Thị Hoa", "GV123", "12/04/1985", "Nữ", "Tổ Toán", "Toán"],
        [2, "Trần Văn Nam", None, dt.datetime(1979, 1, 2), "Nam", "Tổ Văn", "Ngữ văn"],
        [],
        [3, "Lê Thu Hà", "GV125", None, None, None, None],
    ])
    progress: list[tuple[int, int]] = []
    report = import_teachers(sessions, path, today=TODAY,
                             progress=lambda done, total: progress.append((done, total)))
    assert (report.header_row, report.sheet) == (5, "Giáo viên")
    assert (report.created, report.updated, report.unchanged, report.rows) == (3, 0, 0, 3)
    assert report.not_taken == [] and progress[-1] == (3, 3)
    assert report.created_codes == ["GV-0001", "GV-0002", "GV-0003"]
    got = teachers(sessions)
    hoa = got["GV-0001"]
    assert (hoa.name, hoa.moet_id, hoa.birth_date, hoa.gender, hoa.kind, hoa.status,
            hoa.class_name) == ("Nguyễn Thị Hoa", "GV123", dt.date(1985, 4, 12), "Nữ",
                                ReaderKind.TEACHER, ReaderStatus.ACTIVE, None)
    assert (got["GV-0002"].moet_id, got["GV-0002"].birth_date) == (None, dt.date(1979, 1, 2))
    assert (got["GV-0003"].birth_date, got["GV-0003"].gender) == (None, None)


def test_reimport_updates_by_id_and_by_name_and_birth_date(sessions, tmp_path: Path) -> None:
    first = write_xlsx(tmp_path / "a.xlsx", PREAMBLE + [HEADER] + [
        [1, "Nguyễn Thị Hoa", "GV123", "12/04/1985", "Nữ", "", ""],
        [2, "Trần Văn Nam", None, "02/01/1979", "Nam", "", ""],
        [3, "Lê Thu Hà", "GV125", "", "Nữ", "", ""],
    ])
    import_teachers(sessions, first, today=TODAY)
    # A CSV with the columns in another order and other names; diacritics left off one name.
    second = write_csv(tmp_path / "b.csv", [
        "Danh sách giáo viên",
        "",
        "Họ tên;Ngày sinh;Mã định danh;Giới tính",
        "Nguyễn Thị Hoà Bình;12/04/1985;GV123;Nữ",     # renamed: matched by id
        "TRAN VAN NAM;02/01/1979;;",                    # matched by folded name + birth
        "Lê Thu Hà;;GV125;Nữ",                          # nothing new
        "Phạm Minh Đức;03/03/1990;GV200;Nam",           # new
    ])
    report = import_teachers(sessions, second, today=TODAY)
    assert report.header_row == 3 and report.sheet is None
    assert (report.created, report.updated, report.unchanged) == (1, 2, 1)
    assert report.created_codes == ["GV-0004"] and report.not_taken == []
    got = teachers(sessions)
    assert len(got) == 4
    assert got["GV-0001"].name == "Nguyễn Thị Hoà Bình"
    assert (got["GV-0002"].name, got["GV-0002"].gender) == ("TRAN VAN NAM", "Nam")
    # A blank cell erases nothing.
    assert got["GV-0003"].gender == "Nữ"
    # The same list again changes nothing and creates nobody.
    again = import_teachers(sessions, second, today=TODAY)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)


def test_unknown_id_is_attached_to_the_teacher_matched_by_name(sessions, tmp_path: Path) -> None:
    add_teacher(sessions, "GV-0007", "Đỗ Văn Long", birth_date=dt.date(1980, 5, 6))
    add_teacher(sessions, "GV-0008", "Đinh Thị Yến", birth_date=dt.date(1988, 8, 8))
    # Excel keeps a CCCD typed as a number, losing the province code's leading zeros.
    path = write_xlsx(tmp_path / "gv.xlsx", [["Họ và tên", "Số CCCD", "Ngày sinh"],
                                             ["Đỗ Văn Long", 1080001234, "06/05/1980"],
                                             ["ĐINH THỊ YẾN", "079188001234", "08/08/1988"]])
    report = import_teachers(sessions, path, today=TODAY)
    assert (report.created, report.updated, report.not_taken) == (0, 2, [])
    got = teachers(sessions)
    assert (got["GV-0007"].moet_id, got["GV-0008"].moet_id) == ("001080001234", "079188001234")


def test_bad_rows_reported_with_row_numbers_and_others_taken(sessions, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "gv.xlsx", PREAMBLE + [HEADER] + [
        [1, "Nguyễn Thị Hoa", "GV123", "12/04/1985", "Nữ", "", ""],
        [2, None, "GV124", "01/01/1980", "Nam", "Tổ Toán", ""],      # row 7: no name
        [3, "Vũ Văn Tú", "GV 1 2 6", "31/02/1980", "Nam", "", ""],   # row 8: bad date
        [4, "Hà Thị Lan", "GV127", "", "X", "", ""],                 # row 9: bad gender
        [5, "Mai Anh", "GV128", "", "", "", ""],
        [6, "Mai Anh Khác", "GV128", "", "", "", ""],                # rows 10/11: same id
    ])
    report = import_teachers(sessions, path, today=TODAY)
    assert (report.created, report.rows) == (1, 6)
    assert [p.row for p in report.not_taken] == [7, 8, 9, 10, 11]
    by_row = {p.row: p for p in report.not_taken}
    assert by_row[7].reason_vi == "Thiếu họ tên" and by_row[7].reason_en == "no name"
    assert "Ngày sinh" in by_row[8].reason_vi and "birth date" in by_row[8].reason_en
    assert by_row[8].moet_id == "GV126"
    assert "Giới tính" in by_row[9].reason_vi and "gender" in by_row[9].reason_en
    assert "dòng 11" in by_row[10].reason_vi and "row 10" in by_row[11].reason_en
    assert list(teachers(sessions)) == ["GV-0001"]


def test_codes_continue_past_the_highest_ever_issued(sessions, tmp_path: Path) -> None:
    add_teacher(sessions, "GV-0030", "Cô giáo cũ")
    with sessions.begin() as session:
        session.get(Reader, 1).status = ReaderStatus.INACTIVE.value  # left: kept, never deleted
    add_teacher(sessions, "GV-0012", "Thầy giáo khác")
    path = write_csv(tmp_path / "gv.csv", ["Họ tên,Ngày sinh", "Bùi Văn An,01/02/1991",
                                           "Ngô Thị Bích,05/06/1992"])
    report = import_teachers(sessions, path, today=TODAY)
    assert report.created_codes == ["GV-0031", "GV-0032"]
    assert set(teachers(sessions)) == {"GV-0012", "GV-0030", "GV-0031", "GV-0032"}


def test_id_of_a_student_is_not_taken(sessions, tmp_path: Path) -> None:
    with sessions.begin() as session:
        session.add(Reader(code="HS-2026-0001", moet_id="0123456789", name="Học Sinh",
                           kind=ReaderKind.STUDENT.value, status=ReaderStatus.ACTIVE.value,
                           created_at=dt.datetime(2025, 9, 1, tzinfo=dt.timezone.utc)))
    path = write_csv(tmp_path / "gv.csv", ["Họ tên,Mã định danh", "Cô Giáo,0123456789"])
    report = import_teachers(sessions, path, today=TODAY)
    assert report.created == 0 and [p.row for p in report.not_taken] == [2]
    assert "HS-2026-0001" in report.not_taken[0].reason_en
    assert teachers(sessions) == {}


def test_file_without_name_column_is_refused(sessions, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gv.csv", ["Tên,Môn", "An,Toán"])
    with pytest.raises(ReaderImportError) as error:
        import_teachers(sessions, path, today=TODAY)
    assert "Họ tên" in error.value.message_vi
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"\x00\x01not a zip")
    with pytest.raises(ReaderImportError):
        import_teachers(sessions, junk, today=TODAY)
    assert teachers(sessions) == {}


def test_database_error_writes_nothing(sessions, tmp_path: Path) -> None:
    add_teacher(sessions, "GV-0001", "Có sẵn", birth_date=dt.date(1970, 1, 1))
    with sessions.begin() as session:
        # A real database failure on the last row, after the others were added and updated.
        session.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON readers "
                             "WHEN NEW.name = 'Ba' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"))
    path = write_csv(tmp_path / "gv.csv", ["Họ tên,Ngày sinh,Giới tính",
                                           "Có sẵn,01/01/1970,Nam", "Một,,", "Ba,,"])
    with pytest.raises(ReaderImportError) as error:
        import_teachers(sessions, path, today=TODAY)
    assert "disk on fire" in str(error.value) and "không có gì được ghi" in error.value.message_vi
    got = teachers(sessions)
    assert list(got) == ["GV-0001"] and got["GV-0001"].gender is None
