"""Regenerate docs/screenshots/: every kiosk screen, at 800x480 and 1280x800, in vi and en.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--sizes 800x480,1280x800]

Runs what the demo runs (a broker, the server on a fresh SQLite file filled by
`seed_demo`, a real MqttLink) and walks the real kiosk through every screen with the
simulated scanner, in SDL's offscreen window (no display needed). A few loans are made
beforehand, some of them in the past, so that the screens show loans, an overdue book
and a late return; they are made again before each walk. Each walk (a size and a
language) runs the kiosk in a process of its own (one Kivy app per process).
Names: <screen>-<width>x<height>-<language>.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCREENS = ("idle", "reader", "scanning", "summary", "summary-qr", "reader-blocked", "return",
           "inactivity", "staff-card", "staff-pin", "staff-menu", "staff-devices", "out-of-service",
           "offline")
STATION = "kiosk-1"


class MovableClock:
    """The server's wall clock, set back to make loans in the past."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.offset


# --- the library (this process) ------------------------------------------------------------

def _library(folder: Path, port: int) -> tuple[Any, MovableClock, dict[str, Any]]:
    from protocol.configfile import load_toml
    from server import db
    from server.app import start_server
    from server.config import ServerConfig
    from server.seed import STAFF_CARD, STAFF_PIN, seed_demo
    from thuvien.demo import DEMO_SITE, school_year_start, server_toml

    config = load_toml(server_toml(folder / "demo.db", port, web_port=None), "demo server.toml", ServerConfig)
    db.upgrade(config.database.url)
    engine = db.make_engine(config.database.url)
    sample = seed_demo(db.session_factory(engine), school_year_start=school_year_start())
    engine.dispose()
    clock = MovableClock()
    server = start_server(config, clock=clock)
    assert server.service.connected.wait(10), "the server could not connect to the broker"
    reader, late_reader = sample.student_cards[0], sample.student_cards[1]
    on_time, late, new_book, also_new = sample.loanable_items[:4]
    codes = {"site": DEMO_SITE, "port": port, "school": config.school_name,
             "reader": reader.code, "late_reader": late_reader.code, "blocked": sample.blocked_student.code,
             "on_time_book": on_time.barcode, "textbook": sample.textbook.barcode,
             "new_book": new_book.barcode, "reference_only": sample.reference_only.barcode,
             "late_book": late.barcode, "not_on_loan": also_new.barcode,
             "staff_card": STAFF_CARD, "staff_pin": STAFF_PIN}
    return server, clock, codes


def _prepare(port: int, clock: MovableClock, codes: dict[str, Any]) -> None:
    """The same loans before every walk: two for the reader (borrowed two days ago), one
    twelve days ago for the other (overdue, so that reader is blocked); the walk before
    borrowed and returned books, which go back first."""
    from kiosk.link import MqttLink
    from protocol import CheckoutArgs, Op, ReturnArgs
    from protocol.configfile import MqttConfig

    desk = MqttLink(codes["site"], "desk-1", "desk", MqttConfig(host="127.0.0.1", port=port))
    assert desk.start(wait=10)
    try:
        for item in (codes["new_book"], codes["late_book"], codes["on_time_book"], codes["textbook"]):
            desk.request(Op.LOAN_RETURN, ReturnArgs(item=item))  # refused if not on loan: fine
        for days_ago, patron, item in ((12, codes["late_reader"], codes["late_book"]),
                                       (2, codes["reader"], codes["on_time_book"]),
                                       (2, codes["reader"], codes["textbook"])):
            clock.offset = -dt.timedelta(days=days_ago)
            reply = desk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item=item))
            assert reply.ok, reply
    finally:
        clock.offset = dt.timedelta()
        desk.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--sizes", default="800x480,1280x800")
    parser.add_argument("--tour", help=argparse.SUPPRESS)  # internal: run the kiosk side
    args = parser.parse_args(argv)
    if args.tour:
        return _tour_process(json.loads(args.tour))
    from thuvien.broker import free_port, start_broker

    args.out.mkdir(parents=True, exist_ok=True)
    broker = start_broker(prefer="auto", port=free_port())
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="thuvien-shots-") as tmp:
            server, clock, codes = _library(Path(tmp), broker.port)
            env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy",
                   "KIVY_NO_ARGS": "1", "KIVY_NO_CONSOLELOG": "1", "KIVY_NO_FILELOG": "1",
                   "KIVY_HOME": str(Path(tmp) / "kivy")}
            for size in args.sizes.split(","):
                width, height = (int(v) for v in size.split("x"))
                for language in ("vi", "en"):
                    _prepare(broker.port, clock, codes)
                    tour = {**codes, "width": width, "height": height, "language": language,
                            "out": str(args.out.resolve())}
                    started = time.monotonic()
                    subprocess.run([sys.executable, __file__, "--tour", json.dumps(tour)], env=env,
                                   check=True, timeout=300, cwd=tmp)
                    print(f"{size} {language}: {len(SCREENS)} screenshots "
                          f"in {time.monotonic() - started:.1f} s", flush=True)
    finally:
        if server is not None:
            server.stop()
        broker.stop()
    return 0


# --- the kiosk (a process per size) -------------------------------------------------------------

def _tour_process(tour: dict[str, Any]) -> int:
    from drivers.base import SimulatedScanner
    from drivers.printer import SimulatedPrinter
    from kiosk.config import StationConfig
    from kiosk.link import MqttLink
    from kiosk.ui.announcer import SilentAnnouncer
    from kiosk.ui.app import run_kiosk

    config = StationConfig.model_validate({
        "site": tour["site"], "station": STATION, "language": "vi", "mqtt": {"host": "127.0.0.1", "port": tour["port"]},
        "ui": {"fullscreen": False, "width": tour["width"], "height": tour["height"],
               "school_name": tour["school"]},
        "voice": {"enabled": False, "sounds": False}})
    link = MqttLink(config.site, config.station, config.kind, config.mqtt)
    assert link.start(wait=10)
    scanner = SimulatedScanner()
    failure: list[BaseException] = []

    def ready(app: Any) -> None:
        from kiosk.ui.pilot import Pilot  # now that the window is open, with our settings

        def run() -> None:
            pilot = Pilot(app)
            try:
                pilot.wait_for(lambda: app.warning is not None, what="the screens")
                _walk(pilot, app, scanner, link, tour)
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                pilot.call(app.quit, 0)

        threading.Thread(target=run, name="tour", daemon=True).start()

    try:
        run_kiosk(config, link, scanner, link=link, announcer=SilentAnnouncer(),
                  printer=SimulatedPrinter(), on_ready=ready)
    finally:
        link.stop()
    return 1 if failure else 0


def _walk(pilot: Any, app: Any, scanner: Any, link: Any, tour: dict[str, Any]) -> None:
    out, language = Path(tour["out"]), tour["language"]
    size = f"{tour['width']}x{tour['height']}"

    def shot(name: str) -> None:
        assert name in SCREENS, name
        pilot.call(lambda: app.root.ids.toast.hide())
        time.sleep(0.3)  # the toast's fade
        _save(pilot, out / f"{name}-{size}-{language}.png")

    def press(screen: str, widget_id: str) -> None:
        pilot.press_id(screen, widget_id)

    def pad(digits: str) -> None:
        keys = pilot.call(lambda: {k.text: k for k in app.screen("staff_login").ids.keypad.children})
        for digit in digits:
            pilot.press(keys[digit])

    pilot.wait_screen("idle")
    if language != "vi":
        # As a reader would: the station speaks the school's language until touched.
        pilot.press(pilot.call(lambda: app.root.ids.bar.ids.language))
    shot("idle")

    scanner.feed(tour["reader"])
    pilot.wait_screen("reader")
    shot("reader")
    scanner.feed(tour["new_book"])
    pilot.wait_screen("scanning")
    scanner.feed(tour["reference_only"])
    pilot.wait_for(lambda: len(app.screen("scanning").entries) == 2, what="two items")
    shot("scanning")
    pilot.call(lambda: app.presenter.warn(18))
    pilot.wait_for(lambda: app.warning._window is not None, what="the warning")
    time.sleep(0.2)
    shot("inactivity")
    pilot.call(app.still_here)
    press("scanning", "done")
    pilot.wait_screen("summary")
    shot("summary")
    press("summary", "qr_button")
    pilot.wait_for(lambda: app.screen("summary").qr_texture is not None, what="the QR code")
    shot("summary-qr")
    press("summary", "finish")
    pilot.wait_screen("idle")

    scanner.feed(tour["late_reader"])
    pilot.wait_screen("reader")
    shot("reader-blocked")
    press("reader", "done")
    pilot.wait_screen("idle")

    press("idle", "give_back")
    pilot.wait_screen("return")
    scanner.feed(tour["not_on_loan"])
    scanner.feed(tour["late_book"])
    pilot.wait_for(lambda: len(app.screen("return").entries) == 2, what="two returns")
    shot("return")
    press("return", "done")
    pilot.wait_screen("idle")

    press("idle", "staff")
    pilot.wait_screen("staff_login")
    shot("staff-card")
    scanner.feed(tour["staff_card"])
    pad(tour["staff_pin"][:2])
    shot("staff-pin")
    pad(tour["staff_pin"][2:])
    press("staff_login", "ok")
    pilot.wait_screen("staff_menu")
    shot("staff-menu")
    press("staff_menu", "devices")
    pilot.wait_for(lambda: len(app.screen("devices").ids.rows.children) >= 3, what="device rows")
    shot("staff-devices")
    press("devices", "back")
    press("staff_menu", "lock")
    press("staff_menu", "back")
    pilot.wait_screen("out_of_service")
    shot("out-of-service")
    press("out_of_service", "staff")
    scanner.feed(tour["staff_card"])
    pad(tour["staff_pin"])
    press("staff_login", "ok")
    pilot.wait_screen("staff_menu")
    press("staff_menu", "lock")  # unlock
    press("staff_menu", "back")
    pilot.wait_screen("idle")

    # Offline, last: the link drops (a clean disconnect: paho does not reconnect it).
    link.client.disconnect()
    pilot.wait_screen("out_of_service", timeout=10)
    shot("offline")
    assert not [name for name in SCREENS if not (out / f"{name}-{size}-{language}.png").exists()]


def _save(pilot: Any, path: Path) -> None:
    pilot.screenshot(str(path))
    try:
        from PIL import Image

        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            small.save(path, optimize=True)
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
