"""`thuvien intake add|list|show`: receipts (phiếu nhập) in, with their ĐKCB numbers.

`add` reads a receipt file (.xlsx or .csv) and books it whole or not at all: a bad row
is printed with its row number and the reason, and nothing is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from thuvien.imports import open_library

SOURCES = ["bought", "district", "province", "donated", "other"]


def _money(value: int) -> str:
    return f"{value:,}".replace(",", ".") + " đ"


def _source(source: str) -> str:
    from server.intake import SOURCE_NAMES
    from server.models import AcquisitionSource

    try:
        vi, en = SOURCE_NAMES[AcquisitionSource(source)]
    except ValueError:
        return source
    return f"{vi} / {en}"


def _fail(command: str, error: Any) -> int:
    print(f"thuvien intake {command}: {error.message_vi}\nthuvien intake {command}: "
          f"{error.message_en}", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def cmd_add(args: argparse.Namespace) -> int:
    from server.config import load
    from server.intake import IntakeError, read_receipt_file, receive

    config = load(args.config)
    try:
        lines = read_receipt_file(args.file, library=config, default_kind=args.kind)
    except IntakeError as error:
        return _fail("add", error)
    engine, sessions = open_library(args.config)
    try:
        result = receive(sessions, config, args.receipt_no, args.date, args.source, lines,
                         source_detail=args.source_detail, note=args.note, by=args.by)
    except IntakeError as error:
        return _fail("add", error)
    finally:
        engine.dispose()
    print(f"Đã nhập / received: phiếu / receipt {result.receipt_no}, số thứ tự vào sổ / "
          f"register number {result.number}")
    print(f"  {result.copies} bản / copies, {result.titles_created} đầu sách mới / new titles, "
          f"{result.titles_matched} đầu sách đã có / existing titles, "
          f"tổng giá trị / total value {_money(result.total_value)}")
    for accession_range in result.ranges:
        print(f"  ĐKCB {accession_range} ({accession_range.count})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from server.intake import list_receipts

    engine, sessions = open_library(args.config)
    try:
        receipts = list_receipts(sessions)
    finally:
        engine.dispose()
    if not receipts:
        print("Chưa có phiếu nhập nào / no receipt yet")
        return 0
    print("Số TT / No. | Số phiếu / Receipt | Ngày / Date | Nguồn / Source | "
          "Đầu sách / Titles | Bản / Copies | Giá trị / Value")
    for r in receipts:
        source = _source(r.source) + (f" ({r.source_detail})" if r.source_detail else "")
        print(f"{r.number:>5} | {r.receipt_no} | {r.received_on:%d/%m/%Y} | {source} | "
              f"{r.titles} | {r.copies} | {_money(r.total_value)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from server.intake import IntakeError, receipt_detail

    engine, sessions = open_library(args.config)
    try:
        detail = receipt_detail(sessions, args.number)
    except IntakeError as error:
        return _fail("show", error)
    finally:
        engine.dispose()
    print(f"Phiếu nhập / receipt {detail.receipt_no} — số thứ tự vào sổ / register number "
          f"{detail.number}")
    print(f"  Ngày nhập / received on: {detail.received_on:%d/%m/%Y}")
    print(f"  Nguồn cấp / source: {_source(detail.source)}"
          + (f" ({detail.source_detail})" if detail.source_detail else ""))
    if detail.note:
        print(f"  Ghi chú / note: {detail.note}")
    if detail.created_by:
        print(f"  Người nhập / by: {detail.created_by}")
    for index, line in enumerate(detail.lines, 1):
        author = f" — {line.author}" if line.author else ""
        price = _money(line.price) if line.price is not None else "—"
        ranges = ", ".join(str(r) for r in line.ranges)
        print(f"  {index}. {line.title}{author} [{line.kind}] {line.copies} × {price} = "
              f"{_money(line.total_value)}; ĐKCB {ranges}")
    print(f"  Cộng / total: {detail.copies} bản / copies, {_money(detail.total_value)}")
    for accession_range in detail.ranges:
        print(f"  ĐKCB {accession_range} ({accession_range.count})")
    return 0


_COMMANDS = {"add": cmd_add, "list": cmd_list, "show": cmd_show}


def run(args: argparse.Namespace) -> int:
    return _COMMANDS[args.intake_command](args)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    intake = sub.add_parser("intake", help="receipts (phiếu nhập): copies in, with ĐKCB numbers")
    commands = intake.add_subparsers(dest="intake_command", required=True)
    add = commands.add_parser("add", help="book a receipt file (.xlsx, .csv): all rows or none")
    add.add_argument("file")
    add.add_argument("--config", required=True, help="the server's config")
    add.add_argument("--receipt-no", required=True, help="the paper receipt's number (số phiếu)")
    add.add_argument("--date", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                     help="the day the copies were received")
    add.add_argument("--source", required=True, choices=SOURCES,
                     help="nguồn cấp: bought (trường tự mua), district (PGD), province (SGD), "
                          "donated (biếu tặng), other")
    add.add_argument("--source-detail", help="the supplier or the donor")
    add.add_argument("--note")
    add.add_argument("--by", help="who booked it")
    add.add_argument("--kind", help="the ĐKCB kind (GK, TK, ...) of rows that name none")
    listing = commands.add_parser("list", help="every receipt, newest first")
    listing.add_argument("--config", required=True, help="the server's config")
    show = commands.add_parser("show", help="one receipt with its lines and ĐKCB ranges")
    show.add_argument("number", type=int, help="the general register's running number")
    show.add_argument("--config", required=True, help="the server's config")
    intake.set_defaults(func=run)
    return intake
