"""Run the real kiosk for one scenario of `ui_scenarios.py`, in a process of its own.

    python kiosk_driver.py '{"scenario": "borrow", "site": ..., "port": ..., "out": ...}'

The kiosk talks to the library through a real MqttLink; its scanner is the simulated
twin, its printer too, and its voice a recorder. The scenario runs on a thread of its
own and drives the app through `kiosk.ui.pilot.Pilot`; what it reports (and any failure,
with its traceback) is written as JSON to `out`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


class RecordingVoice:
    """The announcer's twin: remembers every sentence and chime, in order."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []
        self.chimes: list[str] = []
        self.closed = False

    def say(self, text: str, language: str) -> None:
        self.said.append((text, language))

    def chime(self, kind: str) -> None:
        self.chimes.append(kind)

    def close(self) -> None:
        self.closed = True


@dataclass
class Context:
    pilot: Any
    app: Any
    scanner: Any
    voice: RecordingVoice
    printer: Any
    link: Any
    args: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)
    exiting: bool = False
    rfid: Any = None  # the SimulatedPad of the kiosk's RFID pad, with {"rfid": true}

    def expect_exit(self, code: int) -> None:
        """The scenario ends the app itself, with `code`."""
        self.exiting = True
        self.report["expected_exit"] = code


def main() -> int:
    args = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(relativeCreated)6.0f %(threadName)s %(name)s: %(message)s")
    from drivers.base import SimulatedScanner
    from drivers.printer import SimulatedPrinter
    from kiosk.config import StationConfig
    from kiosk.link import MqttLink
    from kiosk.ui.app import run_kiosk

    import ui_scenarios

    config = StationConfig.model_validate({
        "site": args["site"], "station": "kiosk-1", "language": args.get("language", "vi"),
        "mqtt": {"host": "127.0.0.1", "port": args["port"]},
        "session": {"request_timeout_s": 3, **args.get("session", {})},
        "ui": {"fullscreen": False, "width": 800, "height": 480, "school_name": "Trường THCS Thử nghiệm",
               **args.get("ui", {})},
        "voice": {"enabled": False, "sounds": False},
    })
    link = MqttLink(config.site, config.station, config.kind, config.mqtt,
                    request_timeout=config.session.request_timeout_s)
    link.start(wait=args.get("link_wait", 10))
    scanner, voice, printer = SimulatedScanner(), RecordingVoice(), SimulatedPrinter()
    rfid_pad, rfid_tags = None, None
    if args.get("rfid"):
        from drivers.rfid.simulated import SimulatedPad, SimulatedRfidReader
        from kiosk.config import RfidConfig
        from kiosk.rfidpad import RfidPad

        rfid_tags = SimulatedPad()
        rfid_pad = RfidPad(SimulatedRfidReader(rfid_tags),
                           RfidConfig(poll_interval_s=0.05, absent_after_s=0.3))
    scenario = getattr(ui_scenarios, args["scenario"])
    report: dict[str, Any] = {"expected_exit": 0}

    def ready(app: Any) -> None:
        from kiosk.ui.pilot import Pilot  # now that the window is open, with our settings

        pilot = Pilot(app)
        ctx = Context(pilot, app, scanner, voice, printer, link, args, report, rfid=rfid_tags)

        def body() -> None:
            try:
                pilot.wait_for(lambda: app.warning is not None, what="the screens to be ready")
                scenario(ctx)
            except BaseException:
                report["error"] = traceback.format_exc()
            finally:
                if not ctx.exiting or "error" in report:
                    pilot.call(app.quit, 0)

        threading.Thread(target=body, name="scenario", daemon=True).start()

    try:
        code = run_kiosk(config, link, scanner, link=link, announcer=voice, printer=printer,
                         on_ready=ready, rfid_pad=rfid_pad)
    finally:
        link.stop()
    report["exit"] = code
    report["voice_closed"] = voice.closed
    Path(args["out"]).write_text(json.dumps(report, ensure_ascii=False, default=str), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
