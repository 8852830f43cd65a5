"""The library's statistics for a school year (or any date range): stock, loans, visits,
readers, the busiest titles and readers, overdue loans per class, teaching equipment per
teacher, and copies per reader against the Thông tư 16 level-1 minimum.

Counting rules
- Loans are the ledger's `checkout` entries dated by `station_at` (when the book left: an
  offline replay counts on its own day) and leave out the entries that changed no loan
  (`server.circulation.NOT_APPLIED`), as the staff web's Today page does. Days are the
  site's local days (`calendar.timezone`). Reading in the library is not recorded yet.
- Stock is every copy not withdrawn (thanh lý: status `withdrawn` or a withdrawal
  decision); withdrawn copies are counted apart. Lost copies stay in the stock until a
  weeding decision writes them off, as on the paper register.
- Readers are registered while not `inactive`; "new" means `created_at` in the period.
- Overdue is "now": open loans (`loans`) due before today.

Copies per reader (Nghị định 93/2020/NĐ-CP art. 17, repeated by Thông tư 16/2022)
- Students count for a school level by their grade (khối): 1-5 primary, 6-9 lower
  secondary, 10-12 upper secondary. A student with no grade takes the leading number of
  the class name ("6A1" -> 6, "12.6" -> 12); with neither, or grade 0 (class names such
  as "Mầm", "Chồi", "Lá"), the student is a preschool child. In a single-level school every
  student belongs to that level; in a multi-level school a student whose level the
  school does not have is shown as "unassigned" and counts against no minimum.
- Copies are books (not teaching equipment) in stock. In a multi-level school a copy of
  a textbook kind (`library.kinds[].textbook`) whose title names a grade (the first
  stand-alone number 1-12 in the title: "Toán 6 – Tập một") belongs to that grade's
  level; every other copy is shared stock, divided among the levels in proportion to
  their students. So a level's ratio is its own copies / its students + shared copies /
  all students with a level, and the shares add up to the whole stock, never counted
  twice. Unassigned students get no share.
- Teachers: the per-teacher minimum (3 copies, preschool only) is checked on the
  teachers' kinds (`--option teacher_kinds=NV`, comma separated; default NV, the
  professional books) over all teachers. Primary and secondary ask one set of books
  per teacher by grade or subject, which the data cannot tell: the self-assessment
  leaves it to the librarian.

Every count is a SQL aggregate (GROUP BY) that works on SQLite and PostgreSQL: months
are buckets of a CASE over UTC bounds, not a dialect's date functions.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal_column, or_, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from server.circulation import NOT_APPLIED
from server.config import ServerConfig
from server.models import (
    Copy,
    CopyStatus,
    LedgerEntry,
    LedgerOp,
    Loan,
    Reader,
    ReaderKind,
    ReaderStatus,
    Title,
    Visit,
)
from server.reports.document import Chart, Column, Paragraph, Report, Table, Text
from server.reports.period import school_year
from server.reports.registry import ReportParams, report

__all__ = [
    "LEVEL_NAMES", "MINIMUMS", "Minimum", "Statistics", "Window", "build", "collect",
    "level_of_grade", "statistics_snapshot", "window",
]

GROUP = Text("Thống kê", "Statistics")
TOP = 10

# Level-1 minimum copies per reader, from Nghị định 93/2020/NĐ-CP art. 17 (the conditions
# to found a school library) as Thông tư 16/2022/TT-BGDĐT repeats them for level 1.
# per_teacher None: the rule is "one set per teacher by grade/subject", not a count.


@dataclass(frozen=True)
class Minimum:
    per_student: int
    per_teacher: int | None


MINIMUMS: dict[str, Minimum] = {
    "preschool": Minimum(per_student=2, per_teacher=3),
    "primary": Minimum(per_student=3, per_teacher=None),
    "lower_secondary": Minimum(per_student=4, per_teacher=None),
    "upper_secondary": Minimum(per_student=5, per_teacher=None),
}
LEVEL_ORDER: tuple[str, ...] = tuple(MINIMUMS)
LEVEL_NAMES: dict[str, Text] = {
    "preschool": Text("Mầm non", "Preschool"),
    "primary": Text("Tiểu học", "Primary"),
    "lower_secondary": Text("Trung học cơ sở", "Lower secondary"),
    "upper_secondary": Text("Trung học phổ thông", "Upper secondary"),
}
READER_KIND_NAMES: dict[str, Text] = {
    ReaderKind.STUDENT.value: Text("Học sinh", "Students"),
    ReaderKind.TEACHER.value: Text("Giáo viên", "Teachers"),
    ReaderKind.STAFF.value: Text("Cán bộ, nhân viên", "Staff"),
}
NO_CLASS = Text("(không có lớp)", "(no class)")
NO_SUBJECT = Text("(chưa phân môn loại)", "(no subject class)")
UNASSIGNED = Text("(chưa xác định cấp học)", "(level unknown)")
DEFAULT_TEACHER_KINDS = "NV"
_GRADE_IN_TITLE = re.compile(r"(?<!\d)(1[0-2]|[1-9])(?!\d)")
_LEADING_NUMBER = re.compile(r"^\s*(\d{1,2})")


# --- the period ------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """The days a report covers, as local dates and as UTC instants [start, end)."""

    first_day: dt.date
    last_day: dt.date
    start: dt.datetime
    end: dt.datetime
    school_year: str | None             # "2026-2027" when the period is a school year
    months: list[tuple[str, dt.datetime, dt.datetime]]  # label, UTC [start, end)

    @property
    def label(self) -> Text:
        span = f"{self.first_day:%d/%m/%Y} - {self.last_day:%d/%m/%Y}"
        if self.school_year:
            return Text(f"Năm học {self.school_year} ({span})",
                        f"School year {self.school_year} ({span})")
        return Text(f"Từ {self.first_day:%d/%m/%Y} đến {self.last_day:%d/%m/%Y}",
                    f"From {self.first_day:%d/%m/%Y} to {self.last_day:%d/%m/%Y}")


def window(config: ServerConfig, params: ReportParams, today: dt.date | None = None) -> Window:
    year = school_year(config, params.school_year, today)
    first, last = params.since or year.start, params.until or year.end
    if last < first:
        raise ValueError(f"Khoảng thời gian sai: {first:%d/%m/%Y} sau {last:%d/%m/%Y} / "
                         f"bad period: {first.isoformat()} is after {last.isoformat()}")
    zone = ZoneInfo(config.calendar.timezone)
    months: list[tuple[str, dt.datetime, dt.datetime]] = []
    day = first
    while day <= last:
        following = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        stop = min(following, last + dt.timedelta(days=1))
        months.append((f"{day.month}/{day.year}", _midnight(day, zone), _midnight(stop, zone)))
        day = stop
    label = year.label if params.since is None and params.until is None else None
    return Window(first, last, _midnight(first, zone),
                  _midnight(last + dt.timedelta(days=1), zone), label, months)


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


# --- levels ------------------------------------------------------------------------------

def _grade(grade: int | None, class_name: str | None) -> int | None:
    """The grade, or else the class name's leading number ("6A1" -> 6)."""
    if grade is None and class_name:
        match = _LEADING_NUMBER.match(class_name)
        grade = int(match.group(1)) if match else None
    return grade


def level_of_grade(grade: int | None, class_name: str | None, levels: Sequence[str]) -> str | None:
    """The school level a student counts for (see the module's docstring), or None."""
    if len(levels) == 1:
        return levels[0]
    grade = _grade(grade, class_name)
    if grade is None or grade == 0:
        level = "preschool"
    elif 1 <= grade <= 5:
        level = "primary"
    elif 6 <= grade <= 9:
        level = "lower_secondary"
    elif 10 <= grade <= 12:
        level = "upper_secondary"
    else:
        return None
    return level if level in levels else None


def grade_in_title(title: str) -> int | None:
    match = _GRADE_IN_TITLE.search(title)
    return int(match.group(1)) if match else None


# --- what is collected --------------------------------------------------------------------

@dataclass
class KindRow:
    prefix: str
    name: Text
    titles: int
    copies: int
    withdrawn: int
    books: int = 0              # copies in stock that are books, not teaching equipment


@dataclass
class LevelCoverage:
    level: str | None           # None: students whose level the school does not have
    students: int
    own_copies: int             # textbooks of the level's grades
    shared_copies: float        # its share of the shared stock
    minimum: int | None

    @property
    def copies(self) -> float:
        return self.own_copies + self.shared_copies

    @property
    def ratio(self) -> float | None:
        return self.copies / self.students if self.students else None

    @property
    def meets(self) -> bool | None:
        if self.minimum is None:
            return None
        return self.ratio is not None and self.ratio >= self.minimum


@dataclass
class TeacherCoverage:
    teachers: int
    kinds: list[str]
    copies: int
    minimum: int | None         # 3 where the school has a preschool level

    @property
    def ratio(self) -> float | None:
        return self.copies / self.teachers if self.teachers else None

    @property
    def meets(self) -> bool | None:
        if self.minimum is None:
            return None
        return self.ratio is not None and self.ratio >= self.minimum


@dataclass
class ReaderLoans:
    code: str
    name: str
    kind: str
    class_name: str | None
    grade: int | None
    loans: int


@dataclass
class Statistics:
    window: Window
    today: dt.date
    kinds: list[KindRow]
    subjects: list[tuple[str | None, int, int]]          # subject, titles, copies
    withdrawn: int
    loans: int
    loans_by_month: list[tuple[str, int]]
    loans_by_grade: list[tuple[int | None, int]]
    loans_by_class: list[tuple[str | None, int | None, int, int]]  # class, grade, students, loans
    loans_by_kind: list[tuple[str, int]]
    visits_by_month: list[tuple[str, int]]
    readers: list[tuple[str, int, int]]                  # kind, registered, new
    top_titles: list[tuple[str, str | None, int]]        # title, author, loans
    top_readers: list[ReaderLoans]
    overdue_by_class: list[tuple[str | None, int, int]]  # class, readers, loans
    coverage: list[LevelCoverage]
    teachers: TeacherCoverage
    equipment: list[ReaderLoans] = field(default_factory=list)

    @property
    def students(self) -> int:
        return next((n for kind, n, _ in self.readers if kind == ReaderKind.STUDENT.value), 0)

    @property
    def stock(self) -> int:
        return sum(row.copies for row in self.kinds)


def _applied() -> ColumnElement[bool]:
    return or_(LedgerEntry.conflict.is_(None),
               LedgerEntry.conflict.not_in([c.value for c in NOT_APPLIED]))


def _withdrawn() -> ColumnElement[bool]:
    return or_(Copy.status == CopyStatus.WITHDRAWN.value, Copy.withdrawal_id.is_not(None))


# Grouped by the output column's name: the CASE carries a bound parameter per month, and
# PostgreSQL would have to match the expression in GROUP BY parameter by parameter.
_BUCKET = literal_column("bucket")


def _month_bucket(column: Any, months: Sequence[tuple[str, dt.datetime, dt.datetime]]) -> Any:
    # A CASE over the month bounds is the same SQL on SQLite and PostgreSQL.
    return case(*[(column < end, index) for index, (_, _, end) in enumerate(months)],
                else_=len(months))


def _by_month(db: Session, w: Window, column: Any, value: Any, *where: Any) -> list[tuple[str, int]]:
    bucket = _month_bucket(column, w.months).label("bucket")
    counts = dict(db.execute(select(bucket, value).where(column >= w.start, column < w.end, *where)
                             .group_by(_BUCKET)).all())
    return [(label, int(counts.get(index) or 0)) for index, (label, _, _) in enumerate(w.months)]


def collect(sessions: sessionmaker[Session], config: ServerConfig, params: ReportParams,
            today: dt.date | None = None) -> Statistics:
    """Every number of the statistics report; `today` decides the default year and overdue."""
    zone = ZoneInfo(config.calendar.timezone)
    today = today or dt.datetime.now(zone).date()
    w = window(config, params, today)
    with sessions() as db:
        kinds, withdrawn = _kinds(db, config)
        checkouts = (LedgerEntry.op == LedgerOp.CHECKOUT.value, LedgerEntry.station_at >= w.start,
                     LedgerEntry.station_at < w.end, _applied())
        per_reader, loans_by_month = _loans(db, w, checkouts)
        students = _students(db)
        by_class, by_grade, by_kind = _roll_up(per_reader, students)
        readers = _readers(db, w)
        stats = Statistics(
            window=w, today=today, kinds=kinds, subjects=_subjects(db), withdrawn=withdrawn,
            loans=sum(r.loans for r in per_reader), loans_by_month=loans_by_month,
            loans_by_grade=by_grade, loans_by_class=by_class, loans_by_kind=by_kind,
            visits_by_month=_by_month(db, w, Visit.since, func.sum(Visit.count)),
            readers=readers, top_titles=_top_titles(db, checkouts),
            top_readers=sorted(per_reader, key=lambda r: (-r.loans, r.name, r.code))[:TOP],
            overdue_by_class=_overdue(db, today),
            coverage=_coverage(db, config, kinds, students),
            teachers=_teacher_coverage(config, params, kinds, readers),
            equipment=_equipment(db, checkouts))
    return stats


def _kinds(db: Session, config: ServerConfig) -> tuple[list[KindRow], int]:
    gone = _withdrawn()
    # Per kind and material: a title has one material, so its distinct counts add up.
    rows = db.execute(select(
        Copy.kind,
        Title.material,
        func.count(func.distinct(case((~gone, Copy.title_id)))),
        func.sum(case((~gone, 1), else_=0)),
        func.sum(case((gone, 1), else_=0)),
    ).join(Title, Title.id == Copy.title_id).group_by(Copy.kind, Title.material)).all()
    found: dict[str, list[int]] = {}
    for kind, material, titles, copies, out in rows:
        counts = found.setdefault(kind, [0, 0, 0, 0])
        counts[0] += int(titles)
        counts[1] += int(copies or 0)
        counts[2] += int(out or 0)
        counts[3] += int(copies or 0) if material != "equipment" else 0
    result = [KindRow(k.prefix, Text(k.name_vi, k.name_en), *found.pop(k.prefix, [0, 0, 0, 0]))
              for k in config.library.kinds]
    # Copies of a prefix no longer configured still belong in the count.
    result += [KindRow(prefix, Text(prefix, prefix), *counts) for prefix, counts in sorted(found.items())]
    return result, sum(row.withdrawn for row in result)


def _subjects(db: Session) -> list[tuple[str | None, int, int]]:
    rows = db.execute(select(Title.subject, func.count(func.distinct(Title.id)), func.count())
                      .join(Copy, Copy.title_id == Title.id).where(~_withdrawn())
                      .group_by(Title.subject)).all()
    return sorted(((s, int(t), int(c)) for s, t, c in rows),
                  key=lambda row: (row[0] is None, row[0] or ""))


def _loans(db: Session, w: Window, checkouts: Iterable[Any]
           ) -> tuple[list[ReaderLoans], list[tuple[str, int]]]:
    """Loans per reader and per month from one pass over the ledger.

    Grouped by (month, reader): at most readers x 12 rows, summed both ways here. Month
    first, so that SQLite scans the table rather than walking the reader_id index (a
    random read per entry).
    """
    bucket = _month_bucket(LedgerEntry.station_at, w.months).label("bucket")
    counted = (select(bucket, LedgerEntry.reader_id.label("reader_id"), func.count().label("loans"))
               .where(*checkouts).group_by(_BUCKET, LedgerEntry.reader_id).subquery())
    rows = db.execute(select(counted.c.bucket, Reader.id, Reader.code, Reader.name, Reader.kind,
                             Reader.class_name, Reader.grade, counted.c.loans)
                      .join(Reader, Reader.id == counted.c.reader_id))
    readers: dict[int, ReaderLoans] = {}
    months = [0] * len(w.months)
    for index, reader_id, code, name, kind, class_name, grade, loans in rows:
        months[index] += int(loans)
        entry = readers.setdefault(reader_id, ReaderLoans(code, name, kind, class_name, grade, 0))
        entry.loans += int(loans)
    return list(readers.values()), [(label, n) for (label, _, _), n in zip(w.months, months, strict=True)]


def _students(db: Session) -> list[tuple[str | None, int | None, int]]:
    """Registered students per (class, grade)."""
    rows = db.execute(select(Reader.class_name, Reader.grade, func.count())
                      .where(Reader.kind == ReaderKind.STUDENT.value,
                             Reader.status != ReaderStatus.INACTIVE.value)
                      .group_by(Reader.class_name, Reader.grade)).all()
    return [(c, g, int(n)) for c, g, n in rows]


def _roll_up(per_reader: Sequence[ReaderLoans], students: Sequence[tuple[str | None, int | None, int]]
             ) -> tuple[list[tuple[str | None, int | None, int, int]], list[tuple[int | None, int]],
                        list[tuple[str, int]]]:
    # Per-reader counts are a few hundred rows: the class/grade/kind sums are done here.
    classes: dict[str | None, list[int | None]] = {}   # class -> [grade, students, loans]
    for class_name, grade, n in students:
        entry = classes.setdefault(class_name, [grade, 0, 0])
        entry[0] = entry[0] if entry[0] is not None else grade
        entry[1] = (entry[1] or 0) + n
    # Every grade with students shows, borrowing or not.
    grades: dict[int | None, int] = {grade: 0 for _, grade, _ in students if grade is not None}
    kinds: dict[str, int] = defaultdict(int)
    for reader in per_reader:
        kinds[reader.kind] += reader.loans
        if reader.kind != ReaderKind.STUDENT.value:
            continue
        entry = classes.setdefault(reader.class_name, [reader.grade, 0, 0])
        entry[0] = entry[0] if entry[0] is not None else reader.grade
        entry[2] = (entry[2] or 0) + reader.loans
        grades[reader.grade] = grades.get(reader.grade, 0) + reader.loans
    by_class = sorted(((name, g, int(s or 0), int(n or 0)) for name, (g, s, n) in classes.items()),
                      key=lambda row: (row[0] is None, _grade(row[1], row[0]) or 0, row[0] or ""))
    by_grade = sorted(grades.items(), key=lambda item: (item[0] is None, item[0] or 0))
    order = list(READER_KIND_NAMES)
    by_kind = sorted(kinds.items(), key=lambda item: (order.index(item[0]) if item[0] in order
                                                      else len(order), item[0]))
    return by_class, by_grade, by_kind


def _readers(db: Session, w: Window) -> list[tuple[str, int, int]]:
    is_new = and_(Reader.created_at >= w.start, Reader.created_at < w.end)
    rows = db.execute(select(Reader.kind, func.count(), func.sum(case((is_new, 1), else_=0)))
                      .where(Reader.status != ReaderStatus.INACTIVE.value)
                      .group_by(Reader.kind)).all()
    found = {kind: (int(n), int(new or 0)) for kind, n, new in rows}
    order = list(READER_KIND_NAMES) + sorted(set(found) - set(READER_KIND_NAMES))
    return [(kind, *found.get(kind, (0, 0))) for kind in order]


def _top_titles(db: Session, checkouts: Iterable[Any]) -> list[tuple[str, str | None, int]]:
    # Per copy first, then per title: the join to copies runs once per copy, not per loan.
    # "+ 0" keeps SQLite from walking the copy_id index (a random read per entry) to group.
    copy_id = (LedgerEntry.copy_id + literal_column("0")).label("copy_id")
    per_copy = (select(copy_id, func.count().label("loans"))
                .where(*checkouts).group_by(copy_id).subquery())
    loans = func.sum(per_copy.c.loans).label("loans")
    counted = (select(Copy.title_id.label("title_id"), loans)
               .join(Copy, Copy.id == per_copy.c.copy_id).group_by(Copy.title_id)
               .order_by(loans.desc(), Copy.title_id).limit(TOP).subquery())
    rows = db.execute(select(Title.title, Title.author, counted.c.loans)
                      .join(counted, counted.c.title_id == Title.id)
                      .order_by(counted.c.loans.desc(), Title.title))
    return [(title, author, int(n)) for title, author, n in rows]


def _overdue(db: Session, today: dt.date) -> list[tuple[str | None, int, int]]:
    rows = db.execute(select(Reader.class_name, func.count(func.distinct(Loan.reader_id)), func.count())
                      .join(Reader, Reader.id == Loan.reader_id).where(Loan.due_on < today)
                      .group_by(Reader.class_name)).all()
    return sorted(((c, int(r), int(n)) for c, r, n in rows),
                  key=lambda row: (row[0] is None, row[0] or ""))


def _equipment(db: Session, checkouts: Iterable[Any]) -> list[ReaderLoans]:
    equipment = (select(Copy.id).join(Title, Title.id == Copy.title_id)
                 .where(Title.material == "equipment"))
    counted = (select(LedgerEntry.reader_id.label("reader_id"), func.count().label("loans"))
               .where(*checkouts, LedgerEntry.copy_id.in_(equipment))
               .group_by(LedgerEntry.reader_id).subquery())
    rows = db.execute(select(Reader.code, Reader.name, Reader.kind, Reader.class_name, Reader.grade,
                             counted.c.loans).join(counted, counted.c.reader_id == Reader.id)
                      .where(Reader.kind == ReaderKind.TEACHER.value)
                      .order_by(counted.c.loans.desc(), Reader.name))
    return [ReaderLoans(code, name, kind, c, g, int(n)) for code, name, kind, c, g, n in rows]


def _coverage(db: Session, config: ServerConfig, kinds: Sequence[KindRow],
              students: Sequence[tuple[str | None, int | None, int]]) -> list[LevelCoverage]:
    levels = [level for level in LEVEL_ORDER if level in config.library.levels]
    per_level: dict[str | None, int] = defaultdict(int)
    for class_name, grade, n in students:
        per_level[level_of_grade(grade, class_name, levels)] += n
    books = (~_withdrawn(), Title.material != "equipment")
    textbook_kinds = [k.prefix for k in config.library.kinds if k.textbook]
    own: dict[str, int] = defaultdict(int)
    if len(levels) > 1 and textbook_kinds:
        # Grouped per title: the grade is read from the title text, in Python.
        for title, n in db.execute(select(Title.title, func.count()).join(Copy, Copy.title_id == Title.id)
                                   .where(*books, Copy.kind.in_(textbook_kinds))
                                   .group_by(Title.id, Title.title)):
            grade = grade_in_title(title)
            level = level_of_grade(grade, None, levels) if grade is not None else None
            if level is not None:
                own[level] += int(n)
    shared = sum(k.books for k in kinds) - sum(own.values())
    placed = sum(n for level, n in per_level.items() if level is not None)
    result = []
    for level in levels:
        n = per_level.get(level, 0)
        share = shared * n / placed if placed else (shared if level == levels[0] else 0)
        result.append(LevelCoverage(level, n, own.get(level, 0), share, MINIMUMS[level].per_student))
    if per_level.get(None):
        result.append(LevelCoverage(None, per_level[None], 0, 0.0, None))
    return result


def _teacher_coverage(config: ServerConfig, params: ReportParams, stock: Sequence[KindRow],
                      readers: Sequence[tuple[str, int, int]]) -> TeacherCoverage:
    kinds = [k.strip().upper() for k in params.options.get("teacher_kinds", DEFAULT_TEACHER_KINDS)
             .split(",") if k.strip()]
    copies = sum(row.copies for row in stock if row.prefix in kinds)
    teachers = next((n for kind, n, _ in readers if kind == ReaderKind.TEACHER.value), 0)
    minimum = MINIMUMS["preschool"].per_teacher if "preschool" in config.library.levels else None
    return TeacherCoverage(teachers, kinds, copies, minimum)


# --- the report ----------------------------------------------------------------------------

def _yes_no(value: bool | None) -> Text | None:
    if value is None:
        return None
    return Text("Đạt", "Met") if value else Text("Chưa đạt", "Not met")


def _level_name(level: str | None) -> Text:
    return LEVEL_NAMES[level] if level else UNASSIGNED


def _class_name(name: str | None) -> Any:
    return name if name is not None else NO_CLASS


LOANS = Text("Lượt mượn", "Loans")
_N = dict(align="right", kind="int")


def _report(s: Statistics, config: ServerConfig) -> Report:
    w = s.window
    sections: list[Any] = []
    sections.append(Table(
        Text("1. Vốn tài liệu theo loại", "1. Stock by kind"),
        [Column("prefix", Text("Ký hiệu", "Prefix"), 0.7), Column("name", Text("Loại", "Kind"), 2.5),
         Column("titles", Text("Đầu sách", "Titles"), 1, **_N),
         Column("copies", Text("Bản sách", "Copies"), 1, **_N),
         Column("withdrawn", Text("Đã thanh lý (tính riêng)", "Withdrawn (apart)"), 1.3, **_N)],
        [(k.prefix, k.name, k.titles, k.copies, k.withdrawn) for k in s.kinds],
        totals=(Text("Tổng", "Total"), None, None, s.stock, s.withdrawn)))
    sections.append(Table(
        Text("2. Vốn tài liệu theo môn loại", "2. Stock by subject class"),
        [Column("subject", Text("Môn loại", "Subject class"), 3),
         Column("titles", Text("Đầu sách", "Titles"), 1, **_N),
         Column("copies", Text("Bản sách", "Copies"), 1, **_N)],
        [(subject if subject is not None else NO_SUBJECT, t, c) for subject, t, c in s.subjects]))
    coverage_rows: list[Sequence[Any]] = [
        (_level_name(c.level), c.students, round(c.copies), c.ratio, c.minimum, _yes_no(c.meets))
        for c in s.coverage]
    t = s.teachers
    coverage_rows.append((Text(f"Giáo viên (sách {', '.join(t.kinds)})",
                               f"Teachers ({', '.join(t.kinds)} books)"),
                          t.teachers, t.copies, t.ratio, t.minimum, _yes_no(t.meets)))
    sections.append(Table(
        Text("3. Số bản sách trên bạn đọc so với mức tối thiểu (mức độ 1, Thông tư 16/2022)",
             "3. Copies per reader against the minimum (level 1, Circular 16/2022)"),
        [Column("level", Text("Cấp học", "Level"), 2.2),
         Column("readers", Text("Bạn đọc", "Readers"), 1, **_N),
         Column("copies", Text("Bản sách", "Copies"), 1, **_N),
         Column("ratio", Text("Bản/bạn đọc", "Per reader"), 1, align="right", kind="decimal"),
         Column("minimum", Text("Tối thiểu", "Minimum"), 1, **_N),
         Column("meets", Text("Đánh giá", "Result"), 1, align="center")],
        coverage_rows))
    if len(s.coverage) > 1:
        sections.append(Paragraph(Text(
            "Trường nhiều cấp học: sách giáo khoa ghi rõ khối lớp tính cho cấp học của khối đó; "
            "các bản sách khác dùng chung, chia cho các cấp theo số học sinh.",
            "Multi-level school: textbooks naming a grade count for that grade's level; other "
            "copies are shared, divided among the levels by their number of students.")))
    sections.append(Table(
        Text(f"4. Lượt mượn theo tháng (tổng {s.loans})", f"4. Loans by month (total {s.loans})"),
        [Column("month", Text("Tháng", "Month"), 1), Column("loans", LOANS, 1, **_N)],
        s.loans_by_month, totals=(Text("Tổng", "Total"), s.loans)))
    sections.append(Chart(Text("Lượt mượn theo tháng", "Loans by month"),
                          [label for label, _ in s.loans_by_month],
                          {"Lượt mượn / Loans": [n for _, n in s.loans_by_month]}))
    sections.append(Paragraph(Text(
        "Lượt đọc tại chỗ (đọc sách trong thư viện) chưa được ghi nhận trên phần mềm nên không có "
        "trong thống kê này; số lượt vào thư viện ở mục 8 do cổng đếm.",
        "Reading in the library is not recorded by the software yet, so it is not in these "
        "figures; the visits in section 8 are counted by the gates.")))
    sections.append(Table(
        Text("5. Lượt mượn của học sinh theo khối", "5. Student loans by grade"),
        [Column("grade", Text("Khối", "Grade"), 1), Column("loans", LOANS, 1, **_N)],
        [(g if g is not None else Text("(không rõ)", "(unknown)"), n) for g, n in s.loans_by_grade]))
    sections.append(Chart(Text("Lượt mượn theo khối", "Loans by grade"),
                          [str(g) if g is not None else "?" for g, _ in s.loans_by_grade],
                          {"Lượt mượn / Loans": [n for _, n in s.loans_by_grade]}))
    sections.append(Table(
        Text("6. Lượt mượn của học sinh theo lớp", "6. Student loans by class"),
        [Column("class", Text("Lớp", "Class"), 1.2), Column("grade", Text("Khối", "Grade"), 0.8),
         Column("students", Text("Số học sinh", "Students"), 1, **_N), Column("loans", LOANS, 1, **_N),
         Column("per", Text("Lượt/học sinh", "Per student"), 1, align="right", kind="decimal")],
        [(_class_name(c), g, st, n, n / st if st else None) for c, g, st, n in s.loans_by_class]))
    sections.append(Table(
        Text("7. Lượt mượn theo loại bạn đọc", "7. Loans by reader kind"),
        [Column("kind", Text("Bạn đọc", "Readers"), 2), Column("loans", LOANS, 1, **_N)],
        [(READER_KIND_NAMES.get(k, Text(k, k)), n) for k, n in s.loans_by_kind]))
    visits = sum(n for _, n in s.visits_by_month)
    sections.append(Table(
        Text("8. Lượt vào thư viện theo tháng (cổng đếm)", "8. Visits by month (gate counts)"),
        [Column("month", Text("Tháng", "Month"), 1), Column("visits", Text("Lượt vào", "Visits"), 1, **_N)],
        s.visits_by_month, totals=(Text("Tổng", "Total"), visits)))
    sections.append(Table(
        Text("9. Bạn đọc", "9. Readers"),
        [Column("kind", Text("Bạn đọc", "Readers"), 2),
         Column("registered", Text("Đang đăng ký", "Registered"), 1, **_N),
         Column("new", Text("Mới trong kỳ", "New in the period"), 1, **_N)],
        [(READER_KIND_NAMES.get(k, Text(k, k)), n, new) for k, n, new in s.readers],
        totals=(Text("Tổng", "Total"), sum(r[1] for r in s.readers), sum(r[2] for r in s.readers))))
    sections.append(Table(
        Text("10. Mười đầu sách được mượn nhiều nhất", "10. Top 10 titles"),
        [Column("rank", Text("TT", "No."), 0.4, align="right"), Column("title", Text("Nhan đề", "Title"), 4),
         Column("author", Text("Tác giả", "Author"), 2), Column("loans", LOANS, 1, **_N)],
        [(i, title, author, n) for i, (title, author, n) in enumerate(s.top_titles, start=1)]))
    sections.append(Table(
        Text("11. Mười bạn đọc mượn nhiều nhất", "11. Top 10 readers"),
        [Column("rank", Text("TT", "No."), 0.4, align="right"), Column("code", Text("Mã thẻ", "Card"), 1.4),
         Column("name", Text("Họ tên", "Name"), 2.5), Column("class", Text("Lớp", "Class"), 1),
         Column("loans", LOANS, 1, **_N)],
        [(i, r.code, r.name, r.class_name or READER_KIND_NAMES.get(r.kind, Text(r.kind, r.kind)), r.loans)
         for i, r in enumerate(s.top_readers, start=1)]))
    sections.append(Table(
        Text(f"12. Sách quá hạn theo lớp (đến ngày {s.today:%d/%m/%Y})",
             f"12. Overdue by class (as of {s.today:%d/%m/%Y})"),
        [Column("class", Text("Lớp", "Class"), 1.5),
         Column("readers", Text("Số bạn đọc", "Readers"), 1, **_N),
         Column("loans", Text("Số bản quá hạn", "Overdue copies"), 1, **_N)],
        [(_class_name(c), r, n) for c, r, n in s.overdue_by_class],
        totals=(Text("Tổng", "Total"), sum(r for _, r, _ in s.overdue_by_class),
                sum(n for _, _, n in s.overdue_by_class)) if s.overdue_by_class else None,
        empty=Text("Không có sách quá hạn.", "Nothing overdue.")))
    sections.append(Table(
        Text("13. Sử dụng thiết bị dạy học theo giáo viên", "13. Teaching equipment use per teacher"),
        [Column("code", Text("Mã thẻ", "Card"), 1.2), Column("name", Text("Giáo viên", "Teacher"), 3),
         Column("loans", LOANS, 1, **_N)],
        [(r.code, r.name, r.loans) for r in s.equipment],
        totals=(Text("Tổng", "Total"), None, sum(r.loans for r in s.equipment)) if s.equipment else None,
        empty=Text("Không có lượt mượn thiết bị trong kỳ.", "No equipment loans in the period.")))
    return Report(name="statistics", title=Text("THỐNG KÊ HOẠT ĐỘNG THƯ VIỆN", "LIBRARY STATISTICS"),
                  school=config.school_name, subtitle=w.label, sections=sections,
                  signatures=(Text("Người lập", "Prepared by"), Text("Hiệu trưởng", "Principal")))


# --- the JSON form ---------------------------------------------------------------------------

def _snapshot(s: Statistics, config: ServerConfig) -> dict[str, Any]:
    w = s.window
    return {
        "schema_version": 1,
        "site": config.site,
        "school": config.school_name,
        "levels": list(config.library.levels),
        "period": {"school_year": w.school_year, "first_day": w.first_day.isoformat(),
                   "last_day": w.last_day.isoformat()},
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "stock": {
            "by_kind": [{"prefix": k.prefix, "name_vi": k.name.vi, "name_en": k.name.en,
                         "titles": k.titles, "copies": k.copies, "withdrawn": k.withdrawn}
                        for k in s.kinds],
            "by_subject": [{"subject": subject, "titles": t, "copies": c} for subject, t, c in s.subjects],
            "copies": s.stock, "withdrawn": s.withdrawn,
        },
        "coverage": {
            "levels": [{"level": c.level, "students": c.students, "own_copies": c.own_copies,
                        "shared_copies": round(c.shared_copies, 2), "copies": round(c.copies, 2),
                        "per_student": None if c.ratio is None else round(c.ratio, 2),
                        "minimum": c.minimum, "meets": c.meets} for c in s.coverage],
            "teachers": {"teachers": s.teachers.teachers, "kinds": s.teachers.kinds,
                         "copies": s.teachers.copies,
                         "per_teacher": None if s.teachers.ratio is None else round(s.teachers.ratio, 2),
                         "minimum": s.teachers.minimum, "meets": s.teachers.meets},
        },
        "loans": {
            "total": s.loans,
            "read_in_library": None,   # not recorded yet
            "by_month": [{"month": m, "loans": n} for m, n in s.loans_by_month],
            "by_grade": [{"grade": g, "loans": n} for g, n in s.loans_by_grade],
            "by_class": [{"class": c, "grade": g, "students": st, "loans": n}
                         for c, g, st, n in s.loans_by_class],
            "by_reader_kind": [{"kind": k, "loans": n} for k, n in s.loans_by_kind],
        },
        "visits": {"total": sum(n for _, n in s.visits_by_month),
                   "by_month": [{"month": m, "visits": n} for m, n in s.visits_by_month]},
        "readers": [{"kind": k, "registered": n, "new": new} for k, n, new in s.readers],
        "top_titles": [{"title": t, "author": a, "loans": n} for t, a, n in s.top_titles],
        "top_readers": [{"code": r.code, "name": r.name, "class": r.class_name, "loans": r.loans}
                        for r in s.top_readers],
        "overdue": {"as_of": s.today.isoformat(),
                    "by_class": [{"class": c, "readers": r, "loans": n}
                                 for c, r, n in s.overdue_by_class]},
        "equipment_by_teacher": [{"code": r.code, "name": r.name, "loans": r.loans} for r in s.equipment],
    }


def statistics_snapshot(sessions: sessionmaker[Session], config: ServerConfig,
                        params: ReportParams, today: dt.date | None = None) -> dict[str, Any]:
    """The statistics as plain JSON values, keys in English (`thuvien report statistics
    --format json`)."""
    return _snapshot(collect(sessions, config, params, today), config)


@report("statistics", Text("Thống kê hoạt động thư viện", "Library statistics"), GROUP,
        formats=("pdf", "xlsx", "json"), snapshot=statistics_snapshot)
def build(sessions: sessionmaker[Session], config: ServerConfig, params: ReportParams) -> Report:
    return _report(collect(sessions, config, params), config)


def build_for(sessions: sessionmaker[Session], config: ServerConfig, params: ReportParams,
              today: dt.date) -> Report:
    """`build` on a given day (tests, and reports made for a past date)."""
    return _report(collect(sessions, config, params, today), config)

