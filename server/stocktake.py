"""Kiểm kê: the stocktake. Start one, scan the shelves, watch the progress, close it.

Copies are scanned by barcode, ĐKCB or RFID item id, one at a time at the desk or many at
once (an RFID inventory of a shelf), at a kiosk in stocktake mode or in the staff web; a
copy counts once per stocktake (the unique stocktake_id + copy_id). Each scanned code is
answered: counted, already counted, unknown, and flagged when the copy is withdrawn, on
loan by the ledger (the book is on the shelf, the loan is not closed) or on another shelf
than its location.

Closing computes the counts of part III of the general register (`Stocktake.result`):
the stock is every copy not withdrawn; present = seen, on_loan = not seen but lent (not
missing), missing = the rest, with their value. The librarian may have the missing
copies marked lost (CopyStatus.LOST) with a note in the ĐKCB register. Every count is one
GROUP BY: nothing here loads the stock into Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from server import db
from server.config import ServerConfig
from server.models import Copy, CopyStatus, Loan, Stocktake, StocktakeScan, Title
from server.reports.document import Column, Report, Table, Text
from server.reports.registry import ReportParams, report

__all__ = [
    "CopyRef", "MissingCopy", "ScanOutcome", "ScanResult", "ScannedCode", "ShelfProgress",
    "StocktakeError", "close", "find_copies", "missing_list", "missing_report", "open_stocktake",
    "progress",
    "scan", "start", "stocktakes",
]

MAX_CODE = 128
# Codes per look-up statement: each adds six bound values, well under SQLite's limit.
_CHUNK = 300
NO_SHELF = ""


class StocktakeError(ValueError):
    """A refusal, in Vietnamese and English; nothing was written."""

    def __init__(self, vi: str, en: str) -> None:
        super().__init__(f"{vi} / {en}")
        self.vi = vi
        self.en = en

    def text(self, language: str) -> str:
        return self.vi if language == "vi" else self.en


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- finding copies by any of their codes ------------------------------------------------

@dataclass(frozen=True)
class CopyRef:
    """A copy as a scan or a weeding list sees it."""

    id: int
    accession_number: str
    barcode: str | None
    kind: str
    status: str
    location: str | None
    price: int | None
    title: str
    author: str | None
    year: int | None
    on_loan: bool


_COPY_REF = (select(Copy.id, Copy.accession_number, Copy.barcode, Copy.rfid_item_id,
                    Copy.kind, Copy.status, Copy.location, Copy.price, Title.title,
                    Title.author, Title.year, Loan.id.label("loan_id"))
             .join(Title, Title.id == Copy.title_id)
             .outerjoin(Loan, Loan.copy_id == Copy.id))


def _ref(row: Any) -> CopyRef:
    return CopyRef(id=row.id, accession_number=row.accession_number, barcode=row.barcode,
                   kind=row.kind, status=row.status, location=row.location, price=row.price,
                   title=row.title, author=row.author, year=row.year,
                   on_loan=row.loan_id is not None)


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def find_copies(session: Session, codes: Iterable[str]) -> dict[str, CopyRef]:
    """The copy each code names, keyed by the code as given (stripped); unknown codes are
    left out.

    The same rule as the circulation core's item look-up: barcode, ĐKCB or RFID item id,
    as typed or in upper case, else in any case; a code that is one copy's barcode and
    another's ĐKCB names the barcode's copy. Batched: an RFID inventory of a shelf is a
    few statements, not one per tag.
    """
    wanted = sorted({code.strip() for code in codes if code and code.strip()
                     and len(code.strip()) <= MAX_CODE})
    found: dict[str, CopyRef] = {}
    rows: list[Any] = []
    for chunk in _chunks(wanted):
        keys = sorted({*chunk, *(c.upper() for c in chunk)})
        rows += session.execute(_COPY_REF.where(or_(
            Copy.barcode.in_(keys), Copy.accession_number.in_(keys),
            Copy.rfid_item_id.in_(keys)))).all()
    _match(wanted, rows, found, any_case=False)
    missed = [code for code in wanted if code not in found]
    rows = []
    for chunk in _chunks(missed):
        uppers = sorted({c.upper() for c in chunk})
        rows += session.execute(_COPY_REF.where(or_(
            func.upper(Copy.barcode).in_(uppers), func.upper(Copy.accession_number).in_(uppers),
            func.upper(Copy.rfid_item_id).in_(uppers)))).all()
    _match(missed, rows, found, any_case=True)
    return found


def _match(codes: Sequence[str], rows: Sequence[Any], found: dict[str, CopyRef], *,
           any_case: bool) -> None:
    # Barcode first, then ĐKCB, then RFID: as `Circulation._copy` ranks its matches.
    columns = ("barcode", "accession_number", "rfid_item_id")
    index: dict[str, dict[str, Any]] = {column: {} for column in columns}
    for row in rows:
        for column in columns:
            value = getattr(row, column)
            if value is not None:
                index[column].setdefault(value.upper() if any_case else value, row)
    for code in codes:
        keys = (code.upper(),) if any_case else (code, code.upper())
        for column in columns:
            hit = next((index[column][key] for key in keys if key in index[column]), None)
            if hit is not None:
                found[code] = _ref(hit)
                break


# --- opening and finding a stocktake -----------------------------------------------------

def open_stocktake(sessions: sessionmaker[Session]) -> Stocktake | None:
    """The stocktake open now (there is at most one), or None."""
    with sessions() as session:
        return session.scalars(select(Stocktake).where(Stocktake.closed_at.is_(None))
                               .order_by(Stocktake.number.desc()).limit(1)).first()


def stocktakes(sessions: sessionmaker[Session]) -> list[Stocktake]:
    """Every stocktake, the newest first (a school makes one a year)."""
    with sessions() as session:
        return list(session.scalars(select(Stocktake).order_by(Stocktake.number.desc())))


def start(sessions: sessionmaker[Session], name: str, by: str | None,
          *, now: dt.datetime | None = None) -> Stocktake:
    """Open a new stocktake with the next running number of part III."""
    name = " ".join((name or "").split())
    if not name:
        raise StocktakeError("Hãy đặt tên cho đợt kiểm kê (ví dụ: Kiểm kê năm học 2026-2027).",
                             "Give the stocktake a name (e.g. Stocktake 2026-2027).")
    if len(name) > 200:
        raise StocktakeError("Tên đợt kiểm kê dài quá 200 ký tự.",
                             "The stocktake's name is longer than 200 characters.")
    with sessions.begin() as session:
        db.one_writer_at_a_time(session, "stocktakes")  # one open stocktake, numbers unique
        current = session.scalars(select(Stocktake).where(Stocktake.closed_at.is_(None))).first()
        if current is not None:
            raise StocktakeError(
                f"Đợt kiểm kê số {current.number} ({current.name}) đang mở: hãy kết thúc nó "
                f"trước khi bắt đầu đợt mới.",
                f"Stocktake no. {current.number} ({current.name}) is still open: close it "
                f"before starting another.")
        last = session.scalar(select(func.max(Stocktake.number))) or 0
        stocktake = Stocktake(number=last + 1, name=name, started_at=now or _now(),
                              started_by=by)
        session.add(stocktake)
    return stocktake


def _open(session: Session, stocktake_id: int) -> Stocktake:
    stocktake = session.get(Stocktake, stocktake_id)
    if stocktake is None:
        raise StocktakeError(f"Không có đợt kiểm kê mã {stocktake_id}.",
                             f"There is no stocktake with id {stocktake_id}.")
    if stocktake.closed_at is not None:
        raise StocktakeError(f"Đợt kiểm kê số {stocktake.number} đã kết thúc.",
                             f"Stocktake no. {stocktake.number} is closed.")
    return stocktake


# --- scanning -------------------------------------------------------------------------------

class ScanOutcome(StrEnum):
    COUNTED = "counted"                  # seen for the first time in this stocktake
    ALREADY_COUNTED = "already_counted"  # seen before (another scan, another code of it)
    UNKNOWN = "unknown"                  # no copy has this code


def _same_shelf(a: str | None, b: str | None) -> bool:
    return " ".join(a.split()).upper() == " ".join(b.split()).upper() if a and b else True


@dataclass(frozen=True)
class ScannedCode:
    code: str
    outcome: ScanOutcome
    copy: CopyRef | None = None
    shelf: str | None = None     # where it was scanned

    @property
    def withdrawn(self) -> bool:
        """Thanh lý already, yet on a shelf: take it out (or look at the decision)."""
        return self.copy is not None and self.copy.status == CopyStatus.WITHDRAWN

    @property
    def on_loan(self) -> bool:
        """On the shelf while the ledger says it is lent: the return was never recorded."""
        return self.copy is not None and self.copy.on_loan

    @property
    def misplaced(self) -> bool:
        """Scanned on another shelf than its location (when both are known)."""
        return (self.copy is not None and bool(self.shelf) and bool(self.copy.location)
                and not _same_shelf(self.shelf, self.copy.location))

    def describe(self, language: str = "vi") -> str:
        """One line for the screen: what the code was and what to do with it."""
        vi = language == "vi"
        if self.copy is None:
            return (f"{self.code}: không có bản sách nào mang mã này." if vi
                    else f"{self.code}: no copy has this code.")
        head = f"{self.copy.accession_number} «{self.copy.title}»"
        if self.outcome is ScanOutcome.COUNTED:
            text = f"{head}: đã kiểm." if vi else f"{head}: counted."
        else:
            text = f"{head}: đã kiểm trước đó." if vi else f"{head}: already counted."
        if self.withdrawn:
            text += (" Sách đã thanh lý: hãy rút khỏi giá." if vi
                     else " This copy was withdrawn: take it off the shelf.")
        if self.on_loan:
            text += (" Sổ ghi sách đang cho mượn: hãy nhận trả tại bàn thủ thư." if vi
                     else " The ledger says it is on loan: return it at the desk.")
        if self.misplaced:
            text += (f" Xếp nhầm giá: thuộc giá {self.copy.location}." if vi
                     else f" Misplaced: it belongs on {self.copy.location}.")
        return text

    def as_dict(self) -> dict[str, Any]:
        """A plain form for a kiosk's reply or a JSON answer."""
        return {"code": self.code, "outcome": self.outcome.value,
                "item": self.copy.accession_number if self.copy else None,
                "title": self.copy.title if self.copy else None,
                "location": self.copy.location if self.copy else None,
                "withdrawn": self.withdrawn, "on_loan": self.on_loan,
                "misplaced": self.misplaced}


@dataclass(frozen=True)
class ScanResult:
    stocktake_id: int
    lines: list[ScannedCode] = field(default_factory=list)

    def _count(self, outcome: ScanOutcome) -> int:
        return sum(1 for line in self.lines if line.outcome is outcome)

    @property
    def counted(self) -> int:
        return self._count(ScanOutcome.COUNTED)

    @property
    def already_counted(self) -> int:
        return self._count(ScanOutcome.ALREADY_COUNTED)

    @property
    def unknown(self) -> list[str]:
        return [line.code for line in self.lines if line.outcome is ScanOutcome.UNKNOWN]

    @property
    def flagged(self) -> list[ScannedCode]:
        """The lines the librarian must look at."""
        return [line for line in self.lines
                if line.withdrawn or line.on_loan or line.misplaced]


def _insert_scans(session: Session, stocktake_id: int, copy_ids: Sequence[int],
                  shelf: str | None, station: str | None, at: dt.datetime) -> set[int]:
    """Insert a scan for each copy not counted yet; the ids of those counted now.

    One look for the copies counted before, one multi-row insert for the rest. The insert
    ignores conflicts: on PostgreSQL (read committed) two stations counting the same book
    at once must not fail each other's batch; both hear "counted", and it counts once.
    On SQLite the transaction holds the write lock from its start, so the look is exact."""
    before: set[int] = set()
    for start in range(0, len(copy_ids), _CHUNK):
        before.update(session.scalars(select(StocktakeScan.copy_id).where(
            StocktakeScan.stocktake_id == stocktake_id,
            StocktakeScan.copy_id.in_(copy_ids[start:start + _CHUNK]))))
    new = [copy_id for copy_id in dict.fromkeys(copy_ids) if copy_id not in before]
    if not new:
        return set()
    table = StocktakeScan.__table__
    dialect = session.get_bind().dialect.name
    statement: Any = table.insert()
    if dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    session.execute(statement, [{"stocktake_id": stocktake_id, "copy_id": copy_id,
                                 "shelf": shelf, "station": station, "at": at}
                                for copy_id in new])
    return set(new)


def scan(sessions: sessionmaker[Session], stocktake_id: int, codes: Sequence[str],
         shelf: str | None = None, station: str | None = None,
         *, now: dt.datetime | None = None) -> ScanResult:
    """Count the copies `codes` name (barcodes, ĐKCB, RFID item ids; many at once) in the
    open stocktake `stocktake_id`, scanned on `shelf` at `station`. Idempotent: a copy
    counts once, a second scan answers "already counted". One transaction per call."""
    shelf = " ".join((shelf or "").split())[:100] or None
    station = station[:64] if station else None
    given = [code.strip() for code in codes if code and code.strip()]
    at = now or _now()
    lines: list[ScannedCode] = []
    with sessions.begin() as session:
        _open(session, stocktake_id)
        found = find_copies(session, given)
        counted = _insert_scans(session, stocktake_id, [copy.id for copy in found.values()],
                                shelf, station, at)
        for code in given:
            copy = found.get(code)
            if copy is None:
                lines.append(ScannedCode(code[:MAX_CODE], ScanOutcome.UNKNOWN, shelf=shelf))
            elif copy.id in counted:
                # The first code naming a copy counts it; its barcode after its ĐKCB does not.
                counted.discard(copy.id)
                lines.append(ScannedCode(code, ScanOutcome.COUNTED, copy, shelf))
            else:
                lines.append(ScannedCode(code, ScanOutcome.ALREADY_COUNTED, copy, shelf))
    return ScanResult(stocktake_id, lines)


# --- progress -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShelfProgress:
    location: str        # NO_SHELF ("") for copies with no location
    expected: int        # copies not withdrawn that belong here
    seen: int            # of those, counted in this stocktake (wherever scanned)

    @property
    def left(self) -> int:
        return self.expected - self.seen


def progress(sessions: sessionmaker[Session], stocktake_id: int) -> list[ShelfProgress]:
    """Per location (the copies' own): expected, seen, left; sorted by location, copies
    with no location last."""
    seen = func.count(StocktakeScan.id)
    # Grouped by the label: PostgreSQL does not take two coalesce(..., :param) as the
    # same expression.
    location = func.coalesce(Copy.location, NO_SHELF).label("location")
    query = (select(location, func.count(Copy.id).label("expected"), seen.label("seen"))
             .select_from(Copy)
             .outerjoin(StocktakeScan, and_(StocktakeScan.copy_id == Copy.id,
                                            StocktakeScan.stocktake_id == stocktake_id))
             .where(Copy.status != CopyStatus.WITHDRAWN)
             .group_by(location))
    with sessions() as session:
        if session.get(Stocktake, stocktake_id) is None:
            raise StocktakeError(f"Không có đợt kiểm kê mã {stocktake_id}.",
                                 f"There is no stocktake with id {stocktake_id}.")
        rows = session.execute(query).all()
    shelves = [ShelfProgress(row.location, row.expected, row.seen) for row in rows]
    return sorted(shelves, key=lambda s: (s.location == NO_SHELF, s.location.casefold()))


# --- closing ---------------------------------------------------------------------------------

def _counts(session: Session, stocktake_id: int) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The totals and the per-kind counts, in one pass over the stock."""
    scanned = StocktakeScan.id.is_not(None)
    lent = Loan.id.is_not(None)
    gone = and_(~scanned, ~lent)
    off_shelf = and_(scanned, StocktakeScan.shelf.is_not(None), Copy.location.is_not(None),
                     func.upper(func.trim(StocktakeScan.shelf)) != func.upper(func.trim(Copy.location)))

    def number(condition: Any, value: Any = 1) -> Any:
        return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

    rows = session.execute(
        select(Copy.kind, func.count(Copy.id).label("total"),
               number(scanned).label("present"), number(and_(~scanned, lent)).label("on_loan"),
               number(gone).label("missing"), number(off_shelf).label("misplaced"),
               number(and_(scanned, lent)).label("seen_on_loan"),
               number(gone, func.coalesce(Copy.price, 0)).label("value_missing"))
        .select_from(Copy)
        .outerjoin(StocktakeScan, and_(StocktakeScan.copy_id == Copy.id,
                                       StocktakeScan.stocktake_id == stocktake_id))
        .outerjoin(Loan, Loan.copy_id == Copy.id)
        .where(Copy.status != CopyStatus.WITHDRAWN)
        .group_by(Copy.kind).order_by(Copy.kind)).all()
    keys = ("total", "present", "on_loan", "missing", "misplaced", "seen_on_loan", "value_missing")
    by_kind = {row.kind: {key: int(getattr(row, key)) for key in keys} for row in rows}
    totals = {key: sum(kind[key] for kind in by_kind.values()) for key in keys}
    return totals, by_kind


def _missing_ids(stocktake_id: int) -> Any:
    return (select(Copy.id)
            .outerjoin(StocktakeScan, and_(StocktakeScan.copy_id == Copy.id,
                                           StocktakeScan.stocktake_id == stocktake_id))
            .outerjoin(Loan, Loan.copy_id == Copy.id)
            .where(Copy.status != CopyStatus.WITHDRAWN, StocktakeScan.id.is_(None),
                   Loan.id.is_(None)))


def close(sessions: sessionmaker[Session], stocktake_id: int, by: str | None,
          mark_missing: bool = False, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Close the stocktake: compute and store its result (part III of the general
    register) and, if the librarian chooses, mark the missing copies lost.

    Keys: total (the stock: copies not withdrawn), present, missing (not seen, not on
    loan), misplaced, on_loan (not seen but lent: not missing), value_missing (đồng),
    seen_on_loan, withdrawn_seen, marked_lost, by_kind {kind: the same counts}."""
    with sessions.begin() as session:
        stocktake = _open(session, stocktake_id)
        totals, by_kind = _counts(session, stocktake_id)
        withdrawn_seen = session.scalar(
            select(func.count(StocktakeScan.id)).join(Copy, Copy.id == StocktakeScan.copy_id)
            .where(StocktakeScan.stocktake_id == stocktake_id,
                   Copy.status == CopyStatus.WITHDRAWN)) or 0
        marked = 0
        if mark_missing:
            note = f"Mất khi kiểm kê số {stocktake.number}"
            noted = case((or_(Copy.note.is_(None), Copy.note == ""), note),
                         else_=func.substr(Copy.note + "; " + note, 1, 300))
            marked = session.execute(
                update(Copy).where(Copy.id.in_(_missing_ids(stocktake_id)))
                .values(status=CopyStatus.LOST.value, note=noted)
                .execution_options(synchronize_session=False)).rowcount
        result: dict[str, Any] = {**totals, "withdrawn_seen": int(withdrawn_seen),
                                  "marked_lost": int(marked), "by_kind": by_kind}
        stocktake.result = result
        stocktake.closed_at = now or _now()
        stocktake.closed_by = by
    return result


# --- the missing list -------------------------------------------------------------------------

@dataclass(frozen=True)
class MissingCopy:
    accession_number: str
    kind: str
    title: str
    author: str | None
    location: str | None
    price: int | None
    status: str


def missing_list(sessions: sessionmaker[Session], stocktake_id: int) -> Iterator[MissingCopy]:
    """The copies not seen, not on loan, not withdrawn, by location then ĐKCB; streamed,
    for printing (while open: what is left to find; once closed: what was missing).

    After a close with mark_missing, those copies are lost yet still not withdrawn, so
    they are still listed here until a weeding decision takes them off the register."""
    query = (select(Copy.accession_number, Copy.kind, Title.title, Title.author, Copy.location,
                    Copy.price, Copy.status)
             .join(Title, Title.id == Copy.title_id)
             .where(Copy.id.in_(_missing_ids(stocktake_id)))
             .order_by(Copy.location, Copy.accession_number))
    with sessions() as session:
        if session.get(Stocktake, stocktake_id) is None:
            raise StocktakeError(f"Không có đợt kiểm kê mã {stocktake_id}.",
                                 f"There is no stocktake with id {stocktake_id}.")
        for row in session.execute(query.execution_options(yield_per=1000)):
            yield MissingCopy(*row)


# --- the printed missing list (a report) -----------------------------------------------------

def _by_number(session: Session, number: str | None) -> Stocktake:
    if number:
        try:
            wanted = int(number)
        except ValueError:
            raise StocktakeError(f"Số đợt kiểm kê phải là một số: {number!r}.",
                                 f"The stocktake number must be a number: {number!r}.") from None
        found = session.scalars(select(Stocktake).where(Stocktake.number == wanted)).first()
    else:
        # The open one, else the last closed: what a librarian printing "the list" means.
        found = session.scalars(select(Stocktake).order_by(
            Stocktake.closed_at.is_not(None), Stocktake.number.desc()).limit(1)).first()
    if found is None:
        raise StocktakeError(
            f"Không có đợt kiểm kê số {number}." if number else "Chưa có đợt kiểm kê nào.",
            f"There is no stocktake no. {number}." if number else "There is no stocktake yet.")
    return found


@report("stocktake-missing", Text("Danh sách sách mất khi kiểm kê", "Copies missing at the stocktake"),
        Text("Sổ sách", "Registers"))
def missing_report(sessions: sessionmaker[Session], config: ServerConfig,
                   params: ReportParams) -> Report:
    """The copies not found by a stocktake (`params.options["stocktake"]`: its number;
    default the open one, else the last), with their value."""
    with sessions() as session:
        stocktake = _by_number(session, params.options.get("stocktake"))
    rows: list[list[Any]] = []
    value = 0
    for number, copy in enumerate(missing_list(sessions, stocktake.id), start=1):
        rows.append([number, copy.accession_number, copy.title, copy.author, copy.location,
                     copy.price])
        value += copy.price or 0
    state = (Text("đang mở", "open") if stocktake.closed_at is None
             else Text("đã kết thúc", "closed"))
    columns = [
        Column("no", Text("STT", "No."), 0.4, "right", "int"),
        Column("item", Text("Số ĐKCB", "Accession no."), 1.0),
        Column("title", Text("Tên sách", "Title"), 3.0),
        Column("author", Text("Tác giả", "Author"), 1.6),
        Column("location", Text("Giá / kho", "Shelf"), 1.0),
        Column("price", Text("Giá tiền (đ)", "Price (VND)"), 1.0, "right", "money"),
    ]
    return Report(
        name="stocktake-missing",
        title=Text("DANH SÁCH SÁCH MẤT KHI KIỂM KÊ", "COPIES MISSING AT THE STOCKTAKE"),
        school=config.school_name,
        subtitle=Text(f"Đợt kiểm kê số {stocktake.number}: {stocktake.name} ({state.vi})",
                      f"Stocktake no. {stocktake.number}: {stocktake.name} ({state.en})"),
        sections=[Table(None, columns, rows,
                        totals=[Text("Cộng", "Total"), Text(f"{len(rows)} bản", f"{len(rows)} copies"),
                                None, None, None, value],
                        empty=Text("Không thiếu bản sách nào.", "No copy is missing."))],
        signatures=(Text("Người kiểm kê", "Counted by"), Text("Hiệu trưởng", "Principal")),
    )
