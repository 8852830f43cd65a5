"""`thuvien sip2 serve|account`: the SIP2 gateway from the command line.

`serve` runs the SIP2 server alone on the server config's database (the `[sip2]`
section); the library server starts the same one itself when `[sip2] enabled = true`,
which is the usual way (its ledger entries then reach the gates over MQTT).
`account NAME` sets a registered station's SIP2 password in `[sip2] accounts_file`,
read at a hidden prompt or from `--password-env`, never from the command line.

Only the standard library is imported at module level, as in `thuvien.stations`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_serve(args: argparse.Namespace) -> int:
    from server import db
    from server.circulation import Circulation
    from server.config import load
    from server.sip2 import Sip2Server
    from thuvien.cli import _stop_on_signals

    config = load(args.config)
    sip2 = config.sip2  # type: ignore[attr-defined]
    if args.check_config:
        print(f"{args.config}: OK ([sip2] on port {sip2.port})")
        return 0
    if db.current_revision(config.database.url) != db.head_revision():
        print("thuvien sip2: the database is not at the newest schema: run "
              f"`thuvien db upgrade --config {args.config}`", file=sys.stderr)
        return 1
    if not sip2.accounts_file:
        print("thuvien sip2: [sip2] accounts_file is not set", file=sys.stderr)
        return 1
    engine = db.make_engine(config.database.url, config.database.sqlite_synchronous)
    server = Sip2Server(sip2, Circulation(db.session_factory(engine), config),
                        site=config.site, library_name=config.school_name,
                        language=config.language)
    server.start()
    try:
        _stop_on_signals().wait()
    finally:
        server.stop()
        engine.dispose()
    return 0


def cmd_account(args: argparse.Namespace) -> int:
    from server.config import load
    from server.sip2.config import AccountsError, remove_account, set_password
    from thuvien.users import UserAdminError, read_password

    config = load(args.config)
    path = config.sip2.accounts_file  # type: ignore[attr-defined]
    if not path:
        print("thuvien sip2: set [sip2] accounts_file in the config first", file=sys.stderr)
        return 1
    try:
        if args.remove:
            removed = remove_account(path, args.name)
            print(f"{'removed' if removed else 'no account'}: {args.name}")
            return 0 if removed else 1
        set_password(path, args.name, read_password(args.password_env))
    except (AccountsError, UserAdminError) as exc:
        print(f"thuvien sip2: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        return 130
    print(f"đã đặt mật khẩu SIP2 cho {args.name} / SIP2 password set for {args.name} "
          "(it must also be a registered kiosk or desk: `thuvien station add`)")
    return 0


def add_parser(sub: Any) -> None:
    sip2 = sub.add_parser("sip2", help="the SIP2 gateway for self-check machines")
    sip2_sub = sip2.add_subparsers(dest="sip2_command", required=True)

    serve = sip2_sub.add_parser("serve", help="run the SIP2 server alone")
    serve.add_argument("--config", required=True, help="the server's config file")
    serve.add_argument("--check-config", action="store_true")
    serve.set_defaults(func=cmd_serve)

    account = sip2_sub.add_parser("account", help="set (or remove) a station's SIP2 password")
    account.add_argument("name", help="the registered station's name")
    account.add_argument("--config", required=True)
    account.add_argument("--password-env", metavar="VAR",
                         help="read the password from this environment variable")
    account.add_argument("--remove", action="store_true", help="remove the account")
    account.set_defaults(func=cmd_account)
