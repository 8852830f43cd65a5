"""The registers a school library keeps on paper, made from the database: the general
register (sổ đăng ký tổng quát, its three parts), the individual register (sổ đăng ký cá
biệt), the textbook register and the loan registers (sổ mượn) of teachers and students.

Each keeps the column layout librarians know from the printed books, so a printout can
sit beside, or replace, the hand-written one. Every builder reads with a few set-based
SELECTs (no query per row): the individual register over 100,000 copies and the loan
registers over a million ledger entries stay cheap to build; rendering is the slow part.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, DateTime, case, func, or_, select, type_coerce
from sqlalchemy.orm import Session, aliased, sessionmaker

from server.circulation import NOT_APPLIED
from server.config import ServerConfig
from server.models import (
    AcquisitionSource,
    Copy,
    CopyStatus,
    LedgerEntry,
    LedgerOp,
    Loan,
    Reader,
    ReaderKind,
    Receipt,
    Stocktake,
    Title,
    Withdrawal,
    WithdrawalReason,
)
from server.reports.document import Column, Paragraph, Report, Table, Text, format_value
from server.reports.period import SchoolYear, school_year
from server.reports.registry import ReportParams, report

__all__ = ["RegisterError", "accession_ranges", "grade_of", "general_register",
           "individual_register", "textbook_register", "teacher_loans", "student_loans"]

GROUP = Text("Sổ sách", "Registers")
SIGNATURES = (Text("Người lập sổ", "Prepared by"), Text("Hiệu trưởng", "Principal"))
TOTAL = Text("Cộng", "Total")

SOURCES: dict[str, Text] = {
    AcquisitionSource.BOUGHT: Text("Trường tự mua", "Bought by the school"),
    AcquisitionSource.DISTRICT: Text("PGD cấp phát", "From the district office"),
    AcquisitionSource.PROVINCE: Text("SGD cấp phát", "From the provincial department"),
    AcquisitionSource.DONATED: Text("Biếu tặng", "Donated"),
    AcquisitionSource.OTHER: Text("Khác", "Other"),
}
REASONS: dict[str, Text] = {
    WithdrawalReason.LOST: Text("mất", "lost"),
    WithdrawalReason.WORN: Text("rách nát", "worn out"),
    WithdrawalReason.OUTDATED: Text("lạc hậu", "outdated"),
    WithdrawalReason.PESTS: Text("mối mọt", "pest damage"),
    WithdrawalReason.OLD_CURRICULUM: Text("chương trình cũ", "old curriculum"),
}


class RegisterError(ValueError):
    """A register asked for with options it cannot take; the message is in both languages."""


# --- shared helpers ----------------------------------------------------------------------

def _options(params: ReportParams, allowed: Iterable[str]) -> dict[str, str]:
    allowed = tuple(allowed)
    unknown = sorted(set(params.options) - set(allowed))
    if unknown:
        known = ", ".join(allowed) or "—"
        raise RegisterError(f"Tùy chọn không dùng được: {', '.join(unknown)} (có: {known}) / "
                            f"unknown option: {', '.join(unknown)} (known: {known})")
    return {key: value.strip() for key, value in params.options.items()}


def _vi_date(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y")


def _utc_bounds(first: dt.date, last: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[local midnight of `first`, local midnight after `last`) as UTC instants."""
    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    return midnight(first), midnight(last + dt.timedelta(days=1))


class _LocalDays:
    """UTC instants to local dates, the zone's offset looked up once per quarter
    hour: `astimezone` on every row was the slowest part of a big loan register."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.offsets: dict[tuple[int, int, int], dt.timedelta] = {}

    def __call__(self, at: dt.datetime | None) -> dt.date | None:
        if at is None:
            return None
        key = (at.toordinal(), at.hour, at.minute // 15)
        offset = self.offsets.get(key)
        if offset is None:
            offset = self.offsets[key] = at.replace(tzinfo=dt.UTC).astimezone(self.zone).utcoffset() \
                or dt.timedelta()
        return (at + offset).date()


def _applied(entry: Any) -> ColumnElement[bool]:
    # Entries that changed no loan (offline conflicts) are no loan and no return.
    return or_(entry.conflict.is_(None), entry.conflict.not_in([c.value for c in NOT_APPLIED]))


def _kind_order(config: ServerConfig) -> Any:
    """Kinds in the order the config lists them (GK, TK, NV, ...), unknown ones after."""
    prefixes = [kind.prefix for kind in config.library.kinds]
    return case({prefix: index for index, prefix in enumerate(prefixes)}, value=Copy.kind,
                else_=len(prefixes))


def _accession_order(config: ServerConfig) -> tuple[Any, ...]:
    # Within a prefix, a shorter number sorts first: numeric order ("TK.00099" before
    # "TK.100000") with no cast that a hand-typed legacy number could make fail.
    return (_kind_order(config), Copy.kind, func.length(Copy.accession_number),
            Copy.accession_number)


def _signed(report: Report) -> Report:
    report.signatures = SIGNATURES
    return report


# --- sổ đăng ký tổng quát ------------------------------------------------------------------

@report("register-general", Text("Sổ đăng ký tổng quát", "General accession register"), GROUP)
def general_register(sessions: sessionmaker[Session], config: ServerConfig,
                     params: ReportParams) -> Report:
    """Part I intake per receipt, part II withdrawals per decision, part III stocktakes."""
    _options(params, ())
    year = school_year(config, params.school_year) if params.school_year is not None else None
    zone = ZoneInfo(config.calendar.timezone)
    with sessions() as db:
        sections: list[Any] = [_intake(db, config, year), _legend(config),
                               _withdrawals(db, year), _stocktakes(db, zone, year)]
    subtitle = (Text(f"Năm học {year.label} (từ {_vi_date(year.start)} đến {_vi_date(year.end)})",
                     f"School year {year.label} ({_vi_date(year.start)} to {_vi_date(year.end)})")
                if year else Text(f"Từ khi lập sổ đến ngày {_vi_date(dt.date.today())}",
                                  f"From the opening of the register to {_vi_date(dt.date.today())}"))
    return _signed(Report("register-general", Text("SỔ ĐĂNG KÝ TỔNG QUÁT", "GENERAL ACCESSION REGISTER"),
                          config.school_name, subtitle, sections))


def _intake(db: Session, config: ServerConfig, year: SchoolYear | None) -> Table:
    prefixes = [kind.prefix for kind in config.library.kinds]
    within = [Receipt.received_on.between(year.start, year.end)] if year else []
    receipts = db.execute(select(Receipt.id, Receipt.number, Receipt.received_on, Receipt.receipt_no,
                                 Receipt.source, Receipt.source_detail, Receipt.note)
                          .where(*within).order_by(Receipt.number)).all()
    counts: dict[int, dict[str, int]] = {}
    values: dict[int, int] = {}
    # Withdrawn copies stay counted: part I records what came in, part II what went out.
    for receipt_id, kind, n, value in db.execute(
            select(Copy.receipt_id, Copy.kind, func.count(), func.coalesce(func.sum(Copy.price), 0))
            .join(Receipt, Receipt.id == Copy.receipt_id).where(*within)
            .group_by(Copy.receipt_id, Copy.kind)):
        counts.setdefault(receipt_id, {})[kind] = n
        values[receipt_id] = values.get(receipt_id, 0) + int(value)
    rows = []
    for r in receipts:
        per_kind = counts.get(r.id, {})
        source = SOURCES.get(r.source, Text(r.source, r.source))
        if r.source_detail:
            source = Text(f"{source.vi} ({r.source_detail})", f"{source.en} ({r.source_detail})")
        rows.append([r.number, r.received_on, r.receipt_no, source, sum(per_kind.values()),
                     *[per_kind.get(prefix, 0) for prefix in prefixes], values.get(r.id, 0), r.note])
    columns = [
        Column("number", Text("Số thứ tự vào sổ", "Entry no."), 0.8, "right", "int"),
        Column("date", Text("Ngày vào sổ", "Date entered"), 1.0, "center", "date"),
        Column("receipt_no", Text("Số chứng từ", "Receipt no."), 1.0),
        Column("source", Text("Nguồn cấp", "Source"), 1.8),
        Column("copies", Text("Tổng số bản", "Copies"), 0.8, "right", "int"),
        *[Column(f"kind_{prefix}", Text(prefix, prefix), 0.6, "right", "int") for prefix in prefixes],
        Column("value", Text("Tổng giá tiền (đồng)", "Total value (VND)"), 1.2, "right", "money"),
        Column("note", Text("Ghi chú", "Note"), 1.4),
    ]
    totals = [TOTAL, None, None, None, sum(row[4] for row in rows),
              *[sum(row[5 + i] for row in rows) for i in range(len(prefixes))],
              sum(values.get(r.id, 0) for r in receipts), None]
    return Table(Text("Phần I. Tổng số sách nhập thư viện", "Part I. Copies taken into the library"),
                 columns, rows, totals if rows else None)


def _legend(config: ServerConfig) -> Paragraph:
    return Paragraph(Text("; ".join(f"{k.prefix}: {k.name_vi}" for k in config.library.kinds),
                          "; ".join(f"{k.prefix}: {k.name_en}" for k in config.library.kinds)))


def _withdrawals(db: Session, year: SchoolYear | None) -> Table:
    reasons = list(WithdrawalReason)
    within = [Withdrawal.decided_on.between(year.start, year.end)] if year else []
    decisions = db.execute(select(Withdrawal.id, Withdrawal.number, Withdrawal.decided_on,
                                  Withdrawal.decision_no, Withdrawal.note)
                           .where(*within).order_by(Withdrawal.number)).all()
    counts: dict[int, dict[str, int]] = {}
    values: dict[int, int] = {}
    for withdrawal_id, reason, n, value in db.execute(
            select(Copy.withdrawal_id, Copy.withdrawal_reason, func.count(),
                   func.coalesce(func.sum(Copy.price), 0))
            .join(Withdrawal, Withdrawal.id == Copy.withdrawal_id).where(*within)
            .group_by(Copy.withdrawal_id, Copy.withdrawal_reason)):
        counts.setdefault(withdrawal_id, {})[reason] = n
        values[withdrawal_id] = values.get(withdrawal_id, 0) + int(value)
    rows = []
    for w in decisions:
        per_reason = counts.get(w.id, {})
        rows.append([w.number, w.decided_on, w.decision_no,
                     *[per_reason.get(reason.value, 0) for reason in reasons],
                     sum(per_reason.values()), values.get(w.id, 0), w.note])
    columns = [
        Column("number", Text("Số thứ tự", "No."), 0.7, "right", "int"),
        Column("date", Text("Ngày", "Date"), 1.0, "center", "date"),
        Column("decision_no", Text("Số quyết định", "Decision no."), 1.3),
        *[Column(f"reason_{reason.value}", Text(REASONS[reason].vi.capitalize(),
                                                 REASONS[reason].en.capitalize()), 0.8, "right", "int")
          for reason in reasons],
        Column("copies", Text("Tổng số bản", "Copies"), 0.8, "right", "int"),
        Column("value", Text("Tổng giá tiền (đồng)", "Total value (VND)"), 1.2, "right", "money"),
        Column("note", Text("Ghi chú", "Note"), 1.4),
    ]
    width = 3 + len(reasons) + 2
    totals = [TOTAL, None, None, *[sum(row[i] for row in rows) for i in range(3, width)], None]
    return Table(Text("Phần II. Tổng số sách xuất khỏi thư viện", "Part II. Copies withdrawn"),
                 columns, rows, totals if rows else None)


_STOCKTAKE_KEYS = ("total", "present", "missing", "misplaced", "on_loan", "value_missing")


def _stocktakes(db: Session, zone: ZoneInfo, year: SchoolYear | None) -> Table:
    within = [Stocktake.closed_at.is_not(None)]
    if year:
        start, end = _utc_bounds(year.start, year.end, zone)
        within += [Stocktake.closed_at >= start, Stocktake.closed_at < end]
    rows = []
    for number, name, closed_at, result in db.execute(
            select(Stocktake.number, Stocktake.name, Stocktake.closed_at, Stocktake.result)
            .where(*within).order_by(Stocktake.number)):
        result = result if isinstance(result, dict) else {}
        # A count the close did not record prints empty, never as a made-up 0.
        counts = [result.get(key) if isinstance(result.get(key), int | float) else None
                  for key in _STOCKTAKE_KEYS]
        rows.append([number, closed_at.astimezone(zone).date(), name, *counts])
    columns = [
        Column("number", Text("Số thứ tự", "No."), 0.7, "right", "int"),
        Column("date", Text("Ngày kiểm kê", "Date closed"), 1.0, "center", "date"),
        Column("name", Text("Đợt kiểm kê", "Stocktake"), 1.8),
        Column("total", Text("Tổng số bản", "Copies"), 0.9, "right", "int"),
        Column("present", Text("Còn", "Present"), 0.9, "right", "int"),
        Column("missing", Text("Mất", "Missing"), 0.9, "right", "int"),
        Column("misplaced", Text("Để sai chỗ", "Misplaced"), 0.9, "right", "int"),
        Column("on_loan", Text("Đang cho mượn", "On loan"), 0.9, "right", "int"),
        Column("value_missing", Text("Giá trị sách mất (đồng)", "Value missing (VND)"), 1.2,
               "right", "money"),
    ]
    return Table(Text("Phần III. Kiểm kê", "Part III. Stocktakes"), columns, rows)


# --- sổ đăng ký cá biệt ---------------------------------------------------------------------

@report("register-individual", Text("Sổ đăng ký cá biệt", "Individual accession register"), GROUP)
def individual_register(sessions: sessionmaker[Session], config: ServerConfig,
                        params: ReportParams) -> Report:
    """One line per copy in ĐKCB order; option kind=TK keeps one prefix (one book per kind)."""
    options = _options(params, ("kind",))
    kind = options.get("kind", "").upper() or None
    if kind is not None and config.library.kind(kind) is None:
        known = ", ".join(k.prefix for k in config.library.kinds)
        raise RegisterError(f"Không có loại sách {kind!r} (có: {known}) / "
                            f"no kind of copy {kind!r} (there are: {known})")
    acquired = func.coalesce(Copy.acquired_on, Receipt.received_on)
    stmt = (select(acquired, Copy.accession_number, Title.title, Title.author, Title.publisher,
                   Title.year, Copy.price, Receipt.number,
                   func.coalesce(Title.call_number, Title.subject), Copy.note,
                   Withdrawal.decision_no, Withdrawal.decided_on, Copy.withdrawal_reason)
            .select_from(Copy).join(Title, Title.id == Copy.title_id)
            .outerjoin(Receipt, Receipt.id == Copy.receipt_id)
            .outerjoin(Withdrawal, Withdrawal.id == Copy.withdrawal_id)
            .order_by(*_accession_order(config)))
    if kind is not None:
        stmt = stmt.where(Copy.kind == kind)
    with sessions() as db:
        rows = [[day, accession, f"{title} / {author}" if author else title, publisher, year,
                 price, receipt, shelf, _copy_note(note, decision, decided, reason)]
                for (day, accession, title, author, publisher, year, price, receipt, shelf, note,
                     decision, decided, reason) in db.connection().execute(stmt).all()]
    columns = [
        Column("date", Text("Ngày vào sổ", "Date entered"), 0.9, "center", "date"),
        Column("accession", Text("Số ĐKCB", "Accession no."), 0.9),
        Column("title", Text("Tên sách và tác giả", "Title and author"), 3.2),
        Column("publisher", Text("Nơi xuất bản, nhà xuất bản", "Publisher"), 1.5),
        Column("year", Text("Năm xuất bản", "Year"), 0.6, "center"),
        Column("price", Text("Giá tiền (đồng)", "Price (VND)"), 0.9, "right", "money"),
        Column("receipt", Text("Số vào sổ tổng quát", "General register no."), 0.8, "right", "int"),
        Column("class", Text("Môn loại", "Class"), 1.0),
        Column("note", Text("Ghi chú", "Note"), 2.2),
    ]
    n = len(rows)
    totals = [Text(f"Cộng: {format_value(n, 'int', 'vi')} bản", f"Total: {n:,} copies"), None, None,
              None, None, sum(row[5] or 0 for row in rows), None, None, None]
    what = config.library.kind(kind) if kind else None
    subtitle = (Text(f"{what.name_vi} ({what.prefix}) — đến ngày {_vi_date(dt.date.today())}",
                     f"{what.name_en} ({what.prefix}) — as of {_vi_date(dt.date.today())}")
                if what else Text(f"Tất cả các loại — đến ngày {_vi_date(dt.date.today())}",
                                  f"All kinds — as of {_vi_date(dt.date.today())}"))
    name = f"register-individual-{kind}" if kind else "register-individual"
    return _signed(Report(name, Text("SỔ ĐĂNG KÝ CÁ BIỆT", "INDIVIDUAL ACCESSION REGISTER"),
                          config.school_name, subtitle,
                          [Table(None, columns, rows, totals if rows else None)]))


def _copy_note(note: str | None, decision: str | None, decided: dt.date | None,
               reason: str | None) -> str | Text | None:
    """The register's note; a withdrawn copy says by which decision and why."""
    if decision is None:
        return note
    # Weeding also writes the decision into Copy.note ("Thanh lý theo QĐ số ..."): print
    # it once, in the register's own words with the reason.
    kept = "; ".join(part for part in (note or "").split("; ")
                     if part and not part.startswith((f"Thanh lý theo QĐ số {decision}",
                                                      f"Thanh lý QĐ số {decision}")))
    why = REASONS.get(reason or "", Text(reason or "", reason or ""))
    day = _vi_date(decided) if decided else ""
    vi = f"Thanh lý QĐ số {decision} ngày {day}: {why.vi}"
    en = f"Withdrawn, decision {decision} of {day}: {why.en}"
    return Text(f"{kept}; {vi}", f"{kept}; {en}") if kept else Text(vi, en)


# --- sổ đăng ký sách giáo khoa --------------------------------------------------------------

_CLASS_WORD = re.compile(r"\b(?:lớp|khối|lop|khoi)\s*(1[0-2]|[1-9])(?!\d)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.,/])(1[0-2]|[1-9])(?![\w,/]|\.\d)")
_VOLUME_WORDS = frozenset({"tập", "tap", "quyển", "quyen", "phần", "phan", "bài", "bai", "số", "so"})


def grade_of(*texts: str | None) -> int | None:
    """The grade a textbook is for, from its title ("Toán 6 tập một" -> 6), else None.

    "Lớp 7"/"Khối 7" win; otherwise the first standalone 1..12 that is not a volume or
    part number ("Tập 2" is no grade)."""
    for text in texts:
        if not text:
            continue
        if match := _CLASS_WORD.search(text):
            return int(match.group(1))
        for match in _NUMBER.finditer(text):
            before = text[:match.start()].split()
            if before and before[-1].casefold() in _VOLUME_WORDS:
                continue
            return int(match.group(1))
    return None


_RUNNING = re.compile(r"^(.*?)(\d+)$")


def accession_ranges(numbers: Iterable[str]) -> str:
    """Consecutive ĐKCB numbers as runs: GK.00001-GK.00040, GK.00045 (input in order)."""
    runs: list[list[str]] = []
    last: tuple[str, int] | None = None
    for number in numbers:
        match = _RUNNING.match(number)
        key = (match.group(1), int(match.group(2))) if match else None
        if key and last and runs and key[0] == last[0] and key[1] == last[1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
        last = key
    return ", ".join(first if first == end else f"{first}-{end}" for first, end in runs)


@report("register-textbooks", Text("Sổ đăng ký sách giáo khoa", "Textbook register"), GROUP)
def textbook_register(sessions: sessionmaker[Session], config: ServerConfig,
                      params: ReportParams) -> Report:
    """Per textbook title: grade, copies, ĐKCB runs, price, on loan now and available."""
    _options(params, ())
    prefixes = [kind.prefix for kind in config.library.kinds if kind.textbook]
    title = Text("SỔ ĐĂNG KÝ SÁCH GIÁO KHOA", "TEXTBOOK REGISTER")
    subtitle = Text(f"Đến ngày {_vi_date(dt.date.today())}", f"As of {_vi_date(dt.date.today())}")
    columns = [
        Column("title", Text("Tên sách", "Title"), 3.0),
        Column("grade", Text("Lớp", "Grade"), 0.5, "center", "int"),
        Column("copies", Text("Số bản", "Copies"), 0.6, "right", "int"),
        Column("accessions", Text("Số ĐKCB", "Accession numbers"), 3.0),
        Column("price", Text("Đơn giá (đồng)", "Unit price (VND)"), 0.8, "right", "money"),
        Column("value", Text("Thành tiền (đồng)", "Value (VND)"), 0.9, "right", "money"),
        Column("on_loan", Text("Đang cho mượn", "On loan"), 0.7, "right", "int"),
        Column("available", Text("Sẵn sàng", "Available"), 0.7, "right", "int"),
        Column("withdrawn", Text("Đã thanh lý", "Withdrawn"), 0.7, "right", "int"),
    ]
    if not prefixes:
        note = Paragraph(Text("Cấu hình chưa có loại sách nào là sách giáo khoa (library.kinds, "
                              "textbook = true).", "No kind of copy is marked as textbooks in the "
                              "config (library.kinds, textbook = true)."))
        return _signed(Report("register-textbooks", title, config.school_name, subtitle,
                              [note, Table(None, columns, [])]))
    on_loan = Loan.id.is_not(None)
    stmt = (select(Title.id, Title.title, Title.subject, Copy.accession_number, Copy.status,
                   Copy.price, on_loan)
            .select_from(Copy).join(Title, Title.id == Copy.title_id)
            .outerjoin(Loan, Loan.copy_id == Copy.id)
            .where(Copy.kind.in_(prefixes))
            .order_by(Title.id, *_accession_order(config)))
    rows = []
    with sessions() as db:
        for (_, name, subject), copies in groupby(db.connection().execute(stmt),
                                                      key=lambda r: r[:3]):
            kept: list[str] = []
            price = value = lent = available = withdrawn = 0
            for *_, accession, status, copy_price, loaned in copies:
                if status == CopyStatus.WITHDRAWN:
                    withdrawn += 1
                    continue
                kept.append(accession)
                price = max(price, copy_price or 0)
                value += copy_price or 0
                lent += bool(loaned)
                available += status == CopyStatus.AVAILABLE and not loaned
            rows.append([name, grade_of(name, subject), len(kept), accession_ranges(kept),
                         price or None, value, lent, available, withdrawn])
    rows.sort(key=lambda row: (row[1] is None, row[1] or 0, row[0].casefold()))
    totals = [TOTAL, None, sum(row[2] for row in rows), None, None,
              *[sum(row[i] for row in rows) for i in range(5, 9)]]
    return _signed(Report("register-textbooks", title, config.school_name, subtitle,
                          [Table(None, columns, rows, totals if rows else None)]))


# --- sổ mượn ------------------------------------------------------------------------------

def _loans_period(config: ServerConfig, params: ReportParams) -> tuple[dt.date, dt.date, Text]:
    year = school_year(config, params.school_year)
    first, last = params.since or year.start, params.until or year.end
    if last < first:
        raise RegisterError(f"Ngày kết thúc {_vi_date(last)} trước ngày bắt đầu {_vi_date(first)} / "
                            f"the period ends ({last}) before it starts ({first})")
    if params.since is None and params.until is None:
        label = Text(f"Năm học {year.label} (từ {_vi_date(first)} đến {_vi_date(last)})",
                     f"School year {year.label} ({_vi_date(first)} to {_vi_date(last)})")
    else:
        label = Text(f"Từ ngày {_vi_date(first)} đến ngày {_vi_date(last)}",
                     f"From {_vi_date(first)} to {_vi_date(last)}")
    return first, last, label


def _loan_rows(db: Session, config: ServerConfig, kinds: Sequence[str], first: dt.date,
               last: dt.date, class_name: str | None) -> list[list[Any]]:
    """Each checkout in [first, last] (local days) with its return: the next applied
    return of the same copy after it; its due date is the last renewal's, if any."""
    zone = ZoneInfo(config.calendar.timezone)
    start, end = _utc_bounds(first, last, zone)
    out, back, renew = aliased(LedgerEntry), aliased(LedgerEntry), aliased(LedgerEntry)
    readers = [Reader.kind.in_(kinds), *([Reader.class_name == class_name] if class_name else [])]
    # The copy_id index finds the return among the copy's few entries.
    returned_seq = (select(func.min(back.seq))
                    .where(back.copy_id == out.copy_id, back.op == LedgerOp.RETURN.value,
                           back.seq > out.seq, back.station_at >= out.station_at, _applied(back))
                    .scalar_subquery())
    checkouts = (select(out.seq, out.copy_id, out.reader_id, out.station_at, out.due_on,
                        returned_seq.label("returned_seq"))
                 .join(Reader, Reader.id == out.reader_id)
                 .where(out.op == LedgerOp.CHECKOUT.value, out.station_at >= start,
                        out.station_at < end, _applied(out), *readers)
                 .subquery())
    # Plain DateTime: the UTC instants come back naive, with no per-row tz conversion.
    stmt = (select(checkouts.c.seq, checkouts.c.copy_id, checkouts.c.returned_seq,
                   type_coerce(checkouts.c.station_at, DateTime), Reader.name, Reader.class_name,
                   Copy.accession_number, Title.title, checkouts.c.due_on,
                   type_coerce(back.station_at, DateTime))
            .select_from(checkouts)
            .join(Reader, Reader.id == checkouts.c.reader_id)
            .join(Copy, Copy.id == checkouts.c.copy_id)
            .join(Title, Title.id == Copy.title_id)
            .outerjoin(back, back.seq == checkouts.c.returned_seq)
            # Teaching equipment goes in its own usage book, not the sổ mượn sách.
            .where(Title.material != "equipment")
            .order_by(checkouts.c.station_at, checkouts.c.seq))
    renewals = _renewals(db, renew, start, readers)
    local_day = _LocalDays(zone)
    rows = []
    for seq, copy_id, returned, at, name, klass, accession, title, due, back_at in \
            db.connection().execute(stmt).all():
        for renewed_seq, renewed_due in renewals.get(copy_id, ()):
            if seq < renewed_seq and (returned is None or renewed_seq < returned) and renewed_due:
                due = max(due, renewed_due) if due else renewed_due
        rows.append([local_day(at), name, klass, accession, title, due, local_day(back_at), None])
    return rows


def _renewals(db: Session, renew: Any, start: dt.datetime,
              readers: Sequence[ColumnElement[bool]]) -> dict[int, list[tuple[int, dt.date | None]]]:
    """Renewals since `start` by copy. Fetched once rather than per checkout: a subquery
    bounded by the return would make SQLite evaluate the return's subquery per renewal."""
    found: dict[int, list[tuple[int, dt.date | None]]] = {}
    for copy_id, seq, due in db.execute(
            select(renew.copy_id, renew.seq, renew.due_on)
            .join(Reader, Reader.id == renew.reader_id)
            .where(renew.op == LedgerOp.RENEW.value, renew.station_at >= start, _applied(renew),
                   *readers)):
        found.setdefault(copy_id, []).append((seq, due))
    return found


def _loan_columns(group: Text) -> list[Column]:
    return [
        Column("loaned_on", Text("Ngày mượn", "Date lent"), 0.8, "center", "date"),
        Column("name", Text("Họ và tên", "Name"), 1.8),
        Column("group", group, 0.9, "center"),
        Column("accession", Text("Số ĐKCB", "Accession no."), 0.9),
        Column("title", Text("Tên sách", "Title"), 3.0),
        Column("due_on", Text("Hạn trả", "Due"), 0.8, "center", "date"),
        Column("returned_on", Text("Ngày trả", "Returned"), 0.8, "center", "date"),
        Column("signature", Text("Ký nhận", "Signature"), 1.0),
    ]


def _loan_register(name: str, title: Text, rows: list[list[Any]], group: Text,
                   config: ServerConfig, subtitle: Text) -> Report:
    returned = sum(1 for row in rows if row[6] is not None)
    summary = Paragraph(Text(f"Số lượt mượn: {len(rows)}; đã trả: {returned}; "
                             f"chưa trả: {len(rows) - returned}.",
                             f"Loans: {len(rows)}; returned: {returned}; "
                             f"not returned: {len(rows) - returned}."))
    return _signed(Report(name, title, config.school_name, subtitle,
                          [Table(None, _loan_columns(group), rows), summary]))


@report("loans-teachers", Text("Sổ mượn sách của giáo viên", "Teachers' loan register"), GROUP)
def teacher_loans(sessions: sessionmaker[Session], config: ServerConfig,
                  params: ReportParams) -> Report:
    """Checkouts by teachers and staff in the school year (or since/until)."""
    _options(params, ())
    first, last, subtitle = _loans_period(config, params)
    with sessions() as db:
        rows = _loan_rows(db, config, (ReaderKind.TEACHER.value, ReaderKind.STAFF.value),
                          first, last, None)
    for row in rows:
        row[2] = None   # the paper's "tổ / bộ môn", which the database does not hold
    return _loan_register("loans-teachers", Text("SỔ MƯỢN SÁCH CỦA GIÁO VIÊN", "TEACHERS' LOAN REGISTER"),
                          rows, Text("Tổ/bộ môn", "Department"), config, subtitle)


@report("loans-students", Text("Sổ mượn sách của học sinh", "Students' loan register"), GROUP)
def student_loans(sessions: sessionmaker[Session], config: ServerConfig,
                  params: ReportParams) -> Report:
    """Checkouts by students in the school year (or since/until); option class=6A1."""
    options = _options(params, ("class",))
    class_name = options.get("class") or None
    first, last, subtitle = _loans_period(config, params)
    with sessions() as db:
        if class_name is not None and db.scalar(select(func.count()).select_from(Reader).where(
                Reader.class_name == class_name)) == 0:
            raise RegisterError(f"Không có lớp {class_name!r} / no class named {class_name!r}")
        rows = _loan_rows(db, config, (ReaderKind.STUDENT.value,), first, last, class_name)
    if class_name:
        subtitle = Text(f"Lớp {class_name} — {subtitle.vi}", f"Class {class_name} — {subtitle.en}")
    name = f"loans-students-{re.sub(r'[^0-9A-Za-z.-]', '_', class_name)}" if class_name \
        else "loans-students"
    return _loan_register(name, Text("SỔ MƯỢN SÁCH CỦA HỌC SINH", "STUDENTS' LOAN REGISTER"),
                          rows, Text("Lớp", "Class"), config, subtitle)
