"""Device health at a station: the status's `devices` and the `device.fault`/`device.ok` events.

Every driver reports its health as a `state` ("ok", "fault", "absent"); drivers that
reconnect by themselves (RFID readers, serial scanners, cameras) do it in `check()`, which
the watch calls once a second. A change goes into the retained status at once; a fault
becomes a `device.fault` event (the staff page shows it as an alert), and the way back
from a fault a `device.ok` event, so an unplugged and replugged scanner is seen twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from protocol import DeviceEventData
from protocol.models import DeviceState

log = logging.getLogger("thuvien.kiosk.devices")


class Device(Protocol):
    name: str

    @property
    def state(self) -> DeviceState: ...


class EventSink(Protocol):
    def set_device(self, name: str, state: DeviceState) -> None: ...

    def publish_event(self, type_: str, data: DeviceEventData) -> bool: ...


def _detail(device: Device) -> str:
    # Drivers that know why they failed say it in `last_error`; others just fault.
    return str(getattr(device, "last_error", "") or "")[:500]


class DeviceWatch:
    """Polls the station's devices and reports each change of state.

    `poll()` does one round and is what tests call; `start()` runs it on a thread every
    `interval` seconds until `stop()`. Use as a context manager around the station's run.
    """

    def __init__(self, devices: Iterable[Device], sink: EventSink, *, interval: float = 1.0,
                 on_change: Callable[[str, DeviceState], None] | None = None) -> None:
        # A merged scanner (barcode + card reader) reports each of its parts by name.
        self.devices = [part for device in devices for part in getattr(device, "parts", None) or (device,)]
        self.interval = interval
        self._sink = sink
        self._on_change = on_change
        self._known: dict[str, DeviceState] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> dict[str, DeviceState]:
        for device in self.devices:
            check = getattr(device, "check", None)
            try:
                state: DeviceState = check() if callable(check) else device.state
            except Exception as exc:  # a driver bug must not end the watch
                log.exception("device %s: check failed", device.name)
                state = "fault"
                setattr(device, "last_error", f"check failed: {exc}")
            before = self._known.get(device.name)
            if state == before:
                continue
            self._known[device.name] = state
            self._sink.set_device(device.name, state)
            if state == "fault":
                log.warning("device %s: fault %s", device.name, _detail(device))
                self._sink.publish_event("device.fault", DeviceEventData(
                    device=device.name, state=state, detail=_detail(device)))
            elif state == "ok" and before == "fault":
                log.info("device %s: ok again", device.name)
                self._sink.publish_event("device.ok", DeviceEventData(device=device.name, state=state))
            if self._on_change is not None:
                self._on_change(device.name, state)
        return dict(self._known)

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.interval):
                return

    def start(self) -> DeviceWatch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="device-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> DeviceWatch:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
