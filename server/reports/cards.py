"""Library cards (thẻ thư viện), CR80 size (85.6 x 54 mm), as a PDF.

Each card: the school's name, "THẺ THƯ VIỆN / LIBRARY CARD", the reader's name, class
(students) or role, card number, an optional photo (a neat empty frame when there is
none), the Code 128 barcode of `Reader.code` that kiosks and the desk scan, and, given
the OPAC's address, a QR code that opens the reader's sign-in page with the card number.

Two ways to print: ten cards on A4 (2 x 5, with crop marks, cut by hand), or one card per
CR80-sized page for a card printer.
"""

from __future__ import annotations

import datetime as dt
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal
from urllib.parse import quote

from PIL import Image, ImageOps, UnidentifiedImageError
from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import select

from server.models import Reader, ReaderKind, ReaderStatus
from server.reports.document import Text
from server.reports.labels import PrintError, draw_code128, fit_text, write_pdf
from server.reports.pdf import FONT, FONT_BOLD, register_fonts
from server.web.opac import READER_PATH

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from server.config import ServerConfig

__all__ = ["CARD_HEIGHT", "CARD_WIDTH", "CardError", "CardHolder", "CardSheet", "card_url",
           "choose_readers", "library_cards_pdf", "render_cards"]

CARD_WIDTH, CARD_HEIGHT = 85.6 * mm, 54 * mm    # ISO/IEC 7810 ID-1 (CR80)
A4_COLUMNS, A4_ROWS = 2, 5
CROP_GAP, CROP_LENGTH = 2 * mm, 5 * mm           # crop marks start off the card's edge
PHOTO_WIDTH, PHOTO_HEIGHT = 18 * mm, 24 * mm      # a 3 x 4 portrait, as schools take them
PHOTO_DPI = 300                                   # more only swells the PDF
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
BAND = colors.HexColor("#1f5f8b")
PerPage = Literal["a4", "cr80"]

CARD_TITLE = Text("THẺ THƯ VIỆN", "LIBRARY CARD")
CLASS = Text("Lớp", "Class")
CARD_NO = Text("Số thẻ", "Card no.")
BORN = Text("Ngày sinh", "Born")
PHOTO = Text("Ảnh 3x4", "Photo")
ROLE = {ReaderKind.TEACHER: Text("Giáo viên", "Teacher"),
        ReaderKind.STAFF: Text("Cán bộ, nhân viên", "Staff")}
PDF_TITLE = Text("Thẻ thư viện", "Library cards")


class CardError(PrintError):
    """The cards cannot be made (unknown reader, nobody chosen, bad option)."""


@dataclass(frozen=True)
class CardHolder:
    code: str
    name: str
    kind: str
    class_name: str | None
    birth_date: dt.date | None


@dataclass(frozen=True)
class CardSheet:
    """What was printed; `photo_problems` names photo files that could not be read
    (their cards carry the empty frame)."""

    cards: int
    pages: int
    photo_problems: list[str] = field(default_factory=list)


def card_url(opac_url: str, code: str) -> str:
    """Where a card's QR code leads: the OPAC's reader sign-in page, with the card number."""
    return f"{opac_url.rstrip('/')}{READER_PATH}?card={quote(code, safe='')}"


# -- choosing the readers --------------------------------------------------------------

def _fold(text: str) -> str:
    text = text.replace("đ", "d~").replace("Đ", "D~")   # đ sorts after d, as in the alphabet
    return "".join(c for c in unicodedata.normalize("NFD", text.lower())
                   if unicodedata.category(c) != "Mn")


def _roll_order(holder: CardHolder) -> tuple[str, str, str, str]:
    # Vietnamese class lists go by given name (the last word), then the whole name.
    given = holder.name.split()[-1] if holder.name.split() else ""
    return (holder.class_name or "", _fold(given), _fold(holder.name), holder.code)


_COLUMNS = (Reader.code, Reader.name, Reader.kind, Reader.class_name, Reader.birth_date)


def _by_codes(session: Session, codes: Sequence[str]) -> list[CardHolder]:
    wanted = [code.strip().upper() for code in codes if code.strip()]
    if not wanted:
        raise CardError("Danh sách số thẻ trống", "the list of card numbers is empty")
    found: dict[str, tuple[CardHolder, str]] = {}
    for start in range(0, len(wanted), 500):
        rows = session.execute(select(*_COLUMNS, Reader.status)
                               .where(Reader.code.in_(wanted[start:start + 500])))
        for code, name, kind, class_name, birth_date, status in rows:
            found[code.upper()] = (CardHolder(code, name, kind, class_name, birth_date), status)
    unknown = [code for code in wanted if code not in found]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" (+{len(unknown) - 10})" if len(unknown) > 10 else "")
        raise CardError(f"Không có bạn đọc với số thẻ: {shown}", f"no reader with card number: {shown}")
    gone = [code for code in wanted if found[code][1] == ReaderStatus.INACTIVE]
    if gone:
        shown = ", ".join(gone[:10])
        raise CardError(f"Bạn đọc đã thôi học hoặc nghỉ, không in thẻ: {shown}",
                        f"readers who have left get no card: {shown}")
    return [found[code][0] for code in wanted]


def choose_readers(session: Session, *, reader_codes: Sequence[str] | None = None,
                   class_name: str | None = None, kind: str | None = None) -> list[CardHolder]:
    """The readers to print cards for: listed ones in that order, or a class and/or kind
    (active and blocked readers, never those who have left) in class-list order."""
    if reader_codes is not None:
        if class_name is not None or kind is not None:
            raise CardError("Chọn theo số thẻ, hoặc theo lớp/loại bạn đọc, không cả hai",
                            "choose by card numbers, or by class/kind of reader, not both")
        return _by_codes(session, reader_codes)
    if class_name is None and kind is None:
        raise CardError("Chọn bạn đọc: số thẻ, lớp hoặc loại bạn đọc",
                        "choose the readers: card numbers, a class or a kind of reader")
    query = select(*_COLUMNS).where(Reader.status != ReaderStatus.INACTIVE)
    if kind is not None:
        if kind not in {item.value for item in ReaderKind}:
            known = ", ".join(item.value for item in ReaderKind)
            raise CardError(f"Không có loại bạn đọc {kind!r}; các loại: {known}",
                            f"unknown kind of reader {kind!r}; kinds: {known}")
        query = query.where(Reader.kind == kind)
    if class_name is not None:
        query = query.where(Reader.class_name == class_name.strip().upper())
    holders = sorted((CardHolder(*row) for row in session.execute(query)), key=_roll_order)
    if not holders:
        where = " ".join(part for part in (kind, class_name) if part)
        raise CardError(f"Không có bạn đọc nào ({where})", f"no readers found ({where})")
    return holders


# -- drawing one card ------------------------------------------------------------------

def _photo(photos_dir: Path | None, code: str, problems: list[str]) -> ImageReader | None:
    if photos_dir is None or Path(code).name != code:
        return None
    for suffix in PHOTO_SUFFIXES:
        path = photos_dir / f"{code}{suffix}"
        if not path.is_file():
            continue
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError):
            problems.append(str(path))
            return None
        # Centre-cropped to the frame and scaled to print resolution: a phone's 4 MB
        # photo per reader would make a class's PDF too big to send to a printer.
        size = (round(PHOTO_WIDTH / 72 * PHOTO_DPI), round(PHOTO_HEIGHT / 72 * PHOTO_DPI))
        return ImageReader(ImageOps.fit(image, size, Image.Resampling.LANCZOS))
    return None


def _placeholder(canvas: Canvas, x: float, y: float) -> None:
    canvas.setFillColor(colors.HexColor("#f3f3f3"))
    canvas.setStrokeColor(colors.HexColor("#9a9a9a"))
    canvas.setLineWidth(0.5)
    canvas.setDash(2, 1.5)
    canvas.rect(x, y, PHOTO_WIDTH, PHOTO_HEIGHT, stroke=1, fill=1)
    canvas.setDash()
    canvas.setFillColor(colors.HexColor("#d4d4d4"))
    centre = x + PHOTO_WIDTH / 2
    canvas.circle(centre, y + PHOTO_HEIGHT * 0.64, PHOTO_WIDTH * 0.17, stroke=0, fill=1)
    canvas.ellipse(centre - PHOTO_WIDTH * 0.32, y + PHOTO_HEIGHT * 0.2, centre + PHOTO_WIDTH * 0.32,
                   y + PHOTO_HEIGHT * 0.5, stroke=0, fill=1)
    canvas.setFillColor(colors.HexColor("#7a7a7a"))
    canvas.setFont(FONT, 5)
    canvas.drawCentredString(centre, y + 2.2 * mm, f"{PHOTO.vi} / {PHOTO.en}")


def _qr(canvas: Canvas, value: str, x: float, y: float, size: float) -> None:
    widget = QrCodeWidget(value, barLevel="M")   # its own 4-module quiet zone included
    left, bottom, right, top = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (right - left), 0, 0, size / (top - bottom), 0, 0])
    drawing.add(widget)
    renderPDF.draw(drawing, canvas, x, y)


def _pair(canvas: Canvas, x: float, y: float, label: Text, value: str, width: float) -> None:
    """"Lớp / Class: 6A1": the label light, the value bold, cut to fit `width`."""
    head = f"{label.vi} / {label.en}: "
    canvas.setFont(FONT, 6)
    canvas.setFillColor(colors.HexColor("#555555"))
    canvas.drawString(x, y, head)
    shown, size = fit_text(value, FONT_BOLD, 8, width - stringWidth(head, FONT, 6), 6)
    canvas.setFont(FONT_BOLD, size)
    canvas.setFillColor(colors.black)
    canvas.drawString(x + stringWidth(head, FONT, 6), y, shown)


def _draw_card(canvas: Canvas, holder: CardHolder, x: float, y: float, school: str,
               photo: ImageReader | None, url: str | None) -> None:
    """One card whose bottom-left corner is (x, y); everything kept 2.5 mm inside the
    edges, so a card cut a little off by hand still looks right."""
    inset = 2.5 * mm
    canvas.saveState()
    canvas.translate(x, y)
    band_bottom, band_height = 43 * mm, 8.5 * mm
    canvas.setFillColor(BAND)
    canvas.roundRect(inset, band_bottom, CARD_WIDTH - 2 * inset, band_height, 1.5 * mm,
                     stroke=0, fill=1)
    canvas.setFillColor(colors.white)
    name, size = fit_text(school.upper(), FONT_BOLD, 6.5, CARD_WIDTH - 2 * inset - 4 * mm, 4.5)
    canvas.setFont(FONT_BOLD, size)
    canvas.drawCentredString(CARD_WIDTH / 2, band_bottom + 5.4 * mm, name)
    title, subtitle = CARD_TITLE.vi, f"  ·  {CARD_TITLE.en}"
    width = stringWidth(title, FONT_BOLD, 8.5) + stringWidth(subtitle, FONT, 6)
    left = (CARD_WIDTH - width) / 2
    canvas.setFont(FONT_BOLD, 8.5)
    canvas.drawString(left, band_bottom + 1.6 * mm, title)
    canvas.setFont(FONT, 6)
    canvas.drawString(left + stringWidth(title, FONT_BOLD, 8.5), band_bottom + 1.6 * mm, subtitle)

    photo_x, photo_y = inset + 1 * mm, 17 * mm
    if photo is None:
        _placeholder(canvas, photo_x, photo_y)
    else:
        canvas.drawImage(photo, photo_x, photo_y, PHOTO_WIDTH, PHOTO_HEIGHT)
        canvas.setStrokeColor(colors.HexColor("#9a9a9a"))
        canvas.setLineWidth(0.4)
        canvas.rect(photo_x, photo_y, PHOTO_WIDTH, PHOTO_HEIGHT, stroke=1, fill=0)

    text_x = photo_x + PHOTO_WIDTH + 3 * mm
    text_width = CARD_WIDTH - inset - text_x
    canvas.setFillColor(colors.black)
    shown, size = fit_text(holder.name, FONT_BOLD, 10, text_width, 6.5)
    canvas.setFont(FONT_BOLD, size)
    canvas.drawString(text_x, 36.5 * mm, shown)
    role = ROLE.get(ReaderKind(holder.kind)) if holder.kind in set(ReaderKind) else None
    if role is None:
        _pair(canvas, text_x, 31.5 * mm, CLASS, holder.class_name or "—", text_width)
    else:
        canvas.setFont(FONT_BOLD, 8)
        canvas.drawString(text_x, 31.5 * mm, f"{role.vi} / {role.en}")
    _pair(canvas, text_x, 27 * mm, CARD_NO, holder.code, text_width)
    if holder.birth_date is not None:
        _pair(canvas, text_x, 22.5 * mm, BORN, holder.birth_date.strftime("%d/%m/%Y"), text_width)

    qr_size = 16 * mm
    bar_right = CARD_WIDTH - inset - (qr_size + 2 * mm if url else 0)
    draw_code128(canvas, holder.code, inset, inset + 1 * mm, bar_right - inset, 10 * mm)
    if url:
        _qr(canvas, url, CARD_WIDTH - inset - qr_size, inset, qr_size)
    canvas.restoreState()


# -- pages -------------------------------------------------------------------------------

def _a4_places() -> list[tuple[float, float]]:
    left = (A4[0] - A4_COLUMNS * CARD_WIDTH) / 2
    top = (A4[1] - A4_ROWS * CARD_HEIGHT) / 2
    return [(left + column * CARD_WIDTH, A4[1] - top - (row + 1) * CARD_HEIGHT)
            for row in range(A4_ROWS) for column in range(A4_COLUMNS)]


def _crop_marks(canvas: Canvas) -> None:
    """Marks in the margins along every cut line; the cards touch, so each line is one cut."""
    left = (A4[0] - A4_COLUMNS * CARD_WIDTH) / 2
    bottom = (A4[1] - A4_ROWS * CARD_HEIGHT) / 2
    right, top = left + A4_COLUMNS * CARD_WIDTH, bottom + A4_ROWS * CARD_HEIGHT
    canvas.setStrokeColor(colors.black)
    canvas.setLineWidth(0.3)
    for column in range(A4_COLUMNS + 1):
        x = left + column * CARD_WIDTH
        canvas.line(x, top + CROP_GAP, x, top + CROP_GAP + CROP_LENGTH)
        canvas.line(x, bottom - CROP_GAP, x, bottom - CROP_GAP - CROP_LENGTH)
    for row in range(A4_ROWS + 1):
        y = bottom + row * CARD_HEIGHT
        canvas.line(left - CROP_GAP, y, left - CROP_GAP - CROP_LENGTH, y)
        canvas.line(right + CROP_GAP, y, right + CROP_GAP + CROP_LENGTH, y)


def render_cards(holders: Sequence[CardHolder], school: str, *, photos_dir: Path | None = None,
                 opac_url: str | None = None, per_page: PerPage = "a4") -> tuple[bytes, CardSheet]:
    """The PDF of the cards of `holders`, and what was printed."""
    if per_page not in ("a4", "cr80"):
        raise CardError(f"Khổ in {per_page!r} không có; dùng a4 hoặc cr80",
                        f"unknown page choice {per_page!r}; use a4 or cr80")
    if opac_url is not None and not opac_url.startswith(("http://", "https://")):
        raise CardError(f"Địa chỉ OPAC phải bắt đầu bằng http:// hoặc https://: {opac_url}",
                        f"the OPAC address must start with http:// or https://: {opac_url}")
    if photos_dir is not None and not photos_dir.is_dir():
        raise CardError(f"Không có thư mục ảnh {photos_dir}", f"no photo folder {photos_dir}")
    if not holders:
        raise CardError("Không có thẻ nào để in", "there are no cards to print")
    register_fonts()
    buffer = io.BytesIO()
    cr80 = per_page == "cr80"
    canvas = Canvas(buffer, pagesize=(CARD_WIDTH, CARD_HEIGHT) if cr80 else A4, pageCompression=1)
    canvas.setTitle(f"{PDF_TITLE.vi} / {PDF_TITLE.en}")
    canvas.setAuthor(school)
    canvas.setCreator("thuvien")
    places = [(0.0, 0.0)] if cr80 else _a4_places()
    problems: list[str] = []
    pages = 0
    for start in range(0, len(holders), len(places)):
        if pages:
            canvas.showPage()
        pages += 1
        if not cr80:
            _crop_marks(canvas)
        for holder, (x, y) in zip(holders[start:start + len(places)], places):
            url = card_url(opac_url, holder.code) if opac_url else None
            _draw_card(canvas, holder, x, y, school, _photo(photos_dir, holder.code, problems), url)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue(), CardSheet(cards=len(holders), pages=pages, photo_problems=problems)


def library_cards_pdf(sessions: sessionmaker[Session], config: ServerConfig,
                      out: Path | str | BinaryIO, *, reader_codes: Sequence[str] | None = None,
                      class_name: str | None = None, kind: str | None = None,
                      photos_dir: Path | str | None = None, opac_url: str | None = None,
                      per_page: PerPage = "a4") -> CardSheet:
    """Print library cards to `out` (a path or a binary file).

    Readers by `reader_codes` (in that order), or by `class_name` and/or `kind`
    (student, teacher, staff). Photos are `photos_dir/<code>.jpg` or `.png`; `opac_url`
    adds the QR code. Raises CardError, writing nothing, when the choice is wrong.
    """
    with sessions() as session:
        holders = choose_readers(session, reader_codes=reader_codes, class_name=class_name,
                                 kind=kind)
    data, sheet = render_cards(holders, config.school_name,
                               photos_dir=Path(photos_dir) if photos_dir is not None else None,
                               opac_url=opac_url, per_page=per_page)
    write_pdf(data, out)
    return sheet
