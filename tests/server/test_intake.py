"""Intake (phiếu nhập) and ĐKCB numbering on the sample library's real SQLite file."""

from __future__ import annotations

import argparse
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import delete, func, select, update

from server.config import ServerConfig
from server.intake import (
    IntakeError,
    ReceiptFileError,
    ReceiptLine,
    accession_ranges,
    allocate,
    list_receipts,
    read_receipt_file,
    receipt_detail,
    receive,
)
from server.models import AccessionCounter, Copy, CopyStatus, Receipt, Title
from thuvien import intake_cli

from circulation_sample import Library

DAY = dt.date(2026, 9, 10)
# Valid ISBNs (check digits computed by hand): the same book as ISBN-10 and ISBN-13.
ISBN10 = "604-2-15007-3"
ISBN13 = "9786042150071"


def _book(title: str, kind: str = "TK", quantity: int = 1, **fields: Any) -> ReceiptLine:
    return ReceiptLine(kind=kind, quantity=quantity, title=title, **fields)


def _copies(library: Library, receipt_number: int) -> list[Copy]:
    with library.sessions() as session:
        return list(session.scalars(select(Copy).join(Receipt, Receipt.id == Copy.receipt_id)
                                    .where(Receipt.number == receipt_number).order_by(Copy.id)))


def _snapshot(library: Library) -> tuple[int, ...]:
    with library.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0
                     for model in (Copy, Title, Receipt, AccessionCounter))


# --- numbering ------------------------------------------------------------------------------

def test_numbering_continues_after_the_catalogues_highest(library: Library,
                                                          config: ServerConfig) -> None:
    result = receive(library.sessions, config, "PN-01", DAY, "bought", [
        _book("Sổ tay Vật lí 8", "TK", 3, author="Nguyễn Văn A", price=45_000, location="Kho TK"),
        _book("Cổ tích Việt Nam", "TN", 2, price=30_000),
        ReceiptLine(kind="TB", quantity=2, title="Bộ thí nghiệm quang học", price=1_200_000),
    ], source_detail="Nhà sách Fahasa", by="thuthu")

    # The sample library ends at TK.00099 (đọc tại chỗ) and TN.00005; no TB yet.
    assert [str(r) for r in result.ranges] == ["TB.00001–TB.00002", "TK.00100–TK.00102",
                                               "TN.00006–TN.00007"]
    assert (result.number, result.copies, result.titles_created) == (1, 7, 3)
    assert result.total_value == 3 * 45_000 + 2 * 30_000 + 2 * 1_200_000
    copies = _copies(library, 1)
    first = copies[0]
    assert (first.accession_number, first.barcode, first.kind, first.status, first.price,
            first.acquired_on, first.location) == ("TK.00100", "TK00100", "TK",
                                                   CopyStatus.AVAILABLE, 45_000, DAY, "Kho TK")
    with library.sessions() as session:
        materials = dict(session.execute(select(Title.title, Title.material).where(
            Title.title.in_(["Sổ tay Vật lí 8", "Bộ thí nghiệm quang học"]))).all())
        receipt = session.scalars(select(Receipt)).one()
    assert materials == {"Sổ tay Vật lí 8": "book", "Bộ thí nghiệm quang học": "equipment"}
    assert (receipt.source, receipt.source_detail, receipt.created_by) == (
        "bought", "Nhà sách Fahasa", "thuthu")

    second = receive(library.sessions, config, "PN-02", DAY, "donated", [_book("Truyện ngắn", "TK", 1)])
    assert second.number == 2
    assert [str(r) for r in second.ranges] == ["TK.00103"]


def test_a_number_is_never_given_again(library: Library, config: ServerConfig) -> None:
    receive(library.sessions, config, "PN-01", DAY, "bought", [_book("Atlat Địa lí", "TK", 2)])
    with library.sessions.begin() as session:
        # TK.00101 is weeded (its row stays); TK.00100 was a mistake the admin removed.
        session.execute(update(Copy).where(Copy.accession_number == "TK.00101")
                        .values(status=CopyStatus.WITHDRAWN, withdrawal_reason="worn"))
        session.execute(delete(Copy).where(Copy.accession_number == "TK.00100"))
    result = receive(library.sessions, config, "PN-02", DAY, "bought", [_book("Atlat", "TK", 1)])
    assert [str(r) for r in result.ranges] == ["TK.00102"]


def test_allocate_skips_numbers_typed_in_by_other_means(library: Library,
                                                        config: ServerConfig) -> None:
    with library.sessions.begin() as session:
        assert allocate(session, config, "NV", 1) == ["NV.00002"]
        title_id = session.scalar(select(Title.id).limit(1))
        session.add(Copy(title_id=title_id, accession_number="NV.00003", kind="NV"))
        session.flush()
        assert allocate(session, config, "NV", 2) == ["NV.00004", "NV.00005"]


def test_allocate_refuses_a_prefix_not_configured(library: Library, config: ServerConfig) -> None:
    with library.sessions.begin() as session:
        with pytest.raises(IntakeError) as caught:
            allocate(session, config, "XX", 1)
    assert "XX" in caught.value.message_vi and "not in the configuration" in caught.value.message_en


def test_concurrent_intakes_never_share_a_number(library: Library, config: ServerConfig) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def intake(name: str) -> None:
        try:
            start.wait()
            for n in range(6):
                receive(library.sessions, config, f"{name}-{n}", DAY, "district", [
                    _book(f"{name} sách {n}", "TK", 3), _book(f"{name} thiết bị {n}", "TB", 2)])
        except BaseException as error:  # reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=intake, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with library.sessions() as session:
        new = session.scalars(select(Copy.accession_number).where(Copy.receipt_id.is_not(None))).all()
        numbers = session.scalars(select(Receipt.number)).all()
        counters = dict(session.execute(select(AccessionCounter.kind, AccessionCounter.last)).all())
    assert len(new) == len(set(new)) == 2 * 6 * 5
    assert sorted(numbers) == list(range(1, 13))
    assert counters == {"TK": 99 + 36, "TB": 24}
    assert {str(r) for r in accession_ranges(new)} == {"TK.00100–TK.00135", "TB.00001–TB.00024"}


# --- all or nothing -----------------------------------------------------------------------

def test_a_bad_line_writes_nothing_and_is_named(library: Library, config: ServerConfig) -> None:
    before = _snapshot(library)
    with pytest.raises(IntakeError) as caught:
        receive(library.sessions, config, "PN-09", DAY, "bought", [
            _book("Sách tốt", "TK", 2),
            _book("Loại lạ", "XX", 1),
            _book("ISBN sai", "TK", 1, isbn="978-604-2-15007-9"),
            _book("Không số lượng", "TK", 0),
            ReceiptLine(kind="TK", quantity=1, title_id=999_999),
        ])
    error = caught.value
    assert [p.line for p in error.problems] == [2, 3, 4, 5]
    assert "không nhập gì" in error.message_vi and "nothing was written" in error.message_en
    text = str(error)
    assert "dòng 2" in text and "line 2" in text and "XX" in text
    assert "ISBN" in str(error.problems[1]) and "999999" in str(error.problems[3])
    assert _snapshot(library) == before


def test_a_receipt_needs_a_known_source_and_a_line(library: Library, config: ServerConfig) -> None:
    with pytest.raises(IntakeError, match="unknown source"):
        receive(library.sessions, config, "PN-1", DAY, "stolen", [_book("A")])
    with pytest.raises(IntakeError, match="no line"):
        receive(library.sessions, config, "PN-1", DAY, "bought", [])
    assert _snapshot(library)[2] == 0


def test_book_and_equipment_never_share_a_title(library: Library, config: ServerConfig) -> None:
    with library.sessions() as session:
        de_men = session.scalars(select(Title).where(Title.title == "Dế Mèn phiêu lưu ký")).one()
    before = _snapshot(library)
    with pytest.raises(IntakeError) as caught:
        receive(library.sessions, config, "PN-3", DAY, "bought",
                [ReceiptLine(kind="TB", quantity=1, title_id=de_men.id)])
    assert caught.value.problems[0].line == 1 and "equipment" in caught.value.problems[0].reason_en
    assert _snapshot(library) == before


# --- titles -------------------------------------------------------------------------------

def test_same_isbn_joins_the_existing_title(library: Library, config: ServerConfig) -> None:
    first = receive(library.sessions, config, "PN-1", DAY, "bought",
                    [_book("Toán 7 nâng cao", "TK", 1, isbn=ISBN13, author="Vũ Hữu Bình")])
    second = receive(library.sessions, config, "PN-2", DAY, "province", [
        _book("Toan 7 nang cao (typed another way)", "TK", 2, isbn=ISBN10,
              author="Someone else", publisher="NXB Giáo dục Việt Nam", year=2022),
        ReceiptLine(kind="TK", quantity=1, isbn=ISBN13),  # by ISBN alone
    ])
    assert (first.titles_created, second.titles_created, second.titles_matched) == (1, 0, 1)
    with library.sessions() as session:
        title = session.scalars(select(Title).where(Title.isbn == ISBN13)).one()
        count = session.scalar(select(func.count()).select_from(Copy).where(Copy.title_id == title.id))
    # Empty fields filled, the others kept.
    assert (title.title, title.author, title.publisher, title.year) == (
        "Toán 7 nâng cao", "Vũ Hữu Bình", "NXB Giáo dục Việt Nam", 2022)
    assert count == 4


def test_same_new_title_twice_in_one_receipt_is_one_title(library: Library,
                                                          config: ServerConfig) -> None:
    result = receive(library.sessions, config, "PN-1", DAY, "bought", [
        _book("Tiếng Anh 6", "GK", 10, price=30_000), _book("Tiếng Anh 6", "GK", 5, price=32_000)])
    assert result.titles_created == 1
    detail = receipt_detail(library.sessions, result.number)
    assert [(line.title, line.price, line.copies, line.total_value) for line in detail.lines] == [
        ("Tiếng Anh 6", 30_000, 10, 300_000), ("Tiếng Anh 6", 32_000, 5, 160_000)]
    assert [str(r) for r in detail.lines[1].ranges] == ["GK.00014–GK.00018"]


def test_an_unknown_isbn_without_a_title_is_refused(library: Library, config: ServerConfig) -> None:
    with pytest.raises(IntakeError) as caught:
        receive(library.sessions, config, "PN-1", DAY, "bought",
                [ReceiptLine(kind="TK", quantity=1, isbn=ISBN13)])
    assert "a title is needed" in str(caught.value)


# --- listing --------------------------------------------------------------------------------

def test_list_and_detail(library: Library, config: ServerConfig) -> None:
    receive(library.sessions, config, "PN-01", DAY, "bought", [
        _book("Sổ tay Hóa 9", "TK", 2, price=50_000, author="Lê Văn B"),
        _book("Đội thiếu niên tình báo Bát Sắt", "TN", 3, price=40_000)], note="Đợt 1")
    receive(library.sessions, config, "PN-02", DAY + dt.timedelta(days=30), "donated",
            [_book("Sổ tay Hóa 9", "TK", 1)], source_detail="Hội cha mẹ học sinh")
    receipts = list_receipts(library.sessions)
    assert [(r.number, r.receipt_no, r.source, r.titles, r.copies, r.total_value) for r in receipts] == [
        (2, "PN-02", "donated", 1, 1, 0), (1, "PN-01", "bought", 2, 5, 220_000)]
    assert [r.number for r in list_receipts(library.sessions, until=DAY)] == [1]
    detail = receipt_detail(library.sessions, 1)
    assert (detail.copies, detail.total_value, detail.note) == (5, 220_000, "Đợt 1")
    assert [(line.title, line.author, line.kind, line.copies) for line in detail.lines] == [
        ("Sổ tay Hóa 9", "Lê Văn B", "TK", 2), ("Đội thiếu niên tình báo Bát Sắt", None, "TN", 3)]
    assert [str(r) for r in detail.ranges] == ["TK.00100–TK.00101", "TN.00006–TN.00008"]
    with pytest.raises(IntakeError, match="no receipt with register number 7"):
        receipt_detail(library.sessions, 7)


def test_accession_ranges_break_at_gaps() -> None:
    ranges = accession_ranges(["TK.00003", "GK.00001", "TK.00001", "TK.00002", "TK.00005", "x-1"])
    assert [(str(r), r.count) for r in ranges] == [
        ("GK.00001", 1), ("TK.00001–TK.00003", 3), ("TK.00005", 1), ("x-1", 1)]


# --- receipt files --------------------------------------------------------------------------

def _receipt_workbook(path: Path, rows: list[list[Any]]) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.append(["PHÒNG GD&ĐT HUYỆN CHỢ GẠO"])
    sheet.append(["TRƯỜNG THCS NHỰT TẢO"])
    sheet.append([])
    sheet.append([None, None, "PHIẾU NHẬP SÁCH"])
    sheet.append([None, None, "Số: 12/2026 - Ngày 10/09/2026"])
    sheet.append([])
    sheet.append(["STT", "Tên sách", "Tác giả", "NXB", "Năm XB", "ISBN", "Môn loại",
                  "Ký hiệu xếp giá", "Loại", "Số lượng", "Đơn giá", "Thành tiền", "Kho"])
    for row in rows:
        sheet.append(row)
    sheet.append([None, "Tổng cộng", None, None, None, None, None, None, None, 99, None, 0])
    sheet.append([])
    sheet.append(["Người lập phiếu", None, None, "Thủ trưởng đơn vị"])
    book.save(path)
    return path


def test_receipt_file_header_found_below_the_preamble(tmp_path: Path, config: ServerConfig) -> None:
    path = _receipt_workbook(tmp_path / "phieu.xlsx", [
        [1, "Dế Mèn phiêu lưu ký", "Tô Hoài", "Kim Đồng", 2020, ISBN10, "Văn học", "895.9223 T450H",
         "TN", 3, "45.000", 135000, "Kho thiếu nhi"],
        [],
        [2, "Từ điển Anh - Việt", None, None, "2019", None, None, None, "Sách tham khảo", None,
         120000.0, None, None],
        [3, "Máy chiếu", None, None, None, None, None, None, "tb", 1, "12.500.000 đ", None, None],
    ])
    lines = read_receipt_file(path, library=config)
    assert [(l.row, l.title, l.kind, l.quantity, l.price, l.year, l.isbn, l.location) for l in lines] == [
        (8, "Dế Mèn phiêu lưu ký", "TN", 3, 45_000, 2020, ISBN13, "Kho thiếu nhi"),
        (10, "Từ điển Anh - Việt", "TK", 1, 120_000, 2019, None, None),
        (11, "Máy chiếu", "TB", 1, 12_500_000, None, None, None),
    ]
    assert (lines[0].author, lines[0].publisher, lines[0].subject, lines[0].call_number) == (
        "Tô Hoài", "Kim Đồng", "Văn học", "895.9223 T450H")


def test_receipt_file_bad_rows_are_all_reported(tmp_path: Path, config: ServerConfig) -> None:
    path = _receipt_workbook(tmp_path / "phieu.xlsx", [
        [1, "Sách tốt", None, None, None, None, None, None, "TK", 1, 10000],
        [2, "ISBN sai", None, None, None, "978-604-2-15007-9", None, None, "TK", 1, 10000],
        [3, "Số lượng chữ", None, None, None, None, None, None, "TK", "ba", 10000],
        [4, "Loại lạ", None, None, None, None, None, None, "ZZ", 1, "45.5"],
    ])
    with pytest.raises(ReceiptFileError) as caught:
        read_receipt_file(path, library=config)
    problems = caught.value.problems
    assert [(p.line, p.row) for p in problems] == [(2, 9), (3, 10), (4, 11), (4, 11)]
    assert "quantity unreadable 'ba'" in problems[1].reason_en
    assert "ZZ" in problems[2].reason_vi and "price unreadable" in problems[3].reason_en
    assert "hàng 9" in str(problems[0]) and "row 9" in str(problems[0])


def test_receipt_file_csv_with_english_names(tmp_path: Path) -> None:
    path = tmp_path / "receipt.csv"
    path.write_text("Receipt from the district office\n\n"
                    "Title;Author;Publisher;Year;ISBN;Subject;Call number;Kind;Quantity;Price;Location\n"
                    "Ngữ văn 6;Nhiều tác giả;NXB GDVN;2021;;Ngữ văn;807;GK;40;25,000;Tủ SGK\n",
                    encoding="utf-8")
    [line] = read_receipt_file(path)
    assert (line.title, line.kind, line.quantity, line.price, line.location) == (
        "Ngữ văn 6", "GK", 40, 25_000, "Tủ SGK")


def test_receipt_file_without_a_header(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ReceiptFileError, match="no header row"):
        read_receipt_file(path)
    with pytest.raises(ReceiptFileError, match="unsupported file type"):
        read_receipt_file(tmp_path / "phieu.pdf")


def test_receipt_file_kind_from_the_default(tmp_path: Path, config: ServerConfig) -> None:
    path = tmp_path / "receipt.csv"
    path.write_text("Nhan đề,Số lượng\nSách A,2\n", encoding="utf-8")
    with pytest.raises(ReceiptFileError, match="no ĐKCB kind"):
        read_receipt_file(path, library=config)
    assert read_receipt_file(path, library=config, default_kind="NV")[0].kind == "NV"


# --- the CLI --------------------------------------------------------------------------------

def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="thuvien")
    intake_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_add_list_show(library: Library, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'site = "truong-a"\nschool_name = "A"\n[database]\nurl = "{library.url}"\n',
                      encoding="utf-8")
    path = _receipt_workbook(tmp_path / "phieu.xlsx", [
        [1, "Sổ tay Toán 9", "Lê Văn C", None, 2024, None, None, None, "TK", 3, "50.000"],
        [2, "Kính hiển vi", None, None, None, None, None, None, "TB", 1, 3_000_000],
    ])
    args = _cli("intake", "add", str(path), "--config", str(config), "--receipt-no", "12/2026",
                "--date", "2026-09-10", "--source", "bought", "--source-detail", "Fahasa",
                "--by", "thuthu")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "register number 1" in out and "TK.00100–TK.00102 (3)" in out and "TB.00001 (1)" in out
    assert "3.150.000 đ" in out

    args = _cli("intake", "list", "--config", str(config))
    assert intake_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "12/2026 | 10/09/2026 | Trường tự mua / bought by the school (Fahasa) | 2 | 4" in out

    args = _cli("intake", "show", "1", "--config", str(config))
    assert intake_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "1. Sổ tay Toán 9 — Lê Văn C [TK] 3 × 50.000 đ = 150.000 đ; ĐKCB TK.00100–TK.00102" in out
    assert "Người nhập / by: thuthu" in out

    assert intake_cli.run(_cli("intake", "show", "5", "--config", str(config))) == 1
    assert "no receipt with register number 5" in capsys.readouterr().err


def test_cli_add_bad_file_writes_nothing(library: Library, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'site = "truong-a"\nschool_name = "A"\n[database]\nurl = "{library.url}"\n',
                      encoding="utf-8")
    path = _receipt_workbook(tmp_path / "phieu.xlsx", [
        [1, "Sách tốt", None, None, None, None, None, None, "TK", 1],
        [2, "Sách lạ", None, None, None, None, None, None, "QQ", 1],
    ])
    before = _snapshot(library)
    args = _cli("intake", "add", str(path), "--config", str(config), "--receipt-no", "13",
                "--date", "2026-09-11", "--source", "other")
    assert intake_cli.run(args) == 1
    err = capsys.readouterr().err
    assert "không nhập gì" in err and "nothing was written" in err and "row 9" in err and "QQ" in err
    assert _snapshot(library) == before
