"""Barcode label sheets on the demo school's catalogue: real SQLite, real PDFs read back
with pdftotext, pages rendered at 300 dpi and their barcodes decoded with pyzbar."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError
from pyzbar.pyzbar import decode
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from server import db
from server.config import ServerConfig
from server.models import Copy, CopyStatus, Receipt, Title
from server.reports.labels import (
    PRESETS,
    LabelError,
    LabelLayout,
    LabelsConfig,
    label_sheet_pdf,
    resolve_layout,
)
from server.seed import seed_demo
from thuvien import labels_cli

SCHOOL = "Trường THCS Nhựt Tảo"
DKCB = re.compile(r"\b(?:GK|TK|NV|TN)\.\d{5}\b")


@pytest.fixture(scope="module")
def _demo_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("demo") / "thuvien.db"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    engine = db.make_engine(url)
    seed_demo(db.session_factory(engine), school_year_start=dt.date(2026, 9, 5))
    engine.dispose()
    return path.read_bytes()


@pytest.fixture
def demo(tmp_path: Path, _demo_file: bytes) -> Iterator[tuple[str, sessionmaker[Session]]]:
    path = tmp_path / "thuvien.db"
    path.write_bytes(_demo_file)
    url = f"sqlite:///{path}"
    engine = db.make_engine(url)
    yield url, db.session_factory(engine)
    engine.dispose()


@pytest.fixture
def sessions(demo: tuple[str, sessionmaker[Session]]) -> sessionmaker[Session]:
    return demo[1]


@pytest.fixture
def config() -> ServerConfig:
    return ServerConfig(site="thcs-nhut-tao", school_name=SCHOOL)


def page_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout


def page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]


def scanned(pdf: Path, page: int, tmp_path: Path) -> list:  # type: ignore[type-arg]
    """What a scanner reads off `page`, printed at 300 dpi."""
    stem = tmp_path / f"page{page}"
    subprocess.run(["pdftoppm", "-r", "300", "-png", "-singlefile", "-f", str(page), "-l", str(page),
                    str(pdf), str(stem)], check=True)
    return decode(Image.open(stem.with_suffix(".png")))


def copies(sessions: sessionmaker[Session], kind: str, first: int, last: int) -> list[tuple[str, str, str, str]]:
    with sessions() as session:
        rows = session.execute(
            select(Copy.accession_number, Copy.barcode, Title.call_number, Title.title)
            .join(Title, Title.id == Copy.title_id)
            .where(Copy.kind == kind, Copy.accession_number.between(f"{kind}.{first:05d}",
                                                                    f"{kind}.{last:05d}"))
            .order_by(Copy.accession_number))
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_3x8_sheet_holds_24_labels_that_scan_back_to_each_copy(
        sessions: sessionmaker[Session], config: ServerConfig, tmp_path: Path) -> None:
    out = tmp_path / "labels.pdf"
    sheet = label_sheet_pdf(sessions, config, out, kind="TK", first="TK.00001", last="TK.00030")
    expected = copies(sessions, "TK", 1, 30)
    assert len(expected) == 30 and sheet.labels == 30 and sheet.pages == 2 and page_count(out) == 2

    first_page, second_page = page_text(out, 1), page_text(out, 2)
    assert DKCB.findall(first_page) == [row[0] for row in expected[:24]]
    assert DKCB.findall(second_page) == [row[0] for row in expected[24:]]
    assert first_page.count("THCS Nhựt Tảo") == 24 and "Trường" not in first_page
    assert expected[0][2] in first_page                   # the shelf mark
    assert expected[0][3][:12] in first_page               # the (shortened) title, Vietnamese

    codes = scanned(out, 1, tmp_path)
    assert sorted(code.type for code in codes) == ["CODE128"] * 24
    assert sorted(code.data.decode() for code in codes) == sorted(row[1] for row in expected[:24])
    # The copy's barcode is its ĐKCB without the dot in the demo library.
    assert expected[0][1] == expected[0][0].replace(".", "")


def test_skip_leaves_used_places_of_the_first_sheet_blank(
        sessions: sessionmaker[Session], config: ServerConfig, tmp_path: Path) -> None:
    out = tmp_path / "labels.pdf"
    sheet = label_sheet_pdf(sessions, config, out, kind="TN", first="1", last="24", skip=5)
    assert sheet.labels == 24 and sheet.pages == 2
    assert len(DKCB.findall(page_text(out, 1))) == 19 and len(DKCB.findall(page_text(out, 2))) == 5
    codes = scanned(out, 1, tmp_path)
    assert len(codes) == 19
    # Five places used: the first row is empty, the second starts in its third column.
    label_height_px = 37 / 25.4 * 300
    top = min(codes, key=lambda code: (code.rect.top, code.rect.left))
    assert label_height_px < top.rect.top < 2 * label_height_px
    assert top.rect.left > 2 * 70 / 25.4 * 300
    assert top.data.decode() == "TN00001"


def test_a_4x10_sheet_holds_40_labels_that_scan(
        sessions: sessionmaker[Session], config: ServerConfig, tmp_path: Path) -> None:
    out = tmp_path / "labels.pdf"
    sheet = label_sheet_pdf(sessions, config, out, kind="GK", last="GK.00050", layout="4x10")
    assert (sheet.labels, sheet.pages, sheet.layout) == (50, 2, "4x10")
    assert len(DKCB.findall(page_text(out, 1))) == 40
    codes = scanned(out, 1, tmp_path)
    assert sorted(code.data.decode() for code in codes) == [f"GK{n:05d}" for n in range(1, 41)]


def test_a_list_keeps_its_order_takes_scanned_barcodes_and_own_barcodes(
        sessions: sessionmaker[Session], config: ServerConfig, tmp_path: Path) -> None:
    with sessions.begin() as session:
        session.execute(update(Copy).where(Copy.accession_number == "NV.00003")
                        .values(barcode="8935000000011"))
    out = tmp_path / "labels.pdf"
    sheet = label_sheet_pdf(sessions, config, out, accession_numbers=["TN.00007", "nv.00003", "GK00002"],
                            layout="2x7")
    assert sheet.labels == 3
    assert DKCB.findall(page_text(out, 1)) == ["TN.00007", "NV.00003", "GK.00002"]
    assert sorted(code.data.decode() for code in scanned(out, 1, tmp_path)) == [
        "8935000000011", "GK00002", "TN00007"]


def test_all_copies_of_a_receipt(sessions: sessionmaker[Session], config: ServerConfig,
                                 tmp_path: Path) -> None:
    with sessions.begin() as session:
        number = (session.scalar(select(func.max(Receipt.number))) or 0) + 1
        receipt = Receipt(number=number, receipt_no="PN-12/2026", received_on=dt.date(2026, 9, 20),
                          source="bought", created_at=dt.datetime.now(dt.timezone.utc))
        session.add(receipt)
        session.flush()
        session.execute(update(Copy).where(Copy.accession_number.in_(
            ["TK.00040", "TK.00041", "TN.00100", "TN.00101", "TN.00102"])).values(receipt_id=receipt.id))
        session.execute(update(Copy).where(Copy.accession_number == "TN.00102")
                        .values(status=CopyStatus.WITHDRAWN))
    out = tmp_path / "receipt.pdf"
    sheet = label_sheet_pdf(sessions, config, out, receipt_number=number, layout="3x7")
    assert sheet.labels == 4
    assert DKCB.findall(page_text(out, 1)) == ["TK.00040", "TK.00041", "TN.00100", "TN.00101"]
    with pytest.raises(LabelError, match=f"Không có phiếu nhập số {number + 1} / "
                                         f"no receipt number {number + 1}"):
        label_sheet_pdf(sessions, config, tmp_path / "none.pdf", receipt_number=number + 1)
    assert not (tmp_path / "none.pdf").exists()


def test_unknown_or_withdrawn_copies_and_bad_choices_write_nothing(
        sessions: sessionmaker[Session], config: ServerConfig, tmp_path: Path) -> None:
    out = tmp_path / "labels.pdf"
    with pytest.raises(LabelError) as unknown:
        label_sheet_pdf(sessions, config, out, accession_numbers=["TK.00001", "TK.99999", "XX.1"])
    assert unknown.value.message_vi == "Không có bản sách với ĐKCB: TK.99999, XX.1"
    assert unknown.value.message_en == "no copy with ĐKCB: TK.99999, XX.1"
    with sessions.begin() as session:
        session.execute(update(Copy).where(Copy.accession_number == "TK.00002")
                        .values(status=CopyStatus.WITHDRAWN))
    with pytest.raises(LabelError, match="đã thanh lý.* / withdrawn copies get no label: TK.00002"):
        label_sheet_pdf(sessions, config, out, accession_numbers=["TK.00002"])
    # A range leaves the withdrawn copy out instead.
    assert label_sheet_pdf(sessions, config, out, kind="TK", first="1", last="3").labels == 2
    out.unlink()
    refusals = [
        dict(kind="XY"), dict(kind="TK", first="TN.00001"), dict(kind="TK", first="9", last="3"),
        dict(kind="TK", first="99990", last="99999"), dict(), dict(kind="TK", receipt_number=1),
        dict(kind="TK", skip=24), dict(kind="TK", layout="5x13"),
    ]
    for arguments in refusals:
        with pytest.raises(LabelError) as refused:
            label_sheet_pdf(sessions, config, out, **arguments)  # type: ignore[arg-type]
        assert " / " in str(refused.value) and refused.value.message_vi != refused.value.message_en
    # Nothing written, not even a half-made temporary file.
    assert sorted(path.name for path in tmp_path.iterdir() if "thuvien.db" not in path.name) == []


def test_layouts_from_the_config(sessions: sessionmaker[Session], config: ServerConfig,
                                 tmp_path: Path) -> None:
    own = LabelLayout(name="tomy-2x6", columns=2, rows=6, label_width_mm=100, label_height_mm=45,
                      top_margin_mm=13.5, left_margin_mm=3, horizontal_pitch_mm=104,
                      vertical_pitch_mm=45)
    labels = LabelsConfig(layout="tomy-2x6", layouts=[own], school_line=False)
    assert resolve_layout(None, labels) == own
    assert resolve_layout("4x10", labels) == PRESETS["4x10"]
    assert {name: layout.per_sheet for name, layout in PRESETS.items()} == {
        "3x8": 24, "4x10": 40, "3x7": 21, "2x7": 14}
    with pytest.raises(LabelError, match="tomy-2x6, 3x8, 4x10, 3x7, 2x7"):
        resolve_layout("3x9", labels)
    with pytest.raises(ValidationError, match="unknown label layout 'a4-65'"):
        LabelsConfig(layout="a4-65")
    with pytest.raises(ValidationError, match="run off the A4 page"):
        LabelLayout(name="wide", columns=3, rows=8, label_width_mm=72, label_height_mm=37,
                    top_margin_mm=0.5, left_margin_mm=0, horizontal_pitch_mm=72, vertical_pitch_mm=37)
    with pytest.raises(ValidationError, match="labels overlap"):
        LabelLayout(name="tight", columns=3, rows=8, label_width_mm=70, label_height_mm=37,
                    top_margin_mm=0, left_margin_mm=0, horizontal_pitch_mm=60, vertical_pitch_mm=37)
    out = tmp_path / "own.pdf"
    sheet = label_sheet_pdf(sessions, config, out, kind="NV", last="13", layout=own)
    assert (sheet.labels, sheet.pages) == (13, 2)
    assert len(DKCB.findall(page_text(out, 1))) == 12
    assert len(scanned(out, 1, tmp_path)) == 12


def _cli(tmp_path: Path, url: str, *argv: str) -> int:
    config = tmp_path / "server.toml"
    config.write_text(f'site = "thcs-nhut-tao"\nschool_name = "{SCHOOL}"\n[database]\nurl = "{url}"\n',
                      encoding="utf-8")
    parser = argparse.ArgumentParser(prog="thuvien")
    labels_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--config", str(config)])
    return int(args.func(args))


def test_cli_labels(demo: tuple[str, sessionmaker[Session]], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    url = demo[0]
    out = tmp_path / "tk.pdf"
    assert _cli(tmp_path, url, "labels", "--kind", "TK", "--from", "TK.00001", "--to", "TK.00040",
                "--layout", "4x10", "--out", str(out)) == 0
    assert "40 nhãn / labels, 1 trang / pages (4x10)" in capsys.readouterr().out
    assert len(DKCB.findall(page_text(out, 1))) == 40

    listed = tmp_path / "list.pdf"
    assert _cli(tmp_path, url, "labels", "--accession", "TN.00001,TN.00002", "--skip", "3",
                "--out", str(listed)) == 0
    assert DKCB.findall(page_text(listed, 1)) == ["TN.00001", "TN.00002"]

    missing = tmp_path / "missing.pdf"
    assert _cli(tmp_path, url, "labels", "--accession", "TN.00001,TK.77777", "--out", str(missing)) == 1
    err = capsys.readouterr().err
    assert "Không có bản sách với ĐKCB: TK.77777" in err and "no copy with ĐKCB: TK.77777" in err
    assert _cli(tmp_path, url, "labels", "--kind", "TK", "--layout", "9x9", "--out", str(missing)) == 1
    assert "Không có khổ nhãn '9x9'" in capsys.readouterr().err
    assert not missing.exists()
