"""Barcode label sheets: one self-adhesive label per copy, on common A4 label stock.

Each label carries the school's short name (optional), the Code 128 barcode the kiosks
and the desk scan (`Copy.barcode`, else the ĐKCB without its separator), the ĐKCB in
plain text under it, the shelf mark (`Title.call_number`) and the title, shortened to
fit. Copies are chosen by a list, by kind and ĐKCB range, or by receipt (phiếu nhập);
`skip` starts on a partly used sheet. Not a `Report` (no table): drawn on a canvas.

The sheet presets follow the manufacturers' templates (Avery/Tanex/Label Planet): for
each, (page width - columns x width - gaps) / 2 gives the left margin and likewise the
top, so a sheet prints centred as the stock is cut.
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.pagesizes import A4, A5, LETTER
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import Select, select

from server.models import Copy, CopyStatus, Receipt, Title
from server.reports.document import Text
from server.reports.layouts import PRESETS, LabelLayout, LabelsConfig
from server.reports.pdf import FONT, FONT_BOLD, register_fonts

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from server.config import LibraryConfig, ServerConfig

__all__ = ["PRESETS", "LabelError", "LabelItem", "LabelLayout", "LabelSheet", "LabelsConfig",
           "PrintError", "choose_copies", "draw_code128", "fit_text", "label_sheet_pdf",
           "labels_config", "render_labels", "resolve_layout", "school_short", "write_pdf"]

# Pages in points, for reportlab.
PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": A4, "A5": A5, "letter": LETTER}
# ISO/IEC 15417 asks for a quiet zone of at least 10 modules on each side of Code 128.
QUIET_MODULES = 10
# Bars a whole number of 300 dpi printer dots wide print evenly on 300 and 600 dpi printers.
PRINTER_DOT = 25.4 / 300 * mm
MIN_MODULE = 2 * PRINTER_DOT   # thinner bars smear on an office laser printer
MAX_MODULE = 0.5 * mm          # wider only makes the symbol long, not easier to scan
MAX_BAR_HEIGHT = 15 * mm
LABEL_TITLE = Text("Nhãn mã vạch", "Barcode labels")


class PrintError(ValueError):
    """Nothing was written: what was asked cannot be printed. Vietnamese first, then English."""

    def __init__(self, message_vi: str, message_en: str) -> None:
        super().__init__(f"{message_vi} / {message_en}")
        self.message_vi = message_vi
        self.message_en = message_en


class LabelError(PrintError):
    """A label sheet cannot be made (unknown ĐKCB, bad layout, nothing chosen)."""


def resolve_layout(layout: str | LabelLayout | None, labels: LabelsConfig) -> LabelLayout:
    """A layout by name (the config's own first, then the presets), or the configured one."""
    if isinstance(layout, LabelLayout):
        return layout
    name = labels.layout if layout is None else layout.strip()
    own = {item.name: item for item in labels.layouts}
    found = own.get(name) or PRESETS.get(name)
    if found is None:
        known = ", ".join([*own, *PRESETS])
        raise LabelError(f"Không có khổ nhãn {name!r}; các khổ có: {known}",
                         f"unknown label layout {name!r}; known layouts: {known}")
    return found


def labels_config(config: ServerConfig) -> LabelsConfig:
    # Until the `[labels]` section is part of ServerConfig, its defaults apply.
    found = getattr(config, "labels", None)
    return found if isinstance(found, LabelsConfig) else LabelsConfig()


# -- drawing helpers, shared with the library cards -------------------------------------

def fit_text(text: str, font: str, size: float, width: float, min_size: float) -> tuple[str, float]:
    """Shrink `text` down to `min_size`, then cut it with an ellipsis, to fit `width` points."""
    text = " ".join(text.split())
    while size > min_size and stringWidth(text, font, size) > width:
        size = max(min_size, size - 0.25)
    if stringWidth(text, font, size) <= width:
        return text, size
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip(" ,.:;-–") + "…", size


def draw_code128(canvas: Canvas, value: str, x: float, y: float, width: float,
                 height: float) -> float:
    """Draw `value` as Code 128 centred in the box, quiet zones included; the module width."""
    if not value or not value.isascii() or not value.isprintable():
        raise PrintError(f"Mã vạch {value!r} có ký tự không in được bằng Code 128",
                         f"barcode {value!r} has characters Code 128 cannot carry")
    modules = Code128(value, barWidth=1, quiet=0).width + 2 * QUIET_MODULES
    module = min(MAX_MODULE, width / modules)
    if module >= MIN_MODULE:
        module = math.floor(module / PRINTER_DOT) * PRINTER_DOT
    else:
        raise PrintError(f"Mã vạch {value} quá dài cho ô {width / mm:.0f} mm",
                         f"barcode {value} is too long for a {width / mm:.0f} mm space")
    symbol = Code128(value, barWidth=module, barHeight=height, quiet=0, humanReadable=0)
    symbol.drawOn(canvas, x + (width - symbol.width) / 2, y)
    return module


def write_pdf(data: bytes, out: Path | str | BinaryIO) -> None:
    """Write a finished PDF: a path is replaced whole, never left half-written."""
    if not isinstance(out, Path | str):
        out.write(data)
        return
    target = Path(out)
    if not target.parent.is_dir():
        raise PrintError(f"Không có thư mục {target.parent} để ghi {target.name}",
                         f"no folder {target.parent} to write {target.name} in")
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            os.fchmod(file.fileno(), 0o644)   # mkstemp's 0600 would hide it from other users
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- choosing the copies ---------------------------------------------------------------

@dataclass(frozen=True)
class LabelItem:
    accession_number: str
    barcode: str
    call_number: str
    title: str


@dataclass(frozen=True)
class LabelSheet:
    """What was printed."""

    labels: int
    pages: int
    layout: str


_ACCESSION = re.compile(r"^([A-Z]{1,8})[.\-/]?(\d{1,12})$")
_COLUMNS = (Copy.accession_number, Copy.barcode, Title.call_number, Title.title)


def _item(library: LibraryConfig, accession: str, barcode: str | None, call_number: str | None,
          title: str) -> LabelItem:
    scanned = barcode or (accession.replace(library.accession_separator, "")
                          if library.accession_separator else accession)
    return LabelItem(accession, scanned, call_number or "", title)


def _by_list(session: Session, library: LibraryConfig, wanted: Sequence[str]) -> list[LabelItem]:
    codes = [code.strip().upper() for code in wanted if code.strip()]
    if not codes:
        raise LabelError("Danh sách ĐKCB trống", "the list of ĐKCB numbers is empty")
    found: dict[str, tuple[str, str | None, str | None, str, str]] = {}
    for start in range(0, len(codes), 500):
        chunk = codes[start:start + 500]
        # A scanned barcode names a copy as well as its ĐKCB does.
        rows = session.execute(select(*_COLUMNS, Copy.status).join(Title, Title.id == Copy.title_id)
                               .where(Copy.accession_number.in_(chunk) | Copy.barcode.in_(chunk)))
        for accession, barcode, call_number, title, status in rows:
            row = (accession, barcode, call_number, title, status)
            found[accession.upper()] = row
            if barcode:
                found.setdefault(barcode.upper(), row)
    unknown = [code for code in codes if code not in found]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" (+{len(unknown) - 10})" if len(unknown) > 10 else "")
        raise LabelError(f"Không có bản sách với ĐKCB: {shown}", f"no copy with ĐKCB: {shown}")
    withdrawn = [found[code][0] for code in codes if found[code][4] == CopyStatus.WITHDRAWN]
    if withdrawn:
        shown = ", ".join(withdrawn[:10])
        raise LabelError(f"Bản sách đã thanh lý, không in nhãn: {shown}",
                         f"withdrawn copies get no label: {shown}")
    return [_item(library, *found[code][:4]) for code in codes]


def _running(library: LibraryConfig, kind: str, value: str) -> int:
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    match = _ACCESSION.match(text)
    if match is None or match.group(1) != kind:
        raise LabelError(f"{value!r} không phải ĐKCB loại {kind} (ví dụ "
                         f"{library.accession_number(kind, 1)})",
                         f"{value!r} is not a {kind} ĐKCB (for example "
                         f"{library.accession_number(kind, 1)})")
    return int(match.group(2))


def _range_query(library: LibraryConfig, kind: str | None, first: str | None,
                 last: str | None) -> Select[tuple[str, str | None, str | None, str]]:
    if kind is None:
        match = _ACCESSION.match((first or last or "").strip().upper())
        if match is None:
            raise LabelError("Cho biết loại sách (--kind TK) hoặc ĐKCB đầy đủ (TK.00001)",
                             "give the kind (--kind TK) or a whole ĐKCB (TK.00001)")
        kind = match.group(1)
    kind = kind.strip().upper()
    if library.kind(kind) is None:
        known = ", ".join(item.prefix for item in library.kinds)
        raise LabelError(f"Không có loại sách {kind!r}; các loại: {known}",
                         f"unknown kind {kind!r}; kinds: {known}")
    query = (select(*_COLUMNS).join(Title, Title.id == Copy.title_id)
             .where(Copy.kind == kind, Copy.status != CopyStatus.WITHDRAWN)
             .order_by(Copy.accession_number))
    low = _running(library, kind, first) if first else None
    high = _running(library, kind, last) if last else None
    if low is not None and high is not None and low > high:
        raise LabelError(f"ĐKCB đầu {first} lớn hơn ĐKCB cuối {last}",
                         f"the first ĐKCB {first} comes after the last {last}")
    # Numbers have a fixed width (accession_digits), so text order is number order.
    if low is not None:
        query = query.where(Copy.accession_number >= library.accession_number(kind, low))
    if high is not None:
        query = query.where(Copy.accession_number <= library.accession_number(kind, high))
    return query


def _receipt_query(session: Session, number: int) -> Select[tuple[str, str | None, str | None, str]]:
    receipt_id = session.scalar(select(Receipt.id).where(Receipt.number == number))
    if receipt_id is None:
        raise LabelError(f"Không có phiếu nhập số {number}", f"no receipt number {number}")
    return (select(*_COLUMNS).join(Title, Title.id == Copy.title_id)
            .where(Copy.receipt_id == receipt_id, Copy.status != CopyStatus.WITHDRAWN)
            .order_by(Copy.kind, Copy.accession_number))


def choose_copies(session: Session, library: LibraryConfig, *,
                  accession_numbers: Sequence[str] | None = None, kind: str | None = None,
                  first: str | None = None, last: str | None = None,
                  receipt_number: int | None = None) -> list[LabelItem]:
    """The copies to label, in print order; a clear error when the choice names nothing."""
    ways = [accession_numbers is not None, any(v is not None for v in (kind, first, last)),
            receipt_number is not None]
    if sum(ways) != 1:
        raise LabelError("Chọn đúng một cách: danh sách ĐKCB, loại và khoảng ĐKCB, hoặc phiếu nhập",
                         "choose exactly one way: a list of ĐKCB, a kind and ĐKCB range, "
                         "or a receipt")
    if accession_numbers is not None:
        return _by_list(session, library, accession_numbers)
    if receipt_number is not None:
        query = _receipt_query(session, receipt_number)
        what = (f"phiếu nhập số {receipt_number}", f"receipt number {receipt_number}")
    else:
        query = _range_query(library, kind, first, last)
        what = ("khoảng ĐKCB đã chọn", "the chosen ĐKCB range")
    items = [_item(library, *row) for row in session.execute(query)]
    if not items:
        raise LabelError(f"Không có bản sách nào trong {what[0]}", f"no copies in {what[1]}")
    return items


# -- drawing the sheet -----------------------------------------------------------------

def _draw_label(canvas: Canvas, item: LabelItem, x: float, y: float, layout: LabelLayout,
                school: str | None) -> None:
    """One label whose bottom-left corner is (x, y): lines stacked and centred."""
    width, height = layout.label_width_mm * mm, layout.label_height_mm * mm
    pad = layout.padding_mm * mm
    inner = width - 2 * pad
    scale = max(0.7, min(1.2, layout.label_height_mm / 37))
    centre = x + width / 2
    # Below the barcode: (text, font, size) per line.
    dkcb, dkcb_size = fit_text(item.accession_number, FONT_BOLD, 9 * scale, inner, 6)
    lines: list[tuple[str, str, float]] = [(dkcb, FONT_BOLD, dkcb_size)]
    if item.call_number:
        call_number, call_size = fit_text(item.call_number, FONT_BOLD, 7.5 * scale, inner, 5)
        lines.append((call_number, FONT_BOLD, call_size))
    title, title_size = fit_text(item.title, FONT, 6.2 * scale, inner, 5)
    lines.append((title, FONT, title_size))
    school_line = fit_text(school, FONT, 5.8 * scale, inner, 4.5) if school else None
    text_height = sum(size * 1.2 for _, _, size in lines)
    top_height = school_line[1] * 1.25 if school_line else 0
    gap = 0.8 * mm * scale
    bar_height = min(MAX_BAR_HEIGHT, height - 2 * pad - text_height - top_height - 2 * gap)
    if bar_height < 5 * mm:
        raise LabelError(f"Nhãn {layout.name} quá thấp cho mã vạch và chữ",
                         f"label {layout.name} is too short for a barcode and its text")
    # What is left over is split above and below, so short content sits mid-label.
    spare = height - 2 * pad - text_height - top_height - 2 * gap - bar_height
    cursor = y + height - pad - spare / 2
    if school_line:
        cursor -= school_line[1]
        canvas.setFont(FONT, school_line[1])
        canvas.drawCentredString(centre, cursor, school_line[0])
        cursor -= school_line[1] * 0.25 + gap
    cursor -= bar_height
    draw_code128(canvas, item.barcode, x + pad, cursor, inner, bar_height)
    cursor -= gap
    for text, font, size in lines:
        cursor -= size * 1.2
        canvas.setFont(font, size)
        canvas.drawCentredString(centre, cursor + size * 0.2, text)


def _positions(layout: LabelLayout) -> Iterator[tuple[float, float]]:
    """Each label's bottom-left corner in points, row by row from the top-left."""
    page_height = PAGE_SIZES[layout.page][1]
    for row in range(layout.rows):
        for column in range(layout.columns):
            left = (layout.left_margin_mm + column * layout.horizontal_pitch_mm) * mm
            top = (layout.top_margin_mm + row * layout.vertical_pitch_mm) * mm
            yield left, page_height - top - layout.label_height_mm * mm


def render_labels(items: Iterable[LabelItem], layout: LabelLayout, school: str | None,
                  skip: int = 0) -> tuple[bytes, int, int]:
    """The PDF of `items` on `layout`, the first `skip` places of the first sheet left
    blank; returns (pdf, labels, pages)."""
    if not 0 <= skip < layout.per_sheet:
        raise LabelError(f"Số nhãn bỏ qua phải từ 0 đến {layout.per_sheet - 1}",
                         f"skip must be from 0 to {layout.per_sheet - 1}")
    register_fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=PAGE_SIZES[layout.page], pageCompression=1)
    canvas.setTitle(f"{LABEL_TITLE.vi} / {LABEL_TITLE.en}")
    canvas.setAuthor(school or "")
    canvas.setCreator("thuvien")
    places = list(_positions(layout))
    index, count = skip, 0
    for item in items:
        if index == layout.per_sheet:
            canvas.showPage()
            index = 0
        _draw_label(canvas, item, *places[index], layout, school)
        index += 1
        count += 1
    if count == 0:
        raise LabelError("Không có nhãn nào để in", "there are no labels to print")
    canvas.showPage()
    canvas.save()
    return buffer.getvalue(), count, math.ceil((skip + count) / layout.per_sheet)


def school_short(config: ServerConfig, labels: LabelsConfig) -> str:
    if labels.school_short:
        return labels.school_short
    name = config.school_name.strip()
    return name[len("Trường "):] if name.lower().startswith("trường ") else name


def label_sheet_pdf(sessions: sessionmaker[Session], config: ServerConfig,
                    out: Path | str | BinaryIO, *, accession_numbers: Sequence[str] | None = None,
                    kind: str | None = None, first: str | None = None, last: str | None = None,
                    receipt_number: int | None = None, layout: str | LabelLayout | None = None,
                    skip: int = 0) -> LabelSheet:
    """Print barcode labels for the chosen copies to `out` (a path or a binary file).

    Choose copies by `accession_numbers` (ĐKCB or barcodes, printed in that order), by
    `kind` and the ĐKCB range `first`..`last` (either end may be left open), or by
    `receipt_number` (the general register's number of a phiếu nhập). Raises LabelError,
    writing nothing, when the choice, the layout or `skip` is wrong.
    """
    labels = labels_config(config)
    chosen = resolve_layout(layout, labels)
    with sessions() as session:
        items = choose_copies(session, config.library, accession_numbers=accession_numbers,
                              kind=kind, first=first, last=last, receipt_number=receipt_number)
    school = school_short(config, labels) if labels.school_line else None
    data, count, pages = render_labels(items, chosen, school, skip)
    write_pdf(data, out)
    return LabelSheet(labels=count, pages=pages, layout=chosen.name)

