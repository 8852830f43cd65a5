"""The summary screen's receipt choices: print it, show it as a QR code, or nothing.

A thin adapter over `kiosk.receipt` (the receipt, its QR code, its printing) and
`drivers.printer`, both imported lazily: a station without them, or whose printer is
missing, still lends books; the buttons then say what went wrong in plain words.
Printing blocks for as long as the printer takes: call `print` off the UI thread.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

from kiosk.config import StationConfig
from kiosk.session import SessionEnded

log = logging.getLogger("thuvien.kiosk.ui.receipts")

PrinterState = Literal["ok", "fault", "absent", "off"]  # off: no printer configured


class ReceiptDesk:
    def __init__(self, config: StationConfig, printer: Any | None = None) -> None:
        self._config = config
        self._printer = printer
        self._printer_tried = printer is not None

    def _get_printer(self) -> Any | None:
        if not self._printer_tried:
            self._printer_tried = True
            printer_config = getattr(self._config.devices, "printer", None)
            if printer_config is not None:
                try:
                    from drivers.printer import create_printer

                    self._printer = create_printer(printer_config)
                except Exception:
                    log.exception("the receipt printer could not be set up")
        return self._printer

    @property
    def printer_name(self) -> str | None:
        printer = self._get_printer()
        return None if printer is None else str(printer.name)

    @property
    def can_print(self) -> bool:
        return self._get_printer() is not None

    def printer_state(self) -> PrinterState:
        printer = self._get_printer()
        return "off" if printer is None else printer.state

    def check_printer(self) -> PrinterState:
        """Ask the printer how it is (opens a connection: blocks; not on the UI thread)."""
        printer = self._get_printer()
        if printer is None:
            return "off"
        try:
            return printer.probe()  # type: ignore[no-any-return]
        except Exception:
            log.exception("the receipt printer could not be checked")
            return "fault"

    def receipt(self, ended: SessionEnded, reader_name: str | None) -> Any:
        from kiosk.receipt import Receipt

        return Receipt.from_session(ended, school_name=self._config.ui.school_name,
                                    station=self._config.station,
                                    printed_at=dt.datetime.now().astimezone(),
                                    reader_name=reader_name)

    def print(self, ended: SessionEnded, reader_name: str | None, language: str) -> bool:
        """Print the receipt; False (logged) if it did not come out. Blocks."""
        try:
            from kiosk.receipt import print_receipt

            result = print_receipt(self._get_printer(), self.receipt(ended, reader_name), language)
        except Exception:
            log.exception("the receipt could not be printed")
            return False
        if not result.ok:
            log.warning("receipt not printed: %s %s", result.error, result.detail)
        return bool(result.ok)

    def qr_png(self, ended: SessionEnded, reader_name: str | None, language: str) -> bytes | None:
        """The receipt's QR code as a PNG; None (logged) if it cannot be made."""
        try:
            from kiosk.receipt import qr_png

            return qr_png(self.receipt(ended, reader_name), scale=8, language=language)
        except Exception:
            log.exception("the receipt's QR code could not be made")
            return None
