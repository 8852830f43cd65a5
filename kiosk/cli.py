"""Start a station from its configuration: scanner, backend, session, terminal or screen.

The backend is the config's `backend`: "mqtt" (our server through the broker, with the
store-and-forward outbox of `[offline]`) or "sip2://host:port" (any SIP2 library system,
kiosk/sip2_backend.py), which is then also the link whose state the screen shows.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

from drivers.base import MultiScanner, Scanner, StdinScanner, create_scanner
from kiosk.config import StationConfig
from kiosk.devices import DeviceWatch
from kiosk.headless import run_headless
from kiosk.backend import Backend
from kiosk.link import MqttLink
from kiosk.offline import StoreAndForward, open_store_and_forward
from kiosk.rfidpad import RfidPad
from kiosk.sip2_backend import Sip2Backend

log = logging.getLogger("thuvien.kiosk")


Link = MqttLink | Sip2Backend


def _link(config: StationConfig) -> Link:
    if config.backend.kind == "sip2":
        return Sip2Backend.from_config(config)
    return MqttLink(config.site, config.station, config.kind, config.mqtt,
                    request_timeout=config.session.request_timeout_s)


def _forward(config: StationConfig, link: Link) -> StoreAndForward | None:
    # Store and forward replays into our server only; a SIP2 station refuses while its
    # library system cannot be reached.
    return open_store_and_forward(config, link) if isinstance(link, MqttLink) else None


def _where(config: StationConfig) -> str:
    if config.backend.kind == "sip2":
        return f"SIP2 library system {config.backend.host}:{config.backend.port}"
    return f"broker {config.mqtt.host}:{config.mqtt.port}"


def _serving(link: Link, forward: StoreAndForward | None) -> Backend:
    # The session asks the store-and-forward backend when there is one: it answers
    # live while it can, from the station by the [offline] policy when it cannot.
    return forward if forward is not None else link


def _with_card_reader(config: StationConfig, scanner: Scanner) -> Scanner:
    # A patron-card reader (NFC) delivers its reads beside the barcode scanner's.
    if config.devices.card is None:
        return scanner
    return MultiScanner([scanner, create_scanner(config.devices.card)])


def _rfid_pad(config: StationConfig) -> RfidPad | None:
    # A kiosk with an RFID pad: books laid on it are read as a stack, their security
    # bits written after each confirmed loan or return. The runners start and stop it.
    return RfidPad.from_config(config) if config.devices.rfid is not None else None


def run_touch_station(config: StationConfig, stop: threading.Event) -> int:
    """Run the touch-screen kiosk until staff leave kiosk mode, restart it, or `stop`."""
    from kiosk.ui.app import run_kiosk  # Kivy only where there is a screen

    scanner = create_scanner(config.devices.scanner)
    if scanner.type_key == "stdin" and config.devices.card is not None:
        # The window reads a keyboard-wedge scanner by itself: the card reader is the
        # only device left to start.
        scanner = create_scanner(config.devices.card)
    else:
        scanner = _with_card_reader(config, scanner)
    link = _link(config)
    forward = _forward(config, link)
    # A short wait: the screen says "offline" by itself; no black screen at boot.
    link.start(wait=2)
    if forward is not None:
        forward.start()  # requests a killed station left in its outbox go first
    pad = _rfid_pad(config)
    # Keyboard-wedge scanners type into the window; there is no stream to watch.
    devices = ([] if getattr(scanner, "type_key", "") == "stdin" else [scanner]) + ([pad] if pad else [])
    try:
        with DeviceWatch(devices, link):
            return run_kiosk(config, _serving(link, forward), scanner, link=link, stop=stop, rfid_pad=pad)
    finally:
        _stop(link, forward)


def run_station(config: StationConfig, stop: threading.Event, *,
                stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run a headless station until `stop` is set, `thoat` is typed or its input ends."""
    scanner_config = config.devices.scanner
    if scanner_config.type == "stdin" and stdin is not None:
        scanner: Scanner = StdinScanner(stdin, name=scanner_config.name)
    else:
        scanner = create_scanner(scanner_config)
    scanner = _with_card_reader(config, scanner)
    link = _link(config)
    forward = _forward(config, link)
    if not link.start(wait=10):
        log.warning("%s not reachable yet; the station keeps trying", _where(config))
    if forward is not None:
        forward.start()
    pad = _rfid_pad(config)
    try:
        with DeviceWatch([scanner, *([pad] if pad else [])], link):
            run_headless(config, _serving(link, forward), scanner, out=stdout or sys.stdout, stop=stop,
                         rfid_pad=pad)
    finally:
        _stop(link, forward)
    return 0


def _stop(link: Link, forward: StoreAndForward | None) -> None:
    # The replay thread first: it must not send on a link that is going away.
    if forward is not None:
        forward.stop()
    link.stop()
    if forward is not None:
        forward.close()
