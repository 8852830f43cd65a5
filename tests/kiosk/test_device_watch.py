"""Device health into the status and the device.fault / device.ok events."""

from __future__ import annotations

import pytest

from drivers.rfid.reader import ReaderFault
from drivers.rfid.simulated import SimulatedRfidReader
from kiosk.devices import DeviceWatch
from protocol import DeviceEventData


class Sink:
    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []
        self.events: list[tuple[str, DeviceEventData]] = []

    def set_device(self, name: str, state: str) -> None:
        self.states.append((name, state))

    def publish_event(self, type_: str, data: DeviceEventData) -> bool:
        self.events.append((type_, data))
        return True


class Flaky:
    """A device whose check raises: a driver bug must not end the watch."""

    name = "camera"
    state = "ok"

    def check(self) -> str:
        raise RuntimeError("driver bug")


def test_unplug_and_replug_give_one_fault_and_one_ok() -> None:
    reader = SimulatedRfidReader(name="rfid")
    reader.open()
    sink = Sink()
    watch = DeviceWatch([reader], sink)
    assert watch.poll() == {"rfid": "ok"}
    assert sink.events == []  # ok at start is not news
    reader.pad.unplug()
    with pytest.raises(ReaderFault):
        reader.inventory()
    watch.poll()
    watch.poll()  # no change: nothing more
    reader.pad.replug()
    reader.inventory()
    watch.poll()
    assert sink.states == [("rfid", "ok"), ("rfid", "fault"), ("rfid", "ok")]
    assert [(t, d.device, d.state) for t, d in sink.events] == [
        ("device.fault", "rfid", "fault"), ("device.ok", "rfid", "ok")]


def test_a_failing_check_is_a_fault_with_the_reason_and_the_watch_goes_on() -> None:
    reader = SimulatedRfidReader(name="rfid")
    reader.open()
    sink = Sink()
    states = DeviceWatch([Flaky(), reader], sink).poll()
    assert states == {"camera": "fault", "rfid": "ok"}
    [(kind, data)] = sink.events
    assert kind == "device.fault" and data.detail == "check failed: driver bug"


def test_absent_to_ok_is_not_an_event() -> None:
    reader = SimulatedRfidReader(name="rfid")
    sink = Sink()
    watch = DeviceWatch([reader], sink)
    watch.poll()
    reader.open()
    watch.poll()
    assert sink.states == [("rfid", "absent"), ("rfid", "ok")]
    assert sink.events == []
