"""A gate on a simulated reader against the real server and a real Mosquitto: books that
were lent pass, a book never lent alarms and the staff get an alert with its title."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.gpio import SimulatedGpio, SimulatedGpioConfig, create_gpio
from drivers.rfid.simulated import SimulatedPad, SimulatedRfidReader
from kiosk.config import GateConfig, RfidConfig, StationConfig
from kiosk.gate import Gate, run_gate
from kiosk.link import MqttLink
from protocol import Op
from protocol.configfile import MqttConfig

from station_parts import IN_STOCK, book, wait_for

# The fixtures' types (tests/*/conftest.py): not imported, since several test folders
# have a module called conftest.
Library = RawClient = Any

DE_MEN = "Dế Mèn phiêu lưu ký"


@pytest.fixture
def pins() -> Iterator[SimulatedGpio]:
    board = create_gpio(SimulatedGpioConfig.model_validate(
        {"outputs": {"relay": {"pin": 17}, "light_red": {"pin": 27}}}))
    assert isinstance(board, SimulatedGpio)
    yield board
    board.close()


def test_lent_books_pass_and_a_book_never_lent_alarms_with_its_title(
        library: Library, alerts: RawClient, pins: SimulatedGpio) -> None:
    library.lend("TN00001")  # before the gate starts: known from gate.sync
    pad = SimulatedPad()
    reader = SimulatedRfidReader(pad)
    reader.open()
    link = MqttLink(library.config.site, "gate-1", "gate",
                    MqttConfig(host="127.0.0.1", port=library.broker.port))
    gate = Gate(reader, link, rfid=RfidConfig(poll_interval_s=0.05), config=GateConfig(alarm_s=0.5),
                pins=pins)
    link.on_ledger, link.on_connect = gate.on_ledger, gate.on_connect
    library.links.append(link)
    assert link.start(wait=10)
    assert wait_for(lambda: gate.synced), "gate.sync never answered"
    assert gate.on_loan("TN.00001") and gate.on_loan("TN00001")

    library.lend("TN00002")  # while the gate runs: known from the ledger topic
    assert wait_for(lambda: gate.on_loan("TN00002")), "the ledger entry never reached the gate"

    stop = threading.Event()
    runner = threading.Thread(target=gate.run, args=(stop,), daemon=True)
    runner.start()
    try:
        # Both lent, both with a tag still "in stock" (the kiosk's AFI write failed):
        # the on-loan set lets them through.
        pad.place(book(1, "TN00001", IN_STOCK), book(2, "TN00002", IN_STOCK))
        assert wait_for(lambda: len(gate.decisions) == 2)
        assert {(d.item, d.outcome, d.reason) for d in gate.decisions} == {
            ("TN00001", "pass", "on_loan"), ("TN00002", "pass", "on_loan")}
        assert [s.state for s in pins.pin("relay").states] == [False]

        pad.place(book(3, "TN00003", IN_STOCK))  # never lent
        assert wait_for(lambda: len(gate.decisions) == 3)
        assert (gate.decisions[-1].outcome, gate.decisions[-1].reason) == ("alarm", "afi")
        assert True in [s.state for s in pins.pin("relay").states]
        assert True in [s.state for s in pins.pin("light_red").states]
        alert = alerts.next_alert("gate.alarm")
    finally:
        stop.set()
        runner.join(5)
    assert DE_MEN in alert.message
    assert {k: alert.data[k] for k in ("station", "item", "title", "reason")} == {
        "station": "gate-1", "item": "TN00003", "title": DE_MEN, "reason": "afi"}
    assert all(d.seconds >= 0 for d in gate.decisions)  # the figure itself: bench/devices.py


def test_a_return_takes_the_book_out_of_the_gates_set(library: Library) -> None:
    library.lend("TN00004")
    link = MqttLink(library.config.site, "gate-2", "gate",
                    MqttConfig(host="127.0.0.1", port=library.broker.port))
    reader = SimulatedRfidReader(SimulatedPad())
    reader.open()
    gate = Gate(reader, link, rfid=RfidConfig(), config=GateConfig())
    link.on_ledger, link.on_connect = gate.on_ledger, gate.on_connect
    library.links.append(link)
    assert link.start(wait=10)
    assert wait_for(lambda: gate.synced and gate.on_loan("TN00004"))
    from protocol import ReturnArgs

    assert library.station("kiosk-2").request(Op.LOAN_RETURN, ReturnArgs(item="TN00004")).ok
    assert wait_for(lambda: not gate.on_loan("TN00004"))
    assert gate.ledger_seq == library.ledger_count()


def test_run_gate_from_its_config(library: Library, alerts: RawClient) -> None:
    """The station as `thuvien` starts it: the reader, the pins and the link from config."""
    never_lent = book(5, "TN.00003", IN_STOCK)
    config = StationConfig.model_validate({
        "site": library.config.site, "station": "gate-3", "kind": "gate",
        "mqtt": {"host": "127.0.0.1", "port": library.broker.port},
        "voice": {"enabled": False, "sounds": False},
        "devices": {
            "rfid": {"type": "simulated", "tags": [
                {"uid": never_lent.uid, "afi": IN_STOCK, "data": bytes(never_lent.memory).hex()}]},
            "gpio": {"type": "simulated", "outputs": {"relay": {"pin": 17}},
                     "inputs": {"counter": {"pin": 22}}},
        },
    })
    stop = threading.Event()
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(run_gate(config, stop)), daemon=True)
    runner.start()
    try:
        alert = alerts.next_alert("gate.alarm", timeout=15)
    finally:
        stop.set()
        runner.join(10)
    assert result == [0]
    assert alert.data["station"] == "gate-3" and alert.data["title"] == DE_MEN
    assert json.loads(alert.model_dump_json())["data"]["reason"] == "afi"


def test_run_gate_without_a_reader_is_a_config_error(library: Library) -> None:
    config = StationConfig(site=library.config.site, station="gate-4", kind="gate")
    assert run_gate(config, threading.Event()) == 2
