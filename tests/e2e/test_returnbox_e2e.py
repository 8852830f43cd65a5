"""A return box on a simulated chute against the real server and a real Mosquitto."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.base import Read
from drivers.gpio import SimulatedGpio, SimulatedGpioConfig, create_gpio
from drivers.rfid.simulated import SimulatedPad, SimulatedRfidReader
from kiosk.config import ReturnboxConfig, RfidConfig, StationConfig
from kiosk.link import MqttLink
from kiosk.returnbox import ReturnBox, run_returnbox
from protocol.configfile import MqttConfig

from station_parts import IN_STOCK, ON_LOAN, book, wait_for

# The fixtures' types (tests/*/conftest.py): not imported, since several test folders
# have a module called conftest.
Library = RawClient = Any

DE_MEN = "Dế Mèn phiêu lưu ký"


@pytest.fixture
def pins() -> Iterator[SimulatedGpio]:
    board = create_gpio(SimulatedGpioConfig.model_validate({
        "outputs": {"light_green": {"pin": 17}, "light_red": {"pin": 27}},
        "inputs": {"bin_full": {"pin": 22}}}))
    assert isinstance(board, SimulatedGpio)
    yield board
    board.close()


@pytest.fixture
def chute(library: Library, pins: SimulatedGpio) -> Iterator[tuple[ReturnBox, SimulatedPad]]:
    pad = SimulatedPad()
    reader = SimulatedRfidReader(pad)
    reader.open()
    link = MqttLink(library.config.site, "returnbox-1", "returnbox",
                    MqttConfig(host="127.0.0.1", port=library.broker.port))
    box = ReturnBox(link, rfid=RfidConfig(poll_interval_s=0.05), config=ReturnboxConfig(),
                    reader=reader, pins=pins, language="vi")
    link.on_connect = box.on_connect
    library.links.append(link)
    assert link.start(wait=10)
    stop = threading.Event()
    runner = threading.Thread(target=box.run, args=(stop,), daemon=True)
    runner.start()
    yield box, pad
    stop.set()
    runner.join(5)


def test_a_lent_book_is_returned_and_its_tag_set_in_stock(library: Library,
                                                          chute: tuple[ReturnBox, SimulatedPad],
                                                          pins: SimulatedGpio) -> None:
    box, pad = chute
    library.lend("TN00001")
    before = library.ledger_count()
    pad.place(book(1, "TN00001", ON_LOAN))
    assert wait_for(lambda: box.outcomes)
    [outcome] = box.outcomes
    assert outcome.returned and outcome.item == "TN.00001" and outcome.title == DE_MEN
    assert library.ledger_count() == before + 1
    assert pad.tag(outcome.uid or "").afi == IN_STOCK
    assert [s.state for s in pins.pin("light_green").states][:2] == [False, True]
    # Lying in the chute, it is not returned again.
    time.sleep(0.3)
    assert len(box.outcomes) == 1 and library.ledger_count() == before + 1


def test_an_unknown_book_is_reported_to_the_staff(library: Library, alerts: RawClient,
                                                  chute: tuple[ReturnBox, SimulatedPad],
                                                  pins: SimulatedGpio) -> None:
    box, pad = chute
    before = library.ledger_count()
    pad.place(book(2, "XX99999", ON_LOAN))
    alert = alerts.next_alert("returnbox.unreturned")
    assert alert.data["station"] == "returnbox-1"
    assert alert.data["item"] == "XX99999" and alert.data["code"] == "unknown_item"
    assert "XX99999" in alert.message
    assert library.ledger_count() == before
    assert [s.state for s in pins.pin("light_red").states][:2] == [False, True]


def test_a_barcode_never_lent_is_reported_with_its_title(library: Library, alerts: RawClient,
                                                         chute: tuple[ReturnBox, SimulatedPad]) -> None:
    box, _pad = chute
    outcome = box.on_read(Read(code="TN00003"))
    assert outcome is not None and outcome.code == "item_not_on_loan"
    alert = alerts.next_alert("returnbox.unreturned")
    assert alert.data["title"] == DE_MEN and DE_MEN in alert.message


def test_bin_full_reaches_the_staff(library: Library, alerts: RawClient,
                                    chute: tuple[ReturnBox, SimulatedPad],
                                    pins: SimulatedGpio) -> None:
    pins.drive("bin_full", True)
    alert = alerts.next_alert("returnbox.full")
    assert alert.data["station"] == "returnbox-1" and "returnbox-1" in alert.message
    assert chute[0].full


def test_run_returnbox_from_its_config(library: Library) -> None:
    library.lend("TN00002")
    before = library.ledger_count()
    lent = book(3, "TN00002", ON_LOAN)
    config = StationConfig.model_validate({
        "site": library.config.site, "station": "returnbox-2", "kind": "returnbox",
        "mqtt": {"host": "127.0.0.1", "port": library.broker.port},
        "voice": {"enabled": False, "sounds": False},
        "devices": {
            "scanner": {"type": "simulated"},
            "rfid": {"type": "simulated", "tags": [
                {"uid": lent.uid, "afi": ON_LOAN, "data": bytes(lent.memory).hex()}]},
            "gpio": {"type": "simulated", "outputs": {"light_green": {"pin": 17}},
                     "inputs": {"bin_full": {"pin": 22}}},
        },
    })
    stop = threading.Event()
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(run_returnbox(config, stop)), daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: library.ledger_count() == before + 1, timeout=15)
    finally:
        stop.set()
        runner.join(10)
    assert result == [0]
