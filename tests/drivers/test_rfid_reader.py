"""The reader interface itself: UIDs, configs picked by `type`, the registry, safe AFI writes."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.base import DeviceState
from drivers.rfid.feig import FeigReader, FeigReaderConfig
from drivers.rfid.lineproto import LineReader, LineReaderConfig
from drivers.rfid.reader import (
    RFID_READERS,
    AfiNotConfirmed,
    ReaderNotResponding,
    RfidReader,
    TagCommunicationError,
    TagInfo,
    TagNotFound,
    TagRead,
    create_reader,
    normalize_uid,
    parse_reader_config,
    register_reader,
)
from drivers.rfid.simulated import SimulatedReaderConfig

UID = "E004010012345678"


@pytest.mark.parametrize("written", ["E004010012345678", "e004010012345678",
                                     "E0:04:01:00:12:34:56:78", " e0 04 01 00 12 34 56 78 "])
def test_uids_are_normalized(written: str) -> None:
    assert normalize_uid(written) == UID


@pytest.mark.parametrize("bad", ["", "E00401001234567", "E0040100123456789", "G004010012345678"])
def test_bad_uids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="16 hex digits"):
        normalize_uid(bad)


def test_tag_reads_compare_by_what_was_read_not_when() -> None:
    assert TagRead(UID, 0, 0x07, at=1.0) == TagRead(UID, 0, 0x07, at=2.0)


def test_every_driver_is_registered_under_its_type() -> None:
    parse_reader_config({"type": "simulated"})  # loads the built-in drivers
    assert {key: cls.__name__ for key, cls in RFID_READERS.items()} == {
        "feig": "FeigReader", "line": "LineReader", "simulated": "SimulatedRfidReader"}
    with pytest.raises(ValueError, match="two RFID reader drivers claim type 'feig'"):
        register_reader(type("Another", (FeigReader,), {}))


def test_a_config_is_picked_by_its_type() -> None:
    feig = parse_reader_config({"type": "feig", "port": "/dev/serial/by-id/usb-FEIG_ID_ISC.MR101-if00",
                                "bus_address": 0})
    assert isinstance(feig, FeigReaderConfig)
    assert (feig.baudrate, feig.parity, feig.bus_address, feig.name) == (38400, "E", 0, "rfid")
    line = parse_reader_config({"type": "line", "port": "/dev/ttyACM0"})
    assert isinstance(line, LineReaderConfig) and line.baudrate == 115200
    assert isinstance(parse_reader_config({"type": "simulated"}), SimulatedReaderConfig)


@pytest.mark.parametrize("table, message", [
    ({"type": "3m810", "port": "/dev/ttyUSB0"}, "unknown RFID reader type; expected one of: feig, line, simulated"),
    ({"port": "/dev/ttyUSB0"}, "unknown RFID reader type"),
    ({"type": "feig"}, "port"),
    ({"type": "feig", "port": "/dev/x", "baud": 9600}, "Extra inputs are not permitted"),
    ({"type": "line", "port": "/dev/x", "retries": 11}, "less than or equal to 10"),
    ({"type": "line", "port": "/dev/x", "reconnect_initial": 5, "reconnect_max": 1}, "reconnect_max"),
    ({"type": "feig", "port": "/dev/x", "block_byte_order": "lsb"}, "msb_first"),
])
def test_bad_configs_say_what_is_wrong(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_reader_config(table)


def test_readers_are_created_from_their_config_and_survive_a_missing_port(tmp_path: Path) -> None:
    for table, cls in [({"type": "feig"}, FeigReader), ({"type": "line"}, LineReader)]:
        reader = create_reader(parse_reader_config({**table, "port": str(tmp_path / "none")}))
        assert isinstance(reader, cls)
        reader.open()
        assert reader.state == "fault"
        reader.close()
        assert reader.state == "absent"


# --- write_afi, on a reader whose outcomes are scripted ------------------------------------

class ScriptedOutcomes(RfidReader):
    """A reader whose writes and reads of the AFI do what the test says, in order."""

    type_key = "scripted-outcomes"
    config_model = SimulatedReaderConfig

    def __init__(self, writes: list[Exception | None], reads: list[int | Exception]) -> None:
        self.name = "test"
        self.afi_write_attempts = 3
        self.writes = deque(writes)
        self.reads = deque(reads)

    @classmethod
    def from_config(cls, config: Any) -> RfidReader:
        return cls(writes=[], reads=[])

    def open(self) -> None: ...
    def close(self) -> None: ...

    @property
    def state(self) -> DeviceState:
        return "ok"

    def check(self) -> DeviceState:
        return "ok"

    def inventory(self) -> list[TagRead]:
        return []

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        return b""

    def system_info(self, uid: str) -> TagInfo:
        outcome = self.reads.popleft()
        if isinstance(outcome, Exception):
            raise outcome
        return TagInfo(uid=uid, dsfid=0, afi=outcome)

    def _write_afi_once(self, uid: str, afi: int) -> None:
        outcome = self.writes.popleft()
        if outcome is not None:
            raise outcome


def test_a_lost_write_reply_is_settled_by_the_read_back() -> None:
    reader = ScriptedOutcomes(writes=[TagCommunicationError("no reply from the tag")], reads=[0xC2])
    reader.write_afi(UID, 0xC2)
    assert not reader.writes and not reader.reads


def test_a_failed_read_back_means_writing_again() -> None:
    reader = ScriptedOutcomes(writes=[None, None], reads=[TagNotFound(UID), 0xC2])
    reader.write_afi(UID, 0xC2)
    assert not reader.writes and not reader.reads


def test_write_afi_gives_up_after_its_attempts() -> None:
    reader = ScriptedOutcomes(writes=[None, None, None], reads=[0x07, 0x07, TagNotFound(UID)])
    with pytest.raises(AfiNotConfirmed, match=r"after 3 attempt\(s\): read back 0x07") as caught:
        reader.write_afi(UID, 0xC2)
    assert isinstance(caught.value.__cause__, TagNotFound)


def test_a_faulty_reader_ends_the_attempts_at_once() -> None:
    reader = ScriptedOutcomes(writes=[ReaderNotResponding("silent"), None], reads=[0xC2])
    with pytest.raises(ReaderNotResponding):
        reader.write_afi(UID, 0xC2)
    assert len(reader.writes) == 1 and len(reader.reads) == 1
