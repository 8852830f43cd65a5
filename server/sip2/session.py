"""One SIP2 connection's conversation: login, error detection, resend, duplicates.

Bytes of one message in, bytes of one answer out (or nothing, and `closed`): no sockets
here, so every rule below is exercised by the conformance tests through a real socket
and by nothing else.

- Until a 93 login succeeds only 93, 99 and 97 are answered; anything else closes the
  connection. A failed login is answered `940`, whatever failed (unknown name, wrong
  password, not a registered kiosk or desk): a machine with wrong credentials learns
  nothing. After `max_login_failures` the connection is closed.
- A message whose AZ checksum is wrong, or that cannot be read, gets 96 (resend).
- 97 repeats the last answer, byte for byte.
- A message equal to the previous one with the same sequence number and checksum is a
  retransmission: the last answer is repeated and nothing is done again.
- An answer carries `AY<n>AZ<checksum>` when the request did, with the request's n.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from protocol import sip2
from protocol.sip2 import Message
from server.models import StationKind
from server.sip2.config import Sip2Config, check_password
from server.sip2.handlers import Handlers

log = logging.getLogger("thuvien.sip2")

# The kinds of station that may speak SIP2: those that lend (a self-check) or work a desk.
SIP2_KINDS = frozenset({StationKind.KIOSK, StationKind.DESK})
_BEFORE_LOGIN = frozenset({"93", "99", "97"})
# Consecutive unreadable messages before the connection is dropped: a client sending
# garbage would otherwise get 96 forever.
MAX_BAD_MESSAGES = 10


class Session:
    def __init__(self, handlers: Handlers, config: Sip2Config, peer: str,
                 station_kind: Callable[[str], StationKind | None]) -> None:
        self.handlers = handlers
        self.config = config
        self.peer = peer
        self._station_kind = station_kind
        self.station: str | None = None
        self.closed = False
        self.messages = 0
        self.login_failures = 0
        self._bad = 0
        self._last_reply: bytes | None = None
        self._last_request: bytes | None = None

    # --- the wire ------------------------------------------------------------------

    def _encode(self, message: Message, request: Message | None) -> bytes:
        detection = request is not None and request.checksum is not None
        return sip2.encode(message, sequence=request.sequence if detection else None,
                           error_detection=detection, encoding=self.config.encoding,
                           terminator=self.config.terminator_text, strict=False,
                           errors="replace")

    def _resend_request(self) -> bytes:
        # 96 carries a checksum: a client using error detection checks it.
        return sip2.encode(sip2.RequestSCResend(), encoding=self.config.encoding,
                           terminator=self.config.terminator_text)

    def receive(self, frame: bytes) -> bytes | None:
        """The answer to one message (its terminator already cut), None to say nothing."""
        if self.closed:
            return None
        self.messages += 1
        try:
            message = sip2.decode(frame, self.config.encoding)
        except sip2.ChecksumError as exc:
            log.warning("sip2 %s (%s): %s; asked to resend", self.peer, self.station or "-", exc)
            return self._garbled()
        except sip2.Sip2Error as exc:
            if frame[:2] == b"97":
                return self._resend()
            log.warning("sip2 %s (%s): unreadable message: %s", self.peer,
                        self.station or "-", exc)
            return self._garbled()
        if message.code == "97":
            return self._resend()
        if (message.checksum is not None and frame == self._last_request
                and self._last_reply is not None):
            log.info("sip2 %s (%s): %s again with the same sequence and checksum: "
                     "the last answer repeated", self.peer, self.station, message.code)
            return self._last_reply
        self._bad = 0
        answer = self._answer(message)
        if answer is None:
            return None
        out = self._encode(answer, message)
        self._last_request = frame if message.checksum is not None else None
        self._last_reply = out
        return out

    def _garbled(self) -> bytes | None:
        self._bad += 1
        if self._bad > MAX_BAD_MESSAGES:
            log.warning("sip2 %s: %d unreadable messages in a row; closing", self.peer, self._bad)
            self.closed = True
            return None
        return self._resend_request()

    def _resend(self) -> bytes:
        if self._last_reply is None:
            return self._resend_request()
        return self._last_reply

    # --- the conversation ----------------------------------------------------------

    def _answer(self, message: Message) -> Message | None:
        code = message.code
        if code == "93":
            return self._login(message)
        if self.station is None and code not in _BEFORE_LOGIN:
            log.warning("sip2 %s: message %s before a login; closing", self.peer, code)
            self.closed = True
            return None
        if code == "99":
            if self.station is None:
                # Not logged in: the status a stranger may see says nothing is open to it.
                return sip2.ACSStatus(
                    online_status=False, checkin_ok=False, checkout_ok=False,
                    acs_renewal_policy=False, status_update_ok=False, offline_ok=False,
                    timeout_period=self.config.timeout_seconds,
                    retries_allowed=self.config.retries, date_time_sync=self.handlers.now(),
                    AO=self.handlers.institution, BX=sip2.supported_messages("login",
                                                                            "sc_acs_status"))
        if not self.handlers.handles(code):
            # An answer, not a question (a 24 sent to us): unreadable as a request.
            log.warning("sip2 %s (%s): %s is not a request; asked to resend", self.peer,
                        self.station, code)
            self._bad += 1
            return sip2.RequestSCResend()
        assert self.station is not None or code == "99"
        try:
            return self.handlers.answer(self.station or "-", message)
        except Exception:
            # A bug or a database fault: the client hears "resend", the server goes on.
            log.exception("sip2 %s (%s): message %s failed", self.peer, self.station, code)
            return sip2.RequestSCResend()

    def _login(self, message: Message) -> Message | None:
        name = (message.login_user_id or "").strip()
        password = message.login_password or ""
        kind = self._station_kind(name) if name else None
        accounts = self.config.accounts_file
        ok = (kind in SIP2_KINDS and accounts is not None
              and check_password(accounts, name, password))
        if ok:
            if self.station is not None and self.station != name:
                log.info("sip2 %s: station %s logs in again as %s", self.peer, self.station, name)
            self.station = name
            self.login_failures = 0
            log.info("sip2 %s: station %s (%s) logged in", self.peer, name, kind.value)
            return sip2.LoginResponse(ok=True)
        self.login_failures += 1
        # The reason goes to the log only; the machine hears 940.
        reason = ("no such registered station" if kind is None else
                  f"a {kind.value} may not use SIP2" if kind not in SIP2_KINDS else
                  "wrong password or no SIP2 account")
        log.warning("sip2 %s: login as %r refused (%s), failure %d", self.peer, name, reason,
                    self.login_failures)
        self.station = None
        if self.login_failures >= self.config.max_login_failures:
            self.closed = True
        return sip2.LoginResponse(ok=False)
