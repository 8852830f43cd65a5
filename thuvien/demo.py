"""`thuvien demo`: a whole school library on one machine, for a newcomer.

A broker (Mosquitto when installed, else the embedded one), the server on SQLite filled
with a sample school, and one kiosk: the touch screen in a window where there is a
display (typed codes stand for the scanner), else the terminal kiosk. Ctrl-C stops it
all: the station and the server say "offline" before they go.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from sqlalchemy import func, select

DEMO_SITE = "thcs-demo"
DEMO_STATION = "kiosk-1"
# Tết Nguyên đán (the lunar new year) moves every year; the schools close around it.
TET = {2026: dt.date(2026, 2, 17), 2027: dt.date(2027, 2, 6), 2028: dt.date(2028, 1, 26),
       2029: dt.date(2029, 2, 13), 2030: dt.date(2030, 2, 3), 2031: dt.date(2031, 1, 23)}


def school_year_start(today: dt.date | None = None) -> dt.date:
    today = today or dt.date.today()
    year = today.year if today.month >= 8 else today.year - 1
    return dt.date(year, 9, 5)


def server_toml(database: Path, port: int, today: dt.date | None = None) -> str:
    start = school_year_start(today)
    end = dt.date(start.year + 1, 5, 31)
    tet = TET.get(start.year + 1, dt.date(start.year + 1, 2, 1))
    holidays = [dt.date(start.year + 1, 1, 1), dt.date(start.year + 1, 4, 30),
                dt.date(start.year + 1, 5, 1)]
    example = (Path(__file__).resolve().parent.parent / "config" / "server.example.toml")
    policies = example.read_text(encoding="utf-8").split("[circulation]", 1)[1].split("[calendar]", 1)[0]
    return f"""# Written by `thuvien demo` at every start; edits here are overwritten.
version = 1
site = "{DEMO_SITE}"
school_name = "Trường THCS Demo (thư viện mẫu)"
language = "vi"

[database]
url = "sqlite:///{database.resolve()}"

[mqtt]
host = "127.0.0.1"
port = {port}

[circulation]{policies}
[calendar]
timezone = "Asia/Ho_Chi_Minh"
closed_weekdays = ["sunday"]
holidays = [{", ".join(d.isoformat() for d in holidays)}]

[[calendar.closed_periods]]
name = "Nghỉ Tết Nguyên đán"
start = {(tet - dt.timedelta(days=4)).isoformat()}
end = {(tet + dt.timedelta(days=6)).isoformat()}

[[calendar.closed_periods]]
name = "Nghỉ hè"
start = {dt.date(start.year + 1, 6, 1).isoformat()}
end = {dt.date(start.year + 1, 8, 31).isoformat()}

[calendar.school_year]
start = {start.isoformat()}
end = {end.isoformat()}
"""


def station_toml(port: int, *, touch: bool) -> str:
    # The touch kiosk takes typed codes (a person at a laptop is its scanner) and prints
    # receipts to the simulated printer; the terminal kiosk reads this terminal.
    devices = ('[ui]\nschool_name = "Trường THCS Demo (thư viện mẫu)"\nfullscreen = false\n'
               'accept_typed = true\n\n[devices.scanner]\ntype = "simulated"\n\n'
               '[devices.printer]\ntype = "simulated"\n') if touch else \
        '[devices.scanner]\ntype = "stdin"\n'
    return f"""# Written by `thuvien demo` at every start; edits here are overwritten.
version = 1
site = "{DEMO_SITE}"
station = "{DEMO_STATION}"
kind = "kiosk"
language = "vi"

[mqtt]
host = "127.0.0.1"
port = {port}

{devices}"""


def has_display() -> bool:
    # SDL_VIDEODRIVER names a screen explicitly: kmsdrm on a Pi's console, offscreen in tests.
    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_demo(folder: Path, *, broker: str = "auto", port: int | None = None,
             headless: bool = False) -> int:
    from kiosk.cli import run_station, run_touch_station
    from kiosk.config import StationConfig
    from protocol.configfile import load_toml
    from server import db
    from server.app import start_server
    from server.config import ServerConfig
    from server.seed import seed_demo
    from thuvien.broker import start_broker

    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "thuvien.log"
    logging.basicConfig(level=logging.INFO, handlers=[logging.FileHandler(log_path, encoding="utf-8")],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if not headless and not has_display():
        print("Không thấy màn hình: kiosk chạy trong cửa sổ dòng lệnh này.\n"
              "No display found: the kiosk runs in this terminal (--headless).", flush=True)
        headless = True
    if port is None and _port_free(1883):
        port = 1883
    print("Đang khởi động thư viện mẫu / starting the demo library ...", flush=True)
    running_broker = start_broker(prefer=broker, port=port)
    stop = threading.Event()
    server = None
    try:
        server_file, station_file = folder / "server.toml", folder / "station.toml"
        server_file.write_text(server_toml(folder / "thuvien.db", running_broker.port), encoding="utf-8")
        station_file.write_text(station_toml(running_broker.port, touch=not headless), encoding="utf-8")
        server_config = load_toml(server_file.read_text(encoding="utf-8"), str(server_file), ServerConfig)
        station_config = load_toml(station_file.read_text(encoding="utf-8"), str(station_file), StationConfig)

        url = server_config.database.url
        db.upgrade(url)
        engine = db.make_engine(url)
        sessions = db.session_factory(engine)
        with sessions() as session:
            from server.models import Reader

            empty = session.scalar(select(func.count()).select_from(Reader)) == 0
        samples_file = folder / "samples.txt"
        if empty:
            print("Đang tạo dữ liệu mẫu / creating the sample library ...", flush=True)
            summary = seed_demo(sessions, school_year_start=school_year_start())
            samples_file.write_text("\n".join(summary.lines()[1:]) + "\n", encoding="utf-8")
        engine.dispose()
        sample_lines = (samples_file.read_text(encoding="utf-8").splitlines()
                        if samples_file.exists() else [])

        server = start_server(server_config)
        print(f"""
==================================================================
 thuvien: thư viện mẫu đang chạy / the demo library is running
   Broker ({running_broker.kind}):  {running_broker.url}
   Site:        {DEMO_SITE}      Station: {DEMO_STATION}
   Database:    {folder / 'thuvien.db'}
   Configs:     {server_file}, {station_file}
   Log:         {log_path}
   Watch it:    mosquitto_sub -h 127.0.0.1 -p {running_broker.port} -t 'thuvien/v1/#' -v
==================================================================""")
        print("\n".join(sample_lines))
        if not headless:
            print("Kiosk mở trong một cửa sổ: gõ số thẻ rồi Enter, như máy quét.\n"
                  "The kiosk opens in a window: type a card number and Enter, as a scanner would.\n"
                  f"Staff mode: the Cán bộ button, card CB-0001, PIN 2468.", flush=True)
        print("Ctrl-C để dừng tất cả / Ctrl-C stops everything.\n", flush=True)

        def _on_signal(_signum: int, _frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        if headless:
            return run_station(station_config, stop, stdin=sys.stdin, stdout=sys.stdout)
        return run_touch_station(station_config, stop)
    finally:
        if server is not None:
            server.stop()
        running_broker.stop()
        print("\nĐã dừng thư viện mẫu / the demo library has stopped.", flush=True)
