"""The catalogue as an Excel workbook for other libraries: one row per title.

Many schools share their catalogue as a spreadsheet rather than MARC 21. The header row
uses the Vietnamese column names `server.importers.catalogue` recognises (Nhan đề, Tác
giả, Nhà xuất bản, ...), so the file imports back into thuvien, ours or another
school's, as it is. Copies withdrawn (thanh lý) are not counted: they left the library.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.intake import accession_ranges
from server.models import Copy, CopyStatus, Title

__all__ = ["HEADER", "export_catalogue_xlsx"]

# (header the catalogue import maps, Title attribute or a computed column, width)
HEADER: list[tuple[str, str, float]] = [
    ("STT", "_row", 6),
    ("Nhan đề", "title", 48),
    ("Tác giả", "author", 26),
    ("Nhà xuất bản", "publisher", 22),
    ("Năm xuất bản", "year", 8),
    ("ISBN", "isbn", 16),
    ("Môn loại", "subject", 20),
    ("Ký hiệu xếp giá", "call_number", 14),
    ("Ngôn ngữ", "language", 8),
    ("Dạng tài liệu", "material", 10),
    ("Số bản", "_copies", 8),
    ("Số ĐKCB", "_accessions", 40),
]
_MATERIAL = {"book": "Sách", "equipment": "Thiết bị"}
_STREAM = 5000


def _accessions_by_title(session: Session) -> Iterator[tuple[int, list[str]]]:
    """(title id, its ĐKCB numbers) in title order, streamed: never 100,000 objects at once."""
    query = (select(Copy.title_id, Copy.accession_number)
             .where(Copy.status != CopyStatus.WITHDRAWN.value)
             .order_by(Copy.title_id)
             .execution_options(yield_per=_STREAM))
    current: int | None = None
    numbers: list[str] = []
    for title_id, accession in session.execute(query):
        if title_id != current:
            if current is not None:
                yield current, numbers
            current, numbers = title_id, []
        numbers.append(accession)
    if current is not None:
        yield current, numbers


def _rows(session: Session) -> Iterator[list[Any]]:
    copies = _accessions_by_title(session)
    pending = next(copies, None)
    attributes = [a for _h, a, _w in HEADER if not a.startswith("_")]
    # Plain rows, not ORM objects: the export reads, and 20,000 identity-mapped titles cost.
    titles = session.execute(select(Title.id, *(getattr(Title, a) for a in attributes))
                             .order_by(Title.id).execution_options(yield_per=_STREAM))
    for number, title in enumerate(titles, 1):
        # Both streams run in title id order: merge them rather than hold a dict of all.
        while pending is not None and pending[0] < title.id:
            pending = next(copies, None)
        accessions: list[str] = []
        if pending is not None and pending[0] == title.id:
            accessions = pending[1]
            pending = next(copies, None)
        row: list[Any] = []
        for _header, attribute, _width in HEADER:
            if attribute == "_row":
                row.append(number)
            elif attribute == "_copies":
                row.append(len(accessions))
            elif attribute == "_accessions":
                row.append(", ".join(str(r) for r in accession_ranges(accessions)) or None)
            elif attribute == "material":
                row.append(_MATERIAL.get(title.material, title.material))
            else:
                row.append(getattr(title, attribute))
        yield row


def export_catalogue_xlsx(sessions: sessionmaker[Session], path: Path | str,
                          school_name: str | None = None) -> int:
    """Write every title to `path` (.xlsx); returns the number of titles written."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    path = Path(path)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Danh mục")
    for index, (_header, _attribute, width) in enumerate(HEADER, 1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    heading = WriteOnlyCell(sheet, value="DANH MỤC ĐẦU SÁCH / CATALOGUE OF TITLES"
                            + (f" – {school_name}" if school_name else ""))
    heading.font = Font(bold=True, size=13)
    sheet.append([heading])
    sheet.append(["Mỗi dòng một đầu sách; nhập lại được bằng `thuvien import catalogue`. / "
                  "One title per row; imports back with `thuvien import catalogue`."])
    header_cells = []
    for name, _attribute, _width in HEADER:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = Font(bold=True)
        header_cells.append(cell)
    sheet.append(header_cells)
    isbn_column = next(i for i, (_h, attribute, _w) in enumerate(HEADER) if attribute == "isbn")
    count = 0
    with sessions() as session:
        for row in _rows(session):
            cells: list[Any] = list(row)
            if row[isbn_column]:
                # As text: Excel would show a 13-digit number in scientific notation.
                isbn = WriteOnlyCell(sheet, value=str(row[isbn_column]))
                isbn.number_format = "@"
                cells[isbn_column] = isbn
            sheet.append(cells)
            count += 1
    # Written beside the target first, so a failure never leaves half a file to share.
    partial = path.with_name(path.name + ".part")
    book.save(partial)
    partial.replace(path)
    return count
