"""The catalogue in and out: MARC 21 (ISO 2709, MARCXML) and Excel/CSV lists of titles.

`import_catalogue` reads the whole file first, then writes in one transaction: a file
that cannot be read as a whole (not MARC at all, a record cut short, no header row)
raises `CatalogueFileError` and nothing is written; a single bad record or row is
skipped and reported with its position and the reason, in Vietnamese and English.

Decisions a librarian should know:
- ISBNs are stored as ISBN-13, digits only (`server.isbn`). A record whose ISBN has a
  bad check digit is still imported, without the ISBN, and reported: a typo in the
  ISBN should not lose the title, and a wrong ISBN must not merge two different books.
- Records with the same ISBN, already in the catalogue or twice in the file, become
  one title: empty fields are filled, non-empty ones are never overwritten.
- Records without an ISBN are always new titles (nothing else identifies a book safely).
- `subject` (môn loại) is taken from MARC 650 $a, else from the class number (082/084).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.folding import fold
from server.isbn import InvalidIsbn, normalize_isbn
from server.models import Title

__all__ = ["CatalogueFileError", "ImportProblem", "ImportReport", "TitleRecord",
           "export_marc", "import_catalogue", "read_catalogue"]

Progress = Callable[[int, int], None]
"""Called as progress(done, total) while titles are written."""

# Column widths of `titles`: longer text is cut (and reported) rather than refused by
# PostgreSQL half-way through an import.
_LIMITS = {"title": 500, "author": 300, "publisher": 200, "subject": 200, "call_number": 64}
_HEADER_SCAN_ROWS = 30


class CatalogueFileError(Exception):
    """The file as a whole cannot be imported; nothing was written."""

    def __init__(self, path: Path, vi: str, en: str) -> None:
        super().__init__(f"{path}: {en} / {vi}")
        self.path, self.reason_vi, self.reason_en = path, vi, en


@dataclass(frozen=True)
class ImportProblem:
    """One record or row not taken (skipped) or taken with a change (a warning)."""

    position: int                       # record number in a MARC file, row number in a sheet
    unit: Literal["record", "row"]
    reason_vi: str
    reason_en: str
    skipped: bool

    def __str__(self) -> str:
        what = "skipped" if self.skipped else "warning"
        return f"{self.unit} {self.position} ({what}): {self.reason_en} / {self.reason_vi}"


@dataclass
class ImportReport:
    path: Path
    format: str                          # "iso2709", "marcxml", "xlsx", "csv"
    read: int = 0                        # records or data rows seen
    created: int = 0                     # new titles
    merged: int = 0                      # records merged into a title with the same ISBN
    problems: list[ImportProblem] = field(default_factory=list)

    @property
    def skipped(self) -> list[ImportProblem]:
        return [p for p in self.problems if p.skipped]

    @property
    def warnings(self) -> list[ImportProblem]:
        return [p for p in self.problems if not p.skipped]


@dataclass
class TitleRecord:
    """One title as read from a file, before it meets the catalogue."""

    title: str
    author: str | None = None
    publisher: str | None = None
    year: int | None = None
    isbn: str | None = None              # normalised ISBN-13, or None
    subject: str | None = None
    call_number: str | None = None
    language: str | None = None


# --- small text helpers -------------------------------------------------------------

_TRAILING = re.compile(r"[\s/:;,=]+$")
_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")
_ISBN_IN_TEXT = re.compile(r"\d[\d\- ]{8,16}[\dXx]")
_LANGUAGE = re.compile(r"^[a-z]{3}$")


def _clean(text: Any) -> str | None:
    """NFC text with ISBD punctuation trimmed (MARC-8 and some sheets come decomposed)."""
    if text is None:
        return None
    value = unicodedata.normalize("NFC", str(text)).strip()
    value = _TRAILING.sub("", value)
    # A final full stop is ISBD punctuation; an ellipsis is part of the title.
    if value.endswith(".") and not value.endswith(".."):
        value = value[:-1].rstrip()
    return value or None


def _year(text: Any) -> int | None:
    if isinstance(text, (dt.date, dt.datetime)):
        return text.year
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(int(text))
    match = _YEAR.search(str(text or ""))
    return int(match.group(1)) if match else None


def _isbn_candidate(text: Any) -> str | None:
    if text is None or str(text).strip() == "":
        return None
    if isinstance(text, float) and text.is_integer():
        text = int(text)
    if isinstance(text, int):
        # A sheet that stored an ISBN-10 as a number lost its leading zero.
        text = str(text).zfill(10) if len(str(text)) == 9 else str(text)
    match = _ISBN_IN_TEXT.search(str(text))
    return match.group(0).strip() if match else str(text).strip()


class _Problems:
    """Collects the problems of one record, phrased in both languages."""

    def __init__(self, position: int, unit: Literal["record", "row"]) -> None:
        self.position, self.unit = position, unit
        self.items: list[ImportProblem] = []

    def add(self, vi: str, en: str, *, skipped: bool) -> None:
        self.items.append(ImportProblem(self.position, self.unit, vi, en, skipped))


def _finish(values: dict[str, Any], raw_isbns: list[str],
            problems: _Problems) -> TitleRecord | None:
    """Validate one record's values into a TitleRecord, or None (skipped) with the reason."""
    title = _clean(values.get("title"))
    if not title:
        problems.add("Thiếu nhan đề: bỏ qua", "no title: skipped", skipped=True)
        return None
    record = TitleRecord(title=title)
    for name in ("author", "publisher", "subject", "call_number"):
        setattr(record, name, _clean(values.get(name)))
    raw_year = values.get("year")
    record.year = _year(raw_year)
    if raw_year not in (None, "") and record.year is None:
        problems.add(f"Không đọc được năm xuất bản «{raw_year}»: để trống",
                     f"year of publication {raw_year!r} unreadable: left empty", skipped=False)
    language = (_clean(values.get("language")) or "").lower()
    record.language = language if _LANGUAGE.match(language) else None
    bad: list[str] = []
    for raw in raw_isbns:
        try:
            record.isbn = normalize_isbn(raw)
            break
        except InvalidIsbn:
            bad.append(raw)
    if record.isbn is None and bad:
        problems.add(f"ISBN không hợp lệ «{bad[0]}»: đã nhập đầu sách nhưng không có ISBN",
                     f"invalid ISBN {bad[0]!r}: title imported without it", skipped=False)
    for name, limit in _LIMITS.items():
        value = getattr(record, name)
        if value is not None and len(value) > limit:
            setattr(record, name, value[:limit])
            problems.add(f"Trường {name} dài quá {limit} ký tự: đã cắt bớt",
                         f"{name} longer than {limit} characters: cut", skipped=False)
    return record


# --- MARC 21 --------------------------------------------------------------------------

def _subfield(record: Any, tags: Iterable[str], code: str) -> str | None:
    for tag in tags:
        for fld in record.get_fields(tag):
            for value in fld.get_subfields(code):
                if value and value.strip():
                    return value
    return None


def _marc_values(record: Any) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    f245 = record.get_fields("245")
    if f245:
        main = _clean(" ".join(f245[0].get_subfields("a")))
        rest = _clean(" ".join(f245[0].get_subfields("b")))
        values["title"] = f"{main} : {rest}" if main and rest else (main or rest)
    values["author"] = _subfield(record, ("100", "110", "111"), "a")
    # 264 with second indicator 1 is the publication statement (RDA); 260 before RDA.
    publication = [f for f in record.get_fields("264") if f.indicator2 == "1"]
    publication += record.get_fields("260") + record.get_fields("264")
    for fld in publication:
        if not values.get("publisher") and fld.get_subfields("b"):
            values["publisher"] = fld.get_subfields("b")[0]
        if not values.get("year") and fld.get_subfields("c"):
            values["year"] = fld.get_subfields("c")[0]
    control = record.get_fields("008")
    data = control[0].data if control and control[0].data else ""
    if not values.get("year") and len(data) >= 11 and data[7:11].isdigit():
        values["year"] = data[7:11]
    values["subject"] = (_subfield(record, ("650",), "a")
                         or _subfield(record, ("082", "084"), "a"))
    for tag in ("090", "092"):
        for fld in record.get_fields(tag):
            parts = [p.strip() for p in fld.get_subfields("a", "b") if p.strip()]
            if parts and not values.get("call_number"):
                values["call_number"] = " ".join(parts)
    if not values.get("call_number"):
        for fld in record.get_fields("852"):
            parts = [p.strip() for p in fld.get_subfields("h", "i") if p.strip()]
            if parts:
                values["call_number"] = " ".join(parts)
                break
    values["language"] = _subfield(record, ("041",), "a") or (data[35:38] if len(data) >= 38
                                                              else None)
    isbns = [_isbn_candidate(v) for f in record.get_fields("020") for v in f.get_subfields("a")]
    return values, [i for i in isbns if i]


def _read_iso2709(path: Path) -> Iterator[tuple[int, TitleRecord | None, list[ImportProblem]]]:
    from pymarc import MARCReader
    from pymarc.exceptions import FatalReaderError

    with path.open("rb") as fh:
        # to_unicode: UTF-8 where leader/09 says "a", MARC-8 otherwise.
        reader = MARCReader(fh, to_unicode=True, force_utf8=False, utf8_handling="strict")
        position = 0
        for record in reader:
            position += 1
            problems = _Problems(position, "record")
            error = reader.current_exception
            if isinstance(error, FatalReaderError):
                # The record's length is wrong, so where the next one starts is unknown.
                raise CatalogueFileError(
                    path, f"Tệp MARC hỏng ở biểu ghi {position} ({type(error).__name__}): "
                          "không nhập gì",
                    f"corrupt MARC file at record {position} ({type(error).__name__}): "
                    "nothing imported")
            if record is None:
                detail = f"{type(error).__name__}: {error}" if error else "unreadable"
                problems.add(f"Biểu ghi MARC hỏng ({detail}): bỏ qua",
                             f"broken MARC record ({detail}): skipped", skipped=True)
                yield position, None, problems.items
                continue
            values, isbns = _marc_values(record)
            yield position, _finish(values, isbns, problems), problems.items
        if position == 0:
            raise CatalogueFileError(path, "Tệp MARC trống", "the MARC file holds no record")


def _read_marcxml(path: Path) -> Iterator[tuple[int, TitleRecord | None, list[ImportProblem]]]:
    from xml.sax import SAXException

    from pymarc import parse_xml_to_array

    try:
        records = parse_xml_to_array(str(path), strict=False)
    except (SAXException, ValueError, KeyError) as error:
        raise CatalogueFileError(path, f"Tệp MARCXML hỏng ({error}): không nhập gì",
                                 f"corrupt MARCXML file ({error}): nothing imported") from error
    if not records:
        raise CatalogueFileError(path, "Tệp MARCXML không có biểu ghi nào",
                                 "the MARCXML file holds no record")
    for position, record in enumerate(records, 1):
        problems = _Problems(position, "record")
        values, isbns = _marc_values(record)
        yield position, _finish(values, isbns, problems), problems.items


# --- Excel and CSV --------------------------------------------------------------------

_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("nhan de", "nhan de chinh", "ten sach", "ten tai lieu", "ten an pham", "title"),
    "author": ("tac gia", "tac gia chinh", "author"),
    "publisher": ("nha xuat ban", "nxb", "publisher"),
    "year": ("nam xuat ban", "nam xb", "nam", "year"),
    "isbn": ("isbn", "ma isbn", "so isbn"),
    "subject": ("mon loai", "phan loai", "mon", "chu de", "subject"),
    "call_number": ("ky hieu xep gia", "ky hieu xep kho", "ky hieu", "call number"),
    "language": ("ngon ngu", "language"),
}
_ALIASES = {alias: name for name, aliases in _COLUMNS.items() for alias in aliases}
_NON_WORD = re.compile(r"[^\w]+")


def _column_name(cell: Any) -> str | None:
    key = _NON_WORD.sub(" ", fold(str(cell or ""))).replace("_", " ").strip()
    return _ALIASES.get(key)


def _header(rows: list[tuple[Any, ...]]) -> tuple[int, dict[str, int]] | None:
    """(index, {field: column}) of the row that names the most known columns, title included."""
    best: tuple[int, dict[str, int]] | None = None
    for index, row in enumerate(rows[:_HEADER_SCAN_ROWS]):
        columns: dict[str, int] = {}
        for column, cell in enumerate(row):
            name = _column_name(cell)
            if name and name not in columns:
                columns[name] = column
        if "title" in columns and (best is None or len(columns) > len(best[1])):
            best = (index, columns)
    return best


def _read_rows(path: Path, rows: list[tuple[Any, ...]]
               ) -> Iterator[tuple[int, TitleRecord | None, list[ImportProblem]]]:
    found = _header(rows)
    if found is None:
        raise CatalogueFileError(
            path, "Không tìm thấy dòng tiêu đề có cột «Nhan đề» hoặc «Tên sách»",
            "no header row naming a title column (Nhan đề / Tên sách) found")
    header_index, columns = found
    for index in range(header_index + 1, len(rows)):
        row = rows[index]
        if all(cell is None or str(cell).strip() == "" for cell in row):
            continue
        position = index + 1   # the row number the librarian sees in the sheet
        values = {name: (row[col] if col < len(row) else None) for name, col in columns.items()}
        isbn = _isbn_candidate(values.pop("isbn", None))
        problems = _Problems(position, "row")
        yield position, _finish(values, [isbn] if isbn else [], problems), problems.items


def _read_xlsx(path: Path) -> Iterator[tuple[int, TitleRecord | None, list[ImportProblem]]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises zipfile, KeyError, ... on a non-workbook
        raise CatalogueFileError(path, f"Không mở được tệp Excel ({error})",
                                 f"cannot open the Excel file ({error})") from error
    try:
        sheets = [list(sheet.iter_rows(values_only=True)) for sheet in workbook.worksheets]
    finally:
        workbook.close()
    # The first sheet with a recognisable header: workbooks often open with a cover sheet.
    rows = next((r for r in sheets if _header(r) is not None), sheets[0] if sheets else [])
    yield from _read_rows(path, rows)


def csv_rows(path: Path, header: Callable[[list[tuple[Any, ...]]], tuple[int, dict[str, int]] | None]
             ) -> list[tuple[Any, ...]]:
    """A CSV's rows, read with the delimiter under which `header` finds the header row
    naming the most columns (a sniffer is misled by preamble lines above the header),
    in UTF-8, else in Windows-1258 (Excel's "CSV" on Vietnamese Windows)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1258", errors="replace")
    best: list[tuple[Any, ...]] = []
    best_columns = -1
    for delimiter in (",", ";", "\t"):
        rows = [tuple(row) for row in csv.reader(io.StringIO(text), delimiter=delimiter)]
        found = header(rows)
        if found is not None and len(found[1]) > best_columns:
            best, best_columns = rows, len(found[1])
    return best


def _read_csv(path: Path) -> Iterator[tuple[int, TitleRecord | None, list[ImportProblem]]]:
    yield from _read_rows(path, csv_rows(path, _header))


_READERS = {".mrc": ("iso2709", _read_iso2709), ".iso": ("iso2709", _read_iso2709),
            ".xml": ("marcxml", _read_marcxml), ".xlsx": ("xlsx", _read_xlsx),
            ".csv": ("csv", _read_csv)}


def read_catalogue(path: Path) -> tuple[str, list[tuple[int, TitleRecord | None,
                                                          list[ImportProblem]]]]:
    """(format, [(position, record or None, problems)]) of a catalogue file; no database."""
    path = Path(path)
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise CatalogueFileError(
            path, f"Không nhận dạng được loại tệp «{path.suffix}» (.mrc .iso .xml .xlsx .csv)",
            f"unknown file type {path.suffix!r} (.mrc .iso .xml .xlsx .csv expected)")
    if not path.is_file():
        raise CatalogueFileError(path, "Không tìm thấy tệp", "no such file")
    name, reader = kind
    return name, list(reader(path))


# --- into the catalogue ---------------------------------------------------------------

_FIELDS = [f.name for f in fields(TitleRecord)]


def _merge(title: Title, record: TitleRecord) -> None:
    for name in _FIELDS:
        if name == "language":
            continue  # always set ("vie" by default): never overwritten
        if getattr(title, name) in (None, "") and getattr(record, name) is not None:
            setattr(title, name, getattr(record, name))


def import_catalogue(sessions: sessionmaker[Session], path: Path | str, *,
                     progress: Progress | None = None) -> ImportReport:
    """Import the titles of a MARC 21 (.mrc/.iso, .xml) or Excel/CSV (.xlsx/.csv) file.

    All or nothing per file: raises CatalogueFileError (nothing written) when the file
    cannot be read; otherwise writes every good record in one transaction and returns
    what was created, merged and not taken.
    """
    path = Path(path)
    kind, entries = read_catalogue(path)
    report = ImportReport(path=path, format=kind, read=len(entries))
    for _position, _record, problems in entries:
        report.problems.extend(problems)
    records = [(pos, rec) for pos, rec, _ in entries if rec is not None]
    total = len(records)
    step = max(1, total // 100)
    with sessions.begin() as session:
        by_isbn: dict[str, Title] = {}
        for title in session.scalars(select(Title).where(Title.isbn.is_not(None))):
            try:
                by_isbn.setdefault(normalize_isbn(title.isbn or ""), title)
            except InvalidIsbn:
                pass  # an old hand-typed ISBN: it cannot be matched, it is left alone
        for done, (_position, record) in enumerate(records, 1):
            existing = by_isbn.get(record.isbn) if record.isbn else None
            if existing is not None:
                _merge(existing, record)
                report.merged += 1
            else:
                title = Title(**{name: getattr(record, name) for name in _FIELDS})
                title.language = record.language or "vie"
                session.add(title)
                if record.isbn:
                    by_isbn[record.isbn] = title
                report.created += 1
            if progress is not None and (done % step == 0 or done == total):
                progress(done, total)
    return report


# --- out, for other libraries ---------------------------------------------------------

def _to_marc(title: Title, today: dt.date) -> Any:
    from pymarc import Field, Indicators, Record, Subfield

    record = Record(force_utf8=True, leader="00000nam a2200000 a 4500")
    language = title.language if title.language and _LANGUAGE.match(title.language) else "vie"
    date1 = f"{title.year:04d}" if title.year else "uuuu"
    fixed = (today.strftime("%y%m%d") + ("s" if title.year else "n") + date1 + "    "
             + "vm " + " " * 17 + language + " d")
    record.add_field(Field(tag="001", data=str(title.id)), Field(tag="008", data=fixed))

    def add(tag: str, indicators: tuple[str, str], *subfields: tuple[str, Any]) -> None:
        present = [Subfield(code, str(value)) for code, value in subfields if value]
        if present:
            record.add_field(Field(tag=tag, indicators=Indicators(*indicators),
                                   subfields=present))

    add("020", (" ", " "), ("a", title.isbn))
    add("041", ("0", " "), ("a", language))
    add("090", (" ", " "), ("a", title.call_number))
    add("100", ("1", " "), ("a", title.author))
    # ISBD: "main title : other title" travels as $a "main title :" and $b "other title".
    main, _, rest = title.title.partition(" : ")
    add("245", ("1" if title.author else "0", "0"),
        ("a", f"{main} :" if rest else main), ("b", rest))
    add("260", (" ", " "), ("b", title.publisher), ("c", title.year))
    add("650", (" ", "4"), ("a", title.subject))
    return record


def export_marc(sessions: sessionmaker[Session], path: Path | str,
                format: Literal["iso2709", "marcxml"] = "iso2709") -> int:
    """Write every title to `path` as MARC 21 (UTF-8); returns the number of records."""
    from pymarc import MARCWriter, XMLWriter

    if format not in ("iso2709", "marcxml"):
        raise ValueError(f"unknown MARC format {format!r}: iso2709 or marcxml")
    path = Path(path)
    today = dt.date.today()
    with sessions() as session:
        records = [_to_marc(t, today) for t in session.scalars(select(Title).order_by(Title.id))]
    # Written beside the target first, so a failure never leaves half a file to share.
    partial = path.with_name(path.name + ".part")
    with partial.open("wb") as fh:
        writer: Any = MARCWriter(fh) if format == "iso2709" else XMLWriter(fh)
        for record in records:
            writer.write(record)
        writer.close(close_fh=False)
    partial.replace(path)
    return len(records)
