"""The kiosk's Kivy App: inputs to the session worker, its outcomes to the presenter, and
the station's state (out of service, offline, staff mode).

Threads: Kivy's (this module, the only one that touches widgets), the session worker
(`SessionWorker`: every network call), the scanner driver's, the MQTT link's, and short
device-check and printing threads. Everything that comes from another thread is
handed over with `Clock.schedule_once`, never by touching a widget there.

Created by `kiosk.ui.app.run_kiosk`, after Kivy's configuration is set.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.lang import Builder
from kivy.properties import BooleanProperty, NumericProperty, OptionProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from drivers.base import Read, Scanner
from kiosk.backend import Backend, supports
from kiosk.config import StationConfig
from kiosk.i18n import LANGUAGES, language_of
from kiosk.messages import text
from kiosk.rfidpad import PadNotice, PadRead, RfidPad
from kiosk.ui import screens as sc
from kiosk.ui import widgets
from kiosk.ui.announcer import Announcer, Chime, VoiceState
from kiosk.ui.app import EXIT_OK, EXIT_RESTART
from kiosk.ui.presenter import Presenter
from kiosk.ui.receipts import ReceiptDesk
from kiosk.ui.wedge import WedgeDecoder
from kiosk.session import SessionEnded
from kiosk.ui.worker import Delivery, SessionWorker
from protocol import Command, Op

log = logging.getLogger("thuvien.kiosk.ui")


# Keys that a kiosk swallows: Escape and Android's back (both 27 in SDL2), so that
# nobody leaves the kiosk without the staff PIN.
KEY_ENTER, KEY_NUMPAD_ENTER, KEY_BACKSPACE, KEY_ESCAPE = 13, 271, 8, 27
OFFLINE_AFTER_S = 3.0      # a link down this long is "offline", not a blip
GC_IDLE_EVERY_S = 60.0     # full garbage collections only while no reader waits
KEEP_ALIVE_EVERY_S = 1.0   # touches tell the session someone is there, at most this often


class KioskRoot(BoxLayout):
    """The frame: top bar, the screens, the toast (rules in kv/widgets.kv)."""


class KioskApp(App):
    language = OptionProperty("vi", options=list(LANGUAGES))
    s = NumericProperty(1.0)  # the window's scale against the 800x480 design
    school_name = StringProperty("")
    logo = StringProperty("")
    locked = BooleanProperty(False)   # out of service, by staff or a `lock` command
    online = BooleanProperty(True)    # the link to the broker is up

    def __init__(self, config: StationConfig, backend: Backend, scanner: Scanner, *,
                 link: Any | None, announcer: Announcer, voice_state: VoiceState,
                 receipts: ReceiptDesk, stop: threading.Event | None,
                 clock: Callable[[], float] = time.monotonic,
                 on_ready: Callable[[KioskApp], None] | None = None,
                 rfid_pad: RfidPad | None = None) -> None:
        super().__init__()
        self.station = config
        self.link = link
        self.scanner = scanner
        self.rfid_pad = rfid_pad  # a second input beside the scanner, and an outcome listener
        self.announcer = announcer
        self.voice_state = voice_state
        self.receipts = receipts
        self.stop_event = stop
        self.exit_code = EXIT_OK
        self.title = f"thuvien {config.station}"
        self.language = language_of(config.language)
        self.school_name = config.ui.school_name
        self.logo = config.ui.logo or ""
        self._on_ready = on_ready
        self._inbox: queue.SimpleQueue[Delivery | PadNotice] = queue.SimpleQueue()
        self._backend = backend
        self.worker = SessionWorker(backend, config.session, self._post, clock=clock,
                                    stocktake=config.stocktake)
        self.wedge = WedgeDecoder(config.ui.scanner_max_key_interval_ms / 1000,
                                  accept_typed=config.ui.accept_typed)
        self.active = False        # a reader's session (borrowing or returning) is open
        self._collected_at = time.monotonic()
        self.reader_name: str | None = None  # the given name on screen, until the session ends
        self.loader: sc.ScreenLoader | None = None
        self.warning: sc.WarningView | None = None
        self._disconnected_since: float | None = None
        self._last_touch = time.monotonic()
        self._last_keep_alive = 0.0
        self.presenter = Presenter(self)
        self._may_close = False
        self._previous_on_command: Any = None

    # --- building and lifecycle -------------------------------------------------------

    def build(self) -> KioskRoot:
        Factory.register("KioskRoot", cls=KioskRoot)
        for name in ("KButton", "WrapLabel", "StatusIcon", "CardPicture", "BookPicture",
                     "PausePicture", "StepBadge", "Panel", "LanguageToggle", "ItemRow", "Toast", "Countdown"):
            Factory.register(name, cls=getattr(widgets, name))
        for name in ("StepCard", "_DoneButtonPicture", "WarningView", *[c.__name__ for c in sc.SCREENS.values()]):
            Factory.register(name, cls=getattr(sc, name))
        Builder.load_file(str(sc.KV_DIR / "widgets.kv"))
        root = KioskRoot()
        from kivy.uix.screenmanager import NoTransition

        root.ids.screens.transition = NoTransition()
        self.loader = sc.ScreenLoader(root.ids.screens)
        if not self.station.ui.fullscreen:
            # Kivy may have opened the window before our settings were read (any earlier
            # import of kivy.core.window does): give it the configured size.
            Window.size = (self.station.ui.width, self.station.ui.height)
        Window.clearcolor = (0.957, 0.945, 0.918, 1)
        Window.bind(size=self._rescale, on_key_down=self._on_key_down,
                    on_textinput=self._on_textinput, on_request_close=self._on_request_close,
                    on_touch_down=self._on_any_touch)
        self._rescale(Window, Window.size)
        self.bind(language=self._on_language)
        return root

    def on_start(self) -> None:
        self.go_home()
        if self.station.ui.fullscreen:
            Window.borderless = True
        self.worker.start()
        if self.scanner.type_key == "stdin":
            # A keyboard scanner types into this window (see on_textinput), not a terminal.
            log.info("scanner %s: keyboard input is read from the window", self.scanner.name)
        else:
            self.scanner.start(self._scanner_read, self._scanner_ended)
        if self.rfid_pad is not None:
            self.rfid_pad.start(self._scanner_read, on_notice=self._pad_notice)
        if self.link is not None:
            self._previous_on_command = self.link.on_command
            self.link.on_command = self._link_command
        Clock.schedule_interval(self._watch, 0.25)
        # Every screen is created lazily; warm them up once the idle screen is drawn, so
        # a reader's first scan does not wait for a .kv file to load.
        Clock.schedule_once(self._warm_up, 0.5)
        if self._on_ready is not None:
            Clock.schedule_once(lambda _dt: self._on_ready(self), 0.2)  # type: ignore[misc]

    def on_stop(self) -> None:
        if self.warning is not None:
            self.warning.stop()
        self.scanner.stop()
        if self.rfid_pad is not None:
            self.rfid_pad.stop()
        self.worker.stop()
        if self.link is not None:
            self.link.on_command = self._previous_on_command
            if self.locked:
                self.link.state = "online"
        self.announcer.close()

    def quit(self, code: int) -> None:
        log.info("the kiosk stops (exit code %d)", code)
        self.exit_code = code
        self._may_close = True
        self.stop()

    def _warm_up(self, _dt: float) -> None:
        assert self.loader is not None
        for name in sc.SCREENS:
            self.loader.get(name)
        if self.warning is None:
            self.warning = self.make_warning()
        # A full collection takes 125-150 ms here and, left to itself, lands in the middle
        # of a scan (bench/kiosk.py: it was the whole p99). Everything built so far lives
        # as long as the app; from now on we collect when nobody is waiting.
        gc.collect()
        gc.freeze()
        gc.disable()
        self._collected_at = time.monotonic()

    def _collect(self) -> None:
        gc.collect()
        self._collected_at = time.monotonic()

    def make_warning(self) -> sc.WarningView:
        assert self.loader is not None
        self.loader.load_kv("warning.kv")
        return sc.WarningView()

    # --- what kv files call -----------------------------------------------------------

    def tr(self, key: str, _language: str | None = None, **fields: object) -> str:
        """The message `key` in the current language. kv passes `app.language` as the
        second argument only so that the text is rewritten when the language changes."""
        return text(key, self.language, **fields)

    def screen(self, name: str) -> sc.KioskScreen:
        assert self.loader is not None
        return self.loader.get(name)

    @property
    def current(self) -> str:
        return self.root.ids.screens.current if self.root else ""

    def go(self, name: str) -> sc.KioskScreen:
        screen = self.screen(name)
        if self.root.ids.screens.current != name:
            self.root.ids.toast.hide()  # a message belongs to the screen it was said on
            self.root.ids.screens.current = name
        return screen

    @property
    def serves_offline(self) -> bool:
        # A store-and-forward backend keeps the station serving by its offline policy.
        return bool(getattr(self._backend, "serves_offline", False))

    @property
    def can_stocktake(self) -> bool:
        # Our server counts the stock; a SIP2 library system cannot.
        return supports(self._backend, Op.STOCKTAKE_SCAN)

    @property
    def stocktake_only(self) -> bool:
        """A stocktake station: its home is the stocktake screen."""
        return self.station.session.mode == "stocktake"

    def go_home(self) -> None:
        if self.stocktake_only and not self.locked:
            self.go("stocktake")  # it tells by itself when the library cannot be reached
        elif self.locked or (not self.online and not self.serves_offline):
            oos = self.go("out_of_service")
            oos.reason = "locked" if self.locked else "offline"  # type: ignore[attr-defined]
        else:
            self.go("idle")

    def toggle_language(self) -> None:
        self.language = "en" if self.language == "vi" else "vi"

    def ask_for_card(self) -> None:
        self.notify(text("idle.scan_card_now", self.language), "info", chime="attention")

    def start_return(self) -> None:
        self.worker.start_return()

    def done(self) -> None:
        self.worker.done()

    def start_stocktake(self) -> None:
        """From the reader screen: the session lets only a staff reader in."""
        self.worker.start_stocktake()

    def choose_shelf(self, shelf: str) -> None:
        self.worker.choose_shelf(shelf)

    def still_here(self) -> None:
        if self.warning is not None:
            self.warning.stop()
        self._keep_alive(force=True)

    def open_staff(self, card: str | None = None) -> None:
        if self.active:
            self.worker.logout()
        screen = self.go("staff_login")
        screen.begin(card)  # type: ignore[attr-defined]
        self._last_touch = time.monotonic()

    def staff_login(self, card: str, pin: str) -> None:
        self.worker.staff_login(card, pin)

    def leave_staff(self) -> None:
        for name in sc.STAFF_SCREENS:
            self.screen(name).clear()
        self.go_home()

    def staff_action(self, action: str) -> None:
        if action == "lock":
            self.set_locked(True)
        elif action == "unlock":
            self.set_locked(False)
        elif action == "devices":
            self.go("devices")
            self._check_devices()
        elif action == "menu":
            self.go("staff_menu")
        elif action == "stocktake":
            # The server checked this staff member's card and PIN to open the menu.
            staff = self.screen("staff_menu").staff_name or "staff"  # type: ignore[attr-defined]
            for name in sc.STAFF_SCREENS:
                self.screen(name).clear()
            self.worker.start_stocktake(staff)
        elif action == "restart":
            self.quit(EXIT_RESTART)
        elif action == "leave":
            self.quit(EXIT_OK)

    def receipt(self, choice: str) -> None:
        self.presenter.receipt(choice)

    # --- inputs -----------------------------------------------------------------------

    def _scanner_read(self, read: Read) -> None:  # the scanner's (or the RFID pad's) thread
        Clock.schedule_once(partial(self._read_on_ui, read))

    def _scanner_ended(self) -> None:  # the scanner's thread
        log.warning("scanner %s stopped delivering reads", self.scanner.name)

    def _read_on_ui(self, read: Read, _dt: float = 0) -> None:
        self.on_read(read.code, read)

    def on_read(self, code: str, read: Read | None = None) -> None:
        """One code from any scanner (driver, keyboard wedge or RFID pad), on the UI thread."""
        code = code.strip()
        if not code:
            return
        self._last_touch = time.monotonic()
        current = self.current
        if current == "staff_login":
            self.screen("staff_login").card_read(code)  # type: ignore[attr-defined]
            return
        if current in sc.STAFF_SCREENS:
            return  # staff at work: a stray read must not start a session behind them
        if self.locked or (not self.online and current != "stocktake"):
            # (A stocktake batch says by itself that it could not reach the library.)
            # Staff open staff mode with the button; a reader is told what to do instead.
            self.notify(text("oos.locked_body" if self.locked else "oos.offline_body", self.language),
                        "warn", chime="attention")
            return
        if current == "summary":
            self.presenter.finish_summary(said=True)  # the next reader is here
        if isinstance(read, PadRead) and read.refusal is not None:
            self.worker.refuse_item(code, read.refusal, read.parts)
        else:
            self.worker.scan(code)

    def _typing(self) -> bool:
        """Staff type a shelf's name: the keys are the text field's, not a scanner's."""
        return (self.current == "stocktake"
                and bool(self.screen("stocktake").ids.shelf_input.focus))

    def _on_key_down(self, _window: Any, key: int, _scancode: int, _codepoint: str | None,
                     _modifiers: list[str]) -> bool:
        if self._typing() and key != KEY_ESCAPE:
            self.wedge.reset()
            return False
        if key in (KEY_ENTER, KEY_NUMPAD_ENTER):
            read = self.wedge.enter()
            if read is not None:
                log.debug("keyboard %s: %s", "typed" if read.typed else "scan", read.code)
                self.on_read(read.code)
            return True
        if key == KEY_BACKSPACE:
            self.wedge.backspace()
            return True
        if key == KEY_ESCAPE:
            self.wedge.reset()
            return True  # kiosk mode: Escape and "back" never leave the app
        return False

    def _on_textinput(self, _window: Any, text_in: str) -> None:
        if not self._typing():
            self.wedge.key(text_in)

    def _on_request_close(self, *_args: object, **_kwargs: object) -> bool:
        # The window manager's close (Alt+F4) is refused; only staff or `stop` end the kiosk.
        return not self._may_close

    def _on_any_touch(self, _window: Any, _touch: Any) -> None:
        self._last_touch = time.monotonic()
        if self.active:
            self._keep_alive()

    def _keep_alive(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_keep_alive >= KEEP_ALIVE_EVERY_S:
            self._last_keep_alive = now
            self.worker.keep_alive()

    def _link_command(self, command: Command) -> None:  # the MQTT link's thread
        Clock.schedule_once(lambda _dt: self._command(command))

    def _command(self, command: Command) -> None:
        log.info("command %s from the server", command.cmd)
        if command.cmd == "lock":
            self.set_locked(True)
        elif command.cmd == "unlock":
            self.set_locked(False)
        elif command.cmd == "say":
            sentence = str(command.args.get("text", "")).strip()
            if sentence:
                self.notify(sentence, "info")
        else:
            log.info("command %s is not handled by the kiosk", command.cmd)

    # --- outcomes ---------------------------------------------------------------------

    def _post(self, delivery: Delivery) -> None:  # the worker's thread
        if self.rfid_pad is not None:
            self.rfid_pad.on_outcome(delivery)  # queued: AFI writes run on the pad's thread
        self._inbox.put(delivery)
        Clock.schedule_once(self._drain)

    def _pad_notice(self, notice: PadNotice) -> None:  # the RFID pad's thread
        self._inbox.put(notice)
        Clock.schedule_once(self._drain)

    def _drain(self, _dt: float = 0) -> None:
        while True:
            try:
                delivery = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                self.show_outcome(delivery)
            except Exception:
                log.exception("could not show %r", delivery)

    def show_outcome(self, outcome: Delivery | PadNotice) -> None:
        self.presenter.show(outcome)
        if isinstance(outcome, SessionEnded):
            self._collect()  # the reader has left: 6-16 ms nobody waits for

    # --- state: locked, online, staff time-out ----------------------------------------

    def set_locked(self, locked: bool) -> None:
        if locked == self.locked:
            return
        log.info("station %s", "out of service" if locked else "back in service")
        self.locked = locked
        if locked and self.active:
            self.worker.logout()
        if self.link is not None:
            self.link.state = "out_of_service" if locked else "online"
            self.link.publish_status()
        if self.current not in sc.STAFF_SCREENS:
            self.go_home()

    def _watch(self, _dt: float) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            self.quit(EXIT_OK)
            return
        now = time.monotonic()
        if not self.active and now - self._collected_at >= GC_IDLE_EVERY_S:
            self._collect()
        if self.link is not None:
            if self.link.connected.is_set():
                self._disconnected_since = None
                if not self.online:
                    self.online = True
                    if self.current == "out_of_service":
                        self.go_home()
            elif self._disconnected_since is None:
                self._disconnected_since = now
            elif self.online and now - self._disconnected_since >= OFFLINE_AFTER_S:
                self.online = False
                if self.serves_offline:
                    # The session goes on; what it accepts is recorded in the outbox.
                    log.warning("the link is down: serving by the offline policy")
                elif self.current == "stocktake":
                    # Staff count on: each batch says plainly it must be scanned again.
                    log.warning("the link is down: stocktake scans cannot be counted now")
                else:
                    log.warning("the link is down: showing the offline screen")
                    if self.active:
                        self.worker.logout()
                    if self.current not in sc.STAFF_SCREENS:
                        self.go_home()
        if (self.current in sc.STAFF_SCREENS
                and now - self._last_touch >= self.station.session.idle_timeout_s):
            self.leave_staff()

    def _check_devices(self) -> None:
        """Read every device's state off the UI thread (a printer probe or the speech
        engine's first start can take a while), then show it."""
        def check() -> None:
            states: list[tuple[str, str]] = []
            if self.link is not None:
                states.append(("device.link", "ok" if self.link.connected.is_set() else "absent"))
            states.append(("device.scanner", self.scanner.state))
            voice = self.voice_state
            available = getattr(self.announcer, "available", None)
            if voice == "ok" and available is not None:
                voice = "ok" if available() else "fault"
            states.append(("device.voice", voice))
            states.append(("device.printer", self.receipts.check_printer()))
            if self.link is not None:
                # Other devices the station reports in its status (RFID readers, ...).
                known = {self.scanner.name, self.receipts.printer_name}
                states += [(name, state) for name, state in sorted(self.link.devices.items())
                           if name not in known]
            Clock.schedule_once(lambda _dt: self.screen("devices").show(states))  # type: ignore[attr-defined]

        threading.Thread(target=check, name="device-check", daemon=True).start()

    def notify(self, sentence: str, tone: str, *, chime: Chime | None = None) -> None:
        self.presenter.notify(sentence, tone, chime=chime)

    def _on_language(self, _app: object, _language: str) -> None:
        if self.loader is not None:
            for screen in self.loader.created():
                screen.render()
        if self.root is not None and self.root.ids.toast.shown:
            self.root.ids.toast.hide()  # it was in the other language

    def _rescale(self, _window: Any, size: tuple[int, int]) -> None:
        width, height = size
        self.s = max(0.5, min(width / 800, height / 480))

