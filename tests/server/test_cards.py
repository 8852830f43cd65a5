"""Library cards for the demo school's readers: real SQLite, real PDFs read back with
pdftotext and pdfinfo, pages rendered at 300 dpi and their barcodes and QR codes decoded
with pyzbar; the QR code's address opened on the real OPAC app."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from server.config import ServerConfig
from server.models import Reader, ReaderStatus
from server.reports.cards import CardError, card_url, library_cards_pdf
from server.web.app import build_app
from server.web.config import WebConfig
from server.web.context import WebContext
from test_labels import (  # noqa: F401  (fixtures shared with the label tests)
    _cli,
    _demo_file,
    config,
    demo,
    page_count,
    page_text,
    scanned,
    sessions,
)

OPAC = "http://thuvien.thcs-nhut-tao.edu.vn"
CODE = re.compile(r"\b(?:HS-\d{4}-\d{4}|GV-\d{4}|CB-\d{4})\b")
MM = 300 / 25.4   # pixels per millimetre at 300 dpi


def readers(sessions: sessionmaker[Session], **where: str) -> dict[str, str]:
    with sessions() as session:
        query = select(Reader.code, Reader.name).filter_by(**where)
        return {code: name for code, name in session.execute(query)}


def test_a4_sheets_of_a_class_scan_and_carry_the_qr_code(
        sessions: sessionmaker[Session], config: ServerConfig, tmp_path: Path) -> None:
    out = tmp_path / "6a1.pdf"
    sheet = library_cards_pdf(sessions, config, out, class_name="6a1", opac_url=OPAC + "/")
    students = readers(sessions, class_name="6A1")
    assert len(students) == 20 and sheet.cards == 20 and sheet.pages == 2 and page_count(out) == 2

    first, second = page_text(out, 1), page_text(out, 2)
    on_first, on_second = CODE.findall(first), CODE.findall(second)
    assert len(on_first) == 10 and len(on_second) == 10
    assert sorted(on_first + on_second) == sorted(students)
    for code in on_first:
        assert students[code] in first                       # the Vietnamese name
    assert first.count("THẺ THƯ VIỆN") == 10 and first.count("LIBRARY CARD") == 10
    assert first.count("TRƯỜNG THCS NHỰT TẢO") == 10 and first.count("6A1") == 10
    assert first.count("Ảnh 3x4 / Photo") == 10              # no photos: the empty frame

    codes = scanned(out, 1, tmp_path)
    bars = sorted(code.data.decode() for code in codes if code.type == "CODE128")
    links = sorted(code.data.decode() for code in codes if code.type == "QRCODE")
    assert bars == sorted(on_first)
    assert links == sorted(f"{OPAC}/ban-doc?card={code}" for code in on_first)

    # Crop marks in the margins along each cut line, and nothing between them.
    page = Image.open(tmp_path / "page1.png").convert("L")
    left_edge, top_edge = (210 - 2 * 85.6) / 2, (297 - 5 * 54) / 2

    def darkest(x_mm: tuple[float, float], y_mm: tuple[float, float]) -> int:
        box = (round(x_mm[0] * MM), round(y_mm[0] * MM), round(x_mm[1] * MM), round(y_mm[1] * MM))
        return int(page.crop(box).getextrema()[0])

    for row in range(6):
        y = top_edge + row * 54
        assert darkest((left_edge - 6, left_edge - 3), (y - 0.3, y + 0.3)) < 100
        assert darkest((210 - left_edge + 3, 210 - left_edge + 6), (y - 0.3, y + 0.3)) < 100
        if row < 5:   # beside a card, between two marks: blank
            assert darkest((3, left_edge - 1), (y + 5, y + 49)) == 255
    for column in range(3):
        x = left_edge + column * 85.6
        assert darkest((x - 0.3, x + 0.3), (top_edge - 6, top_edge - 3)) < 100
        assert darkest((x - 0.3, x + 0.3), (297 - top_edge + 3, 297 - top_edge + 6)) < 100


def test_cr80_pages_for_a_card_printer(sessions: sessionmaker[Session], config: ServerConfig,
                                       tmp_path: Path) -> None:
    out = tmp_path / "cards.pdf"
    sheet = library_cards_pdf(sessions, config, out, reader_codes=["gv-0001", "HS-2026-0005"],
                              opac_url=OPAC, per_page="cr80")
    assert (sheet.cards, sheet.pages) == (2, 2)
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True, check=True).stdout
    width, height = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info).groups())  # type: ignore[union-attr]
    assert abs(width / 72 * 25.4 - 85.6) < 0.05 and abs(height / 72 * 25.4 - 54.0) < 0.05
    teacher = page_text(out, 1)
    assert "Giáo viên / Teacher" in teacher and "GV-0001" in teacher and "Lớp" not in teacher
    assert readers(sessions, code="GV-0001")["GV-0001"] in teacher
    assert "Lớp / Class:" in page_text(out, 2)
    codes = {code.type: code.data.decode() for code in scanned(out, 1, tmp_path)}
    assert codes == {"CODE128": "GV-0001", "QRCODE": f"{OPAC}/ban-doc?card=GV-0001"}


def test_the_qr_code_opens_the_opac_sign_in_page(
        demo: tuple[str, sessionmaker[Session]], config: ServerConfig) -> None:
    _, sessions = demo
    context = WebContext(config=config, web=WebConfig(), sessions=sessions,
                         engine=sessions.kw["bind"])
    link = card_url("http://thuvien.local", "HS-2026-0001")
    path = link.removeprefix("http://thuvien.local")
    page = TestClient(build_app(context), follow_redirects=False).get(path)
    assert page.status_code == 200
    assert 'name="card"' in page.text and 'name="pin"' in page.text
    # The card number comes filled in: a student types only the PIN.
    assert 'value="HS-2026-0001"' in page.text


def test_photos_and_the_frame_for_readers_without_one(
        sessions: sessionmaker[Session], config: ServerConfig, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (900, 1200), (30, 120, 200)).save(photos / "HS-2026-0001.jpg")
    (photos / "HS-2026-0002.png").write_bytes(b"not a picture")
    out = tmp_path / "cards.pdf"
    sheet = library_cards_pdf(sessions, config, out, photos_dir=photos,
                              reader_codes=["HS-2026-0001", "HS-2026-0002", "HS-2026-0003"])
    assert sheet.cards == 3 and sheet.photo_problems == [str(photos / "HS-2026-0002.png")]
    assert page_text(out, 1).count("Ảnh 3x4 / Photo") == 2
    images = subprocess.run(["pdfimages", "-list", str(out)], capture_output=True, text=True,
                            check=True).stdout.splitlines()[2:]
    assert len(images) == 1
    width, height = map(int, images[0].split()[3:5])
    assert (width, height) == (213, 283)                      # 18 x 24 mm at 300 dpi, not 900 x 1200
    # The photo is where the first card's frame is: top-left card, left of the text.
    scanned(out, 1, tmp_path)
    page = Image.open(tmp_path / "page1.png").convert("RGB")
    left, top = (210 - 2 * 85.6) / 2, (297 - 5 * 54) / 2
    r, g, b = page.getpixel((round((left + 12.5) * MM), round((top + 25) * MM)))
    assert b > 150 and r < 80


def test_refusals_write_nothing(sessions: sessionmaker[Session], config: ServerConfig,
                                tmp_path: Path) -> None:
    assert "HS-2026-0007" in readers(sessions, class_name="6A1")
    with sessions.begin() as session:
        session.execute(update(Reader).where(Reader.code == "HS-2026-0007")
                        .values(status=ReaderStatus.INACTIVE))
    out = tmp_path / "cards.pdf"
    with pytest.raises(CardError) as unknown:
        library_cards_pdf(sessions, config, out, reader_codes=["HS-2026-0001", "HS-1999-0001"])
    assert unknown.value.message_vi == "Không có bạn đọc với số thẻ: HS-1999-0001"
    assert unknown.value.message_en == "no reader with card number: HS-1999-0001"
    refusals = [
        dict(reader_codes=["HS-2026-0007"]), dict(class_name="6A9"), dict(kind="parent"), dict(),
        dict(class_name="6A1", reader_codes=["HS-2026-0001"]),
        dict(class_name="6A1", opac_url="thuvien.local"),
        dict(class_name="6A1", per_page="a5"), dict(class_name="6A1", photos_dir=tmp_path / "none"),
    ]
    for arguments in refusals:
        with pytest.raises(CardError) as refused:
            library_cards_pdf(sessions, config, out, **arguments)  # type: ignore[arg-type]
        assert " / " in str(refused.value) and refused.value.message_vi != refused.value.message_en
    # The class list leaves the reader who has left out.
    assert library_cards_pdf(sessions, config, out, class_name="6A1").cards == 19
    assert "HS-2026-0007" not in page_text(out, 1) + page_text(out, 2)
    out.unlink()
    assert sorted(path.name for path in tmp_path.iterdir() if "thuvien.db" not in path.name) == []


def test_cli_cards(demo: tuple[str, sessionmaker[Session]], tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    url = demo[0]
    out = tmp_path / "teachers.pdf"
    assert _cli(tmp_path, url, "cards", "--kind", "teacher", "--opac-url", OPAC, "--out", str(out)) == 0
    assert "30 thẻ / cards, 3 trang / pages" in capsys.readouterr().out
    assert len(CODE.findall(page_text(out, 1))) == 10

    single = tmp_path / "one.pdf"
    assert _cli(tmp_path, url, "cards", "--reader", "HS-2026-0001", "--cr80", "--out", str(single)) == 0
    assert page_count(single) == 1

    missing = tmp_path / "missing.pdf"
    assert _cli(tmp_path, url, "cards", "--class", "9Z9", "--out", str(missing)) == 1
    err = capsys.readouterr().err
    assert "Không có bạn đọc nào (9Z9)" in err and "no readers found (9Z9)" in err
    assert not missing.exists()
