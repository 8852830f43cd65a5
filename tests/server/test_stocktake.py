"""Kiểm kê on the sample library's real SQLite file: start, scan, progress, close."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from circulation_sample import AN, GK, NV, TK, TK_LOST, TK_REFERENCE, TN, TN1_BARCODE, TN2_RFID, Library
from server import stocktake
from server.config import ServerConfig
from server.models import Copy, CopyStatus, Stocktake, StocktakeScan
from server.reports.pdf import render_pdf
from server.reports.registry import ReportParams
from server.reports.xlsx import render_xlsx
from server.stocktake import ScanOutcome, StocktakeError

NOW = dt.datetime(2027, 5, 20, 2, 0, tzinfo=dt.timezone.utc)
ALL = [*TN, *GK, *TK, NV, TK_REFERENCE, TK_LOST]
# Shelves: the children's books on "Giá A", the rest on "Giá B"; 10 000 đ a copy.
SHELF_A, SHELF_B = "Giá A", "Giá B"


@pytest.fixture
def shelved(library: Library) -> Library:
    with library.sessions.begin() as session:
        session.execute(update(Copy).values(location=SHELF_B, price=10_000))
        session.execute(update(Copy).where(Copy.kind == "TN").values(location=SHELF_A))
    return library


def _open(library: Library) -> Stocktake:
    return stocktake.start(library.sessions, "Kiểm kê năm học 2026-2027", "thuthu", now=NOW)


def test_one_open_stocktake_at_a_time_with_running_numbers(shelved: Library) -> None:
    assert stocktake.open_stocktake(shelved.sessions) is None
    first = _open(shelved)
    assert first.number == 1 and stocktake.open_stocktake(shelved.sessions).id == first.id
    with pytest.raises(StocktakeError) as refused:
        stocktake.start(shelved.sessions, "Lần hai", "thuthu")
    assert "đang mở" in str(refused.value) and "still open" in str(refused.value)
    with pytest.raises(StocktakeError, match="Give the stocktake a name"):
        stocktake.start(shelved.sessions, "   ", "thuthu")
    stocktake.close(shelved.sessions, first.id, "thuthu", now=NOW)
    second = stocktake.start(shelved.sessions, "Lần hai", "thuthu")
    assert second.number == 2
    assert shelved.count(Stocktake) == 2


def test_scan_by_barcode_accession_and_rfid_is_idempotent(shelved: Library) -> None:
    st = _open(shelved)
    result = stocktake.scan(shelved.sessions, st.id,
                            [TN1_BARCODE, TN2_RFID, TN[2].lower(), GK[0], "XX.99999", TN[0]],
                            shelf=SHELF_A, station="web-desk", now=NOW)
    outcomes = [(line.code, line.outcome) for line in result.lines]
    assert outcomes == [
        (TN1_BARCODE, ScanOutcome.COUNTED), (TN2_RFID, ScanOutcome.COUNTED),
        (TN[2].lower(), ScanOutcome.COUNTED), (GK[0], ScanOutcome.COUNTED),
        ("XX.99999", ScanOutcome.UNKNOWN),
        # The barcode above was TN.00001's: its ĐKCB is the same copy.
        (TN[0], ScanOutcome.ALREADY_COUNTED)]
    assert [line.copy.accession_number for line in result.lines if line.copy] == \
        [TN[0], TN[1], TN[2], GK[0], TN[0]]
    assert result.counted == 4 and result.already_counted == 1 and result.unknown == ["XX.99999"]
    # GK.00001 belongs on Giá B: misplaced; the others are where they belong.
    assert [line.copy.accession_number for line in result.flagged if line.copy] == [GK[0]]
    assert "Giá B" in result.lines[3].describe("vi") and "Misplaced" in result.lines[3].describe("en")

    again = stocktake.scan(shelved.sessions, st.id, [TN[0], TN[1]], shelf=SHELF_A)
    assert [line.outcome for line in again.lines] == [ScanOutcome.ALREADY_COUNTED] * 2
    with shelved.sessions() as session:
        scans = session.execute(select(StocktakeScan.shelf, StocktakeScan.station)
                                .where(StocktakeScan.stocktake_id == st.id)).all()
    assert len(scans) == 4 and set(scans) == {(SHELF_A, "web-desk")}


def test_scan_flags_withdrawn_and_on_loan_copies(shelved: Library, ask) -> None:  # type: ignore[no-untyped-def]
    reply, _entries = ask("loan.checkout", patron=AN, item=TN[3])
    assert reply.ok
    with shelved.sessions.begin() as session:
        session.execute(update(Copy).where(Copy.accession_number == TK[3])
                        .values(status=CopyStatus.WITHDRAWN))
    st = _open(shelved)
    result = stocktake.scan(shelved.sessions, st.id, [TN[3], TK[3]], shelf=SHELF_A)
    lent, withdrawn = result.lines
    assert lent.on_loan and not lent.withdrawn and not lent.misplaced
    assert "đang cho mượn" in lent.describe("vi")
    assert withdrawn.withdrawn and withdrawn.misplaced and not withdrawn.on_loan
    assert "withdrawn" in withdrawn.describe("en")
    assert withdrawn.as_dict() == {"code": TK[3], "outcome": "counted", "item": TK[3],
                                   "title": "Tuyển tập đề thi Toán 6", "location": SHELF_B,
                                   "withdrawn": True, "on_loan": False, "misplaced": True}


def test_progress_per_shelf(shelved: Library) -> None:
    st = _open(shelved)
    stocktake.scan(shelved.sessions, st.id, [TN[0], TN[1], GK[0]], shelf=SHELF_A)
    shelves = {s.location: (s.expected, s.seen, s.left)
               for s in stocktake.progress(shelved.sessions, st.id)}
    assert shelves == {SHELF_A: (5, 2, 3), SHELF_B: (10, 1, 9)}


def test_close_counts_present_missing_misplaced_on_loan(shelved: Library, ask) -> None:  # type: ignore[no-untyped-def]
    assert ask("loan.checkout", patron=AN, item=TN[3])[0].ok   # lent, not seen: not missing
    assert ask("loan.checkout", patron=AN, item=TN[4])[0].ok   # lent, yet seen on the shelf
    st = _open(shelved)
    seen = [TN[0], TN[1], TN[2], TN[4], GK[0], GK[1], GK[2], TK[0]]
    stocktake.scan(shelved.sessions, st.id, seen[:4], shelf=SHELF_A)
    stocktake.scan(shelved.sessions, st.id, seen[4:6], shelf=SHELF_B)
    stocktake.scan(shelved.sessions, st.id, seen[6:], shelf=SHELF_A)   # two on the wrong shelf
    result = stocktake.close(shelved.sessions, st.id, "thuthu", now=NOW)
    # 15 copies: 8 seen, TN.00004 lent, 6 missing (TK 2-4, NV, the reference and the lost one).
    assert {k: result[k] for k in ("total", "present", "on_loan", "missing", "misplaced",
                                   "value_missing", "seen_on_loan", "marked_lost")} == {
        "total": 15, "present": 8, "on_loan": 1, "missing": 6, "misplaced": 2,
        "value_missing": 60_000, "seen_on_loan": 1, "marked_lost": 0}
    assert result["by_kind"]["TN"] == {"total": 5, "present": 4, "on_loan": 1, "missing": 0,
                                       "misplaced": 0, "seen_on_loan": 1, "value_missing": 0}
    assert result["by_kind"]["TK"]["missing"] == 5 and result["by_kind"]["NV"]["missing"] == 1
    with shelved.sessions() as session:
        stored = session.get(Stocktake, st.id)
        assert stored.result == result and stored.closed_at == NOW and stored.closed_by == "thuthu"
    assert shelved.copy_status(TK[1]) == CopyStatus.AVAILABLE   # not marked: the librarian chose
    assert stocktake.open_stocktake(shelved.sessions) is None
    with pytest.raises(StocktakeError, match="is closed"):
        stocktake.scan(shelved.sessions, st.id, [TK[1]])
    with pytest.raises(StocktakeError, match="is closed"):
        stocktake.close(shelved.sessions, st.id, "thuthu")


def test_close_may_mark_the_missing_lost_with_a_note(shelved: Library) -> None:
    with shelved.sessions.begin() as session:
        session.execute(update(Copy).where(Copy.accession_number == NV).values(note="Bìa cứng"))
    st = _open(shelved)
    stocktake.scan(shelved.sessions, st.id, [code for code in ALL if code not in (NV, TK[1])])
    result = stocktake.close(shelved.sessions, st.id, "thuthu", mark_missing=True, now=NOW)
    assert result["missing"] == 2 and result["marked_lost"] == 2
    with shelved.sessions() as session:
        marked = dict(session.execute(select(Copy.accession_number, Copy.note)
                                      .where(Copy.status == CopyStatus.LOST)).all())
    # TK.00098 was lost before and was found on the shelf: it stays as it was.
    assert marked == {NV: "Bìa cứng; Mất khi kiểm kê số 1", TK[1]: "Mất khi kiểm kê số 1",
                      TK_LOST: None}


def test_missing_list_prints_as_pdf_and_excel(shelved: Library, config: ServerConfig,
                                              tmp_path: Path) -> None:
    st = _open(shelved)
    stocktake.scan(shelved.sessions, st.id, [code for code in ALL if code not in (NV, TK[1])])
    missing = list(stocktake.missing_list(shelved.sessions, st.id))
    assert [m.accession_number for m in missing] == [NV, TK[1]]
    report = stocktake.missing_report(shelved.sessions, config, ReportParams())
    pdf, xlsx = tmp_path / "missing.pdf", tmp_path / "missing.xlsx"
    render_pdf(report, pdf)
    render_xlsx(report, xlsx)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout
    assert "DANH SÁCH SÁCH MẤT KHI KIỂM KÊ" in text and "Phương pháp dạy học tích cực" in text
    assert "Đợt kiểm kê số 1" in text and "20.000" in text
    sheet = load_workbook(xlsx).active
    cells = [c for row in sheet.iter_rows(values_only=True) for c in row if c is not None]
    assert NV in cells and TK[1] in cells and TK[2] not in cells
    with pytest.raises(StocktakeError, match="no stocktake no. 7"):
        stocktake.missing_report(shelved.sessions, config, ReportParams(options={"stocktake": "7"}))


def _cli(library: Library, tmp_path: Path, *argv: str) -> int:
    """`thuvien stocktake ...` through the module's own parser (the lead wires it into
    thuvien/cli.py)."""
    import argparse

    from thuvien import records_cli

    config = tmp_path / "server.toml"
    config.write_text(f'site = "thcs-test"\nschool_name = "Trường THCS Thử"\n'
                      f'[database]\nurl = "{library.url}"\n', encoding="utf-8")
    parser = argparse.ArgumentParser(prog="thuvien")
    records_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--config", str(config), "--by", "thuthu"])
    return records_cli.run(args)


def test_stocktake_from_the_command_line(shelved: Library, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(shelved, tmp_path, "stocktake", "scan", TN[0]) == 1
    assert "No stocktake is open" in capsys.readouterr().err
    assert _cli(shelved, tmp_path, "stocktake", "start", "Kiểm", "kê", "2027") == 0
    assert _cli(shelved, tmp_path, "stocktake", "start", "Lần hai") == 1
    codes = tmp_path / "codes.txt"
    codes.write_text("\n".join(code for code in ALL if code not in (NV, TK[1])) + "\n", encoding="utf-8")
    assert _cli(shelved, tmp_path, "stocktake", "scan", "--file", str(codes)) == 0
    assert _cli(shelved, tmp_path, "stocktake", "scan", "XX.1", "--shelf", SHELF_A) == 3
    capsys.readouterr()
    assert _cli(shelved, tmp_path, "stocktake", "status") == 0
    status = capsys.readouterr().out
    assert "Giá B" in status and "Đợt kiểm kê số 1" in status
    out = tmp_path / "missing.xlsx"
    assert _cli(shelved, tmp_path, "stocktake", "missing", "--out", str(out)) == 0
    cells = [c for row in load_workbook(out).active.iter_rows(values_only=True) for c in row if c]
    assert NV in cells and TK[1] in cells
    assert _cli(shelved, tmp_path, "stocktake", "close", "--mark-missing") == 0
    closed = capsys.readouterr().out
    assert "mất / missing 2" in closed and "marked lost: 2" in closed
    assert shelved.copy_status(NV) == CopyStatus.LOST
