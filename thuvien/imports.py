"""`thuvien import readers|catalogue` and `thuvien export catalogue`: the librarian's records in and out.

Each command prints what it did and, row by row, what it did not take and why, in
Vietnamese and English; nothing of a file is written when the file itself cannot be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any


def open_library(config_path: str) -> tuple[Any, Any]:
    """(engine, sessionmaker) for the server config at `config_path`; refuses a database
    that is not at the newest schema. Every records command opens the library this way."""
    from server import db
    from server.config import load

    config = load(config_path)
    url = config.database.url
    if db.current_revision(url) != db.head_revision():
        raise SystemExit(f"thuvien: cơ sở dữ liệu chưa ở lược đồ mới nhất: chạy `thuvien db upgrade "
                         f"--config {config_path}`\nthuvien: the database is not at the newest "
                         f"schema: run `thuvien db upgrade --config {config_path}`")
    engine = db.make_engine(url, config.database.sqlite_synchronous)
    return engine, db.session_factory(engine)


def _progress(done: int, total: int) -> None:
    print(f"\r  {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def cmd_import_readers(args: argparse.Namespace) -> int:
    from server.importers.readers import ReaderImportError, import_readers
    from server.importers.teachers import import_teachers

    engine, sessions = open_library(args.config)
    now = dt.datetime.now(dt.timezone.utc)
    try:
        if args.what == "teachers":
            report = import_teachers(sessions, args.file, today=now, progress=_progress)
        else:
            report = import_readers(sessions, args.file, today=now,
                                    school_year_start=args.new_year, progress=_progress)
    except ReaderImportError as exc:
        print(f"thuvien import {args.what}: {exc.message_vi}\nthuvien import {args.what}: {exc}",
              file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"Đã nhập / imported: {report.created} mới / new, {report.updated} cập nhật / updated, "
          f"{report.unchanged} không đổi / unchanged, {report.deactivated} thôi học / deactivated")
    for problem in report.not_taken:
        print(f"  dòng / row {problem.row}: {problem.reason_vi} / {problem.reason_en}")
    return 0 if not report.not_taken else 3


def cmd_import_catalogue(args: argparse.Namespace) -> int:
    from server.importers.catalogue import CatalogueFileError, import_catalogue

    engine, sessions = open_library(args.config)
    try:
        report = import_catalogue(sessions, args.file, progress=_progress)
    except CatalogueFileError as exc:
        print(f"thuvien import catalogue: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"Đã đọc / read {report.read} ({report.format}): {report.created} đầu sách mới / new titles, "
          f"{report.merged} gộp theo ISBN / merged by ISBN")
    for problem in report.problems:
        print(f"  {problem}")
    return 3 if report.skipped else 0


def cmd_export_catalogue(args: argparse.Namespace) -> int:
    from server.importers.catalogue import export_marc

    engine, sessions = open_library(args.config)
    try:
        if args.format == "xlsx":
            from server.config import load
            from server.importers.catalogue_xlsx import export_catalogue_xlsx

            count = export_catalogue_xlsx(sessions, args.file, school_name=load(args.config).school_name)
        else:
            count = export_marc(sessions, args.file, format=args.format)
    finally:
        engine.dispose()
    what = "đầu sách / titles" if args.format == "xlsx" else "biểu ghi MARC 21 / MARC 21 records"
    print(f"Đã xuất / exported {count} {what} ({args.format}) to {args.file}")
    return 0


def add_parser(sub: Any) -> None:
    imports = sub.add_parser("import", help="readers or the catalogue from files")
    kinds = imports.add_subparsers(dest="what", required=True)
    readers = kinds.add_parser("readers", help="students from the sector database's Excel export (.xlsx, .csv)")
    readers.add_argument("file")
    readers.add_argument("--config", required=True, help="the server's config")
    readers.add_argument("--new-year", type=dt.date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                         help="the file is the WHOLE school's list for the school year starting "
                              "then: students not on it are deactivated (graduates), never deleted")
    readers.set_defaults(func=cmd_import_readers)
    teachers = kinds.add_parser("teachers", help="teachers from a school list (.xlsx, .csv); matched "
                                                 "by their id, else by name and birth date")
    teachers.add_argument("file")
    teachers.add_argument("--config", required=True, help="the server's config")
    teachers.set_defaults(func=cmd_import_readers)
    catalogue = kinds.add_parser("catalogue", help="titles from MARC 21 (.mrc/.iso, MARCXML .xml) "
                                                   "or a spreadsheet (.xlsx, .csv); same ISBN merged")
    catalogue.add_argument("file")
    catalogue.add_argument("--config", required=True, help="the server's config")
    catalogue.set_defaults(func=cmd_import_catalogue)

    export = sub.add_parser("export", help="the catalogue for other libraries")
    export_kinds = export.add_subparsers(dest="what", required=True)
    marc = export_kinds.add_parser("catalogue", help="every title as MARC 21 or Excel")
    marc.add_argument("file")
    marc.add_argument("--config", required=True, help="the server's config")
    marc.add_argument("--format", choices=["iso2709", "marcxml", "xlsx"], default="iso2709",
                      help="MARC 21 (ISO 2709 or MARCXML) or an Excel list other schools import back")
    marc.set_defaults(func=cmd_export_catalogue)
