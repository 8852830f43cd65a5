"""The return box: a headless station where a book dropped in the chute is returned.

A tag read by the chute's RFID reader, or a barcode read by its scanner, becomes a
`loan.return`. Returned: the tag's AFI is set to "in stock" (so the gate lets the book
be borrowed again and alarms if it leaves unlent), a green light, a chime, a short
voice line. Not returned (refused, unknown, unreadable, offline): a red light, the
reason spoken, and a `returnbox.unreturned` event so the librarian knows which book in
the bin still needs a hand. The bin-full sensor sends `returnbox.full` once when the bin
fills and once when it is emptied, and the box says it is full.

A tag lying in the chute's field is returned once: it must leave the field for
`absent_after_s` to be read again; a barcode (or the same item by tag and by barcode)
counts once within `duplicate_window_s`.

Offline, with a store-and-forward backend (`kiosk/offline.py`) whose policy takes
returns, a book is returned into the outbox: green light, "recorded offline, the library
will confirm", its tag set in stock, and nothing reported unreturned (the server records
any conflict when the outbox is replayed). When the policy refuses, it stays as before:
red light and `returnbox.unreturned` with the code "offline".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.base import Read, Scanner
from drivers.rfid.reader import RfidError, RfidReader, TagRead
from drivers.rfid.tagdata import TagDataError
from kiosk.backend import AcceptedOffline, Backend, BackendUnavailable
from kiosk.config import ReturnboxConfig, RfidConfig, StationConfig
from kiosk.gate import PendingEvents, Pins, Sound, StationLink, item_key, read_tag_data
from kiosk.messages import refusal, text
from protocol import (
    ErrorCode,
    Op,
    Reply,
    ReturnArgs,
    ReturnboxFullData,
    ReturnboxUnreturnedData,
    ReturnResult,
)

log = logging.getLogger("thuvien.kiosk.returnbox")

# Station-side codes of `returnbox.unreturned`, beside the protocol's error codes.
UNREADABLE = "unreadable"
OFFLINE = "offline"
SET = "set"
AFI_NOT_WRITTEN = "afi_not_written"


@dataclass(frozen=True)
class ReturnOutcome:
    """What happened to one book in the chute."""

    item: str
    returned: bool
    code: str = ""          # why not (or AFI_NOT_WRITTEN for a returned book)
    title: str = ""
    message: str = ""
    uid: str | None = None  # the tag, when read by RFID
    offline: bool = False   # returned into the outbox: the library will confirm


class ReturnBox:
    def __init__(self, link: StationLink, *, rfid: RfidConfig, config: ReturnboxConfig,
                 reader: RfidReader | None = None, pins: Pins | None = None,
                 sound: Sound | None = None, language: str = "vi",
                 clock: Callable[[], float] = time.monotonic,
                 backend: Backend | None = None) -> None:
        self.link = link
        # Returns go through `backend` when given (store and forward), else live on the link.
        self.backend: Backend = backend if backend is not None else link
        self.reader = reader
        self.rfid = rfid
        self.config = config
        self.pins = pins
        self.sound = sound
        self.language = language
        self.events = PendingEvents(link)
        self.outcomes: list[ReturnOutcome] = []
        self._clock = clock
        self._lock = threading.RLock()  # a scan and a tag are handled one at a time
        self._last_seen: dict[str, float] = {}
        self._recent: dict[str, float] = {}  # folded item id -> when it was handled
        self._reader_error = ""
        self._full: bool | None = None
        outputs = pins.output_names if pins is not None else ()
        self._ok_output = config.ok_output if config.ok_output in outputs else None
        self._fail_output = config.fail_output if config.fail_output in outputs else None
        sensor = config.bin_full_input
        if pins is not None and sensor and sensor in pins.input_names:
            pins.when_activated(sensor, lambda: self.set_full(True))
            pins.when_deactivated(sensor, lambda: self.set_full(False))
            if pins.is_active(sensor):
                self.set_full(True)
        elif sensor and pins is not None:
            log.info("returnbox: no input %r in [devices.gpio]; bin-full is not watched", sensor)

    # --- the bin ---

    @property
    def full(self) -> bool:
        return bool(self._full)

    def set_full(self, full: bool) -> None:
        """The bin-full sensor changed (on gpiozero's thread)."""
        with self._lock:
            before, self._full = self._full, full
        if before is None and not full or before == full:
            return  # only changes are news; an empty bin at start is not
        log.warning("returnbox: the bin is %s", "full" if full else "emptied")
        self.events.publish("returnbox.full", ReturnboxFullData(full=full))
        if full and self.sound is not None:
            self.sound.say(text("returnbox.full", self.language), self.language)

    # --- reads ---

    def on_read(self, read: Read) -> ReturnOutcome | None:
        """A barcode from the chute's scanner (on the scanner's thread)."""
        return self.return_code(read.code)

    def return_code(self, code: str) -> ReturnOutcome | None:
        code = code.strip()
        if not code:
            return None
        with self._lock:
            if self._recently(code):
                return None
            return self._return(code, uid=None)

    def poll_once(self) -> list[ReturnOutcome]:
        """One inventory of the chute; each tag that just arrived is returned."""
        if self.reader is None:
            return []
        try:
            tags = self.reader.inventory()
        except RfidError as exc:
            if str(exc) != self._reader_error:
                log.error("returnbox: inventory failed: %s", exc)
            self._reader_error = str(exc)
            return []
        self._reader_error = ""
        now = self._clock()
        outcomes = []
        for tag in tags:
            last = self._last_seen.get(tag.uid)
            self._last_seen[tag.uid] = now
            if last is not None and now - last <= self.rfid.absent_after_s:
                continue  # still lying in the chute
            outcome = self._tag(tag)
            if outcome is not None:
                outcomes.append(outcome)
        for uid, last in list(self._last_seen.items()):
            if now - last > self.rfid.absent_after_s:
                del self._last_seen[uid]
        return outcomes

    def _tag(self, tag: TagRead) -> ReturnOutcome | None:
        assert self.reader is not None
        with self._lock:
            try:
                data = read_tag_data(self.reader, tag, self.rfid)
            except (RfidError, TagDataError) as exc:
                log.warning("returnbox: tag %s unreadable: %s", tag.uid, exc)
                return self._not_returned(tag.uid, UNREADABLE, str(exc), "returnbox.unreadable",
                                          uid=tag.uid)
            if data.is_patron_card:
                log.info("returnbox: a library card (%s) in the chute; nothing to return", tag.uid)
                return None
            item = data.primary_item_id
            if self._recently(item):
                return None
            if not data.is_complete_set:
                # One tag of a set (a book and its CD): the desk checks the set is whole.
                return self._not_returned(item, SET, f"part {data.set_label()} of a set",
                                          "returnbox.set", uid=tag.uid)
            return self._return(item, uid=tag.uid)

    def _recently(self, item: str) -> bool:
        now = self._clock()
        window = self.config.duplicate_window_s
        self._recent = {k: t for k, t in self._recent.items() if now - t <= window}
        key = item_key(item) or item
        if key in self._recent:
            return True
        self._recent[key] = now
        return False

    # --- returning ---

    def _return(self, item: str, *, uid: str | None) -> ReturnOutcome:
        try:
            reply = self.backend.request(Op.LOAN_RETURN, ReturnArgs(item=item))
        except BackendUnavailable as exc:
            log.warning("returnbox: %s not returned, offline: %s", item, exc)
            return self._not_returned(item, OFFLINE, str(exc), "returnbox.offline", uid=uid)
        if isinstance(reply, AcceptedOffline):
            return self._returned_offline(item, uid)
        if not isinstance(reply, Reply):
            log.error("returnbox: %s: unexpected answer %r", item, reply)
            return self._not_returned(item, ErrorCode.INTERNAL, "unexpected answer", "returnbox.not_returned",
                                      uid=uid, reason=refusal(ErrorCode.INTERNAL, None, self.language))
        if not reply.ok:
            assert reply.error is not None
            code, message = str(reply.error.code), reply.error.message
            if code == ErrorCode.ITEM_NOT_ON_LOAN and uid is not None:
                # Not on loan by the server: its tag should say "in stock" too (a kiosk
                # whose AFI write failed at a return leaves such tags behind).
                self._write_in_stock(uid)
            reason = refusal(code, message, self.language)
            return self._not_returned(item, code, message, "returnbox.not_returned", uid=uid,
                                      reason=reason)
        try:
            result: ReturnResult = reply.result_as(ReturnResult)
        except ValueError as exc:
            log.error("returnbox: unreadable loan.return result for %s: %s", item, exc)
            return self._not_returned(item, ErrorCode.INTERNAL, str(exc), "returnbox.not_returned",
                                      uid=uid, reason=refusal(ErrorCode.INTERNAL, None, self.language))
        code = ""
        if uid is not None and not self._write_in_stock(uid):
            # Returned, but the tag still says "on loan": the gate would let it out.
            code = AFI_NOT_WRITTEN
            self.events.publish("returnbox.unreturned", ReturnboxUnreturnedData(
                item=result.item, code=AFI_NOT_WRITTEN,
                message="returned, but the tag's AFI could not be set to in stock"))
        outcome = ReturnOutcome(item=result.item, returned=True, code=code, title=result.title,
                                uid=uid)
        log.info("returnbox: returned %s (%s)", result.item, result.title)
        self._feedback(True, text("returnbox.returned", self.language, title=result.title))
        self.outcomes.append(outcome)
        return outcome

    def _returned_offline(self, item: str, uid: str | None) -> ReturnOutcome:
        code = ""
        if uid is not None and not self._write_in_stock(uid):
            code = AFI_NOT_WRITTEN
            self.events.publish("returnbox.unreturned", ReturnboxUnreturnedData(
                item=item[:128], code=AFI_NOT_WRITTEN,
                message="returned offline, but the tag's AFI could not be set to in stock"))
        outcome = ReturnOutcome(item=item, returned=True, code=code, title="", uid=uid, offline=True)
        log.info("returnbox: %s returned offline (in the outbox)", item)
        self._feedback(True, text("returnbox.returned_offline", self.language))
        self.outcomes.append(outcome)
        return outcome

    def _write_in_stock(self, uid: str) -> bool:
        assert self.reader is not None
        try:
            self.reader.write_afi(uid, self.rfid.afi_in_stock)
        except RfidError as exc:
            log.error("returnbox: AFI of %s not set to in stock: %s", uid, exc)
            return False
        return True

    def _not_returned(self, item: str, code: str, message: str, key: str, *,
                      uid: str | None, reason: str = "") -> ReturnOutcome:
        outcome = ReturnOutcome(item=item, returned=False, code=code, message=message, uid=uid)
        self.events.publish("returnbox.unreturned", ReturnboxUnreturnedData(
            item=item[:128], code=code, message=message[:500]))
        self._feedback(False, text(key, self.language, reason=reason) if reason
                       else text(key, self.language))
        self.outcomes.append(outcome)
        return outcome

    def _feedback(self, ok: bool, sentence: str) -> None:
        output = self._ok_output if ok else self._fail_output
        if output is not None and self.pins is not None:
            self.pins.pulse(output, self.config.feedback_s)
        if self.sound is not None:
            self.sound.chime("ok" if ok else "error")
            if self.full:
                sentence = f"{sentence} {text('returnbox.full', self.language)}"
            self.sound.say(sentence, self.language)

    # --- the loop ---

    def on_connect(self) -> None:
        """After each (re)connection, on paho's thread: send what waited, elsewhere."""
        threading.Thread(target=self.events.flush, name="returnbox-flush", daemon=True).start()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = self._clock()
            try:
                self.poll_once()
            except Exception:  # one bad round must not close the chute for good
                log.exception("returnbox: a polling round failed")
            stop.wait(max(0.0, self.rfid.poll_interval_s - (self._clock() - started)))


def run_returnbox(config: StationConfig, stop: threading.Event) -> int:
    """Run a return box from its config until `stop` is set."""
    from drivers.base import create_scanner
    from drivers.gpio import create_gpio
    from drivers.rfid.reader import create_reader
    from kiosk.devices import DeviceWatch
    from kiosk.link import MqttLink
    from kiosk.voice import Voice

    reader = create_reader(config.devices.rfid) if config.devices.rfid is not None else None
    if reader is not None:
        reader.open()
    scanner: Scanner = create_scanner(config.devices.scanner)
    pins = create_gpio(config.devices.gpio) if config.devices.gpio is not None else None
    voice = Voice(config.voice)
    link = MqttLink(config.site, config.station, "returnbox", config.mqtt,
                    request_timeout=config.session.request_timeout_s)
    from kiosk.offline import open_store_and_forward

    forward = open_store_and_forward(config, link)
    box = ReturnBox(link, rfid=config.rfid, config=config.returnbox, reader=reader, pins=pins,
                    sound=voice, language=config.language, backend=forward)
    link.on_connect = box.on_connect
    # Give the broker a moment before the chute opens: a book dropped before then is
    # returned offline if the policy allows it, else reported as not returned.
    if not link.start(wait=10):
        log.warning("returnbox: broker %s:%s not reachable yet", config.mqtt.host, config.mqtt.port)
    if forward is not None:
        forward.start()
    scanner.start(box.on_read)
    devices = [device for device in (reader, scanner, pins) if device is not None]
    try:
        with DeviceWatch(devices, link):  # type: ignore[arg-type]
            box.run(stop)
    finally:
        scanner.stop()
        if forward is not None:
            forward.stop()
        link.stop()
        if forward is not None:
            forward.close()
        if reader is not None:
            reader.close()
        if pins is not None:
            pins.close()
        voice.close()
    return 0
