"""The checkout and return session of a station: a plain, synchronous state machine.

    IDLE --card--> PATRON --item--> SCANNING --done/timeout/logout--> SUMMARY --> IDLE
    IDLE --start_return--> RETURNING --done/timeout/logout--> SUMMARY --> IDLE

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
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from kiosk.backend import Backend, BackendUnavailable
from kiosk.config import SessionConfig
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
)

log = logging.getLogger("thuvien.kiosk.session")

# The protocol's longest code; anything longer is a misread, not a card or a book.
MAX_CODE_LENGTH = 128


class State(StrEnum):
    IDLE = "idle"
    PATRON = "patron"          # a reader is identified, nothing scanned yet
    SCANNING = "scanning"      # the reader has scanned at least one item
    SUMMARY = "summary"        # the session's summary is being delivered
    RETURNING = "returning"    # return mode: no card needed


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


@dataclass(frozen=True)
class PatronRefused:
    code: str  # an ErrorCode of the server's reply
    message: str | None  # the server's sentence; None: render our own for `code`


@dataclass(frozen=True)
class ItemBorrowed:
    item: str
    title: str
    due: dt.date
    count: int  # items borrowed in this session so far


@dataclass(frozen=True)
class ItemRefused:
    item: str  # the code as scanned
    code: str
    message: str | None
    blocks: tuple[str, ...] = ()  # set when refused here because the reader is blocked


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


@dataclass(frozen=True)
class ReturnRefused:
    item: str
    code: str
    message: str | None


@dataclass(frozen=True)
class NeedCard:
    item: str


@dataclass(frozen=True)
class Unreadable:
    code: str


@dataclass(frozen=True)
class ServerUnreachable:
    op: Op


@dataclass(frozen=True)
class InactivityWarning:
    seconds_left: float


@dataclass(frozen=True)
class SessionEnded:
    reason: EndReason
    mode: Literal["borrow", "return"]
    borrowed: tuple[CheckoutResult, ...] = ()
    returned: tuple[ReturnResult, ...] = ()


@dataclass(frozen=True)
class Ignored:
    code: str
    reason: Literal["duplicate", "same_card"]


Outcome = (PatronIdentified | PatronRefused | ItemBorrowed | ItemRefused | ReturnModeStarted
           | ItemReturned | ReturnRefused | NeedCard | Unreadable | ServerUnreachable
           | InactivityWarning | SessionEnded | Ignored)


class OutcomeListener(Protocol):
    def on_outcome(self, outcome: Outcome) -> None: ...


R = TypeVar("R", bound=BaseModel)


class _BadReply(Exception):
    """The server answered ok with a result that is not what the protocol promises."""


# --- the machine ---------------------------------------------------------------------

class Session:
    def __init__(self, backend: Backend, config: SessionConfig, listener: OutcomeListener,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._backend = backend
        self._config = config
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
        if len(code) > MAX_CODE_LENGTH:
            self._emit(Unreadable(code[:32]))
        elif self.is_patron_card(code):
            self._on_card(code)
        elif self._state is State.IDLE:
            self._emit(NeedCard(code))
        elif self._state is State.RETURNING:
            self._return(code)
        else:
            self._checkout(code)

    def start_return(self) -> None:
        self._touch(self._clock())
        if self._state in (State.PATRON, State.SCANNING):
            self._end("done")
        self._state = State.RETURNING
        self._forget_items()
        self._emit(ReturnModeStarted())

    def done(self) -> None:
        if self._state in ACTIVE:
            self._end("done")

    def logout(self) -> None:
        if self._state in ACTIVE:
            self._end("logout")

    def keep_alive(self) -> None:
        """The reader touched the screen: not idle, though nothing was scanned."""
        if self._state in ACTIVE:
            self._touch(self._clock())

    def tick(self) -> None:
        now = self._clock()
        self._prune(now)
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
            if not reply.ok:
                assert reply.error is not None
                self._emit(PatronRefused(reply.error.code.value, reply.error.message))
                return
            result = self._result(reply, IdentifyResult)
        except BackendUnavailable as exc:
            log.warning("patron.identify: %s", exc)
            self._emit(ServerUnreachable(Op.PATRON_IDENTIFY))
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
            if not reply.ok:
                assert reply.error is not None
                self._emit(ItemRefused(item, reply.error.code.value, reply.error.message))
                return
            result = self._result(reply, CheckoutResult)
        except BackendUnavailable as exc:
            log.warning("loan.checkout: %s", exc)
            self._emit(ServerUnreachable(Op.LOAN_CHECKOUT))
            return
        except _BadReply:
            self._emit(ItemRefused(item, ErrorCode.INTERNAL.value, None))
            return
        self._borrowed.append(result)
        self._touch(self._clock())
        self._emit(ItemBorrowed(result.item, result.title, result.due, len(self._borrowed)))

    def _return(self, item: str) -> None:
        try:
            reply = self._backend.request(Op.LOAN_RETURN, ReturnArgs(item=item),
                                          timeout=self._config.request_timeout_s)
            if not reply.ok:
                assert reply.error is not None
                self._emit(ReturnRefused(item, reply.error.code.value, reply.error.message))
                return
            result = self._result(reply, ReturnResult)
        except BackendUnavailable as exc:
            log.warning("loan.return: %s", exc)
            self._emit(ServerUnreachable(Op.LOAN_RETURN))
            return
        except _BadReply:
            self._emit(ReturnRefused(item, ErrorCode.INTERNAL.value, None))
            return
        self._returned.append(result)
        self._touch(self._clock())
        self._emit(ItemReturned(result.item, result.title, result.was_overdue, result.days_late,
                                len(self._returned)))

    def _end(self, reason: EndReason) -> None:
        ended = SessionEnded(
            reason=reason,
            mode="return" if self._state is State.RETURNING else "borrow",
            borrowed=tuple(self._borrowed), returned=tuple(self._returned))
        # Forget the reader before anyone is told: nothing personal outlives the session.
        self._card, self._patron, self._blocks = None, None, ()
        self._borrowed, self._returned = [], []
        self._warned_at = None
        self._forget_items()
        self._state = State.SUMMARY
        try:
            self._emit(ended)
        finally:
            self._state = State.IDLE

    # --- helpers ---

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
