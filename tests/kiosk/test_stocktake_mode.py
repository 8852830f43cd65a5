"""Stocktake (kiểm kê) at a station: `stocktake.scan` as the server answers it, and the
session's stocktake mode driven through it, against the real library of conftest.py.

Requests go through `LibraryService.answer`, the server's own dispatch (only MQTT is
left out); the counting is server/stocktake.py's, on the SQLite file.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update

from conftest import START, Library, MonotonicClock, library_config
from drivers.base import StdinScanner
from kiosk.backend import BackendUnavailable
from kiosk.cardcache import CardCache
from kiosk.config import OfflineConfig, SessionConfig, StationConfig, StocktakeConfig
from kiosk.headless import run_headless
from kiosk.offline import StoreAndForward
from kiosk.outbox import Outbox
from kiosk.session import (
    NOT_STAFF,
    UNSUPPORTED,
    Ignored,
    NeedCard,
    Outcome,
    PatronIdentified,
    ReturnModeStarted,
    Session,
    SessionEnded,
    ShelfChosen,
    State,
    StocktakeCounted,
    StocktakeEnded,
    StocktakeRefused,
    StocktakeStarted,
    StocktakeUnreachable,
)
from protocol import (
    MAX_PAYLOAD_BYTES,
    CheckoutArgs,
    ErrorCode,
    Op,
    ProtocolError,
    Reply,
    Request,
    ShelfProgress,
    StocktakeLine,
    StocktakeScanArgs,
    StocktakeScanResult,
    encode,
    parse_request,
)
from server import db, stocktake
from server import stations as registry
from server.models import Copy, CopyStatus, ProcessedRequest, Reader, StocktakeScan, Title
from server.service import LibraryService

STAFF = "CB-0001"  # Đỗ Thị Lan, the librarian
STUDENT = "HS-2024-0001"
DE_MEN = "Dế Mèn phiêu lưu ký"
DICTIONARY = "Từ điển Tiếng Việt"


# --- the library behind the station -----------------------------------------------------

@dataclass
class Desk:
    """The server's dispatch without MQTT: a Request in, the committed Reply out."""

    library: Library
    service: LibraryService
    station: str = "kiosk-1"
    down: bool = False  # the broker is gone: nothing reaches the library
    sent: list[Request] = field(default_factory=list)

    def send(self, request: Request, *, timeout: float | None = None) -> Reply:
        if self.down:
            raise BackendUnavailable(f"no reply to {request.op.value} within the timeout")
        self.sent.append(request)
        return self.service.answer(request, self.station).reply

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        return self.send(Request(id=str(uuid.uuid4()), op=op, at=self.library.clock(),
                                 args=args))  # type: ignore[arg-type]

    def scan(self, *items: str, shelf: str | None = None, request_id: str | None = None,
             station: str | None = None) -> Reply:
        request = Request(id=request_id or str(uuid.uuid4()), op=Op.STOCKTAKE_SCAN,
                          at=self.library.clock(), args=StocktakeScanArgs(items=list(items), shelf=shelf))
        return self.service.answer(request, station or self.station).reply

    def stops(self) -> list[Op]:
        return [request.op for request in self.sent]


@pytest.fixture
def shelves(library: Library) -> Library:
    """Shelves in the catalogue (the novels on Kệ 1, the rest on Kệ 2) and a librarian."""
    with db.session_factory(library.engine).begin() as session:
        session.execute(update(Copy).where(Copy.kind == "TN").values(location="Kệ 1"))
        session.execute(update(Copy).where(Copy.kind != "TN").values(location="Kệ 2"))
        session.add(Reader(code=STAFF, name="Đỗ Thị Lan", kind="staff",
                           created_at=START.astimezone(dt.timezone.utc)))
    return library


@pytest.fixture
def desk(shelves: Library) -> Desk:
    return Desk(shelves, LibraryService(library_config(), shelves.circulation))


@pytest.fixture
def sessions(library: Library):  # type: ignore[no-untyped-def]
    return db.session_factory(library.engine)


@pytest.fixture
def open_stocktake(sessions, library: Library) -> int:  # type: ignore[no-untyped-def]
    return stocktake.start(sessions, "Kiểm kê năm học 2026-2027", by=STAFF, now=library.clock()).id


def scans(library: Library) -> list[tuple[str, str | None, str | None]]:
    """(accession number, shelf, station) of every copy the stocktakes counted."""
    with db.session_factory(library.engine)() as session:
        rows = session.execute(select(Copy.accession_number, StocktakeScan.shelf, StocktakeScan.station)
                               .join(Copy, Copy.id == StocktakeScan.copy_id)
                               .order_by(Copy.accession_number)).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def processed(library: Library, request_id: str) -> ProcessedRequest | None:
    with db.session_factory(library.engine)() as session:
        return session.get(ProcessedRequest, request_id)


# --- the protocol -----------------------------------------------------------------------

def test_the_op_takes_1_to_200_codes_and_an_optional_shelf() -> None:
    def payload(args: dict[str, Any]) -> bytes:
        return json.dumps({"v": 1, "id": "st-1", "op": "stocktake.scan",
                           "at": "2026-09-12T09:00:00+07:00", "args": args}).encode()

    request = parse_request(payload({"items": [" TN00001 ", "TK00001"], "shelf": "  Kệ 1 "}))
    assert request.args == StocktakeScanArgs(items=["TN00001", "TK00001"], shelf="Kệ 1")
    assert parse_request(payload({"items": ["x"] * 200})).args.shelf is None  # type: ignore[union-attr]
    for bad in ({"items": []}, {"items": ["x"] * 201}, {"items": ["TN00001"], "shelf": ""},
                {"items": ["TN00001"], "shelf": "x" * 101}, {"item": "TN00001"},
                {"items": ["TN00001"], "force": True}, {"items": "TN00001"}):
        with pytest.raises(ProtocolError) as caught:
            parse_request(payload(bad))
        assert caught.value.request_id == "st-1", bad  # answered with bad_request


# --- the server's answer ----------------------------------------------------------------

def test_each_code_is_answered_with_what_it_was_and_the_shelf_progress(
        desk: Desk, library: Library, open_stocktake: int, sessions) -> None:  # type: ignore[no-untyped-def]
    assert desk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=STUDENT, item="TN00002")).ok
    with sessions.begin() as session:  # weeded, yet still on the shelf
        session.execute(update(Copy).where(Copy.barcode == "TN00003")
                        .values(status=CopyStatus.WITHDRAWN))

    reply = desk.scan("TN00001", "tn.00002", "TN00003", "TK00001", "XYZ-999", "TN00001", shelf="Kệ 1")
    assert reply.ok, reply
    result = reply.result_as(StocktakeScanResult)
    assert (result.stocktake, result.name) == (1, "Kiểm kê năm học 2026-2027")
    assert result.items == [
        StocktakeLine(code="TN00001", outcome="counted", item="TN.00001", title=DE_MEN, location="Kệ 1"),
        StocktakeLine(code="tn.00002", outcome="counted", flags=["on_loan"], item="TN.00002",
                      title=DE_MEN, location="Kệ 1"),
        StocktakeLine(code="TN00003", outcome="counted", flags=["withdrawn"], item="TN.00003",
                      title=DE_MEN, location="Kệ 1"),
        StocktakeLine(code="TK00001", outcome="counted", flags=["misplaced"], item="TK.00001",
                      title=DICTIONARY, location="Kệ 2"),
        StocktakeLine(code="XYZ-999", outcome="unknown"),
        StocktakeLine(code="TN00001", outcome="already_counted", item="TN.00001", title=DE_MEN,
                      location="Kệ 1"),
    ]
    assert result.counted == 4
    # Three novels not withdrawn belong on Kệ 1; two of them are seen (the withdrawn one
    # is no longer stock).
    assert result.shelf == ShelfProgress(shelf="Kệ 1", expected=2, seen=2)
    assert scans(library) == [("TK.00001", "Kệ 1", "kiosk-1"), ("TN.00001", "Kệ 1", "kiosk-1"),
                              ("TN.00002", "Kệ 1", "kiosk-1"), ("TN.00003", "Kệ 1", "kiosk-1")]

    # Another station, another shelf: the totals are the stocktake's, not the station's.
    other = desk.scan("GK00001", shelf="kệ 2", station="desk-1").result_as(StocktakeScanResult)
    assert other.counted == 5 and other.items[0].flags == []
    assert other.shelf == ShelfProgress(shelf="kệ 2", expected=3, seen=2)
    assert desk.scan("TK00002").result_as(StocktakeScanResult).shelf is None


def test_a_request_id_is_counted_once_and_answered_alike(desk: Desk, library: Library,
                                                         open_stocktake: int) -> None:
    first = desk.scan("TN00001", "TN00002", request_id="st-batch-1")
    again = desk.scan("TN00001", "TN00002", "TN00003", request_id="st-batch-1")
    assert again == first
    assert [line.outcome for line in first.result_as(StocktakeScanResult).items] == ["counted"] * 2
    assert len(scans(library)) == 2
    stored = processed(library, "st-batch-1")
    assert stored is not None and (stored.station, stored.op) == ("kiosk-1", "stocktake.scan")
    # The same id from another station is not that station's answer to hear.
    stolen = desk.scan("TN00003", request_id="st-batch-1", station="kiosk-2")
    assert not stolen.ok and stolen.error is not None and stolen.error.code == ErrorCode.BAD_REQUEST
    assert len(scans(library)) == 2


def test_no_open_stocktake_is_a_refusal_in_the_sites_language(desk: Desk, library: Library,
                                                               sessions) -> None:  # type: ignore[no-untyped-def]
    reply = desk.scan("TN00001", request_id="st-none")
    assert not reply.ok and reply.error is not None
    assert reply.error.code == ErrorCode.NO_STOCKTAKE == "no_stocktake"
    assert reply.error.message == ("Chưa có đợt kiểm kê nào đang mở. Hãy mở đợt kiểm kê "
                                   "trên máy chủ thư viện trước.")
    assert processed(library, "st-none") is not None  # a rule's refusal, remembered
    # Closed: refused again, nothing counted.
    number = stocktake.start(sessions, "Kiểm kê giữa năm", by=STAFF).id
    assert desk.scan("TN00001").ok
    stocktake.close(sessions, number, by=STAFF)
    assert desk.scan("TN00002").error.code == ErrorCode.NO_STOCKTAKE  # type: ignore[union-attr]
    assert [item for item, _, _ in scans(library)] == ["TN.00001"]


@pytest.mark.parametrize(("kind", "allowed"), [("kiosk", True), ("desk", True),
                                               ("gate", False), ("returnbox", False)])
def test_kiosks_and_desks_may_count_gates_and_return_boxes_may_not(
        desk: Desk, library: Library, kind: str, allowed: bool) -> None:
    registry.register(library.engine, "station-1", kind)
    request = Request(id="st-who", op=Op.STOCKTAKE_SCAN, at=library.clock(),
                      args=StocktakeScanArgs(items=["TN00001"]))
    refusal = desk.service.authorize("station-1", request)
    if allowed:
        assert refusal is None
    else:
        assert refusal is not None and refusal.error is not None
        assert refusal.error.code == ErrorCode.UNAUTHORIZED
        assert refusal.error.message == (f"Trạm station-1 ({kind}) không được phép thực hiện "
                                         "thao tác stocktake.scan.")


def test_a_batch_whose_titles_do_not_fit_one_payload_goes_without_them(
        desk: Desk, library: Library, open_stocktake: int, sessions) -> None:  # type: ignore[no-untyped-def]
    long_title = "Tuyển tập truyện ngắn Việt Nam thế kỷ hai mươi " * 10  # 480 characters
    with sessions.begin() as session:
        title = Title(title=long_title.strip())
        session.add(title)
        session.flush()
        session.add_all([Copy(title_id=title.id, kind="TN", accession_number=f"TN.{n:05d}",
                              barcode=f"TN{n:05d}", location="Kệ 9") for n in range(100, 300)])
    reply = desk.scan(*(f"TN{n:05d}" for n in range(100, 300)), shelf="Kệ 9")
    assert reply.ok
    assert len(encode(reply)) <= MAX_PAYLOAD_BYTES
    result = reply.result_as(StocktakeScanResult)
    assert [line.title for line in result.items] == [None] * 200
    assert [line.item for line in result.items] == [f"TN.{n:05d}" for n in range(100, 300)]
    assert result.counted == 200 and result.shelf == ShelfProgress(shelf="Kệ 9", expected=200, seen=200)
    # A batch that fits keeps its titles.
    short = desk.scan("TN00001").result_as(StocktakeScanResult)
    assert short.items[0].title == DE_MEN


# --- the session's stocktake mode ---------------------------------------------------------

@dataclass
class Recorder:
    outcomes: list[Outcome] = field(default_factory=list)

    def on_outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def take(self) -> list[Outcome]:
        taken, self.outcomes = self.outcomes, []
        return taken


def station(desk: Any, mono: MonotonicClock, **config: Any) -> tuple[Session, Recorder]:
    recorder = Recorder()
    stock = StocktakeConfig(**{"batch_wait_s": 0.5, **config.pop("stocktake", {})})
    return Session(desk, SessionConfig(**config), recorder, clock=mono, stocktake=stock), recorder


def test_a_librarian_counts_a_shelf_in_batches_and_finishes(desk: Desk, library: Library,
                                                             open_stocktake: int, mono) -> None:  # type: ignore[no-untyped-def]
    session, seen = station(desk, mono)
    session.scan(STAFF)
    [who] = seen.take()
    assert isinstance(who, PatronIdentified) and who.kind == "staff"
    session.start_stocktake()
    assert seen.take() == [StocktakeStarted(fixed=False, recent=())]
    assert session.state is State.STOCKTAKE and session.patron is None

    session.scan("SHELF:Kệ 1")
    assert seen.take() == [ShelfChosen("Kệ 1", ("Kệ 1",))]
    # An RFID pad's inventory: three tags at once, one request.
    for code in ("TN00001", "TN00002", "NOPE-1"):
        session.scan(code)
    assert seen.take() == [] and desk.stops().count(Op.STOCKTAKE_SCAN) == 0
    mono.advance(0.2)
    session.tick()
    assert seen.take() == []  # still gathering
    mono.advance(0.3)
    session.tick()
    [batch] = seen.take()
    assert isinstance(batch, StocktakeCounted)
    assert [(line.code, line.outcome) for line in batch.lines] == [
        ("TN00001", "counted"), ("TN00002", "counted"), ("NOPE-1", "unknown")]
    assert (batch.shelf, batch.stocktake, batch.counted, batch.counted_here) == ("Kệ 1", 1, 2, 2)
    assert batch.progress == ShelfProgress(shelf="Kệ 1", expected=3, seen=2)
    assert desk.stops().count(Op.STOCKTAKE_SCAN) == 1

    # A new shelf label sends what was read on the shelf before, then switches.
    session.scan("TN00003")
    session.scan("shelf:Kệ 2")
    counted, chosen = seen.take()
    assert isinstance(counted, StocktakeCounted) and counted.shelf == "Kệ 1"
    assert counted.lines[0].code == "TN00003" and counted.progress.seen == 3  # type: ignore[union-attr]
    assert chosen == ShelfChosen("Kệ 2", ("Kệ 2", "Kệ 1"))
    session.scan("TK00001")
    session.scan(STUDENT)  # a reader's card while counting: not a book, not a session
    session.done()  # "Kết thúc": what is pending goes first
    ignored, last, ended = seen.take()
    assert ignored == Ignored(STUDENT, "stocktake")
    assert isinstance(last, StocktakeCounted) and last.lines[0].item == "TK.00001"
    assert ended == StocktakeEnded("done", counted_here=4, fixed=False)
    assert session.state is State.IDLE
    assert scans(library) == [("TK.00001", "Kệ 2", "kiosk-1"), ("TN.00001", "Kệ 1", "kiosk-1"),
                              ("TN.00002", "Kệ 1", "kiosk-1"), ("TN.00003", "Kệ 1", "kiosk-1")]
    # Back to lending, the shelves remembered for next time.
    session.scan("TN00001")
    assert seen.take() == [NeedCard("TN00001")]
    assert session.recent_shelves == ("Kệ 2", "Kệ 1")


def test_only_staff_may_start_a_stocktake(desk: Desk, open_stocktake: int, mono) -> None:  # type: ignore[no-untyped-def]
    session, seen = station(desk, mono)
    session.start_stocktake()
    assert seen.take() == [StocktakeRefused((), NOT_STAFF, None)]
    session.scan(STUDENT)
    seen.take()
    session.start_stocktake()
    assert seen.take() == [StocktakeRefused((), NOT_STAFF, None)]
    assert session.state is State.PATRON
    # A staff login checked by the server (the kiosk's staff menu) names its staff member.
    session.start_stocktake(staff="Lan")
    assert seen.take() == [StocktakeStarted(fixed=False, recent=())]
    assert session.patron is None  # the student's session is gone


class NoStocktakeBackend:
    """A library system that cannot count stock (as a SIP2 one): it says so."""

    def __init__(self, desk: Any) -> None:
        self.desk = desk

    def supports(self, op: Op) -> bool:
        return op is not Op.STOCKTAKE_SCAN

    def request(self, op: Op, args: Any, **kwargs: Any) -> Any:
        return self.desk.request(op, args, **kwargs)


def test_a_backend_that_cannot_count_stock_refuses_even_staff(desk: Desk, open_stocktake: int,
                                                              mono) -> None:  # type: ignore[no-untyped-def]
    session, seen = station(NoStocktakeBackend(desk), mono)
    session.scan(STAFF)
    seen.take()
    session.start_stocktake()
    assert seen.take() == [StocktakeRefused((), UNSUPPORTED, None)]
    assert session.state is State.PATRON  # the librarian is still served as a reader


def test_a_session_that_lent_books_ends_with_its_summary_first(desk: Desk, open_stocktake: int,
                                                               mono) -> None:  # type: ignore[no-untyped-def]
    session, seen = station(desk, mono)
    session.scan(STUDENT)
    session.scan("TN00001")
    seen.take()
    session.start_stocktake(staff="Lan")  # the librarian logged in at the staff menu
    ended, started = seen.take()
    assert isinstance(ended, SessionEnded) and ended.borrowed_count == 1
    assert started == StocktakeStarted(fixed=False, recent=())
    # A staff member's own refused try leaves nothing to sum up.
    session.done()
    session.scan(STAFF)
    session.scan("TN00002")  # no loan policy for staff: refused
    seen.take()
    session.start_stocktake()
    assert seen.take() == [StocktakeStarted(fixed=False, recent=())]


def test_batches_are_cut_at_the_configured_size(desk: Desk, open_stocktake: int, mono) -> None:  # type: ignore[no-untyped-def]
    session, seen = station(desk, mono, stocktake={"batch_size": 2})
    session.start_stocktake(staff="Lan")
    seen.take()
    for code in ("TN00001", "TN00002", "TN00003"):
        session.scan(code)
    [first] = seen.take()
    assert isinstance(first, StocktakeCounted) and len(first.lines) == 2
    session.flush()
    [second] = seen.take()
    assert isinstance(second, StocktakeCounted) and second.counted == 3
    assert [r.args.items for r in desk.sent] == [["TN00001", "TN00002"], ["TN00003"]]  # type: ignore[union-attr]


def test_no_stocktake_open_is_said_and_nothing_counted(desk: Desk, library: Library, mono) -> None:  # type: ignore[no-untyped-def]
    session, seen = station(desk, mono, stocktake={"batch_wait_s": 0})
    session.start_stocktake(staff="Lan")
    seen.take()
    session.scan("TN00001")
    [refused] = seen.take()
    assert isinstance(refused, StocktakeRefused)
    assert (refused.items, refused.code) == (("TN00001",), "no_stocktake")
    assert refused.message and refused.message.startswith("Chưa có đợt kiểm kê")
    assert scans(library) == []


class Link(Desk):
    """The MQTT link's surface, as kiosk/offline.py uses it; `down` cuts the broker."""

    def __init__(self, desk: Desk) -> None:
        super().__init__(desk.library, desk.service)
        self.connected, self.server_online = threading.Event(), threading.Event()
        self.connected.set()
        self.server_online.set()
        self.on_late_reply: Any = None
        self.outbox_size: Any = None

    def cut(self, down: bool) -> None:
        self.down = down
        if down:
            self.connected.clear()
        else:
            self.connected.set()

    def publish_status(self) -> None:
        pass


def test_an_unreachable_library_is_said_plainly_and_nothing_is_kept(
        desk: Desk, library: Library, open_stocktake: int, mono, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The store-and-forward backend a kiosk really runs: it keeps offline checkouts and
    # returns for later, never a stocktake scan.
    link = Link(desk)
    outbox = Outbox(tmp_path / "outbox.db")
    forward = StoreAndForward(link, outbox,  # type: ignore[arg-type]
                              OfflineConfig(mode="returns_and_checkouts", drain_wait_s=0),
                              cards=CardCache(tmp_path / "cards.db"), clock=mono)
    session, seen = station(forward, mono, stocktake={"batch_wait_s": 0})
    session.start_stocktake(staff="Lan")
    seen.take()
    link.cut(True)
    session.scan("TN00001")
    session.scan("TN00002")
    assert seen.take() == [StocktakeUnreachable(("TN00001",)), StocktakeUnreachable(("TN00002",))]
    assert len(outbox) == 0 and scans(library) == []
    assert session.state is State.STOCKTAKE  # the librarian scans them again later
    link.cut(False)
    mono.advance(60)  # "scan again later"
    session.scan("TN00001")
    [counted] = seen.take()
    assert isinstance(counted, StocktakeCounted) and counted.lines[0].outcome == "counted"
    assert len(outbox) == 0
    forward.close()


def test_a_kiosk_left_in_stocktake_mode_serves_readers_again(desk: Desk, open_stocktake: int,
                                                             mono) -> None:  # type: ignore[no-untyped-def]
    session, seen = station(desk, mono, stocktake={"idle_timeout_s": 60})
    session.start_stocktake(staff="Lan")
    session.scan("TN00001")
    mono.advance(30)
    session.keep_alive()  # a touch on the screen
    session.tick()
    mono.advance(59)
    session.tick()
    assert session.state is State.STOCKTAKE
    mono.advance(1)
    session.tick()
    outcomes = seen.take()
    assert isinstance(outcomes[-2], StocktakeCounted)
    assert outcomes[-1] == StocktakeEnded("timeout", counted_here=1, fixed=False)
    assert session.state is State.IDLE


def test_a_stocktake_station_counts_and_does_nothing_else(desk: Desk, library: Library,
                                                          open_stocktake: int, mono) -> None:  # type: ignore[no-untyped-def]
    session, seen = station(desk, mono, mode="stocktake", stocktake={"batch_wait_s": 0})
    assert session.stocktake_only
    session.scan("TN00001")  # no one started it: the first read does
    started, counted = seen.take()
    assert started == StocktakeStarted(fixed=True, recent=())
    assert isinstance(counted, StocktakeCounted) and counted.shelf is None
    session.scan(STAFF)
    session.start_return()
    assert seen.take() == [Ignored(STAFF, "stocktake")]
    mono.advance(3600)
    session.tick()
    assert seen.take() == [] and session.state is State.STOCKTAKE  # never times out
    session.done()
    assert seen.take() == [StocktakeEnded("done", counted_here=1, fixed=True),
                           StocktakeStarted(fixed=True, recent=())]
    assert session.state is State.STOCKTAKE
    assert [op for op in desk.stops()] == [Op.STOCKTAKE_SCAN]
    assert not any(isinstance(o, ReturnModeStarted) for o in seen.outcomes)


def test_the_mode_setting_is_validated() -> None:
    assert SessionConfig().mode == "circulation"
    assert StationConfig.model_validate({"site": "thcs-a", "station": "kiosk-1",
                                         "session": {"mode": "stocktake"},
                                         "stocktake": {"batch_size": 200}}).stocktake.batch_size == 200
    for bad in ({"session": {"mode": "inventory"}}, {"stocktake": {"batch_size": 201}},
                {"stocktake": {"shelf_prefix": ""}}, {"stocktake": {"batchsize": 10}}):
        with pytest.raises(ValidationError):
            StationConfig.model_validate({"site": "thcs-a", "station": "kiosk-1", **bad})


def test_stocktake_at_the_terminal(desk: Desk, library: Library, open_stocktake: int) -> None:
    out = io.StringIO()
    config = StationConfig(site="thcs-thu-nghiem", station="kiosk-1",
                           stocktake=StocktakeConfig(batch_wait_s=0))
    run_headless(config, desk, StdinScanner(io.StringIO(
        f"{STAFF}\nkiemke\nSHELF:Kệ 1\nTN00001\nTK00001\nKHONG-CO\nTN00001\nxong\nthoat\n")), out)
    text = out.getvalue()
    for line in ("» Kiểm kê: quét nhãn giá sách hoặc chọn giá, rồi quét từng cuốn sách.",
                 "» Đang kiểm giá Kệ 1. Hãy quét từng cuốn sách.",
                 f"✔ {DE_MEN}: Đã kiểm",
                 f"⚠ {DICTIONARY}: Đã kiểm · Sai vị trí: sách thuộc giá Kệ 2",
                 "✖ KHONG-CO: Không rõ mã",
                 "  Giá Kệ 1: đã thấy 1/3 cuốn",
                 "  Đợt kiểm kê số 1: đã kiểm 2 cuốn",
                 "» Kết thúc kiểm kê ở trạm này: đã kiểm 2 cuốn."):
        assert line in text, (line, text)
    # The second TN00001 came at once: a scanner's echo, not a second copy.
    assert text.count(f"{DE_MEN}: Đã kiểm") == 1 and "Đã kiểm trước đó" not in text
    assert scans(library) == [("TK.00001", "Kệ 1", "kiosk-1"), ("TN.00001", "Kệ 1", "kiosk-1")]
