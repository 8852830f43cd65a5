"""The checkout and return session of a station: a plain, synchronous state machine.

    IDLE --card--> PATRON --item--> SCANNING --done/timeout/logout--> SUMMARY --> IDLE
    IDLE --start_return--> RETURNING --done/timeout/logout--> SUMMARY --> IDLE
    IDLE/PATRON(staff) --start_stocktake--> STOCKTAKE --done/timeout/logout--> IDLE

Inputs are method calls (`scan`, `start_return`, `done`, `logout`, and `tick` from the
runner's loop); results are `Outcome`s handed to a listener, one or more per input.
No screen, no threads, no transport: the backend is anything that answers a request,
the clock is injected, so the whole machine runs in a test as it runs at a kiosk.
Call it from one thread only.

A code read again within `duplicate_window_s` of its last read is a scanner's echo and
is ignored, except that a book read after the session changed mode (a card was accepted,
return mode began, a session ended) counts again: "scan your card first" is followed by
the same book within seconds.

SUMMARY lasts only while the listener receives `SessionEnded`; by then the session has
already forgotten the reader, and it is IDLE again when the call returns.

Offline (a store-and-forward backend answered from the station itself) the outcomes
say so with `offline=True`: a reader known from the card cache has no name and no loans
on screen; a book borrowed or returned offline is named by its code (the title is the
server's to say), and a checkout has no due date (`due=None`): the library sets it when
the request is replayed, by its calendar and rules, and the reader is told the library
will confirm. `SessionEnded` lists what was recorded offline apart from what the server
confirmed (`offline_borrowed`, `offline_returned`: the codes as read).

Stocktake (kiểm kê) is for library staff: a reader of kind "staff" identified here, a
staff login the server checked (`start_stocktake(staff=...)`), or a station configured
`mode = "stocktake"`, which does nothing else. A shelf is chosen (a code starting with
the shelf prefix, "SHELF:Kệ 3", or `choose_shelf`), and the copies read are sent in
batches (`stocktake.scan`): a batch goes when it is full, when the shelf changes, when
the mode ends, or `batch_wait_s` after its first code (`tick`), so an RFID pad's whole
inventory travels as one request. Stocktake scans are never stored and forwarded: a
batch the library cannot be reached for is reported (`StocktakeUnreachable`) and must
be scanned again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from kiosk.backend import AcceptedOffline, Backend, BackendUnavailable, CachedPatron, supports
from kiosk.config import SessionConfig, StocktakeConfig
from protocol import (
    CheckoutArgs,
    CheckoutResult,
    ErrorCode,
    IdentifyArgs,
    IdentifyResult,
    LoanLine,
    Op,
    PatronInfo,
    Reply,
    ReturnArgs,
    ReturnResult,
    ShelfProgress,
    StocktakeLine,
    StocktakeScanArgs,
    StocktakeScanResult,
)

log = logging.getLogger("thuvien.kiosk.session")

# The protocol's longest code; anything longer is a misread, not a card or a book.
MAX_CODE_LENGTH = 128

# A refusal decided at the station (`Session.refuse_item`), not by the server: an RFID
# item in several parts (a book and its CD) whose parts are not all on the pad.
INCOMPLETE_SET = "incomplete_set"
# A stocktake refused here: nobody of the library's staff asked for it.
NOT_STAFF = "not_staff"
# The backend (a library system on SIP2) cannot count the stock.
UNSUPPORTED = "unsupported"
MAX_SHELF_LENGTH = 100  # as the protocol's ShelfName


class State(StrEnum):
    IDLE = "idle"
    PATRON = "patron"          # a reader is identified, nothing scanned yet
    SCANNING = "scanning"      # the reader has scanned at least one item
    SUMMARY = "summary"        # the session's summary is being delivered
    RETURNING = "returning"    # return mode: no card needed
    STOCKTAKE = "stocktake"    # staff count the stock: reads are counted, not lent


ACTIVE = (State.PATRON, State.SCANNING, State.RETURNING)
EndReason = Literal["done", "timeout", "new_card", "logout"]


# --- outcomes ------------------------------------------------------------------------

@dataclass(frozen=True)
class PatronIdentified:
    name: str
    kind: str  # student, teacher, staff
    class_name: str | None
    loans: tuple[LoanLine, ...]
    can_borrow: int
    blocks: tuple[str, ...]  # block codes; non-empty means nothing may be borrowed
    # Answered by the station from its card cache: no name (""), no class, no loans.
    offline: bool = False


@dataclass(frozen=True)
class PatronRefused:
    code: str  # an ErrorCode of the server's reply
    message: str | None  # the server's sentence; None: render our own for `code`


@dataclass(frozen=True)
class ItemBorrowed:
    item: str
    title: str  # offline: the code as read, the title being unknown here
    due: dt.date | None  # None: recorded offline, the library sets the due date
    count: int  # items borrowed in this session so far
    # The code as read, which may differ from the server's `item` ("TN00001" for
    # "TN.00001"); it tells an RFID pad which tag to secure. Not part of equality.
    code: str = field(default="", compare=False)
    offline: bool = False  # recorded in the outbox: the library will confirm


@dataclass(frozen=True)
class ItemRefused:
    item: str  # the code as scanned
    code: str
    message: str | None
    blocks: tuple[str, ...] = ()  # set when refused here because the reader is blocked
    parts: int = 0  # with INCOMPLETE_SET: how many parts the item has


@dataclass(frozen=True)
class ReturnModeStarted:
    pass


@dataclass(frozen=True)
class ItemReturned:
    item: str
    title: str
    was_overdue: bool
    days_late: int
    count: int  # items returned in this session so far
    # The code as read, which may differ from the server's `item` ("TN00001" for
    # "TN.00001"); it tells an RFID pad which tag to secure. Not part of equality.
    code: str = field(default="", compare=False)
    offline: bool = False  # recorded in the outbox: title and lateness unknown here


@dataclass(frozen=True)
class ReturnRefused:
    item: str
    code: str
    message: str | None
    parts: int = 0  # with INCOMPLETE_SET: how many parts the item has


@dataclass(frozen=True)
class NeedCard:
    item: str


@dataclass(frozen=True)
class Unreadable:
    code: str


@dataclass(frozen=True)
class ServerUnreachable:
    op: Op
    can_return: bool = False  # the station still takes returns offline


@dataclass(frozen=True)
class InactivityWarning:
    seconds_left: float


@dataclass(frozen=True)
class SessionEnded:
    reason: EndReason
    mode: Literal["borrow", "return"]
    borrowed: tuple[CheckoutResult, ...] = ()
    returned: tuple[ReturnResult, ...] = ()
    # Recorded offline, not yet confirmed by the library: the codes as read.
    offline_borrowed: tuple[str, ...] = ()
    offline_returned: tuple[str, ...] = ()

    @property
    def borrowed_count(self) -> int:
        return len(self.borrowed) + len(self.offline_borrowed)

    @property
    def returned_count(self) -> int:
        return len(self.returned) + len(self.offline_returned)


@dataclass(frozen=True)
class Ignored:
    code: str
    # stocktake: a library card read while the station counts the stock
    reason: Literal["duplicate", "same_card", "stocktake"]


@dataclass(frozen=True)
class StocktakeStarted:
    fixed: bool  # the station's config keeps it in stocktake mode: no way back to lending
    recent: tuple[str, ...]  # shelves counted here lately, the last first


@dataclass(frozen=True)
class ShelfChosen:
    shelf: str
    recent: tuple[str, ...]


@dataclass(frozen=True)
class StocktakeCounted:
    """One batch, answered by the library: a line per code, in the order read."""

    shelf: str | None
    lines: tuple[StocktakeLine, ...]
    stocktake: int  # the stocktake's running number
    name: str
    counted: int  # copies the stocktake has counted so far, at every station
    progress: ShelfProgress | None
    counted_here: int  # copies this mode counted for the first time, at this station


@dataclass(frozen=True)
class StocktakeRefused:
    """The library refused a batch (no stocktake open, ...), or nobody of the staff asked
    for a stocktake (`NOT_STAFF`, no items). Nothing was counted."""

    items: tuple[str, ...]
    code: str
    message: str | None


@dataclass(frozen=True)
class StocktakeUnreachable:
    """A batch that never reached the library: nothing of it was counted, scan it again."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class StocktakeEnded:
    reason: EndReason
    counted_here: int
    fixed: bool  # a stocktake station starts again at once


Outcome = (PatronIdentified | PatronRefused | ItemBorrowed | ItemRefused | ReturnModeStarted
           | ItemReturned | ReturnRefused | NeedCard | Unreadable | ServerUnreachable
           | InactivityWarning | SessionEnded | Ignored | StocktakeStarted | ShelfChosen
           | StocktakeCounted | StocktakeRefused | StocktakeUnreachable | StocktakeEnded)


class OutcomeListener(Protocol):
    def on_outcome(self, outcome: Outcome) -> None: ...


R = TypeVar("R", bound=BaseModel)


class _BadReply(Exception):
    """The server answered ok with a result that is not what the protocol promises."""


def _can_return(exc: BackendUnavailable) -> bool:
    # A store-and-forward backend says whether returns are still taken offline.
    return bool(getattr(exc, "can_return", False))


@dataclass
class _Count:
    """What one stocktake mode holds: the shelf and the batch not sent yet."""

    shelf: str | None = None
    pending: list[str] = field(default_factory=list)
    first_at: float | None = None  # when the batch's first code was read
    counted: int = 0  # copies counted for the first time, at this station in this mode


# --- the machine ---------------------------------------------------------------------

class Session:
    def __init__(self, backend: Backend, config: SessionConfig, listener: OutcomeListener,
                 clock: Callable[[], float] = time.monotonic,
                 stocktake: StocktakeConfig | None = None) -> None:
        self._backend = backend
        self._config = config
        self._stocktake = stocktake or StocktakeConfig()
        self._count = _Count()
        self._recent_shelves: list[str] = []  # the station's, kept across stocktake modes
        self._listener = listener
        self._clock = clock
        self._state = State.IDLE
        self._last_input = clock()
        self._warned_at: float | None = None
        # Last time each code was read, to drop a scanner's repeats; pruned as it ages.
        self._seen: dict[str, float] = {}
        # Everything below is about one reader and is cleared when the session ends.
        self._card: str | None = None
        self._patron: PatronInfo | None = None
        self._blocks: tuple[str, ...] = ()
        self._borrowed: list[CheckoutResult] = []
        self._returned: list[ReturnResult] = []
        self._offline_borrowed: list[str] = []
        self._offline_returned: list[str] = []

    # --- what a screen may show ---

    @property
    def state(self) -> State:
        return self._state

    @property
    def patron(self) -> PatronInfo | None:
        return self._patron

    @property
    def borrowed(self) -> tuple[CheckoutResult, ...]:
        return tuple(self._borrowed)

    @property
    def returned(self) -> tuple[ReturnResult, ...]:
        return tuple(self._returned)

    def is_patron_card(self, code: str) -> bool:
        return self._config.patron_re.fullmatch(code.strip()) is not None

    @property
    def stocktake_only(self) -> bool:
        """The station's config: it counts the stock and does nothing else."""
        return self._config.mode == "stocktake"

    @property
    def shelf(self) -> str | None:
        return self._count.shelf

    @property
    def recent_shelves(self) -> tuple[str, ...]:
        return tuple(self._recent_shelves)

    # --- inputs ---

    def scan(self, code: str) -> None:
        code = code.strip()
        if not code:
            return
        now = self._clock()
        if self._repeated(code, now):
            # Not activity: a card left on a reader must not keep a session open forever.
            self._emit(Ignored(code, "duplicate"))
            return
        self._touch(now)
        self._stocktake_station()
        if len(code) > MAX_CODE_LENGTH:
            self._emit(Unreadable(code[:32]))
        elif self._state is State.STOCKTAKE:
            self._stock(code, now)
        elif self.is_patron_card(code):
            self._on_card(code)
        elif self._state is State.IDLE:
            self._emit(NeedCard(code))
        elif self._state is State.RETURNING:
            self._return(code)
        else:
            self._checkout(code)

    def start_return(self) -> None:
        if self.stocktake_only:
            return  # this station does not take books back
        self._touch(self._clock())
        if self._state is State.STOCKTAKE:
            self._end_stocktake("done")
        if self._state in (State.PATRON, State.SCANNING):
            self._end("done")
        self._state = State.RETURNING
        self._forget_items()
        self._emit(ReturnModeStarted())

    def refuse_item(self, item: str, code: str = INCOMPLETE_SET, *, parts: int = 0) -> None:
        """An item the station itself will not lend or take back (an RFID set with parts
        missing): refused like the server's refusals, with no message of its own, and
        without asking the server. Before any card it is just an item read too early."""
        item = item.strip()
        if not item:
            return
        now = self._clock()
        self._touch(now)
        self._stocktake_station()
        if self._state is State.STOCKTAKE:
            self._stock(item, now)  # a set with parts missing is still a copy on the shelf
        elif self._state is State.IDLE:
            self._emit(NeedCard(item))
        elif self._state is State.RETURNING:
            self._emit(ReturnRefused(item, code, None, parts=parts))
        else:
            self._state = State.SCANNING
            self._emit(ItemRefused(item, code, None, parts=parts))

    def done(self) -> None:
        if self._state is State.STOCKTAKE:
            self._end_stocktake("done")
        elif self._state in ACTIVE:
            self._end("done")

    def logout(self) -> None:
        if self._state is State.STOCKTAKE:
            self._end_stocktake("logout")
        elif self._state in ACTIVE:
            self._end("logout")

    def keep_alive(self) -> None:
        """The reader touched the screen: not idle, though nothing was scanned."""
        if self._state in ACTIVE or self._state is State.STOCKTAKE:
            self._touch(self._clock())

    def start_stocktake(self, staff: str | None = None) -> None:
        """Count the stock from now on. Allowed to a reader of kind "staff" identified
        here, to `staff` (the name of a staff login the server checked, PIN and all), and
        always on a stocktake station; anyone else is refused (`NOT_STAFF`)."""
        if self._state is State.STOCKTAKE:
            return
        if not supports(self._backend, Op.STOCKTAKE_SCAN):
            # A library system on SIP2 has no stocktake: the button is hidden, and a
            # staff card or a config asking for it is told so.
            self._emit(StocktakeRefused((), UNSUPPORTED, None))
            return
        staff_here = self._patron is not None and self._patron.kind == "staff"
        if not (self.stocktake_only or staff or staff_here):
            self._emit(StocktakeRefused((), NOT_STAFF, None))
            return
        if self._state in ACTIVE:
            if self._borrowed or self._returned or self._offline_borrowed or self._offline_returned:
                self._end("done")  # what was lent or returned gets its summary first
            else:
                self._forget_reader()
        self._touch(self._clock())
        self._state = State.STOCKTAKE
        self._count = _Count()
        self._forget_items()
        self._emit(StocktakeStarted(self.stocktake_only, self.recent_shelves))

    def choose_shelf(self, shelf: str) -> None:
        """The shelf being counted from now on (typed, chosen from the recent ones, or
        read from its label). The batch read so far goes first, on the shelf before."""
        shelf = " ".join(shelf.split())[:MAX_SHELF_LENGTH]
        if not shelf or self._state is not State.STOCKTAKE:
            return
        self._touch(self._clock())
        self.flush()
        self._count.shelf = shelf
        self._recent_shelves = [shelf, *(s for s in self._recent_shelves
                                        if s.casefold() != shelf.casefold())]
        del self._recent_shelves[self._stocktake.recent_shelves:]
        self._emit(ShelfChosen(shelf, self.recent_shelves))

    def flush(self) -> None:
        """Send the codes read so far in stocktake mode, if any, as one batch."""
        if self._state is not State.STOCKTAKE or not self._count.pending:
            return
        batch = tuple(dict.fromkeys(self._count.pending))  # a code twice in a batch: once
        self._count.pending, self._count.first_at = [], None
        self._send_batch(batch)

    def tick(self) -> None:
        now = self._clock()
        self._prune(now)
        if self._state is State.STOCKTAKE:
            self._tick_stocktake(now)
            return
        if self._state not in ACTIVE:
            return
        if self._warned_at is None:
            if now - self._last_input >= self._config.idle_timeout_s:
                self._warned_at = now
                self._emit(InactivityWarning(seconds_left=self._config.warning_s))
        elif now - self._warned_at >= self._config.warning_s:
            self._end("timeout")

    # --- transitions ---

    def _on_card(self, code: str) -> None:
        if self._state in (State.PATRON, State.SCANNING):
            if self._card is not None and code.casefold() == self._card.casefold():
                self._emit(Ignored(code, "same_card"))
                return
            self._end("new_card")
        elif self._state is State.RETURNING:
            self._end("new_card")
        # A new person is at the station: the previous session is already gone.
        self._identify(code)

    def _identify(self, card: str) -> None:
        try:
            reply = self._backend.request(Op.PATRON_IDENTIFY, IdentifyArgs(card=card),
                                          timeout=self._config.request_timeout_s)
            if isinstance(reply, CachedPatron):
                self._identified_offline(card, reply)
                return
            if isinstance(reply, AcceptedOffline):
                raise _BadReply("an identify cannot be accepted offline")
            if not reply.ok:
                assert reply.error is not None
                self._emit(PatronRefused(reply.error.code.value, reply.error.message))
                return
            result = self._result(reply, IdentifyResult)
        except BackendUnavailable as exc:
            log.warning("patron.identify: %s", exc)
            self._emit(ServerUnreachable(Op.PATRON_IDENTIFY, _can_return(exc)))
            return
        except _BadReply:
            self._emit(PatronRefused(ErrorCode.INTERNAL.value, None))
            return
        self._card, self._patron, self._blocks = card, result.patron, tuple(result.blocks)
        self._state = State.PATRON
        self._forget_items()
        self._touch(self._clock())  # the wait for the server is not the reader's idleness
        self._emit(PatronIdentified(
            name=result.patron.name, kind=result.patron.kind, class_name=result.patron.class_,
            loans=tuple(result.loans), can_borrow=result.can_borrow, blocks=self._blocks))

    def _identified_offline(self, card: str, cached: CachedPatron) -> None:
        # Checkouts offline name the reader by the card as read: the server finds
        # readers by card when the outbox is replayed.
        self._card, self._blocks = card, cached.blocks
        self._patron = PatronInfo(id=cached.patron, name="", kind=cached.kind)
        self._state = State.PATRON
        self._forget_items()
        self._touch(self._clock())
        self._emit(PatronIdentified(name="", kind=cached.kind, class_name=None, loans=(),
                                    can_borrow=cached.can_borrow, blocks=cached.blocks, offline=True))

    def _checkout(self, item: str) -> None:
        assert self._patron is not None
        if self._blocks:
            # The server would refuse too; asking it only costs the reader a wait.
            self._emit(ItemRefused(item, ErrorCode.PATRON_BLOCKED.value, None, self._blocks))
            return
        try:
            reply = self._backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=self._patron.id, item=item),
                                          timeout=self._config.request_timeout_s)
            self._state = State.SCANNING
            if isinstance(reply, AcceptedOffline):
                self._offline_borrowed.append(item)
                self._touch(self._clock())
                self._emit(ItemBorrowed(item, item, None, self._borrowed_count(), code=item, offline=True))
                return
            if isinstance(reply, CachedPatron):
                raise _BadReply("a checkout is not answered by a card")
            if not reply.ok:
                assert reply.error is not None
                self._emit(ItemRefused(item, reply.error.code.value, reply.error.message))
                return
            result = self._result(reply, CheckoutResult)
        except BackendUnavailable as exc:
            log.warning("loan.checkout: %s", exc)
            self._emit(ServerUnreachable(Op.LOAN_CHECKOUT, _can_return(exc)))
            return
        except _BadReply:
            self._emit(ItemRefused(item, ErrorCode.INTERNAL.value, None))
            return
        self._borrowed.append(result)
        self._touch(self._clock())
        self._emit(ItemBorrowed(result.item, result.title, result.due, self._borrowed_count(), code=item))

    def _return(self, item: str) -> None:
        try:
            reply = self._backend.request(Op.LOAN_RETURN, ReturnArgs(item=item),
                                          timeout=self._config.request_timeout_s)
            if isinstance(reply, AcceptedOffline):
                self._offline_returned.append(item)
                self._touch(self._clock())
                self._emit(ItemReturned(item, item, False, 0, self._returned_count(), code=item,
                                        offline=True))
                return
            if isinstance(reply, CachedPatron):
                raise _BadReply("a return is not answered by a card")
            if not reply.ok:
                assert reply.error is not None
                self._emit(ReturnRefused(item, reply.error.code.value, reply.error.message))
                return
            result = self._result(reply, ReturnResult)
        except BackendUnavailable as exc:
            log.warning("loan.return: %s", exc)
            self._emit(ServerUnreachable(Op.LOAN_RETURN, _can_return(exc)))
            return
        except _BadReply:
            self._emit(ReturnRefused(item, ErrorCode.INTERNAL.value, None))
            return
        self._returned.append(result)
        self._touch(self._clock())
        self._emit(ItemReturned(result.item, result.title, result.was_overdue, result.days_late,
                                self._returned_count(), code=item))

    # --- stocktake ---

    def _stocktake_station(self) -> None:
        # A stocktake station counts from its first read, even if nobody started it.
        if self._state is State.IDLE and self.stocktake_only:
            self.start_stocktake()

    def _stock(self, code: str, now: float) -> None:
        prefix = self._stocktake.shelf_prefix
        if code[:len(prefix)].casefold() == prefix.casefold():
            self.choose_shelf(code[len(prefix):])
        elif self.is_patron_card(code):
            self._emit(Ignored(code, "stocktake"))
        else:
            if not self._count.pending:
                self._count.first_at = now
            self._count.pending.append(code)
            if (len(self._count.pending) >= self._stocktake.batch_size
                    or self._stocktake.batch_wait_s == 0):
                self.flush()

    def _tick_stocktake(self, now: float) -> None:
        first = self._count.first_at
        if first is not None and now - first >= self._stocktake.batch_wait_s:
            self.flush()
        if not self.stocktake_only and now - self._last_input >= self._stocktake.idle_timeout_s:
            # A kiosk left in stocktake mode serves readers again by itself.
            self._end_stocktake("timeout")

    def _send_batch(self, items: tuple[str, ...]) -> None:
        args = StocktakeScanArgs(items=list(items), shelf=self._count.shelf)
        try:
            reply = self._backend.request(Op.STOCKTAKE_SCAN, args,
                                          timeout=self._config.request_timeout_s)
            if isinstance(reply, (AcceptedOffline, CachedPatron)):
                raise _BadReply("a stocktake scan is never answered by the station")
            if not reply.ok:
                assert reply.error is not None
                self._emit(StocktakeRefused(items, reply.error.code.value, reply.error.message))
                return
            result = self._result(reply, StocktakeScanResult)
        except BackendUnavailable as exc:
            log.warning("stocktake.scan of %d codes: %s", len(items), exc)
            self._emit(StocktakeUnreachable(items))
            return
        except _BadReply:
            self._emit(StocktakeRefused(items, ErrorCode.INTERNAL.value, None))
            return
        self._count.counted += sum(1 for line in result.items if line.outcome == "counted")
        self._touch(self._clock())  # the wait for the library is not the staff's idleness
        self._emit(StocktakeCounted(self._count.shelf, tuple(result.items), result.stocktake,
                                    result.name, result.counted, result.shelf, self._count.counted))

    def _end_stocktake(self, reason: EndReason) -> None:
        self.flush()
        ended = StocktakeEnded(reason, self._count.counted, self.stocktake_only)
        self._count = _Count()
        self._state = State.IDLE
        self._forget_items()
        self._emit(ended)
        if self.stocktake_only:
            self.start_stocktake()

    # --- the end of a reader's session ---

    def _forget_reader(self) -> None:
        self._card, self._patron, self._blocks = None, None, ()
        self._borrowed, self._returned = [], []
        self._offline_borrowed, self._offline_returned = [], []
        self._warned_at = None
        self._forget_items()
        self._state = State.IDLE

    def _end(self, reason: EndReason) -> None:
        ended = SessionEnded(
            reason=reason,
            mode="return" if self._state is State.RETURNING else "borrow",
            borrowed=tuple(self._borrowed), returned=tuple(self._returned),
            offline_borrowed=tuple(self._offline_borrowed), offline_returned=tuple(self._offline_returned))
        # Forget the reader before anyone is told: nothing personal outlives the session.
        self._forget_reader()
        self._state = State.SUMMARY
        try:
            self._emit(ended)
        finally:
            self._state = State.IDLE

    # --- helpers ---

    def _borrowed_count(self) -> int:
        return len(self._borrowed) + len(self._offline_borrowed)

    def _returned_count(self) -> int:
        return len(self._returned) + len(self._offline_returned)

    def _result(self, reply: Reply, model: type[R]) -> R:
        try:
            return reply.result_as(model)  # type: ignore[arg-type]  # protocol types it as its private base
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.error("reply %s does not carry a valid %s: %s", reply.id, model.__name__, exc)
            raise _BadReply from exc

    def _repeated(self, code: str, now: float) -> bool:
        self._prune(now)
        last = self._seen.get(code)
        self._seen[code] = now  # a code held at a reader keeps renewing its own window
        return last is not None and now - last < self._config.duplicate_window_s

    def _forget_items(self) -> None:
        # A book read again after the station changed mode is a new request, not a
        # scanner's echo: "scan your card first", card, the same book at once.
        # Cards stay remembered, so a card left on the reader cannot restart a session.
        self._seen = {code: at for code, at in self._seen.items() if self.is_patron_card(code)}

    def _prune(self, now: float) -> None:
        window = self._config.duplicate_window_s
        for code in [c for c, at in self._seen.items() if now - at >= window]:
            del self._seen[code]

    def _touch(self, now: float) -> None:
        self._last_input = now
        self._warned_at = None

    def _emit(self, outcome: Outcome) -> None:
        self._listener.on_outcome(outcome)
