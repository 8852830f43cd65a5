"""Receipts: the escpos Dummy's bytes decode to the expected receipt, the text carries
Vietnamese and dd/mm/yyyy dates, the QR code decodes to its payload, and nothing a
child does or a printer suffers raises into the kiosk."""

from __future__ import annotations

import datetime as dt
import io
import unicodedata

import pytest
from PIL import Image, ImageChops
from pyzbar import pyzbar

from drivers.printer import FilePrinter, FilePrinterConfig, SimulatedPrinter, SimulatedPrinterConfig
from escpos_reader import read_job
from kiosk import receipt as receipt_module
from kiosk.receipt import (
    BorrowedLine,
    Receipt,
    print_receipt,
    qr_payload,
    qr_png,
    render_image,
    render_lines,
    render_text,
)
from kiosk.session import SessionEnded
from protocol import CheckoutResult, ReturnResult

AT = dt.datetime(2026, 9, 12, 9, 5)
SCHOOL = "Thư viện Trường Tiểu học Nguyễn Du"


def ended_borrowing() -> SessionEnded:
    return SessionEnded(reason="done", mode="borrow", borrowed=(
        CheckoutResult(item="TV-000123", title="Dế Mèn phiêu lưu ký", due=dt.date(2026, 9, 19)),
        CheckoutResult(item="TV-004567", title="Truyện cổ tích Việt Nam: Sự tích cây vú sữa",
                       due=dt.date(2026, 9, 19)),
        CheckoutResult(item="TV-000777", title="ĐƯỜNG LÊN ĐỈNH Ô-LYM-PI-A", due=dt.date(2026, 10, 3)),
    ))


def expected_borrowing() -> Receipt:
    """What the session above must print, written out by hand."""
    return Receipt(
        school_name=SCHOOL, station="kiosk-1", printed_at=AT, given_name="An",
        borrowed=(
            BorrowedLine(title="Dế Mèn phiêu lưu ký", accession_number="TV-000123", due_on=dt.date(2026, 9, 19)),
            BorrowedLine(title="Truyện cổ tích Việt Nam: Sự tích cây vú sữa", accession_number="TV-004567",
                         due_on=dt.date(2026, 9, 19)),
            BorrowedLine(title="ĐƯỜNG LÊN ĐỈNH Ô-LYM-PI-A", accession_number="TV-000777",
                         due_on=dt.date(2026, 10, 3)),
        ))


def borrowing() -> Receipt:
    return Receipt.from_session(ended_borrowing(), school_name=SCHOOL, station="kiosk-1", printed_at=AT,
                                reader_name="Nguyễn Văn An")


def returning() -> Receipt:
    ended = SessionEnded(reason="done", mode="return", returned=(
        ReturnResult(item="TV-000045", title="Tắt đèn", was_overdue=True, days_late=3),
        ReturnResult(item="TV-000046", title="Ấu thơ tươi đẹp", was_overdue=False, days_late=0),
    ))
    return Receipt.from_session(ended, school_name=SCHOOL, station="kiosk-2", printed_at=AT)


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a.convert("L"), b.convert("L")).getbbox() is None


# --- on paper: raster ------------------------------------------------------------------

@pytest.mark.parametrize(("mm", "dots"), [(58, 384), (80, 576)])
def test_the_dummy_printers_bytes_decode_to_the_expected_receipt(mm: int, dots: int) -> None:
    printer = SimulatedPrinter(SimulatedPrinterConfig(paper_width_mm=mm))
    result = print_receipt(printer, borrowing(), "vi")
    assert result.ok, result
    assert printer.state == "ok"

    job = read_job(printer.output)
    assert job.names[0] == "init" and job.names[-2:] == ["feed", "cut"]
    assert set(job.names[1:-2]) == {"raster"}
    assert {band.width for band in job.bands} == {dots}        # 48 or 72 bytes a row
    assert all(band.height <= 256 for band in job.bands)
    assert job.text == []                                      # nothing but the picture

    printed = job.bitmap()
    assert same_pixels(printed, render_image(expected_borrowing(), "vi", dots))
    # The comparison can fail: one day's difference in one due date shows.
    other = expected_borrowing().model_copy(update={"borrowed": expected_borrowing().borrowed[:2] + (
        BorrowedLine(title="ĐƯỜNG LÊN ĐỈNH Ô-LYM-PI-A", accession_number="TV-000777",
                     due_on=dt.date(2026, 10, 4)),)})
    assert not same_pixels(printed, render_image(other, "vi", dots))
    # And so does the language.
    assert not same_pixels(printed, render_image(expected_borrowing(), "en", dots))


def test_the_image_is_one_bit_with_ink_on_paper() -> None:
    image = render_image(borrowing(), "vi", 384)
    assert image.mode == "1" and image.width == 384
    ink = image.histogram()[0] / (image.width * image.height)
    assert 0.03 < ink < 0.3  # text, neither blank nor a black slab
    # A white margin all round: nothing is cut at the paper's edge.
    for box in ((0, 0, 384, 8), (0, image.height - 8, 384, image.height), (0, 0, 6, image.height),
                (378, 0, 384, image.height)):
        assert image.crop(box).histogram()[0] == 0, box


def test_a_longer_receipt_is_a_taller_picture_not_a_wider_one() -> None:
    short = render_image(returning(), "vi", 384)
    long = render_image(borrowing(), "vi", 384)
    assert short.width == long.width == 384 and long.height > short.height


# --- the text --------------------------------------------------------------------------

def test_the_lines_carry_vietnamese_titles_and_due_dates() -> None:
    lines = render_lines(borrowing(), "vi")
    assert lines[:2] == [SCHOOL, "PHIẾU MƯỢN SÁCH"]
    assert "Thời gian: 12/09/2026 09:05" in lines
    assert "Lần này đã mượn 3 cuốn:" in lines
    assert lines[lines.index("1. Dế Mèn phiêu lưu ký") + 1:][:2] == ["   Số ĐKCB: TV-000123",
                                                                      "   Hạn trả: 19/09/2026"]
    assert "3. ĐƯỜNG LÊN ĐỈNH Ô-LYM-PI-A" in lines
    assert "   Hạn trả: 03/10/2026" in lines
    assert all(unicodedata.is_normalized("NFC", line) for line in lines)
    assert lines[-1] == "Nhớ trả sách đúng hạn và giữ sách sạch đẹp nhé! Cảm ơn bạn."


def test_only_the_given_name_goes_on_paper() -> None:
    lines = render_lines(borrowing(), "vi")
    assert "Bạn đọc: An" in lines
    text = "\n".join(lines) + qr_payload(borrowing())
    assert "Nguyễn Văn" not in text and "Văn" not in text
    assert "An" not in qr_payload(borrowing()).split()  # not even the given name in the QR
    assert Receipt(school_name="x", station="y", printed_at=AT, given_name="  ").given_name is None


def test_offline_lines_say_the_library_will_confirm() -> None:
    ended = SessionEnded(reason="done", mode="borrow", borrowed=ended_borrowing().borrowed[:1],
                         offline_borrowed=("TN00204",), offline_returned=("TK00387",))
    receipt = Receipt.from_session(ended, school_name=SCHOOL, station="kiosk-1", printed_at=AT)
    lines = render_lines(receipt, "vi")
    assert "Lần này đã mượn 2 cuốn:" in lines
    assert lines[lines.index("2. (không rõ tên sách)") + 1:][:2] == [
        "   Số ĐKCB: TN00204", "   Ghi nhận ngoại tuyến – thư viện sẽ đặt hạn trả"]
    assert "   Ghi nhận ngoại tuyến – thư viện sẽ xác nhận" in lines
    payload = qr_payload(receipt, "en")
    assert "TN00204 · Recorded offline – the library will set the due date" in payload
    assert "TK00387 · Recorded offline – the library will confirm" in payload


def test_return_lines_say_late_or_not() -> None:
    lines = render_lines(returning(), "vi")
    assert lines[1] == "PHIẾU TRẢ SÁCH"
    assert not any(line.startswith("Bạn đọc") for line in lines)  # returns need no card
    assert "Đã trả 2 cuốn. Cảm ơn!" in lines
    assert lines[lines.index("1. Tắt đèn") + 2] == "   Trả muộn 3 ngày"
    assert lines[lines.index("2. Ấu thơ tươi đẹp") + 2] == "   Trả đúng hạn"
    english = render_lines(returning(), "en")
    assert "   Returned 3 days late" in english and "RETURN RECEIPT" in english


def test_text_for_a_printers_own_font_fits_its_columns() -> None:
    for columns in (32, 48):
        lines = render_text(borrowing(), "vi", columns)
        assert all(len(line) <= columns for line in lines)
        assert "-" * columns in lines
        assert "   Hạn trả: 19/09/2026" in lines
        # A wrapped title keeps clear of its number.
        assert any(line.startswith("2. Truyện cổ tích") for line in lines)


# --- on paper: TCVN-3 text --------------------------------------------------------------

# TCVN 5712:1993 VN3, written out here from the standard: lower case with tones...
_VN3 = {0xA8: "ă", 0xA9: "â", 0xAA: "ê", 0xAB: "ô", 0xAC: "ơ", 0xAD: "ư", 0xAE: "đ"}
for _start, _letters in ((0xB5, "àảãáạ"), (0xBB, "ằẳẵắ"), (0xC6, "ặầẩẫấậè"), (0xCE, "ẻẽéẹềểễếệìỉ"),
                         (0xDC, "ĩíịò"), (0xE1, "ỏõóọồổỗốộờởỡớợù"), (0xF1, "ủũúụừửữứựỳỷỹýỵ")):
    _VN3.update({_start + i: ch for i, ch in enumerate(_letters)})
# ...and the capitals' page: the same places in upper case, plus VN3's own Ă Â ... Đ.
_VN3_CAPITALS = {code: ch.upper() for code, ch in _VN3.items()} | {0xA1: "Ă", 0xA2: "Â", 0xA7: "Đ"}


def decode_tcvn3(chunks: list[tuple[int | None, bytes]]) -> list[str]:
    out, line = [], ""
    for page, data in chunks:
        table = {30: _VN3, 31: _VN3_CAPITALS}.get(page, {})
        for b in data:
            if b == 0x0A:
                out.append(line)
                line = ""
            else:
                line += chr(b) if b < 0x80 else table[b]
    assert line == ""
    return out


def test_tcvn3_text_mode_prints_the_lines_in_the_tcvn3_pages() -> None:
    printer = SimulatedPrinter(SimulatedPrinterConfig(paper_width_mm=80, profile="TM-T20II", vietnamese="tcvn3"))
    result = print_receipt(printer, borrowing(), "vi")
    assert result.ok, result
    job = read_job(printer.output)
    assert job.bands == []
    assert job.names[0] == "init" and job.names[-2:] == ["feed", "cut"]
    assert {arg for name, arg in job.commands if name == "codepage"} == {30, 31}
    assert decode_tcvn3(job.text) == render_text(borrowing(), "vi", 48)
    assert result.bytes_sent < 2000  # against tens of KB for the picture


# --- the QR code -----------------------------------------------------------------------

@pytest.mark.parametrize("make", [borrowing, returning])
def test_the_qr_png_decodes_back_to_the_payload(make) -> None:  # type: ignore[no-untyped-def]
    receipt = make()
    png = qr_png(receipt, scale=4)
    assert png.startswith(b"\x89PNG")
    decoded = pyzbar.decode(Image.open(io.BytesIO(png)), symbols=[pyzbar.ZBarSymbol.QRCODE])
    assert [d.data.decode("utf-8") for d in decoded] == [qr_payload(receipt)]


def test_the_qr_payload_is_compact_text_with_due_dates() -> None:
    payload = qr_payload(borrowing())
    assert payload.splitlines() == [
        f"{SCHOOL} · kiosk-1 · 12/09/2026 09:05",
        "Mượn 3 cuốn:",
        "Dế Mèn phiêu lưu ký · TV-000123 · hạn 19/09/2026",
        "Truyện cổ tích Việt Nam: Sự tích cây vú sữa · TV-004567 · hạn 19/09/2026",
        "ĐƯỜNG LÊN ĐỈNH Ô-LYM-PI-A · TV-000777 · hạn 03/10/2026",
    ]
    assert qr_payload(returning()).splitlines()[-2:] == ["Tắt đèn · TV-000045 · Trả muộn 3 ngày",
                                                         "Ấu thơ tươi đẹp · TV-000046 · Trả đúng hạn"]


def test_a_reader_page_becomes_the_qr_payload() -> None:
    url = "https://thuvien.example.edu.vn/ban-doc/abc123"
    receipt = borrowing().model_copy(update={"reader_url": url})
    assert qr_payload(receipt) == url
    decoded = pyzbar.decode(Image.open(io.BytesIO(qr_png(receipt, scale=3))))
    assert decoded[0].data.decode() == url


# --- nothing raises --------------------------------------------------------------------

def test_an_empty_receipt_prints_nothing() -> None:
    printer = SimulatedPrinter()
    empty = Receipt.from_session(SessionEnded(reason="timeout", mode="borrow"),
                                 school_name=SCHOOL, station="kiosk-1", printed_at=AT)
    result = print_receipt(printer, empty)
    assert (result.ok, result.error) == (False, "empty")
    assert printer.jobs == [] and printer.state == "absent"


@pytest.mark.parametrize("junk", [None, "Dế Mèn", {"school_name": SCHOOL}, 42])
def test_junk_instead_of_a_receipt_is_a_result(junk: object) -> None:
    printer = SimulatedPrinter()
    result = print_receipt(printer, junk)  # type: ignore[arg-type]
    assert (result.ok, result.error) == (False, "bad_job")
    assert "not a receipt" in result.detail
    assert printer.jobs == []


def test_junk_in_a_receipt_is_cleaned_not_printed() -> None:
    receipt = Receipt(
        school_name="Thư viện\n\x1b@", station="kiosk-1\t", printed_at=AT,
        borrowed=(BorrowedLine(title="Cu\u0301c \x1bd\x05 ca\u0302\u0301y " + "rất " * 200 + "🐉",
                               accession_number="TV-1\r\n", due_on=dt.date(2026, 9, 19)),
                  BorrowedLine(title="", accession_number="TV-2", due_on=dt.date(2026, 9, 19))))
    lines = render_lines(receipt, "vi")
    assert lines[0] == "Thư viện @"
    assert all(ch.isprintable() for line in lines for ch in line)
    assert lines[lines.index("   Số ĐKCB: TV-1") - 1].startswith("1. Cúc d cấy rất")  # composed, no ESC
    assert len(receipt.borrowed[0].title) == receipt_module.MAX_TITLE
    assert "2. (không rõ tên sách)" in lines
    for printer in (SimulatedPrinter(),
                    SimulatedPrinter(SimulatedPrinterConfig(profile="TM-T88V", vietnamese="tcvn3"))):
        assert print_receipt(printer, receipt).ok
        read_job(printer.output)  # only the commands a receipt uses: no ESC from a title


def test_no_printer_configured_is_a_result() -> None:
    result = print_receipt(None, borrowing())
    assert (result.ok, result.error) == (False, "not_found")


def test_an_absent_printer_is_a_result_and_a_fault(tmp_path) -> None:
    printer = FilePrinter(FilePrinterConfig(path=str(tmp_path / "usb" / "lp0"), paper_width_mm=58))
    result = print_receipt(printer, borrowing())
    assert (result.ok, result.error, printer.state) == (False, "not_found", "fault")


def test_a_printer_fault_is_a_result_and_sets_state_fault() -> None:
    printer = SimulatedPrinter()
    printer.inject_fault("io", "paper jam")
    result = print_receipt(printer, borrowing())
    assert (result.ok, result.error, printer.state) == (False, "io", "fault")
    assert "paper jam" in result.detail
    printer.clear_fault()
    assert print_receipt(printer, borrowing()).ok and printer.state == "ok"


def test_a_missing_font_is_a_clear_result(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(receipt_module, "DEFAULT_FONT", tmp_path / "DejaVuSans.ttf")
    monkeypatch.setattr(receipt_module, "FONT_DIRS", (tmp_path,))
    receipt_module.find_fonts.cache_clear()
    receipt_module._font.cache_clear()
    try:
        printer = SimulatedPrinter()
        result = print_receipt(printer, borrowing())
        assert (result.ok, result.error) == (False, "bad_job")
        assert "fonts-dejavu-core" in result.detail
        assert printer.jobs == []
    finally:
        receipt_module.find_fonts.cache_clear()
        receipt_module._font.cache_clear()


def test_a_fallback_font_is_found_by_name(monkeypatch, tmp_path) -> None:
    # Where DejaVu is not at Debian's path, the same file anywhere under the font folders will do.
    nested = tmp_path / "truetype" / "other"
    nested.mkdir(parents=True)
    source = receipt_module.DEFAULT_FONT
    (nested / "DejaVuSans.ttf").write_bytes(source.read_bytes())
    monkeypatch.setattr(receipt_module, "DEFAULT_FONT", tmp_path / "nowhere" / "DejaVuSans.ttf")
    monkeypatch.setattr(receipt_module, "FONT_DIRS", (tmp_path,))
    receipt_module.find_fonts.cache_clear()
    receipt_module._font.cache_clear()
    try:
        regular, bold = receipt_module.find_fonts()
        assert regular == nested / "DejaVuSans.ttf" and bold == regular  # no bold there: regular
        assert render_image(returning(), "vi", 384).width == 384
    finally:
        receipt_module.find_fonts.cache_clear()
        receipt_module._font.cache_clear()
