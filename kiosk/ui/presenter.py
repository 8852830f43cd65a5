"""What the kiosk shows and says for each outcome of the session, on Kivy's thread.

The session's outcomes (and the staff login's answer) arrive here one at a time, in
order; each one updates the screen it belongs to, switches to it, and speaks the same
sentence the screen shows. The end of a borrowing session leads to the summary and
its receipt choices, which live here too. Stocktake outcomes go to their own screen
(`_stocktake`).
"""

from __future__ import annotations

import io
import threading
from functools import partial
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.core.image import Image as CoreImage

from kiosk.messages import format_date, given_name, stocktake_tone, stocktake_words, text
from kiosk.rfidpad import NOTICE_TONE, PadNotice, notice_text
from kiosk.session import (
    NOT_STAFF,
    UNSUPPORTED,
    Ignored,
    InactivityWarning,
    ItemBorrowed,
    ItemRefused,
    ItemReturned,
    NeedCard,
    PatronIdentified,
    PatronRefused,
    ReturnModeStarted,
    ReturnRefused,
    ServerUnreachable,
    SessionEnded,
    ShelfChosen,
    StocktakeCounted,
    StocktakeEnded,
    StocktakeRefused,
    StocktakeStarted,
    StocktakeUnreachable,
    Unreadable,
)
from kiosk.ui import screens as sc
from kiosk.ui.announcer import Chime
from kiosk.ui.worker import Delivery, StaffLogin

if TYPE_CHECKING:
    from kiosk.ui.kiosk_app import KioskApp

SUMMARY_SECONDS = 30.0        # the summary goes away by itself after this long
RECEIPT_SHOWN_SECONDS = 45.0  # a QR code or a printer's word, then the idle screen


class Presenter:
    def __init__(self, app: KioskApp) -> None:
        self.app = app
        self._summary_event: Any = None
        self._receipt_token = 0  # a print that ends after the summary was left is ignored

    # --- outcomes -----------------------------------------------------------------------

    def show(self, outcome: Delivery | PadNotice) -> None:
        app = self.app
        language = app.language
        t = partial(text, language=language)
        match outcome:
            case PatronIdentified():
                app.active = True
                app.reader_name = given_name(outcome.name)
                app.screen("reader").show(outcome)  # type: ignore[attr-defined]
                app.screen("scanning").start(outcome)  # type: ignore[attr-defined]
                app.go("reader")
                hello = (t("offline.hello") if outcome.offline
                         else t(f"hello.{outcome.kind}", given_name=app.reader_name))
                self.speak(f"{hello} {sc.status_sentence(outcome, language)}",
                           "attention" if outcome.blocks else "ok")
            case PatronRefused(code=code, message=message):
                self.notify(sc.why(code, message, language), "error", chime="error")
            case ItemBorrowed(offline=True):
                app.screen("scanning").add(outcome)  # type: ignore[attr-defined]
                app.go("scanning")
                self.speak(t("item.borrowed_offline", item=outcome.item), "ok")
            case ItemBorrowed(due=due) if due is not None:
                app.screen("scanning").add(outcome)  # type: ignore[attr-defined]
                app.go("scanning")
                self.speak(t("item.borrowed", title=outcome.title, due=format_date(due)), "ok")
            case ItemRefused():
                app.screen("scanning").add(outcome)  # type: ignore[attr-defined]
                app.go("scanning")
                self.speak(sc.refused_reason(outcome, language), "error")
            case ReturnModeStarted():
                app.active = True
                app.screen("return").start()  # type: ignore[attr-defined]
                app.go("return")
                self.speak(t("return.mode"), None)
            case ItemReturned(offline=True):
                app.screen("return").add(outcome)  # type: ignore[attr-defined]
                app.go("return")
                self.speak(t("item.returned_offline", item=outcome.item), "ok")
            case ItemReturned():
                app.screen("return").add(outcome)  # type: ignore[attr-defined]
                app.go("return")
                late = outcome.was_overdue and outcome.days_late > 0
                sentence = t("item.returned", title=outcome.title)
                if late:
                    sentence += " " + t("item.returned_late", days=outcome.days_late)
                self.speak(sentence, "attention" if late else "ok")
            case ReturnRefused(code=code, message=message, parts=parts):
                app.screen("return").add(outcome)  # type: ignore[attr-defined]
                app.go("return")
                self.speak(sc.why(code, message, language, parts), "error")
            case NeedCard():
                self.notify(t("need_card"), "warn", chime="attention")
            case Unreadable():
                self.notify(t("unreadable"), "error", chime="error")
            case ServerUnreachable(can_return=can_return):
                self.notify(t("server_unreachable_returns" if can_return else "server_unreachable"),
                            "warn", chime="error")
            case InactivityWarning(seconds_left=seconds):
                self.warn(seconds)
            case SessionEnded():
                self._session_ended(outcome)
            case Ignored(reason="same_card"):
                self.notify(t("same_card"), "info")
            case Ignored(reason="stocktake"):
                self.notify(t("stocktake.card_ignored"), "info", chime="attention")
            case (StocktakeStarted() | ShelfChosen() | StocktakeCounted() | StocktakeRefused()
                  | StocktakeUnreachable() | StocktakeEnded()):
                self._stocktake(outcome)
            case Ignored():
                pass  # a scanner's repeat: the reader saw the first read's answer
            case StaffLogin():
                self._staff_answer(outcome)
            case PadNotice(kind=kind):
                tone, chime = NOTICE_TONE[kind]
                self.notify(notice_text(outcome, language), tone, chime=chime)  # type: ignore[arg-type]

    def _session_ended(self, ended: SessionEnded) -> None:
        app = self.app
        if app.warning is not None:
            app.warning.stop()
        app.active = False
        name, app.reader_name = app.reader_name, None
        # Nothing personal outlives the session on any screen.
        for screen_name in ("reader", "scanning", "return"):
            app.screen(screen_name).clear()
        if ended.reason == "new_card":
            return  # the next reader's greeting follows at once
        language = app.language
        if ended.mode == "borrow" and ended.reason == "done" and ended.borrowed_count:
            summary: sc.SummaryScreen = app.screen("summary")  # type: ignore[assignment]
            summary.show(ended, name)
            app.go("summary")
            self._end_summary_in(SUMMARY_SECONDS)
            offline = (f" {text('summary.offline', language, n=len(ended.offline_borrowed))}"
                       if ended.offline_borrowed else "")
            self.speak(f"{summary.title}.{offline} {text('summary.question', language)}", "ok")
            return
        # Timed out or logged out: the next person at the station sees no titles or names.
        if ended.mode == "return":
            first = (text("summary.returned", language, n=ended.returned_count) if ended.returned_count
                     else text("summary.returned_none", language))
            if ended.offline_returned:
                first += " " + text("summary.offline", language, n=len(ended.offline_returned))
        elif ended.borrowed_count:
            first = text("summary.borrowed", language, n=ended.borrowed_count).rstrip(":") + "."
        else:
            first = text("summary.borrowed_none", language)
        app.go_home()
        self.notify(f"{first} {text(f'ended.{ended.reason}', language)}", "info")

    def _stocktake(self, outcome: (StocktakeStarted | ShelfChosen | StocktakeCounted
                                   | StocktakeRefused | StocktakeUnreachable
                                   | StocktakeEnded)) -> None:
        app = self.app
        language = app.language
        screen: sc.StocktakeScreen = app.screen("stocktake")  # type: ignore[assignment]
        match outcome:
            case StocktakeStarted(fixed=fixed):
                if app.warning is not None:
                    app.warning.stop()
                # A staff member identified as a reader: nothing of that stays on screen.
                for name in ("reader", "scanning", "return"):
                    app.screen(name).clear()
                app.reader_name = None
                app.active = not fixed  # touches keep it open; a lock ends it
                screen.start(outcome)
                if not app.locked:
                    app.go("stocktake")
                self.speak(text("stocktake.started", language), "ok")
            case ShelfChosen(shelf=shelf):
                screen.shelf_chosen(outcome)
                self.speak(text("stocktake.shelf_chosen", language, shelf=shelf), "ok")
            case StocktakeCounted(lines=lines):
                screen.counted(outcome)
                tones = {stocktake_tone(line) for line in lines}
                chime: Chime = ("error" if "error" in tones else
                                "attention" if tones & {"warn", "info"} else "ok")
                if len(lines) == 1:
                    sentence = stocktake_words(lines[0], language)
                else:
                    sentence = screen.progress_line or screen.total_line
                self.speak(sentence, chime)
            case StocktakeRefused(code=code) if code == NOT_STAFF:
                self.notify(text("stocktake.not_staff", language), "error", chime="error")
            case StocktakeRefused(code=code) if code == UNSUPPORTED:
                self.notify(text("sip2.unsupported", language), "error", chime="error")
            case StocktakeRefused(items=items, code=code, message=message):
                screen.not_counted(items, code, message)
                self.notify(text("stocktake.refused", language,
                                 message=sc.why(code, message, language)), "error", chime="error")
            case StocktakeUnreachable(items=items):
                screen.not_counted(items, sc.UNREACHABLE, None)
                self.notify(text("stocktake.unreachable", language, n=len(items)), "warn",
                            chime="error")
            case StocktakeEnded(counted_here=counted, fixed=fixed):
                app.active = False
                screen.clear()
                if not fixed:
                    app.go_home()
                self.notify(text("stocktake.ended", language, n=counted), "info")

    def warn(self, seconds: float) -> None:
        app = self.app
        if app.warning is None:
            app.warning = app.make_warning()
        app.warning.start(seconds)
        self.speak(text("warning.title", app.language), "attention")

    def _staff_answer(self, result: StaffLogin) -> None:
        app = self.app
        if app.current != "staff_login":
            return  # cancelled while the server was asked
        if result.ok:
            app.screen("staff_login").clear()
            menu = app.go("staff_menu")
            menu.staff_name = given_name(result.name)  # type: ignore[attr-defined]
            app.announcer.chime("ok")
        else:
            app.screen("staff_login").answer(result)  # type: ignore[attr-defined]
            app.announcer.chime("error")

    # --- the summary's receipt --------------------------------------------------------------

    def receipt(self, choice: str) -> None:
        """The reader's choice on the summary: "print", "qr", "none", or "done" after either."""
        app = self.app
        summary: sc.SummaryScreen = app.screen("summary")  # type: ignore[assignment]
        ended, name = summary.ended, summary.reader_name or None
        if ended is None or choice in ("none", "done"):
            self.finish_summary(said=choice == "none")
            return
        self._receipt_token += 1
        token = self._receipt_token
        self._end_summary_in(RECEIPT_SHOWN_SECONDS)
        if choice == "qr":
            png = app.receipts.qr_png(ended, name, app.language)
            if png is None:
                summary.set_mode("qr_failed")
                return
            texture = CoreImage(io.BytesIO(png), ext="png").texture
            texture.mag_filter = "nearest"  # a QR code's modules stay sharp when scaled
            summary.qr_texture = texture
            summary.set_mode("qr")
            self.speak(summary.status, None)
        elif choice == "print":
            summary.set_mode("printing")
            language = app.language

            def job() -> None:  # printing blocks for as long as the printer takes
                ok = app.receipts.print(ended, name, language)
                Clock.schedule_once(lambda _dt: self._printed(token, ok))

            threading.Thread(target=job, name="receipt-print", daemon=True).start()

    def _printed(self, token: int, ok: bool) -> None:
        if token != self._receipt_token or self.app.current != "summary":
            return
        summary: sc.SummaryScreen = self.app.screen("summary")  # type: ignore[assignment]
        summary.set_mode("printed" if ok else "print_failed")
        self.speak(summary.status, "ok" if ok else "error")

    def _end_summary_in(self, seconds: float) -> None:
        if self._summary_event is not None:
            self._summary_event.cancel()
        self._summary_event = Clock.schedule_once(lambda _dt: self.finish_summary(said=False), seconds)

    def finish_summary(self, said: bool) -> None:
        """Forget the summary (and its QR code) and go back to the start."""
        app = self.app
        if self._summary_event is not None:
            self._summary_event.cancel()
            self._summary_event = None
        self._receipt_token += 1
        app.screen("summary").clear()
        if app.current == "summary":
            app.go_home()
            if said:
                self.notify(text("ended.done", app.language), "info")

    # --- saying things ----------------------------------------------------------------------

    def notify(self, sentence: str, tone: str, *, chime: Chime | None = None) -> None:
        """A message over the current screen, spoken."""
        self.app.root.ids.toast.show(sentence, tone)
        self.speak(sentence, chime)

    def speak(self, sentence: str, chime: Chime | None) -> None:
        if chime is not None:
            self.app.announcer.chime(chime)
        self.app.announcer.say(sentence, self.app.language)
