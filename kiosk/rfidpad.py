"""The RFID pad of a kiosk: a stack of books laid down at once, and their security bit.

`RfidPad` is a `Scanner` (name "rfid") made of an HF reader (`drivers.rfid.reader`). On
its own thread it takes an inventory every `poll_interval_s`; each tag that arrives is
read once (user blocks -> ISO 28560 `TagData`) and becomes a `PadRead`:

- a patron card (usage 8) is a card read; in one inventory cards go first, so a card
  and books laid down together start the session before the books are lent;
- an item is one read with its primary item id, so five books are five reads and five
  checkouts. An item in several parts (a book and its CD) is read only when every part
  is on the pad; if parts are still missing after `settle_s` it becomes a refusal
  (`PadRead.refusal`, the runner calls `Session.refuse_item`);
- a tag that cannot be read after `read_attempts` tries is reported once, as a
  `PadNotice("unreadable")`; the reader can still scan that book's barcode.

It is also the session's outcome listener (`on_outcome`, any thread, never blocks):
after the server CONFIRMED a checkout (`ItemBorrowed`) every part's tag gets the on-loan
AFI, after a return (`ItemReturned`) the in-stock AFI, written and read back by the
reader's `write_afi` on the pad's own thread, never the UI's or the session's.

What a ten-year-old sees when the AFI cannot be written at once. The loan stands (the
server lent the book; undoing it would be more confusing than helpful), and:
- the book was lifted before its AFI was written: "put <title> back on the pad for a
  moment" (`put_back`). The write waits; the moment the tag is back it is written, the
  tag is not read as a new book, and the kiosk says thank you (`secured`);
- the tag stays away for `put_back_s`, or the AFI never reads back as written, or the
  reader cannot write AFIs: "show <title> to the librarian" (`ask_librarian`), and an
  error in the log naming the item and the tag, so staff can secure it by hand.
A book confirmed in this session and laid down again is not sent to the server again
(no "already on loan" refusal for a book just borrowed).

Reader faults (unplugged, silent) are the reader's state, shown through the pad's
`state`, `last_error` and `check()` for the device watch; nothing here crashes the
station: every failure is logged and the next round starts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from drivers.base import DeviceState, OnEof, OnRead, Read, Scanner
from drivers.rfid.reader import (
    AfiNotConfirmed,
    ReaderConfigBase,
    ReaderFault,
    ReaderStatusError,
    RfidError,
    RfidReader,
    TagNotFound,
    TagOperationError,
    create_reader,
)
from drivers.rfid.tagdata import TagData, TagDataError, decode_28560_2, decode_28560_3, decode_tag
from kiosk.config import RfidConfig, StationConfig
from kiosk.messages import text
from kiosk.session import (
    INCOMPLETE_SET,
    ItemBorrowed,
    ItemReturned,
    NeedCard,
    PatronIdentified,
    ReturnModeStarted,
    SessionEnded,
    StocktakeStarted,
)

log = logging.getLogger("thuvien.kiosk.rfidpad")

SOURCE = "rfid"


@dataclass(frozen=True)
class PadRead(Read):
    """A read from the pad: a card, a whole item (all its parts), or an item to refuse."""

    uids: tuple[str, ...] = ()
    parts: int = 1
    # INCOMPLETE_SET: the runner refuses the item here (`Session.refuse_item`) instead of
    # scanning it.
    refusal: str | None = None


NoticeKind = Literal["unreadable", "put_back", "secured", "ask_librarian"]


@dataclass(frozen=True)
class PadNotice:
    """Something the reader must be told that is not an answer of the session."""

    kind: NoticeKind
    item: str = ""
    title: str = ""


OnNotice = Callable[[PadNotice], None]

# How each notice sounds on a screen: the toast's tone and the chime.
NOTICE_TONE: dict[NoticeKind, tuple[str, str]] = {
    "unreadable": ("warn", "error"),
    "put_back": ("warn", "attention"),
    "secured": ("info", "ok"),
    "ask_librarian": ("error", "error"),
}


def notice_text(notice: PadNotice, language: str = "vi") -> str:
    title = notice.title or notice.item
    return text(f"rfid.{notice.kind}", language, title=title)


def _fold(item_id: str) -> str:
    return item_id.strip().casefold()


# --- what the pad knows ----------------------------------------------------------------

@dataclass
class _Tag:
    uid: str
    dsfid: int
    seen: float                 # the last inventory that listed it
    data: TagData | None = None
    failures: int = 0
    gave_up: bool = False
    quiet: bool = False         # on the pad for an AFI write only: never a read


@dataclass
class _Item:
    """The tags on the pad that carry one primary item id (one per part of a set)."""

    item_id: str
    first_seen: float
    parts: int = 1
    tags: dict[str, int] = field(default_factory=dict)  # uid -> part number
    delivered: bool = False     # its read (or its refusal) went out
    complete_sent: bool = False  # the read that lends it went out
    needs_card: bool = False    # read before any card: read again once a card is in

    def is_complete(self) -> bool:
        # Part 0 is a tag for the whole set (GBV Verbundwiki, "Dänisches Datenmodell").
        present = set(self.tags.values())
        return self.parts <= 1 or 0 in present or set(range(1, self.parts + 1)) <= present


@dataclass
class _Securing:
    """An AFI to write on every tag of one item, after the server's answer."""

    item_id: str
    title: str
    afi: int
    uids: set[str]
    since: float
    told: bool = False          # "put it back" was said
    failures: int = 0           # rounds the tag was there and the AFI could not be confirmed


# --- the pad -----------------------------------------------------------------------------

class RfidPad(Scanner):
    """The station-side service of an RFID pad. The pad owns its reader: `start` opens
    it, `stop` closes it. Use `step()` to run one round on the caller's thread (tests);
    `start()` runs rounds on the pad's own thread."""

    type_key: ClassVar[str] = "rfid"

    def __init__(self, reader: RfidReader, config: RfidConfig | None = None, *,
                 settle_s: float | None = None, put_back_s: float = 30.0,
                 read_attempts: int = 3, remember_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or RfidConfig()
        self.reader = reader
        self.name = reader.name
        # A set is judged once its parts had time to be laid down and read.
        self.settle_s = self.config.absent_after_s if settle_s is None else settle_s
        self.put_back_s = put_back_s
        self.read_attempts = max(1, read_attempts)
        self.remember_s = remember_s
        self._clock = clock
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._tags: dict[str, _Tag] = {}
        self._items: dict[str, _Item] = {}               # folded item id -> item
        self._lent: dict[str, tuple[tuple[str, ...], float]] = {}  # read out: uids, when
        self._confirmed: set[str] = set()                # answered in this session
        self._securing: dict[str, _Securing] = {}
        self._on_read: OnRead | None = None
        self._on_notice: OnNotice | None = None
        self._error = ""
        self._lock = threading.Lock()                    # one round at a time
        self._stopping = threading.Event()
        self._wake = threading.Event()                   # an outcome arrived
        self._thread: threading.Thread | None = None
        self._started = False

    @classmethod
    def from_config(cls, config: Any) -> RfidPad:
        """The pad of a station: its `[devices.rfid]` reader and its `[rfid]` table."""
        if not isinstance(config, StationConfig):
            raise TypeError("RfidPad.from_config takes a StationConfig")
        reader_config: ReaderConfigBase | None = config.devices.rfid
        if reader_config is None:
            raise ValueError("the station has no [devices.rfid] reader")
        return cls(create_reader(reader_config), config.rfid)

    # --- device health ---

    @property
    def state(self) -> DeviceState:
        return self.reader.state if self._started else "absent"

    @property  # type: ignore[override]
    def last_error(self) -> str:
        return str(getattr(self.reader, "last_error", "") or self._error)

    def check(self) -> DeviceState:
        if not self._started:
            return "absent"
        try:
            return self.reader.check()
        except RfidError as exc:
            self._error = str(exc)
            return "fault"

    # --- lifecycle ---

    def start(self, on_read: OnRead, on_eof: OnEof | None = None,
              on_notice: OnNotice | None = None) -> None:
        """Open the reader and poll it on the pad's thread. `on_read` gets `PadRead`s
        and `on_notice` `PadNotice`s, both on that thread. An RFID pad never ends, so
        `on_eof` is never called."""
        if self._thread is not None:
            raise RuntimeError(f"RFID pad {self.name!r} is already started")
        self.attach(on_read, on_notice)
        self._thread = threading.Thread(target=self._run, name=f"rfid-pad-{self.name}",
                                        daemon=True)
        self._thread.start()

    def attach(self, on_read: OnRead, on_notice: OnNotice | None = None) -> None:
        """Open the reader without a thread: rounds run when `step()` is called."""
        self._on_read, self._on_notice = on_read, on_notice
        self.reader.open()  # a reader not plugged in does not raise: it faults
        self._started = True

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._on_read = self._on_notice = None
        if self._started:
            self._started = False
            self.reader.close()

    # --- the session's outcomes: any thread, never blocks ---

    def on_outcome(self, outcome: object) -> None:
        if isinstance(outcome, (ItemBorrowed, ItemReturned, NeedCard, PatronIdentified,
                                ReturnModeStarted, SessionEnded, StocktakeStarted)):
            self._inbox.put(outcome)
            self._wake.set()

    # --- the rounds ---

    def _run(self) -> None:
        interval = self.config.poll_interval_s
        while not self._stopping.is_set():
            began = time.monotonic()
            self.step()
            # Wait for the next inventory, but answer an outcome (an AFI to write) at once.
            self._wake.wait(max(0.0, interval - (time.monotonic() - began)))
            self._wake.clear()  # what arrived before this is in the inbox for the next step

    def step(self) -> None:
        """One round: the session's news, an inventory, AFI writes, reads, deliveries."""
        with self._lock:
            try:
                self._round()
            except Exception as exc:  # a bug here must not take the kiosk's pad away
                log.exception("RFID pad %s: the round failed", self.name)
                self._error = f"pad round failed: {exc}"

    def _round(self) -> None:
        now = self._clock()
        self._take_outcomes(now)
        try:
            found = self.reader.inventory()
        except RfidError as exc:
            # Known tags stay known while the reader is away: a hiccup is not a new stack.
            if self._error != str(exc):
                log.warning("RFID pad %s: inventory failed: %s", self.name, exc)
            self._error = str(exc)
            self._expire_securing(now, present=None)
            return
        self._error = ""
        present: dict[str, int] = {tag.uid: tag.dsfid for tag in found}
        for uid, dsfid in present.items():
            known = self._tags.get(uid)
            if known is None:
                self._tags[uid] = _Tag(uid, dsfid, now)
            else:
                known.seen = now
        for uid in [uid for uid, tag in self._tags.items()
                    if uid not in present and now - tag.seen >= self.config.absent_after_s]:
            self._forget(uid)
        # A book put back for its AFI is written before anything else is read.
        self._secure(set(present), now)
        self._read_new(set(present), now)
        self._deliver(now)
        for key in [k for k, (_, at) in self._lent.items() if now - at > self.remember_s]:
            del self._lent[key]

    # --- outcomes ---

    def _take_outcomes(self, now: float) -> None:
        while True:
            try:
                outcome = self._inbox.get_nowait()
            except queue.Empty:
                return
            match outcome:
                case ItemBorrowed(item=item, title=title, code=code):
                    self._secure_later(code or item, item, title, self.config.afi_on_loan, now)
                case ItemReturned(item=item, title=title, code=code):
                    self._secure_later(code or item, item, title, self.config.afi_in_stock, now)
                case NeedCard(item=item):
                    known = self._items.get(_fold(item))
                    if known is not None:
                        known.needs_card = True
                case StocktakeStarted():
                    # Counting the stock: every book already on the pad counts, read again.
                    for known in self._items.values():
                        known.needs_card = known.delivered = known.complete_sent = False
                case PatronIdentified() | ReturnModeStarted():
                    # Books laid down before the card count now that someone is there.
                    for known in self._items.values():
                        if known.needs_card:
                            known.needs_card = known.delivered = known.complete_sent = False
                case SessionEnded():
                    self._confirmed.clear()

    def _secure_later(self, code: str, item: str, title: str, afi: int, now: float) -> None:
        key = _fold(code)
        uids = self._uids_of(key) or self._uids_of(_fold(item))
        if not uids:
            # Scanned by its barcode, not laid on the pad: its tag is not ours to write.
            log.debug("RFID pad %s: no tag of %s was read here; no AFI written", self.name, item)
            return
        self._confirmed.add(key)
        self._securing[key] = _Securing(item, title, afi, set(uids), now)

    def _uids_of(self, key: str) -> tuple[str, ...]:
        # Parts on the pad now, and parts read out earlier and lifted since.
        known = self._items.get(key)
        lent = self._lent.get(key)
        uids = dict.fromkeys([*(known.tags if known is not None else ()),
                              *(lent[0] if lent is not None else ())])
        return tuple(uids)

    # --- AFI ---

    def _secure(self, present: set[str], now: float) -> None:
        for key, job in list(self._securing.items()):
            for uid in sorted(job.uids & present):
                try:
                    self.reader.write_afi(uid, job.afi)
                except AfiNotConfirmed as exc:
                    if isinstance(exc.__cause__, TagNotFound):
                        continue  # lifted during the write: wait for it to come back
                    job.failures += 1
                    if exc.last_read is not None or job.failures >= self.read_attempts:
                        self._give_up(key, job, f"AFI never stuck: {exc}")
                        break
                    continue
                except ReaderStatusError as exc:
                    self._give_up(key, job, f"the reader cannot write the AFI: {exc}")
                    break
                except ReaderFault as exc:
                    log.warning("RFID pad %s: AFI of %s waits for the reader: %s",
                                self.name, job.item_id, exc)
                    return
                except TagOperationError:
                    continue  # the tag went away mid-write; it is tried again when back
                job.uids.discard(uid)
                tag = self._tags.get(uid)
                if tag is not None:
                    tag.quiet = True
            else:
                if not job.uids:
                    del self._securing[key]
                    log.info("RFID pad %s: AFI 0x%02X written on %s", self.name, job.afi,
                             job.item_id)
                    if job.told:
                        self._notify(PadNotice("secured", job.item_id, job.title))
        self._expire_securing(now, present)

    def _expire_securing(self, now: float, present: set[str] | None) -> None:
        for key, job in list(self._securing.items()):
            if now - job.since >= self.put_back_s:
                self._give_up(key, job, f"its tag(s) {', '.join(sorted(job.uids))} did not "
                                        f"come back to the pad within {self.put_back_s:g} s")
            elif present is not None and not job.told and job.uids - present:
                job.told = True
                log.info("RFID pad %s: %s was lifted before its AFI was written",
                         self.name, job.item_id)
                self._notify(PadNotice("put_back", job.item_id, job.title))

    def _give_up(self, key: str, job: _Securing, why: str) -> None:
        del self._securing[key]
        log.error("RFID pad %s: %s (%s) keeps the wrong security state: AFI 0x%02X not "
                  "written: %s", self.name, job.item_id, job.title, job.afi, why)
        self._notify(PadNotice("ask_librarian", job.item_id, job.title))

    # --- reading tags ---

    def _read_new(self, present: set[str], now: float) -> None:
        waiting = {uid for job in self._securing.values() for uid in job.uids}
        for uid in sorted(present):
            tag = self._tags[uid]
            if tag.data is not None or tag.gave_up or tag.quiet or uid in waiting:
                continue
            try:
                raw = self.reader.read_blocks(uid, 0, self.config.blocks)
                data = self._decode(raw, tag.dsfid)
            except ReaderFault as exc:
                log.warning("RFID pad %s: reading tags stopped: %s", self.name, exc)
                self._error = str(exc)
                return
            except (RfidError, TagDataError) as exc:
                # A tag lifted mid-read (TagNotFound) is read again if it is still there
                # next round; one that keeps failing while it is there is given up.
                tag.failures += 1
                log.info("RFID pad %s: tag %s (attempt %d): %s", self.name, uid,
                         tag.failures, exc)
                if tag.failures >= self.read_attempts:
                    tag.gave_up = True
                    log.warning("RFID pad %s: tag %s cannot be read: %s", self.name, uid, exc)
                    self._notify(PadNotice("unreadable"))
                continue
            tag.data = data
            if data.is_patron_card:
                self._emit(PadRead(code=data.primary_item_id, source=SOURCE, at=now, uids=(uid,)))
            else:
                self._join(tag, data, now)

    def _decode(self, raw: bytes, dsfid: int) -> TagData:
        model = self.config.data_model
        if model == "28560-3":
            data = decode_28560_3(raw)
        elif model == "28560-2":
            data = decode_28560_2(raw)
        else:
            data = decode_tag(raw, dsfid)
        if not data.primary_item_id:
            raise TagDataError("the tag carries no item id (a tag not yet programmed?)")
        return data

    def _join(self, tag: _Tag, data: TagData, now: float) -> None:
        key = _fold(data.primary_item_id)
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = _Item(data.primary_item_id, now)
            if key in self._confirmed:
                # Borrowed or returned in this session and laid down again: done already.
                item.delivered = item.complete_sent = True
        item.parts = max(item.parts, data.parts_in_set)
        item.tags[tag.uid] = data.part_number if data.parts_in_set > 1 else 1

    def _forget(self, uid: str) -> None:
        tag = self._tags.pop(uid)
        if tag.data is None or tag.data.is_patron_card:
            return
        key = _fold(tag.data.primary_item_id)
        item = self._items.get(key)
        if item is not None:
            item.tags.pop(uid, None)
            if not item.tags:
                del self._items[key]

    def _deliver(self, now: float) -> None:
        for key, item in self._items.items():
            if item.complete_sent:
                continue
            uids = tuple(item.tags)
            if item.is_complete():
                item.delivered = item.complete_sent = True
                self._lent[key] = (uids, now)
                self._emit(PadRead(code=item.item_id, source=SOURCE, at=now, uids=uids,
                                   parts=item.parts))
            elif not item.delivered and now - item.first_seen >= self.settle_s:
                item.delivered = True
                log.info("RFID pad %s: %s has %d parts, %d on the pad", self.name,
                         item.item_id, item.parts, len(set(item.tags.values())))
                self._emit(PadRead(code=item.item_id, source=SOURCE, at=now, uids=uids,
                                   parts=item.parts, refusal=INCOMPLETE_SET))

    # --- handing out ---

    def _emit(self, read: PadRead) -> None:
        on_read = self._on_read
        if on_read is None:
            return
        try:
            on_read(read)
        except Exception:  # the station's bug must not leave the pad deaf
            log.exception("RFID pad %s: handling the read %r failed", self.name, read.code)

    def _notify(self, notice: PadNotice) -> None:
        on_notice = self._on_notice
        if on_notice is None:
            return
        try:
            on_notice(notice)
        except Exception:
            log.exception("RFID pad %s: handling the notice %r failed", self.name, notice)
