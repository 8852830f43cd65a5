"""Every sentence a station shows or says, by key; the words live in gettext catalogs.

Written for a ten-year-old at the kiosk: short, friendly, with diacritics. Where the
reader's kind is known a student is "em" and a teacher "thầy/cô"; where it is not
(return mode, refusals) the sentence needs no pronoun. The English here is the msgid;
the Vietnamese is in `kiosk/locale/vi/LC_MESSAGES/thuvien.po` (the key is each
message's context, so one English sentence can have several Vietnamese ones).
After editing, run `python scripts/i18n.py` and translate what it leaves empty.

The server's own messages (`reply.error.message`) are already in the site's language;
`refusal` shows them as given and uses ours (`error.<code>`) when the server gave none.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Iterator, Mapping

from kiosk.i18n import LANGUAGES, NC_, NPC_, Msg, language_of, translate
from protocol import ErrorCode, StocktakeLine

Language = str  # "vi" or "en"; anything else falls back to Vietnamese

_ALL: tuple[Msg, ...] = (
    # --- terminal banner (kiosk/headless.py prints both languages) ---
    NC_("banner.title", "Library - station {station}"),
    NC_("banner.card", "Scan or type your library card number, then scan each book to borrow."),
    NC_("banner.commands",
        "Type \"return\" to return books, \"done\" when finished, \"quit\" to leave."),
    NC_("bye", "Goodbye! See you soon."),
    # --- a reader is identified ---
    NC_("hello.student", "Hello {given_name}!"),
    NC_("hello.teacher", "Hello {given_name}!"),
    NC_("hello.staff", "Hello {given_name}!"),
    NPC_("can_borrow.student", "You can borrow {n} more book.", "You can borrow {n} more books."),
    NPC_("can_borrow.teacher", "You can borrow {n} more book.", "You can borrow {n} more books."),
    NPC_("can_borrow.staff", "You can borrow {n} more book.", "You can borrow {n} more books."),
    NC_("can_borrow_none.student",
        "You have borrowed as many books as allowed. Return some to borrow more."),
    NC_("can_borrow_none.teacher", "You have borrowed as many books as allowed."),
    NC_("can_borrow_none.staff", "You have borrowed as many books as allowed."),
    NC_("loans.header", "Books on loan:"),
    NC_("loan.line", "{title} - Due: {due}"),
    NC_("loan.line_overdue", "{title} - Due: {due} (overdue!)"),
    NC_("blocked.student",
        "Your card is blocked, so you cannot borrow now. You can still return books."),
    NC_("blocked.teacher", "Your card is blocked, so you cannot borrow now."),
    NC_("blocked.staff", "Your card is blocked, so you cannot borrow now."),
    # Reasons, by the block codes of `patron.identify`; `block.other` for any new code.
    NC_("block.overdue", "A book is overdue."),
    NC_("block.blocked", "The library has blocked this card. Please see the librarian."),
    NC_("block.inactive", "This card is no longer valid. Please see the librarian."),
    NC_("block.other", "Please see the librarian."),
    NC_("prompt.scan_items", "Scan each book you want to borrow."),
    NC_("same_card", "This card is already in use. Scan a book."),
    # --- borrowing ---
    NC_("item.borrowed", "Borrowed: {title}. Due: {due}"),
    NC_("item.refused", "Not borrowed {item}: {message}"),
    NC_("item.refused_blocked", "The card is blocked, so no book can be borrowed."),
    NC_("need_card", "Scan your library card before borrowing. To return books, choose Return."),
    # --- returning ---
    NC_("return.mode", "Returning: scan each book you are bringing back."),
    NC_("item.returned", "Returned: {title}. Thank you!"),
    NPC_("item.returned_late", "This book is {days} day late.", "This book is {days} days late."),
    NC_("return.refused", "Not returned {item}: {message}"),
    # --- problems ---
    NC_("unreadable", "This code could not be read. Please scan again."),
    NC_("server_unreachable",
        "The library server cannot be reached. Try again in a few minutes or tell the librarian."),
    NC_("server_bad_reply", "The library server gave an unclear answer. Please tell the librarian."),
    NPC_("inactivity", "Still there? The session ends in {seconds} second.",
         "Still there? The session ends in {seconds} seconds."),
    # --- the end of a session ---
    NC_("summary.borrowed", "Borrowed this time: {n}"),
    NC_("summary.borrowed_none", "Nothing borrowed this time."),
    NPC_("summary.returned", "Returned {n} book. Thank you!", "Returned {n} books. Thank you!"),
    NC_("summary.returned_none", "No books returned."),
    NC_("ended.done", "See you soon!"),
    NC_("ended.timeout", "Nobody was there for a while, so the session ended."),
    NC_("ended.logout", "Logged out. See you soon!"),
    NC_("ended.new_card", "The previous session has ended."),
    # --- the protocol's error codes, for replies that carry no message of their own ---
    NC_("error.bad_request",
        "The station sent a request the library could not read. Please tell the librarian."),
    NC_("error.unauthorized", "This station may not do that. Please tell the librarian."),
    NC_("error.unknown_patron", "This library card is not known."),
    NC_("error.wrong_pin", "The PIN is wrong."),
    NC_("error.patron_blocked", "This library card is blocked."),
    NC_("error.limit_reached", "You have borrowed as many books as allowed."),
    NC_("error.unknown_item", "This book is not in the library's catalogue."),
    NC_("error.item_not_loanable", "This book cannot be taken home."),
    NC_("error.item_on_loan", "This book is already on loan."),
    NC_("error.item_not_on_loan", "This book is not on loan."),
    NC_("error.renew_limit", "This book has been renewed as often as allowed."),
    NC_("error.internal", "The library server had an error. Please tell the librarian."),
    NC_("error.no_stocktake", "No stocktake is open. Start one on the library server first."),
    # --- the touch screen (kiosk/ui) ---
    NC_("ui.borrow", "Borrow books"),
    NC_("ui.return", "Return books"),
    NC_("ui.done", "Done"),
    NC_("ui.staff", "Staff"),
    NC_("idle.welcome", "Welcome to the library!"),
    NC_("idle.step_card", "Scan your card"),
    NC_("idle.step_books", "Scan each book"),
    NC_("idle.step_done", "Press Done"),
    NC_("idle.scan_card_now", "Scan your library card to start."),
    NC_("reader.class", "Class {class_name}"),
    NC_("reader.no_loans", "No books on loan."),
    NC_("reader.due", "Due {due}"),
    NC_("reader.overdue", "Overdue"),
    NPC_("scanning.count", "Borrowed: {n} book", "Borrowed: {n} books"),
    NC_("scanning.left", "Can still borrow: {n}"),
    NC_("scanning.refused", "Not borrowed"),
    NC_("summary.question", "Would you like a receipt?"),
    NC_("summary.print", "Print"),
    NC_("summary.qr", "QR code"),
    NC_("summary.no_receipt", "No receipt"),
    NC_("summary.printing", "Printing your receipt..."),
    NC_("summary.printed", "Please take your receipt."),
    NC_("summary.print_failed", "The receipt could not be printed. Please tell the librarian."),
    NC_("summary.qr_hint", "Scan this code with a phone to keep the list of your books."),
    NC_("summary.qr_failed", "The QR code could not be made. Please tell the librarian."),
    NPC_("return.count", "Returned: {n} book", "Returned: {n} books"),
    NC_("return.on_time", "On time"),
    NPC_("return.late", "{days} day late", "{days} days late"),
    NC_("return.not_returned", "Not returned"),
    NC_("staff.title", "Staff mode"),
    NC_("staff.scan_card", "Scan your staff card."),
    NC_("staff.enter_pin", "Enter your PIN"),
    NC_("staff.clear", "Clear"),
    NC_("staff.ok", "OK"),
    NC_("staff.cancel", "Cancel"),
    NC_("staff.checking", "Checking..."),
    NC_("staff.not_staff", "This is not a staff card."),
    NC_("staff.hello", "Hello {given_name}. What would you like to do?"),
    NC_("staff.lock", "Put out of service"),
    NC_("staff.unlock", "Back in service"),
    NC_("staff.devices", "Check devices"),
    NC_("staff.restart", "Restart"),
    NC_("staff.leave", "Leave kiosk mode"),
    NC_("staff.back", "Back"),
    NC_("staff.in_service", "The station is in service."),
    NC_("staff.out_of_service", "The station is out of service."),
    NC_("device.link", "Library server"),
    NC_("device.scanner", "Barcode scanner"),
    NC_("device.voice", "Voice"),
    NC_("device.printer", "Receipt printer"),
    NC_("device.ok", "Working"),
    NC_("device.fault", "Fault"),
    NC_("device.absent", "Not connected"),
    NC_("device.off", "Turned off"),
    NC_("oos.locked_title", "Out of service"),
    NC_("oos.locked_body",
        "This station is resting for a while. You can still borrow and return books "
        "at the library desk."),
    NC_("oos.offline_title", "No connection to the library"),
    NC_("oos.offline_body",
        "The station cannot reach the library server and keeps trying by itself. "
        "Meanwhile, borrow and return books at the library desk."),
    NC_("oos.staff_hint", "For the librarian:"),
    NC_("warning.title", "Are you still there?"),
    NPC_("warning.body", "The session ends in {seconds} second.",
         "The session ends in {seconds} seconds."),
    NC_("warning.stay", "I'm still here"),
    # --- the return box (spoken: no screen) ---
    NC_("returnbox.returned", "Returned: {title}. Thank you!"),
    NC_("returnbox.not_returned", "This book was not returned: {reason} The librarian will check it."),
    NC_("returnbox.unreadable", "This book could not be read. The librarian will check it."),
    NC_("returnbox.offline",
        "The library server cannot be reached. The librarian will return this book later."),
    NC_("returnbox.set", "This book has several parts. The librarian will return it."),
    NC_("returnbox.full", "The return box is full. Please return books at the library desk."),
    # --- the kiosk's RFID pad (kiosk/rfidpad.py) ---
    NC_("rfid.incomplete_set",
        "This item has {n} parts. Please bring all of them to the library desk."),
    NC_("rfid.unreadable",
        "The tag of one book on the pad could not be read. Scan its barcode, or give it "
        "to the librarian."),
    NC_("rfid.put_back", "Please put \"{title}\" back on the pad for a moment."),
    NC_("rfid.secured", "Thank you! \"{title}\" is ready."),
    NC_("rfid.ask_librarian",
        "\"{title}\" is done, but its security tag could not be set. Please show it to "
        "the librarian."),
    # --- offline: recorded at the station, confirmed by the library later (kiosk/offline.py) ---
    NC_("offline.hello", "Hello! The library server cannot be reached, so this station works offline."),
    NPC_("offline.can_borrow", "You can borrow {n} more book now; the library will confirm it.",
         "You can borrow {n} more books now; the library will confirm them."),
    NC_("offline.can_borrow_none", "No more books can be borrowed while the station is offline."),
    NC_("item.borrowed_offline",
        "Recorded offline: {item}. The library will confirm it and set the due date."),
    NC_("item.returned_offline", "Return recorded offline: {item}. The library will confirm it. Thank you!"),
    NPC_("summary.offline", "{n} book recorded offline: the library will confirm it.",
         "{n} books recorded offline: the library will confirm them."),
    NC_("loan.line_offline", "{item} - recorded offline, due date set by the library"),
    NC_("server_unreachable_returns",
        "The library server cannot be reached. You can still return books; borrowing must wait."),
    # A station on a SIP2 library system (kiosk/sip2_backend.py) asked for what SIP2 lacks.
    NC_("sip2.unsupported", "The library system this station uses cannot do that here."),
    NC_("ui.offline_mark", "Recorded offline"),
    NC_("ui.due_by_library", "Due date: set by the library"),
    NC_("returnbox.returned_offline",
        "Recorded offline. The library will confirm the return. Thank you!"),
    # --- stocktake (kiểm kê): staff count the stock shelf by shelf ---
    NC_("stocktake.menu", "Stocktake"),
    NC_("stocktake.title", "Stocktake"),
    NC_("stocktake.end", "Finish"),
    NC_("stocktake.started",
        "Stocktake: scan the shelf label or choose a shelf, then scan each book."),
    NC_("stocktake.shelf", "Shelf: {shelf}"),
    NC_("stocktake.no_shelf", "No shelf chosen"),
    NC_("stocktake.shelf_chosen", "Counting shelf {shelf}. Scan each book."),
    NC_("stocktake.shelf_hint", "Shelf name"),
    NC_("stocktake.set_shelf", "Set shelf"),
    NC_("stocktake.recent", "Recent shelves:"),
    NC_("stocktake.progress", "Shelf {shelf}: {seen} of {expected} seen"),
    NPC_("stocktake.total", "Stocktake no. {number}: {n} book counted",
         "Stocktake no. {number}: {n} books counted"),
    NC_("stocktake.counted", "Counted"),
    NC_("stocktake.already_counted", "Already counted"),
    NC_("stocktake.unknown", "Unknown code"),
    NC_("stocktake.withdrawn", "Withdrawn copy"),
    NC_("stocktake.on_loan", "On loan"),
    NC_("stocktake.misplaced", "Misplaced"),
    NC_("stocktake.misplaced_where", "Misplaced: it belongs on {location}"),
    NC_("stocktake.refused", "Not counted: {message}"),
    NPC_("stocktake.unreachable",
         "The library server cannot be reached: {n} code was not counted. Scan it again later.",
         "The library server cannot be reached: {n} codes were not counted. Scan them again later."),
    NC_("stocktake.not_staff", "Only library staff can do a stocktake."),
    NC_("stocktake.card_ignored", "A stocktake is going on: this station is not lending now."),
    NPC_("stocktake.ended", "Stocktake finished here: {n} book counted.",
         "Stocktake finished here: {n} books counted."),
)

_BY_KEY: dict[str, Msg] = {message.context: message for message in _ALL if message.context}
BLOCK_KEYS = frozenset({"overdue", "blocked", "inactive"})
_ERROR_CODES = frozenset(code.value for code in ErrorCode)


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _count(message: Msg, fields: Mapping[str, object]) -> int | None:
    # The plural form follows the first whole-number field of the sentence ({n}, {days}).
    if message.plural is None:
        return None
    for name in _fields(message.plural):
        value = fields.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def template(key: str, language: Language = "vi", count: int | None = None) -> str:
    message = _BY_KEY[key]
    return translate(message, language_of(language), count)


def text(key: str, language: Language = "vi", **fields: object) -> str:
    message = _BY_KEY[key]
    return translate(message, language_of(language), _count(message, fields)).format(**fields)


def has(key: str) -> bool:
    return key in _BY_KEY


def refusal(code: str, message: str | None, language: Language = "vi") -> str:
    """Why a request was refused: the server's sentence if it gave one, else ours."""
    if message:
        return message
    if code == ErrorCode.INTERNAL:
        # The session reports a reply it could not read as `internal` with no message.
        return text("server_bad_reply", language)
    if code in _ERROR_CODES:
        return text(f"error.{code}", language)
    return text("block.other", language)


def stocktake_words(line: StocktakeLine, language: Language = "vi") -> str:
    """What a copy read in a stocktake was: the outcome, then each flag ("Đã kiểm · Sai
    vị trí: sách thuộc giá Kệ 2")."""
    words = [text(f"stocktake.{line.outcome}", language)]
    for flag in line.flags:
        if flag == "misplaced" and line.location:
            words.append(text("stocktake.misplaced_where", language, location=line.location))
        else:
            words.append(text(f"stocktake.{flag}", language))
    return " · ".join(words)


def stocktake_tone(line: StocktakeLine) -> str:
    """ok: counted; info: already counted; warn: to look at; error: unknown or withdrawn."""
    if line.outcome == "unknown" or "withdrawn" in line.flags:
        return "error"
    if line.flags:
        return "warn"
    return "ok" if line.outcome == "counted" else "info"


def block_reason(block: str, language: Language = "vi") -> str:
    return text(f"block.{block}" if block in BLOCK_KEYS else "block.other", language)


class _Catalog(Mapping[str, dict[str, str]]):
    """Every message's template in every language, read from the catalogs: key -> {lang: template}."""

    def __getitem__(self, key: str) -> dict[str, str]:
        return {language: template(key, language, count=2) for language in LANGUAGES}

    def __iter__(self) -> Iterator[str]:
        return iter(_BY_KEY)

    def __len__(self) -> int:
        return len(_BY_KEY)


MESSAGES: Mapping[str, dict[str, str]] = _Catalog()


def format_date(day: dt.date) -> str:
    """Dates as Vietnamese readers write them: 19/09/2026."""
    return day.strftime("%d/%m/%Y")


def given_name(full_name: str) -> str:
    """The name a Vietnamese person is called by: the last word ("Nguyễn Văn An" -> "An")."""
    words = full_name.split()
    return words[-1] if words else ""
