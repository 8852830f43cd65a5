"""The station's SIP2 backend against our own SIP2 server on a real library, and against
a tiny scripted peer for what a well-behaved server never does (silence, a garbled
checksum, another system's date format, "offline")."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.backend import BackendUnavailable, supports
from kiosk.config import BackendConfig, StationConfig
from kiosk.messages import text
from kiosk.sip2_backend import Sip2Backend
from protocol import (
    CheckoutArgs,
    CheckoutResult,
    ErrorCode,
    GateSyncArgs,
    IdentifyArgs,
    IdentifyResult,
    ItemInfoArgs,
    ItemInfoResult,
    Op,
    RenewArgs,
    RenewResult,
    ReturnArgs,
    ReturnResult,
    StocktakeScanArgs,
    sip2,
)
from protocol.configfile import ConfigError, load_toml
from server import stations
from server.sip2 import Sip2Config, Sip2Server
from server.sip2.config import set_password

STATION, PASSWORD = "kiosk-sip2", "mat-khau-kiosk"


def no_wait(low: float, high: float) -> float:
    return low  # the backoff's random half: none, so reconnections come quickly


# --- the backend setting ---------------------------------------------------------------

BASE = 'site = "thcs-nhut-tao"\nstation = "kiosk-1"\n'


def station(text_: str) -> StationConfig:
    return load_toml(BASE + text_, "station.toml", StationConfig)


def test_the_backend_is_mqtt_unless_the_file_says_sip2() -> None:
    assert station("").backend.kind == "mqtt"
    short = station('backend = "sip2://koha.example.edu.vn:6001"\n').backend
    assert (short.kind, short.host, short.port, short.terminator, short.encoding) == (
        "sip2", "koha.example.edu.vn", 6001, "\r", "utf-8")
    table = station('[backend]\nurl = "sip2://10.0.0.5:6443"\ntls = true\nencoding = "CP850"\n'
                    'terminator = "CRLF"\nusername = "kiosk-1"\npassword_env = "SIP2_PASSWORD"\n'
                    'institution = "thcs"\nlocation = "Thư viện"\n').backend
    assert (table.tls, table.encoding, table.terminator, table.username, table.location) == (
        True, "cp850", "\r\n", "kiosk-1", "Thư viện")


@pytest.mark.parametrize(("body", "where"), [
    ('backend = "sip2://koha.example.edu.vn"\n', "station.toml:3: backend.url"),
    ('backend = "http://koha:6001"\n', "station.toml:3: backend.url"),
    ('[backend]\nurl = "sip2://a:1"\nencoding = "klingon"\n', "station.toml:5: backend.encoding"),
    ('[backend]\nurl = "sip2://a:1"\nterminator = "LF"\n', "station.toml:5: backend.terminator"),
    ('[backend]\nurl = "sip2://a:1"\nstaff_pattern = "(["\n', "station.toml:5: backend.staff_pattern"),
    ('[backend]\ntls = true\n', "station.toml:3: backend"),
    ('[backend]\nurl = "sip2://a:1"\nport = 6001\n', "station.toml:5: backend.port"),
])
def test_a_bad_backend_names_the_line_and_the_field(body: str, where: str) -> None:
    with pytest.raises(ConfigError) as error:
        station(body)
    assert str(error.value).startswith(where), str(error.value)


def test_the_password_comes_from_the_environment_or_a_credential_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP2_PW", "tu-moi-truong")
    assert BackendConfig(url="sip2://a:1", username="k", password_env="SIP2_PW").password() == "tu-moi-truong"
    secret = tmp_path / "sip2-password"
    secret.write_text("tu-tep\n", encoding="utf-8")
    assert BackendConfig(url="sip2://a:1", password_file=str(secret)).password() == "tu-tep"
    with pytest.raises(ValueError):
        BackendConfig(url="sip2://a:1", password_env="A", password_file=str(secret))


# --- against our own SIP2 server -------------------------------------------------------

@pytest.fixture
def sip2_server(library: Any, tmp_path: Path) -> Iterator[Sip2Server]:
    """Our SIP2 server on the station tests' library, with an account for the kiosk."""
    stations.register(library.engine, STATION, "kiosk")
    accounts = tmp_path / "sip2-accounts"
    set_password(accounts, STATION, PASSWORD)
    server = Sip2Server(Sip2Config(enabled=True, host="127.0.0.1", port=0, accounts_file=str(accounts)),
                        library.circulation, site="thcs-thu-nghiem", library_name="Thư viện")
    server.start()
    yield server
    server.stop()


Connect = Callable[..., Sip2Backend]


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connect]:
    monkeypatch.setenv("KIOSK_SIP2_PASSWORD", PASSWORD)
    started: list[Sip2Backend] = []

    def make(port: int, *, wait: float = 5.0, timeout: float = 5.0, **options: Any) -> Sip2Backend:
        values: dict[str, Any] = {"url": f"sip2://127.0.0.1:{port}", "username": STATION,
                                  "password_env": "KIOSK_SIP2_PASSWORD", "connect_timeout_s": 2}
        values.update(options)
        backend = Sip2Backend(BackendConfig(**values), request_timeout=timeout, rng=no_wait)
        started.append(backend)
        backend.start(wait=wait)
        return backend

    yield make
    for backend in started:
        backend.stop()


@pytest.fixture
def kiosk(sip2_server: Sip2Server, connect: Connect) -> Sip2Backend:
    backend = connect(sip2_server.port)
    assert backend.connected.is_set(), "the kiosk could not log in to our SIP2 server"
    return backend


def test_identify_says_what_our_server_says_over_mqtt(library: Any, kiosk: Sip2Backend) -> None:
    assert library.backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00001")).ok
    for card in ("HS-2024-0001", "HS-2024-0003", "GV-0001"):
        over_sip2 = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card=card))
        direct = library.backend.request(Op.PATRON_IDENTIFY, IdentifyArgs(card=card))
        assert over_sip2.ok and direct.ok
        ours, theirs = over_sip2.result_as(IdentifyResult), direct.result_as(IdentifyResult)
        # SIP2 carries no class: everything else is the library's own answer.
        assert ours.patron.model_copy(update={"class_": None}) == theirs.patron.model_copy(
            update={"class_": None})
        assert (ours.loans, ours.can_borrow, ours.blocks) == (theirs.loans, theirs.can_borrow, theirs.blocks)
    assert [line.title for line in ours.loans] == [] and ours.patron.kind == "teacher"


def test_an_unknown_card_is_refused_with_the_librarys_sentence(library: Any, kiosk: Sip2Backend) -> None:
    reply = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2099-0001"))
    assert not reply.ok and reply.error is not None
    assert reply.error.code is ErrorCode.UNKNOWN_PATRON
    assert reply.error.message == library.refusal(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2099-0001"))


def test_a_staff_login_sends_the_pin_and_a_wrong_one_is_refused(library: Any, kiosk: Sip2Backend) -> None:
    from sqlalchemy import update

    from server.models import Reader
    from server.pins import hash_pin

    with library.engine.begin() as connection:
        connection.execute(update(Reader).where(Reader.code == "GV-0001").values(pin_hash=hash_pin("2468")))
    right = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="GV-0001", pin="2468"))
    assert right.ok and right.result_as(IdentifyResult).patron.name == "Phạm Thu Hà"
    wrong = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="GV-0001", pin="1357"))
    direct = library.backend.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="GV-0001", pin="1357"))
    assert wrong.error is not None and direct.error is not None
    assert wrong.error.code is direct.error.code is ErrorCode.WRONG_PIN


def test_checkout_return_renew_and_item_info_reach_the_ledger(library: Any, kiosk: Sip2Backend) -> None:
    lent = kiosk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00001"))
    assert lent.ok, lent
    assert lent.result_as(CheckoutResult) == CheckoutResult(item="TN.00001", title="Dế Mèn phiêu lưu ký",
                                                            due=dt.date(2026, 9, 19))
    assert library.loans_of("HS-2024-0001") == ["TN.00001"]

    info = kiosk.request(Op.ITEM_INFO, ItemInfoArgs(item="TN00001")).result_as(ItemInfoResult)
    assert (info.item, info.status, info.due) == ("TN.00001", "on_loan", dt.date(2026, 9, 19))

    library.clock.advance(days=2)
    renewed = kiosk.request(Op.LOAN_RENEW, RenewArgs(patron="HS-2024-0001", item="TN00001"))
    assert renewed.ok, renewed
    assert renewed.result_as(RenewResult).due == dt.date(2026, 9, 21)

    library.clock.advance(days=9)  # two days past the renewed due date
    back = kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    assert back.ok, back
    assert back.result_as(ReturnResult) == ReturnResult(item="TN.00001", title="Dế Mèn phiêu lưu ký",
                                                        was_overdue=True, days_late=2)
    assert library.loans_of("HS-2024-0001") == []
    assert kiosk.request(Op.ITEM_INFO, ItemInfoArgs(item="TN00001")).result_as(ItemInfoResult).status == "available"


@pytest.mark.parametrize(("op", "args", "code"), [
    (Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0002", item="TN00002"), ErrorCode.ITEM_ON_LOAN),
    (Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0002", item="TN09999"), ErrorCode.UNKNOWN_ITEM),
    (Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0002", item="TK00003"), ErrorCode.ITEM_NOT_LOANABLE),
    (Op.LOAN_RETURN, ReturnArgs(item="TN00003"), ErrorCode.ITEM_NOT_ON_LOAN),
    (Op.LOAN_RETURN, ReturnArgs(item="TN09999"), ErrorCode.UNKNOWN_ITEM),
    (Op.LOAN_RENEW, RenewArgs(patron="HS-2024-0002", item="TN00003"), ErrorCode.ITEM_NOT_ON_LOAN),
    (Op.ITEM_INFO, ItemInfoArgs(item="TN09999"), ErrorCode.UNKNOWN_ITEM),
])
def test_a_refusal_keeps_the_librarys_sentence_and_finds_its_code(
        library: Any, kiosk: Sip2Backend, op: Op, args: Any, code: ErrorCode) -> None:
    assert library.backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00002")).ok
    before = library.loan_count()
    reply = kiosk.request(op, args)
    assert not reply.ok and reply.error is not None, reply
    assert reply.error.code is code
    assert reply.error.message == library.refusal(op, args)
    assert library.loan_count() == before


def test_the_same_book_lent_returned_and_lent_again_at_once_counts_each_time(
        library: Any, kiosk: Sip2Backend) -> None:
    # SIP2 dates have whole seconds: the backend must not send the same change twice in one.
    for _ in range(2):
        assert kiosk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00001")).ok
        assert library.loans_of("HS-2024-0001") == ["TN.00001"]
        assert kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001")).ok
        assert library.loans_of("HS-2024-0001") == []
    again = kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    assert again.error is not None and again.error.code is ErrorCode.ITEM_NOT_ON_LOAN


def test_what_sip2_cannot_do_is_not_offered(kiosk: Sip2Backend) -> None:
    assert supports(kiosk, Op.LOAN_CHECKOUT) and supports(kiosk, Op.LOAN_RENEW)
    assert not supports(kiosk, Op.STOCKTAKE_SCAN) and not supports(kiosk, Op.GATE_SYNC)
    assert supports(object(), Op.STOCKTAKE_SCAN)  # our server over MQTT does everything
    for op, args in ((Op.STOCKTAKE_SCAN, StocktakeScanArgs(items=["TN00001"])), (Op.GATE_SYNC, GateSyncArgs())):
        reply = kiosk.request(op, args)
        assert reply.error is not None and reply.error.code is ErrorCode.BAD_REQUEST
        assert reply.error.message == text("sip2.unsupported", "vi")


def test_wrong_credentials_get_nothing(sip2_server: Sip2Server, connect: Connect, library: Any) -> None:
    backend = connect(sip2_server.port, wait=2, password_env=None, password_file=None,
                      username="kiosk-sip2")
    assert not backend.connected.is_set()
    with pytest.raises(BackendUnavailable):
        backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00001"))
    stranger = connect(sip2_server.port, wait=2, username="kiosk-nobody")
    assert stranger.login_refused and not stranger.connected.is_set()
    assert library.loan_count() == 0


def test_a_lost_server_is_unreachable_then_found_again(library: Any, sip2_server: Sip2Server,
                                                       connect: Connect, tmp_path: Path) -> None:
    backend = connect(sip2_server.port)
    port = sip2_server.port
    assert backend.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0001")).ok
    sip2_server.stop()
    with pytest.raises(BackendUnavailable):
        backend.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2024-0001"))
    assert not backend.connected.is_set()
    again = Sip2Server(Sip2Config(enabled=True, host="127.0.0.1", port=port,
                                  accounts_file=str(tmp_path / "sip2-accounts")),
                       library.circulation, site="thcs-thu-nghiem")
    again.start()
    try:
        assert backend.connected.wait(10), "the backend did not reconnect"
        assert backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TN00001")).ok
    finally:
        backend.stop()
        again.stop()
    assert library.loans_of("HS-2024-0001") == ["TN.00001"]


# --- a scripted peer: what our server never does --------------------------------------

Script = Callable[[sip2.Message], "sip2.Message | bytes | None"]


class ScriptedPeer:
    """A SIP2 system in a few lines: logs any station in, says it is online, and answers
    everything else by `script` (a message, raw bytes, or None for silence)."""

    def __init__(self, script: Script, *, online: bool = True) -> None:
        self.script = script
        self.online = online
        self.received: list[sip2.Message] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def codes(self) -> list[str]:
        return [m.code for m in self.received]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        framer = sip2.Framer()
        conn.settimeout(0.2)
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                for frame in framer.feed(chunk):
                    message = sip2.decode(frame)
                    self.received.append(message)
                    answer = self._answer(message)
                    if isinstance(answer, sip2.Message):
                        answer = sip2.encode(answer, sequence=message.sequence, strict=False)
                    if answer:
                        conn.sendall(answer)

    def _answer(self, message: sip2.Message) -> sip2.Message | bytes | None:
        now = dt.datetime(2026, 9, 14, 10, 0)
        if message.code == "93":
            return sip2.LoginResponse(ok=True)
        if message.code == "99":
            return sip2.ACSStatus(online_status=self.online, checkin_ok=True, checkout_ok=True,
                                  acs_renewal_policy=True, status_update_ok=False, offline_ok=False,
                                  date_time_sync=now, AO="x", BX=sip2.supported_messages(
                                      "checkout", "checkin", "item_information", "login", "sc_acs_status"))
        return self.script(message)


@pytest.fixture
def peer() -> Iterator[Callable[..., ScriptedPeer]]:
    peers: list[ScriptedPeer] = []

    def make(script: Script, **kwargs: Any) -> ScriptedPeer:
        peers.append(ScriptedPeer(script, **kwargs))
        return peers[-1]

    yield make
    for p in peers:
        p.close()


def lent(due: str, title: str = "Dế Mèn phiêu lưu ký") -> Script:
    def script(message: sip2.Message) -> sip2.Message | None:
        if message.code == "11":
            return sip2.CheckoutResponse(ok=True, transaction_date=dt.datetime(2026, 9, 14, 10, 0), AO="x",
                                         AA=message.get("AA"), AB=message.get("AB"), AJ=title, AH=due)
        if message.code == "09":
            return sip2.CheckinResponse(ok=True, transaction_date=dt.datetime(2026, 9, 14, 10, 0), AO="x",
                                        AB=message.get("AB"), AQ="x")
        return None
    return script


@pytest.mark.parametrize("due", ["20260928    235959", "2026-09-28 23:59:00", "2026-09-28", "20260928"])
def test_due_dates_are_read_as_other_systems_write_them(peer: Callable[..., ScriptedPeer], connect: Connect,
                                                        due: str) -> None:
    backend = connect(peer(lent(due)).port, username=None, password_env=None)
    reply = backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-1", item="TN1"))
    assert reply.result_as(CheckoutResult).due == dt.date(2026, 9, 28)


def test_a_loan_with_an_unreadable_due_date_is_taken_back(peer: Callable[..., ScriptedPeer],
                                                          connect: Connect) -> None:
    system = peer(lent("next Friday"))
    backend = connect(system.port, username=None, password_env=None)
    reply = backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-1", item="TN1"))
    assert reply.error is not None and reply.error.code is ErrorCode.INTERNAL
    assert system.codes()[-2:] == ["11", "09"]
    assert system.received[-1].get("AB") == "TN1"


def test_silence_is_unreachable_and_the_connection_is_renewed(peer: Callable[..., ScriptedPeer],
                                                              connect: Connect) -> None:
    system = peer(lambda message: None)
    backend = connect(system.port, timeout=0.5, username=None, password_env=None)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-1", item="TN1"))
    assert time.monotonic() - started < 2
    # A late answer must never be read as the next one: the connection is a new one.
    assert backend.connected.wait(5) and system.connections == 2


def test_a_garbled_answer_is_asked_for_again(peer: Callable[..., ScriptedPeer], connect: Connect) -> None:
    sent: list[bytes] = []

    def script(message: sip2.Message) -> bytes | None:
        if message.code == "97":  # the answer again, intact this time
            return sent[-1]
        answer = lent("20260928    235959")(message)
        if answer is None:
            return None
        sent.append(sip2.encode(answer, sequence=message.sequence, strict=False))
        checksum = sent[-1][-5:-1]
        return sent[-1][:-5] + (b"0000" if checksum != b"0000" else b"0001") + b"\r"

    system = peer(script)
    backend = connect(system.port, username=None, password_env=None)
    assert backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-1", item="TN1")).ok
    assert system.codes()[-2:] == ["11", "97"]


def test_a_system_that_says_it_is_offline_is_unreachable(peer: Callable[..., ScriptedPeer],
                                                         connect: Connect) -> None:
    system = peer(lent("20260928    235959"), online=False)
    backend = connect(system.port, wait=1, username=None, password_env=None)
    assert not backend.connected.is_set()
    with pytest.raises(BackendUnavailable):
        backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-1", item="TN1"))
    assert "11" not in system.codes()
