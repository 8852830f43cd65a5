"""NFC patron cards through nfcpy: the card's UID, or the text record its NDEF message carries.

A school's patron cards are ISO 14443 A (MIFARE Classic, Ultralight, NTAG), sometimes B,
or FeliCa. The reader polls only the configured `targets`: nfcpy's untargeted poll tries
106A, 106B and 212F in turn and each probe that finds nothing waits for its timeout (about
2 s a cycle), which a student tapping a card feels.

What becomes the code (`read`):
- `uid`: the card's identifier, upper-case hex: the UID (NFCID1) for A, the PUPI for B,
  the IDm for FeliCa. The server maps it to a reader.
- `ndef_text`: the first NDEF text record ("HS-0123"); a card without one gives no read.
- `ndef_text_or_uid`: the text record when there is one, else the UID.

A card left on the reader is one read until it is taken away (`removal_checks` failed
presence checks in a row, so a single missed answer does not read it twice); with
`repeat_window`, the same code is not read again that soon after it was taken away.

Hot-plug: a reader that cannot be opened, or an OSError while polling (nfcpy's sign of
an unplugged USB or serial reader), turns the state to "fault" with `last_error`; the
reader is reopened with backoff (see `ReconnectingScanner`) and "ok" again without a
restart. Frames nfcpy cannot parse (junk from the air or a corrupt card) are dropped; only
when every poll in a row fails that way is the reader called faulty and reopened.

nfcpy is imported when the reader is opened, so a station without it still starts and
shows this device as "fault" with the reason.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from drivers.base import DeviceUnavailable, HotplugConfig, ReconnectingScanner, register

log = logging.getLogger("thuvien.drivers.nfc")

Target = Literal["106A", "106B", "212F", "424F"]
ReadMode = Literal["uid", "ndef_text", "ndef_text_or_uid"]

# nfcpy's device paths (`nfc.clf.ContactlessFrontend.open`): usb[:vid[:pid]] or
# usb[:bus[:dev]], tty:<port>[:driver], com:<port>[:driver], udp[:host][:port].
_DEVICE = re.compile(
    r"^(usb(:[0-9a-fA-F]{3,4}(:[0-9a-fA-F]{3,4})?)?"
    r"|(tty|com):[A-Za-z0-9_.-]+(:[a-z0-9_]+)?"
    r"|udp(:[A-Za-z0-9_.-]*)?(:\d{1,5})?)$")

JUNK_LIMIT = 5      # polls in a row nfcpy could not parse before the reader counts as faulty
UNREAD_NDEF_POLLS = 5  # polls that may fail to read a card's NDEF before its UID is taken
NDEF_ATTEMPTS = 3   # nfcpy reports a failed NDEF read as "no NDEF": ask again before believing it
MAX_TEXT = 64       # a card number, not a document


class NfcScannerConfig(HotplugConfig):
    type: Literal["nfc"] = "nfc"
    name: str = Field(default="nfc", pattern=r"^[a-z0-9_-]{1,32}$")
    device: str = "usb"
    targets: tuple[Target, ...] = ("106A",)
    read: ReadMode = "ndef_text_or_uid"
    # Seconds between polls while no card is there, and between presence checks.
    poll_interval: float = Field(default=0.1, ge=0.0, le=5.0)
    removal_checks: int = Field(default=3, ge=1, le=50)
    repeat_window: float = Field(default=0.0, ge=0.0, le=600.0)

    @field_validator("device")
    @classmethod
    def _device_path(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"not an nfcpy device path: {value!r}; expected usb, "
                             "usb:VVVV:PPPP, tty:USB0:pn532, com:COM3:pn532 or udp:host:port")
        return value

    @field_validator("targets")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("poll at least one target: 106A, 106B, 212F or 424F")
        if len(set(value)) != len(value):
            raise ValueError(f"targets repeat: {', '.join(value)}")
        return value


def clean_text(text: str) -> str:
    """A card number from a text record: no control characters, no outer spaces."""
    return "".join(ch for ch in text if ch.isprintable()).strip()[:MAX_TEXT]


def target_uid(target: Any) -> str | None:
    """The identifier a poll found, upper-case hex; None when the answer has none."""
    brty = str(getattr(target, "brty", ""))
    raw: bytes | None = None
    if brty.endswith("A"):
        if target.sdd_res:
            raw = bytes(target.sdd_res)
        elif target.rid_res and len(target.rid_res) >= 6:  # Type 1 (Topaz) cards
            raw = bytes(target.rid_res[2:6])
    elif brty.endswith("B"):
        if target.sensb_res and len(target.sensb_res) >= 5:
            raw = bytes(target.sensb_res[1:5])
    elif brty.endswith("F"):
        if target.sensf_res and len(target.sensf_res) >= 9:
            raw = bytes(target.sensf_res[1:9])
    return raw.hex().upper() if raw else None


class _CardLeft(Exception):
    """The card stopped answering while it was being read: try it afresh at the next poll."""


class _Card:
    """The card on the reader now: what it was read as, and how to ask if it is still there."""

    def __init__(self, uid: str, target: Any, tag: Any) -> None:
        self.uid = uid
        self.target = target
        self.tag = tag  # None when nfcpy could not activate it (MIFARE Classic, a B card)
        self.code: str | None = None  # what it was read as, for `repeat_window`
        self.misses = 0


@register
class NfcScanner(ReconnectingScanner):
    """Patron cards on an nfcpy reader: one `Read(source="nfc")` per card presented."""

    type_key = "nfc"
    config_model = NfcScannerConfig

    def __init__(self, config: NfcScannerConfig | None = None, *,
                 frontend_factory: Callable[[str], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        config = config or NfcScannerConfig()
        super().__init__(name=config.name, reconnect_initial=config.reconnect_initial,
                         reconnect_max=config.reconnect_max, source="nfc", clock=clock)
        self.config = config
        # The hardware edge: opens a reader at a path (default: nfcpy's ContactlessFrontend).
        self._factory = frontend_factory
        self._nfc: Any = None
        self._clf: Any = None
        self._card: _Card | None = None
        self._gone: tuple[str, float] | None = None  # (code, when) of the card last taken away
        self._unread_ndef: dict[str, int] = {}  # UID -> polls whose NDEF read failed
        self._junk = 0
        self._next_poll = 0.0

    @classmethod
    def from_config(cls, config: NfcScannerConfig) -> NfcScanner:
        return cls(config)

    # --- ReconnectingScanner -----------------------------------------------------------

    def _connect(self) -> None:
        try:
            self._nfc = importlib.import_module("nfc")
            importlib.import_module("nfc.clf")
            importlib.import_module("nfc.tag")
        except ImportError as exc:
            raise DeviceUnavailable(f"nfcpy is not installed ({exc}); `pip install nfcpy`") from None
        factory = self._factory or self._nfc.ContactlessFrontend
        try:
            self._clf = factory(self.config.device)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise DeviceUnavailable(f"no NFC reader on {self.config.device}: {why}") from None
        except Exception as exc:  # a broken USB stack, a path nfcpy rejects
            raise DeviceUnavailable(f"cannot open the NFC reader on {self.config.device}: "
                                    f"{type(exc).__name__}: {exc}") from None
        self._card, self._junk = None, 0
        log.info("NFC reader %s: %s, polling %s", self.name, self._clf,
                 ", ".join(self.config.targets))

    def _disconnect(self) -> None:
        clf, self._clf, self._card = self._clf, None, None
        if clf is not None:
            clf.close()

    def _read_codes(self, timeout: float) -> list[str]:
        if self._clf is None:
            raise DeviceUnavailable(f"the NFC reader on {self.config.device} is closed")
        # Pace the polls before polling, so a read is handed over the moment it is made.
        if (rest := self._next_poll - time.monotonic()) > 0 and self._stopping.wait(rest):
            return []
        self._next_poll = time.monotonic() + self.config.poll_interval
        nfc = self._nfc
        try:
            codes = self._poll_step()
        except (nfc.clf.CommunicationError, nfc.tag.TagCommandError) as exc:
            # The card left mid-exchange or answered garbage: the reader itself is fine.
            log.debug("NFC reader %s: card exchange failed: %s", self.name, exc)
            codes = []
        except nfc.clf.UnsupportedTargetError as exc:
            raise DeviceUnavailable(f"the reader on {self.config.device} cannot poll "
                                    f"{', '.join(self.config.targets)}: {exc}") from None
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise DeviceUnavailable(f"the NFC reader on {self.config.device} stopped "
                                    f"answering: {why}") from None
        except DeviceUnavailable:
            raise
        except Exception as exc:  # nfcpy choking on a frame it could not parse
            self._junk += 1
            log.warning("NFC reader %s: dropped an unparseable answer (%d in a row): %s: %s",
                        self.name, self._junk, type(exc).__name__, exc)
            if self._junk >= JUNK_LIMIT:
                raise DeviceUnavailable(
                    f"the NFC reader on {self.config.device} keeps sending what nfcpy cannot "
                    f"parse ({self._junk} polls in a row): {type(exc).__name__}: {exc}") from None
            return []
        self._junk = 0
        return codes

    # --- polling -------------------------------------------------------------------------

    def _poll_step(self) -> list[str]:
        if self._card is not None:
            self._check_presence(self._card)
            return []
        # One technology at a time, so `stop()` waits for one probe, not a whole cycle.
        for brty in self.config.targets:
            if self._stopping.is_set():
                return []
            target = self._clf.sense(self._nfc.clf.RemoteTarget(brty), iterations=1)
            if target is not None:
                break
        else:
            return []
        uid = target_uid(target)
        if uid is None:
            log.warning("NFC reader %s: a %s card answered without an identifier: ignored",
                        self.name, target.brty)
            return []
        tag = self._nfc.tag.activate(self._clf, target)
        card = _Card(uid, target, tag)
        try:
            code = card.code = self._code(card)
        except _CardLeft:
            log.info("NFC reader %s: card %s left while being read", self.name, uid)
            return []
        self._card = card  # from now on only its removal is watched
        if code is None:
            return []
        if self._gone is not None and self._gone[0] == code and \
                self._clock() - self._gone[1] < self.config.repeat_window:
            log.info("NFC reader %s: %s again within %.1f s: not read twice",
                     self.name, code, self.config.repeat_window)
            return []
        return [code]

    def _code(self, card: _Card) -> str | None:
        """What the card is read as; `_CardLeft` when that cannot be told yet."""
        if self.config.read == "uid":
            return card.uid
        text = self._ndef_text(card)
        if text:
            return text
        if self.config.read == "ndef_text_or_uid":
            return card.uid
        log.warning("NFC reader %s: card %s carries no NDEF text record: no read",
                    self.name, card.uid)
        return None

    def _ndef_text(self, card: _Card) -> str | None:
        if card.tag is None:
            if getattr(card.target, "brty", "").endswith("A") and self._not_sure_yet(card):
                # An ISO 14443 A card that did not activate this time (a slow answer to
                # nfcpy's probes) may still hold a text record: ask again next poll.
                raise _CardLeft(card.uid)
            return None
        records: list[Any] | None = None
        for _attempt in range(NDEF_ATTEMPTS):
            message = card.tag.ndef  # None for "no NDEF" and for a failed read alike
            if message is not None:
                try:
                    records = list(message.records)
                except Exception as exc:  # ndeflib on a corrupt message
                    log.warning("NFC reader %s: card %s has a corrupt NDEF message: %s",
                                self.name, card.uid, exc)
                    return None
                break
            if not card.tag.is_present:
                # Its NDEF may have been cut short: reading it as its UID could be wrong.
                raise _CardLeft(card.uid)
        if records is None and self._formatted_for_ndef(card):
            # The card says it holds NDEF but the message could not be read (a read timed
            # out): its UID would be the wrong code. Read it afresh at the next poll, a few
            # times; a card formatted for NDEF that never holds any is read by its UID then.
            if self._not_sure_yet(card):
                log.info("NFC reader %s: card %s holds NDEF not read yet", self.name, card.uid)
                raise _CardLeft(card.uid)
        self._unread_ndef.pop(card.uid, None)
        for record in records or ():
            text = getattr(record, "text", None)
            if record.type == "urn:nfc:wkt:T" and isinstance(text, str):
                return clean_text(text) or None
        return None

    def _not_sure_yet(self, card: _Card) -> bool:
        """Count one poll that could not tell the card's text; True while another poll may
        (then the UID is taken: a card that never answers more is read as what it shows)."""
        if self.config.read != "ndef_text_or_uid":
            return False
        tries = self._unread_ndef.get(card.uid, 0) + 1
        self._unread_ndef[card.uid] = tries
        return tries < UNREAD_NDEF_POLLS

    def _formatted_for_ndef(self, card: _Card) -> bool:
        """Whether a Type 2 card's capability container announces NDEF (magic byte E1);
        a CC that cannot be read counts as "yes": the card is there but not answering."""
        tag = card.tag
        if getattr(tag, "type", None) != "Type2Tag" or not hasattr(tag, "read"):
            return False
        try:
            return bytes(tag.read(3))[0] == 0xE1  # block 3 is the capability container
        except Exception:  # nfcpy's Type2TagCommandError and timeouts alike
            return True

    def _still_there(self, card: _Card) -> bool:
        if card.tag is not None:
            return bool(card.tag.is_present)
        # Not activated: poll its technology again and compare identifiers.
        again = self._clf.sense(self._nfc.clf.RemoteTarget(card.target.brty), iterations=1)
        return again is not None and target_uid(again) == card.uid

    def _check_presence(self, card: _Card) -> None:
        try:
            present = self._still_there(card)
        except self._nfc.clf.CommunicationError:
            present = False
        if present:
            card.misses = 0
            return
        card.misses += 1
        if card.misses >= self.config.removal_checks:
            log.debug("NFC reader %s: card %s taken away", self.name, card.uid)
            self._card = None
            if card.code is not None:
                self._gone = (card.code, self._clock())
