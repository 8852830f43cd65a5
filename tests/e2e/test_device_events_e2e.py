"""A reader unplugged and plugged back, seen by everyone on the broker: status and events."""

from __future__ import annotations

import json
import queue
import time

import pytest

from drivers.rfid.reader import ReaderFault
from drivers.rfid.simulated import SimulatedRfidReader
from kiosk.devices import DeviceWatch
from protocol import topics


def next_matching(client, topic: str, predicate, timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got, payload, _retained = client.next(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if got == topic:
            body = json.loads(payload)
            if predicate(body):
                return body
    pytest.fail(f"nothing matching on {topic} within {timeout} s")


def test_hot_plug_shows_in_status_and_events(library, station, raw, site) -> None:
    watcher = raw("device-watcher")
    watcher.subscribe(f"thuvien/v1/{site}/station/kiosk-7/#")
    link = station("kiosk-7")
    reader = SimulatedRfidReader(name="rfid")
    reader.open()
    status_topic = topics.station_topic(site, "kiosk-7", "status")
    event_topic = topics.station_topic(site, "kiosk-7", "event")
    watch = DeviceWatch([reader], link, interval=0.05)
    with watch:
        next_matching(watcher, status_topic, lambda s: s.get("devices", {}).get("rfid") == "ok")
        reader.pad.unplug()
        with pytest.raises(ReaderFault):
            reader.inventory()
        status = next_matching(watcher, status_topic, lambda s: s.get("devices", {}).get("rfid") == "fault")
        assert status["state"] == "online"
        fault = next_matching(watcher, event_topic, lambda e: e["type"] == "device.fault")
        assert fault["data"]["device"] == "rfid" and fault["data"]["state"] == "fault"
        reader.pad.replug()
        reader.inventory()  # the station's next poll finds it back
        # The status changes first, then the event follows (one client, one order).
        next_matching(watcher, status_topic, lambda s: s.get("devices", {}).get("rfid") == "ok")
        ok = next_matching(watcher, event_topic, lambda e: e["type"] == "device.ok")
        assert ok["data"] == {"device": "rfid", "state": "ok", "detail": ""}
