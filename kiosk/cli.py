"""Start a station from its configuration: scanner, MQTT link, session, terminal."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

from drivers.base import Scanner, StdinScanner, create_scanner
from kiosk.config import StationConfig
from kiosk.headless import run_headless
from kiosk.link import MqttLink

log = logging.getLogger("thuvien.kiosk")


def _watch_devices(scanner: Scanner, link: MqttLink, stop: threading.Event) -> None:
    # Device health goes into the retained status whenever it changes.
    while True:
        link.set_device(scanner.name, scanner.state)
        if stop.wait(1.0):
            return


class _DeviceWatch:
    """Keeps the station's status in step with its devices while the station runs."""

    def __init__(self, scanner: Scanner, link: MqttLink) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_watch_devices, args=(scanner, link, self._stop),
                                        name="device-watch", daemon=True)

    def __enter__(self) -> _DeviceWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _link(config: StationConfig) -> MqttLink:
    return MqttLink(config.site, config.station, config.kind, config.mqtt,
                    request_timeout=config.session.request_timeout_s)


def run_touch_station(config: StationConfig, stop: threading.Event) -> int:
    """Run the touch-screen kiosk until staff leave kiosk mode, restart it, or `stop`."""
    from kiosk.ui.app import run_kiosk  # Kivy only where there is a screen

    scanner = create_scanner(config.devices.scanner)
    link = _link(config)
    # A short wait: the screen says "offline" by itself; no black screen at boot.
    link.start(wait=2)
    try:
        if scanner.type_key == "stdin":
            # Keyboard-wedge scanners type into the window; there is no stream to watch.
            return run_kiosk(config, link, scanner, link=link, stop=stop)
        with _DeviceWatch(scanner, link):
            return run_kiosk(config, link, scanner, link=link, stop=stop)
    finally:
        link.stop()


def run_station(config: StationConfig, stop: threading.Event, *,
                stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run a headless station until `stop` is set, `thoat` is typed or its input ends."""
    scanner_config = config.devices.scanner
    if scanner_config.type == "stdin" and stdin is not None:
        scanner: Scanner = StdinScanner(stdin, name=scanner_config.name)
    else:
        scanner = create_scanner(scanner_config)
    link = _link(config)
    if not link.start(wait=10):
        log.warning("broker %s:%s not reachable yet; the station keeps trying",
                    config.mqtt.host, config.mqtt.port)
    try:
        with _DeviceWatch(scanner, link):
            run_headless(config, link, scanner, out=stdout or sys.stdout, stop=stop)
    finally:
        link.stop()
    return 0
