"""The gate's decisions, its on-loan set and its visitors, on a simulated reader and pins."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest
from pydantic import BaseModel

from drivers.gpio import SimulatedGpio, SimulatedGpioConfig, create_gpio
from drivers.rfid.simulated import SimulatedPad, SimulatedRfidReader, SimulatedTag
from drivers.rfid.tagdata import Usage
from kiosk.backend import BackendUnavailable
from kiosk.config import GateConfig, RfidConfig
from kiosk.gate import Gate, item_key
from protocol import GateAlarmData, GateSyncResult, GateVisitorsData, LedgerEntry, Op, Reply

from station_parts import Clock, IN_STOCK, ON_LOAN, Sound, book

VN = dt.timezone(dt.timedelta(hours=7))
AT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=VN)


class GateLink:
    """The network edge: scripted `gate.sync` replies, every event kept."""

    def __init__(self) -> None:
        self.on_loan: list[str] = []
        self.seq = 0
        self.online = True
        self.requests: list[Op] = []
        self.events: list[tuple[str, BaseModel]] = []
        self.answered = threading.Event()
        self.hold: threading.Event | None = None  # delays the sync's reply while set

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        self.requests.append(op)
        if not self.online:
            raise BackendUnavailable("not connected to the broker")
        assert op is Op.GATE_SYNC
        result = GateSyncResult(items=list(self.on_loan), seq=self.seq)
        if self.hold is not None:
            self.answered.set()
            assert self.hold.wait(5)
        return Reply.success(str(uuid.uuid4()), result)

    def publish_event(self, type_: str, data: BaseModel) -> bool:
        if not self.online:
            return False
        self.events.append((type_, data))
        return True

    def of_type(self, type_: str) -> list:
        return [data for kind, data in self.events if kind == type_]


def entry(seq: int, op: str, item: str, codes: tuple[str, ...] = ()) -> LedgerEntry:
    return LedgerEntry(seq=seq, id=f"r-{seq}", op=op, item=item, title="Dế Mèn phiêu lưu ký",
                       patron="HS-2025-0001", patron_kind="student", station="kiosk-1",
                       station_at=AT, server_at=AT, codes=list(codes))


@pytest.fixture
def pad() -> SimulatedPad:
    return SimulatedPad()


@pytest.fixture
def pins() -> SimulatedGpio:
    board = create_gpio(SimulatedGpioConfig.model_validate({
        "outputs": {"relay": {"pin": 17}, "buzzer": {"pin": 18}, "light_red": {"pin": 27}},
        "inputs": {"counter": {"pin": 22}}}))
    assert isinstance(board, SimulatedGpio)
    yield board
    board.close()


@pytest.fixture
def link() -> GateLink:
    return GateLink()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_gate(pad: SimulatedPad, link: GateLink, pins: SimulatedGpio | None, clock: Clock,
              sound: Sound | None = None, **gate: object) -> Gate:
    reader = SimulatedRfidReader(pad)
    reader.open()
    return Gate(reader, link, rfid=RfidConfig(), config=GateConfig(**gate), pins=pins,  # type: ignore[arg-type]
                sound=sound, clock=clock, wall=lambda: AT)


@pytest.fixture
def gate(pad: SimulatedPad, link: GateLink, pins: SimulatedGpio, clock: Clock) -> Gate:
    return make_gate(pad, link, pins, clock, sound=Sound(), alarm_s=0.2)


def test_a_book_lent_by_its_afi_passes_without_reading_its_data(gate: Gate, pad: SimulatedPad,
                                                                 pins: SimulatedGpio) -> None:
    tag = book(1, "TN00001", afi=ON_LOAN)
    tag.memory[:] = bytes(len(tag.memory))  # no data at all: the AFI alone decides
    pad.place(tag)
    [decision] = gate.poll_once()
    assert (decision.outcome, decision.reason, decision.afi) == ("pass", "afi_on_loan", ON_LOAN)
    assert not pins.output("relay")


def test_a_book_never_lent_alarms_with_outputs_chime_and_event(gate: Gate, pad: SimulatedPad,
                                                                pins: SimulatedGpio,
                                                                link: GateLink) -> None:
    pad.place(book(2, "TN00002"))
    [decision] = gate.poll_once()
    assert (decision.outcome, decision.reason, decision.item) == ("alarm", "afi", "TN00002")
    assert gate.sound.chimes == ["attention"]  # type: ignore[union-attr]
    assert link.of_type("gate.alarm") == [GateAlarmData(reason="afi", item="TN00002",
                                                        uid="E004015000000002", afi=IN_STOCK)]
    # Each output went on, and the alarm ends by itself after alarm_s (read from the pins'
    # histories, which a slow machine cannot race).
    outputs = ("relay", "buzzer", "light_red")
    deadline = time.monotonic() + 3
    while any(pins.output(name) for name in outputs) and time.monotonic() < deadline:
        time.sleep(0.01)
    for name in outputs:
        assert [s.state for s in pins.pin(name).states] == [False, True, False], name


def test_an_item_in_the_on_loan_set_passes_even_with_a_stale_afi(gate: Gate, pad: SimulatedPad,
                                                                  link: GateLink) -> None:
    # The kiosk lent it, but its AFI write failed: the set knows better than the tag.
    link.on_loan, link.seq = ["TN.00003", "TN00003"], 41
    assert gate.sync() and gate.ledger_seq == 41
    pad.place(book(3, "TN00003"))
    [decision] = gate.poll_once()
    assert (decision.outcome, decision.reason) == ("pass", "on_loan")
    assert link.of_type("gate.alarm") == []


def test_patron_cards_pass_and_foreign_tags_are_ignored(gate: Gate, pad: SimulatedPad) -> None:
    pad.place(book(4, "HS-2025-0001", usage=Usage.PATRON_CARD),
              SimulatedTag(uid="E004015000000005", afi=0x00))  # a shop's tag, no library data
    decisions = {d.uid: d for d in gate.poll_once()}
    assert decisions["E004015000000004"].reason == "patron"
    assert decisions["E004015000000005"].outcome == "ignored"
    assert decisions["E004015000000005"].reason == "foreign"


def test_foreign_tags_can_be_checked(pad: SimulatedPad, link: GateLink, pins: SimulatedGpio,
                                     clock: Clock) -> None:
    gate = make_gate(pad, link, pins, clock, foreign_tags="check")
    pad.place(book(6, "TN00004", afi=0xD7))  # another AFI pair, our data
    [decision] = gate.poll_once()
    assert (decision.outcome, decision.reason) == ("alarm", "not_on_loan")


def test_unreadable_tags_alarm_only_when_in_stock(gate: Gate, pad: SimulatedPad,
                                                  link: GateLink) -> None:
    junk = bytearray(b"\xde\xad\xbe\xef" * 28)
    pad.place(SimulatedTag(uid="E004015000000007", afi=IN_STOCK, memory=junk),
              SimulatedTag(uid="E004015000000008", afi=0x00, memory=junk))
    decisions = {d.uid: d for d in gate.poll_once()}
    assert decisions["E004015000000007"].reason == "unreadable"
    assert decisions["E004015000000007"].outcome == "alarm"
    assert decisions["E004015000000008"].outcome == "ignored"
    assert [a.reason for a in link.of_type("gate.alarm")] == ["unreadable"]


def test_a_tag_leaving_mid_read_in_stock_alarms_unreadable(gate: Gate, pad: SimulatedPad) -> None:
    tag = book(9, "TN00001")
    pad.place(tag)
    pad.leave_after(tag.uid, 0)  # gone before its blocks are read
    [decision] = gate.poll_once()
    assert (decision.outcome, decision.reason) == ("alarm", "unreadable")


def test_unreadable_alarm_can_be_turned_off(pad: SimulatedPad, link: GateLink, clock: Clock) -> None:
    gate = make_gate(pad, link, None, clock, alarm_unreadable=False)
    pad.place(SimulatedTag(uid="E004015000000007", afi=IN_STOCK, memory=bytearray(b"\xff" * 112)))
    [decision] = gate.poll_once()
    assert decision.outcome == "ignored"


def test_a_tag_is_decided_once_per_passage(gate: Gate, pad: SimulatedPad, clock: Clock,
                                           link: GateLink) -> None:
    pad.place(book(2, "TN00002"))
    assert len(gate.poll_once()) == 1
    for _ in range(5):  # lingering under the antennas
        clock.now += 0.2
        assert gate.poll_once() == []
    pad.clear()
    clock.now += 1.1
    assert gate.poll_once() == []
    pad.place(book(2, "TN00002"))  # back later: a new passage
    clock.now += 0.2
    assert len(gate.poll_once()) == 1
    assert len(link.of_type("gate.alarm")) == 2


def test_decisions_record_their_latency(gate: Gate, pad: SimulatedPad) -> None:
    seen: list = []
    gate.on_decision = seen.append
    pad.place(book(1, "TN00001", afi=ON_LOAN), book(2, "TN00002"))
    decisions = gate.poll_once()
    assert seen == decisions == list(gate.decisions)
    assert all(d.seconds >= 0 for d in decisions)


def test_the_ledger_keeps_the_set_current(gate: Gate, link: GateLink, pad: SimulatedPad,
                                          clock: Clock) -> None:
    link.on_loan, link.seq = ["TN.00001"], 10
    gate.sync()
    gate.on_ledger(entry(11, "checkout", "TN.00002"))
    gate.on_ledger(entry(9, "return", "TN.00001"))  # older than the sync: already counted
    gate.on_ledger(entry(12, "renew", "TN.00002"))
    assert gate.on_loan_items() == ["TN.00001", "TN.00002"]
    gate.on_ledger(entry(13, "return", "TN.00001"))
    assert gate.on_loan_items() == ["TN.00002"] and gate.ledger_seq == 13
    # A tag carrying the barcode matches the ledger's accession number.
    pad.place(book(2, "TN00002"), book(1, "TN00001"))
    decisions = {d.item: d for d in gate.poll_once()}
    assert decisions["TN00002"].outcome == "pass"
    assert decisions["TN00001"].outcome == "alarm"


def test_a_tag_with_its_own_rfid_item_id_follows_the_ledger(gate: Gate, link: GateLink,
                                                             pad: SimulatedPad, clock: Clock) -> None:
    link.on_loan, link.seq = [], 0
    gate.sync()
    gate.on_ledger(entry(1, "checkout", "TN.00007", codes=("TN00007", "30340007")))
    pad.place(book(7, "30340007"))
    [passed] = gate.poll_once()
    assert passed.outcome == "pass" and passed.reason == "on_loan"
    # Returned: its tag must alarm again at once, not only after the next full sync.
    gate.on_ledger(entry(2, "return", "TN.00007", codes=("TN00007", "30340007")))
    pad.clear()
    gate.poll_once()
    clock.now += 5
    pad.place(book(7, "30340007"))
    [alarm] = gate.poll_once()
    assert alarm.outcome == "alarm" and gate.on_loan_items() == []


def test_a_conflicting_replay_leaves_the_set_alone(gate: Gate, link: GateLink) -> None:
    link.on_loan, link.seq = ["TN.00001"], 5
    gate.sync()
    # A station's offline return of a copy lent again since: recorded, not applied.
    lent_again = entry(6, "return", "TN.00001").model_copy(update={"conflict": "lent_again"})
    gate.on_ledger(lent_again)
    assert gate.on_loan_items() == ["TN.00001"] and gate.ledger_seq == 6


def test_the_gate_knows_every_conflict_the_server_does_not_apply() -> None:
    from kiosk.gate import NOT_APPLIED_CONFLICTS
    from server.circulation import NOT_APPLIED

    assert NOT_APPLIED_CONFLICTS == {conflict.value for conflict in NOT_APPLIED}


def test_entries_arriving_during_a_sync_are_not_lost(gate: Gate, link: GateLink) -> None:
    link.on_loan, link.seq = ["TN.00001", "TN.00002"], 20
    link.hold = threading.Event()
    syncing = threading.Thread(target=gate.sync)
    syncing.start()
    assert link.answered.wait(5)
    # The server answered at seq 20; these come in while the reply is on its way.
    gate.on_ledger(entry(20, "checkout", "TN.00002"))   # counted by the sync
    gate.on_ledger(entry(21, "return", "TN.00001"))
    gate.on_ledger(entry(22, "checkout", "TN.00003"))
    link.hold.set()
    syncing.join(5)
    assert gate.synced and gate.ledger_seq == 22
    assert gate.on_loan_items() == ["TN.00002", "TN.00003"]


def test_offline_the_gate_still_decides_and_sends_the_alarm_later(gate: Gate, link: GateLink,
                                                                  pad: SimulatedPad) -> None:
    link.online = False
    assert not gate.sync() and not gate.synced
    pad.place(book(2, "TN00002"))
    [decision] = gate.poll_once()
    assert decision.outcome == "alarm"
    assert link.of_type("gate.alarm") == [] and len(gate.events) == 1
    link.online = True
    gate.on_connect()  # as the link calls it: sync and flush on a thread
    deadline = time.monotonic() + 5
    while not (gate.synced and link.of_type("gate.alarm")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [a.item for a in link.of_type("gate.alarm")] == ["TN00002"]
    assert gate.synced and len(gate.events) == 0


def test_a_faulty_reader_is_no_crash(gate: Gate, pad: SimulatedPad) -> None:
    pad.place(book(2, "TN00002"))
    pad.unplug()
    assert gate.poll_once() == []
    pad.replug()
    assert [d.outcome for d in gate.poll_once()] == ["alarm"]


def test_visitors_are_counted_and_reported(gate: Gate, pins: SimulatedGpio, link: GateLink) -> None:
    assert not gate.report_visitors()  # nobody passed: no event
    pins.trigger("counter", 7)
    link.online = False
    assert not gate.report_visitors()  # offline: the count waits
    pins.trigger("counter", 2)
    link.online = True
    assert gate.report_visitors()
    assert link.of_type("gate.visitors") == [GateVisitorsData(count=9, since=AT)]
    assert gate.visitors == 0


def test_the_loop_polls_and_reports_until_stopped(pad: SimulatedPad, link: GateLink,
                                                  pins: SimulatedGpio) -> None:
    reader = SimulatedRfidReader(pad)
    reader.open()
    gate = Gate(reader, link, rfid=RfidConfig(poll_interval_s=0.02),
                config=GateConfig(visitors_report_s=1, alarm_s=0.05), pins=pins)
    stop = threading.Event()
    runner = threading.Thread(target=gate.run, args=(stop,))
    runner.start()
    try:
        pins.trigger("counter", 3)
        pad.place(book(2, "TN00002"))
        deadline = time.monotonic() + 5
        while not (link.of_type("gate.alarm") and link.of_type("gate.visitors")) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        runner.join(5)
    assert not runner.is_alive()
    assert [a.item for a in link.of_type("gate.alarm")] == ["TN00002"]
    assert [v.count for v in link.of_type("gate.visitors")] == [3]


def test_missing_outputs_are_skipped(pad: SimulatedPad, link: GateLink, clock: Clock) -> None:
    board = create_gpio(SimulatedGpioConfig.model_validate({"outputs": {"light_red": {"pin": 27}}}))
    gate = make_gate(pad, link, board, clock)  # no relay, no buzzer, no counter
    pad.place(book(2, "TN00002"))
    assert [d.outcome for d in gate.poll_once()] == ["alarm"]
    assert board.is_active("light_red")
    board.close()


@pytest.mark.parametrize("a, b", [("TN.00315", "TN00315"), ("tn-00315", "TN00315"),
                                  ("đkcb-12", "ĐKCB12")])
def test_item_keys_fold_punctuation_and_case(a: str, b: str) -> None:
    assert item_key(a) == item_key(b)
