"""Regenerate docs/screenshots/web/: every staff and catalogue page, desktop and phone, vi and en.

    .venv/bin/python scripts/web_screenshots.py [--out docs/screenshots/web]
        [--pages stations,alerts] [--sizes 1280x800,390x844] [--languages vi,en] [--full-page]

Runs what `thuvien demo` runs: a broker, the server with its web on a fresh SQLite file
filled by `seed_demo`, the demo's accounts (staff `thuthu`, the sample reader's PIN), the
gate and the return box on simulated RFID readers and GPIO. Before the pictures the
library lives a little, through the real protocol: two weeks of loans and returns by
readers of other classes (two of them late), the sample reader's loans (one of them ten
days ago, so it is overdue), a book walked through the gate without being lent (an
alarm, so an alert), a return in the box, whose bin sensor reads full and whose reader
is then unplugged (two more alerts). The kiosk then goes away (offline on the grid);
the gate, the box and the desk stay online.

Debian's Chromium (never `playwright install`) opens each page of PAGES, signed in as
the page needs, in a browser context per size and language.
Names: <page>-<width>x<height>-<language>.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Login = Literal["none", "staff", "reader"]


@dataclass(frozen=True)
class Page:
    name: str
    path: str                 # may name a sample: "/sach/{title_id}"
    login: Login = "none"
    languages: tuple[str, ...] = ("vi", "en")
    ready: str = "main"       # a selector that is there once the page has drawn
    full: bool = False        # the whole page, not the window: its point is further down


# Every page the web serves, in README order. A new page is one line; its path may use
# any key of `Samples.values()`.
PAGES: tuple[Page, ...] = (
    Page("staff-login", "/staff/login"),
    Page("stations", "/staff/stations", "staff", ready="#stations li"),
    Page("alerts", "/staff/alerts", "staff"),
    Page("opac-home", "/"),
    Page("opac-search", "/?q=de+men+phieu+luu+ky"),
    Page("opac-title", "/sach/{title_id}"),
    Page("reader-login", "/ban-doc"),
    Page("reader-loans", "/ban-doc", "reader"),
    Page("desk", "/staff/desk", "staff"),
    Page("desk-reader", "/staff/desk?reader={reader_card}", "staff"),
    Page("readers", "/staff/readers?q=phuong+nga", "staff"),
    Page("overdue", "/staff/overdue", "staff"),
    Page("today", "/staff/today", "staff", full=True),
    Page("reports", "/staff/reports", "staff", full=True),
    Page("intake", "/staff/intake", "staff"),
    Page("intake-receipt", "/staff/intake/1", "staff"),
    Page("labels", "/staff/labels", "staff"),
    Page("cards", "/staff/cards", "staff"),
    Page("stocktake", "/staff/stocktake", "staff"),
    Page("stocktake-missing", "/staff/stocktake/missing", "staff"),
    Page("weeding", "/staff/weeding", "staff"),
)
SIZES = ("1280x800", "390x844")
LANGUAGES = ("vi", "en")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--hide-scrollbars", "--font-render-hinting=none"]
PHONE_WIDTH = 600  # a viewport this narrow or less is browsed as a phone (touch, mobile)
HISTORY = 14  # loans by other readers, one a day before today


class MovableClock:
    """The server's wall clock, set back to make loans in the past."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.offset


@dataclass
class Samples:
    base_url: str
    staff_name: str
    staff_password: str
    reader_card: str
    reader_pin: str
    title_id: int

    def values(self) -> dict[str, Any]:
        return {"title_id": self.title_id, "reader_card": self.reader_card}


# --- the library -------------------------------------------------------------------------

@contextmanager
def running_library(folder: Path) -> Iterator[Samples]:
    """The demo library, lived in a little, until the block ends."""
    from protocol.configfile import load_toml
    from server import db
    from server.app import start_server
    from server.config import ServerConfig
    from server.seed import seed_demo
    from thuvien import demo
    from thuvien.broker import free_port, start_broker

    with ExitStack() as stack:
        broker = start_broker(prefer="auto", port=free_port())
        stack.callback(broker.stop)
        config = load_toml(demo.server_toml(folder / "thuvien.db", broker.port, web_port=free_port()),
                           "demo server.toml", ServerConfig)
        db.upgrade(config.database.url)
        engine = db.make_engine(config.database.url)
        stack.callback(engine.dispose)
        sessions = db.session_factory(engine)
        sample = seed_demo(sessions, school_year_start=demo.school_year_start())
        reader = sample.student_cards[0]
        demo._demo_accounts(sessions, reader.code)

        clock = MovableClock()
        server = start_server(config, clock=clock)
        stack.callback(server.stop)
        assert server.service.connected.wait(10), "the server could not connect to the broker"
        assert server.web is not None, "the demo config did not turn the web on"

        stop = threading.Event()
        gate_sock, box_sock = _start_stations(folder, broker.port, stop, stack)
        _live_a_little(sessions, config, clock, sample, gate_sock, box_sock, stack)
        _count_a_shelf(sessions, sample)

        title_id = _title_of(sessions, sample.loanable_items[0].barcode)
        yield Samples(base_url=server.web.url, staff_name=demo.DEMO_ADMIN,
                      staff_password=demo.DEMO_ADMIN_PASSWORD, reader_card=reader.code,
                      reader_pin=demo.DEMO_READER_PIN, title_id=title_id)


def _start_stations(folder: Path, port: int, stop: threading.Event,
                    stack: ExitStack) -> tuple[Path, Path]:
    from kiosk.config import StationConfig
    from kiosk.gate import run_gate
    from kiosk.returnbox import run_returnbox
    from protocol.configfile import load_toml
    from thuvien import demo

    sockets = []
    for name, kind, run in ((demo.DEMO_GATE, "gate", run_gate),
                            (demo.DEMO_RETURNBOX, "returnbox", run_returnbox)):
        control = folder / "sim" / f"{name}.sock"
        text = demo.headless_station_toml(port, name, kind, control, folder)
        load_toml(text, f"{name}.toml", StationConfig)  # the demo's own config is valid
        raw = tomllib.loads(text)
        raw["voice"]["sounds"] = False  # no chimes from a script
        if kind == "returnbox":
            # The bin sensor without a pull resistor, active low: the simulated pin rests
            # low, so the box starts full and says so, as a real one with a full bin
            # would. (TOML has no null for `pull_up`, hence here and not in the text.)
            raw["devices"]["gpio"]["inputs"]["bin_full"].update(pull_up=None, active_state=False)
        config = StationConfig.model_validate(raw)
        thread = threading.Thread(target=run, args=(config, stop), name=name, daemon=True)
        thread.start()
        stack.callback(thread.join, 5)
        sockets.append(control)
    stack.callback(stop.set)  # first of these: the stations go, then the server
    for control in sockets:
        _wait(lambda c=control: c.exists(), f"the simulated reader at {control}")
    return sockets[0], sockets[1]


def _live_a_little(sessions: Any, config: Any, clock: MovableClock, sample: Any,
                   gate_sock: Path, box_sock: Path, stack: ExitStack) -> None:
    from drivers.rfid.padcontrol import send
    from kiosk.link import MqttLink, make_request
    from protocol import CheckoutArgs, Op, ReturnArgs
    from protocol.configfile import MqttConfig
    from server.models import Alert
    from sqlalchemy import select

    mqtt = MqttConfig(host="127.0.0.1", port=config.mqtt.port)
    kiosk = MqttLink(config.site, "kiosk-1", "kiosk", mqtt)
    desk = MqttLink(config.site, "tay", "desk", mqtt)
    assert kiosk.start(wait=10) and desk.start(wait=10), "a station could not reach the broker"
    stack.callback(desk.stop)

    reader, late_reader, third = sample.student_cards[:3]
    on_time, late, new_book, walked, for_teacher = sample.loanable_items[:5]

    def ask(link: MqttLink, days_ago: int, op: Op, args: Any) -> Any:
        # The server's clock and the station's `at` both set back: a loan of days ago, as
        # the ledger and the Today page count it (by when it happened at the station).
        clock.offset = -dt.timedelta(days=days_ago)
        try:
            request = make_request(op, args).model_copy(update={"at": clock().astimezone()})
            return link.send(request)
        finally:
            clock.offset = dt.timedelta()

    def lend(link: MqttLink, days_ago: int, patron: str, item: str) -> None:
        reply = ask(link, days_ago, Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item=item))
        assert reply.ok, f"{patron} could not borrow {item}: {reply}"

    def give_back(link: MqttLink, days_ago: int, item: str) -> None:
        reply = ask(link, days_ago, Op.LOAN_RETURN, ReturnArgs(item=item))
        assert reply.ok, f"{item} could not be returned: {reply}"

    # Two weeks of other readers (one per class), most of them back already, two late:
    # the charts, the top titles and the overdue lists have something to show.
    for n, (patron, item) in enumerate(_others(sessions, sample, HISTORY)):
        days_ago = HISTORY - n
        lend(kiosk if n % 3 else desk, days_ago, patron, item)
        if n % 4 != 1:
            give_back(kiosk, max(days_ago - 3, 0), item)
    # The sample reader: two books lent two days ago and one ten days ago (a student's
    # TN loan is 7 days, so it is overdue); in this order, since an overdue book blocks
    # the card. Then others, today.
    lend(kiosk, 2, reader.code, on_time.barcode)
    lend(kiosk, 2, reader.code, sample.textbook.barcode)
    lend(kiosk, 10, reader.code, late.barcode)
    lend(kiosk, 0, late_reader.code, new_book.barcode)
    lend(desk, 0, sample.teacher.code, for_teacher.barcode)

    def alerts() -> set[str]:
        with sessions() as session:
            return set(session.scalars(select(Alert.type)))

    # A book walked out without being lent: the gate alarms (awaited, or the loan below
    # could reach the gate first and let the book pass).
    assert send(gate_sock, f"pass {walked.barcode}").startswith("ok")
    _wait(lambda: "gate.alarm" in alerts(), "the gate's alarm")
    # The same book lent yesterday, then dropped in the box; then the box's reader unplugged.
    lend(kiosk, 1, third.code, walked.barcode)
    assert send(box_sock, f"put {walked.barcode} on_loan").startswith("ok")
    _wait(lambda: _copy_status(sessions, walked.barcode) == "available", "the return in the box")
    send(box_sock, f"lift {walked.barcode}")
    assert send(box_sock, "unplug").startswith("ok")
    kiosk.stop()  # the kiosk says it is offline: the grid shows it so
    expected = {"gate.alarm", "returnbox.full", "device.fault"}
    _wait(lambda: expected <= alerts(), "the alerts (gate alarm, bin full, reader unplugged)")


def _count_a_shelf(sessions: Any, sample: Any) -> None:
    """A stocktake under way: a few copies counted on their shelf, one on the wrong one."""
    from server import stocktake

    take = stocktake.start(sessions, "Kiểm kê cuối năm học", "thuthu")
    items = [item.barcode for item in sample.loanable_items]
    first = _location_of(sessions, items[0])
    stocktake.scan(sessions, take.id, items, shelf=first, station="desk-1")


def _location_of(sessions: Any, barcode: str) -> str | None:
    from sqlalchemy import select

    from server.models import Copy

    with sessions() as session:
        return session.scalar(select(Copy.location).where(Copy.barcode == barcode))


def _others(sessions: Any, sample: Any, count: int) -> list[tuple[str, str]]:
    """(card, book) pairs: students of other classes, copies of other children's books."""
    from server.models import Copy, CopyStatus, Reader, ReaderKind, ReaderStatus
    from sqlalchemy import select

    taken = {r.code for r in (*sample.student_cards, sample.blocked_student)}
    taken_books = {i.barcode for i in (*sample.loanable_items, sample.textbook)}
    with sessions() as session:
        readers = session.execute(select(Reader.code, Reader.class_name).where(
            Reader.kind == ReaderKind.STUDENT, Reader.status == ReaderStatus.ACTIVE)
            .order_by(Reader.class_name, Reader.code)).all()
        copies = session.execute(select(Copy.barcode, Copy.title_id).where(
            Copy.kind == "TN", Copy.status == CopyStatus.AVAILABLE, Copy.barcode.is_not(None))
            .order_by(Copy.barcode)).all()
    cards, classes = [], set()
    for code, class_name in readers:
        if code not in taken and class_name not in classes:
            classes.add(class_name)
            cards.append(code)
    # A few titles more than once, so that "top titles" has a winner.
    books, per_title = [], {}
    for barcode, title_id in copies:
        if barcode not in taken_books and per_title.get(title_id, 0) < 3 and len(per_title) < count // 2:
            per_title[title_id] = per_title.get(title_id, 0) + 1
            books.append(barcode)
    pairs = list(zip(cards, books))[:count]
    assert len(pairs) == count, "the sample school has fewer classes or books than expected"
    return pairs


def _copy_status(sessions: Any, barcode: str) -> str | None:
    from server.models import Copy
    from sqlalchemy import select

    with sessions() as session:
        return session.scalar(select(Copy.status).where(Copy.barcode == barcode))


def _title_of(sessions: Any, barcode: str) -> int:
    from server.models import Copy
    from sqlalchemy import select

    with sessions() as session:
        title_id = session.scalar(select(Copy.title_id).where(Copy.barcode == barcode))
    assert title_id is not None, barcode
    return int(title_id)


def _wait(done: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- the browser -------------------------------------------------------------------------

def capture(samples: Samples, pages: list[Page], sizes: list[str], languages: list[str],
            out: Path, *, full_page: bool = False) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    from playwright.sync_api import Error

    with sync_playwright() as playwright:
        for attempt in range(1, 6):
            # Debian's Chromium now and then traps (SIGTRAP) while starting on a loaded
            # machine; back-to-back tries have failed together, so each waits longer.
            try:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                     headless=True)
                break
            except Error as exc:
                if attempt == 5:
                    raise
                print(f"chromium did not start (try {attempt} of 5): {str(exc).splitlines()[0]}",
                      file=sys.stderr, flush=True)
                time.sleep(2 ** (attempt - 1))
        try:
            for size in sizes:
                width, height = (int(v) for v in size.split("x"))
                for language in languages:
                    chosen = [p for p in pages if language in p.languages]
                    if not chosen:
                        continue
                    started = time.monotonic()
                    context = browser.new_context(
                        viewport={"width": width, "height": height},
                        locale="vi-VN" if language == "vi" else "en-GB",
                        is_mobile=width <= PHONE_WIDTH, has_touch=width <= PHONE_WIDTH,
                        timezone_id="Asia/Ho_Chi_Minh")
                    try:
                        made += _shoot(context, samples, chosen, size, language, out, full_page)
                    finally:
                        context.close()
                    print(f"{size} {language}: {len(chosen)} pages "
                          f"in {time.monotonic() - started:.1f} s", flush=True)
        finally:
            browser.close()
    return made


def _shoot(context: Any, samples: Samples, pages: list[Page], size: str, language: str,
           out: Path, full_page: bool) -> list[Path]:
    base = samples.base_url
    context.add_cookies([{"name": "lang", "value": language, "url": base}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    made = []
    signed_in: set[Login] = set()
    # Pages for a stranger first: a signed-in librarian is sent on from the login page.
    for spec in sorted(pages, key=lambda p: p.login != "none"):
        if spec.login != "none" and spec.login not in signed_in:
            _sign_in(page, samples, spec.login)
            signed_in.add(spec.login)
        response = page.goto(base + spec.path.format(**samples.values()), wait_until="load")
        if response is None or not response.ok:
            raise RuntimeError(f"{spec.name}: {spec.path} answered "
                               f"{response.status if response else 'nothing'}")
        page.wait_for_selector(spec.ready, state="attached")
        page.wait_for_timeout(300)  # the live grid's first server-sent events, the fonts
        path = out / f"{spec.name}-{size}-{language}.png"
        page.screenshot(path=str(path), full_page=full_page or spec.full)
        _shrink(path)
        made.append(path)
    page.close()
    return made


def _sign_in(page: Any, samples: Samples, who: Login) -> None:
    base = samples.base_url
    if who == "staff":
        page.goto(f"{base}/staff/login")
        page.fill("#name", samples.staff_name)
        page.fill("#password", samples.staff_password)
        with page.expect_navigation():
            page.click("form[action='/staff/login'] button[type=submit]")
        assert "/staff/login" not in page.url, "the demo's staff account did not sign in"
    else:
        page.goto(f"{base}/ban-doc")
        page.fill("#card", samples.reader_card)
        page.fill("#pin", samples.reader_pin)
        with page.expect_navigation():
            page.click("form[action='/ban-doc/dang-nhap'] button[type=submit]")
        assert page.locator("#pin").count() == 0, "the demo reader did not sign in"


def _shrink(path: Path) -> None:
    """256 colours: the pages are flat colours and text, and the README loads them all."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


# --- the command -------------------------------------------------------------------------

def _choose(names: str | None, known: tuple[str, ...], what: str) -> list[str]:
    chosen = list(known) if not names else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "web")
    parser.add_argument("--pages", help="comma-separated page names (default: all)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="WIDTHxHEIGHT,...")
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the window")
    args = parser.parse_args(argv)
    by_name = {p.name: p for p in PAGES}
    pages = [by_name[n] for n in _choose(args.pages, tuple(by_name), "page")]
    languages = _choose(args.languages, LANGUAGES, "language")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for size in sizes:
        width, _, height = size.partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise SystemExit(f"a size is WIDTHxHEIGHT, like 1280x800, not {size!r}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="thuvien-web-shots-") as tmp:
        with running_library(Path(tmp)) as samples:
            print(f"library ready in {time.monotonic() - started:.1f} s", flush=True)
            made = capture(samples, pages, sizes, languages, args.out.resolve(),
                           full_page=args.full_page)
    print(f"{len(made)} screenshots in {args.out} ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
