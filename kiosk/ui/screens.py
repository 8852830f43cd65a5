"""The kiosk's screens: what each shows, kept in Kivy properties, and its buttons' actions.

Each screen has its own `.kv` file under `kv/`, loaded the first time the screen is
needed (`ScreenLoader`). Screens hold the data they show (the outcomes of the session,
never the session itself) and write their sentences in the language of the moment:
`render()` runs again whenever the language changes. Actions go to the controller
(`app`), which alone talks to the session worker.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.lang import Builder
from kivy.properties import (
    BooleanProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    OptionProperty,
    StringProperty,
)
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen, ScreenManager

from kiosk.messages import (
    block_reason,
    format_date,
    given_name,
    refusal,
    stocktake_tone,
    stocktake_words,
    text,
)
from kiosk.session import (
    INCOMPLETE_SET,
    ItemBorrowed,
    ItemRefused,
    ItemReturned,
    PatronIdentified,
    ReturnRefused,
    SessionEnded,
    ShelfChosen,
    StocktakeCounted,
    StocktakeStarted,
)
from kiosk.ui.widgets import BookPicture, CardPicture, ItemRow, KButton
from protocol import StocktakeLine

if TYPE_CHECKING:
    from kiosk.ui.worker import StaffLogin

KV_DIR = Path(__file__).resolve().parent / "kv"
UNREACHABLE = "unreachable"  # a stocktake batch that never reached the library


def _app() -> Any:
    from kivy.app import App

    return App.get_running_app()


def tr(key: str, **fields: object) -> str:
    return text(key, _app().language, **fields)


def why(code: str, message: str | None, language: str, parts: int = 0) -> str:
    """Why the library said no. The server's sentence is in the station's own language
    and often more precise ("only 2 children's books at a time"); a reader who switched
    to the other language gets our words for the error code instead."""
    if code == INCOMPLETE_SET:  # refused here, by the RFID pad: no server sentence
        return text("rfid.incomplete_set", language, n=parts)
    same_language = language == _app().station.language
    return refusal(code, message if same_language else None, language)


class KioskScreen(Screen):
    kv_file = ""

    def render(self) -> None:
        """Write the sentences that depend on data, in the current language."""

    def clear(self) -> None:
        """Forget whatever this screen shows about a person."""


class StepCard(BoxLayout):
    """One of the idle screen's "how to borrow" pictures."""

    number = StringProperty("1")
    picture = OptionProperty("card", options=["card", "book", "done"])
    caption = StringProperty("")

    def on_kv_post(self, _base_widget: object) -> None:
        art = self.ids.art
        if self.picture == "card":
            art.add_widget(CardPicture())
        elif self.picture == "book":
            art.add_widget(BookPicture())
        else:
            art.add_widget(_DoneButtonPicture())


class _DoneButtonPicture(BoxLayout):
    """The "Done" button as the reader will see it, with a check: step 3."""


class IdleScreen(KioskScreen):
    kv_file = "idle.kv"


class ReaderScreen(KioskScreen):
    """The reader just identified: greeting, loans, what they may borrow, any block."""

    kv_file = "reader.kv"
    patron = ObjectProperty(None, allownone=True)
    greeting = StringProperty("")
    class_line = StringProperty("")
    status = StringProperty("")
    blocked = BooleanProperty(False)
    staff = BooleanProperty(False)  # library staff may switch to stocktake from here
    loans_header = StringProperty("")

    def show(self, patron: PatronIdentified) -> None:
        self.patron = patron
        self.render()

    def clear(self) -> None:
        self.patron = None
        self.greeting = self.class_line = self.status = self.loans_header = ""
        self.blocked = self.staff = False
        self.ids.blocks.clear_widgets()
        self.ids.loans.clear_widgets()

    def render(self) -> None:
        p = self.patron
        if p is None:
            return
        # Offline, the card cache knows no name: a greeting that says the station is offline.
        self.greeting = (tr("offline.hello") if p.offline
                         else tr(f"hello.{p.kind}", given_name=given_name(p.name)))
        self.class_line = tr("reader.class", class_name=p.class_name) if p.class_name else ""
        self.blocked = bool(p.blocks)
        self.staff = p.kind == "staff" and _app().can_stocktake
        # The screen says "scan each book" beside its picture; the voice says it all at once.
        self.status = status_sentence(p, _app().language, prompt=False)
        blocks = self.ids.blocks
        blocks.clear_widgets()
        for block in p.blocks:
            blocks.add_widget(ItemRow(tone="error", title=block_reason(block, _app().language)))
        self.loans_header = tr("loans.header").rstrip(":")
        loans = self.ids.loans
        loans.clear_widgets()
        for loan in p.loans:
            loans.add_widget(ItemRow(
                tone="error" if loan.overdue else "none", title=loan.title,
                detail=(tr("reader.due", due=format_date(loan.due))
                        + (f"  ·  {tr('reader.overdue')}" if loan.overdue else "")),
                detail_tone="error" if loan.overdue else "none"))
        if not p.loans and not p.offline:  # offline the loans are unknown, not none
            loans.add_widget(ItemRow(tone="none", title=tr("reader.no_loans")))


def status_sentence(p: PatronIdentified, language: str, prompt: bool = True) -> str:
    """What the reader may do now: borrow n more (and scan them), or why not."""
    if p.blocks:
        return text(f"blocked.{p.kind}", language)
    if p.offline:
        if p.can_borrow > 0:
            sentence = text("offline.can_borrow", language, n=p.can_borrow)
            return f"{sentence} {text('prompt.scan_items', language)}" if prompt else sentence
        return text("offline.can_borrow_none", language)
    if p.can_borrow > 0:
        sentence = text(f"can_borrow.{p.kind}", language, n=p.can_borrow)
        return f"{sentence} {text('prompt.scan_items', language)}" if prompt else sentence
    return text(f"can_borrow_none.{p.kind}", language)


class ScanningScreen(KioskScreen):
    """Each book as it is scanned: borrowed with its due date, or why not."""

    kv_file = "scanning.kv"
    entries = ListProperty()
    reader = StringProperty("")
    count_line = StringProperty("")
    left_line = StringProperty("")
    can_borrow = NumericProperty(0)

    def start(self, patron: PatronIdentified) -> None:
        self.entries = []
        self.reader = given_name(patron.name)
        self.can_borrow = patron.can_borrow
        self.render()

    def add(self, outcome: ItemBorrowed | ItemRefused) -> None:
        self.entries.append(outcome)
        self.render()

    def clear(self) -> None:
        self.entries = []
        self.reader = ""
        self.count_line = self.left_line = ""
        self.ids.latest.clear_widgets()
        self.ids.history.clear_widgets()

    @property
    def borrowed(self) -> int:
        return sum(1 for e in self.entries if isinstance(e, ItemBorrowed))

    def render(self) -> None:
        language = _app().language
        self.count_line = tr("scanning.count", n=self.borrowed)
        self.left_line = tr("scanning.left", n=max(0, self.can_borrow - self.borrowed))
        latest, history = self.ids.latest, self.ids.history
        latest.clear_widgets()
        history.clear_widgets()
        rows = [borrow_row(e, language) for e in self.entries]
        if rows:
            big = rows[-1]
            big.large = True
            latest.add_widget(big)
        for row in reversed(rows[:-1]):
            history.add_widget(row)


def borrow_row(outcome: ItemBorrowed | ItemRefused, language: str) -> ItemRow:
    if isinstance(outcome, ItemBorrowed):
        if outcome.offline or outcome.due is None:
            return ItemRow(tone="warn", title=f"{text('ui.offline_mark', language)}: {outcome.item}",
                           detail=text("ui.due_by_library", language), detail_tone="warn")
        return ItemRow(tone="ok", title=outcome.title,
                       detail=text("reader.due", language, due=format_date(outcome.due)))
    return ItemRow(tone="error", title=f"{text('scanning.refused', language)}: {outcome.item}",
                   detail=refused_reason(outcome, language), detail_tone="error")


def refused_reason(outcome: ItemRefused, language: str) -> str:
    if outcome.blocks:
        return text("item.refused_blocked", language)
    return why(outcome.code, outcome.message, language, outcome.parts)


class ReturnScreen(KioskScreen):
    """Return mode: each book returned, with its title and whether it came back late."""

    kv_file = "return.kv"
    entries = ListProperty()
    count_line = StringProperty("")

    def start(self) -> None:
        self.entries = []
        self.render()

    def add(self, outcome: ItemReturned | ReturnRefused) -> None:
        self.entries.append(outcome)
        self.render()

    def clear(self) -> None:
        self.entries = []
        self.count_line = ""
        self.ids.latest.clear_widgets()
        self.ids.history.clear_widgets()

    def render(self) -> None:
        language = _app().language
        returned = sum(1 for e in self.entries if isinstance(e, ItemReturned))
        self.count_line = tr("return.count", n=returned)
        latest, history = self.ids.latest, self.ids.history
        latest.clear_widgets()
        history.clear_widgets()
        rows = [return_row(e, language) for e in self.entries]
        if rows:
            big = rows[-1]
            big.large = True
            latest.add_widget(big)
        for row in reversed(rows[:-1]):
            history.add_widget(row)


def return_row(outcome: ItemReturned | ReturnRefused, language: str) -> ItemRow:
    if isinstance(outcome, ItemReturned) and outcome.offline:
        return ItemRow(tone="warn", title=f"{text('ui.offline_mark', language)}: {outcome.item}",
                       detail=text("item.returned_offline", language, item=outcome.item),
                       detail_tone="warn")
    if isinstance(outcome, ItemReturned):
        late = outcome.was_overdue and outcome.days_late > 0
        return ItemRow(tone="warn" if late else "ok", title=outcome.title,
                       detail=(text("return.late", language, days=outcome.days_late) if late
                               else text("return.on_time", language)),
                       detail_tone="warn" if late else "ok")
    return ItemRow(tone="error", title=f"{text('return.not_returned', language)}: {outcome.item}",
                   detail=why(outcome.code, outcome.message, language, outcome.parts),
                   detail_tone="error")


class SummaryScreen(KioskScreen):
    """What was borrowed, with due dates; then a receipt: printed, a QR code, or none."""

    kv_file = "summary.kv"
    ended = ObjectProperty(None, allownone=True)
    reader_name = StringProperty("")
    title = StringProperty("")
    # choose: the three buttons; the others: a word about the receipt (and the QR code)
    mode = OptionProperty("choose", options=["choose", "printing", "printed", "print_failed",
                                             "qr", "qr_failed"])
    status = StringProperty("")
    qr_texture = ObjectProperty(None, allownone=True)
    _STATUS = {"printing": "summary.printing", "printed": "summary.printed",
               "print_failed": "summary.print_failed", "qr": "summary.qr_hint",
               "qr_failed": "summary.qr_failed"}

    def show(self, ended: SessionEnded, reader_name: str | None) -> None:
        self.ended, self.reader_name = ended, reader_name or ""
        self.qr_texture = None
        self.set_mode("choose")

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.render()

    def clear(self) -> None:
        self.ended, self.reader_name, self.qr_texture = None, "", None
        self.title = self.status = ""
        self.mode = "choose"
        self.ids.books.clear_widgets()

    def render(self) -> None:
        if self.ended is None:
            return
        language = _app().language
        self.title = tr("summary.borrowed", n=self.ended.borrowed_count).rstrip(":")
        books = self.ids.books
        books.clear_widgets()
        for b in self.ended.borrowed:
            books.add_widget(ItemRow(tone="ok", title=b.title,
                                     detail=text("reader.due", language, due=format_date(b.due))))
        for item in self.ended.offline_borrowed:
            books.add_widget(ItemRow(tone="warn", title=f"{text('ui.offline_mark', language)}: {item}",
                                     detail=text("ui.due_by_library", language), detail_tone="warn"))
        key = self._STATUS.get(self.mode)
        self.status = tr(key) if key else ""


class StocktakeScreen(KioskScreen):
    """Kiểm kê: the shelf being counted and its progress, each copy read with what it
    was (counted, already counted, unknown; withdrawn, on loan, misplaced), "Finish"."""

    kv_file = "stocktake.kv"
    KEEP = 200  # rows kept on screen; the library keeps the count
    # a StocktakeLine, or (the code, why it was not counted: UNREACHABLE or the error
    # code, the server's message or None)
    entries = ListProperty()
    shelf = StringProperty("")
    recent = ListProperty()
    fixed = BooleanProperty(False)
    total = ObjectProperty(None, allownone=True)     # (stocktake number, counted) or None
    progress = ObjectProperty(None, allownone=True)  # ShelfProgress of the shelf, or None
    total_line = StringProperty("")
    shelf_line = StringProperty("")
    progress_line = StringProperty("")

    def start(self, started: StocktakeStarted) -> None:
        self.entries, self.shelf, self.total, self.progress = [], "", None, None
        self.fixed, self.recent = started.fixed, list(started.recent)
        self.render()

    def shelf_chosen(self, chosen: ShelfChosen) -> None:
        self.shelf, self.recent, self.progress = chosen.shelf, list(chosen.recent), None
        self.render()

    def counted(self, outcome: StocktakeCounted) -> None:
        self.entries = [*self.entries, *outcome.lines][-self.KEEP:]
        self.total = (outcome.stocktake, outcome.counted)
        if outcome.progress is not None and outcome.shelf == self.shelf:
            self.progress = outcome.progress
        self.render()

    def not_counted(self, items: tuple[str, ...], reason: str, message: str | None) -> None:
        self.entries = [*self.entries, *((code, reason, message) for code in items)][-self.KEEP:]
        self.render()

    def submit_shelf(self) -> None:
        field = self.ids.shelf_input
        if field.text.strip():
            _app().choose_shelf(field.text)
        field.text = ""
        field.focus = False

    def clear(self) -> None:
        self.entries, self.shelf, self.total, self.progress = [], "", None, None
        self.total_line = self.shelf_line = self.progress_line = ""
        self.ids.latest.clear_widgets()
        self.ids.history.clear_widgets()

    def render(self) -> None:
        language = _app().language
        self.shelf_line = (tr("stocktake.shelf", shelf=self.shelf) if self.shelf
                           else tr("stocktake.no_shelf"))
        self.total_line = (tr("stocktake.total", number=self.total[0], n=self.total[1])
                           if self.total else "")
        p = self.progress
        self.progress_line = (tr("stocktake.progress", shelf=p.shelf, seen=p.seen,
                                 expected=p.expected) if p is not None else "")
        shelves = self.ids.recent
        shelves.clear_widgets()
        for name in self.recent:
            button = KButton(text=name, outline=True, bg=self.ids.set_shelf.bg,
                             font_size=self.ids.set_shelf.font_size * 0.8)
            button.bind(on_release=lambda _b, shelf=name: _app().choose_shelf(shelf))
            shelves.add_widget(button)
        latest, history = self.ids.latest, self.ids.history
        latest.clear_widgets()
        history.clear_widgets()
        rows = [stocktake_row(e, language) for e in self.entries]
        if rows:
            big = rows[-1]
            big.large = True
            latest.add_widget(big)
        for row in reversed(rows[:-1]):
            history.add_widget(row)


def stocktake_row(entry: StocktakeLine | tuple[str, str, str | None], language: str) -> ItemRow:
    if isinstance(entry, StocktakeLine):
        tone = stocktake_tone(entry)
        title = entry.title or entry.item or entry.code
        detail = stocktake_words(entry, language)
        if entry.item:
            detail = f"{entry.item} · {detail}"
        return ItemRow(tone=tone, title=title, detail=detail,
                       detail_tone=tone if tone in ("error", "warn") else "none")
    code, reason, message = entry
    detail = (text("stocktake.unreachable", language, n=1) if reason == UNREACHABLE
              else text("stocktake.refused", language, message=why(reason, message, language)))
    return ItemRow(tone="error", title=code, detail=detail, detail_tone="error")


class StaffLoginScreen(KioskScreen):
    """Staff card, then PIN on the keypad; the server checks the PIN."""

    kv_file = "staff_login.kv"
    card = StringProperty("")
    pin = StringProperty("")
    busy = BooleanProperty(False)
    message = StringProperty("")
    message_tone = OptionProperty("info", options=["ok", "error", "warn", "info"])
    PIN_MAX = 12

    def begin(self, card: str | None = None) -> None:
        self.card, self.pin, self.busy, self.message = card or "", "", False, ""

    def clear(self) -> None:
        self.begin()

    def card_read(self, code: str) -> None:
        if not self.busy:
            self.card, self.pin, self.message = code, "", ""

    def digit(self, digit: str) -> None:
        if self.card and not self.busy and len(self.pin) < self.PIN_MAX:
            self.pin += digit
            self.message = ""

    def erase(self) -> None:
        if not self.busy:
            self.pin = self.pin[:-1]

    def submit(self) -> None:
        if self.card and self.pin and not self.busy:
            self.busy, self.message, self.message_tone = True, tr("staff.checking"), "info"
            _app().staff_login(self.card, self.pin)

    def answer(self, result: StaffLogin) -> None:
        self.busy = False
        self.pin = ""
        language = _app().language
        if result.code == "not_staff":
            self.card = ""
            self.message = text("staff.not_staff", language)
        elif result.code == "unreachable":
            self.message = text("server_unreachable", language)
        else:
            self.message = why(result.code or "internal", None if result.code == "wrong_pin"
                               else result.message, language)
        self.message_tone = "error"


class StaffMenuScreen(KioskScreen):
    kv_file = "staff_menu.kv"
    staff_name = StringProperty("")

    def clear(self) -> None:
        self.staff_name = ""


class DevicesScreen(KioskScreen):
    """Every device of the station and its state, as checked just now."""

    kv_file = "devices.kv"
    states = ListProperty()  # [(message key of the device or its name, state)]

    def show(self, states: list[tuple[str, str]]) -> None:
        self.states = states
        self.render()

    def render(self) -> None:
        rows = self.ids.rows
        rows.clear_widgets()
        tones = {"ok": "ok", "fault": "error", "absent": "warn", "off": "info"}
        for name, state in self.states:
            title = tr(name) if name.startswith("device.") else name
            rows.add_widget(ItemRow(tone=tones.get(state, "warn"), title=title,
                                    detail=tr(f"device.{state}") if state in tones else state,
                                    detail_tone=tones.get(state, "warn")))


class OutOfServiceScreen(KioskScreen):
    kv_file = "out_of_service.kv"
    reason = OptionProperty("locked", options=["locked", "offline"])


class WarningView(ModalView):
    """"Are you still there?" with the seconds left before the session ends."""

    seconds = NumericProperty(0)
    total = NumericProperty(1)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._deadline = 0.0
        self._ticker = None

    def start(self, seconds_left: float) -> None:
        self.total = max(1.0, seconds_left)
        self._deadline = time.monotonic() + seconds_left
        self._update()
        if self._ticker is None:
            self._ticker = Clock.schedule_interval(self._update, 0.1)
        if self._window is None:
            self.open(animation=False)

    def _update(self, *_args: object) -> None:
        self.seconds = max(0.0, self._deadline - time.monotonic())

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._window is not None:
            self.dismiss(animation=False)

    @property
    def whole_seconds(self) -> int:
        return math.ceil(self.seconds)


SCREENS: dict[str, type[KioskScreen]] = {
    "idle": IdleScreen,
    "reader": ReaderScreen,
    "scanning": ScanningScreen,
    "summary": SummaryScreen,
    "return": ReturnScreen,
    "staff_login": StaffLoginScreen,
    "staff_menu": StaffMenuScreen,
    "devices": DevicesScreen,
    "out_of_service": OutOfServiceScreen,
    "stocktake": StocktakeScreen,
}
STAFF_SCREENS = frozenset({"staff_login", "staff_menu", "devices"})


class ScreenLoader:
    """Creates each screen the first time it is wanted, loading its .kv file then."""

    def __init__(self, manager: ScreenManager) -> None:
        self._manager = manager
        self._loaded: set[str] = set()

    def load_kv(self, filename: str) -> None:
        if filename not in self._loaded:
            Builder.load_file(str(KV_DIR / filename))
            self._loaded.add(filename)

    def get(self, name: str) -> KioskScreen:
        if self._manager.has_screen(name):
            return self._manager.get_screen(name)  # type: ignore[no-any-return]
        cls = SCREENS[name]
        self.load_kv(cls.kv_file)
        screen = cls(name=name)
        self._manager.add_widget(screen)
        return screen

    def created(self) -> list[KioskScreen]:
        return list(self._manager.screens)  # type: ignore[arg-type]


