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


def run_station(config: StationConfig, stop: threading.Event, *,
                stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run a headless station until `stop` is set, `thoat` is typed or its input ends."""
    scanner_config = config.devices.scanner
    if scanner_config.type == "stdin" and stdin is not None:
        scanner: Scanner = StdinScanner(stdin, name=scanner_config.name)
    else:
        scanner = create_scanner(scanner_config)
    link = MqttLink(config.site, config.station, config.kind, config.mqtt,
                    request_timeout=config.session.request_timeout_s)
    if not link.start(wait=10):
        log.warning("broker %s:%s not reachable yet; the station keeps trying",
                    config.mqtt.host, config.mqtt.port)
    watcher_stop = threading.Event()
    watcher = threading.Thread(target=_watch_devices, args=(scanner, link, watcher_stop),
                               name="device-watch", daemon=True)
    watcher.start()
    try:
        run_headless(config, link, scanner, out=stdout or sys.stdout, stop=stop)
    finally:
        watcher_stop.set()
        watcher.join(timeout=2)
        link.stop()
    return 0
