"""The SIP2 codec (protocol/sip2.py): checksums, layouts, round trips and bad input."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import sip2

# The issue's published vectors, and two from the PyPI `sip2` package's source comments
# (a checkin from a real library system), each through the AZ that the checksum covers.
VECTORS = [
    (b"990 402.00AY1AZ", "FCB4"),
    (b"941AY0AZ", "FDFD"),
    (b"97AZ", "FEF5"),
    (b"96AZ", "FEF6"),
    (b"09N20160419    12200820160419    122008APReading Room 1|AO830|AB830$28170815|AC|AY2AZ",
     "EB80"),
    (b"09N20160419    12171320160419    121713APReading Room 1|AO830|AB830$28170815|AC|AY2AZ",
     "EB7C"),
]


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_published_checksum_vectors(data: bytes, expected: str) -> None:
    assert sip2.checksum(data) == expected
    # And a decoder accepts exactly that checksum, and no other.
    assert sip2.decode(data + expected.encode() + b"\r").checksum == expected
    wrong = f"{(int(expected, 16) + 1) & 0xFFFF:04X}".encode()
    with pytest.raises(sip2.ChecksumError):
        sip2.decode(data + wrong + b"\r")


def test_encoder_writes_the_published_vectors() -> None:
    sc = sip2.SCStatus(status_code="0", max_print_width="   ", protocol_version="2.00")
    sc.fixed["max_print_width"] = " 40"  # the vector's odd width, written as is
    assert sip2.encode(sc, sequence=1, strict=False) == b"990 402.00AY1AZFCB4\r"
    assert sip2.encode(sip2.LoginResponse(ok=True), sequence=0) == b"941AY0AZFDFD\r"
    assert sip2.encode(sip2.RequestACSResend()) == b"97AZFEF5\r"
    assert sip2.encode(sip2.RequestSCResend()) == b"96AZFEF6\r"


def test_checksum_is_zero_padded_and_over_bytes() -> None:
    # A sum whose complement is below 0x1000 must still give four digits.
    data = b"\xff" * 0xF0
    assert sip2.checksum(data) == f"{(-0xFF * 0xF0) & 0xFFFF:04X}"
    assert len(sip2.checksum(b"z" * 600)) == 4
    message = sip2.PatronStatusResponse(transaction_date=dt.datetime(2026, 10, 5, 9),
                                        AO="x", AA="HS-1", AE="Nguyễn Văn An")
    wire = sip2.encode(message, sequence=4)
    body = wire[:-5]  # through AZ
    assert wire[-5:-1] == sip2.checksum(body).encode()
    chars = sum(ord(ch) for ch in body.decode("utf-8"))
    assert sip2.checksum(body) != f"{(-chars) & 0xFFFF:04X}"  # not over characters


# The fixed part of every message, in characters, from the 3M SIP2 2.00 spec.
FIXED_WIDTHS = {
    "93": 2, "94": 1, "99": 8, "98": 34, "23": 21, "24": 35, "63": 31, "64": 59, "11": 38,
    "12": 22, "09": 37, "10": 22, "29": 38, "30": 22, "65": 18, "66": 27, "17": 18, "18": 24,
    "35": 18, "36": 19, "37": 25, "38": 19, "15": 19, "16": 20, "19": 18, "20": 19, "01": 19,
    "25": 18, "26": 35, "97": 0, "96": 0,
}


def test_every_message_of_the_issue_has_its_layout() -> None:
    assert set(sip2.MESSAGES) == set(FIXED_WIDTHS)
    for code, width in FIXED_WIDTHS.items():
        layout = sip2.MESSAGES[code].layout
        assert sum(f.width for f in layout.fixed) == width, code


def _filled(code: str) -> sip2.Message:
    """A message with every field the spec requires, and one value of each repeatable."""
    cls = sip2.MESSAGES[code]
    message = cls()
    for spec in cls.layout.fixed:
        if spec.name not in message.fixed:
            message.set(spec.name, {"date": dt.datetime(2026, 10, 5, 7, 31, 12), "yn": True,
                                    "bit": False, "digits": "0" * spec.width,
                                    "text": "+"}.get(spec.kind, " " * spec.width))
    for var in cls.layout.variable:
        if var.required or var.repeatable:
            message.set(var.id, ["Một", "Hai"] if var.repeatable else f"{var.id}-Việt")
    return message


@pytest.mark.parametrize("code", sorted(FIXED_WIDTHS))
def test_round_trip_of_each_message(code: str) -> None:
    message = _filled(code)
    for detection, sequence in ((True, 7), (True, None), (False, None)):
        wire = sip2.encode(message, sequence=sequence, error_detection=detection)
        assert wire.startswith(code.encode()) and wire.endswith(b"\r")
        back = sip2.decode(wire, strict=True)
        assert type(back) is type(message) and back == message
        assert back.sequence == sequence
        assert (back.checksum is not None) == detection
        # The fixed part sits where the spec puts it: right after the code.
        fixed = "".join(message.fixed[f.name] for f in message.layout.fixed)
        assert wire[2:2 + FIXED_WIDTHS[code]].decode() == fixed


def test_fixed_field_positions_of_a_checkout_response() -> None:
    message = sip2.CheckoutResponse(ok=True, renewal_ok=False, magnetic_media="N",
                                    desensitize=True,
                                    transaction_date=dt.datetime(2026, 10, 5, 7, 31, 12),
                                    AO="thcs", AA="HS-1", AB="TN.00001",
                                    AJ="Dế Mèn phiêu lưu ký", AH="20261012    235959")
    wire = sip2.encode(message, error_detection=False)
    assert wire == ("121NNY20261005    073112AOthcs|AAHS-1|ABTN.00001|AJDế Mèn phiêu lưu ký|"
                    "AH20261012    235959|\r").encode()
    assert message.flag("ok") is True and message.flag("desensitize") is True
    assert message.title_identifier == "Dế Mèn phiêu lưu ký"


def test_patron_status_summary_and_supported_messages_positions() -> None:
    assert sip2.patron_status("charge_privileges_denied", "too_many_items_overdue") == \
        "Y     Y       "
    assert sip2.summary("charged_items") == "  Y       "
    bx = sip2.supported_messages("checkout", "login", "renew_all")
    assert bx == "NYNNNNYNNNNNNNNY" and len(bx) == 16
    with pytest.raises(sip2.Sip2Error, match="unknown patron status flag"):
        sip2.patron_status("no_such_flag")


def test_sip2_dates() -> None:
    local = dt.datetime(2026, 10, 5, 7, 31, 12)
    assert sip2.format_date(local) == "20261005    073112"
    utc = dt.datetime(2026, 10, 5, 0, 31, 12, tzinfo=dt.timezone.utc)
    assert sip2.format_date(utc) == "20261005   Z003112"
    assert sip2.parse_date("20261005   Z003112") == utc
    assert sip2.parse_date("20261005    073112") == local
    assert sip2.parse_date(" " * 18) is None
    with pytest.raises(sip2.Sip2Error, match="not a valid date"):
        sip2.parse_date("20261345    073112")
    with pytest.raises(sip2.Sip2Error, match="YYYYMMDDZZZZHHMMSS"):
        sip2.parse_date("2026-10-05 07:31:1")


def test_unknown_fields_are_kept_and_written_back() -> None:
    wire = b"2300020261005    073112AOx|AAHS-1|ACt|ADp|XZvendor|XZmore|"
    message = sip2.decode(wire + b"\r")
    assert message.getall("XZ") == ["vendor", "more"]
    assert sip2.encode(message, error_detection=False) == wire + b"\r"


def test_last_field_without_its_bar_and_crlf_terminator() -> None:
    message = sip2.decode(b"9300CNkiosk-1|COsecret\r\n")
    assert message.login_user_id == "kiosk-1" and message.login_password == "secret"


@pytest.mark.parametrize(("data", "error", "field"), [
    (b"11NN2026", "truncated at fixed field transaction_date", "transaction_date"),
    (b"64          ", "truncated at fixed field patron_status", "patron_status"),
    (b"42xyz", "unknown SIP2 message '42'", None),
    (b"hello", "no message code", None),
    (b"", "no message code", None),
    (b"2300020261005    073112AOx|AAp\xff\xfe|", "field AA is not utf-8", "AA"),
    (b"2300020261005    073112AOx|!!p|", "bad field id", "!!"),
    (b"941\x00", "NUL", None),
    (b"941\r941", "more than one message", None),
    (b"94\xc3\xa9", "fixed field ok is not ASCII", "ok"),
])
def test_bad_messages_name_the_field(data: bytes, error: str, field: str | None) -> None:
    with pytest.raises(sip2.Sip2Error, match=error) as caught:
        sip2.decode(data)
    assert caught.value.field == field


def test_strict_decoding_checks_required_fields_and_formats() -> None:
    lenient = sip2.decode(b"2300020261005    073112AOx|AAp|")
    assert lenient.patron_identifier == "p"
    with pytest.raises(sip2.Sip2Error, match=r"missing AC \(terminal_password\)") as caught:
        sip2.decode(b"2300020261005    073112AOx|AAp|", strict=True)
    assert caught.value.field == "AC (terminal_password)"
    with pytest.raises(sip2.Sip2Error, match="fixed field no_block must be Y or N") as caught:
        sip2.decode(b"11NX20261005    073112                  AOx|AAp|ABi|AC|", strict=True)
    assert caught.value.field == "no_block"


def test_encoding_refuses_what_cannot_be_written() -> None:
    with pytest.raises(sip2.Sip2Error, match=r"missing .*AE \(personal_name\)"):
        sip2.encode(sip2.PatronStatusResponse(transaction_date=dt.datetime(2026, 1, 1),
                                              AO="x", AA="p"))
    with pytest.raises(sip2.Sip2Error, match=re.escape("field AF contains '|'")):
        sip2.encode(sip2.EndSessionResponse(end_session=True, transaction_date=dt.datetime(
            2026, 1, 1), AO="x", AA="p", AF="a|b"))
    with pytest.raises(sip2.Sip2Error, match="field AO cannot be written in cp850"):
        sip2.encode(_filled("24"), encoding="cp850")
    replaced = sip2.encode(_filled("24"), encoding="cp850", errors="replace")
    assert b"AOAO-Vi?t|" in replaced
    with pytest.raises(sip2.Sip2Error, match="fixed field ok must be 1 ASCII"):
        sip2.LoginResponse(ok="yes")
    with pytest.raises(sip2.Sip2Error, match="sequence must be a digit"):
        sip2.encode(sip2.LoginResponse(ok=True), sequence=10)
    with pytest.raises(sip2.Sip2Error, match="no field named 'patron'"):
        sip2.CheckoutRequest(patron="HS-1")


def test_cp850_round_trip() -> None:
    message = sip2.PatronStatusResponse(transaction_date=dt.datetime(2026, 1, 1), AO="x",
                                        AA="p", AE="Müller Ñandú")
    wire = sip2.encode(message, sequence=2, encoding="cp850")
    assert "Müller Ñandú".encode("cp850") in wire
    assert sip2.decode(wire, "cp850").personal_name == "Müller Ñandú"


def test_framer_cuts_messages_at_any_terminator() -> None:
    framer = sip2.Framer(max_size=64)
    assert framer.feed(b"941\r\n9300CNa|") == [b"941"]
    assert framer.pending == len(b"9300CNa|")
    assert framer.feed(b"COb|\r97\r\n\r\n") == [b"9300CNa|COb|", b"97"]
    assert framer.feed(b"99") == [] and framer.feed(b"00402.00\n") == [b"9900402.00"]


def test_framer_refuses_oversized_messages() -> None:
    framer = sip2.Framer(max_size=16)
    with pytest.raises(sip2.FrameTooLong, match="no terminator"):
        framer.feed(b"2" * 17)
    assert framer.pending == 0
    with pytest.raises(sip2.FrameTooLong, match="a message of 20 bytes"):
        framer.feed(b"3" * 20 + b"\r")
    assert framer.feed(b"941\r") == [b"941"]


_values = st.text(st.characters(blacklist_characters="|\r\n\x00",
                                blacklist_categories=("Cs",)), max_size=40)


@given(patron=_values, item=_values, screen=st.lists(_values, max_size=3),
       sequence=st.integers(0, 9))
def test_any_field_values_round_trip(patron: str, item: str, screen: list[str],
                                     sequence: int) -> None:
    message = sip2.CheckoutResponse(ok=True, transaction_date=dt.datetime(2026, 10, 5),
                                    AO="thcs", AA=patron, AB=item, AJ="", AH="", AF=screen)
    back = sip2.decode(sip2.encode(message, sequence=sequence), strict=True)
    assert back == message and back.sequence == sequence
    assert back.patron_identifier == patron and back.screen_message == screen
