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

    config = _server_config(args.config)
    if args.check_config:
        print(f"{args.config}: OK (server for site {config.site})")
        return 0
    try:
        run_server(config, _stop_on_signals())
    except DatabaseNotReady as exc:
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
    if args.headless:
        return run_station(config, _stop_on_signals())
    return run_touch_station(config, _stop_on_signals())


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


def cmd_demo(args: argparse.Namespace) -> int:
    from thuvien.demo import run_demo

    return run_demo(Path(args.dir), broker=args.broker, port=args.port, headless=args.headless)


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

    check = sub.add_parser("check-config", help="validate a server or station config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)
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
