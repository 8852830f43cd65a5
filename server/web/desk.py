"""The desk: checkout, return and renew at the librarian's PC, reader look-up and accounts,
and the overdue lists per class.

A USB keyboard-wedge scanner types into one field and presses Enter. A reader's card opens
that reader; a book then is lent to them; in "return" mode a book is returned. Every change
goes through the same `Circulation` core as the stations, as the registered desk station
`web-desk`, so the ledger, the rules and the idempotency are the same, and the ledger
entries are published on the ledger topic for the gates.

The forms work without JavaScript (a plain post renders the page again); `static/desk.js`
sends the same posts with `X-Desk-Fragment: 1` and swaps in the returned panel. Each
submitted form carries a random `nonce`; the request id is derived from it and from what
is asked, so a form posted twice (a reload, a double Enter) is applied once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import protocol
from protocol import Op, encode, topics
from server import stations
from server.calendar import format_date
from server.circulation import Circulation, Outcome
from server.folding import fold, fold_words, name_sort_key
from server.models import Copy, LedgerEntry, Loan, Reader, ReaderStatus, StaffUser, Title
from server.web.auth import Auth
from server.web.context import WebContext

log = logging.getLogger("thuvien.web.desk")

DESK_STATION = "web-desk"
MODES = ("lend", "return")
MAX_CODE = 128
SEARCH_LIMIT = 50
HISTORY_LIMIT = 50
_NONCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_DIGITS = re.compile(r"(\d+)")


# --- what the pages show ------------------------------------------------------------

@dataclass(frozen=True)
class ReaderLine:
    id: int
    code: str
    name: str
    kind: str
    class_name: str | None
    status: str
    block_reason: str | None


@dataclass(frozen=True)
class LoanLine:
    item: str
    title: str
    loaned_at: dt.datetime
    due_on: dt.date
    renewals: int
    long_loan: bool
    days_late: int

    @property
    def overdue(self) -> bool:
        return self.days_late > 0


@dataclass(frozen=True)
class HistoryLine:
    at: dt.datetime
    op: str
    item: str
    title: str
    station: str
    due_on: dt.date | None
    days_late: int | None
    conflict: str | None


@dataclass(frozen=True)
class Account:
    reader: ReaderLine
    loans: list[LoanLine]
    history: list[HistoryLine]
    # (message id, values) pairs, for the template to translate.
    blocks: list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class DeskResult:
    ok: bool
    message: str


@dataclass(frozen=True)
class OverdueLine:
    reader: str
    code: str
    title: str
    item: str
    due_on: dt.date
    days_late: int


@dataclass
class ClassOverdue:
    class_name: str | None
    lines: list[OverdueLine] = field(default_factory=list)


# --- data -----------------------------------------------------------------------------

def _reader_line(row: Reader) -> ReaderLine:
    return ReaderLine(id=row.id, code=row.code, name=row.name, kind=row.kind,
                      class_name=row.class_name, status=row.status, block_reason=row.block_reason)


def find_reader(db: Session, card: str) -> ReaderLine | None:
    """The reader whose card is `card`: as `Circulation` reads a card (code, UID, MOET id)."""
    key = card.strip()
    if not key:
        return None
    upper = key.upper()
    rows = list(db.scalars(select(Reader).where(or_(
        func.upper(Reader.code) == upper, func.upper(Reader.card_uid) == upper,
        Reader.moet_id == key))))
    if not rows:
        return None
    # A card number equal to another reader's MOET id: the card's own code wins.
    best = min(rows, key=lambda r: (r.code.upper() != upper, r.moet_id != key))
    return _reader_line(best)


def class_sort_key(name: str | None) -> tuple:
    """6A2 before 6A10 before 7A1; readers with no class (teachers) last."""
    if not name:
        return (1, ())
    return (0, tuple(int(p) if p.isdigit() else p.casefold() for p in _DIGITS.split(name)))


def _haystack(row: Any) -> tuple[set[str], set[str]]:
    """(words a query word may begin, words it must equal). Names match by prefix, so
    "nguyen van a" finds "Nguyễn Văn An"; a class only whole, so "6a1" is not 6A10."""
    prefixed = set(fold_words(row.name)) | {fold(row.code)}
    for extra in (row.moet_id, row.card_uid):
        if extra:
            prefixed.add(fold(extra))
    whole = set(fold_words(row.code)) | {fold(row.class_name).replace(" ", "")}
    return prefixed - {""}, whole - {""}


def _matches(wanted: list[str], prefixed: set[str], whole: set[str]) -> bool:
    return all(w in whole or any(word.startswith(w) for word in prefixed) for w in wanted)


def search_readers(db: Session, query: str, limit: int = SEARCH_LIMIT) -> tuple[list[ReaderLine], int]:
    """Readers whose name, class or card match every folded word of `query` (each word a
    prefix: "nguyen van a" finds "Nguyễn Văn An"), in Vietnamese name order; and how many
    matched in all."""
    wanted = fold_words(query)
    if not wanted:
        return [], 0
    # A school has a few thousand readers at most: folding them here is a few ms, and
    # works alike on SQLite and PostgreSQL, which cannot fold đ.
    rows = db.execute(select(Reader.id, Reader.code, Reader.name, Reader.kind, Reader.class_name,
                             Reader.status, Reader.block_reason, Reader.moet_id,
                             Reader.card_uid)).all()
    found = []
    for row in rows:
        if _matches(wanted, *_haystack(row)):
            found.append(ReaderLine(id=row.id, code=row.code, name=row.name, kind=row.kind,
                                    class_name=row.class_name, status=row.status,
                                    block_reason=row.block_reason))
    found.sort(key=lambda r: (name_sort_key(r.name), class_sort_key(r.class_name), r.code))
    return found[:limit], len(found)


def load_account(db: Session, reader: ReaderLine, today: dt.date,
                 block_overdue_after_days: int | None,
                 history_limit: int = HISTORY_LIMIT) -> Account:
    loans = [LoanLine(item=item, title=title, loaned_at=loan.loaned_at, due_on=loan.due_on,
                      renewals=loan.renewals, long_loan=loan.long_loan,
                      days_late=max(0, (today - loan.due_on).days))
             for loan, item, title in db.execute(
                 select(Loan, Copy.accession_number, Title.title)
                 .join(Copy, Copy.id == Loan.copy_id).join(Title, Title.id == Copy.title_id)
                 .where(Loan.reader_id == reader.id)
                 .order_by(Loan.due_on, Copy.accession_number)).all()]
    history = [HistoryLine(at=e.station_at, op=e.op, item=item, title=title, station=e.station,
                           due_on=e.due_on, days_late=e.days_late, conflict=e.conflict)
               for e, item, title in db.execute(
                   select(LedgerEntry, Copy.accession_number, Title.title)
                   .join(Copy, Copy.id == LedgerEntry.copy_id)
                   .join(Title, Title.id == Copy.title_id)
                   .where(LedgerEntry.reader_id == reader.id)
                   .order_by(LedgerEntry.seq.desc()).limit(history_limit)).all()]
    blocks: list[tuple[str, dict[str, Any]]] = []
    if reader.status == ReaderStatus.BLOCKED:
        blocks.append(("Blocked: {reason}", {"reason": reader.block_reason or "-"}))
    elif reader.status == ReaderStatus.INACTIVE:
        blocks.append(("No longer active (left the school).", {}))
    if block_overdue_after_days is not None:
        late = [loan for loan in loans if loan.days_late > block_overdue_after_days]
        if late:
            blocks.append(("May not borrow: {count} overdue books.", {"count": len(late)}))
    return Account(reader=reader, loans=loans, history=history, blocks=blocks)


def overdue_by_class(db: Session, today: dt.date,
                     class_name: str | None = None) -> list[ClassOverdue]:
    """Every overdue loan, grouped by class (classes in natural order, readers with no
    class last), each class's readers in Vietnamese name order."""
    query = (select(Reader.class_name, Reader.name, Reader.code, Title.title,
                    Copy.accession_number, Loan.due_on)
             .join(Reader, Reader.id == Loan.reader_id).join(Copy, Copy.id == Loan.copy_id)
             .join(Title, Title.id == Copy.title_id).where(Loan.due_on < today))
    if class_name:
        query = query.where(func.upper(Reader.class_name) == class_name.strip().upper())
    groups: dict[str | None, ClassOverdue] = {}
    for row in db.execute(query).all():
        group = groups.setdefault(row.class_name, ClassOverdue(row.class_name))
        group.lines.append(OverdueLine(reader=row.name, code=row.code, title=row.title,
                                       item=row.accession_number, due_on=row.due_on,
                                       days_late=(today - row.due_on).days))
    for group in groups.values():
        group.lines.sort(key=lambda ln: (name_sort_key(ln.reader), ln.code, ln.due_on, ln.item))
    return sorted(groups.values(), key=lambda g: class_sort_key(g.class_name))


def class_names(db: Session) -> list[str]:
    names = db.scalars(select(Reader.class_name).where(Reader.class_name.is_not(None))
                       .distinct()).all()
    return sorted((n for n in names if n), key=class_sort_key)


# --- the desk station -----------------------------------------------------------------

class DeskCounter:
    """The web's seat at the circulation core, as the registered desk station."""

    def __init__(self, ctx: WebContext, station: str = DESK_STATION) -> None:
        self.ctx = ctx
        self.station = station
        self._circulation: Circulation | None = None
        # Circulation holds one database connection, used by one thread at a time.
        self._lock = threading.Lock()

    def _core(self) -> Circulation:
        if self._circulation is None:
            # Registered (or reactivated) here, so the ledger's station is a known desk.
            stations.register(self.ctx.sessions, self.station, "desk", now=self.ctx.clock())
            self._circulation = Circulation(self.ctx.sessions, self.ctx.config, clock=self.ctx.clock)
        return self._circulation

    def run(self, op: Op, args: Any, request_id: str) -> Outcome:
        with self._lock:
            request = protocol.Request(id=request_id, op=op, at=self.ctx.clock(), args=args)
            outcome = self._core().handle_request(request, self.station)
        self._publish(outcome)
        return outcome

    def _publish(self, outcome: Outcome) -> None:
        monitor = self.ctx.monitor
        if monitor is None or outcome.repeated:
            return
        site = self.ctx.config.site
        # The gates follow the ledger topic: a book lent here must not set off the alarm.
        for entry in outcome.entries:
            monitor.client.publish(topics.ledger(site), encode(entry), qos=1)
        for alert in outcome.alerts:
            monitor.client.publish(topics.alert(site), encode(alert), qos=1)


def request_id(nonce: str, op: Op, reader: str, code: str) -> str:
    digest = hashlib.sha256("\x1f".join((nonce, op.value, reader, code)).encode()).hexdigest()
    return f"desk-{digest[:40]}"


def _clean_code(value: object) -> str:
    return " ".join(str(value or "").split())


# --- pages ----------------------------------------------------------------------------

class DeskPages:
    def __init__(self, ctx: WebContext, auth: Auth) -> None:
        self.ctx = ctx
        self.auth = auth
        self.counter = DeskCounter(ctx)

    def _today(self) -> dt.date:
        return self.ctx.clock().astimezone(self.ctx.zone).date()

    def _db(self, work: Any, *args: Any) -> Any:
        def run() -> Any:
            with self.ctx.sessions() as db:
                return work(db, *args)
        return run_in_threadpool(run)

    def _account(self, db: Session, code: str) -> Account | None:
        reader = find_reader(db, code) if code else None
        if reader is None:
            return None
        return load_account(db, reader, self._today(),
                            self.ctx.config.circulation.block_overdue_after_days)

    async def _render(self, request: Request, *, reader: str, mode: str,
                      result: DeskResult | None = None, status_code: int = 200) -> Response:
        account = await self._db(self._account, reader)
        values = {"account": account, "mode": mode, "result": result,
                  "nonce": secrets.token_urlsafe(16), "today": self._today(),
                  "format_date": format_date}
        if request.headers.get("x-desk-fragment") == "1":
            return self.ctx.render(request, "staff/desk_panel.html", values, status_code=status_code)
        return self.ctx.render(request, "staff/desk.html", values, status_code=status_code)

    # --- the desk ----------------------------------------------------------------------

    async def desk(self, request: Request, user: StaffUser) -> Response:
        reader = _clean_code(request.query_params.get("reader"))[:MAX_CODE]
        mode = request.query_params.get("mode", "lend")
        result = None
        if reader and await self._db(find_reader, reader) is None:
            _ = self.ctx.catalogue.translator(self.ctx.language(request))
            result = DeskResult(False, _("No reader has the card {card}.", card=reader))
        return await self._render(request, reader=reader, mode=mode if mode in MODES else "lend",
                                  result=result)

    async def scan(self, request: Request, user: StaffUser, form: FormData) -> Response:
        _ = self.ctx.catalogue.translator(self.ctx.language(request))
        code = _clean_code(form.get("code"))
        mode = str(form.get("mode", "lend"))
        mode = mode if mode in MODES else "lend"
        reader = _clean_code(form.get("reader"))[:MAX_CODE]
        nonce = str(form.get("nonce", ""))
        if not _NONCE.match(nonce):
            nonce = secrets.token_urlsafe(16)
        if not code:
            return await self._render(request, reader=reader, mode=mode, status_code=400,
                                      result=DeskResult(False, _("Scan or type a card or book number.")))
        if len(code) > MAX_CODE:
            return await self._render(request, reader=reader, mode=mode, status_code=400,
                                      result=DeskResult(False, _("That code is too long to be a card or a book.")))
        card = await self._db(find_reader, code)
        if card is not None:
            return await self._render(request, reader=card.code, mode=mode, result=DeskResult(
                True, _("Reader {name} ({card}).", name=card.name, card=card.code)))
        if mode == "return":
            outcome = await run_in_threadpool(
                self.counter.run, Op.LOAN_RETURN, protocol.ReturnArgs(item=code),
                request_id(nonce, Op.LOAN_RETURN, "", code))
            result = self._returned(outcome, _)
            log.info("desk: %s returned %s: %s", user.name, code, outcome.reply.ok)
            return await self._render(request, reader=reader, mode=mode, result=result)
        if not reader or await self._db(find_reader, reader) is None:
            return await self._render(request, reader="", mode=mode, status_code=409, result=DeskResult(
                False, _("Scan a reader's card first, then the books to lend.")))
        outcome = await run_in_threadpool(
            self.counter.run, Op.LOAN_CHECKOUT, protocol.CheckoutArgs(patron=reader, item=code),
            request_id(nonce, Op.LOAN_CHECKOUT, reader, code))
        log.info("desk: %s lent %s to %s: %s", user.name, code, reader, outcome.reply.ok)
        if outcome.reply.ok:
            lent = outcome.reply.result_as(protocol.CheckoutResult)
            result = DeskResult(True, _("Lent “{title}” ({item}); due {due}.", title=lent.title,
                                        item=lent.item, due=format_date(lent.due)))
        else:
            result = self._refused(outcome, code, _)
        return await self._render(request, reader=reader, mode=mode, result=result)

    async def renew(self, request: Request, user: StaffUser, form: FormData) -> Response:
        _ = self.ctx.catalogue.translator(self.ctx.language(request))
        item = _clean_code(form.get("item"))[:MAX_CODE]
        reader = _clean_code(form.get("reader"))[:MAX_CODE]
        mode = str(form.get("mode", "lend"))
        mode = mode if mode in MODES else "lend"
        nonce = str(form.get("nonce", ""))
        if not _NONCE.match(nonce):
            nonce = secrets.token_urlsafe(16)
        if not item or not reader:
            return await self._render(request, reader=reader, mode=mode, status_code=400,
                                      result=DeskResult(False, _("Which loan? Open the reader first.")))
        outcome = await run_in_threadpool(
            self.counter.run, Op.LOAN_RENEW, protocol.RenewArgs(patron=reader, item=item),
            request_id(nonce, Op.LOAN_RENEW, reader, item))
        log.info("desk: %s renewed %s for %s: %s", user.name, item, reader, outcome.reply.ok)
        if outcome.reply.ok:
            renewed = outcome.reply.result_as(protocol.RenewResult)
            result = DeskResult(True, _("Renewed “{title}” ({item}); now due {due}.",
                                        title=renewed.title or renewed.item, item=renewed.item,
                                        due=format_date(renewed.due)))
        else:
            result = self._refused(outcome, item, _)
        return await self._render(request, reader=reader, mode=mode, result=result)

    def _returned(self, outcome: Outcome, _: Any) -> DeskResult:
        if not outcome.reply.ok:
            return self._refused(outcome, "", _)
        back = outcome.reply.result_as(protocol.ReturnResult)
        message = _("Returned “{title}” ({item}).", title=back.title, item=back.item)
        if back.days_late:
            message += " " + _("{days} days late.", days=back.days_late)
        return DeskResult(True, message)

    @staticmethod
    def _refused(outcome: Outcome, code: str, _: Any) -> DeskResult:
        error = outcome.reply.error
        text = error.message if error is not None else "?"
        return DeskResult(False, _("Not done: {reason}", reason=text)
                          + (f" ({code})" if code and code not in text else ""))

    # --- readers -------------------------------------------------------------------

    async def readers(self, request: Request, user: StaffUser) -> Response:
        query = str(request.query_params.get("q", ""))[:200]
        found, total = await self._db(search_readers, query)
        return self.ctx.render(request, "staff/reader_search.html", {
            "q": query, "readers": found, "total": total, "limit": SEARCH_LIMIT})

    # --- overdue -------------------------------------------------------------------

    async def overdue(self, request: Request, user: StaffUser) -> Response:
        wanted = _clean_code(request.query_params.get("class"))[:32]
        today = self._today()

        def load(db: Session) -> tuple[list[ClassOverdue], list[str]]:
            return overdue_by_class(db, today, wanted or None), class_names(db)

        groups, classes = await self._db(load)
        return self.ctx.render(request, "staff/overdue.html", {
            "groups": groups, "classes": classes, "wanted": wanted, "today": today,
            "format_date": format_date})

    def routes(self) -> list[BaseRoute]:
        page, action = self.auth.page, self.auth.action
        return [
            Route("/staff/desk", page("librarian")(self.desk), methods=["GET"]),
            Route("/staff/desk/scan", action("librarian")(self.scan), methods=["POST"]),
            Route("/staff/desk/renew", action("librarian")(self.renew), methods=["POST"]),
            Route("/staff/readers", page("librarian")(self.readers), methods=["GET"]),
            Route("/staff/overdue", page("viewer")(self.overdue), methods=["GET"]),
        ]


__all__ = ["DESK_STATION", "DeskCounter", "DeskPages", "class_sort_key", "find_reader",
           "load_account", "overdue_by_class", "search_readers"]
