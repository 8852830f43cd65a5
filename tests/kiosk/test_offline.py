"""Store and forward against the real circulation rules: policy, replay, late replies,
and the card cache's privacy. Only the network edge is scripted (`Wire`)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from conftest import START, Library
from kiosk.backend import AcceptedOffline, BackendUnavailable, CachedPatron
from kiosk.cardcache import CardCache
from kiosk.config import OfflineConfig, SessionConfig, StationConfig
from kiosk.offline import CACHED_BLOCK, OfflineRefused, StoreAndForward, state_paths
from kiosk.outbox import Outbox
from kiosk.session import (
    ItemBorrowed,
    ItemRefused,
    ItemReturned,
    Outcome,
    PatronIdentified,
    ServerUnreachable,
    Session,
    SessionEnded,
)
from protocol import (
    CheckoutArgs,
    ErrorCode,
    IdentifyArgs,
    IdentifyResult,
    Op,
    PatronInfo,
    Reply,
    Request,
    ReturnArgs,
    ReturnResult,
)
from server import db
from server.models import LedgerEntry
from thuvien.broker import MosquittoBroker


class Wire:
    """The network as the MQTT link sees it. The library behind it is real; the test
    cuts the broker (`connected`), loses replies (the server applied the request but
    its answer never came back), and delivers lost replies late."""

    def __init__(self, library: Library, station: str = "kiosk-1") -> None:
        self.library = library
        self.station = station
        self.connected = threading.Event()
        self.connected.set()
        self.server_online = threading.Event()
        self.server_online.set()
        self.on_late_reply = None
        self.outbox_size = None
        self.lose_replies = False
        self.lost: list[Reply] = []
        self.sent: list[Request] = []
        self.statuses = 0

    def send(self, request: Request, *, timeout: float | None = None) -> Reply:
        if not self.connected.is_set():
            raise BackendUnavailable("not connected to the broker")
        self.sent.append(request)
        reply, _entries = self.library.circulation.handle(request, station=self.station)
        if self.lose_replies:
            self.lost.append(reply)
            raise BackendUnavailable(f"no reply to {request.op.value} within the timeout")
        return reply

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        return self.send(Request(id=str(uuid.uuid4()), op=op, at=dt.datetime.now(dt.timezone.utc),
                                 args=args), timeout=timeout)  # type: ignore[arg-type]

    def publish_status(self) -> None:
        self.statuses += 1

    def deliver_late(self) -> None:
        assert self.on_late_reply is not None
        lost, self.lost = self.lost, []
        for reply in lost:
            self.on_late_reply(reply)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[Outcome] = []

    def on_outcome(self, outcome: Outcome) -> None:
        self.seen.append(outcome)

    @property
    def last(self) -> Outcome:
        return self.seen[-1]


def _forward(tmp_path: Path, library: Library, **policy: object) -> tuple[StoreAndForward, Wire, Clock]:
    wire = Wire(library)
    clock = Clock()
    config = OfflineConfig(**{"drain_wait_s": 0, **policy})  # type: ignore[arg-type]
    forward = StoreAndForward(wire, Outbox(tmp_path / "outbox.db"), config,
                              cards=CardCache(tmp_path / "cards.db"), clock=clock,
                              rng=lambda low, high: high)
    return forward, wire, clock


class Ticking(Clock):
    """A station clock where each read comes a few seconds after the last: no repeats."""

    def __call__(self) -> float:
        self.now += 5
        return self.now


def _session(forward: StoreAndForward) -> tuple[Session, Outcomes]:
    outcomes = Outcomes()
    return Session(forward, SessionConfig(), outcomes, clock=Ticking()), outcomes


def _ledger(library: Library) -> list[LedgerEntry]:
    with db.session_factory(library.engine)() as session:
        return list(session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))


def _drain(forward: StoreAndForward) -> int:
    """Replay until nothing is left; how many requests the replay got answered."""
    before = forward.replayed
    while (result := forward.replay_once()) is not None:
        assert result, "a replay failed"
    return forward.replayed - before


# --- online ---------------------------------------------------------------------------

def test_online_everything_goes_live_and_the_outbox_stays_empty(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library)
    session, outcomes = _session(forward)
    session.scan("HS-2024-0001")
    assert isinstance(outcomes.last, PatronIdentified) and not outcomes.last.offline
    session.scan("TN00001")
    assert isinstance(outcomes.last, ItemBorrowed) and not outcomes.last.offline
    assert outcomes.last.due == dt.date(2026, 9, 19)
    assert len(forward.outbox) == 0
    assert library.loans_of("HS-2024-0001") == ["TN.00001"]
    assert all(not r.offline for r in wire.sent)


# --- the policy -----------------------------------------------------------------------

def test_mode_returns_takes_returns_offline_and_refuses_lending(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="returns")
    session, outcomes = _session(forward)
    session.scan("HS-2024-0001")  # seen online: the cache knows the card
    session.done()
    wire.connected.clear()

    session.scan("HS-2024-0001")
    assert outcomes.last == ServerUnreachable(Op.PATRON_IDENTIFY, can_return=True)
    session.start_return()
    session.scan("TN00002")
    returned = outcomes.last
    assert isinstance(returned, ItemReturned) and returned.offline
    assert (returned.item, returned.title, returned.count) == ("TN00002", "TN00002", 1)
    session.done()
    ended = outcomes.last
    assert isinstance(ended, SessionEnded) and ended.offline_returned == ("TN00002",)
    assert ended.returned_count == 1 and ended.returned == ()
    assert len(forward.outbox) == 1
    (queued,) = forward.outbox.pending()
    assert queued.request.offline and queued.request.op is Op.LOAN_RETURN


def test_mode_none_refuses_everything_offline(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="none")
    wire.connected.clear()
    with pytest.raises(OfflineRefused) as refused:
        forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    assert not refused.value.can_return
    assert len(forward.outbox) == 0


def test_known_readers_borrow_offline_up_to_the_limit(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="returns_and_checkouts",
                                max_checkouts_per_reader=2)
    session, outcomes = _session(forward)
    session.scan("7901234561")  # the MOET id: a card too
    session.done()
    wire.connected.clear()

    session.scan("7901234561")
    hello = outcomes.last
    assert isinstance(hello, PatronIdentified) and hello.offline
    assert (hello.name, hello.class_name, hello.loans, hello.can_borrow) == ("", None, (), 2)
    session.scan("TN00001")
    session.scan("TN00002")
    first, second = outcomes.seen[-2:]
    assert isinstance(first, ItemBorrowed) and first.offline and first.due is None
    assert (first.item, first.title, second.count) == ("TN00001", "TN00001", 2)  # type: ignore[union-attr]
    session.scan("TN00003")
    assert outcomes.last == ItemRefused("TN00003", ErrorCode.LIMIT_REACHED.value, "")
    session.done()
    assert isinstance(outcomes.last, SessionEnded)
    assert outcomes.last.offline_borrowed == ("TN00001", "TN00002")

    # Another session of the same reader, same offline period: the limit holds.
    session.scan("7901234561")
    assert isinstance(outcomes.last, PatronIdentified) and outcomes.last.can_borrow == 0


def test_an_unknown_card_is_refused_offline_unless_allowed(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="returns_and_checkouts")
    wire.connected.clear()
    with pytest.raises(OfflineRefused) as refused:
        forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0002"))
    assert refused.value.can_return

    open_forward, open_wire, _ = _forward(tmp_path / "open", library, mode="returns_and_checkouts",
                                          known_readers_only=False, max_checkouts_per_reader=1)
    open_wire.connected.clear()
    cached = open_forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0002"))
    assert cached == CachedPatron(patron="HS-2024-0002", kind="student", can_borrow=1, blocks=())
    assert isinstance(open_forward.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0002", item="TN00001")),
                      AcceptedOffline)


def test_a_card_blocked_at_last_sight_stays_blocked_offline(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="returns_and_checkouts")
    reply = forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0003"))
    assert isinstance(reply, Reply) and reply.ok
    wire.connected.clear()
    cached = forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0003"))
    assert isinstance(cached, CachedPatron) and cached.blocks == (CACHED_BLOCK,) and cached.can_borrow == 0
    refused = forward.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0003", item="TN00001"))
    assert isinstance(refused, Reply) and refused.error is not None
    assert refused.error.code is ErrorCode.PATRON_BLOCKED


def test_a_staff_login_needs_the_server(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="returns_and_checkouts")
    forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="GV-0001"))
    wire.connected.clear()
    with pytest.raises(BackendUnavailable):
        forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="GV-0001", pin="2468"))


def test_the_server_saying_offline_is_enough_to_go_offline(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library)
    wire.server_online.clear()  # the broker is up, the server's will said offline
    answer = forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    assert isinstance(answer, AcceptedOffline)
    assert wire.sent == []  # nobody was asked


# --- replay ---------------------------------------------------------------------------

def test_replay_applies_each_request_once_in_order_at_the_stations_time(tmp_path: Path,
                                                                       library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="returns_and_checkouts")
    assert forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0001")).ok  # type: ignore[union-attr]
    assert forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0002")).ok  # type: ignore[union-attr]
    lent = forward.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00001"))
    assert isinstance(lent, Reply) and lent.ok
    wire.connected.clear()
    # Offline: the book comes back, and another reader borrows it at once. Only in this
    # order can the server accept both.
    back = forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    again = forward.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0002", item="TN00001"))
    assert isinstance(back, AcceptedOffline) and isinstance(again, AcceptedOffline)
    assert len(forward.outbox) == 2

    wire.connected.set()
    assert _drain(forward) == 2
    assert len(forward.outbox) == 0
    assert library.loans_of("HS-2024-0002") == ["TN.00001"]
    ledger = _ledger(library)
    assert [(e.request_id, e.offline) for e in ledger] == [
        (lent.id, False), (back.request_id, True), (again.request_id, True)]
    assert ledger[1].station_at == back.at.astimezone(dt.timezone.utc).replace(tzinfo=ledger[1].station_at.tzinfo)
    replayed = [r for r in wire.sent if r.offline]
    assert [r.id for r in replayed] == [back.request_id, again.request_id]
    assert [r.at for r in replayed] == [back.at, again.at]
    # Replaying again changes nothing: the server answers an id once.
    forward.outbox.add(replayed[0].model_copy(update={"id": replayed[0].id}))  # already there: ignored
    assert _drain(forward) == 0
    assert len(_ledger(library)) == 3


def test_a_timed_out_request_is_queued_with_its_id_and_applied_once(tmp_path: Path,
                                                                   library: Library) -> None:
    forward, wire, clock = _forward(tmp_path, library, mode="returns_and_checkouts")
    forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0001"))
    wire.lose_replies = True  # the server lends, the reply is lost on the way back
    answer = forward.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00001"))
    assert isinstance(answer, AcceptedOffline)
    assert wire.sent[-1].id == answer.request_id  # the live try
    assert forward.outbox.is_pending(answer.request_id)
    # The server is suspect a while: the next request is recorded offline at once.
    sent = len(wire.sent)
    assert isinstance(forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00003")), AcceptedOffline)
    assert len(wire.sent) == sent

    wire.lose_replies = False
    clock.now += 60
    assert _drain(forward) == 2
    entries = [e for e in _ledger(library) if e.request_id == answer.request_id]
    assert len(entries) == 1 and not entries[0].offline  # applied by the first, live try
    assert forward.outbox.summary(answer.request_id)["ok"] is True  # type: ignore[index]


def test_a_late_refusal_leaves_its_queued_request_for_the_replay(tmp_path: Path,
                                                                  library: Library) -> None:
    # The reader was told "recorded offline": a refusal that comes late must not close the
    # request quietly. Replayed offline, the server tells the librarian (an alert).
    forward, wire, _ = _forward(tmp_path, library)
    wire.lose_replies = True
    answer = forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))  # not on loan: refused
    assert isinstance(answer, AcceptedOffline) and len(forward.outbox) == 1
    wire.deliver_late()
    assert len(forward.outbox) == 1
    wire.lose_replies = False
    assert forward.replay_once() is True
    assert len(forward.outbox) == 0
    assert forward.outbox.summary(answer.request_id) == {
        "ok": False, "code": "item_not_on_loan", "message": library.refusal(
            Op.LOAN_RETURN, ReturnArgs(item="TN00001"))}


def test_a_late_success_before_its_request_is_queued_is_kept_for_it(tmp_path: Path,
                                                                   library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library)
    request = Request(id="early-bird", op=Op.LOAN_RETURN, at=START, args=ReturnArgs(item="TN00001"))
    reply = Reply.success("early-bird", ReturnResult(item="TN.00001", title="Dế Mèn phiêu lưu ký",
                                                     was_overdue=False, days_late=0))
    assert wire.on_late_reply is not None
    wire.on_late_reply(reply)  # arrives between the timeout and the queueing
    forward._accept_offline(request, "timed out")
    assert len(forward.outbox) == 0
    assert forward.outbox.summary("early-bird")["ok"] is True
    # A refusal arriving so early is not kept: the request is queued and replayed.
    refusal = Reply.failure("late-no", ErrorCode.ITEM_NOT_ON_LOAN, "no")
    wire.on_late_reply(refusal)
    forward._accept_offline(Request(id="late-no", op=Op.LOAN_RETURN, at=START,
                                    args=ReturnArgs(item="TN00002")), "timed out")
    assert len(forward.outbox) == 1


def test_a_new_write_queues_behind_an_undrained_outbox(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="returns")
    wire.connected.clear()
    forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    wire.connected.set()  # back, but the replay has not run (drain_wait_s = 0)
    answer = forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00002"))
    assert isinstance(answer, AcceptedOffline)
    assert [q.request.args.item for q in forward.outbox.pending()] == ["TN00001", "TN00002"]  # type: ignore[union-attr]
    assert wire.sent == []


def test_the_replay_thread_drains_when_the_link_returns(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library)
    wire.connected.clear()
    for n in (1, 2, 3):
        forward.request(Op.LOAN_RETURN, ReturnArgs(item=f"TN0000{n}"))
    forward.start()
    try:
        assert not forward.wait_drained(0.3)  # still down
        wire.connected.set()
        assert forward.wait_drained(10)
    finally:
        forward.stop()
    assert len(forward.outbox) == 0 and forward.replayed == 3
    assert wire.statuses >= 2  # the outbox's size went out with the status


def test_server_errors_are_retried_and_hold_the_queue(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library)
    wire.connected.clear()
    forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    wire.connected.set()
    real_send = wire.send
    wire.send = lambda request, timeout=None: Reply.failure(request.id, ErrorCode.INTERNAL, "db")  # type: ignore[method-assign]
    assert forward.replay_once() is False
    assert len(forward.outbox) == 1
    wire.send = real_send  # type: ignore[method-assign]
    assert forward.replay_once() is True


def test_backoff_doubles_to_its_ceiling_with_jitter(tmp_path: Path, library: Library) -> None:
    forward, _, _ = _forward(tmp_path, library, retry_max_s=8)
    forward._rng = lambda low, high: high
    assert [forward.backoff(n) for n in (1, 2, 3, 4, 5, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    forward._rng = lambda low, high: low
    assert [forward.backoff(n) for n in (1, 5)] == [0.25, 4.0]


# --- the replay window ------------------------------------------------------------------

class Pipe(Wire):
    """A network with latency: `send(timeout=0)` only publishes, as MqttLink's does, and
    a server thread answers in arrival order through `on_late_reply`. It holds the first
    requests until `hold` are queued, so the window's fill is seen whole; `lose` names
    ids whose reply is lost once (applied, answer dropped), `fail` ids answered
    `internal` once (not applied)."""

    def __init__(self, library: Library, hold: int = 1) -> None:
        super().__init__(library)
        self.queue: list[Request] = []
        self.cond = threading.Condition()
        self.hold = hold
        self.in_flight = 0
        self.most_in_flight = 0
        self.lose: set[str] = set()
        self.fail: set[str] = set()
        self.closed = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def send(self, request: Request, *, timeout: float | None = None) -> Reply:
        assert timeout == 0, "a replay publishes and does not wait"
        if not self.connected.is_set():
            raise BackendUnavailable("not connected to the broker")
        with self.cond:
            self.sent.append(request)
            self.queue.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.cond.notify_all()
        raise BackendUnavailable(f"no reply to {request.op.value} within the timeout")

    def _serve(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.closed or len(self.queue) >= self.hold, timeout=1)
                if self.closed:
                    return
                if not self.queue:
                    continue
                self.hold = 1
                request = self.queue.pop(0)
            if request.id in self.fail:
                self.fail.discard(request.id)
                reply = Reply.failure(request.id, ErrorCode.INTERNAL, "database is locked")
            else:
                reply, _entries = self.library.circulation.handle(request, station=self.station)
            with self.cond:
                self.in_flight -= 1
            if request.id in self.lose:
                self.lose.discard(request.id)
                continue
            assert self.on_late_reply is not None
            self.on_late_reply(reply)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join(5)


def _piped(tmp_path: Path, library: Library, window: int, hold: int) -> tuple[StoreAndForward, Pipe]:
    pipe = Pipe(library, hold=hold)
    config = OfflineConfig(drain_wait_s=0, replay_timeout_s=0.5)
    forward = StoreAndForward(pipe, Outbox(tmp_path / "outbox.db"), config,
                              rng=lambda low, high: high, replay_window=window)
    return forward, pipe


def _queue_dependent(forward: StoreAndForward, rounds: int) -> list[Request]:
    """Checkout then return of the same copy, by two readers in turn: any reordering
    gives `item_not_on_loan` or `item_on_loan` instead of ok."""
    queued = []
    at = START - dt.timedelta(hours=3)
    for n in range(rounds):
        patron = ("HS-2024-0001", "HS-2024-0002")[n % 2]
        for op, args in ((Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item="TN00001")),
                         (Op.LOAN_RETURN, ReturnArgs(item="TN00001"))):
            at += dt.timedelta(minutes=1)
            request = Request(id=f"dep-{len(queued):03d}", op=op, at=at, args=args,  # type: ignore[arg-type]
                              offline=True)
            assert forward.outbox.add(request)
            queued.append(request)
    return queued


def _applied(library: Library) -> list[str]:
    return [e.request_id for e in _ledger(library)]


def test_the_replay_keeps_a_bounded_window_in_flight_and_the_order(tmp_path: Path,
                                                                   library: Library) -> None:
    forward, pipe = _piped(tmp_path, library, window=8, hold=8)
    try:
        queued = _queue_dependent(forward, rounds=15)
        assert forward.replay_once() is True
    finally:
        pipe.close()
    assert pipe.most_in_flight == 8  # filled, never over
    assert [r.id for r in pipe.sent] == [r.id for r in queued]  # each once, in order
    assert _applied(library) == [r.id for r in queued]
    assert len(forward.outbox) == 0 and forward.replayed == 30
    assert all(forward.outbox.summary(r.id)["ok"] for r in queued)  # type: ignore[index]
    assert library.loan_count() == 0


def test_a_lost_reply_stops_the_pass_and_the_next_resumes_at_it(tmp_path: Path,
                                                                library: Library) -> None:
    forward, pipe = _piped(tmp_path, library, window=6, hold=6)
    try:
        queued = _queue_dependent(forward, rounds=6)
        pipe.lose.add(queued[4].id)  # applied by the server, its answer lost
        assert forward.replay_once() is False  # waited replay_timeout_s for it
        # The requests before it are done; it and those after wait, in order.
        assert [q.request.id for q in forward.outbox.pending()] == [r.id for r in queued[4:]]
        assert forward.replay_once() is True
    finally:
        pipe.close()
    ids = [r.id for r in queued]
    # The first pass stalled with its window full (4..9); the second began at the lost one.
    assert [r.id for r in pipe.sent] == ids[:10] + ids[4:]
    # The second try of each id was answered from the server's record: applied once, in order.
    assert _applied(library) == [r.id for r in queued]
    assert len(forward.outbox) == 0
    assert all(forward.outbox.summary(r.id)["ok"] for r in queued)  # type: ignore[index]


def test_a_server_error_in_the_window_is_retried(tmp_path: Path, library: Library) -> None:
    forward, pipe = _piped(tmp_path, library, window=4, hold=4)
    items = ["TN00001", "TN00002", "TN00003", "TK00001", "GK00001"]
    try:
        requests = [Request(id=f"ret-{n}", op=Op.LOAN_RETURN, at=START, args=ReturnArgs(item=item),
                            offline=True) for n, item in enumerate(items)]
        for request in requests:
            forward.outbox.add(request)
        pipe.fail.add("ret-1")
        assert forward.replay_once() is False
        assert forward.outbox.is_pending("ret-1") and not forward.outbox.is_pending("ret-0")
        assert forward.replay_once() is True
    finally:
        pipe.close()
    assert len(forward.outbox) == 0
    assert forward.outbox.summary("ret-1") == {
        "ok": False, "code": "item_not_on_loan",
        "message": library.refusal(Op.LOAN_RETURN, ReturnArgs(item="TN00002"))}


def test_a_dropped_link_stops_the_pass_without_losing_anything(tmp_path: Path,
                                                               library: Library) -> None:
    forward, pipe = _piped(tmp_path, library, window=4, hold=10**6)  # the server never answers
    try:
        queued = _queue_dependent(forward, rounds=4)
        stopper = threading.Timer(0.1, pipe.connected.clear)
        stopper.start()
        assert forward.replay_once() is False  # stopped by the link, well before the timeout
        assert len(pipe.sent) == 4 and len(forward.outbox) == 8
        pipe.connected.set()
        with pipe.cond:
            pipe.hold = 1  # the server answers again
            pipe.cond.notify_all()
        while (result := forward.replay_once()) is not True:
            assert result is False
    finally:
        pipe.close()
    assert _applied(library) == [r.id for r in queued]
    assert len(forward.outbox) == 0


def test_a_windowed_replay_through_mosquitto_keeps_dependent_requests_in_order(
        tmp_path: Path, library: Library, mosquitto: MosquittoBroker, site: str) -> None:
    """The proof the window rests on: through a real broker, the real server applies a
    station's replayed requests in the order it sent them, even with many in flight."""
    from kiosk.link import MqttLink
    from protocol.configfile import MqttConfig
    from server import stations as registry
    from server.app import start_server
    from server.config import DatabaseConfig

    url = str(library.engine.url)
    # The rules the library fixture's circulation runs, served over the broker.
    config = library.circulation.config.model_copy(update={
        "site": site, "database": DatabaseConfig(url=url),
        "mqtt": MqttConfig(host="127.0.0.1", port=mosquitto.port)})
    server = start_server(config, clock=library.clock)
    link = MqttLink(site, "kiosk-w", "kiosk", MqttConfig(host="127.0.0.1", port=mosquitto.port))
    forward = None
    try:
        assert server.service.connected.wait(10)
        registry.register(server.engine, "kiosk-w", "kiosk")
        server.service.stations.invalidate()
        assert link.start(wait=10)
        forward = StoreAndForward(link, Outbox(tmp_path / "outbox.db"),
                                  OfflineConfig(drain_wait_s=0), replay_window=16)
        replies: list[Reply] = []
        handed = link.on_late_reply
        assert handed is not None

        def watch(reply: Reply) -> None:
            replies.append(reply)
            handed(reply)

        link.on_late_reply = watch
        queued = _queue_dependent(forward, rounds=100)
        started = len(replies)
        forward.start()
        assert forward.wait_drained(60), f"{len(forward.outbox)} requests left"
    finally:
        if forward is not None:
            forward.close()
        link.stop()
        server.stop()
    ids = [r.id for r in queued]
    assert [r.id for r in replies[started:]] == ids  # answered in order, each once
    assert all(r.ok for r in replies), [r.error for r in replies if not r.ok][:3]
    assert _applied(library) == ids
    assert library.loan_count() == 0


# --- the card cache -------------------------------------------------------------------

def _identify_result() -> IdentifyResult:
    return IdentifyResult(patron=PatronInfo(id="HS-2024-0001", name="Nguyễn Văn An", kind="student",
                                            class_="5A"),
                          loans=[], can_borrow=2, blocks=[])


def test_the_card_cache_holds_no_name_class_or_card(tmp_path: Path) -> None:
    cache = CardCache(tmp_path / "cards.db")
    cache.remember("04A1B2C3", _identify_result())
    cache.close()
    dump = "\n".join(sqlite3.connect(tmp_path / "cards.db").iterdump())
    raw = (tmp_path / "cards.db").read_bytes() + (tmp_path / "cards.db-wal").read_bytes() \
        if (tmp_path / "cards.db-wal").exists() else (tmp_path / "cards.db").read_bytes()
    for secret in ("Nguyễn", "Văn An", "5A", "04A1B2C3", "04a1b2c3", "HS-2024-0001", "hs-2024-0001"):
        assert secret not in dump
        assert secret.encode() not in raw
    cache = CardCache(tmp_path / "cards.db")
    entry = cache.get("04a1b2c3 ")  # as another reader would read the same card
    assert entry is not None and (entry.kind, entry.can_borrow, entry.blocked) == ("student", 2, False)
    assert cache.get("HS-2024-0001") == entry  # the reader's id finds them too


def test_the_salt_is_per_station(tmp_path: Path) -> None:
    one, two = CardCache(tmp_path / "a.db"), CardCache(tmp_path / "b.db")
    assert one.key("HS-2024-0001") != two.key("HS-2024-0001")


def test_cards_expire_and_the_oldest_go_first(tmp_path: Path) -> None:
    now = [1_000_000.0]
    cache = CardCache(tmp_path / "cards.db", max_entries=2, max_age_s=86400, clock=lambda: now[0])
    result = _identify_result()
    cache.remember("card-1", result)
    assert cache.get("card-1") is not None
    now[0] += 86401
    assert cache.get("card-1") is None  # too old to trust
    for n in (2, 3, 4):
        now[0] += 1
        other = result.model_copy(update={"patron": result.patron.model_copy(update={"id": f"R{n}"})})
        cache.remember(f"card-{n}", other)
    assert len(cache) == 2  # the reader ids and cards of the newest
    assert cache.get("card-4") is not None and cache.get("card-2") is None


def test_a_live_checkout_lowers_what_the_cache_lets_borrow(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library, mode="returns_and_checkouts")
    forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0001"))
    forward.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00001"))
    wire.connected.clear()
    cached = forward.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0001"))
    assert isinstance(cached, CachedPatron) and cached.can_borrow == 2


def test_the_default_paths_follow_the_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    config = StationConfig(site="s", station="kiosk-9")
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert state_paths(config) == (Path("/var/lib/thuvien/kiosk-9/outbox.db"),
                                   Path("/var/lib/thuvien/kiosk-9/cards.db"))
    monkeypatch.setenv("STATE_DIRECTORY", "/srv/state")
    assert state_paths(config)[0] == Path("/srv/state/kiosk-9/outbox.db")
    custom = StationConfig(site="s", station="kiosk-9", offline={"outbox_path": "/tmp/x/o.db"})
    assert state_paths(custom) == (Path("/tmp/x/o.db"), Path("/tmp/x/cards.db"))
    with pytest.raises(ValueError):
        StationConfig(site="s", station="k", offline={"mode": "everything"})


# --- what readers see and hear ----------------------------------------------------------

def test_offline_outcomes_render_in_both_languages(tmp_path: Path, library: Library) -> None:
    from kiosk.headless import render

    hello = PatronIdentified(name="", kind="student", class_name=None, loans=(), can_borrow=2,
                             blocks=(), offline=True)
    borrowed = ItemBorrowed("TN00002", "TN00002", None, 1, code="TN00002", offline=True)
    returned = ItemReturned("TN00001", "TN00001", False, 0, 1, code="TN00001", offline=True)
    ended = SessionEnded(reason="done", mode="borrow", offline_borrowed=("TN00002",))
    assert "ngoại tuyến" in render(hello, "vi") and "2" in render(hello, "vi")
    assert render(borrowed, "en") == ("✔ Recorded offline: TN00002. The library will confirm it "
                                      "and set the due date.")
    assert "TN00002" in render(borrowed, "vi") and "thư viện sẽ xác nhận" in render(borrowed, "vi").lower()
    assert render(returned, "en").startswith("✔ Return recorded offline: TN00001.")
    summary = render(ended, "en")
    assert "Borrowed this time: 1" in summary and "TN00002 - recorded offline" in summary
    assert "1 book recorded offline" in summary
    assert "still return books" in render(ServerUnreachable(Op.PATRON_IDENTIFY, can_return=True), "en")


def test_the_status_reports_the_outbox(tmp_path: Path, library: Library) -> None:
    forward, wire, _ = _forward(tmp_path, library)
    assert wire.outbox_size is not None and wire.outbox_size() == 0
    wire.connected.clear()
    forward.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    assert wire.outbox_size() == 1 and wire.statuses == 1


def test_the_return_box_returns_into_the_outbox_offline(tmp_path: Path, library: Library) -> None:
    from kiosk.config import ReturnboxConfig, RfidConfig
    from kiosk.returnbox import OFFLINE, ReturnBox

    class Events:
        def __init__(self, wire: Wire) -> None:
            self.wire = wire
            self.sent: list[tuple[str, BaseModel]] = []

        def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
            return self.wire.request(op, args, timeout=timeout)

        def publish_event(self, type_: str, data: BaseModel) -> bool:
            self.sent.append((type_, data))
            return True

    forward, wire, _ = _forward(tmp_path, library, mode="returns")
    events = Events(wire)
    box = ReturnBox(events, rfid=RfidConfig(), config=ReturnboxConfig(), backend=forward)
    wire.connected.clear()
    outcome = box.return_code("TN00001")
    assert outcome is not None and outcome.returned and outcome.offline
    assert events.sent == []  # nothing is reported unreturned
    assert len(forward.outbox) == 1

    refusing, refusing_wire, _ = _forward(tmp_path / "none", library, mode="none")
    events = Events(refusing_wire)
    box = ReturnBox(events, rfid=RfidConfig(), config=ReturnboxConfig(), backend=refusing)
    refusing_wire.connected.clear()
    outcome = box.return_code("TN00002")
    assert outcome is not None and not outcome.returned and outcome.code == OFFLINE
    assert [type_ for type_, _ in events.sent] == ["returnbox.unreturned"]
