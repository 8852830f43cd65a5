"""Store and forward: a station keeps serving while the library cannot be reached.

`StoreAndForward` wraps the MQTT link and is the session's `Backend`. Online it asks
the server live. When the broker is down, the server says it is offline, or a request
times out, the station's `[offline]` policy decides:

- a return (modes "returns", "returns_and_checkouts") or a checkout (the latter, for a
  reader whose card this station saw online, up to `max_checkouts_per_reader` until the
  outbox has been replayed) is committed to the outbox and answered `AcceptedOffline`;
  the session tells the reader it was recorded offline and the library will confirm;
- an identify is answered from the card cache (`CachedPatron`: no name, no loans);
- anything else raises `OfflineRefused` (a BackendUnavailable): "server unreachable".

A request that timed out live goes into the outbox with the SAME id: the server
applies an id once, so it counts once whether or not the first try arrived.

The replay thread sends the outbox in order when the link is up, each request with its
original id and station time and `offline: true`, keeping up to `replay_window` of them
in flight: one station's QoS 1 publishes on one topic reach the server in order, and the
server handles a station's requests one at a time in arrival order (paho's network
thread, server/service.py), so the window keeps the order while it saves a round trip
per request. The oldest request in flight is awaited; as soon as it is answered, it and
every answered one behind it are marked done in one outbox transaction. A reply that does not come within
`replay_timeout_s`, a dropped link, or a reply to retry (below) ends the pass: after a
backoff with jitter the next pass starts again from the first unanswered request, and
whatever the server had already applied after it is answered from its idempotency
record. Meanwhile a new live write waits for the outbox to drain (at most
`drain_wait_s`), then queues behind it if it has not: order is kept.

Requests are sent with `link.send(request, timeout=0)`: it publishes and returns at
once, and the reply comes through `on_late_reply`, as for any abandoned request. (A
reply that lands in the microseconds between MqttLink's zero wait and its forgetting the
request is lost: the pass then waits `replay_timeout_s` and resends it, answered from
the server's record. A `publish_request` in the link without the wait would close that.)
A reply that arrives after its request was abandoned (the live try or a replay timed
out) comes through the link's `on_late_reply` and marks the request done in the outbox;
one that arrives before the request is in the outbox is held until it is.

The server's answer to a replayed request is final unless it is `internal` or
`unauthorized` (a server error or a station not yet registered): those are retried, and
the queue waits behind them, because nothing accepted may be lost or reordered. (With a
window, the requests sent behind one the server failed on may already be applied when it
is retried; a server error is a bug to fix, not a state to run in.)
Conflicts (the copy lent to someone else meanwhile, ...) are the server's to record and
to tell the librarian; the station logs them and keeps the summary in the outbox.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from kiosk.backend import AcceptedOffline, Answer, BackendUnavailable, CachedPatron
from kiosk.cardcache import CardCache
from kiosk.config import OfflineConfig, StationConfig
from kiosk.outbox import Outbox, OutboxError, Queued
from protocol import CheckoutArgs, ErrorCode, IdentifyArgs, IdentifyResult, Op, Reply, Request

log = logging.getLogger("thuvien.kiosk.offline")

DEFAULT_STATE_DIR = "/var/lib/thuvien"
# A request that timed out makes the server suspect for this long: the next readers are
# served offline at once instead of each waiting a full timeout.
SUSPECT_S = 15.0
# Late replies held for requests not yet in the outbox (a moment's race at most).
LATE_KEPT = 256
# Block code of a cached card that was blocked at last sight (its reason is not kept).
CACHED_BLOCK = "cached"
# Replayed requests in flight at once, unless `[offline] replay_window` says otherwise.
DEFAULT_REPLAY_WINDOW = 32
# Retried, not final: the server did not store them, or the station is not yet allowed.
_RETRIED = {ErrorCode.INTERNAL, ErrorCode.UNAUTHORIZED}


class OfflineRefused(BackendUnavailable):
    """Offline, and the policy does not accept this request here."""

    def __init__(self, message: str, *, can_return: bool = False) -> None:
        super().__init__(message)
        self.can_return = can_return  # returns are still taken offline: say so


class Link(Protocol):
    """What store and forward needs of `kiosk.link.MqttLink`."""

    connected: threading.Event
    server_online: threading.Event
    on_late_reply: Callable[[Reply], None] | None
    outbox_size: Callable[[], int] | None

    def send(self, request: Request, *, timeout: float | None = None) -> Reply: ...

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply: ...

    def publish_status(self) -> None: ...


def state_paths(config: StationConfig) -> tuple[Path, Path]:
    """Where the outbox and the card cache live by default (see `OfflineConfig`)."""
    import os

    base = Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE_DIR) / config.station
    offline = config.offline
    outbox = Path(offline.outbox_path) if offline.outbox_path else base / "outbox.db"
    cards = Path(offline.card_cache_path) if offline.card_cache_path else outbox.parent / "cards.db"
    return outbox, cards


def open_store_and_forward(config: StationConfig, link: Link) -> StoreAndForward | None:
    """The station's store-and-forward backend, or None where there is none to be had:
    offline mode "none", or an outbox that cannot be opened (logged: the station then
    serves online only rather than not at all)."""
    if config.offline.mode == "none":
        return None
    try:
        return StoreAndForward.from_config(config, link)
    except OutboxError as exc:
        log.error("%s: nothing will be accepted offline (set [offline] outbox_path)", exc)
        return None


def _new_request(op: Op, args: BaseModel) -> Request:
    from kiosk.link import make_request  # paho stays out of this module's import

    return make_request(op, args)


class StoreAndForward:
    def __init__(self, link: Link, outbox: Outbox, config: OfflineConfig, *,
                 cards: CardCache | None = None, request_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[float, float], float] = random.uniform,
                 make_request: Callable[[Op, BaseModel], Request] = _new_request,
                 replay_window: int | None = None) -> None:
        self.link = link
        self.outbox = outbox
        self.cards = cards
        self.config = config
        self.request_timeout = request_timeout
        self._clock = clock
        self._rng = rng
        self._make_request = make_request
        self._late: OrderedDict[str, Reply] = OrderedDict()
        self._late_lock = threading.Lock()
        self._drained = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._suspect_until = 0.0
        self._status_at = 0.0
        self.replayed = 0  # requests the replay got a final answer to, since start
        window = replay_window or getattr(config, "replay_window", None) or DEFAULT_REPLAY_WINDOW
        self.replay_window = max(1, int(window))
        # The current replay pass: its requests in flight, by id, with their final reply
        # once the network thread hands it over, and why the pass must stop, if it must.
        self._window = threading.Condition()
        self._in_flight: dict[str, Reply | None] = {}
        self._window_failed: str | None = None
        link.on_late_reply = self._on_late_reply
        link.outbox_size = lambda: len(self.outbox)

    @classmethod
    def from_config(cls, config: StationConfig, link: Link) -> StoreAndForward:
        """Open the outbox and the card cache where the config says. Raises OutboxError."""
        outbox_path, cards_path = state_paths(config)
        outbox = Outbox(outbox_path)
        cards = None
        if config.offline.mode == "returns_and_checkouts" or config.offline.card_cache_size:
            try:
                cards = CardCache(cards_path, max_entries=config.offline.card_cache_size,
                                  max_age_s=config.offline.card_cache_days * 86400)
            except (OSError, Exception) as exc:  # sqlite3.Error and friends: lend less, not crash
                log.error("card cache %s unusable (%s): no lending to known readers offline",
                          cards_path, exc)
        return cls(link, outbox, config.offline, cards=cards,
                   request_timeout=config.session.request_timeout_s)

    # --- lifecycle ---

    def start(self) -> None:
        try:
            pruned = self.outbox.prune()
            if pruned:
                log.info("outbox: forgot %d requests answered long ago", pruned)
        except Exception:
            log.exception("outbox: pruning failed")
        if len(self.outbox):
            log.warning("outbox: %d requests wait to be replayed", len(self.outbox))
        self._stop.clear()
        self._thread = threading.Thread(target=self._replay_loop, name="outbox-replay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.outbox.close()
        if self.cards is not None:
            self.cards.close()

    @property
    def serves_offline(self) -> bool:
        """Whether a reader can do anything here while the library is unreachable."""
        return self.config.mode != "none"

    # --- Backend ---

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Answer:
        if op is Op.PATRON_IDENTIFY:
            assert isinstance(args, IdentifyArgs)
            return self._identify(args, timeout)
        if op in (Op.LOAN_CHECKOUT, Op.LOAN_RETURN):
            return self._write(op, args, timeout)
        return self.link.request(op, args, timeout=timeout)  # reads: live or not at all

    def _up(self) -> bool:
        return self.link.connected.is_set() and self.link.server_online.is_set()

    def _live(self) -> bool:
        return self._up() and self._clock() >= self._suspect_until

    def _identify(self, args: IdentifyArgs, timeout: float | None) -> Answer:
        if self._live():
            try:
                reply = self.link.request(Op.PATRON_IDENTIFY, args, timeout=timeout)
            except BackendUnavailable as exc:
                self._suspect(exc)
                if args.pin is not None:
                    raise
                return self._cached_patron(args.card)
            self._learn(args, reply)
            return reply
        if args.pin is not None:
            raise OfflineRefused("offline: a staff login needs the server")
        return self._cached_patron(args.card)

    def _learn(self, args: IdentifyArgs, reply: Reply) -> None:
        if self.cards is None or args.pin is not None:
            return
        try:
            if reply.ok:
                self.cards.remember(args.card, reply.result_as(IdentifyResult))
            elif reply.error is not None and reply.error.code is ErrorCode.UNKNOWN_PATRON:
                self.cards.forget(args.card)
        except Exception:  # the cache is a convenience: never fail a live answer over it
            log.exception("card cache: could not record an identify")

    def _cached_patron(self, card: str) -> CachedPatron:
        mode = self.config.mode
        if mode != "returns_and_checkouts":
            raise OfflineRefused(f"offline; mode {mode!r} lends nothing", can_return=mode == "returns")
        entry = self.cards.get(card) if self.cards is not None else None
        if entry is None:
            if self.config.known_readers_only:
                raise OfflineRefused("offline, and this card was not seen here recently",
                                     can_return=True)
            return CachedPatron(patron=card, kind="student", blocks=(),
                                can_borrow=max(0, self.config.max_checkouts_per_reader
                                               - self._used(self._reader_key(card))))
        if entry.blocked:
            return CachedPatron(patron=card, kind=entry.kind, can_borrow=0, blocks=(CACHED_BLOCK,))
        allowed = min(entry.can_borrow, self.config.max_checkouts_per_reader)
        return CachedPatron(patron=card, kind=entry.kind, blocks=(),
                            can_borrow=max(0, allowed - self._used(entry.reader)))

    def _reader_key(self, card: str) -> str:
        return self.cards.key(card) if self.cards is not None else f"card:{card.casefold()}"

    def _used(self, reader: str) -> int:
        return self.outbox.pending_for(reader, Op.LOAN_CHECKOUT.value)

    def _write(self, op: Op, args: BaseModel, timeout: float | None) -> Answer:
        request = self._make_request(op, args)
        if self._live() and len(self.outbox):
            # Older requests first: a return recorded offline must reach the server
            # before a new checkout of the same copy.
            self.wait_drained(self.config.drain_wait_s)
        if not self._live():
            return self._accept_offline(request, "the library cannot be reached")
        if len(self.outbox):
            if self._allowed_offline(op):
                return self._accept_offline(request, "older requests are still being replayed")
            log.warning("%s sent live ahead of %d queued requests", op.value, len(self.outbox))
        try:
            reply = self.link.send(request, timeout=timeout)
        except BackendUnavailable as exc:
            self._suspect(exc)
            return self._accept_offline(request, str(exc))
        if reply.ok and op is Op.LOAN_CHECKOUT and self.cards is not None:
            assert isinstance(args, CheckoutArgs)
            try:
                self.cards.borrowed(args.patron)
            except Exception:
                log.exception("card cache: could not count a checkout")
        return reply

    def _allowed_offline(self, op: Op) -> bool:
        mode = self.config.mode
        return mode == "returns_and_checkouts" or (mode == "returns" and op is Op.LOAN_RETURN)

    def _accept_offline(self, request: Request, why: str) -> Answer:
        op = request.op
        if not self._allowed_offline(op):
            raise OfflineRefused(f"{why}; offline mode {self.config.mode!r} does not take "
                                 f"{op.value}", can_return=self._allowed_offline(Op.LOAN_RETURN))
        reader = None
        if op is Op.LOAN_CHECKOUT:
            args = request.args
            assert isinstance(args, CheckoutArgs)
            entry = self.cards.get(args.patron) if self.cards is not None else None
            if entry is None and self.config.known_readers_only:
                raise OfflineRefused(f"{why}; reader not seen here recently", can_return=True)
            if entry is not None and entry.blocked:
                return Reply.failure(request.id, ErrorCode.PATRON_BLOCKED, "")
            reader = entry.reader if entry is not None else self._reader_key(args.patron)
            allowed = self.config.max_checkouts_per_reader
            if entry is not None:
                allowed = min(allowed, entry.can_borrow)
            if self._used(reader) >= allowed:
                return Reply.failure(request.id, ErrorCode.LIMIT_REACHED, "")
        stored = request.model_copy(update={"offline": True})
        try:
            with self._late_lock:
                added = self.outbox.add(stored, reader)
                late = self._late.pop(request.id, None)
                if late is not None:
                    self.outbox.mark_done(request.id, late)
        except OutboxError as exc:
            log.error("outbox: %s", exc)
            raise OfflineRefused(f"{why}; the outbox cannot be written") from exc
        if not added:
            log.warning("outbox: %s was already queued", request.id)
        log.info("accepted offline: %s %s (%s)", op.value, request.id, why)
        self._wake.set()
        self._publish_status(force=True)
        return AcceptedOffline(request_id=request.id, op=op, at=request.at)

    def _suspect(self, exc: Exception) -> None:
        log.warning("the server did not answer (%s): serving offline for %g s", exc, SUSPECT_S)
        self._suspect_until = self._clock() + SUSPECT_S

    # --- late replies ---

    def _on_late_reply(self, reply: Reply) -> None:
        """On the network thread: a reply whose request was abandoned, or was replayed."""
        if self._to_replay(reply):
            return
        if not self._final(reply):
            return  # the replay will ask again
        if not reply.ok:
            # A refusal arriving after its request timed out: if the reader was told
            # "recorded offline", the request waits in the outbox, and its offline replay
            # gets the server to tell the librarian. Closing it here would drop it silently.
            log.info("outbox: late refusal of %s (%s) left for the replay", reply.id,
                     reply.error.code.value if reply.error else "?")
            return
        try:
            with self._late_lock:
                if self.outbox.mark_done(reply.id, reply):
                    log.info("outbox: %s answered late (%s)", reply.id, "ok" if reply.ok else
                             reply.error.code.value if reply.error else "?")
                    done = True
                else:
                    self._late[reply.id] = reply
                    while len(self._late) > LATE_KEPT:
                        self._late.popitem(last=False)
                    done = False
        except OutboxError as exc:
            log.error("outbox: %s", exc)
            return
        self._suspect_until = 0.0  # the server answers again
        if done:
            self._after_done()

    # --- replay ---

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the outbox is empty (or the link is down); True if it is empty."""
        deadline = time.monotonic() + timeout
        with self._drained:
            while len(self.outbox) and self._up():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._drained.wait(min(left, 0.5))
        return not len(self.outbox)

    def replay_once(self) -> bool | None:
        """One replay pass: send the queued requests oldest first, up to `replay_window`
        in flight, until none is left. True: all answered for good; False: the pass
        stopped (no reply in time, the link dropped, or a reply to retry) and the next
        one starts from the first unanswered request; None: nothing to send."""
        chunk = self.replay_window
        todo = deque(self.outbox.pending(chunk))
        if not todo:
            return None
        last_seq = todo[-1].seq
        flight: deque[tuple[Queued, float]] = deque()  # oldest first, with its deadline
        try:
            while True:
                while len(flight) < self.replay_window:
                    if not todo:
                        todo.extend(self.outbox.pending(chunk, after=last_seq))
                        if not todo:
                            break
                        last_seq = todo[-1].seq
                    if not self._up():
                        return False
                    flight.append(self._send_replay(todo.popleft()))
                if not flight:
                    return True
                answered = self._await_answers(flight)
                if not answered:
                    return False
                self._record(answered)
        finally:
            with self._window:
                self._in_flight.clear()
                self._window_failed = None

    def _send_replay(self, queued: Queued) -> tuple[Queued, float]:
        request = queued.request
        with self._window:
            self._in_flight[request.id] = None  # before the publish: its reply may be quick
        deadline = time.monotonic() + self.config.replay_timeout_s
        try:
            reply = self.link.send(request, timeout=0)
        except BackendUnavailable:
            pass  # published, or the link is down: the wait tells which
        else:
            self._to_replay(reply)  # a link that answers at once
        return queued, deadline

    def _to_replay(self, reply: Reply) -> bool:
        """Hand a reply to the replay pass if it waits for it; True if it did."""
        with self._window:
            if reply.id not in self._in_flight:
                return False
            if self._final(reply):
                if self._in_flight[reply.id] is None:
                    self._in_flight[reply.id] = reply
            elif self._window_failed is None:
                assert reply.error is not None
                self._window_failed = f"{reply.id}: {reply.error.code.value}, will retry"
            self._window.notify_all()
        return True

    def _await_answers(self, flight: deque[tuple[Queued, float]]) -> list[tuple[Queued, Reply]]:
        """Wait for the oldest request in flight; take it and every answered one behind
        it off `flight`. Empty when the pass must stop."""
        queued, deadline = flight[0]
        with self._window:
            while (reply := self._in_flight.get(queued.request.id)) is None:
                if self._window_failed is not None:
                    log.warning("replay of %s", self._window_failed)
                    return []
                if self._stop.is_set() or not self._up():
                    log.info("replay stopped: the link is down")
                    return []
                left = deadline - time.monotonic()
                if left <= 0:
                    log.info("replay of %s: no reply within %g s", queued.request.id,
                             self.config.replay_timeout_s)
                    return []
                self._window.wait(min(left, 0.5))
            answered = [(queued, reply)]
            flight.popleft()
            while flight and (reply := self._in_flight.get(flight[0][0].request.id)) is not None:
                answered.append((flight.popleft()[0], reply))
            for done, _ in answered:
                del self._in_flight[done.request.id]
        return answered

    def _record(self, answered: list[tuple[Queued, Reply]]) -> None:
        self._suspect_until = 0.0
        for queued, reply in answered:
            if not reply.ok and reply.error is not None:
                # A conflict or a refusal: the server records it and alerts the librarian.
                log.warning("replayed %s %s refused: %s %s", queued.request.op.value,
                            queued.request.id, reply.error.code.value, reply.error.message)
        # One transaction for the burst: the mark is cheap next to a round trip, but
        # not next to the server's own commit when thousands are replayed.
        self.replayed += self.outbox.mark_done_many([reply for _, reply in answered])
        self._after_done()

    def backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` failed attempts in a row: doubling from
        0.5 s up to `retry_max_s`, the second half drawn at random."""
        ceiling = min(self.config.retry_max_s, 0.5 * 2 ** max(0, failures - 1))
        return ceiling / 2 + self._rng(0, ceiling / 2)

    def _replay_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if not self._up() or not len(self.outbox):
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                result = self.replay_once()
            except Exception:  # a bad row or a full disk must not end the replays
                log.exception("outbox: replay failed")
                result = False
            if result is False:
                failures += 1
                self._stop.wait(self.backoff(failures))
            else:
                failures = 0

    def _after_done(self) -> None:
        with self._drained:
            self._drained.notify_all()
        if not len(self.outbox):
            log.info("outbox: empty again (%d replayed since start)", self.replayed)
            self._publish_status(force=True)
        else:
            self._publish_status(force=False)

    def _publish_status(self, *, force: bool) -> None:
        # A long replay would otherwise send a status per request: once a second is news enough.
        now = self._clock()
        if not force and now - self._status_at < 1.0:
            return
        self._status_at = now
        try:
            self.link.publish_status()
        except Exception:
            log.exception("could not publish the status")

    @staticmethod
    def _final(reply: Reply) -> bool:
        return reply.ok or reply.error is None or reply.error.code not in _RETRIED
