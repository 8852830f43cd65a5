"""`thuvien user add|list|passwd`: the staff web's accounts, from the command line.

The first admin can only be made here (the web has no sign-up page). A password is
typed at a hidden prompt, twice, or read from an environment variable named by
`--password-env` (for scripts): never from the command line, where `ps` and the shell's
history would keep it.

Only the standard library is imported at module level, as in `thuvien.stations`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

ROLES = ("admin", "librarian", "viewer")


class UserAdminError(Exception):
    """A refusal a person must read: Vietnamese first, then English."""

    def __init__(self, vi: str, en: str) -> None:
        self.vi = vi
        self.en = en
        super().__init__(f"{vi}\n{en}")


def read_password(env_name: str | None, *, prompt: Any = None) -> str:
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise UserAdminError(f"Biến môi trường {env_name} chưa được đặt hoặc trống.",
                                 f"the environment variable {env_name} is unset or empty")
        return value
    prompt = prompt or getpass.getpass
    first = prompt("Mật khẩu mới / New password: ")
    second = prompt("Nhập lại / Again: ")
    if first != second:
        raise UserAdminError("Hai lần nhập mật khẩu không khớp.", "the two passwords differ")
    return first


def _open(config_path: str) -> tuple[Any, Any]:
    """The server config's engine, on a database at the newest schema."""
    from server import db
    from server.config import load

    config = load(config_path)  # a ConfigError is printed by thuvien.cli.main
    url = config.database.url
    if db.current_revision(url) != db.head_revision():
        raise UserAdminError(
            f"Cơ sở dữ liệu chưa ở phiên bản mới nhất: hãy chạy `thuvien db upgrade --config {config_path}`.",
            f"the database is not at the newest schema: run `thuvien db upgrade --config {config_path}`")
    engine = db.make_engine(url, config.database.sqlite_synchronous)
    return engine, db.session_factory(engine)


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)


def add_user(config_path: str, name: str, role: str, password: str) -> None:
    from server.web.accounts import AccountError, add_user as add

    engine, sessions = _open(config_path)
    try:
        with sessions.begin() as db:
            add(db, name, role, password, _now())
    except AccountError as exc:
        raise UserAdminError(f"Không tạo được tài khoản {name}.", str(exc)) from None
    finally:
        engine.dispose()


def set_password(config_path: str, name: str, password: str) -> None:
    from server.web.accounts import AccountError, set_password as change

    engine, sessions = _open(config_path)
    try:
        with sessions.begin() as db:
            change(db, name, password, _now())
    except AccountError as exc:
        raise UserAdminError(f"Không đổi được mật khẩu của {name}.", str(exc)) from None
    finally:
        engine.dispose()


def list_users(config_path: str) -> list[tuple[str, str, bool, Any]]:
    from server.web.accounts import list_users as listed

    engine, sessions = _open(config_path)
    try:
        with sessions() as db:
            return [(u.name, u.role, u.active, u.created_at) for u in listed(db)]
    finally:
        engine.dispose()


def cmd_user(args: argparse.Namespace) -> int:
    try:
        if args.user_command == "add":
            add_user(args.config, args.name, args.role, read_password(args.password_env))
            print(f"đã tạo tài khoản {args.name} ({args.role}) / created user {args.name} ({args.role})")
        elif args.user_command == "passwd":
            set_password(args.config, args.name, read_password(args.password_env))
            print(f"đã đổi mật khẩu của {args.name} / password changed for {args.name}; "
                  "its sessions were ended")
        else:
            users = list_users(args.config)
            if not users:
                print("chưa có tài khoản nào / no users yet: `thuvien user add NAME --role admin`")
            for name, role, active, created in users:
                state = "" if active else "  (inactive)"
                print(f"{name:24} {role:10} {created:%Y-%m-%d}{state}")
    except UserAdminError as exc:
        print(f"thuvien user: {exc.vi}\n{exc.en}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("", file=sys.stderr)
        return 130
    return 0


def add_parser(sub: Any) -> None:
    user = sub.add_parser("user", help="staff accounts for the web pages")
    user_sub = user.add_subparsers(dest="user_command", required=True)

    add = user_sub.add_parser("add", help="create a staff account (the first admin, too)")
    add.add_argument("name", help="login name: a-z, 0-9, '.', '_', '-'")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--config", required=True, help="the server's config file")
    add.add_argument("--password-env", metavar="VAR",
                     help="read the password from this environment variable instead of a prompt")
    add.set_defaults(func=cmd_user)

    listing = user_sub.add_parser("list", help="list the staff accounts")
    listing.add_argument("--config", required=True)
    listing.set_defaults(func=cmd_user)

    passwd = user_sub.add_parser("passwd", help="set a staff account's password")
    passwd.add_argument("name")
    passwd.add_argument("--config", required=True)
    passwd.add_argument("--password-env", metavar="VAR")
    passwd.set_defaults(func=cmd_user)
