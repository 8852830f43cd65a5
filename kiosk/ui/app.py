"""`run_kiosk`: the touch-screen station, from its configuration to the exit code.

Kivy reads its settings when it is first imported and opens the window when the first
widget is made, so nothing here imports Kivy before `_configure_kivy` has set them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from drivers.base import Scanner
from kiosk.backend import Backend
from kiosk.config import StationConfig, UiConfig
from kiosk.ui.announcer import Announcer, VoiceState, make_announcer
from kiosk.ui.receipts import ReceiptDesk
from protocol import Command
from protocol.models import DeviceState

if TYPE_CHECKING:
    from kiosk.rfidpad import RfidPad
    from kiosk.ui.kiosk_app import KioskApp

log = logging.getLogger("thuvien.kiosk.ui")

EXIT_OK = 0        # stopped, or staff left kiosk mode: systemd leaves it down
EXIT_RESTART = 75  # staff chose "restart": non-zero, so systemd (Restart=on-failure) starts it again


class StationLink(Protocol):
    """What the screen uses of the station's MQTT link (`kiosk.link.MqttLink`) besides
    requests: whether it is connected, the status it publishes, and the server's commands."""

    connected: threading.Event
    devices: dict[str, DeviceState]
    state: str
    on_command: Callable[[Command], None] | None

    def publish_status(self) -> None: ...


def _configure_kivy(ui: UiConfig) -> None:
    os.environ.setdefault("KIVY_NO_ARGS", "1")         # our command line is not Kivy's
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")   # log through our logging setup
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    from kivy.config import Config

    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "keyboard_mode", "system")      # never pop up a virtual keyboard
    Config.set("kivy", "window_icon", "")
    Config.set("input", "mouse", "mouse,disable_multitouch")  # no red dots on right-click
    if ui.fullscreen:
        Config.set("graphics", "fullscreen", "auto")
        Config.set("graphics", "borderless", "1")
        Config.set("graphics", "show_cursor", "0")
    else:
        Config.set("graphics", "fullscreen", "0")
        Config.set("graphics", "borderless", "0")
        Config.set("graphics", "width", str(ui.width))
        Config.set("graphics", "height", str(ui.height))
        Config.set("graphics", "resizable", "1")


def run_kiosk(config: StationConfig, backend: Backend, scanner: Scanner, *,
              link: StationLink | None = None,
              stop: threading.Event | None = None,
              announcer: Announcer | None = None,
              printer: Any | None = None,
              clock: Callable[[], float] = time.monotonic,
              on_ready: Callable[[KioskApp], None] | None = None,
              rfid_pad: RfidPad | None = None) -> int:
    """Run the touch screen until staff leave kiosk mode or restart it, or `stop` is set.

    `backend` answers the session's requests (the MQTT link in production); `link`, when
    given (the same MqttLink), tells the screen whether the library is reachable, carries
    the out-of-service state into the station's status, and brings the server's
    commands (lock, unlock, say). `scanner` is started and stopped here; a `stdin`
    scanner is not started: keyboard-wedge scanners type into the window instead.
    `announcer` defaults to `kiosk.voice.Voice` (silent if it cannot start); `printer`
    to the one in `[devices.printer]`. `on_ready(app)` is called on the UI thread once
    the first screen is up (tests, screenshots). `rfid_pad`, when given, is a second
    input beside `scanner` (started and stopped here) and hears every outcome, to write
    the tags' AFI.

    Returns the process's exit code: EXIT_OK (0) when stopped or when staff leave
    kiosk mode, EXIT_RESTART (75) when staff choose "restart".
    Call it from the main thread; Kivy allows one app per process.
    """
    _configure_kivy(config.ui)
    voice_state: VoiceState = "ok"
    if announcer is None:
        announcer, voice_state = make_announcer(config.voice)
    from kiosk.ui.kiosk_app import KioskApp

    app = KioskApp(config, backend, scanner, link=link, announcer=announcer,
                   voice_state=voice_state, receipts=ReceiptDesk(config, printer), stop=stop,
                   clock=clock, on_ready=on_ready, rfid_pad=rfid_pad)
    try:
        app.run()
    finally:
        # A stop that came from elsewhere (the window closed, an exception) still ends
        # the reader's session and releases the devices.
        if app.worker.alive:
            app.on_stop()
    return app.exit_code
