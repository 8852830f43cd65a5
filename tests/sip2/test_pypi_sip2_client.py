"""An independent SIP2 client we did not write, the PyPI `sip2` package's low-level
`Sip2` class, against our server on a real socket over a real seeded SQLite library.

Its flaws (STACK.md), and what this test does about each:
- TLS is on by default: `tlsEnable = False`.
- Its checksum is not zero-padded (`format(x, 'X')`, 3 digits below 0x1000) and sums
  characters, not bytes: its `_crc_calc` is replaced on the instance by one that does
  both right, so what it sends is valid SIP2. (Unpatched, a 3-digit checksum is not an
  AZ trailer to us: the message is answered without error detection, which its parser,
  cutting 6 characters off every answer, would misread.)
- Its checksum check of our answers always passes: this test checks them itself, by
  decoding every raw answer (`last_response`) with our codec, which verifies AZ.
- It reads an answer with one `recv(4096)`: our answers here are a few hundred bytes.
- Its wrapper refuses checkouts for unrestricted patrons: the low-level class is used.
- It logs to `sip2.log` in the working directory: it gets a logger of the test's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest

Sip2Module = pytest.importorskip("Sip2.sip2")

from circulation_sample import AN, HOA, TN, Library  # noqa: E402
from conftest import INSTITUTION, KIOSK, KIOSK_PASSWORD  # noqa: E402

from protocol import sip2  # noqa: E402
from server.sip2 import Sip2Server  # noqa: E402


def _crc_over_bytes(message: str) -> str:
    return sip2.checksum(message.encode("utf-8"))


@pytest.fixture
def client(sip2_server: Sip2Server) -> Iterator[Any]:
    instance = Sip2Module.Sip2()
    instance.hostName = "127.0.0.1"
    instance.hostPort = sip2_server.port
    instance.tlsEnable = False
    instance.socketTimeout = 5
    instance.institutionId = INSTITUTION
    instance.scLocation = "Thu vien"
    instance.log = logging.getLogger("tests.sip2.pypi-client")
    instance._crc_calc = _crc_over_bytes
    assert instance.connect() is True
    yield instance
    instance.disconnect()


def exchange(client: Any, request: str, parse: Any) -> tuple[dict[str, Any], sip2.Message]:
    """Send with the client, parse with the client, and check the raw answer ourselves."""
    raw = client.get_response(request)
    ours = sip2.decode(raw.encode("utf-8"), strict=True)  # raises on a bad AZ
    assert ours.checksum is not None and ours.sequence == int(request[-8])
    return parse(raw), ours


def test_the_pypi_client_session(client: Any, library: Library) -> None:
    # Login (93/94).
    parsed, ours = exchange(client, client.sip_login_request(KIOSK, KIOSK_PASSWORD),
                            client.sip_login_response)
    assert parsed["fixed"]["Ok"] == "1"

    # Status (99/98).
    parsed, ours = exchange(client, client.sip_sc_status_request(), client.sip_sc_status_response)
    fixed = parsed["fixed"]
    assert fixed["OnlineStatus"] == "Y" and fixed["CheckoutOk"] == "Y"
    assert fixed["CheckinOk"] == "Y" and fixed["StatusUpdateOk"] == "N"
    assert parsed["variable"]["AO"] == [INSTITUTION]
    assert parsed["variable"]["BX"] == [sip2.supported_messages(*(
        "patron_status checkout checkin block_patron sc_acs_status resend login "
        "patron_information end_patron_session item_information renew renew_all").split())]

    # Checkout (11/12) for a teacher, two books.
    client.patron = HOA
    for item in (TN[0], TN[1]):
        parsed, ours = exchange(client, client.sip_checkout_request(item),
                                client.sip_checkout_response)
        assert parsed["fixed"]["Ok"] == "1", parsed
        assert parsed["variable"]["AB"] == [item]
        assert parsed["variable"]["AJ"] == ["Dế Mèn phiêu lưu ký"]
        assert parsed["variable"]["AH"] == ["20261019    235959"]  # 14 days, a Monday
    assert library.loan(TN[0]) is not None and library.loan(TN[1]) is not None

    # Patron information (63/64) with the charged items.
    parsed, ours = exchange(client, client.sip_patron_information_request("charged", "1", "5"),
                            client.sip_patron_information_response)
    assert parsed["fixed"]["ChargedItemsCount"] == "0002"
    assert parsed["variable"]["AE"] == ["Lê Thị Hoa"]
    assert sorted(parsed["variable"]["AU"]) == [TN[0], TN[1]]
    assert parsed["variable"]["BL"] == ["Y"]

    # Patron status (23/24).
    client.patron = AN
    parsed, ours = exchange(client, client.sip_patron_status_request(),
                            client.sip_patron_status_response)
    assert parsed["variable"]["AE"] == ["Nguyễn Văn An"]
    assert parsed["fixed"]["PatronStatus"][:2] == "  "

    # Item information (17/18) of a lent book.
    parsed, ours = exchange(client, client.sip_item_information_request(TN[0]),
                            client.sip_item_information_response)
    assert parsed["fixed"]["CirculationStatus"] == "04"
    assert parsed["variable"]["AH"] == ["20261019    235959"]

    # Checkin (09/10) of one of them.
    parsed, ours = exchange(client, client.sip_checkin_request(TN[0]),
                            client.sip_checkin_response)
    assert parsed["fixed"]["Ok"] == "1" and parsed["fixed"]["Resensitize"] == "Y"
    assert library.loan(TN[0]) is None and library.loan(TN[1]) is not None

    # Item information again: back on the shelf.
    parsed, ours = exchange(client, client.sip_item_information_request(TN[0]),
                            client.sip_item_information_response)
    assert parsed["fixed"]["CirculationStatus"] == "03"

    # End of the session (35/36).
    parsed, ours = exchange(client, client.sip_end_patron_session_request(),
                            client.sip_end_patron_session_response)
    assert parsed["fixed"]["EndSession"] == "Y"
    assert [e.op for e in library.ledger()] == ["checkout", "checkout", "return"]
    assert all(e.station == KIOSK for e in library.ledger())


def test_the_pypi_clients_own_checksum_is_not_trusted(sip2_server: Sip2Server) -> None:
    """Unpatched, the client's checksum over characters is wrong for a Vietnamese
    location: our server asks for a resend (96) instead of acting on it."""
    client = Sip2Module.Sip2()
    client.hostName, client.hostPort, client.tlsEnable = "127.0.0.1", sip2_server.port, False
    client.log = logging.getLogger("tests.sip2.pypi-client")
    client.scLocation = "Thư viện"  # CP: characters and bytes differ
    client.connect()
    try:
        request = client.sip_login_request(KIOSK, KIOSK_PASSWORD)
        # Four digits here, so the trailer is read as one, and fails its check.
        assert len(request.rstrip("\r").rsplit("AZ", 1)[1]) == 4
        assert client.get_response(request) == "96AZFEF6\r"
    finally:
        client.disconnect()


def test_field_names_of_the_pypi_client_match_ours() -> None:
    """Its fixed-field slices of a 12 agree with our layout (an independent reading of
    the spec's positions)."""
    message = sip2.CheckoutResponse(ok=True, renewal_ok=True, magnetic_media="N",
                                    desensitize=True, transaction_date=dt.datetime(2026, 10, 5),
                                    AO="x", AA="p", AB="i", AJ="t", AH="d")
    parsed = Sip2Module.Sip2().sip_checkout_response(
        sip2.encode(message, error_detection=False).decode())
    assert parsed["fixed"] == {"Ok": "1", "RenewalOk": "Y", "MagneticMedia": "N",
                               "Desensitize": "Y", "TransactionDate": "20261005    000000"}
