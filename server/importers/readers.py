"""Readers from the sector database's student list (Excel export or CSV).

The sector database (CSDL ngành) exports a class or school list as .xlsx with a title,
the school's name and blank rows before the header; columns vary between versions and
provinces, so the header row is found by itself and columns are mapped by their folded
names. Readers are matched by the MOET id (mã định danh Bộ GD&ĐT): a re-import updates,
a new school year's list promotes classes and deactivates those missing (graduates),
never deleting anyone. Rows that cannot be taken are reported one by one and nothing of
them is written; the rest is written in one transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from server.folding import fold
from server.models import Reader, ReaderKind, ReaderStatus

__all__ = ["ImportReport", "ReaderImportError", "RowProblem", "import_readers"]

Progress = Callable[[int, int], None]

VIETNAM_TIME = dt.timezone(dt.timedelta(hours=7))
# How far down the header may sit: exports have a handful of preamble rows, never dozens.
HEADER_SEARCH_ROWS = 30
PROGRESS_EVERY = 200
MOET_ID_DIGITS = 10

# Folded header words -> field. Only these are read; any other column is ignored.
_HEADERS: dict[str, str] = {
    "ma dinh danh bo gd dt": "moet_id",
    "ma dinh danh bo gddt": "moet_id",
    "ma dinh danh bo gd va dt": "moet_id",
    "ma dinh danh": "moet_id",
    "ma dinh danh hoc sinh": "moet_id",
    "ho ten": "name",
    "ho va ten": "name",
    "ho ten hoc sinh": "name",
    "ho va ten hoc sinh": "name",
    "ngay sinh": "birth_date",
    "gioi tinh": "gender",
    "lop hoc": "class_name",
    "lop": "class_name",
    "ten lop": "class_name",
    "khoi hoc": "grade",
    "khoi": "grade",
}
_REQUIRED = ("moet_id", "name", "class_name")
_LABELS = {"moet_id": "Mã định danh Bộ GD&ĐT", "name": "Họ tên", "class_name": "Lớp học"}

# 6A1, 6a, 10A12, 12.6 (the sector database's own form), 7/2; an optional "Lớp " before.
_CLASS = re.compile(r"^(\d{1,2})(?:([A-Z]{1,3})(\d{0,2})|([./-])(\d{1,2}))$")
_GRADE = re.compile(r"^(?:khoi\s*)?(\d{1,2})$")
_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T]00:00(?::00)?)?$")
_GENDERS = {"nam": "Nam", "nu": "Nữ", "male": "Nam", "female": "Nữ", "m": "Nam", "f": "Nữ"}


class ReaderImportError(Exception):
    """The file as a whole cannot be imported; nothing was written.

    `message_vi` is for the librarian, `str(error)` is the English one for logs.
    """

    def __init__(self, message_vi: str, message_en: str) -> None:
        super().__init__(message_en)
        self.message_vi = message_vi
        self.message_en = message_en


@dataclass(frozen=True)
class RowProblem:
    """A row not taken: its number as the spreadsheet shows it, and why."""

    row: int
    reason_vi: str
    reason_en: str
    moet_id: str | None = None


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    rows: int = 0                 # data rows read (blank rows not counted)
    header_row: int = 0
    sheet: str | None = None
    not_taken: list[RowProblem] = field(default_factory=list)
    created_codes: list[str] = field(default_factory=list)

    @property
    def taken(self) -> int:
        return self.created + self.updated + self.unchanged


@dataclass(frozen=True)
class _Student:
    row: int
    moet_id: str
    name: str
    class_name: str
    grade: int
    birth_date: dt.date | None
    gender: str | None


# --- Reading the file -----------------------------------------------------------------------


def _read_rows(path: Path) -> tuple[str | None, list[tuple[int, tuple[Any, ...]]]]:
    """(sheet name, [(row number, cell values)]) of the first sheet with a header."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ReaderImportError(f"Không tìm thấy tệp {path}", f"no such file: {path}")
    if suffix == ".csv":
        return None, _read_csv(path)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path)
    if suffix == ".xls":
        raise ReaderImportError(
            "Tệp .xls (Excel 97-2003) chưa đọc được: hãy mở bằng Excel và lưu thành .xlsx",
            "old .xls files are not read: save the file as .xlsx")
    raise ReaderImportError(f"Không đọc được loại tệp '{path.suffix}': cần .xlsx hoặc .csv",
                            f"unsupported file type '{path.suffix}': expected .xlsx or .csv")


def _read_xlsx(path: Path) -> tuple[str | None, list[tuple[int, tuple[Any, ...]]]]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise ReaderImportError(f"Tệp Excel hỏng hoặc không phải .xlsx: {path.name}",
                                f"not a readable .xlsx file: {path.name} ({error})") from error
    try:
        first: tuple[str | None, list[tuple[int, tuple[Any, ...]]]] | None = None
        for sheet in book.worksheets:
            rows = [(number, tuple(values))
                    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)]
            if first is None:
                first = (sheet.title, rows)
            if _find_header(rows) is not None:
                return sheet.title, rows
        return first if first is not None else (None, [])
    finally:
        book.close()  # read-only mode keeps the file open until closed


def _read_csv(path: Path) -> list[tuple[int, tuple[Any, ...]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ReaderImportError(
            "Tệp CSV không phải mã UTF-8: trong Excel hãy lưu bằng 'CSV UTF-8'",
            f"the CSV file is not UTF-8 ({error}): save it as 'CSV UTF-8'") from error
    # The delimiter the widest of the first lines uses: the preamble above the header (a
    # title, the school's name) has none, and confuses csv.Sniffer.
    lines = text.splitlines()
    delimiter = max(",;\t", key=lambda d: max((line.count(d) for line in lines[:HEADER_SEARCH_ROWS]),
                                              default=0))
    rows = csv.reader(lines, delimiter=delimiter)
    return [(number, tuple(values)) for number, values in enumerate(rows, start=1)]


def _header_key(value: Any) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", fold(str(value)))) if value is not None else ""


def _find_header(rows: Sequence[tuple[int, tuple[Any, ...]]]) -> tuple[int, dict[str, int]] | None:
    """(index in rows, field -> column) of the first row naming the id and the name."""
    for index, (_, values) in enumerate(rows[:HEADER_SEARCH_ROWS]):
        columns: dict[str, int] = {}
        for column, value in enumerate(values):
            name = _HEADERS.get(_header_key(value))
            if name is not None:
                columns.setdefault(name, column)  # the first of two same-named columns
        if "moet_id" in columns and "name" in columns:
            return index, columns
    return None


# --- One row --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unicodedata.normalize("NFC", str(value)).strip()


def _moet_id(value: Any) -> tuple[str | None, tuple[str, str] | None]:
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            return None, (f"Mã định danh không hợp lệ: '{value}'", f"bad MOET id '{value}'")
        digits = str(int(value))
        # A number cell loses the leading zero of provinces 01-09; the id is text really.
        if len(digits) == MOET_ID_DIGITS - 1:
            digits = "0" + digits
    else:
        digits = re.sub(r"\s+", "", _text(value)).lstrip("'")
    if not digits:
        return None, ("Thiếu mã định danh Bộ GD&ĐT", "no MOET id")
    if not (digits.isascii() and digits.isdigit() and len(digits) == MOET_ID_DIGITS):
        return None, (f"Mã định danh phải có đúng 10 chữ số: '{digits}'",
                      f"the MOET id must be exactly 10 digits: '{digits}'")
    return digits, None


def _birth_date(value: Any, today: dt.date) -> tuple[dt.date | None, tuple[str, str] | None]:
    day: dt.date | None = None
    if value is None or _text(value) == "":
        return None, None
    if isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    else:
        raw = _text(value)
        try:
            if match := _DATE.match(raw):
                day = dt.date(int(match[3]), int(match[2]), int(match[1]))
            elif match := _ISO_DATE.match(raw):
                day = dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            day = None
    if day is None or not (dt.date(1900, 1, 1) <= day <= today):
        raw = _text(value)
        return None, (f"Ngày sinh không hợp lệ: '{raw}' (cần dạng dd/mm/yyyy)",
                      f"bad birth date '{raw}' (expected dd/mm/yyyy)")
    return day, None


def _class_name(value: Any) -> tuple[str | None, int | None, tuple[str, str] | None]:
    raw = _text(value)
    if not raw:
        return None, None, ("Thiếu lớp", "no class")
    compact = re.sub(r"\s+", "", raw)
    if fold(compact[:3]) == "lop":
        compact = compact[3:]
    compact = compact.upper()
    match = _CLASS.match(compact)
    grade = int(match[1]) if match else 0
    if match is None or not 1 <= grade <= 12:
        return None, None, (f"Lớp không hợp lệ: '{raw}' (ví dụ 6A1)",
                            f"bad class '{raw}' (e.g. 6A1)")
    return compact, grade, None


def _grade(value: Any) -> tuple[int | None, tuple[str, str] | None]:
    raw = _text(value)
    if not raw:
        return None, None
    match = _GRADE.match(fold(raw))
    if match is None or not 1 <= int(match[1]) <= 12:
        return None, (f"Khối không hợp lệ: '{raw}'", f"bad grade '{raw}'")
    return int(match[1]), None


def _gender(value: Any) -> tuple[str | None, tuple[str, str] | None]:
    raw = _text(value)
    if not raw:
        return None, None
    gender = _GENDERS.get(fold(raw))
    if gender is None:
        return None, (f"Giới tính không rõ: '{raw}' (Nam hoặc Nữ)",
                      f"unknown gender '{raw}' (Nam or Nữ)")
    return gender, None


def _parse_row(number: int, values: tuple[Any, ...], columns: dict[str, int],
               today: dt.date) -> _Student | RowProblem:
    def cell(name: str) -> Any:
        column = columns.get(name)
        return values[column] if column is not None and column < len(values) else None

    problems: list[tuple[str, str]] = []
    moet_id, problem = _moet_id(cell("moet_id"))
    problems += [problem] if problem else []
    name = re.sub(r"\s+", " ", _text(cell("name")))
    if not name:
        problems.append(("Thiếu họ tên", "no name"))
    elif len(name) > 200:
        problems.append(("Họ tên quá dài", "name too long"))
    birth_date, problem = _birth_date(cell("birth_date"), today)
    problems += [problem] if problem else []
    gender, problem = _gender(cell("gender"))
    problems += [problem] if problem else []
    class_name, class_grade, problem = _class_name(cell("class_name"))
    problems += [problem] if problem else []
    grade, problem = _grade(cell("grade"))
    problems += [problem] if problem else []
    if grade is not None and class_grade is not None and grade != class_grade:
        problems.append((f"Lớp {class_name} không thuộc khối {grade}",
                         f"class {class_name} is not in grade {grade}"))
    if problems:
        return RowProblem(number, "; ".join(vi for vi, _ in problems),
                          "; ".join(en for _, en in problems), moet_id)
    assert moet_id is not None and class_name is not None and class_grade is not None
    return _Student(number, moet_id, name, class_name, class_grade, birth_date, gender)


def _is_blank(values: Iterable[Any]) -> bool:
    return all(_text(value) == "" for value in values)


def _drop_duplicates(students: list[_Student]) -> tuple[list[_Student], list[RowProblem]]:
    """Identical repeats: the first is taken. Conflicting rows for one id: none is, since
    the file cannot tell which is the student."""
    by_id: dict[str, list[_Student]] = {}
    for student in students:
        by_id.setdefault(student.moet_id, []).append(student)
    kept: list[_Student] = []
    problems: list[RowProblem] = []
    for student in students:
        group = by_id[student.moet_id]
        first = group[0]
        if len(group) == 1:
            kept.append(student)
            continue
        same = all(_fields(other) == _fields(first) for other in group)
        if same and student is first:
            kept.append(student)
            continue
        others = ", ".join(str(other.row) for other in group if other is not student)
        problems.append(RowProblem(
            student.row,
            f"Mã định danh {student.moet_id} trùng với dòng {others}",
            f"MOET id {student.moet_id} also on row {others}", student.moet_id))
    return kept, problems


def _fields(student: _Student) -> tuple[Any, ...]:
    return (student.name, student.class_name, student.grade, student.birth_date, student.gender)


# --- Writing --------------------------------------------------------------------------------


def _school_year(today: dt.date, school_year_start: dt.date | None) -> int:
    if school_year_start is not None:
        return school_year_start.year
    # Lists for a new year are prepared in August, before the year opens in September.
    return today.year if today.month >= 8 else today.year - 1


def _level_entry_grade(grade: int) -> int:
    return 1 if grade <= 5 else 6 if grade <= 9 else 10


class _Codes:
    """Card codes HS-<cohort>-<serial> as the seed makes them: the cohort is the year the
    student entered the school's first grade; serials continue past the highest ever
    issued, so a code of a student who left is never given to another."""

    _PATTERN = re.compile(r"^HS-(\d{4})-(\d+)$")

    def __init__(self, session: Session, school_year: int) -> None:
        self.school_year = school_year
        self.last: dict[int, int] = {}
        for code in session.scalars(select(Reader.code).where(Reader.code.like("HS-%"))):
            if match := self._PATTERN.match(code):
                cohort = int(match[1])
                self.last[cohort] = max(self.last.get(cohort, 0), int(match[2]))

    def next(self, grade: int) -> str:
        cohort = self.school_year - (grade - _level_entry_grade(grade))
        self.last[cohort] = self.last.get(cohort, 0) + 1
        return f"HS-{cohort}-{self.last[cohort]:04d}"


def _created_at(today: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(today, dt.datetime):
        return today if today.tzinfo else today.replace(tzinfo=VIETNAM_TIME)
    return dt.datetime.combine(today, dt.time(8, 0), VIETNAM_TIME)


def apply_fields(reader: Reader, wanted: dict[str, Any], *, birth_date: dt.date | None,
                 gender: str | None) -> bool:
    """Bring `reader` to what a list says; True if anything changed. Shared by the
    students' and the teachers' imports."""
    # A blank cell says nothing: it does not erase what the library already knows.
    if birth_date is not None:
        wanted["birth_date"] = birth_date
    if gender is not None:
        wanted["gender"] = gender
    if reader.status == ReaderStatus.INACTIVE:
        # On the school's list again (came back, or deactivated by mistake): may borrow.
        # A librarian's block stays.
        wanted["status"] = ReaderStatus.ACTIVE.value
    changed = False
    for name, value in wanted.items():
        if getattr(reader, name) != value:
            setattr(reader, name, value)
            changed = True
    return changed


def _apply(reader: Reader, student: _Student) -> bool:
    return apply_fields(reader, {"name": student.name, "class_name": student.class_name,
                                 "grade": student.grade},
                        birth_date=student.birth_date, gender=student.gender)


def import_readers(sessions: sessionmaker[Session], path: str | Path, *,
                   today: dt.date | dt.datetime, school_year_start: dt.date | None = None,
                   progress: Progress | None = None,
                   progress_every: int = PROGRESS_EVERY) -> ImportReport:
    """Import students from the sector database's list (.xlsx or .csv) at `path`.

    Readers are matched by MOET id: new ones are created (kind student, a new card code),
    known ones updated (name, class, grade, birth date, gender). With `school_year_start`
    the file is the school's whole list for that new year: active students with a MOET
    id who are not in it are made inactive (graduated or left), never deleted; pass it
    only for a whole-school list, not one class. Students with no MOET id and blocked
    students are left alone. Rows not taken are in `ImportReport.not_taken`; nothing of
    them is written. Everything else is one transaction: a database error leaves the
    database as it was and raises ReaderImportError, as does a file that cannot be read
    or has no recognisable header. `progress(done, total)` is called every
    `progress_every` rows and at the end.
    """
    path = Path(path)
    day = today.date() if isinstance(today, dt.datetime) else today
    sheet, rows = _read_rows(path)
    found = _find_header(rows)
    if found is None:
        raise ReaderImportError(
            f"Không tìm thấy dòng tiêu đề trong {HEADER_SEARCH_ROWS} dòng đầu của {path.name}: "
            "cần các cột 'Mã định danh Bộ GD&ĐT' và 'Họ tên'",
            f"no header row in the first {HEADER_SEARCH_ROWS} rows of {path.name}: "
            "expected columns 'Mã định danh Bộ GD&ĐT' and 'Họ tên'")
    header_index, columns = found
    missing = [field_name for field_name in _REQUIRED if field_name not in columns]
    if missing:
        labels = ", ".join(_LABELS[name] for name in missing)
        raise ReaderImportError(f"Thiếu cột: {labels}", f"missing columns: {labels}")

    report = ImportReport(header_row=rows[header_index][0], sheet=sheet)
    data = [(number, values) for number, values in rows[header_index + 1:]
            if not _is_blank(values)]
    report.rows = total = len(data)
    students: list[_Student] = []
    seen_ids: set[str] = set()
    for number, values in data:
        parsed = _parse_row(number, values, columns, day)
        if isinstance(parsed, RowProblem):
            report.not_taken.append(parsed)
            if parsed.moet_id:
                seen_ids.add(parsed.moet_id)
        else:
            students.append(parsed)
            seen_ids.add(parsed.moet_id)
    students, duplicates = _drop_duplicates(students)
    report.not_taken += duplicates

    try:
        with sessions.begin() as session:
            _write(session, students, report, seen_ids, _school_year(day, school_year_start),
                   _created_at(today), school_year_start is not None, progress,
                   progress_every, total)
    except SQLAlchemyError as error:
        raise ReaderImportError(
            "Lỗi cơ sở dữ liệu: không có gì được ghi, hãy thử lại",
            f"database error, nothing was written: {error}") from error
    report.not_taken.sort(key=lambda problem: problem.row)
    if progress is not None:
        progress(total, total)
    return report


def _write(session: Session, students: list[_Student], report: ImportReport,
           seen_ids: set[str], school_year: int, created_at: dt.datetime, new_year: bool,
           progress: Progress | None, progress_every: int, total: int) -> None:
    known = {reader.moet_id: reader
             for reader in session.scalars(select(Reader).where(Reader.moet_id.is_not(None)))}
    codes = _Codes(session, school_year)
    skipped_rows = total - len(students)
    for done, student in enumerate(students, start=1):
        reader = known.get(student.moet_id)
        if reader is not None and reader.kind != ReaderKind.STUDENT:
            report.not_taken.append(RowProblem(
                student.row,
                f"Mã định danh {student.moet_id} đã thuộc về bạn đọc {reader.code} "
                "không phải học sinh",
                f"MOET id {student.moet_id} belongs to {reader.code}, not a student",
                student.moet_id))
        elif reader is None:
            code = codes.next(student.grade)
            session.add(Reader(
                code=code, moet_id=student.moet_id, name=student.name,
                kind=ReaderKind.STUDENT.value, class_name=student.class_name,
                grade=student.grade, birth_date=student.birth_date, gender=student.gender,
                status=ReaderStatus.ACTIVE.value, created_at=created_at))
            report.created += 1
            report.created_codes.append(code)
        elif _apply(reader, student):
            report.updated += 1
        else:
            report.unchanged += 1
        if progress is not None and done % progress_every == 0:
            progress(min(skipped_rows + done, total), total)
    # With no row taken the file is not a school list; it must not empty the library.
    if new_year and students:
        for reader in known.values():
            if (reader.kind == ReaderKind.STUDENT and reader.status == ReaderStatus.ACTIVE
                    and reader.moet_id not in seen_ids):
                reader.status = ReaderStatus.INACTIVE.value
                report.deactivated += 1
    session.flush()
