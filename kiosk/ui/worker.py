"""The one thread that owns the station's Session, fed by a queue.

The session's calls block on the network, so they must never run on the UI thread; and
the session must see one thread only. Inputs from the screen, the scanners and the
keyboard are queued here; the loop feeds them to the session one at a time and ticks it
(the inactivity timer), as `kiosk/headless.py` does. Outcomes leave through `deliver`,
on this thread: the UI hands them to its own thread (Kivy's Clock) before touching a widget.

Staff login is the one request that does not go through the session: it checks a PIN,
and must not start a reader's session (and so no loans can be made with a staff PIN).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from kiosk.backend import Backend, BackendUnavailable
from kiosk.config import SessionConfig, StocktakeConfig
from kiosk.session import Outcome, Session
from protocol import ErrorCode, IdentifyArgs, IdentifyResult, Op

log = logging.getLogger("thuvien.kiosk.ui.worker")


@dataclass(frozen=True)
class StaffLogin:
    """The answer to a staff card and PIN."""

    ok: bool
    name: str = ""
    # When refused: an ErrorCode value, "not_staff" or "unreachable".
    code: str | None = None
    message: str | None = None  # the server's sentence, if it gave one


Delivery = Outcome | StaffLogin
_STOP = object()


class SessionWorker:
    def __init__(self, backend: Backend, config: SessionConfig,
                 deliver: Callable[[Delivery], None], *,
                 clock: Callable[[], float] = time.monotonic, tick_interval: float = 0.25,
                 stocktake: StocktakeConfig | None = None) -> None:
        self._backend = backend
        self._config = config
        self._deliver = deliver
        self._tick_interval = tick_interval
        self._queue: queue.Queue[object] = queue.Queue()
        self._session = Session(backend, config, self, clock, stocktake)
        self._thread = threading.Thread(target=self._run, name="kiosk-session", daemon=True)
        self._warned_keep_alive = False

    # --- the session's listener (this thread) ---

    def on_outcome(self, outcome: Outcome) -> None:
        self._deliver(outcome)

    # --- inputs: from any thread ---

    def scan(self, code: str) -> None:
        self._queue.put(("scan", code))

    def start_return(self) -> None:
        self._queue.put(("start_return",))

    def refuse_item(self, code: str, reason: str, parts: int = 0) -> None:
        """An item the station refuses by itself (an RFID set with parts missing)."""
        self._queue.put(("refuse_item", code, reason, parts))

    def done(self) -> None:
        self._queue.put(("done",))

    def logout(self) -> None:
        self._queue.put(("logout",))

    def keep_alive(self) -> None:
        """The reader touched the screen: they are there, though nothing was scanned."""
        self._queue.put(("keep_alive",))

    def staff_login(self, card: str, pin: str) -> None:
        self._queue.put(("staff_login", card, pin))

    def start_stocktake(self, staff: str | None = None) -> None:
        """Stocktake mode; `staff` names a staff login the server checked."""
        self._queue.put(("start_stocktake", staff))

    def choose_shelf(self, shelf: str) -> None:
        self._queue.put(("choose_shelf", shelf))

    # --- lifecycle ---

    def start(self) -> None:
        if self._config.mode == "stocktake":
            self.start_stocktake()  # a stocktake station shows its screen before any read
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End any open session (the reader's data goes with it) and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the loop ---

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._tick_interval)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._guarded(self._session.logout)
                return
            if item is not None:
                self._guarded(self._handle, item)
            self._guarded(self._session.tick)

    def _guarded(self, call: Callable[..., None], *args: object) -> None:
        # One bad input must not stop the station: log it and serve the next reader.
        try:
            call(*args)
        except Exception:
            log.exception("the session failed on %r", args or call)

    def _handle(self, item: object) -> None:
        assert isinstance(item, tuple)
        match item:
            case ("scan", code):
                self._session.scan(code)
            case ("start_return",):
                self._session.start_return()
            case ("refuse_item", code, reason, parts):
                self._session.refuse_item(code, reason, parts=parts)
            case ("done",):
                self._session.done()
            case ("logout",):
                self._session.logout()
            case ("keep_alive",):
                self._keep_alive()
            case ("staff_login", card, pin):
                self._session.logout()
                self._deliver(self._staff_login(card, pin))
            case ("start_stocktake", staff):
                self._session.start_stocktake(staff)
            case ("choose_shelf", shelf):
                self._session.choose_shelf(shelf)

    def _keep_alive(self) -> None:
        keep_alive = getattr(self._session, "keep_alive", None)
        if keep_alive is not None:
            keep_alive()
        elif not self._warned_keep_alive:
            self._warned_keep_alive = True
            log.warning("Session has no keep_alive(): touches do not delay the inactivity logout")

    def _staff_login(self, card: str, pin: str) -> StaffLogin:
        try:
            args = IdentifyArgs(card=card, pin=pin)
        except ValidationError:
            # Not 4-12 digits: it cannot be anybody's PIN; no need to ask the server.
            return StaffLogin(False, code=ErrorCode.WRONG_PIN.value)
        try:
            reply = self._backend.request(Op.PATRON_IDENTIFY, args,
                                          timeout=self._config.request_timeout_s)
        except BackendUnavailable as exc:
            log.warning("staff login: %s", exc)
            return StaffLogin(False, code="unreachable")
        if not reply.ok:
            assert reply.error is not None
            return StaffLogin(False, code=reply.error.code.value, message=reply.error.message)
        try:
            result: IdentifyResult = reply.result_as(IdentifyResult)
        except ValueError as exc:
            log.error("staff login: the reply carries no valid IdentifyResult: %s", exc)
            return StaffLogin(False, code=ErrorCode.INTERNAL.value)
        if result.patron.kind != "staff":
            log.info("staff login refused: %s is a %s", card, result.patron.kind)
            return StaffLogin(False, code="not_staff")
        log.info("staff mode opened by %s", result.patron.id)
        return StaffLogin(True, name=result.patron.name)
