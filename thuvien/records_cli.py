"""`thuvien stocktake ...` and `thuvien weed ...`: kiểm kê and thanh lý from a terminal.

The same functions as the staff web (server/stocktake.py, server/weeding.py). Every
message is Vietnamese first, English second. Exit codes: 0 done, 1 refused (nothing
written), 3 done but some codes were unknown or need a look.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import getpass
import sys
from pathlib import Path
from typing import Any

from thuvien.imports import open_library


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _read_codes(path: str) -> list[str]:
    """Codes one per line or separated by spaces, commas or semicolons (a scanner's dump)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    return [code for code in text.replace(",", " ").replace(";", " ").split() if code]


def _fail(command: str, error: Any) -> int:
    print(f"thuvien {command}: {error.vi}\nthuvien {command}: {error.en}", file=sys.stderr)
    return 1


# --- stocktake -------------------------------------------------------------------------------

def _current(sessions: Any) -> Any:
    from server.stocktake import StocktakeError, open_stocktake

    current = open_stocktake(sessions)
    if current is None:
        raise StocktakeError("Không có đợt kiểm kê nào đang mở: chạy `thuvien stocktake start TÊN`.",
                             "No stocktake is open: run `thuvien stocktake start NAME`.")
    return current


def _print_progress(sessions: Any, stocktake_id: int) -> None:
    from server.stocktake import progress

    shelves = progress(sessions, stocktake_id)
    print("  Giá / shelf                    cần kiểm / expected   đã thấy / seen   còn / left")
    for shelf in shelves:
        name = shelf.location or "(chưa xếp giá / no shelf)"
        print(f"  {name:<30} {shelf.expected:>19} {shelf.seen:>16} {shelf.left:>12}")
    expected = sum(s.expected for s in shelves)
    seen = sum(s.seen for s in shelves)
    print(f"  {'Cộng / total':<30} {expected:>19} {seen:>16} {expected - seen:>12}")


def cmd_stocktake(args: argparse.Namespace) -> int:
    from server import stocktake
    from server.stocktake import StocktakeError

    engine, sessions = open_library(args.config)
    try:
        return _stocktake(args, sessions, stocktake)
    except StocktakeError as error:
        return _fail(f"stocktake {args.action}", error)
    except OSError as error:
        print(f"thuvien stocktake {args.action}: không đọc/ghi được tệp / cannot read or write "
              f"the file: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _stocktake(args: argparse.Namespace, sessions: Any, stocktake: Any) -> int:
    if args.action == "start":
        opened = stocktake.start(sessions, " ".join(args.name), args.by)
        print(f"Đã bắt đầu đợt kiểm kê số {opened.number}: {opened.name}\n"
              f"Started stocktake no. {opened.number}: {opened.name}")
        return 0
    current = _current(sessions)
    if args.action == "scan":
        codes = list(args.codes) + (_read_codes(args.file) if args.file else [])
        if not codes:
            print("thuvien stocktake scan: hãy cho mã sách hoặc --file / give codes or --file",
                  file=sys.stderr)
            return 1
        result = stocktake.scan(sessions, current.id, codes, shelf=args.shelf,
                                station=args.station)
        for line in result.lines:
            if line.outcome.value != "counted" or line in result.flagged:
                print(f"  {line.describe('vi')}\n    {line.describe('en')}")
        print(f"Đã kiểm / counted {result.counted}, đã kiểm trước đó / already counted "
              f"{result.already_counted}, mã lạ / unknown {len(result.unknown)}, "
              f"cần xem lại / to check {len(result.flagged)}")
        return 3 if result.unknown or result.flagged else 0
    if args.action == "status":
        print(f"Đợt kiểm kê số {current.number} / stocktake no. {current.number}: {current.name}")
        _print_progress(sessions, current.id)
        return 0
    if args.action == "missing":
        if args.out:
            return _write_missing(sessions, args.config, current.number, Path(args.out))
        count = 0
        for count, copy in enumerate(stocktake.missing_list(sessions, current.id), start=1):
            print(f"  {copy.accession_number:<12} {copy.location or '-':<16} {copy.title}")
        print(f"Chưa thấy / not found yet: {count}")
        return 0
    result = stocktake.close(sessions, current.id, args.by, mark_missing=args.mark_missing)
    print(f"Đã kết thúc đợt kiểm kê số {current.number} / closed stocktake no. {current.number}\n"
          f"  tổng / total {result['total']}, còn / present {result['present']}, "
          f"mất / missing {result['missing']}, đang mượn / on loan {result['on_loan']}, "
          f"xếp nhầm giá / misplaced {result['misplaced']}, giá trị mất / value missing "
          f"{result['value_missing']:,} đ".replace(",", "."))
    if args.mark_missing:
        print(f"  đã ghi mất / marked lost: {result['marked_lost']}")
    return 0


def _write_missing(sessions: Any, config_path: str, number: int, out: Path) -> int:
    from server.config import load
    from server.reports.registry import ReportParams
    from server.stocktake import missing_report

    suffix = out.suffix.lower()
    if suffix not in (".xlsx", ".pdf"):
        print("thuvien stocktake missing: --out phải là .xlsx hoặc .pdf / --out must be .xlsx or .pdf",
              file=sys.stderr)
        return 1
    report = missing_report(sessions, load(config_path),
                            ReportParams(options={"stocktake": str(number)}))
    if suffix == ".pdf":
        from server.reports.pdf import render_pdf

        render_pdf(report, out)
    else:
        from server.reports.xlsx import render_xlsx

        render_xlsx(report, out)
    print(f"Đã ghi / written: {out}")
    return 0


# --- weeding ---------------------------------------------------------------------------------

def _weeding_items(args: argparse.Namespace) -> list[tuple[str, str]]:
    from server.weeding import WeedingError

    items: list[tuple[str, str]] = []
    if args.codes:
        if not args.reason:
            raise WeedingError("Hãy cho lý do (--reason) cho các mã sách.",
                               "Give a --reason for the codes.")
        items += [(code, args.reason) for code in args.codes]
    if args.file:
        with open(args.file, encoding="utf-8-sig", newline="") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                cells = [cell.strip() for cell in row]
                if not any(cells) or (number == 1 and cells[0].casefold() in ("code", "mã", "đkcb")):
                    continue
                if len(cells) < 2 or not cells[1]:
                    if not args.reason:
                        raise WeedingError(f"Dòng {number} của {args.file}: thiếu lý do.",
                                           f"Line {number} of {args.file}: no reason.")
                    cells = [cells[0], args.reason]
                items.append((cells[0], cells[1]))
    return items


def cmd_weed(args: argparse.Namespace) -> int:
    from server.config import load
    from server.weeding import WeedingError, review, withdraw, withdrawals

    config = load(args.config)
    engine, sessions = open_library(args.config)
    try:
        if args.codes == ["list"] and not args.decision and not args.file:
            for summary in withdrawals(sessions):
                print(f"  {summary.number:>4}  QĐ {summary.decision_no:<20} "
                      f"{summary.decided_on:%d/%m/%Y}  {summary.copies:>6} bản / copies  "
                      f"{summary.value:>14,} đ".replace(",", "."))
            return 0
        items = _weeding_items(args)
        if args.dry_run:
            proposal = review(sessions, items)
            for line in proposal.problems:
                if line.problem:
                    print(f"  {line.problem.vi}\n    {line.problem.en}")
            print(f"Thanh lý được / can withdraw {proposal.count} trên / of {proposal.stock} bản / "
                  f"copies ({proposal.share:.1%})")
            if proposal.over_limit:
                print("  Quá 10% vốn sách: cần --force-over-10-percent / over 10% of the stock: "
                      "needs --force-over-10-percent")
            return 3 if proposal.problems or proposal.over_limit else 0
        if not args.decision or not args.date:
            raise WeedingError("Hãy cho --decision SỐ và --date YYYY-MM-DD.",
                               "Give --decision NUMBER and --date YYYY-MM-DD.")
        done = withdraw(sessions, config, args.decision, args.date, items, note=args.note,
                        by=args.by, allow_over_10_percent=args.force_over_10_percent)
        print(f"Đã thanh lý {len(items)} bản theo QĐ {done.decision_no} (số thứ tự {done.number})\n"
              f"Withdrew {len(items)} copies under decision {done.decision_no} (no. {done.number})\n"
              f"  danh sách / list: thuvien report weeding-list --option decision={done.number} "
              f"--format pdf --out thanh-ly-{done.number}.pdf --config {args.config}")
        return 0
    except WeedingError as error:
        return _fail("weed", error)
    except OSError as error:
        print(f"thuvien weed: không đọc được tệp / cannot read the file: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


# --- the parser -----------------------------------------------------------------------------

def _date(value: str) -> dt.date:
    for form in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(value, form).date()
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"ngày không hợp lệ / not a date: {value!r} "
                                     f"(YYYY-MM-DD or dd/mm/yyyy)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the server's config")
    parser.add_argument("--by", default=_user(), help="who does it (default: this login)")


def add_parser(sub: Any) -> None:
    take = sub.add_parser("stocktake", help="kiểm kê: start, scan, status, missing, close")
    actions = take.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="open a stocktake (one at a time)")
    start.add_argument("name", nargs="+", help="e.g. Kiểm kê năm học 2026-2027")
    scan = actions.add_parser("scan", help="count copies by barcode, ĐKCB or RFID id")
    scan.add_argument("codes", nargs="*")
    scan.add_argument("--shelf", help="the shelf being counted (flags misplaced copies)")
    scan.add_argument("--file", help="a file of codes (one a line, or separated by spaces)")
    scan.add_argument("--station", default="cli", help="where it was scanned (default cli)")
    actions.add_parser("status", help="progress per shelf")
    missing = actions.add_parser("missing", help="copies not found yet")
    missing.add_argument("--out", help="write the list to a .xlsx or .pdf file")
    close = actions.add_parser("close", help="close it: present, missing, on loan, misplaced")
    close.add_argument("--mark-missing", action="store_true",
                       help="mark the missing copies lost (with a note in the ĐKCB register)")
    for parser in (start, scan, actions.choices["status"], missing, close):
        _common(parser)
        parser.set_defaults(func=cmd_stocktake)

    weed = sub.add_parser("weed", help="thanh lý: withdraw copies under a decision; `weed list`")
    weed.add_argument("codes", nargs="*", help="copies' codes; or the word `list` for past decisions")
    weed.add_argument("--decision", help="the decision's number (số quyết định)")
    weed.add_argument("--date", type=_date, help="the decision's date (YYYY-MM-DD)")
    weed.add_argument("--reason", help="mất, rách nát, lạc hậu, mối mọt, chương trình cũ")
    weed.add_argument("--file", help="a CSV of code,reason lines")
    weed.add_argument("--note", help="a note on the decision")
    weed.add_argument("--force-over-10-percent", action="store_true",
                      help="allow a round over 10%% of the stock")
    weed.add_argument("--dry-run", action="store_true", help="check only, write nothing")
    _common(weed)
    weed.set_defaults(func=cmd_weed)


def run(args: argparse.Namespace) -> int:
    """Run a parsed `stocktake` or `weed` command."""
    return int(args.func(args))
