"""`thuvien aggregate`: the commune office's or the province's server (aggregate mode).

    thuvien aggregate --config F [--check-config] [--upgrade-db]   run ingest + web until SIGTERM
    thuvien aggregate db upgrade --config F                         create or migrate its database
    thuvien aggregate report --config F --year 2026 --format pdf|xlsx [--out F]
                             [--commune NAME] [--level primary] [--lang vi|en]
    thuvien aggregate user add|list|passwd ... --config F           its web's accounts

Only the standard library is imported at module level, as in `thuvien.users`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "cmd_aggregate"]


def _load(path: str) -> Any:
    from server.aggregate.config import load

    return load(path)  # a ConfigError is printed by thuvien.cli.main


def _run(args: argparse.Namespace) -> int:
    from server.aggregate import schema
    from server.aggregate.app import AggregateDatabaseNotReady, run_aggregate
    from server.web.run import WebStartError
    from thuvien.cli import _stop_on_signals

    config = _load(args.config)
    if args.check_config:
        print(f"{args.config}: OK ({config.level} {config.name}, {len(config.schools)} schools listed)")
        return 0
    if args.upgrade_db:
        schema.upgrade(config.database.url)
    try:
        run_aggregate(config, _stop_on_signals())
    except (AggregateDatabaseNotReady, WebStartError) as exc:
        print(f"thuvien aggregate: {exc}", file=sys.stderr)
        return 1
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from server.aggregate import schema

    config = _load(args.config)
    url = config.database.url
    schema.upgrade(url)
    listed = _sync_schools(config)
    print(f"aggregate database is at schema {schema.current_revision(url)}, {listed} schools listed")
    return 0


def _sync_schools(config: Any) -> int:
    """The config's list of schools into the database (the server does it at start)."""
    from server.aggregate import schema
    from server.aggregate.ingest import Ingest

    engine = schema.make_engine(config.database.url)
    try:
        return Ingest(engine, config).sync_schools()
    finally:
        engine.dispose()


def _report(args: argparse.Namespace) -> int:
    from server import db
    from server.aggregate import schema
    from server.aggregate.app import AggregateDatabaseNotReady, check_schema
    from server.aggregate.reports import province_report, render
    from server.reports.period import year_of

    config = _load(args.config)
    try:
        check_schema(config.database.url)
    except AggregateDatabaseNotReady as exc:
        print(f"thuvien aggregate report: {exc}", file=sys.stderr)
        return 1
    import datetime as dt

    year = args.year or year_of(dt.date.today())
    _sync_schools(config)  # the report follows the list in the config given
    engine = schema.make_engine(config.database.url)
    try:
        report = province_report(db.read_only(db.session_factory(engine)), year, config,
                                 commune=args.commune, level=args.level)
    finally:
        engine.dispose()
    out = Path(args.out or f"tong-hop-{year}.{args.format}")
    out.write_bytes(render(report, args.format, args.lang))
    print(f"{report.title.vi} / {report.title.en}: {out}")
    return 0


def _users(args: argparse.Namespace) -> int:
    import datetime as dt

    from server import db
    from server.aggregate import schema
    from server.aggregate.app import AggregateDatabaseNotReady, check_schema
    from server.web import accounts
    from thuvien.users import UserAdminError, read_password

    config = _load(args.config)
    now = dt.datetime.now(dt.UTC)
    try:
        check_schema(config.database.url)
        engine = schema.make_engine(config.database.url)
        try:
            with db.session_factory(engine).begin() as session:
                if args.user_command == "add":
                    accounts.add_user(session, args.name, args.role, read_password(args.password_env), now)
                    print(f"đã tạo tài khoản {args.name} ({args.role}) / created user {args.name} ({args.role})")
                elif args.user_command == "passwd":
                    accounts.set_password(session, args.name, read_password(args.password_env), now)
                    print(f"đã đổi mật khẩu của {args.name} / password changed for {args.name}")
                else:
                    for user in accounts.list_users(session):
                        print(f"{user.name:24} {user.role:10} {user.created_at:%Y-%m-%d}"
                              f"{'' if user.active else '  (inactive)'}")
        finally:
            engine.dispose()
    except AggregateDatabaseNotReady as exc:
        print(f"thuvien aggregate user: {exc}", file=sys.stderr)
        return 1
    except accounts.AccountError as exc:
        print(f"thuvien aggregate user: không thực hiện được / refused: {exc}", file=sys.stderr)
        return 1
    except UserAdminError as exc:
        print(f"thuvien aggregate user: {exc.vi}\n{exc.en}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        return 130
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    command = getattr(args, "aggregate_command", None)
    if not getattr(args, "config", None):
        print("thuvien aggregate: thiếu --config / --config is required", file=sys.stderr)
        return 2
    if command is None:
        return _run(args)
    return {"db": _db_upgrade, "report": _report, "user": _users}[command](args)


def add_parser(sub: Any) -> None:
    aggregate = sub.add_parser("aggregate", help="the commune office's or province's server "
                                                 "(collects the schools' reports)")
    aggregate.add_argument("--config", help="the aggregate config (config/aggregate.example.toml)")
    aggregate.add_argument("--check-config", action="store_true", help="only validate the config")
    aggregate.add_argument("--upgrade-db", action="store_true",
                           help="create or migrate the database before starting")
    aggregate.set_defaults(func=cmd_aggregate)
    commands = aggregate.add_subparsers(dest="aggregate_command")

    def with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # SUPPRESS: `thuvien aggregate --config F report` keeps the F given before.
        parser.add_argument("--config", default=argparse.SUPPRESS, help="the aggregate config")
        return parser

    database = commands.add_parser("db", help="the aggregate database's schema")
    database.add_argument("db_command", choices=["upgrade"])
    with_config(database)

    report = with_config(commands.add_parser("report", help="the office's report as PDF or Excel"))
    report.add_argument("--year", type=int, help="the school year by its first year: 2026 for 2026-2027 "
                                                 "(default: the current one)")
    report.add_argument("--format", choices=["pdf", "xlsx"], default="pdf")
    report.add_argument("--out", help="the file to write (default: tong-hop-YEAR.FORMAT here)")
    report.add_argument("--commune", help="only the schools of this commune")
    report.add_argument("--level", choices=["preschool", "primary", "lower_secondary", "upper_secondary"])
    report.add_argument("--lang", choices=["vi", "en"], default="vi")

    user = commands.add_parser("user", help="accounts for the aggregate's web pages")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = with_config(user_commands.add_parser("add", help="create an account (admin or viewer)"))
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "viewer"], required=True)
    add.add_argument("--password-env", metavar="VAR", help="read the password from this variable")
    with_config(user_commands.add_parser("list", help="list the accounts"))
    passwd = with_config(user_commands.add_parser("passwd", help="set an account's password"))
    passwd.add_argument("name")
    passwd.add_argument("--password-env", metavar="VAR")
