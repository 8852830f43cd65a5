"""`thuvien labels` (barcode label sheets) and `thuvien cards` (library cards): PDFs to print.

Both print what they made, or why nothing was made, in Vietnamese and English; a file
is only written whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from thuvien.imports import open_library


def _codes(text: str) -> list[str]:
    codes = [part.strip() for part in text.split(",") if part.strip()]
    if not codes:
        raise argparse.ArgumentTypeError("give at least one code, separated by commas")
    return codes


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _refused(command: str, exc: Exception) -> int:
    vi, en = getattr(exc, "message_vi", str(exc)), getattr(exc, "message_en", str(exc))
    print(f"thuvien {command}: {vi}\nthuvien {command}: {en}", file=sys.stderr)
    return 1


def run_labels(args: argparse.Namespace) -> int:
    from server.config import load
    from server.reports.labels import PrintError, label_sheet_pdf

    config = load(args.config)
    engine, sessions = open_library(args.config)
    try:
        sheet = label_sheet_pdf(sessions, config, args.out, accession_numbers=args.accession,
                                kind=args.kind, first=args.first, last=args.last,
                                receipt_number=args.receipt, layout=args.layout, skip=args.skip)
    except PrintError as exc:
        return _refused("labels", exc)
    finally:
        engine.dispose()
    print(f"Đã in / printed {sheet.labels} nhãn / labels, {sheet.pages} trang / pages "
          f"({sheet.layout}) -> {args.out}")
    return 0


def run_cards(args: argparse.Namespace) -> int:
    from server.config import load
    from server.reports.cards import library_cards_pdf
    from server.reports.labels import PrintError

    config = load(args.config)
    engine, sessions = open_library(args.config)
    try:
        sheet = library_cards_pdf(sessions, config, args.out, reader_codes=args.reader,
                                  class_name=args.class_name, kind=args.kind,
                                  photos_dir=args.photos, opac_url=args.opac_url,
                                  per_page="cr80" if args.cr80 else "a4")
    except PrintError as exc:
        return _refused("cards", exc)
    finally:
        engine.dispose()
    print(f"Đã in / printed {sheet.cards} thẻ / cards, {sheet.pages} trang / pages -> {args.out}")
    for path in sheet.photo_problems:
        print(f"  không đọc được ảnh, để khung trống / photo unreadable, frame left empty: {path}")
    return 0


def add_parser(sub: Any) -> None:
    labels = sub.add_parser(
        "labels", help="barcode label sheets (PDF) for copies: by ĐKCB range, receipt or list")
    labels.add_argument("--config", required=True, help="the server's config")
    labels.add_argument("--out", required=True, type=Path, help="the PDF to write")
    labels.add_argument("--kind", help="the ĐKCB prefix: GK, TK, NV, TN, ...")
    labels.add_argument("--from", dest="first", metavar="DKCB",
                        help="the first ĐKCB (TK.00001, or just 1 with --kind)")
    labels.add_argument("--to", dest="last", metavar="DKCB", help="the last ĐKCB")
    labels.add_argument("--receipt", type=int, metavar="N",
                        help="every copy of the receipt (phiếu nhập) with this register number")
    labels.add_argument("--accession", type=_codes, metavar="A,B,...",
                        help="these copies, by ĐKCB or barcode, in this order")
    labels.add_argument("--layout", help="3x8 (default), 4x10, 3x7, 2x7 or one from the config")
    labels.add_argument("--skip", type=_not_negative, default=0, metavar="N",
                        help="labels already used on the first sheet")
    labels.set_defaults(func=run_labels)

    cards = sub.add_parser("cards", help="library cards (PDF, CR80): by class, kind or card number")
    cards.add_argument("--config", required=True, help="the server's config")
    cards.add_argument("--out", required=True, type=Path, help="the PDF to write")
    cards.add_argument("--class", dest="class_name", metavar="CLASS", help="a class, e.g. 6A1")
    cards.add_argument("--kind", choices=["student", "teacher", "staff"])
    cards.add_argument("--reader", type=_codes, metavar="CODE,...",
                       help="these readers, by card number, in this order")
    cards.add_argument("--photos", type=Path, metavar="DIR",
                       help="photos named by card number: DIR/HS-2024-0153.jpg (or .png)")
    cards.add_argument("--opac-url", metavar="URL",
                       help="the catalogue's address (http://thuvien.truong.edu.vn): adds a QR "
                            "code to the reader's sign-in page")
    cards.add_argument("--cr80", action="store_true",
                       help="one card per CR80 page, for a card printer (default: 10 per A4 "
                            "with crop marks)")
    cards.set_defaults(func=run_cards)
