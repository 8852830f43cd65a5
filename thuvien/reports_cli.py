"""`thuvien report NAME`: any register or report as PDF, Excel or JSON, for cron and
scripts; `thuvien report list` names them. The staff web builds the same reports with
the same functions (`server.reports.registry`)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from thuvien.imports import open_library


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"KEY=VALUE expected, got {text!r}")
    return key.strip(), value.strip()


def cmd_report(args: argparse.Namespace) -> int:
    from server.config import load
    from server.reports.registry import ReportParams, all_reports, get_report, render_report

    if args.name == "list":
        for spec in sorted(all_reports().values(), key=lambda s: (s.group.en, s.name)):
            print(f"{spec.name:24} {'/'.join(spec.formats):15} {spec.title.vi} / {spec.title.en}")
        return 0
    if not args.config:
        print("thuvien report: thiếu --config / --config is required", file=sys.stderr)
        return 2
    try:
        spec = get_report(args.name)
    except KeyError as exc:
        print(f"thuvien report: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.format not in spec.formats:
        print(f"thuvien report: {spec.name} không có dạng {args.format} / has no {args.format} form "
              f"({', '.join(spec.formats)})", file=sys.stderr)
        return 2
    config = load(args.config)
    params = ReportParams(school_year=args.year, since=args.since, until=args.until,
                          options=dict(args.option or []))
    out = Path(args.out or f"{spec.name}{'-' + str(args.year) if args.year else ''}.{args.format}")
    engine, sessions = open_library(args.config)
    try:
        data = render_report(spec, args.format, sessions, config, params, args.lang)
    except (ValueError, LookupError) as exc:
        # Builders refuse bad options (an unknown kind, a decision that does not exist)
        # with a message in both languages.
        print(f"thuvien report {spec.name}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    out.write_bytes(data)
    print(f"{spec.title.vi} / {spec.title.en}: {out}")
    return 0


def add_parser(sub: Any) -> None:
    report = sub.add_parser("report", help="a register or report as PDF, Excel or JSON "
                                           "(`thuvien report list` names them)")
    report.add_argument("name", help="the report (or `list`)")
    report.add_argument("--config", help="the server's config")
    report.add_argument("--format", choices=["pdf", "xlsx", "json"], default="pdf")
    report.add_argument("--out", help="the file to write (default: NAME[-YEAR].FORMAT here)")
    report.add_argument("--year", type=int, help="the school year by its first year: 2026 for 2026-2027 "
                                                 "(default: the current one)")
    report.add_argument("--since", type=dt.date.fromisoformat, metavar="YYYY-MM-DD")
    report.add_argument("--until", type=dt.date.fromisoformat, metavar="YYYY-MM-DD")
    report.add_argument("--option", type=_option, action="append", metavar="KEY=VALUE",
                        help="a report's own choice, e.g. kind=TK or class=6A1 (repeatable)")
    report.add_argument("--lang", choices=["vi", "en"], default="vi")
    report.set_defaults(func=cmd_report)
