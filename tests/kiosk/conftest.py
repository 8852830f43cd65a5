"""A real library for the station's tests: the server's circulation rules on a SQLite file.

`LocalBackend` is the Backend a station gets from the MQTT link, minus the network: it
builds the same Request and hands it to `server.circulation.Circulation`. Only the
network edge is ever simulated (`Network.down`), never the library's answers.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, func, select

from kiosk.backend import Backend, BackendUnavailable
from protocol import Op, Reply, Request
from clocks import WallClock
from server import db
from server.circulation import Circulation
from server.config import CalendarConfig, CirculationConfig, LoanPolicy, SchoolYear, ServerConfig
from server.models import Copy, CopyStatus, Loan, Reader, ReaderStatus, Title

VN = dt.timezone(dt.timedelta(hours=7))
# Saturday 12 September 2026, 09:00 in Hà Nội: a 7-day loan is due Saturday 19/09/2026.
START = dt.datetime(2026, 9, 12, 9, 0, tzinfo=VN)


class MonotonicClock:
    """The station's monotonic clock, injected into the session."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LocalBackend:
    """Backend over an in-process Circulation; records what it was asked."""

    def __init__(self, circulation: Circulation, clock: WallClock, station: str = "test-kiosk") -> None:
        self._circulation = circulation
        self._clock = clock
        self._station = station
        self.sent: list[Request] = []

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        request = Request(id=str(uuid.uuid4()), op=op, at=self._clock(), args=args)  # type: ignore[arg-type]
        self.sent.append(request)
        return self._circulation.handle(request, station=self._station)[0]


class Network:
    """The link between station and library; `down` makes it fail as a dead broker does."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.down = False

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        if self.down:
            raise BackendUnavailable(f"no reply to {op.value} within the timeout")
        return self._backend.request(op, args, timeout=timeout)


def library_config() -> ServerConfig:
    return ServerConfig(
        site="thcs-thu-nghiem",
        school_name="Trường THCS Thử nghiệm",
        circulation=CirculationConfig(
            max_loans={"student": 3, "teacher": 10, "staff": 3},
            block_overdue_after_days=0,
            policy=[
                LoanPolicy(reader_kind="student", item_kind="TN", loan_days=7, max_items=2),
                LoanPolicy(reader_kind="student", item_kind="TK", loan_days=3, max_items=1, renewals=0),
                LoanPolicy(reader_kind="student", item_kind="GK", max_items=10, renewals=0, long_loan=True),
                LoanPolicy(reader_kind="teacher", item_kind="TN", loan_days=14, max_items=5),
            ],
        ),
        calendar=CalendarConfig(
            closed_weekdays=["sunday"],
            school_year=SchoolYear(start=dt.date(2026, 9, 5), end=dt.date(2027, 5, 31)),
        ),
    )


def fill(engine: Engine) -> None:
    created = START.astimezone(dt.timezone.utc)
    with db.session_factory(engine).begin() as session:
        session.add_all([
            Reader(code="HS-2024-0001", moet_id="7901234561", name="Nguyễn Văn An",
                   kind="student", class_name="5A", grade=5, created_at=created),
            Reader(code="HS-2024-0002", name="Trần Thị Bình", kind="student", class_name="5A",
                   grade=5, created_at=created),
            Reader(code="HS-2024-0003", name="Lê Minh Châu", kind="student", class_name="4B", grade=4,
                   status=ReaderStatus.BLOCKED, block_reason="Làm mất sách chưa bồi thường",
                   created_at=created),
            Reader(code="GV-0001", name="Phạm Thu Hà", kind="teacher", created_at=created),
        ])
        de_men = Title(title="Dế Mèn phiêu lưu ký", author="Tô Hoài", publisher="NXB Kim Đồng")
        dictionary = Title(title="Từ điển Tiếng Việt", author="Hoàng Phê")
        textbook = Title(title="Tiếng Việt 5 – Tập một", author="Nhiều tác giả")
        session.add_all([de_men, dictionary, textbook])
        session.flush()
        copies = [(de_men, "TN", 1), (de_men, "TN", 2), (de_men, "TN", 3),
                  (dictionary, "TK", 1), (textbook, "GK", 1)]
        for title, kind, number in copies:
            session.add(Copy(title_id=title.id, kind=kind, accession_number=f"{kind}.{number:05d}",
                             barcode=f"{kind}{number:05d}"))
        # Read in the library only: refused at checkout by the rules, not by us.
        session.add(Copy(title_id=dictionary.id, kind="TK", accession_number="TK.00003",
                         barcode="TK00003", status=CopyStatus.REFERENCE))


@dataclass
class Library:
    engine: Engine
    clock: WallClock
    circulation: Circulation
    backend: LocalBackend

    def loans_of(self, reader_code: str) -> list[str]:
        """Accession numbers on loan to a reader, read from the database itself."""
        with db.session_factory(self.engine)() as session:
            rows = session.execute(
                select(Copy.accession_number).join(Loan, Loan.copy_id == Copy.id)
                .join(Reader, Reader.id == Loan.reader_id).where(Reader.code == reader_code)
                .order_by(Copy.accession_number)).scalars()
            return list(rows)

    def refusal(self, op: Op, args: BaseModel) -> str:
        """The library's own sentence for a refusal, so tests need not copy its wording."""
        reply = self.backend.request(op, args)
        assert not reply.ok and reply.error is not None, reply
        return reply.error.message

    def loan_count(self) -> int:
        with db.session_factory(self.engine)() as session:
            return session.scalar(select(func.count()).select_from(Loan)) or 0


@pytest.fixture
def library(tmp_path: Path) -> Iterator[Library]:
    url = f"sqlite:///{tmp_path / 'library.db'}"
    db.upgrade(url)
    engine = db.make_engine(url, sqlite_synchronous="NORMAL")
    fill(engine)
    clock = WallClock(START)
    circulation = Circulation(db.session_factory(engine), library_config(), clock=clock)
    yield Library(engine=engine, clock=clock, circulation=circulation,
                  backend=LocalBackend(circulation, clock))
    engine.dispose()


@pytest.fixture
def backend(library: Library) -> LocalBackend:
    return library.backend


@pytest.fixture
def network(backend: LocalBackend) -> Network:
    return Network(backend)


@pytest.fixture
def mono() -> MonotonicClock:
    return MonotonicClock()
