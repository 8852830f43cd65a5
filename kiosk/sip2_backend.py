"""The station's SIP2 backend: our kiosk on any SIP2 library system.

`Sip2Backend` answers the session's requests (`kiosk.backend.Backend`) by asking a SIP2
library system (Koha, Evergreen, FOLIO, or our own server's SIP2 gateway) over one
persistent TCP connection (TLS optional), and is also the screen's `StationLink`
(`connected`, `devices`, `state`, `publish_status`), as the MQTT link is.

    patron.identify  63 (AD = the PIN when one is given), then 17 for each loan's title
    loan.checkout    11                   loan.return  17 (the due date), then 09
    loan.renew       29                   item.info    17

A connection thread connects, logs in (93, when a username is configured), asks the
status (99) at once and every `status_interval_s` while idle, and reconnects with a
backoff (about 1 s doubling to 30 s, drawn at random) when the link drops. Requests
are one at a time on the connection (SIP2 has no request ids): a timeout, a dropped
link, an answer that is not the one asked for, or a 98 saying the system is offline
makes the library unreachable (`BackendUnavailable`), and the connection is dropped
so that a late answer can never be taken for the next one.

SIP2 answers carry no reason codes, only the library's sentence (AF): a refusal keeps
that sentence as the reply's message, and its code is worked out from the item's
status (a 17): unknown item, on loan, not on loan, not loanable. What SIP2 cannot do
(stocktake, gate.sync) `supports()` says no to; the session then does not offer it.

Offline: this backend does not store and forward. While the library system cannot be
reached the station refuses (the screen says the library is unreachable); SIP2's
`no block` offline transactions are not used.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from kiosk.backend import BackendUnavailable
from kiosk.config import BackendConfig, StationConfig
from kiosk.messages import text
from protocol import (
    CheckoutArgs,
    CheckoutResult,
    ErrorCode,
    IdentifyArgs,
    IdentifyResult,
    ItemInfoArgs,
    ItemInfoResult,
    LoanLine,
    Op,
    PatronInfo,
    RenewArgs,
    RenewResult,
    Reply,
    ReturnArgs,
    ReturnResult,
    sip2,
)
from protocol.models import DeviceState
from protocol.sip2 import Message

log = logging.getLogger("thuvien.kiosk.sip2")

# What SIP2 carries at all; stocktake and the gate's on-loan set have no SIP2 message.
SIP2_OPS = frozenset({Op.PATRON_IDENTIFY, Op.LOAN_CHECKOUT, Op.LOAN_RETURN, Op.LOAN_RENEW,
                      Op.ITEM_INFO})
# The 98's supported-messages flag each operation needs (when the system fills BX).
_NEEDS = {Op.PATRON_IDENTIFY: "patron_information", Op.LOAN_CHECKOUT: "checkout",
          Op.LOAN_RETURN: "checkin", Op.LOAN_RENEW: "renew", Op.ITEM_INFO: "item_information"}
# Loans listed at an identify: each costs a 17 for its title and due date.
MAX_LOANS_SHOWN = 20
MAX_MESSAGE_BYTES = 64 * 1024
# Resends (97 by us, or ours again after the system's 96) before giving up on an answer.
MAX_RESENDS = 2
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 30.0

# SIP2 circulation status (18) -> the `status` of our item.info.
_STATUS = {"01": "other", "02": "on_order", "03": "available", "04": "on_loan",
           "05": "on_loan", "06": "in_process", "07": "on_loan", "08": "on_hold_shelf",
           "09": "available", "10": "in_transit", "11": "claimed_returned", "12": "lost",
           "13": "missing"}
_CHARGED = {"04", "05", "07", "11"}


class Sip2Unreachable(BackendUnavailable):
    """No answer from the SIP2 system: not connected, timed out, or the link dropped."""


class _Garbled(Exception):
    """An answer that is not the one asked for: the conversation is out of step."""


def _today() -> dt.date:
    return dt.datetime.now().astimezone().date()


class Sip2Backend:
    """A `Backend` and `StationLink` over one SIP2 connection. Thread-safe."""

    def __init__(self, config: BackendConfig, *, language: str = "vi",
                 request_timeout: float = 5.0,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
                 rng: Callable[[float, float], float] = random.uniform) -> None:
        if config.kind != "sip2":
            raise ValueError(f"not a SIP2 backend: {config.url}")
        self.config = config
        self.language = language
        self.request_timeout = request_timeout
        self._now = now
        self._rng = rng
        self._staff = re.compile(config.staff_pattern, re.IGNORECASE)
        self._teacher = re.compile(config.teacher_pattern, re.IGNORECASE)
        # --- what the screen reads (StationLink) ---
        self.connected = threading.Event()
        self.devices: dict[str, DeviceState] = {}
        self.state = "online"
        self.on_command: Callable[[Any], None] | None = None  # SIP2 sends no commands
        # --- the connection ---
        self._sock: socket.socket | None = None
        self._frames: deque[bytes] = deque()
        self._framer = sip2.Framer(MAX_MESSAGE_BYTES)
        self._io = threading.RLock()  # one conversation at a time on the connection
        self._sequence = 0
        self._last_exchange = 0.0
        # The changes sent with the transaction date `_changes_at` (see `_distinct`).
        self._changes_at: str | None = None
        self._changes: set[tuple[str, str | None, str | None]] = set()
        self._supported: str | None = None  # the 98's BX, once known
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.login_refused = False  # the system refused our 93: nothing works until fixed

    @classmethod
    def from_config(cls, config: StationConfig) -> Sip2Backend:
        return cls(config.backend, language=config.language,
                   request_timeout=config.session.request_timeout_s)

    # --- lifecycle ---------------------------------------------------------------

    def start(self, wait: float = 10.0) -> bool:
        """Start the connection thread; True if connected within `wait` seconds."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._keep_connected, name="sip2-link", daemon=True)
        self._thread.start()
        return self.connected.wait(wait) if wait else False

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.config.connect_timeout_s + self.request_timeout + 1)
            self._thread = None
        with self._io:
            if self._sock is not None:
                try:  # the 99 of a station about to shut down, as SIP2 says it
                    self._status(time.monotonic() + min(1.0, self.request_timeout))
                except Sip2Unreachable:
                    pass
            self._drop("stopping")

    @property
    def serves_offline(self) -> bool:
        return False  # see the module's docstring: unreachable means refused

    def supports(self, op: Op) -> bool:
        if op not in SIP2_OPS:
            return False
        bx = self._supported
        if not bx:
            return True  # not known yet, or the system leaves BX empty: try it
        flag = bx[sip2.SUPPORTED_MESSAGES.index(_NEEDS[op])] if len(bx) >= 16 else "Y"
        return flag == "Y"

    # --- StationLink -------------------------------------------------------------

    def set_device(self, name: str, state: DeviceState) -> None:
        if self.devices.get(name) != state:
            self.devices[name] = state
            self.publish_status()

    def publish_status(self) -> None:
        """SIP2's station status is the 99 (printer out of paper, about to shut down);
        it goes with the next status check, which this hurries along."""
        self._wake.set()

    def publish_event(self, type_: str, data: BaseModel) -> bool:
        # SIP2 has no events: a device fault stays in the station's log.
        log.info("event %s not sent (SIP2 carries no events): %s", type_, data.model_dump(mode="json"))
        return False

    # --- Backend -----------------------------------------------------------------

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        request_id = str(uuid.uuid4())
        if not self.supports(op):
            log.warning("%s: not something a SIP2 library system does", op.value)
            return Reply.failure(request_id, ErrorCode.BAD_REQUEST, text("sip2.unsupported", self.language))
        if not self.connected.is_set():
            raise Sip2Unreachable("the SIP2 library system is not connected")
        deadline = time.monotonic() + (self.request_timeout if timeout is None else timeout)
        with self._io:
            if op is Op.PATRON_IDENTIFY:
                assert isinstance(args, IdentifyArgs)
                return self._identify(request_id, args, deadline)
            if op is Op.LOAN_CHECKOUT:
                assert isinstance(args, CheckoutArgs)
                return self._checkout(request_id, args, deadline)
            if op is Op.LOAN_RETURN:
                assert isinstance(args, ReturnArgs)
                return self._checkin(request_id, args, deadline)
            if op is Op.LOAN_RENEW:
                assert isinstance(args, RenewArgs)
                return self._renew(request_id, args, deadline)
            assert isinstance(args, ItemInfoArgs)
            return self._item_info(request_id, args, deadline)

    # --- operations --------------------------------------------------------------

    def _identify(self, request_id: str, args: IdentifyArgs, deadline: float) -> Reply:
        request = sip2.PatronInformationRequest(
            language="000", transaction_date=self._now(), summary=sip2.summary("charged_items"),
            AO=self.config.institution, AA=args.card, AC="", BP="1", BQ=str(MAX_LOANS_SHOWN))
        if args.pin is not None:
            request.set("AD", args.pin)
        answer = self._exchange(request, "64", deadline)
        screen = _screen(answer)
        if answer.flag("BL") is False:
            return Reply.failure(request_id, ErrorCode.UNKNOWN_PATRON, screen)
        if args.pin is not None and answer.flag("CQ") is False:
            return Reply.failure(request_id, ErrorCode.WRONG_PIN, screen)
        status = answer.patron_status or ""
        denied = {name for name, flag in zip(sip2.PATRON_STATUS_FLAGS, status) if flag == "Y"}
        charged = answer.count("charged_items_count") or 0
        today = self._acs_today(answer)
        blocks: list[str] = []
        if "charge_privileges_denied" in denied:
            overdue = "too_many_items_overdue" in denied or (answer.count("overdue_items_count") or 0) > 0
            blocks.append("overdue" if overdue and "card_reported_lost" not in denied else "blocked")
        limit = answer.get("CB", "").strip()
        if limit.isdigit():
            can_borrow = max(0, int(limit) - charged)
        elif "too_many_items_charged" in denied:
            can_borrow = 0
        else:
            can_borrow = self.config.can_borrow_if_unknown
        loans = [line for item in answer.getall("AU")[:MAX_LOANS_SHOWN]
                 if (line := self._loan_line(item, today, deadline)) is not None]
        card = answer.get("AA") or args.card
        result = IdentifyResult(
            patron=PatronInfo(id=card, name=answer.get("AE") or "", kind=self._kind(card)),
            loans=loans, can_borrow=can_borrow, blocks=blocks)
        return Reply.success(request_id, result)

    def _kind(self, card: str) -> str:
        if self._staff.search(card):
            return "staff"
        if self._teacher.search(card):
            return "teacher"
        return "student"

    def _loan_line(self, item: str, today: dt.date, deadline: float) -> LoanLine | None:
        info = self._item(item, deadline)
        due = self._due(info.get("AH")) if info is not None else None
        if info is None or due is None:
            log.info("loan %s left off the list: no due date from the library system", item)
            return None
        return LoanLine(item=item, title=info.get("AJ") or item, due=due, overdue=due < today)

    def _checkout(self, request_id: str, args: CheckoutArgs, deadline: float) -> Reply:
        request = sip2.CheckoutRequest(
            sc_renewal_policy=False, no_block=False, transaction_date=self._now(),
            AO=self.config.institution, AA=args.patron, AB=args.item, AC="")
        answer = self._exchange(request, "12", deadline)
        if answer.flag("ok") is not True:
            return self._refusal(request_id, Op.LOAN_CHECKOUT, args.item, answer, deadline)
        item = answer.get("AB") or args.item
        due = self._due(answer.get("AH"))
        if due is None:
            # Lent, but no date we can read: take it back rather than lend blind.
            log.error("checkout of %s: unreadable due date %r; checking it back in", item, answer.get("AH"))
            undo = self._exchange(sip2.CheckinRequest(
                no_block=False, transaction_date=self._now(), AP=self.config.location,
                AO=self.config.institution, AB=item, AC=""), "10", deadline)
            if undo.flag("ok") is not True:
                log.error("checkout of %s: could not be undone: %s", item, _screen(undo))
            return Reply.failure(request_id, ErrorCode.INTERNAL, "")
        return Reply.success(request_id, CheckoutResult(item=item, title=answer.get("AJ") or item, due=due))

    def _checkin(self, request_id: str, args: ReturnArgs, deadline: float) -> Reply:
        # The 10 says nothing of lateness: the due date comes from the 17 before it.
        before = self._item(args.item, deadline)
        due = self._due(before.get("AH")) if before is not None else None
        request = sip2.CheckinRequest(
            no_block=False, transaction_date=self._now(), AP=self.config.location,
            AO=self.config.institution, AB=args.item, AC="")
        answer = self._exchange(request, "10", deadline)
        if answer.flag("ok") is not True:
            return self._refusal(request_id, Op.LOAN_RETURN, args.item, answer, deadline, known=before)
        days_late = max(0, (self._acs_today(answer) - due).days) if due is not None else 0
        title = answer.get("AJ") or (before.get("AJ") if before is not None else None) or args.item
        return Reply.success(request_id, ReturnResult(item=answer.get("AB") or args.item, title=title,
                                                      was_overdue=days_late > 0, days_late=days_late))

    def _renew(self, request_id: str, args: RenewArgs, deadline: float) -> Reply:
        request = sip2.RenewRequest(
            third_party_allowed=False, no_block=False, transaction_date=self._now(),
            AO=self.config.institution, AA=args.patron, AB=args.item, AC="")
        answer = self._exchange(request, "30", deadline)
        due = self._due(answer.get("AH"))
        if answer.flag("ok") is not True or due is None:
            return self._refusal(request_id, Op.LOAN_RENEW, args.item, answer, deadline)
        return Reply.success(request_id, RenewResult(item=answer.get("AB") or args.item, due=due,
                                                     title=answer.get("AJ") or None))

    def _item_info(self, request_id: str, args: ItemInfoArgs, deadline: float) -> Reply:
        info = self._item(args.item, deadline)
        if info is None:
            return Reply.failure(request_id, ErrorCode.UNKNOWN_ITEM, "")
        if not (info.get("AJ") or "").strip():
            return Reply.failure(request_id, ErrorCode.UNKNOWN_ITEM, _screen(info))
        status = _STATUS.get(info.circulation_status or "", "other")
        due = self._due(info.get("AH")) if status == "on_loan" else None
        return Reply.success(request_id, ItemInfoResult(item=info.get("AB") or args.item,
                                                        title=info.get("AJ") or "", status=status, due=due))

    def _item(self, item: str, deadline: float) -> Message | None:
        """The 18 for `item`; None when the system does not know the item."""
        answer = self._exchange(sip2.ItemInformationRequest(
            transaction_date=self._now(), AO=self.config.institution, AB=item, AC=""), "18", deadline)
        if answer.circulation_status in (None, "") or not (answer.get("AJ") or "").strip():
            return None if not answer.fields.get("AF") else answer
        return answer

    def _refusal(self, request_id: str, op: Op, item: str, answer: Message, deadline: float, *,
                 known: Message | None = None) -> Reply:
        """A refusal with the system's sentence, and the code the item's status implies."""
        message = _screen(answer)
        try:
            info = known if known is not None else self._item(item, deadline)
        except Sip2Unreachable:
            raise
        except Exception:  # a reason is a nicety: the refusal stands without one
            log.exception("%s of %s: could not look up why it was refused", op.value, item)
            info = None
        status = info.circulation_status if info is not None else None
        if info is None or not (info.get("AJ") or "").strip():
            code = ErrorCode.UNKNOWN_ITEM
        elif op is Op.LOAN_CHECKOUT:
            code = ErrorCode.ITEM_ON_LOAN if status in _CHARGED else ErrorCode.ITEM_NOT_LOANABLE
        elif op is Op.LOAN_RETURN:
            code = ErrorCode.ITEM_NOT_ON_LOAN if status not in _CHARGED else ErrorCode.INTERNAL
        else:
            code = ErrorCode.ITEM_NOT_ON_LOAN if status not in _CHARGED else ErrorCode.RENEW_LIMIT
        log.info("%s of %s refused (%s): %s", op.value, item, code.value, message or "-")
        return Reply.failure(request_id, code, message)

    # --- dates -------------------------------------------------------------------

    def _due(self, value: str | None) -> dt.date | None:
        """A due date as the system writes it: SIP2's 18 characters, ISO 8601, YYYYMMDD,
        or `due_date_format`; None when blank or unreadable."""
        value = (value or "").strip()
        if not value:
            return None
        if self.config.due_date_format:
            try:
                return dt.datetime.strptime(value, self.config.due_date_format).date()
            except ValueError:
                pass
        try:
            parsed = sip2.parse_date(value)
            if parsed is not None:
                return parsed.date()
        except sip2.Sip2Error:
            pass
        match = re.match(r"(\d{4})-?(\d{2})-?(\d{2})", value)
        if match:
            try:
                return dt.date(*(int(g) for g in match.groups()))
            except ValueError:
                return None
        return None

    def _acs_today(self, answer: Message) -> dt.date:
        # The library system's own date, so lateness is counted by its calendar day.
        try:
            when = answer.date("transaction_date")
        except sip2.Sip2Error:
            when = None
        return when.date() if when is not None else self._now().date()

    # --- the conversation --------------------------------------------------------

    def _exchange(self, message: Message, expect: str, deadline: float) -> Message:
        """Send one message and return its answer (code `expect`). Raises Sip2Unreachable."""
        with self._io:
            if self._sock is None:
                raise Sip2Unreachable("the SIP2 library system is not connected")
            try:
                return self._converse(message, expect, deadline)
            except (OSError, TimeoutError, _Garbled, sip2.Sip2Error) as exc:
                self._drop(str(exc) or type(exc).__name__)
                raise Sip2Unreachable(f"SIP2 {message.code}: {exc or type(exc).__name__}") from exc

    def _converse(self, message: Message, expect: str, deadline: float) -> Message:
        config = self.config
        self._distinct(message)
        self._sequence = (self._sequence + 1) % 10
        sequence = self._sequence if config.error_detection else None
        wire = sip2.encode(message, sequence=sequence, error_detection=config.error_detection,
                           encoding=config.encoding, terminator=config.terminator, errors="replace")
        if self._frames:
            log.warning("SIP2: %d unasked answers dropped", len(self._frames))
            self._frames.clear()
        self._send(wire)
        for _ in range(MAX_RESENDS + 1):
            frame = self._receive(deadline)
            try:
                answer = sip2.decode(frame, config.encoding)
            except sip2.ChecksumError as exc:
                log.warning("SIP2 %s: %s; asking for it again", expect, exc)
                self._send(sip2.encode(sip2.RequestACSResend(), error_detection=config.error_detection,
                                       encoding=config.encoding, terminator=config.terminator))
                continue
            if answer.code == "96":  # the system could not read ours: the same bytes again
                log.warning("SIP2 %s: the system asks for %s again", expect, message.code)
                self._send(wire)
                continue
            if answer.code != expect:
                raise _Garbled(f"answer {answer.code} to {message.code}")
            if sequence is not None and answer.sequence is not None and answer.sequence != sequence:
                raise _Garbled(f"answer to sequence {answer.sequence}, not {sequence}")
            self._last_exchange = time.monotonic()
            return answer
        raise _Garbled(f"no readable answer to {message.code} after {MAX_RESENDS} resends")

    def _distinct(self, message: Message) -> None:
        """A change (11, 09, 29) identical to one already sent with the same transaction
        date waits for the next second: SIP2 dates have no finer grain, and a system that
        takes a repeated transaction for a retransmission (ours does) would not apply it."""
        if message.code not in ("11", "09", "29"):
            return
        key = (message.code, message.get("AA"), message.get("AB"))
        if message.transaction_date != self._changes_at:
            self._changes_at, self._changes = message.transaction_date, set()
        if key in self._changes:
            time.sleep(1.001 - time.time() % 1)
            message.set("transaction_date", self._now())
            self._changes_at, self._changes = message.transaction_date, set()
        self._changes.add(key)

    def _send(self, wire: bytes) -> None:
        assert self._sock is not None
        self._sock.settimeout(max(0.05, self.request_timeout))
        self._sock.sendall(wire)

    def _receive(self, deadline: float) -> bytes:
        assert self._sock is not None
        while not self._frames:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            self._sock.settimeout(left)
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the library system closed the connection")
            self._frames.extend(self._framer.feed(chunk))
        return self._frames.popleft()

    def _drop(self, why: str) -> None:
        sock, self._sock = self._sock, None
        self.connected.clear()
        self._frames.clear()
        self._framer = sip2.Framer(MAX_MESSAGE_BYTES)
        if sock is not None:
            if not self._stopping.is_set():
                log.warning("SIP2 connection to %s:%d lost (%s); reconnecting", self.config.host,
                            self.config.port, why)
            try:
                sock.close()
            except OSError:
                pass
            self._wake.set()

    # --- the connection thread ---------------------------------------------------

    def _connect(self) -> None:
        """Connect, log in and ask the status; raises on any failure."""
        config = self.config
        deadline = time.monotonic() + config.connect_timeout_s
        sock = socket.create_connection((config.host, config.port), timeout=config.connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if config.tls:
                context = ssl.create_default_context(cafile=config.ca_file)
                sock = context.wrap_socket(sock, server_hostname=config.host)
        except BaseException:
            sock.close()
            raise
        with self._io:
            self._sock = sock
            self._frames.clear()
            self._framer = sip2.Framer(MAX_MESSAGE_BYTES)
            if config.username:
                password = config.password()
                if password is None:
                    log.error("SIP2 login: no password (set password_env or password_file)")
                login = sip2.LoginRequest(uid_algorithm="0", pwd_algorithm="0", CN=config.username,
                                          CO=password or "", CP=config.location or None)
                answer = self._exchange(login, "94", deadline)
                if answer.flag("ok") is not True:
                    self.login_refused = True
                    self._drop("login refused")
                    raise PermissionError(f"the library system refused the login of {config.username!r}")
                self.login_refused = False
            self._status(deadline)

    def _status(self, deadline: float) -> None:
        """A 99; the 98 says whether the system is online and what it supports."""
        code = "2" if self._stopping.is_set() else "1" if self._printer_fault() else "0"
        answer = self._exchange(sip2.SCStatus(status_code=code, max_print_width="000",
                                              protocol_version="2.00"), "98", deadline)
        self._supported = (answer.get("BX") or "").strip() or None
        if answer.flag("online_status") is False:
            if self.connected.is_set():
                log.warning("the SIP2 library system says it is offline")
            self.connected.clear()
        else:
            if not self.connected.is_set():
                log.info("SIP2 library system %s:%d online", self.config.host, self.config.port)
            self.connected.set()

    def _printer_fault(self) -> bool:
        return any(state == "fault" for name, state in list(self.devices.items()) if "printer" in name)

    def _keep_connected(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._sock is None:
                try:
                    self._connect()
                    failures = 0
                except Exception as exc:  # refused, unreachable, TLS, a garbled answer
                    failures += 1
                    ceiling = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (failures - 1))
                    if self.login_refused:
                        ceiling = BACKOFF_MAX_S  # wrong credentials do not fix themselves
                    pause = ceiling / 2 + self._rng(0, ceiling / 2)
                    log.warning("SIP2 %s:%d: %s; again in %.1f s", self.config.host, self.config.port,
                                exc, pause)
                    with self._io:
                        self._drop(str(exc))
                    self._wake.clear()
                    self._stopping.wait(pause)
                    continue
            self._wake.wait(self.config.status_interval_s)
            hurried = self._wake.is_set()
            self._wake.clear()
            if self._stopping.is_set() or self._sock is None:
                continue
            idle = time.monotonic() - self._last_exchange
            if hurried or idle >= self.config.status_interval_s or not self.connected.is_set():
                try:
                    self._status(time.monotonic() + self.request_timeout)
                except Sip2Unreachable as exc:
                    log.warning("SIP2 status check: %s", exc)


def _screen(answer: Message) -> str:
    """The system's sentences for a person (AF), as one."""
    return " ".join(part.strip() for part in answer.getall("AF") if part.strip())
