"""`thuvien demo`: a whole school library on one machine, for a newcomer.

A broker (Mosquitto when installed, else the embedded one), the server on SQLite filled
with a sample school, and one kiosk: the touch screen in a window where there is a
display (typed codes stand for the scanner), else the terminal kiosk. Beside it a
security gate and a return box run headless with simulated RFID readers and GPIO;
`thuvien sim gate-1 pass ITEM` walks a book through the gate. Ctrl-C stops it all: the
stations and the server say "offline" before they go.
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
DEMO_GATE = "gate-1"
DEMO_RETURNBOX = "returnbox-1"
# Tết Nguyên đán (the lunar new year) moves every year; the schools close around it.
TET = {2026: dt.date(2026, 2, 17), 2027: dt.date(2027, 2, 6), 2028: dt.date(2028, 1, 26),
       2029: dt.date(2029, 2, 13), 2030: dt.date(2030, 2, 3), 2031: dt.date(2031, 1, 23)}


def school_year_start(today: dt.date | None = None) -> dt.date:
    today = today or dt.date.today()
    year = today.year if today.month >= 8 else today.year - 1
    return dt.date(year, 9, 5)


DEMO_ADMIN, DEMO_ADMIN_PASSWORD = "thuthu", "thuvien-demo"
DEMO_READER_PIN = "1234"


def _web_section(web_port: int | None) -> str:
    if web_port is None:
        return "[web]\nenabled = false\n"
    return ("[web]\n# The staff pages and the catalogue, on this machine only.\n"
            f"enabled = true\nhost = \"127.0.0.1\"\nport = {web_port}\n")


def server_toml(database: Path, port: int, today: dt.date | None = None, *,
                web_port: int | None = 8080) -> str:
    """The demo server's config; `web_port=None` leaves the web off (benchmarks and tests
    that start servers side by side must not all want the same port)."""
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

{_web_section(web_port)}
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


def station_toml(port: int, *, touch: bool, folder: Path | None = None) -> str:
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
{_offline(folder, DEMO_STATION, "returns_and_checkouts")}
{devices}"""


def _offline(folder: Path | None, station: str, mode: str) -> str:
    # The demo keeps each station's outbox in its own folder, never in /var/lib.
    if folder is None:
        return ""
    return f'\n[offline]\nmode = "{mode}"\noutbox_path = "{folder.resolve() / station / "outbox.db"}"\n'


def headless_station_toml(port: int, station: str, kind: str, control: Path,
                          folder: Path | None = None) -> str:
    # A simulated reader whose pad `thuvien sim` reaches through `control`, and simulated
    # pins for the gate's relay and lights or the return box's lights and bin sensor.
    pins = ('[devices.gpio.outputs]\nrelay = { pin = 17 }\nbuzzer = { pin = 27 }\n'
            'light_red = { pin = 22 }\n[devices.gpio.inputs]\ncounter = { pin = 5 }\n'
            ) if kind == "gate" else (
            '[devices.gpio.outputs]\nlight_green = { pin = 23 }\nlight_red = { pin = 22 }\n'
            '[devices.gpio.inputs]\nbin_full = { pin = 6 }\n\n'
            '[devices.scanner]\ntype = "simulated"\nname = "scanner"\n')
    return f"""# Written by `thuvien demo` at every start; edits here are overwritten.
version = 1
site = "{DEMO_SITE}"
station = "{station}"
kind = "{kind}"
language = "vi"

[mqtt]
host = "127.0.0.1"
port = {port}
{_offline(folder, station, "returns")}
[voice]
# The kiosk speaks in the demo; a gate and a return box beside it would talk over it.
enabled = false

[devices.rfid]
type = "simulated"
control = "{control}"

[devices.gpio]
type = "simulated"

{pins}"""


def _run_beside(name: str, target, config, stop: threading.Event) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        try:
            target(config, stop)
        except Exception:  # the kiosk goes on without it; the log says why
            logging.getLogger("thuvien.demo").exception("the demo's %s stopped", name)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _demo_accounts(sessions, card: str | None) -> None:  # type: ignore[no-untyped-def]
    """The librarian's web login, and a PIN for one sample reader's catalogue page."""
    from server.models import Reader, StaffUser
    from server.pins import hash_pin
    from server.web.accounts import add_user

    with sessions.begin() as session:
        if session.scalar(select(func.count()).select_from(StaffUser)) == 0:
            add_user(session, DEMO_ADMIN, "admin", DEMO_ADMIN_PASSWORD,
                     dt.datetime.now(dt.timezone.utc))
        if card is not None:
            reader = session.scalar(select(Reader).where(Reader.code == card))
            if reader is not None and reader.pin_hash is None:
                reader.pin_hash = hash_pin(DEMO_READER_PIN)


def run_demo(folder: Path, *, broker: str = "auto", port: int | None = None,
             headless: bool = False, web_port: int | None = None) -> int:
    from kiosk.cli import run_station, run_touch_station
    from kiosk.config import StationConfig
    from kiosk.gate import run_gate
    from kiosk.returnbox import run_returnbox
    from protocol.configfile import load_toml
    from server import db
    from server.app import start_server
    from server.config import ServerConfig
    from server.seed import register_demo_stations, seed_demo
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
    if web_port is None:
        web_port = 8080 if _port_free(8080) else _free_port()
    print("Đang khởi động thư viện mẫu / starting the demo library ...", flush=True)
    running_broker = start_broker(prefer=broker, port=port)
    stop = threading.Event()
    server = None
    beside: list[threading.Thread] = []
    try:
        server_file, station_file = folder / "server.toml", folder / "station.toml"
        server_file.write_text(server_toml(folder / "thuvien.db", running_broker.port, web_port=web_port),
                               encoding="utf-8")
        station_file.write_text(station_toml(running_broker.port, touch=not headless, folder=folder),
                                encoding="utf-8")
        server_config = load_toml(server_file.read_text(encoding="utf-8"), str(server_file), ServerConfig)
        station_config = load_toml(station_file.read_text(encoding="utf-8"), str(station_file), StationConfig)
        headless_configs = []
        for name, kind in ((DEMO_GATE, "gate"), (DEMO_RETURNBOX, "returnbox")):
            path = folder / f"{name}.toml"
            path.write_text(headless_station_toml(running_broker.port, name, kind,
                                                  folder.resolve() / "sim" / f"{name}.sock", folder),
                            encoding="utf-8")
            headless_configs.append(load_toml(path.read_text(encoding="utf-8"), str(path), StationConfig))

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
        # The server serves registered stations only: a demo folder seeded before
        # registration existed gets them too.
        register_demo_stations(sessions)
        sample_lines = (samples_file.read_text(encoding="utf-8").splitlines()
                        if samples_file.exists() else [])
        cards = [line.split()[0] for line in sample_lines if line.strip().startswith("HS-")]
        reader_card = cards[0] if cards else None
        _demo_accounts(sessions, reader_card)
        engine.dispose()

        server = start_server(server_config)
        gate_config, returnbox_config = headless_configs
        beside = [_run_beside(DEMO_GATE, run_gate, gate_config, stop),
                  _run_beside(DEMO_RETURNBOX, run_returnbox, returnbox_config, stop)]
        sim = "thuvien sim" if folder.resolve() == Path("demo-data").resolve() else \
            f"thuvien sim --dir {folder}"
        print(f"""
==================================================================
 thuvien: thư viện mẫu đang chạy / the demo library is running
   Broker ({running_broker.kind}):  {running_broker.url}
   Site:        {DEMO_SITE}      Stations: {DEMO_STATION}, {DEMO_GATE}, {DEMO_RETURNBOX}
   Database:    {folder / 'thuvien.db'}
   Configs:     {server_file}, {station_file}
   Log:         {log_path}
   Watch it:    mosquitto_sub -h 127.0.0.1 -p {running_broker.port} -t 'thuvien/v1/#' -v
   Web:         http://127.0.0.1:{web_port}/            tra cứu / the catalogue
                http://127.0.0.1:{web_port}/staff       thủ thư / staff: {DEMO_ADMIN} / {DEMO_ADMIN_PASSWORD}
                http://127.0.0.1:{web_port}/ban-doc     bạn đọc / a reader: {reader_card} PIN {DEMO_READER_PIN}
==================================================================""")
        print("\n".join(sample_lines))
        print(f"""Cổng an ninh và hộp trả sách (đầu đọc RFID giả lập), trong một cửa sổ lệnh khác:
The security gate and the return box (simulated RFID readers), from another terminal:
   .venv/bin/{sim} {DEMO_GATE} pass MÃ-SÁCH       mang sách qua cổng / walk a book through the gate
   .venv/bin/{sim} {DEMO_RETURNBOX} put MÃ-SÁCH   thả sách vào hộp trả / drop a book in the box
   Cổng báo động khi sách chưa được mượn / the gate alarms when a book is not on loan.""")
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
        stop.set()
        for thread in beside:
            thread.join(timeout=5)
        if server is not None:
            server.stop()
        running_broker.stop()
        print("\nĐã dừng thư viện mẫu / the demo library has stopped.", flush=True)
