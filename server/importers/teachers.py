"""Teachers from the school's staff list (Excel or CSV).

Teacher lists are made by hand or exported from the sector database's staff module; like
the students' list they have a title above the header, so the header row is found by
itself and columns mapped by folded name, with the readers' importer's file reading,
cell parsing and report. A teacher is matched by an id when the file has one (mã định
danh, mã giáo viên or số CCCD, kept in `Reader.moet_id`), else by folded name and birth
date. New teachers get the next GV-#### code; nobody is ever deleted or deactivated here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from server.folding import fold
from server.importers.readers import (
    HEADER_SEARCH_ROWS,
    PROGRESS_EVERY,
    ImportReport,
    ReaderImportError,
    RowProblem,
    apply_fields,
    _birth_date,
    _created_at,
    _gender,
    _header_key,
    _is_blank,
    _read_rows,
    _text,
)
from server.models import Reader, ReaderKind, ReaderStatus

__all__ = ["import_teachers"]

Progress = Callable[[int, int], None]

# Folded header words -> field. "Tổ chuyên môn" and "Môn dạy" have no column in the model,
# so they are not mapped: like any other unknown column they are ignored.
_HEADERS: dict[str, str] = {
    "ho ten": "name",
    "ho va ten": "name",
    "ho ten giao vien": "name",
    "ho va ten giao vien": "name",
    "ma dinh danh": "ident",
    "ma dinh danh bo gd dt": "ident",
    "ma dinh danh bo gddt": "ident",
    "ma dinh danh bo gd va dt": "ident",
    "ma dinh danh can bo": "ident",
    "ma giao vien": "ident",
    "ma gv": "ident",
    "ma can bo": "ident",
    "so cccd": "cccd",
    "cccd": "cccd",
    "so can cuoc": "cccd",
    "so can cuoc cong dan": "cccd",
    "so cmnd cccd": "cccd",
    "ngay sinh": "birth_date",
    "gioi tinh": "gender",
}
CCCD_DIGITS = 12
ID_MAX = 16  # the width of Reader.moet_id
_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_CODE = re.compile(r"^GV-(\d+)$")


@dataclass(frozen=True)
class _Teacher:
    row: int
    ident: str | None
    name: str
    birth_date: dt.date | None
    gender: str | None

    @property
    def person(self) -> tuple[str, dt.date | None]:
        return fold(self.name), self.birth_date


def _find_header(rows: list[tuple[int, tuple[Any, ...]]]) -> tuple[int, dict[str, int]] | None:
    """(index in rows, field -> column) of the first row with a name column."""
    for index, (_, values) in enumerate(rows[:HEADER_SEARCH_ROWS]):
        columns: dict[str, int] = {}
        for column, value in enumerate(values):
            name = _HEADERS.get(_header_key(value))
            if name is not None:
                columns.setdefault(name, column)
        if "name" in columns:
            return index, columns
    return None


def _ident(value: Any, cccd: bool) -> tuple[str | None, tuple[str, str] | None]:
    if value is None or isinstance(value, bool):
        return None, None
    if isinstance(value, float) and not value.is_integer():
        return None, (f"Mã định danh không hợp lệ: '{value}'", f"bad id '{value}'")
    raw = re.sub(r"\s+", "", _text(value)).lstrip("'")
    if not raw:
        return None, None
    # Every CCCD starts with its province's code 001-096; a number cell drops those zeros.
    if cccd and raw.isdigit() and CCCD_DIGITS - 2 <= len(raw) < CCCD_DIGITS:
        raw = raw.zfill(CCCD_DIGITS)
    if not (_ID.match(raw) and len(raw) <= ID_MAX):
        return None, (f"Mã định danh không hợp lệ: '{raw}' (chữ số, tối đa {ID_MAX} ký tự)",
                      f"bad id '{raw}' (letters and digits, at most {ID_MAX})")
    if cccd and not (raw.isdigit() and len(raw) == CCCD_DIGITS):
        return None, (f"Số CCCD phải có đúng 12 chữ số: '{raw}'",
                      f"a CCCD number must be exactly 12 digits: '{raw}'")
    return raw, None


def _parse_row(number: int, values: tuple[Any, ...], columns: dict[str, int],
               today: dt.date) -> _Teacher | RowProblem:
    def cell(name: str) -> Any:
        column = columns.get(name)
        return values[column] if column is not None and column < len(values) else None

    problems: list[tuple[str, str]] = []
    # The school's own id wins over the CCCD when a row has both: it is what re-imports carry.
    ident, problem = _ident(cell("ident"), cccd=False)
    problems += [problem] if problem else []
    if ident is None and problem is None:
        ident, problem = _ident(cell("cccd"), cccd=True)
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
    if problems:
        return RowProblem(number, "; ".join(vi for vi, _ in problems),
                          "; ".join(en for _, en in problems), ident)
    return _Teacher(number, ident, name, birth_date, gender)


def _drop_duplicates(teachers: list[_Teacher]) -> tuple[list[_Teacher], list[RowProblem]]:
    """Identical repeats: the first is taken. Conflicting rows for one teacher (same id,
    or no id and the same name and birth date): none is, the file cannot tell which."""
    def key(teacher: _Teacher) -> tuple[Any, ...]:
        return ("id", teacher.ident) if teacher.ident else ("person", *teacher.person)

    groups: dict[tuple[Any, ...], list[_Teacher]] = {}
    for teacher in teachers:
        groups.setdefault(key(teacher), []).append(teacher)
    kept: list[_Teacher] = []
    problems: list[RowProblem] = []
    for teacher in teachers:
        group = groups[key(teacher)]
        first = group[0]
        same = all((o.ident, o.name, o.birth_date, o.gender)
                   == (first.ident, first.name, first.birth_date, first.gender) for o in group)
        if len(group) == 1 or (same and teacher is first):
            kept.append(teacher)
            continue
        others = ", ".join(str(other.row) for other in group if other is not teacher)
        problems.append(RowProblem(teacher.row, f"Trùng giáo viên với dòng {others}",
                                   f"the same teacher as on row {others}", teacher.ident))
    return kept, problems


def import_teachers(sessions: sessionmaker[Session], path: str | Path, *,
                    today: dt.date | dt.datetime, progress: Progress | None = None,
                    progress_every: int = PROGRESS_EVERY) -> ImportReport:
    """Import teachers from a staff list (.xlsx or .csv) at `path`.

    Columns by name: Họ tên (required), an id (Mã định danh / Mã giáo viên / Số CCCD),
    Ngày sinh, Giới tính; any other column is ignored. A row is matched by its id, or, for
    a row without one by folded name and birth date, and for an id not yet known the same
    among teachers without an id (the id is then recorded). New teachers are created with GV-#### codes past the highest ever
    issued; known ones updated (a blank cell erases nothing); nobody is deleted. Rows not
    taken are in `ImportReport.not_taken` (row numbers, vi and en). The write is one
    transaction: a database error leaves the database as it was and raises
    ReaderImportError, as does an unreadable file or one with no header row.
    `progress(done, total)` is called every `progress_every` rows and at the end.
    """
    path = Path(path)
    day = today.date() if isinstance(today, dt.datetime) else today
    sheet, rows = _read_rows(path)
    found = _find_header(rows)
    if found is None:
        raise ReaderImportError(
            f"Không tìm thấy dòng tiêu đề trong {HEADER_SEARCH_ROWS} dòng đầu của {path.name}: "
            "cần cột 'Họ tên'",
            f"no header row in the first {HEADER_SEARCH_ROWS} rows of {path.name}: "
            "expected a column 'Họ tên'")
    header_index, columns = found
    report = ImportReport(header_row=rows[header_index][0], sheet=sheet)
    data = [(number, values) for number, values in rows[header_index + 1:]
            if not _is_blank(values)]
    report.rows = total = len(data)
    teachers: list[_Teacher] = []
    for number, values in data:
        parsed = _parse_row(number, values, columns, day)
        if isinstance(parsed, RowProblem):
            report.not_taken.append(parsed)
        else:
            teachers.append(parsed)
    teachers, duplicates = _drop_duplicates(teachers)
    report.not_taken += duplicates

    try:
        with sessions.begin() as session:
            _write(session, teachers, report, _created_at(today), progress, progress_every,
                   total)
    except SQLAlchemyError as error:
        raise ReaderImportError(
            "Lỗi cơ sở dữ liệu: không có gì được ghi, hãy thử lại",
            f"database error, nothing was written: {error}") from error
    report.not_taken.sort(key=lambda problem: problem.row)
    if progress is not None:
        progress(total, total)
    return report


def _apply(reader: Reader, teacher: _Teacher) -> bool:
    wanted: dict[str, Any] = {"name": teacher.name}
    if teacher.ident is not None:
        wanted["moet_id"] = teacher.ident
    return apply_fields(reader, wanted, birth_date=teacher.birth_date, gender=teacher.gender)


def _write(session: Session, teachers: list[_Teacher], report: ImportReport,
           created_at: dt.datetime, progress: Progress | None, progress_every: int,
           total: int) -> None:
    by_id = {reader.moet_id: reader
             for reader in session.scalars(select(Reader).where(Reader.moet_id.is_not(None)))}
    by_person: dict[tuple[str, dt.date | None], list[Reader]] = {}
    for reader in session.scalars(select(Reader).where(Reader.kind == ReaderKind.TEACHER.value)):
        by_person.setdefault((fold(reader.name), reader.birth_date), []).append(reader)
    # Readers are never deleted, so the highest code present is the highest ever issued.
    last = max((int(match[1]) for code in session.scalars(
        select(Reader.code).where(Reader.code.like("GV-%"))) if (match := _CODE.match(code))),
        default=0)
    skipped_rows = total - len(teachers)
    for done, teacher in enumerate(teachers, start=1):
        reader = by_id.get(teacher.ident) if teacher.ident else None
        if reader is None:
            candidates = by_person.get(teacher.person, [])
            if teacher.ident:
                # An id not yet known may be given to a teacher who has none, never swap one.
                candidates = [candidate for candidate in candidates if candidate.moet_id is None]
            if len(candidates) > 1:
                codes = ", ".join(sorted(candidate.code for candidate in candidates))
                report.not_taken.append(RowProblem(
                    teacher.row, f"Nhiều giáo viên cùng họ tên và ngày sinh: {codes}",
                    f"several teachers with this name and birth date: {codes}",
                    teacher.ident))
                continue
            reader = candidates[0] if candidates else None
            if reader is not None:
                # Matched once: a second row of the same person must not match it again.
                by_person[teacher.person].remove(reader)
        if reader is not None and reader.kind != ReaderKind.TEACHER:
            report.not_taken.append(RowProblem(
                teacher.row, f"Mã định danh {teacher.ident} đã thuộc về bạn đọc {reader.code} "
                "không phải giáo viên",
                f"id {teacher.ident} belongs to {reader.code}, not a teacher", teacher.ident))
        elif reader is None:
            last += 1
            code = f"GV-{last:04d}"
            reader = Reader(code=code, moet_id=teacher.ident, name=teacher.name,
                            kind=ReaderKind.TEACHER.value, birth_date=teacher.birth_date,
                            gender=teacher.gender, status=ReaderStatus.ACTIVE.value,
                            created_at=created_at)
            session.add(reader)
            report.created += 1
            report.created_codes.append(code)
        elif _apply(reader, teacher):
            report.updated += 1
        else:
            report.unchanged += 1
        if reader is not None and teacher.ident:
            by_id[teacher.ident] = reader
        if progress is not None and done % progress_every == 0:
            progress(min(skipped_rows + done, total), total)
    session.flush()
