"""`thuvien`: the one console command, and its subcommands.

This package is the composition root: it is the only code that may import both
`server` and `kiosk` (ARCHITECTURE.md forbids either importing the other).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import tomllib
from pathlib import Path

from protocol.configfile import ConfigError
from thuvien import imports as record_imports
from thuvien import aggregate_cli, bridge_cli, intake_cli, labels_cli, records_cli, reports_cli, sip2_cli
from thuvien import stations as station_admin
from thuvien import users as user_admin


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def _handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop


def _setup_logging(level: str, path: str | None = None) -> None:
    handler: logging.Handler = logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler()
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _server_config(path: str):  # type: ignore[no-untyped-def]
    from server.config import load

    return load(path)


def cmd_server(args: argparse.Namespace) -> int:
    from server.app import DatabaseNotReady, run_server
    from server.web.run import WebStartError

    config = _server_config(args.config)
    if args.check_config:
        print(f"{args.config}: OK (server for site {config.site})")
        return 0
    try:
        run_server(config, _stop_on_signals())
    except (DatabaseNotReady, WebStartError) as exc:
        print(f"thuvien server: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_kiosk(args: argparse.Namespace) -> int:
    from kiosk.cli import run_station, run_touch_station
    from kiosk.config import load

    config = load(args.config)
    if args.check_config:
        print(f"{args.config}: OK (station {config.station} of site {config.site})")
        return 0
    # Gates and return boxes have no screen: their config's kind decides what runs.
    if config.kind == "gate":
        from kiosk.gate import run_gate

        return run_gate(config, _stop_on_signals())
    if config.kind == "returnbox":
        from kiosk.returnbox import run_returnbox

        return run_returnbox(config, _stop_on_signals())
    if args.headless:
        return run_station(config, _stop_on_signals())
    return run_touch_station(config, _stop_on_signals())


def cmd_sim(args: argparse.Namespace) -> int:
    from thuvien.simctl import run_sim

    return run_sim(args.station, args.words, args.dir)


def _database_url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url
    if args.config:
        return _server_config(args.config).database.url
    raise SystemExit("thuvien db: give --config FILE or --url URL")


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from server import db

    url = _database_url(args)
    db.upgrade(url)
    print(f"database {url} is at schema {db.current_revision(url)}")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from server import db
    from server.seed import SeedError, seed_demo
    from thuvien.demo import school_year_start

    config = _server_config(args.config)
    db.upgrade(config.database.url)
    engine = db.make_engine(config.database.url, config.database.sqlite_synchronous)
    try:
        summary = seed_demo(db.session_factory(engine), school_year_start=school_year_start())
    except SeedError as exc:
        print(f"thuvien seed-demo: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print("\n".join(summary.lines()))
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from server.backup import BackupError, backup, default_backup_dir

    config = _server_config(args.config)
    settings = config.backup
    try:
        folder = Path(args.to or settings.dir or default_backup_dir(config.database.url))
        result = backup(config.database.url, config.site, folder,
                        keep=args.keep or settings.keep, compress=args.gzip or settings.gzip,
                        step_pages=settings.step_pages)
    except BackupError as exc:
        print(f"thuvien backup: {exc}", file=sys.stderr)
        return 1
    print(f"{result.path}: schema {result.revision}, {result.ledger_entries} ledger entries, "
          f"{result.size_bytes} bytes in {result.seconds:.2f} s")
    for path in result.removed:
        print(f"removed {path}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from server.backup import BackupError, restore

    config = _server_config(args.config)
    try:
        result = restore(config.database.url, Path(args.file), force=args.force)
    except BackupError as exc:
        print(f"thuvien restore: {exc}", file=sys.stderr)
        return 1
    upgraded = f" (upgraded from {result.upgraded_from})" if result.upgraded_from else ""
    print(f"restored {args.file} into {result.target}: schema {result.revision}{upgraded}, "
          f"{result.ledger_entries} ledger entries")
    if result.kept:
        print(f"the replaced database is kept as {result.kept}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        data = {}
    if "station" in data:
        from kiosk.config import load as load_station

        config = load_station(args.file)
        print(f"{args.file}: OK (station {config.station} of site {config.site})")
    else:
        server_config = _server_config(args.file)
        print(f"{args.file}: OK (server for site {server_config.site}, "
              f"{len(server_config.circulation.policy)} loan policies)")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    import json

    from drivers.discovery import discover, format_inventory

    inventory = discover(args.root)
    if args.json:
        print(json.dumps(inventory.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_inventory(inventory), end="")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from kiosk.config import load
    from thuvien.doctor import Options, all_ok, format_report, run_doctor

    config = load(args.config)
    reports = run_doctor(config, Options(wait_s=args.wait, timeout_s=args.timeout,
                                         print_test=args.print_test))
    if args.json:
        print(json.dumps({"config": args.config, "station": config.station, "ok": all_ok(reports),
                          "devices": [report.to_dict() for report in reports]},
                         ensure_ascii=False, indent=2))
    else:
        print(f"thuvien doctor: station {config.station} ({config.kind}), {args.config}")
        print(format_report(reports), end="")
    return 0 if all_ok(reports) else 1


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    from thuvien.demo import run_demo

    return run_demo(Path(args.dir), broker=args.broker, port=args.port, headless=args.headless,
                    web_port=args.web_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thuvien", description="thuvien: school library stations")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="start a whole demo library on this machine")
    demo.add_argument("--dir", default="demo-data", help="where the demo keeps its files")
    demo.add_argument("--broker", default="auto", choices=["auto", "mosquitto", "embedded"])
    demo.add_argument("--port", type=int, default=None, help="broker port (default 1883 if free)")
    demo.add_argument("--headless", action="store_true",
                      help="the kiosk in this terminal instead of a touch-screen window")
    demo.add_argument("--web-port", type=int, default=None,
                      help="the staff pages and catalogue (default 8080 if free)")
    demo.set_defaults(func=cmd_demo)

    server = sub.add_parser("server", help="run the library server")
    server.add_argument("--config", required=True)
    server.add_argument("--check-config", action="store_true", help="only validate the config")
    server.set_defaults(func=cmd_server)

    kiosk = sub.add_parser("kiosk", help="run a station")
    kiosk.add_argument("--config", required=True)
    kiosk.add_argument("--headless", action="store_true",
                       help="terminal station, no screen (default: the touch screen)")
    kiosk.add_argument("--check-config", action="store_true", help="only validate the config")
    kiosk.set_defaults(func=cmd_kiosk)

    database = sub.add_parser("db", help="database schema")
    db_sub = database.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="create or migrate the database to the newest schema")
    upgrade.add_argument("--config")
    upgrade.add_argument("--url")
    upgrade.set_defaults(func=cmd_db_upgrade)

    seed = sub.add_parser("seed-demo", help="fill an empty database with a sample school library")
    seed.add_argument("--config", required=True)
    seed.set_defaults(func=cmd_seed_demo)

    take = sub.add_parser("backup", help="copy the database while the server runs")
    take.add_argument("--config", required=True)
    take.add_argument("--to", help="folder for the copy (default: [backup] dir)")
    take.add_argument("--keep", type=int, choices=range(1, 1001), metavar="N",
                      help="keep the newest N copies (default: [backup] keep)")
    take.add_argument("--gzip", action="store_true", help="compress the SQLite copy")
    take.set_defaults(func=cmd_backup)

    back = sub.add_parser("restore", help="put a backup in place of the database (server stopped)")
    back.add_argument("file")
    back.add_argument("--config", required=True)
    back.add_argument("--force", action="store_true", help="replace an existing database")
    back.set_defaults(func=cmd_restore)

    check = sub.add_parser("check-config", help="validate a server or station config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    station_admin.add_parser(sub)  # station add | list | remove | acl
    user_admin.add_parser(sub)  # user add | list | passwd
    record_imports.add_parser(sub)  # import readers | catalogue; export catalogue
    intake_cli.add_parser(sub)  # intake add | list | show
    labels_cli.add_parser(sub)  # labels | cards
    records_cli.add_parser(sub)  # stocktake start|scan|status|missing|close; weed ...|list
    reports_cli.add_parser(sub)  # report NAME | list
    sip2_cli.add_parser(sub)  # sip2 serve | account
    bridge_cli.add_parser(sub)  # bridge config | acl
    aggregate_cli.add_parser(sub)  # aggregate [--config F] | db upgrade | report | user

    devices = sub.add_parser("devices", help="list the devices attached to this machine")
    devices.add_argument("--json", action="store_true", help="machine-readable output")
    devices.add_argument("--root", default="/", help=argparse.SUPPRESS)  # a fake /dev + /sys
    devices.set_defaults(func=cmd_devices)

    sim = sub.add_parser("sim", help="lay books on a demo station's simulated RFID reader")
    sim.add_argument("station", help="the station (gate-1, returnbox-1) or its socket's path")
    sim.add_argument("words", nargs=argparse.REMAINDER, help="put ITEM | pass ITEM | card CARD | "
                     "lift ITEM | list | clear | afi ITEM | unplug | replug")
    sim.add_argument("--dir", default="demo-data", help="the demo's folder (as for `thuvien demo`)")
    sim.set_defaults(func=cmd_sim)

    doctor = sub.add_parser("doctor", help="test each device a station config names")
    doctor.add_argument("--config", required=True)
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--print-test", action="store_true", help="print a test receipt")
    doctor.add_argument("--wait", type=_positive, default=2.0,
                        help="seconds a device may take to report ok (default 2)")
    doctor.add_argument("--timeout", type=_positive, default=15.0,
                        help="seconds before a device counts as hung (default 15)")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "demo":
        _setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"thuvien: invalid configuration\n{exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
