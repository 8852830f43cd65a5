"""The SIP2 server, message by message, on a real socket over a real SQLite library."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from circulation_sample import (
    AN, AN_PIN, BINH, BLOCKED, HOA, NV, TK, TK_REFERENCE, TN, Library, WallClock, local,
)
from conftest import DESK, DESK_PASSWORD, GATE, GATE_PASSWORD, INSTITUTION, KIOSK, Client

from protocol import sip2
from server.models import Alert, LedgerEntry, Reader, ReaderStatus

Connect = Callable[..., Client]
MONDAY = local(2026, 10, 5)


def sip_now(moment: dt.datetime = MONDAY) -> str:
    return sip2.format_date(moment.replace(tzinfo=None))


def checkout(patron: str, item: str, *, when: dt.datetime = MONDAY, no_block: bool = False,
             **extra: object) -> sip2.Message:
    return sip2.CheckoutRequest(no_block=no_block, transaction_date=sip_now(when),
                                AO=INSTITUTION, AA=patron, AB=item, AC="", **extra)


def checkin(item: str, *, when: dt.datetime = MONDAY, no_block: bool = False) -> sip2.Message:
    return sip2.CheckinRequest(no_block=no_block, transaction_date=sip_now(when),
                               return_date=sip_now(when), AP="Thư viện", AO=INSTITUTION,
                               AB=item, AC="")


def loans_of(library: Library) -> int:
    with library.sessions() as db:
        return len(db.scalars(select(LedgerEntry)).all())


# --- login -----------------------------------------------------------------------

def test_login_as_a_registered_kiosk_and_desk(connect: Connect) -> None:
    assert connect().login().ok == "1"
    assert connect().login(DESK, DESK_PASSWORD).ok == "1"


@pytest.mark.parametrize(("name", "password"), [
    (KIOSK, "wrong-password"),     # wrong password
    ("kiosk-unknown", "whatever1"),  # not a station
    (GATE, GATE_PASSWORD),         # a registered gate with an account: not a SIP2 kind
    ("", ""),
])
def test_wrong_credentials_hear_940_and_nothing_else(connect: Connect, name: str,
                                                     password: str) -> None:
    client = connect()
    raw = client.ask_raw(sip2.encode(sip2.LoginRequest(CN=name, CO=password), sequence=1))
    assert raw == b"940AY1AZFDFD\r"


def test_three_failed_logins_close_the_connection(connect: Connect) -> None:
    client = connect()
    for _ in range(3):
        assert client.login(KIOSK, "nope-nope").ok == "0"
    assert client.closed_by_server()


def test_a_request_before_login_closes_the_connection(connect: Connect,
                                                      library: Library) -> None:
    client = connect()
    client.send_raw(sip2.encode(checkout(AN, TN[0]), sequence=1))
    assert client.closed_by_server()
    assert loans_of(library) == 0


def test_status_before_login_offers_nothing(connect: Connect) -> None:
    answer = connect().ask(sip2.SCStatus(max_print_width="040"))
    assert answer.flag("online_status") is False and answer.flag("checkout_ok") is False
    assert answer.supported_messages == sip2.supported_messages("login", "sc_acs_status")


# --- 99/98 -----------------------------------------------------------------------

def test_sc_status_tells_the_truth(kiosk: Client) -> None:
    raw = kiosk.ask_raw(kiosk.encode(sip2.SCStatus(max_print_width="040"), sequence=2))
    # 98<online><checkin><checkout><renewal policy><status update><offline><timeout 3>
    # <retries 3><date 18><version 4>, then AO, AM, BX, AN.
    assert raw[:8] == b"98YYYYNY"
    assert raw[8:14] == b"030003"
    assert raw[14:32] == sip_now().encode()
    assert raw[32:36] == b"2.00"
    answer = sip2.decode(raw, strict=True)
    assert answer.institution_id == INSTITUTION
    assert answer.library_name == "Trường THCS Nhựt Tảo"
    assert answer.terminal_location == KIOSK
    bx = answer.supported_messages
    for position, supported in zip(sip2.SUPPORTED_MESSAGES, bx, strict=True):
        # Holds, fee payment, status updates and patron enable are answered "no".
        assert (supported == "Y") == (position not in (
            "fee_paid", "item_status_update", "patron_enable", "hold")), position


# --- 23/24, 63/64 ----------------------------------------------------------------

def patron_status(patron: str, pin: str = "") -> sip2.Message:
    return sip2.PatronStatusRequest(transaction_date=sip_now(), AO=INSTITUTION, AA=patron,
                                    AC="", AD=pin)


def test_patron_status_of_a_reader(kiosk: Client) -> None:
    raw = kiosk.ask_raw(kiosk.encode(patron_status(AN)))
    assert raw[:2] == b"24"
    assert raw[2:16] == b"  YY          "  # recall and hold denied: we have neither
    assert raw[16:19] == b"000" and raw[19:37] == sip_now().encode()
    answer = sip2.decode(raw, strict=True)
    assert answer.personal_name == "Nguyễn Văn An"
    assert answer.valid_patron == "Y" and answer.get("CQ") is None
    assert answer.get("BV") == "0"


def test_patron_status_with_the_pin(kiosk: Client) -> None:
    assert kiosk.ask(patron_status(AN, AN_PIN)).get("CQ") == "Y"
    wrong = kiosk.ask(patron_status(AN, "0000"))
    assert wrong.get("CQ") == "N" and wrong.personal_name == "Nguyễn Văn An"
    assert kiosk.ask(patron_status(AN, "not-a-pin")).get("CQ") == "N"


def test_patron_status_of_a_blocked_and_an_unknown_reader(kiosk: Client) -> None:
    blocked = kiosk.ask(patron_status(BLOCKED))
    assert blocked.patron_status[:2] == "YY" and blocked.valid_patron == "Y"
    assert blocked.screen_message
    unknown = kiosk.ask(patron_status("HS-0000-0000"))
    assert unknown.valid_patron == "N" and unknown.personal_name == ""
    assert unknown.patron_status[0] == "Y" and unknown.screen_message


def test_patron_information_with_summary_paging(kiosk: Client) -> None:
    for item in (TN[0], TN[1], TK[0]):
        assert kiosk.ask(checkout(HOA, item)).ok == "1"

    def info(start: str | None = None, end: str | None = None) -> sip2.Message:
        return kiosk.ask(sip2.PatronInformationRequest(
            transaction_date=sip_now(), summary=sip2.summary("charged_items"),
            AO=INSTITUTION, AA=HOA, AC="", BP=start, BQ=end))

    raw = kiosk.ask_raw(kiosk.encode(sip2.PatronInformationRequest(
        transaction_date=sip_now(), summary=sip2.summary("charged_items"), AO=INSTITUTION,
        AA=HOA, AC="")))
    # 64<status 14><language 3><date 18><holds 4><overdue 4><charged 4><fines 4>
    # <recalls 4><unavailable holds 4>
    assert raw[37:61] == b"000000000003000000000000"
    every = sip2.decode(raw, strict=True)
    assert sorted(every.charged_items) == sorted([TN[0], TN[1], TK[0]])
    assert every.get("CB") == "10"  # a teacher's overall limit
    assert info("1", "2").charged_items == every.charged_items[:2]
    assert info("3", "5").charged_items == every.charged_items[2:]
    assert info("4", "9").charged_items == []
    no_list = kiosk.ask(sip2.PatronInformationRequest(transaction_date=sip_now(),
                                                      AO=INSTITUTION, AA=HOA))
    assert no_list.charged_items == [] and no_list.count("charged_items_count") == 3


# --- 11/12 -----------------------------------------------------------------------

def test_checkout(kiosk: Client, library: Library) -> None:
    raw = kiosk.ask_raw(kiosk.encode(checkout(AN, TN[0])))
    assert raw[:6] == b"121NUY"
    answer = sip2.decode(raw, strict=True)
    assert answer.item_identifier == TN[0]
    assert answer.title_identifier == "Dế Mèn phiêu lưu ký"
    assert answer.due_date == "20261012    235959"
    loan = library.loan(TN[0])
    assert loan is not None and loan.due_on == dt.date(2026, 10, 12)


def test_a_retried_checkout_never_lends_twice(kiosk: Client, library: Library,
                                              connect: Connect) -> None:
    first = kiosk.ask(checkout(AN, TN[0]), sequence=1)
    # The machine timed out and sent it again with its next sequence number...
    again = kiosk.ask(checkout(AN, TN[0]), sequence=2)
    # ...and once more after reconnecting.
    other = connect()
    other.login()
    third = other.ask(checkout(AN, TN[0]), sequence=5)
    assert first.ok == again.ok == third.ok == "1"
    assert first.due_date == again.due_date == third.due_date
    assert loans_of(library) == 1
    # A new transaction (a later transaction date) is a new checkout: refused, on loan.
    later = kiosk.ask(checkout(AN, TN[0], when=MONDAY + dt.timedelta(minutes=1)))
    assert later.ok == "0" and later.screen_message
    assert loans_of(library) == 1


def test_a_duplicate_message_repeats_the_last_answer(kiosk: Client, library: Library,
                                                     clock: WallClock) -> None:
    wire = kiosk.encode(checkout(AN, TN[0]), sequence=3)
    first = kiosk.ask_raw(wire)
    clock.advance(hours=1)  # a changed answer would show another transaction date
    assert kiosk.ask_raw(wire) == first
    assert loans_of(library) == 1


@pytest.mark.parametrize(("patron", "item"), [
    (AN, TK_REFERENCE), (AN, "TN.99999"), ("HS-0000-0000", TN[0]), (BLOCKED, TN[0]),
])
def test_refused_checkouts(kiosk: Client, library: Library, patron: str, item: str) -> None:
    raw = kiosk.ask_raw(kiosk.encode(checkout(patron, item)))
    assert raw[:6] == b"120NUN"
    answer = sip2.decode(raw, strict=True)
    assert answer.screen_message and answer.due_date == ""
    assert loans_of(library) == 0


def test_a_cancelled_checkout_is_refused_honestly(kiosk: Client, library: Library) -> None:
    answer = kiosk.ask(checkout(AN, TN[0], BI="Y"))
    assert answer.ok == "0" and answer.screen_message
    assert loans_of(library) == 0


# --- offline (no block) ----------------------------------------------------------

def test_offline_checkout_is_applied_at_its_time(kiosk: Client, library: Library) -> None:
    earlier = MONDAY - dt.timedelta(days=3, hours=1)  # Friday, while the network was down
    answer = kiosk.ask(checkout(AN, TN[0], when=earlier, no_block=True,
                                nb_due_date=sip_now(earlier + dt.timedelta(days=7))))
    assert answer.ok == "1" and answer.due_date.startswith("20261009")  # Friday + 7 days
    [entry] = library.ledger()
    assert entry.offline is True and entry.conflict is None
    assert entry.station_at == earlier and entry.station == KIOSK


def test_offline_checkout_conflicts_are_recorded_and_raised(kiosk: Client,
                                                            library: Library) -> None:
    assert kiosk.ask(checkout(BINH, TN[0])).ok == "1"
    earlier = MONDAY - dt.timedelta(hours=2)
    lent = kiosk.ask(checkout(AN, TN[0], when=earlier, no_block=True))
    assert lent.ok == "0"
    blocked = kiosk.ask(checkout(BLOCKED, TN[1], when=earlier, no_block=True))
    assert blocked.ok == "1"  # the book left with the reader: applied, and looked at
    conflicts = [e.conflict for e in library.ledger() if e.offline]
    assert conflicts == ["on_loan_to_other", "reader_blocked"]
    with library.sessions() as db:
        alerts = db.scalars(select(Alert).where(Alert.type == "offline.conflict")).all()
    assert {a.station for a in alerts} == {KIOSK} and len(alerts) == 2


# --- 09/10 -----------------------------------------------------------------------

def test_checkin(kiosk: Client, library: Library, clock: WallClock) -> None:
    kiosk.ask(checkout(AN, TN[0]))
    clock.advance(days=10)
    raw = kiosk.ask_raw(kiosk.encode(checkin(TN[0], when=MONDAY + dt.timedelta(days=10))))
    assert raw[:6] == b"101YUN"
    answer = sip2.decode(raw, strict=True)
    assert answer.item_identifier == TN[0] and answer.title_identifier == "Dế Mèn phiêu lưu ký"
    assert answer.permanent_location == INSTITUTION
    assert any("3" in line for line in answer.screen_message)  # 3 days late
    assert library.loan(TN[0]) is None


def test_checkin_of_an_item_not_on_loan(kiosk: Client) -> None:
    raw = kiosk.ask_raw(kiosk.encode(checkin(TN[2])))
    assert raw[:6] == b"100NUY"
    assert sip2.decode(raw).screen_message


# --- 29/30, 65/66 ----------------------------------------------------------------

def renew(patron: str, item: str) -> sip2.Message:
    return sip2.RenewRequest(transaction_date=sip_now(), AO=INSTITUTION, AA=patron, AB=item)


def test_renew(kiosk: Client, library: Library) -> None:
    kiosk.ask(checkout(AN, TN[0]))
    raw = kiosk.ask_raw(kiosk.encode(renew(AN, TN[0])))
    assert raw[:6] == b"301YUU"
    assert sip2.decode(raw).due_date == "20261012    235959"  # renewed today: same due
    refused = kiosk.ask(renew(BINH, TN[0]))  # not Bình's
    assert refused.ok == "0" and refused.screen_message


def test_renew_all(kiosk: Client, clock: WallClock) -> None:
    for item in (TN[0], TK[0]):
        kiosk.ask(checkout(AN, item))
    kiosk.ask(checkout(AN, TK[1]))
    clock.advance(days=3)
    # TK allows one renewal: renewing twice leaves the TK copies unrenewed.
    for item in (TK[0], TK[1]):
        assert kiosk.ask(renew(AN, item)).ok == "1"
    raw = kiosk.ask_raw(kiosk.encode(sip2.RenewAllRequest(
        transaction_date=sip_now(MONDAY + dt.timedelta(days=3)), AO=INSTITUTION, AA=AN)))
    assert raw[:11] == b"66100010002"
    answer = sip2.decode(raw, strict=True)
    assert answer.renewed_items == [TN[0]]
    assert sorted(answer.unrenewed_items) == [TK[0], TK[1]]


# --- 17/18 -----------------------------------------------------------------------

def item_info(item: str) -> sip2.Message:
    return sip2.ItemInformationRequest(transaction_date=sip_now(), AO=INSTITUTION, AB=item)


def test_item_information(kiosk: Client) -> None:
    raw = kiosk.ask_raw(kiosk.encode(item_info(NV)))
    assert raw[:8] == b"18030001"  # available, no security marker, fee type other
    assert sip2.decode(raw, strict=True).title_identifier == "Phương pháp dạy học tích cực"
    kiosk.ask(checkout(HOA, NV))
    on_loan = kiosk.ask(item_info(NV))
    assert on_loan.circulation_status == "04"
    assert on_loan.due_date == "20261104    235959"
    unknown = kiosk.ask(item_info("NV.99999"))
    assert unknown.circulation_status == "01" and unknown.screen_message


# --- 35, 37, 15, 19, 01 ----------------------------------------------------------

def test_end_session(kiosk: Client) -> None:
    raw = kiosk.ask_raw(kiosk.encode(sip2.EndPatronSessionRequest(
        transaction_date=sip_now(), AO=INSTITUTION, AA=AN)))
    assert raw[:3] == b"36Y" and sip2.decode(raw).patron_identifier == AN


def test_fee_paid_is_refused_there_are_no_fines(kiosk: Client) -> None:
    answer = kiosk.ask(sip2.FeePaidRequest(transaction_date=sip_now(), fee_type="01",
                                           payment_type="00", currency_type="VND",
                                           BV="5000", AO=INSTITUTION, AA=AN, BK="tx-1"))
    assert answer.code == "38" and answer.payment_accepted == "N"
    assert answer.transaction_id == "tx-1" and answer.screen_message


def test_hold_is_not_supported(kiosk: Client) -> None:
    answer = kiosk.ask(sip2.HoldRequest(hold_mode="+", transaction_date=sip_now(),
                                        AO=INSTITUTION, AA=AN, AB=TN[0]))
    assert (answer.code, answer.ok, answer.available) == ("16", "0", "N")
    assert answer.screen_message


def test_item_status_update_is_not_supported(kiosk: Client) -> None:
    answer = kiosk.ask(sip2.ItemStatusUpdateRequest(transaction_date=sip_now(),
                                                    AO=INSTITUTION, AB=TN[0], CH="x"))
    assert answer.code == "20" and answer.item_properties_ok == "0"


def test_block_patron_is_answered_with_24_and_blocks(kiosk: Client, library: Library) -> None:
    answer = kiosk.ask(sip2.BlockPatronRequest(card_retained=True, transaction_date=sip_now(),
                                               AO=INSTITUTION, AL="Thẻ bị giữ lại", AA=AN,
                                               AC=""))
    assert answer.code == "24" and answer.patron_status[:2] == "YY"
    with library.sessions() as db:
        reader = db.scalars(select(Reader).where(Reader.code == AN)).one()
    assert reader.status == ReaderStatus.BLOCKED
    assert KIOSK in reader.block_reason and "Thẻ bị giữ lại" in reader.block_reason
    assert kiosk.ask(checkout(AN, TN[0])).ok == "0"


# --- error detection, resend, junk -----------------------------------------------

def test_bad_checksum_gets_96_and_changes_nothing(kiosk: Client, library: Library) -> None:
    wire = bytearray(kiosk.encode(checkout(AN, TN[0]), sequence=4))
    wire[-2] = ord("0") if wire[-2] != ord("0") else ord("1")
    assert kiosk.ask_raw(bytes(wire)) == b"96AZFEF6\r"
    assert loans_of(library) == 0


def test_97_repeats_the_last_answer(kiosk: Client) -> None:
    answer = kiosk.ask_raw(kiosk.encode(patron_status(AN)))
    assert kiosk.ask_raw(sip2.encode(sip2.RequestACSResend())) == answer
    assert kiosk.ask_raw(b"97\r") == answer


def test_answers_mirror_the_clients_error_detection(kiosk: Client) -> None:
    plain = kiosk.ask_raw(sip2.encode(patron_status(AN), error_detection=False))
    assert b"AY" not in plain and b"AZ" not in plain
    checked = kiosk.ask_raw(sip2.encode(patron_status(AN), sequence=6))
    assert checked[-10:-5] == b"AY6AZ"


@pytest.mark.parametrize("junk", [
    b"hello world", b"11NN2026", b"\xff\xfe\xfd\x00\x01", b"42garbage", b"2400",
    b"9300CN\xffkiosk|CO\xfe|",
])
def test_junk_gets_96_and_the_session_goes_on(kiosk: Client, library: Library,
                                              junk: bytes) -> None:
    assert kiosk.ask_raw(junk + b"\r") == b"96AZFEF6\r"
    assert kiosk.ask(checkout(AN, TN[0])).ok == "1"


def test_endless_junk_is_cut_off(kiosk: Client) -> None:
    kiosk.send_raw(b"junk\r" * 11)
    replies = [kiosk.read_raw() for _ in range(10)]
    assert replies == [b"96AZFEF6\r"] * 10
    assert kiosk.closed_by_server()


def test_an_oversized_message_drops_the_connection_not_the_server(
        start_server: Callable[..., object], connect: Connect, library: Library) -> None:
    server = start_server(max_message_bytes=1024)
    client = connect(server)
    client.login()
    client.send_raw(b"11NN" + b"x" * 5000)
    assert client.closed_by_server()
    again = connect(server)
    again.login()
    assert again.ask(checkout(AN, TN[0])).ok == "1"
    assert loans_of(library) == 1


def test_a_truncated_message_then_the_rest(kiosk: Client) -> None:
    wire = kiosk.encode(patron_status(AN))
    kiosk.send_raw(wire[:10])
    time.sleep(0.05)
    kiosk.send_raw(wire[10:])
    assert sip2.decode(kiosk.read_raw()).personal_name == "Nguyễn Văn An"


def test_idle_connections_are_closed(start_server: Callable[..., object],
                                     connect: Connect) -> None:
    server = start_server(idle_timeout_seconds=0.3)
    client = connect(server)
    client.login()
    client.sock.settimeout(5)
    assert client.closed_by_server()


def test_crlf_and_cp850(start_server: Callable[..., object], connect: Connect) -> None:
    server = start_server(terminator="crlf", encoding="cp850")
    client = connect(server, encoding="cp850", terminator=b"\r\n")
    assert client.login().ok == "1"
    raw = client.ask_raw(client.encode(patron_status(AN)))
    assert raw.endswith(b"\r\n")
    assert b"AENguyen Van An|" in raw  # no Vietnamese letters in CP850: without the marks
    assert sip2.decode(raw, "cp850", strict=True).personal_name == "Nguyen Van An"


def test_tls(start_server: Callable[..., object], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server = start_server(tls_cert=str(cert), tls_key=str(key))
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    client = Client(server.port, sock=context.wrap_socket(raw))
    try:
        assert client.login().ok == "1"
        assert client.ask(patron_status(AN)).personal_name == "Nguyễn Văn An"
    finally:
        client.close()
    # A plain-text client gets nothing readable and does not stop the server.
    plain = Client(server.port)
    plain.send_raw(sip2.encode(sip2.LoginRequest(CN=KIOSK, CO="x"), sequence=0))
    assert plain.closed_by_server()
    plain.close()
