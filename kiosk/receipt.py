"""The slip a reader takes home: what was borrowed (with due dates) or returned.

Printed on paper, or shown on screen as a QR code. Only the reader's given name goes on
it ("An", not "Nguyễn Văn An", and never a card number): a child may drop it anywhere.

Vietnamese on paper: a raster image, by default.
The cheap 58 and 80 mm printers sold in Vietnam disagree on code pages. TCVN-3 exists on
some (Epson TM models, some Xprinter and Epson-compatible firmwares) but at different
`ESC t` numbers from one firmware to the next, and it splits lower-case and capital
letters across two pages; CP1258 needs combining tone marks, which many firmwares print
as a separate cell beside the letter; others have neither, and print "?" or Chinese.
Nothing in ESC/POS lets a station ask which one it has. A raster image (`GS v 0`) is
printed by every ESC/POS printer, and it carries whatever the font draws: every tone mark
stacked right, in the same font on every printer. The cost is bytes and time: a slip
of one to three books is 22-39 KB on 58 mm paper and 33-53 KB on 80 mm (well under a
second to send over USB or Ethernet, where the print head is the slower part; 2-5 s on
a 115200-baud serial line; 25-55 s at 9600 baud), against under 1 KB as text.
For printers known to have TCVN-3 (a python-escpos profile that declares it, such as
"TM-T20II" or "TM-T88V"), `vietnamese = "tcvn3"` in the printer's config prints the same
lines as text, encoded with python-escpos's TCVN-3 tables (its lower-case page matches
TCVN 5712 VN3; its capitals' page comes from the escpos-printer-db). Neither has been
tried on a printer yet, so raster stays the default. CP1258 is not offered: python-escpos
encodes only the few letters CP1258 has precomposed, and the rest would need the
combining marks that firmwares misplace.

The QR code carries the slip as compact text for now; when the public catalogue has a
page per reader, `Receipt.reader_url` will carry its address and the QR becomes that link.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import segno
from PIL import Image, ImageDraw, ImageFont
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from drivers.printer import PrintResult, ReceiptPrinter
from kiosk.messages import format_date, text

if TYPE_CHECKING:
    from kiosk.session import SessionEnded

log = logging.getLogger("thuvien.kiosk.receipt")

MAX_TITLE = 200  # characters; a longer title is cut with "…"


# --- the receipt -----------------------------------------------------------------------

def _clean(value: str) -> str:
    # NFC, one line, no control characters: nothing from the catalogue reaches a printer
    # as a command, and "e" + combining tone is drawn as one letter.
    value = unicodedata.normalize("NFC", value)
    value = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(value.split())


def _clip(value: str) -> str:
    value = _clean(value)
    return value if len(value) <= MAX_TITLE else value[:MAX_TITLE - 1] + "…"


OneLine = Annotated[str, AfterValidator(_clip)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BorrowedLine(_Model):
    title: OneLine
    accession_number: OneLine
    # None: recorded offline; the library sets the due date when the station replays it.
    due_on: dt.date | None


class ReturnedLine(_Model):
    title: OneLine
    accession_number: OneLine
    was_overdue: bool = False
    days_late: int = Field(default=0, ge=0)
    offline: bool = False  # recorded offline: lateness is known once the library confirms

    @property
    def late(self) -> bool:
        return self.was_overdue or self.days_late > 0


class Receipt(_Model):
    school_name: OneLine
    station: OneLine
    printed_at: dt.datetime
    # The reader's given name only; a full name given here is cut down to its last word.
    given_name: str | None = None
    borrowed: tuple[BorrowedLine, ...] = ()
    returned: tuple[ReturnedLine, ...] = ()
    # The library's reminder at the foot; None: the standard one in the receipt's language.
    footer: str | None = None
    # The reader's page on the public catalogue, when there is one: the QR code links to it.
    reader_url: str | None = None

    @field_validator("given_name")
    @classmethod
    def _given_only(cls, value: str | None) -> str | None:
        words = _clean(value).split() if value else []
        return words[-1][:40] if words else None

    @field_validator("footer")
    @classmethod
    def _footer(cls, value: str | None) -> str | None:
        return _clean(value) if value is not None else None

    @property
    def is_empty(self) -> bool:
        return not self.borrowed and not self.returned

    @classmethod
    def from_session(cls, ended: SessionEnded, *, school_name: str, station: str,
                     printed_at: dt.datetime, reader_name: str | None = None,
                     footer: str | None = None) -> Receipt:
        """The receipt of a session that just ended. `reader_name` is what the screen
        greeted the reader with (the session has already forgotten the reader)."""
        return cls(
            school_name=school_name, station=station, printed_at=printed_at,
            given_name=reader_name, footer=footer,
            # Offline lines know only the code as read: no title, no due date yet.
            borrowed=tuple(BorrowedLine(title=r.title, accession_number=r.item, due_on=r.due)
                           for r in ended.borrowed)
            + tuple(BorrowedLine(title="", accession_number=code, due_on=None)
                    for code in ended.offline_borrowed),
            returned=tuple(ReturnedLine(title=r.title, accession_number=r.item,
                                        was_overdue=r.was_overdue, days_late=max(0, r.days_late))
                           for r in ended.returned)
            + tuple(ReturnedLine(title="", accession_number=code, offline=True)
                    for code in ended.offline_returned))


# --- words -----------------------------------------------------------------------------

# The receipt's own sentences. TODO(gettext): move into the kiosk's catalogue with the rest.
_WORDS: dict[str, dict[str, str]] = {
    "kind.borrow": {"vi": "PHIẾU MƯỢN SÁCH", "en": "BORROWING RECEIPT"},
    "kind.return": {"vi": "PHIẾU TRẢ SÁCH", "en": "RETURN RECEIPT"},
    "kind.both": {"vi": "PHIẾU MƯỢN - TRẢ SÁCH", "en": "LIBRARY RECEIPT"},
    "station": {"vi": "Trạm: {station}", "en": "Station: {station}"},
    "time": {"vi": "Thời gian: {when}", "en": "Time: {when}"},
    "reader": {"vi": "Bạn đọc: {name}", "en": "Reader: {name}"},
    "accession": {"vi": "Số ĐKCB: {number}", "en": "Accession no.: {number}"},
    "due": {"vi": "Hạn trả: {due}", "en": "Due: {due}"},
    "offline_due": {"vi": "Ghi nhận ngoại tuyến – thư viện sẽ đặt hạn trả",
                    "en": "Recorded offline – the library will set the due date"},
    "offline_return": {"vi": "Ghi nhận ngoại tuyến – thư viện sẽ xác nhận",
                       "en": "Recorded offline – the library will confirm"},
    "on_time": {"vi": "Trả đúng hạn", "en": "Returned on time"},
    "late": {"vi": "Trả muộn", "en": "Returned late"},
    "late_days": {"vi": "Trả muộn {days} ngày", "en": "Returned {days} days late"},
    "footer": {
        "vi": "Nhớ trả sách đúng hạn và giữ sách sạch đẹp nhé! Cảm ơn bạn.",
        "en": "Please return books on time and keep them clean. Thank you!",
    },
    "qr.borrowed": {"vi": "Mượn {n} cuốn:", "en": "Borrowed {n}:"},
    "qr.returned": {"vi": "Trả {n} cuốn:", "en": "Returned {n}:"},
    "qr.due": {"vi": "hạn {due}", "en": "due {due}"},
    "untitled": {"vi": "(không rõ tên sách)", "en": "(untitled)"},
}


def _w(key: str, language: str, **fields: object) -> str:
    table = _WORDS[key]
    return table.get(language, table["vi"]).format(**fields)


# --- lines -----------------------------------------------------------------------------

Style = Literal["title", "heading", "body", "strong", "detail", "small", "rule", "gap"]
RULE = "-" * 32


@dataclass(frozen=True)
class _Line:
    text: str
    style: Style = "body"
    indent: bool = False  # under a numbered title
    number: str = ""      # "2. " before a title; a title that wraps stays clear of it

    @property
    def centered(self) -> bool:
        return self.style in ("title", "heading", "small")


def _layout(receipt: Receipt, language: str) -> list[_Line]:
    kind = ("kind.both" if receipt.borrowed and receipt.returned
            else "kind.return" if receipt.returned else "kind.borrow")
    when = f"{format_date(receipt.printed_at.date())} {receipt.printed_at:%H:%M}"
    lines = [_Line(receipt.school_name, "title"), _Line(_w(kind, language), "heading"), _Line("", "gap"),
             _Line(_w("station", language, station=receipt.station)),
             _Line(_w("time", language, when=when))]
    if receipt.given_name:
        lines.append(_Line(_w("reader", language, name=receipt.given_name)))
    if receipt.borrowed:
        lines += [_Line(RULE, "rule"),
                  _Line(text("summary.borrowed", language, n=len(receipt.borrowed)), "strong")]
        for i, b in enumerate(receipt.borrowed, 1):
            lines += [_Line("", "gap"), _Line(b.title or _w("untitled", language), number=f"{i}. "),
                      _Line(_w("accession", language, number=b.accession_number), "detail", True),
                      _Line(_due(b, language), "strong", True)]
    if receipt.returned:
        lines += [_Line(RULE, "rule"),
                  _Line(text("summary.returned", language, n=len(receipt.returned)), "strong")]
        for i, r in enumerate(receipt.returned, 1):
            late = _lateness(r, language)
            lines += [_Line("", "gap"), _Line(r.title or _w("untitled", language), number=f"{i}. "),
                      _Line(_w("accession", language, number=r.accession_number), "detail", True),
                      _Line(late, "strong" if r.late else "detail", True)]
    lines += [_Line(RULE, "rule"), _Line(receipt.footer or _w("footer", language), "small")]
    return lines


def render_lines(receipt: Receipt, language: str = "vi") -> list[str]:
    """The receipt's text, one logical line each (not wrapped), as printed."""
    return [("   " if line.indent else "") + line.number + line.text
            for line in _layout(receipt, language) if line.style != "gap"]


def render_text(receipt: Receipt, language: str, columns: int) -> list[str]:
    """The receipt as lines of at most `columns` characters, for a printer's own font."""
    out: list[str] = []
    for line in _layout(receipt, language):
        if line.style == "gap":
            continue
        if line.style == "rule":
            out.append("-" * columns)
            continue
        indent = "   " if line.indent else ""
        wrapped = textwrap.wrap(line.text, columns, initial_indent=indent + line.number,
                                subsequent_indent=indent + " " * len(line.number),
                                break_long_words=True, break_on_hyphens=False) or [""]
        out += [w.center(columns).rstrip() if line.centered else w for w in wrapped]
    return out


# --- the image -------------------------------------------------------------------------

class FontNotFound(RuntimeError):
    pass


# Fonts with every Vietnamese letter, by Debian package; the first one found is used.
FONT_FILES: tuple[tuple[str, str], ...] = (
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),                 # fonts-dejavu-core
    ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),             # fonts-noto-core
    ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),  # fonts-liberation2
    ("FreeSans.ttf", "FreeSansBold.ttf"),                      # fonts-freefont-ttf
)
DEFAULT_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FONT_DIRS: tuple[Path, ...] = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"),
                               Path.home() / ".local/share/fonts")


@functools.cache
def find_fonts() -> tuple[Path, Path]:
    """(regular, bold) font files with full Vietnamese coverage."""
    if DEFAULT_FONT.is_file() and DEFAULT_FONT.with_name("DejaVuSans-Bold.ttf").is_file():
        return DEFAULT_FONT, DEFAULT_FONT.with_name("DejaVuSans-Bold.ttf")
    for regular, bold in FONT_FILES:
        for folder in FONT_DIRS:
            found = next(folder.rglob(regular), None) if folder.is_dir() else None
            if found is not None:
                bold_path = next(folder.rglob(bold), None)
                return found, bold_path or found
    raise FontNotFound(
        "no font with Vietnamese letters found for receipts: install Debian's fonts-dejavu-core "
        f"({DEFAULT_FONT}); also accepted: " + ", ".join(r for r, _ in FONT_FILES[1:]))


# Sizes in dots (203 dpi: 24 dots is 3 mm, the size of the printers' own Font A).
_SIZES: dict[Style, tuple[int, bool]] = {
    "title": (30, True), "heading": (26, True), "body": (24, False), "strong": (24, True),
    "detail": (22, False), "small": (21, False), "rule": (24, False), "gap": (12, False),
}
MARGIN = 8     # dots left and right
LEADING = 4    # dots between lines


@functools.cache
def _font(size: int, bold: bool) -> ImageFont.FreeTypeFont:
    regular, bold_path = find_fonts()
    return ImageFont.truetype(str(bold_path if bold else regular), size)


def _wrap(words: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in words.split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        # A word wider than the paper (a long code) is broken where it must be.
        while len(word) > 1 and font.getlength(word) > width:
            cut = 1
            while cut < len(word) - 1 and font.getlength(word[:cut + 1]) <= width:
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    lines.append(current)
    return lines


def render_image(receipt: Receipt, language: str, width_dots: int) -> Image.Image:
    """The receipt drawn black on white, 1 bit per dot, `width_dots` wide."""
    if width_dots < 2 * MARGIN + 96:
        raise ValueError(f"{width_dots} dots is too narrow for a receipt")
    # A title's details line up with its text, after the number.
    indent = round(_font(*_SIZES["body"]).getlength("0. "))
    rows: list[tuple[int, str | None, ImageFont.FreeTypeFont, int, bool]] = []  # (x, text, font, h, centered)
    for line in _layout(receipt, language):
        size, bold = _SIZES[line.style]
        font = _font(size, bold)
        if line.style == "gap":
            rows.append((MARGIN, "", font, size, False))
            continue
        ascent, descent = font.getmetrics()
        # Room above for stacked marks on capitals (Ấ, Ễ), which rise over the ascender.
        height = ascent + descent + max(0, -font.getbbox("ẤỄỖ")[1]) + LEADING
        if line.style == "rule":
            rows.append((MARGIN, None, font, height // 2, False))
            continue
        x = MARGIN + (indent if line.indent else 0)
        if line.number:
            rows.append((x, line.number, font, 0, False))  # drawn on the title's first row
            x += round(font.getlength(line.number))
        for part in _wrap(line.text, font, width_dots - x - MARGIN):
            rows.append((x, part, font, height, line.centered))
    image = Image.new("L", (width_dots, sum(r[3] for r in rows) + 2 * MARGIN), 255)
    draw = ImageDraw.Draw(image)
    y = MARGIN
    for x, part, font, height, centered in rows:
        if part is None:
            draw.rectangle((MARGIN, y + height // 2 - 1, width_dots - MARGIN - 1, y + height // 2), fill=0)
        elif part:
            if centered:
                x = max(MARGIN, (width_dots - round(font.getlength(part))) // 2)
            ascent, descent = font.getmetrics()
            line_height = height or ascent + descent + max(0, -font.getbbox("ẤỄỖ")[1]) + LEADING
            draw.text((x, y + line_height - LEADING - descent), part, font=font, fill=0, anchor="ls")
        y += height
    # A hard threshold, not dithering: grey edges of letters become ink or paper.
    return image.point(lambda v: 0 if v < 160 else 255, mode="1")


# --- the QR code ------------------------------------------------------------------------

def _due(line: BorrowedLine, language: str) -> str:
    if line.due_on is None:
        return _w("offline_due", language)
    return _w("due", language, due=format_date(line.due_on))


def _lateness(line: ReturnedLine, language: str) -> str:
    if line.offline:
        return _w("offline_return", language)
    if line.days_late:
        return _w("late_days", language, days=line.days_late)
    return _w("late", language) if line.late else _w("on_time", language)


def qr_payload(receipt: Receipt, language: str = "vi") -> str:
    """What the on-screen QR code carries: the reader's catalogue page once there is one,
    until then the receipt as compact text (titles, numbers, due dates). No name."""
    if receipt.reader_url:
        return receipt.reader_url
    when = f"{format_date(receipt.printed_at.date())} {receipt.printed_at:%H:%M}"
    lines = [f"{receipt.school_name} · {receipt.station} · {when}"]
    if receipt.borrowed:
        lines.append(_w("qr.borrowed", language, n=len(receipt.borrowed)))
        lines += [f"{b.title or _w('untitled', language)} · {b.accession_number} · "
                  + (_w("qr.due", language, due=format_date(b.due_on)) if b.due_on
                     else _w("offline_due", language))
                  for b in receipt.borrowed]
    if receipt.returned:
        lines.append(_w("qr.returned", language, n=len(receipt.returned)))
        for r in receipt.returned:
            lines.append(f"{r.title or _w('untitled', language)} · {r.accession_number} · "
                         f"{_lateness(r, language)}")
    return "\n".join(lines)


def qr_png(receipt: Receipt, scale: int = 4, language: str = "vi") -> bytes:
    """The QR code of `qr_payload` as a PNG, `scale` pixels per module, with its quiet zone."""
    code = segno.make(qr_payload(receipt, language), error="m", micro=False)
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=max(1, int(scale)), border=4)
    return buffer.getvalue()


# --- printing ----------------------------------------------------------------------------

def print_receipt(printer: ReceiptPrinter | None, receipt: Receipt,
                  language: str = "vi") -> PrintResult:
    """Print `receipt`; every problem is a result, never an exception. Blocks while the
    printer works: call from a worker thread."""
    if printer is None:
        return PrintResult.failed("not_found", "no receipt printer is configured")
    if not isinstance(receipt, Receipt):
        return PrintResult.failed("bad_job", f"not a receipt: {type(receipt).__name__}")
    if receipt.is_empty:
        return PrintResult.failed("empty", "the receipt lists no book")
    try:
        if printer.config.vietnamese == "tcvn3":
            return printer.print_text(render_text(receipt, language, printer.columns))
        image = render_image(receipt, language, printer.width_dots)
    except FontNotFound as exc:
        log.error("%s", exc)
        return PrintResult.failed("bad_job", str(exc))
    except Exception as exc:  # a receipt that cannot be drawn must not stop the kiosk
        log.exception("receipt could not be rendered")
        return PrintResult.failed("bad_job", f"the receipt could not be rendered: {exc}")
    return printer.print_image(image)
