"""The headless station: a terminal and a keyboard (or a keyboard-wedge scanner), no screen.

Reads arrive on the scanner's thread and are queued; the main loop owns the session,
feeds it one read at a time and ticks it about twice a second, so the session never
sees two threads. A few words typed at the terminal are commands, not codes: "kiemke"
switches a staff member to stocktake, where "xong" (done) finishes it again.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from typing import Literal, TextIO

from drivers.base import Read, Scanner
from kiosk.backend import Backend
from kiosk.config import StationConfig
from kiosk.messages import format_date, given_name, stocktake_tone, stocktake_words, text
from kiosk.rfidpad import PadNotice, PadRead, RfidPad, notice_text
from kiosk.session import (
    INCOMPLETE_SET,
    NOT_STAFF,
    UNSUPPORTED,
    Ignored,
    InactivityWarning,
    ItemBorrowed,
    ItemRefused,
    ItemReturned,
    NeedCard,
    Outcome,
    PatronIdentified,
    PatronRefused,
    ReturnModeStarted,
    ReturnRefused,
    ServerUnreachable,
    Session,
    SessionEnded,
    ShelfChosen,
    StocktakeCounted,
    StocktakeEnded,
    StocktakeRefused,
    StocktakeStarted,
    StocktakeUnreachable,
    Unreadable,
)
from protocol import ErrorCode, default_message

Command = Literal["return", "done", "quit", "stocktake"]

# Folded as `_fold` leaves them: lower case, no diacritics, no spaces ("Trả sách" -> "trasach").
COMMANDS: dict[str, Command] = {
    "tra": "return", "trasach": "return", "return": "return",
    "xong": "done", "done": "done",
    "thoat": "quit", "quit": "quit", "exit": "quit",
    "kiemke": "stocktake", "stocktake": "stocktake",
    "ketthuc": "done", "finish": "done",
}

OK, NO, WARN, INFO = "✔", "✖", "⚠", "»"
STOCKTAKE_MARKS = {"ok": OK, "info": INFO, "warn": WARN, "error": NO}


def _fold(word: str) -> str:
    # đ is a letter of its own, not d with a mark: NFD leaves it alone (DOMAIN.md).
    decomposed = unicodedata.normalize("NFD", word.casefold().replace("đ", "d"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch) and not ch.isspace())


def command_of(code: str) -> Command | None:
    return COMMANDS.get(_fold(code))


# --- rendering -----------------------------------------------------------------------

def _refusal(code: str, message: str | None, language: str, parts: int = 0) -> str:
    if message:
        return message  # the server's own sentence, already in the site's language
    if code == INCOMPLETE_SET:
        return text("rfid.incomplete_set", language, n=parts)
    if code == ErrorCode.INTERNAL:
        return text("server_bad_reply", language)
    try:
        return default_message(code, language)
    except ValueError:
        return text("block.other", language)


def _block_lines(blocks: tuple[str, ...], language: str) -> list[str]:
    keys = {"overdue", "blocked", "inactive"}
    return [f"  {NO} " + text(f"block.{b}" if b in keys else "block.other", language) for b in blocks]


def render(outcome: Outcome, language: str = "vi") -> str:
    """An outcome as the lines a terminal prints; "" for outcomes a person need not see."""
    def t(key: str, **fields: object) -> str:
        return text(key, language, **fields)

    match outcome:
        case PatronIdentified(offline=True, kind=kind, can_borrow=n, blocks=blocks):
            # Known from the card cache: no name to greet, no loans to list.
            lines = [f"{WARN} {t('offline.hello')}"]
            if blocks:
                lines += [t(f"blocked.{kind}"), *_block_lines(blocks, language)]
            else:
                lines.append(t("offline.can_borrow", n=n) if n > 0 else t("offline.can_borrow_none"))
                if n > 0:
                    lines.append(t("prompt.scan_items"))
            return "\n".join(lines)
        case PatronIdentified(name=name, kind=kind, loans=loans, can_borrow=n, blocks=blocks):
            hello = t(f"hello.{kind}", given_name=given_name(name))
            if blocks:
                lines = [f"{hello} {t(f'blocked.{kind}')}", *_block_lines(blocks, language)]
            elif n > 0:
                lines = [f"{hello} {t(f'can_borrow.{kind}', n=n)}"]
            else:
                lines = [f"{hello} {t(f'can_borrow_none.{kind}')}"]
            if loans:
                lines.append(t("loans.header"))
                lines += ["  • " + t("loan.line_overdue" if loan.overdue else "loan.line",
                                     title=loan.title, due=format_date(loan.due)) for loan in loans]
            if not blocks and n > 0:
                lines.append(t("prompt.scan_items"))
            return "\n".join(lines)
        case PatronRefused(code=code, message=message):
            return f"{NO} {_refusal(code, message, language)}"
        case ItemBorrowed(offline=True, item=item):
            return f"{OK} {t('item.borrowed_offline', item=item)}"
        case ItemBorrowed(title=title, due=due) if due is not None:
            return f"{OK} {t('item.borrowed', title=title, due=format_date(due))}"
        case ItemRefused(item=item, blocks=blocks) if blocks:
            return "\n".join([f"{NO} {t('item.refused', item=item, message=t('item.refused_blocked'))}",
                              *_block_lines(blocks, language)])
        case ItemRefused(item=item, code=code, message=message, parts=parts):
            why = _refusal(code, message, language, parts)
            return f"{NO} {t('item.refused', item=item, message=why)}"
        case ReturnModeStarted():
            return f"{INFO} {t('return.mode')}"
        case ItemReturned(offline=True, item=item):
            return f"{OK} {t('item.returned_offline', item=item)}"
        case ItemReturned(title=title, was_overdue=late, days_late=days):
            line = f"{OK} {t('item.returned', title=title)}"
            return f"{line}\n  {WARN} {t('item.returned_late', days=days)}" if late and days > 0 else line
        case ReturnRefused(item=item, code=code, message=message, parts=parts):
            why = _refusal(code, message, language, parts)
            return f"{NO} {t('return.refused', item=item, message=why)}"
        case NeedCard():
            return f"{WARN} {t('need_card')}"
        case Unreadable():
            return f"{NO} {t('unreadable')}"
        case ServerUnreachable(can_return=True):
            return f"{WARN} {t('server_unreachable_returns')}"
        case ServerUnreachable():
            return f"{WARN} {t('server_unreachable')}"
        case InactivityWarning(seconds_left=seconds):
            return f"{WARN} {t('inactivity', seconds=math.ceil(seconds))}"
        case SessionEnded(reason=reason, mode="borrow", borrowed=borrowed, offline_borrowed=offline):
            n = outcome.borrowed_count
            lines = [t("summary.borrowed", n=n) if n else t("summary.borrowed_none")]
            lines += ["  • " + t("loan.line", title=b.title, due=format_date(b.due)) for b in borrowed]
            lines += ["  • " + t("loan.line_offline", item=item) for item in offline]
            if offline:
                lines.append(f"{WARN} {t('summary.offline', n=len(offline))}")
            return "\n".join([*lines, t(f"ended.{reason}")])
        case SessionEnded(reason=reason, offline_returned=offline):
            n = outcome.returned_count
            lines = [t("summary.returned", n=n) if n else t("summary.returned_none")]
            if offline:
                lines.append(f"{WARN} {t('summary.offline', n=len(offline))}")
            return "\n".join([*lines, t(f"ended.{reason}")])
        case Ignored(reason="same_card"):
            return f"{INFO} {t('same_card')}"
        case Ignored(reason="stocktake"):
            return f"{INFO} {t('stocktake.card_ignored')}"
        case StocktakeStarted():
            return f"{INFO} {t('stocktake.started')}"
        case ShelfChosen(shelf=shelf):
            return f"{INFO} {t('stocktake.shelf_chosen', shelf=shelf)}"
        case StocktakeCounted(lines=lines, stocktake=number, counted=counted, progress=progress):
            out = [f"{STOCKTAKE_MARKS[stocktake_tone(line)]} "
                   f"{line.title or line.item or line.code}: {stocktake_words(line, language)}"
                   for line in lines]
            if progress is not None:
                out.append("  " + t("stocktake.progress", shelf=progress.shelf, seen=progress.seen,
                                    expected=progress.expected))
            out.append("  " + t("stocktake.total", number=number, n=counted))
            return "\n".join(out)
        case StocktakeRefused(code=code) if code == NOT_STAFF:
            return f"{NO} {t('stocktake.not_staff')}"
        case StocktakeRefused(code=code) if code == UNSUPPORTED:
            return f"{NO} {t('sip2.unsupported')}"
        case StocktakeRefused(items=items, code=code, message=message):
            why = t("stocktake.refused", message=_refusal(code, message, language))
            return f"{NO} {why} ({', '.join(items)})"
        case StocktakeUnreachable(items=items):
            return f"{WARN} {t('stocktake.unreachable', n=len(items))} ({', '.join(items)})"
        case StocktakeEnded(counted_here=counted):
            return f"{INFO} {t('stocktake.ended', n=counted)}\n"
        case Ignored():
            return ""  # a scanner's repeat: the person saw the first read's answer
    raise TypeError(f"no rendering for {outcome!r}")


def banner(station: str) -> str:
    lines = []
    for key in ("banner.title", "banner.card", "banner.commands"):
        lines.append(text(key, "vi", station=station))
        lines.append("  " + text(key, "en", station=station))
    return "\n".join(lines)


# --- the runner ----------------------------------------------------------------------

class _Printer:
    def __init__(self, out: TextIO, language: str, pad: RfidPad | None = None) -> None:
        self._out = out
        self._language = language
        self._pad = pad

    def on_outcome(self, outcome: Outcome) -> None:
        if self._pad is not None:
            self._pad.on_outcome(outcome)  # queued: its AFI writes run on the pad's thread
        if lines := render(outcome, self._language):
            # A blank line after each session keeps one reader's lines apart from the next's.
            self.write(lines + "\n" if isinstance(outcome, SessionEnded) else lines)

    def write(self, lines: str) -> None:
        self._out.write(lines + "\n")
        self._out.flush()


_EOF = object()


def run_headless(config: StationConfig, backend: Backend, scanner: Scanner,
                 out: TextIO = sys.stdout, language: Literal["vi", "en"] | None = None, *,
                 stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 tick_interval: float = 0.5,
                 rfid_pad: RfidPad | None = None) -> None:
    """Serve readers from the terminal until `quit`, EOF, Ctrl-C or `stop` is set.

    `rfid_pad`, when given, is started and stopped here: its reads join the scanner's,
    its notices are printed, and it hears every outcome (to write the tags' AFI).
    Every way out ends the open session first, so no reader's data stays on screen.
    """
    language = language or config.language
    printer = _Printer(out, language, rfid_pad)
    session = Session(backend, config.session, printer, clock, config.stocktake)
    events: queue.Queue[object] = queue.Queue()
    printer.write(banner(config.station))
    if session.stocktake_only:
        session.start_stocktake()
    scanner.start(events.put, lambda: events.put(_EOF))
    if rfid_pad is not None:
        try:
            rfid_pad.start(events.put, on_notice=events.put)
        except BaseException:
            scanner.stop()
            raise
    try:
        while stop is None or not stop.is_set():
            try:
                event = events.get(timeout=tick_interval)
            except queue.Empty:
                event = None
            if event is _EOF:
                session.done()
                break
            if isinstance(event, PadNotice):
                mark = OK if event.kind == "secured" else NO if event.kind == "ask_librarian" else WARN
                printer.write(f"{mark} {notice_text(event, language)}")
            elif isinstance(event, PadRead):
                # A tag is never a typed command, whatever its item id spells.
                if event.refusal is not None:
                    session.refuse_item(event.code, event.refusal, parts=event.parts)
                else:
                    session.scan(event.code)
            elif isinstance(event, Read):
                command = command_of(event.code)
                if command == "quit":
                    session.logout()
                    break
                if command == "done":
                    session.done()
                elif command == "return":
                    session.start_return()
                elif command == "stocktake":
                    session.start_stocktake()
                else:
                    session.scan(event.code)
            session.tick()
        else:
            session.logout()
    except KeyboardInterrupt:
        session.logout()
    finally:
        scanner.stop()
        if rfid_pad is not None:
            rfid_pad.stop()
    printer.write(text("bye", "vi") + "\n  " + text("bye", "en"))
