"""Intake: a phiếu nhập (receipt) brings a batch of copies in, each with its ĐKCB number.

Rules a librarian should know:
- ĐKCB numbers run per kind prefix (GK, TK, NV, TN, TB, ... from `library.kinds`) and
  are never reset nor reused: `accession_counters` keeps the last one handed out, so a
  withdrawn copy's number stays its own. The first intake of a prefix continues after
  the highest number the catalogue already holds (copies from before thuvien kept
  receipts, TK.00045 ...).
- A receipt is a line of part I of the general register: its running number
  (`Receipt.number`) is never reset either.
- A receipt is all or nothing: one bad line and nothing is written; the error names
  every bad line (1-based, and the sheet row when it came from a file).
- A new title whose ISBN the catalogue already holds is that title: empty fields are
  filled, nothing is overwritten (as the catalogue import does).
- Teaching equipment (a kind with material "equipment", TB by default) comes in the same
  way; its title is marked material="equipment".

Receipt files (`read_receipt_file`) are Excel or CSV with preamble rows above the header
(the school, "PHIẾU NHẬP SÁCH", the date) and often a total row and signatures below.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from server import db
from server.config import LibraryConfig, ServerConfig
from server.folding import fold
from server.importers.catalogue import (
    _COLUMNS as CATALOGUE_COLUMNS,
    _LIMITS,
    TitleRecord,
    _clean,
    _isbn_candidate,
    _merge,
    _year,
    csv_rows,
)
from server.isbn import InvalidIsbn, normalize_isbn
from server.models import (
    AccessionCounter,
    AcquisitionSource,
    Copy,
    CopyStatus,
    Receipt,
    Title,
)

__all__ = ["SOURCE_NAMES", "AccessionRange", "IntakeError", "LineProblem", "ReceiptDetail",
           "ReceiptFileError", "ReceiptLine", "ReceiptResult", "ReceiptSummary", "TitleLine",
           "accession_ranges", "allocate", "highest_accession", "list_receipts",
           "read_receipt_file", "receipt_detail", "receive"]

SOURCE_NAMES: dict[AcquisitionSource, tuple[str, str]] = {
    AcquisitionSource.BOUGHT: ("Trường tự mua", "bought by the school"),
    AcquisitionSource.DISTRICT: ("PGD cấp phát", "from the district office"),
    AcquisitionSource.PROVINCE: ("SGD cấp phát", "from the provincial department"),
    AcquisitionSource.DONATED: ("Biếu tặng", "donated"),
    AcquisitionSource.OTHER: ("Khác", "other"),
}

MAX_QUANTITY = 10_000          # one line of one receipt; more is a typo (a price in the wrong column)
_IN_CHUNK = 500                # bound variables per IN (): far under SQLite's limit
_HEADER_SCAN_ROWS = 30
# Any accession number: prefix, an optional separator, the running number.
_ACCESSION = re.compile(r"^([A-Z]{1,8})([.\-/]?)(\d+)$")


# --- errors -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LineProblem:
    """Why one line (1-based) of a receipt, or one row of a receipt file, was refused."""

    line: int
    reason_vi: str
    reason_en: str
    row: int | None = None     # the row the librarian sees in the sheet, when read from a file

    def __str__(self) -> str:
        where_vi = f"dòng {self.line}" + (f" (hàng {self.row} trong tệp)" if self.row else "")
        where_en = f"line {self.line}" + (f" (row {self.row} of the file)" if self.row else "")
        return f"{where_vi}: {self.reason_vi} / {where_en}: {self.reason_en}"


class IntakeError(Exception):
    """Nothing was written; `message_vi` / `message_en` say why, `problems` line by line."""

    def __init__(self, vi: str, en: str, problems: Sequence[LineProblem] = ()) -> None:
        self.message_vi, self.message_en = vi, en
        self.problems = list(problems)
        details = "".join(f"\n  {problem}" for problem in self.problems)
        super().__init__(f"{vi} / {en}{details}")


class ReceiptFileError(IntakeError):
    """A receipt file that cannot be read as a whole, or with bad rows (`problems`)."""


# --- ĐKCB numbers -----------------------------------------------------------------------

def _library(config: ServerConfig | LibraryConfig) -> LibraryConfig:
    return config.library if isinstance(config, ServerConfig) else config


def _unknown_kind(library: LibraryConfig, prefix: str) -> tuple[str, str]:
    known = ", ".join(kind.prefix for kind in library.kinds)
    return (f"loại ĐKCB «{prefix}» không có trong cấu hình (có: {known})",
            f"ĐKCB kind {prefix!r} is not in the configuration (known: {known})")


def highest_accession(session: Session, prefix: str) -> int:
    """The highest running number of `prefix` among the copies (0 if none).

    Read once per prefix, when its counter is first made: older catalogues may use any
    separator (TK.00045, TK-45, TK00045), so the suffix is parsed here, not in SQL.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}[.\-/ ]?(\d+)$")
    highest = 0
    rows = session.execute(select(Copy.accession_number)
                           .where(Copy.accession_number.like(f"{prefix}%"))
                           .execution_options(yield_per=5000)).scalars()
    for accession in rows:
        if match := pattern.match(accession.strip().upper()):
            highest = max(highest, int(match.group(1)))
    return highest


def _create_counter(session: Session, prefix: str, last: int) -> None:
    table = AccessionCounter.__table__
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        # Two first intakes of one prefix may race to create its row: the loser's
        # insert is a no-op and it counts on from the winner's row.
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        session.execute(dialect_insert(table).values(kind=prefix, last=last)
                        .on_conflict_do_nothing(index_elements=["kind"]))
    else:
        session.execute(insert(table).values(kind=prefix, last=last))


def _taken(session: Session, numbers: Sequence[str]) -> bool:
    for start in range(0, len(numbers), _IN_CHUNK):
        chunk = numbers[start:start + _IN_CHUNK]
        if session.scalar(select(Copy.id).where(Copy.accession_number.in_(chunk)).limit(1)):
            return True
    return False


def allocate(session: Session, library: ServerConfig | LibraryConfig, prefix: str,
             count: int) -> list[str]:
    """Hand out the next `count` ĐKCB numbers of `prefix`, in the caller's transaction.

    The counter moves by one UPDATE ... RETURNING, so two intakes at once never get the
    same number (SQLite serialises writers; PostgreSQL locks the counter's row).
    """
    library = _library(library)
    if library.kind(prefix) is None:
        vi, en = _unknown_kind(library, prefix)
        raise IntakeError(f"Không cấp được số ĐKCB: {vi}", f"cannot allocate ĐKCB numbers: {en}")
    if count < 1:
        raise IntakeError(f"Số ĐKCB cần cấp phải từ 1 trở lên (không phải {count})",
                          f"the number of ĐKCB to allocate must be 1 or more (not {count})")
    table = AccessionCounter.__table__
    if session.scalar(select(table.c.last).where(table.c.kind == prefix)) is None:
        _create_counter(session, prefix, highest_accession(session, prefix))
    last = session.execute(update(table).where(table.c.kind == prefix)
                           .values(last=table.c.last + count)
                           .returning(table.c.last)).scalar_one()
    numbers = [library.accession_number(prefix, n) for n in range(last - count + 1, last + 1)]
    if _taken(session, numbers):
        # Copies were added past the counter by other means (an import, by hand): count
        # on from the highest in use rather than fail on a duplicate ĐKCB.
        last = highest_accession(session, prefix) + count
        session.execute(update(table).where(table.c.kind == prefix).values(last=last))
        numbers = [library.accession_number(prefix, n) for n in range(last - count + 1, last + 1)]
    return numbers


@dataclass(frozen=True)
class AccessionRange:
    """A run of consecutive ĐKCB numbers of one kind, as the register writes it."""

    kind: str
    first: str
    last: str
    count: int

    def __str__(self) -> str:
        return self.first if self.count == 1 else f"{self.first}–{self.last}"


def accession_ranges(numbers: Iterable[str]) -> list[AccessionRange]:
    """Consecutive runs of `numbers` (any order), by kind then number.

    Numbers that do not parse as prefix + running number stay single entries at the end.
    """
    parsed: list[tuple[str, str, int, int, str]] = []
    odd: list[str] = []
    for number in numbers:
        match = _ACCESSION.match(number)
        if match is None:
            odd.append(number)
            continue
        prefix, separator, digits = match.groups()
        parsed.append((prefix, separator, len(digits), int(digits), number))
    parsed.sort(key=lambda item: (item[0], item[1], item[2], item[3]))
    ranges: list[AccessionRange] = []
    run: list[tuple[str, str, int, int, str]] = []
    for item in parsed:
        if run and item[:3] == run[-1][:3] and item[3] == run[-1][3] + 1:
            run.append(item)
            continue
        if run:
            ranges.append(AccessionRange(run[0][0], run[0][4], run[-1][4], len(run)))
        run = [item]
    if run:
        ranges.append(AccessionRange(run[0][0], run[0][4], run[-1][4], len(run)))
    ranges += [AccessionRange("", number, number, 1) for number in sorted(odd)]
    return ranges


# --- one receipt in -----------------------------------------------------------------------

@dataclass(frozen=True)
class ReceiptLine:
    """One line of a phiếu nhập: `quantity` copies of one title, of one kind, at one price.

    The title is an existing one (`title_id`, or `isbn` alone when the catalogue has it)
    or a new one described by the other fields (`title` at least).
    """

    kind: str                            # the ĐKCB prefix: GK, TK, NV, TN, TB, ...
    quantity: int
    title_id: int | None = None
    title: str | None = None
    author: str | None = None
    publisher: str | None = None
    year: int | None = None
    isbn: str | None = None
    subject: str | None = None           # môn loại
    call_number: str | None = None       # ký hiệu xếp giá
    price: int | None = None             # đơn giá, đồng per copy
    location: str | None = None          # kho / vị trí
    row: int | None = None               # the sheet row it was read from


@dataclass(frozen=True)
class ReceiptResult:
    receipt_id: int
    number: int                          # the general register's running number
    receipt_no: str
    received_on: dt.date
    copies: int
    titles_created: int
    titles_matched: int                  # existing titles (by id or ISBN) the copies joined
    total_value: int                     # đồng
    ranges: list[AccessionRange]


@dataclass
class _Plan:
    number: int                          # the line's place in the receipt, 1-based
    line: ReceiptLine
    title: Title
    accessions: list[str] = field(default_factory=list)


def _check_header(receipt_no: str, source: str, lines: Sequence[ReceiptLine]) -> None:
    if not receipt_no.strip() or len(receipt_no.strip()) > 32:
        raise IntakeError("Số phiếu nhập phải có, và dài tối đa 32 ký tự",
                          "the receipt number is required, at most 32 characters")
    if source not in {s.value for s in AcquisitionSource}:
        names = ", ".join(s.value for s in AcquisitionSource)
        raise IntakeError(f"Nguồn cấp «{source}» không hợp lệ (cần một trong: {names})",
                          f"unknown source {source!r} (one of: {names})")
    if not lines:
        raise IntakeError("Phiếu nhập không có dòng nào", "the receipt has no line")


def _line_problems(line: ReceiptLine, library: LibraryConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if library.kind(line.kind) is None:
        problems.append(_unknown_kind(library, line.kind))
    if isinstance(line.quantity, bool) or not isinstance(line.quantity, int) \
            or not 1 <= line.quantity <= MAX_QUANTITY:
        problems.append((f"số lượng phải là số nguyên từ 1 đến {MAX_QUANTITY} (không phải «{line.quantity}»)",
                         f"quantity must be a whole number from 1 to {MAX_QUANTITY} "
                         f"(not {line.quantity!r})"))
    if line.price is not None and (not isinstance(line.price, int) or line.price < 0):
        problems.append((f"đơn giá không hợp lệ «{line.price}»", f"bad unit price {line.price!r}"))
    if line.year is not None and not 1000 <= line.year <= dt.date.today().year + 1:
        problems.append((f"năm xuất bản không hợp lệ «{line.year}»",
                         f"bad year of publication {line.year!r}"))
    if line.location is not None and len(line.location) > 100:
        problems.append(("vị trí dài quá 100 ký tự", "location longer than 100 characters"))
    for name, limit in _LIMITS.items():
        value = getattr(line, name)
        if value is not None and len(value) > limit:
            problems.append((f"trường {name} dài quá {limit} ký tự",
                             f"{name} longer than {limit} characters"))
    if line.title_id is None and not (line.title or "").strip() and not line.isbn:
        problems.append(("thiếu nhan đề (hoặc mã đầu sách, ISBN)",
                         "no title (nor title id, nor ISBN)"))
    return problems


def _titles_by_isbn(session: Session, isbns: set[str]) -> dict[str, Title]:
    found: dict[str, Title] = {}
    ordered = sorted(isbns)
    for start in range(0, len(ordered), _IN_CHUNK):
        for title in session.scalars(select(Title).where(Title.isbn.in_(ordered[start:start + _IN_CHUNK]))
                                     .order_by(Title.id)):
            found.setdefault(title.isbn or "", title)
    return found


def _plan(session: Session, library: LibraryConfig, lines: Sequence[ReceiptLine]
          ) -> tuple[list[_Plan], int, int]:
    """Each line with its title (found, merged or new); raises IntakeError naming every bad line."""
    problems: list[LineProblem] = []
    isbns: dict[int, str | None] = {}
    for index, line in enumerate(lines, 1):
        reasons = _line_problems(line, library)
        isbn: str | None = None
        if line.isbn and line.title_id is None:
            try:
                isbn = normalize_isbn(line.isbn)
            except InvalidIsbn:
                reasons.append((f"ISBN không hợp lệ «{line.isbn}»", f"invalid ISBN {line.isbn!r}"))
        isbns[index] = isbn
        problems += [LineProblem(index, vi, en, line.row) for vi, en in reasons]

    by_id = {title.id: title for title in session.scalars(
        select(Title).where(Title.id.in_({l.title_id for l in lines if l.title_id is not None})))}
    by_isbn = _titles_by_isbn(session, {i for i in isbns.values() if i})
    matched_ids: set[int] = set()
    created: dict[str, Title] = {}
    unnumbered: dict[tuple[str, str, str, int | None], Title] = {}
    plans: list[_Plan] = []
    new_titles = 0
    for index, line in enumerate(lines, 1):
        isbn = isbns[index]
        title: Title | None = None
        if line.title_id is not None:
            title = by_id.get(line.title_id)
            if title is None:
                problems.append(LineProblem(index, f"không có đầu sách mã {line.title_id}",
                                            f"no title with id {line.title_id}", line.row))
                continue
        elif isbn is not None and (isbn in by_isbn or isbn in created):
            title = by_isbn.get(isbn) or created[isbn]
            _merge(title, _record(line, isbn))
        elif not (line.title or "").strip():
            if isbn is not None:
                problems.append(LineProblem(
                    index, f"ISBN {isbn} chưa có trong thư mục: cần ghi nhan đề",
                    f"ISBN {isbn} is not in the catalogue: a title is needed", line.row))
            continue
        else:
            record = _record(line, isbn)
            # Without an ISBN nothing identifies a book across receipts; within one
            # receipt, two lines with the same title, author, publisher and year are one.
            same = (fold(record.title), fold(record.author), fold(record.publisher), record.year)
            title = unnumbered.get(same) if isbn is None else None
            if title is None:
                title = Title(**{name: getattr(record, name) for name in
                                 ("title", "author", "publisher", "year", "isbn", "subject",
                                  "call_number")}, language="vie")
                new_titles += 1
                if isbn is not None:
                    created[isbn] = title
                else:
                    unnumbered[same] = title
        if title.id is not None:
            matched_ids.add(title.id)
        plans.append(_Plan(index, line, title))
    problems += _material_problems(session, library, plans)
    if problems:
        problems.sort(key=lambda p: p.line)
        count = len({p.line for p in problems})
        raise IntakeError(f"Phiếu nhập có {count} dòng lỗi: không nhập gì",
                          f"{count} line(s) of the receipt are wrong: nothing was written",
                          problems)
    return plans, new_titles, len(matched_ids)


def _record(line: ReceiptLine, isbn: str | None) -> TitleRecord:
    return TitleRecord(title=_clean(line.title) or "", author=_clean(line.author),
                       publisher=_clean(line.publisher), year=line.year, isbn=isbn,
                       subject=_clean(line.subject), call_number=_clean(line.call_number))


def _material_problems(session: Session, library: LibraryConfig,
                       plans: list[_Plan]) -> list[LineProblem]:
    """A title is a book or equipment, never both: its copies' kinds must agree with it."""
    ids = {plan.title.id for plan in plans if plan.title.id is not None}
    with_copies = set(session.scalars(select(Copy.title_id).where(Copy.title_id.in_(ids))
                                      .distinct())) if ids else set()
    wanted: dict[int, tuple[str, int]] = {}     # id(title) -> (material, first line)
    problems: list[LineProblem] = []
    for plan in plans:
        kind = library.kind(plan.line.kind)
        if kind is None:
            continue
        line_no = plan.number
        first = wanted.setdefault(id(plan.title), (kind.material, line_no))
        if first[0] != kind.material:
            problems.append(LineProblem(
                line_no, f"cùng đầu sách với dòng {first[1]} nhưng khác dạng tài liệu "
                         f"({first[0]} / {kind.material})",
                f"same title as line {first[1]} but a different material "
                f"({first[0]} / {kind.material})", plan.line.row))
        elif plan.title.id is not None and plan.title.material != kind.material \
                and plan.title.id in with_copies:
            problems.append(LineProblem(
                line_no, f"đầu sách «{plan.title.title}» là {plan.title.material}, "
                         f"loại {kind.prefix} là {kind.material}",
                f"title {plan.title.title!r} is {plan.title.material}, kind {kind.prefix} "
                f"is {kind.material}", plan.line.row))
        else:
            # A new title, or one with no copy yet, takes the material of its first kind.
            plan.title.material = kind.material
    return problems


def receive(sessions: sessionmaker[Session], config: ServerConfig | LibraryConfig,
            receipt_no: str, received_on: dt.date, source: str | AcquisitionSource,
            lines: Sequence[ReceiptLine], source_detail: str | None = None,
            note: str | None = None, by: str | None = None,
            now: dt.datetime | None = None) -> ReceiptResult:
    """Book one phiếu nhập: the receipt, its titles and its copies, in one transaction."""
    library = _library(config)
    source = str(getattr(source, "value", source))
    _check_header(receipt_no, source, lines)
    for text, limit, vi, en in ((source_detail, 200, "Nguồn cấp chi tiết", "source detail"),
                                (note, 300, "Ghi chú", "note"), (by, 64, "Người nhập", "by")):
        if text is not None and len(text) > limit:
            raise IntakeError(f"{vi} dài quá {limit} ký tự", f"{en} longer than {limit} characters")
    now = now or dt.datetime.now(dt.timezone.utc)
    with sessions.begin() as session:
        db.one_writer_at_a_time(session, "receipts")
        plans, created, matched = _plan(session, library, lines)
        for plan in plans:
            if plan.title.id is None:
                session.add(plan.title)
        number = (session.scalar(select(func.max(Receipt.number))) or 0) + 1
        receipt = Receipt(number=number, receipt_no=receipt_no.strip(), received_on=received_on,
                          source=source, source_detail=source_detail, note=note,
                          created_by=by, created_at=now)
        session.add(receipt)
        session.flush()
        wanted: dict[str, int] = defaultdict(int)
        for plan in plans:
            wanted[plan.line.kind] += plan.line.quantity
        numbers = {kind: iter(allocate(session, library, kind, count))
                   for kind, count in wanted.items()}
        rows: list[dict[str, Any]] = []
        for plan in plans:
            plan.accessions = [next(numbers[plan.line.kind]) for _ in range(plan.line.quantity)]
            for accession in plan.accessions:
                rows.append({"title_id": plan.title.id, "accession_number": accession,
                             "barcode": _barcode(library, accession), "kind": plan.line.kind,
                             "status": CopyStatus.AVAILABLE.value,
                             "location": _clean(plan.line.location), "price": plan.line.price,
                             "acquired_on": received_on, "receipt_id": receipt.id})
        _refuse_taken_barcodes(session, plans, library)
        session.execute(insert(Copy), rows)
        return ReceiptResult(
            receipt_id=receipt.id, number=number, receipt_no=receipt.receipt_no,
            received_on=received_on, copies=len(rows), titles_created=created,
            titles_matched=matched,
            total_value=sum((p.line.price or 0) * p.line.quantity for p in plans),
            ranges=accession_ranges(row["accession_number"] for row in rows))


def _barcode(library: LibraryConfig, accession: str) -> str:
    # As the sample library labels them: TK.00045 is scanned as TK00045 (Code 128 without
    # the dot reads the same on every scanner layout).
    return accession.replace(library.accession_separator, "") if library.accession_separator \
        else accession


def _refuse_taken_barcodes(session: Session, plans: list[_Plan], library: LibraryConfig) -> None:
    line_of = {_barcode(library, a): (plan.number, plan.line.row)
               for plan in plans for a in plan.accessions}
    codes = sorted(line_of)
    taken: list[str] = []
    for start in range(0, len(codes), _IN_CHUNK):
        taken += session.scalars(select(Copy.barcode).where(Copy.barcode.in_(codes[start:start + _IN_CHUNK])))
    if taken:
        problems = [LineProblem(line_of[code][0], f"mã vạch {code} đã dán cho bản sách khác",
                                f"barcode {code} is already on another copy", line_of[code][1])
                    for code in sorted(taken)]
        raise IntakeError("Mã vạch trùng: không nhập gì", "duplicate barcode: nothing was written",
                          problems)


# --- reading receipts back ----------------------------------------------------------------

@dataclass(frozen=True)
class ReceiptSummary:
    number: int
    receipt_no: str
    received_on: dt.date
    source: str
    source_detail: str | None
    titles: int
    copies: int
    total_value: int


@dataclass(frozen=True)
class TitleLine:
    """Copies of one title, kind and price in a receipt."""

    title_id: int
    title: str
    author: str | None
    kind: str
    price: int | None
    copies: int
    total_value: int
    ranges: list[AccessionRange]


@dataclass(frozen=True)
class ReceiptDetail:
    number: int
    receipt_no: str
    received_on: dt.date
    source: str
    source_detail: str | None
    note: str | None
    created_by: str | None
    lines: list[TitleLine]
    ranges: list[AccessionRange]          # per kind, over the whole receipt

    @property
    def copies(self) -> int:
        return sum(line.copies for line in self.lines)

    @property
    def total_value(self) -> int:
        return sum(line.total_value for line in self.lines)


def list_receipts(sessions: sessionmaker[Session], *, since: dt.date | None = None,
                  until: dt.date | None = None) -> list[ReceiptSummary]:
    """Every receipt (newest register number first) with its counts, aggregated in SQL."""
    totals = (select(Copy.receipt_id.label("receipt_id"),
                     func.count(Copy.id).label("copies"),
                     func.count(func.distinct(Copy.title_id)).label("titles"),
                     func.coalesce(func.sum(Copy.price), 0).label("value"))
              .where(Copy.receipt_id.is_not(None)).group_by(Copy.receipt_id).subquery())
    query = (select(Receipt, totals.c.copies, totals.c.titles, totals.c.value)
             .outerjoin(totals, totals.c.receipt_id == Receipt.id)
             .order_by(Receipt.number.desc()))
    if since is not None:
        query = query.where(Receipt.received_on >= since)
    if until is not None:
        query = query.where(Receipt.received_on <= until)
    with sessions() as session:
        return [ReceiptSummary(r.number, r.receipt_no, r.received_on, r.source, r.source_detail,
                               titles or 0, copies or 0, int(value or 0))
                for r, copies, titles, value in session.execute(query)]


def receipt_detail(sessions: sessionmaker[Session], number: int) -> ReceiptDetail:
    """One receipt by its register number: lines grouped by title, kind and price."""
    with sessions() as session:
        receipt = session.scalars(select(Receipt).where(Receipt.number == number)).one_or_none()
        if receipt is None:
            raise IntakeError(f"Không có phiếu nhập số thứ tự {number} trong sổ",
                              f"no receipt with register number {number}")
        groups: dict[tuple[int, str, int | None], list[str]] = defaultdict(list)
        order: dict[tuple[int, str, int | None], int] = {}
        query = (select(Copy.title_id, Copy.kind, Copy.price, Copy.accession_number, Copy.id)
                 .where(Copy.receipt_id == receipt.id).order_by(Copy.id))
        for title_id, kind, price, accession, copy_id in session.execute(query):
            key = (title_id, kind, price)
            groups[key].append(accession)
            order.setdefault(key, copy_id)
        names = {row.id: (row.title, row.author) for row in session.execute(
            select(Title.id, Title.title, Title.author)
            .where(Title.id.in_({key[0] for key in groups})))}
        lines = [TitleLine(title_id, names[title_id][0], names[title_id][1], kind, price,
                           len(accessions), (price or 0) * len(accessions),
                           accession_ranges(accessions))
                 for (title_id, kind, price), accessions
                 in sorted(groups.items(), key=lambda item: order[item[0]])]
        return ReceiptDetail(receipt.number, receipt.receipt_no, receipt.received_on,
                             receipt.source, receipt.source_detail, receipt.note,
                             receipt.created_by, lines,
                             accession_ranges(a for accessions in groups.values() for a in accessions))


# --- receipt files ------------------------------------------------------------------------

_RECEIPT_COLUMNS: dict[str, tuple[str, ...]] = {
    **CATALOGUE_COLUMNS,
    "title": CATALOGUE_COLUMNS["title"] + ("ten thiet bi", "ten thiet bi day hoc"),
    "kind": ("loai", "kind", "loai sach", "loai tai lieu", "ma loai", "loai dkcb", "tien to dkcb"),
    "quantity": ("so luong", "sl", "quantity", "qty", "so ban"),
    "price": ("don gia", "gia", "gia bia", "gia tien", "price", "unit price"),
    "location": ("kho", "vi tri", "kho sach", "noi luu tru", "location"),
}
_RECEIPT_ALIASES = {alias: name for name, aliases in _RECEIPT_COLUMNS.items() for alias in aliases}
_NON_WORD = re.compile(r"[^\w]+")
_TOTAL_WORDS = {"tong cong", "cong", "tong", "total", "cong phieu"}
# 45000, 45.000, 45,000, 1.250.000, 45.000,00 (a decimal part must be zeros: đồng are whole).
_WHOLE = re.compile(r"^(\d{1,3}(?:[.,]\d{3})+|\d+)(?:[.,](\d{1,2}))?$")


def _key(cell: Any) -> str:
    return _NON_WORD.sub(" ", fold(str(cell or ""))).replace("_", " ").strip()


def _header(rows: list[tuple[Any, ...]]) -> tuple[int, dict[str, int]] | None:
    """As the catalogue import finds it: the row naming the most known columns, title included."""
    best: tuple[int, dict[str, int]] | None = None
    for index, row in enumerate(rows[:_HEADER_SCAN_ROWS]):
        columns: dict[str, int] = {}
        for column, cell in enumerate(row):
            name = _RECEIPT_ALIASES.get(_key(cell))
            if name and name not in columns:
                columns[name] = column
        if "title" in columns and (best is None or len(columns) > len(best[1])):
            best = (index, columns)
    return best


def _sheet_rows(path: Path) -> list[tuple[Any, ...]]:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            book = load_workbook(path, read_only=True, data_only=True)
        except Exception as error:  # openpyxl raises zipfile, KeyError, ... on a non-workbook
            raise ReceiptFileError(f"Không mở được tệp Excel {path.name}",
                                   f"cannot open the Excel file {path.name} ({error})") from error
        try:
            sheets = [list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets]
        finally:
            book.close()
        return next((rows for rows in sheets if _header(rows) is not None),
                    sheets[0] if sheets else [])
    return csv_rows(path, _header)


def _whole(value: Any) -> int | None:
    """A count or an amount in đồng: 45000, 45000.0, "45.000", "45,000 đ"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        if float(value) != int(value):
            raise ValueError(value)
        return int(value)
    text = fold(str(value)).replace("vnd", "").replace(" ", "").rstrip("d")
    match = _WHOLE.match(text)
    if match is None or (match.group(2) or "0").strip("0"):
        raise ValueError(value)
    return int(match.group(1).replace(".", "").replace(",", ""))


def _kind(value: Any, library: LibraryConfig | None) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    if library is None:
        return text.upper()
    folded = fold(text)
    for kind in library.kinds:
        if folded in (kind.prefix.lower(), fold(kind.name_vi), fold(kind.name_en)):
            return kind.prefix
    return text.upper()


def _parse_row(values: dict[str, Any], row: int, library: LibraryConfig | None,
               default_kind: str | None) -> tuple[ReceiptLine | None, list[tuple[str, str]]]:
    reasons: list[tuple[str, str]] = []
    kind = _kind(values.get("kind"), library) or default_kind
    if kind is None:
        reasons.append(("thiếu loại ĐKCB (GK, TK, ...)", "no ĐKCB kind (GK, TK, ...)"))
    elif library is not None and library.kind(kind) is None:
        reasons.append(_unknown_kind(library, kind))
    numbers: dict[str, int | None] = {}
    for name, vi, en in (("quantity", "số lượng", "quantity"), ("price", "đơn giá", "price")):
        try:
            numbers[name] = _whole(values.get(name))
        except ValueError:
            numbers[name] = None
            reasons.append((f"{vi} không đọc được «{values.get(name)}»",
                            f"{en} unreadable {values.get(name)!r}"))
    quantity = numbers["quantity"] if numbers["quantity"] is not None else 1
    if not 1 <= quantity <= MAX_QUANTITY:
        reasons.append((f"số lượng phải từ 1 đến {MAX_QUANTITY} (không phải {quantity})",
                        f"quantity must be from 1 to {MAX_QUANTITY} (not {quantity})"))
    raw_year = values.get("year")
    year = _year(raw_year)
    if raw_year not in (None, "") and year is None:
        reasons.append((f"năm xuất bản không đọc được «{raw_year}»",
                        f"year of publication unreadable {raw_year!r}"))
    isbn = _isbn_candidate(values.get("isbn"))
    if isbn:
        try:
            isbn = normalize_isbn(isbn)
        except InvalidIsbn:
            reasons.append((f"ISBN không hợp lệ «{isbn}»", f"invalid ISBN {isbn!r}"))
    title = _clean(values.get("title"))
    if not title and not isbn:
        reasons.append(("thiếu nhan đề", "no title"))
    if reasons:
        return None, reasons
    assert kind is not None
    return ReceiptLine(kind=kind, quantity=quantity, title=title,
                       author=_clean(values.get("author")),
                       publisher=_clean(values.get("publisher")), year=year, isbn=isbn or None,
                       subject=_clean(values.get("subject")),
                       call_number=_clean(values.get("call_number")), price=numbers["price"],
                       location=_clean(values.get("location")), row=row), []


def read_receipt_file(path: Path | str, *, library: ServerConfig | LibraryConfig | None = None,
                      default_kind: str | None = None) -> list[ReceiptLine]:
    """The lines of a receipt file (.xlsx or .csv); no database.

    The header is found by itself below any preamble; reading stops at a total row
    ("Tổng cộng"); rows naming nothing (signatures, blank lines) are passed over. A blank
    quantity is 1. Raises ReceiptFileError listing every bad row: a receipt is taken
    whole or not at all. With `library`, kinds may be written by name ("Sách tham
    khảo") and unknown kinds are reported here already.
    """
    path = Path(path)
    if path.suffix.lower() not in (".xlsx", ".xlsm", ".csv"):
        raise ReceiptFileError(f"Không đọc được loại tệp «{path.suffix}»: cần .xlsx hoặc .csv",
                               f"unsupported file type {path.suffix!r}: .xlsx or .csv expected")
    if not path.is_file():
        raise ReceiptFileError(f"Không tìm thấy tệp {path}", f"no such file: {path}")
    config = _library(library) if library is not None else None
    rows = _sheet_rows(path)
    found = _header(rows)
    if found is None:
        raise ReceiptFileError(
            "Không tìm thấy dòng tiêu đề có cột «Nhan đề» hoặc «Tên sách»",
            "no header row naming a title column (Nhan đề / Tên sách / Title) found")
    header_index, columns = found
    lines: list[ReceiptLine] = []
    problems: list[LineProblem] = []
    line_number = 0
    for index in range(header_index + 1, len(rows)):
        row = rows[index]
        if any(_key(cell) in _TOTAL_WORDS for cell in row):
            break  # the total, then signatures: the lines are over
        values = {name: (row[col] if col < len(row) else None) for name, col in columns.items()}
        if all(v is None or str(v).strip() == "" for v in values.values()):
            continue
        line_number += 1
        line, reasons = _parse_row(values, index + 1, config, default_kind)
        if line is not None:
            lines.append(line)
        problems += [LineProblem(line_number, vi, en, index + 1) for vi, en in reasons]
    if problems:
        count = len({p.row for p in problems})
        raise ReceiptFileError(f"Tệp phiếu nhập có {count} hàng lỗi: không nhập gì",
                               f"{count} row(s) of the receipt file are wrong: nothing was written",
                               problems)
    if not lines:
        raise ReceiptFileError("Tệp phiếu nhập không có dòng nào dưới dòng tiêu đề",
                               "the receipt file has no line below its header")
    return lines
