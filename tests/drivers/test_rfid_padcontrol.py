"""The simulated pad's control socket: how the demo lays books on a gate or a return box."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from drivers.rfid.padcontrol import PadController, send, uid_for
from drivers.rfid.reader import ReaderFault, create_reader, parse_reader_config
from drivers.rfid.simulated import SimulatedPad
from drivers.rfid.tagdata import decode_tag


@pytest.fixture
def reader(tmp_path: Path):
    path = tmp_path / "run" / "gate-1.sock"
    reader = create_reader(parse_reader_config({"type": "simulated", "control": str(path)}))
    reader.open()
    yield reader, path
    reader.close()


def test_put_lays_a_readable_item_tag_on_the_readers_pad(reader) -> None:
    rfid, path = reader
    assert path.stat().st_mode & 0o777 == 0o600
    answer = send(path, "put GK-00012")
    assert answer == f"ok {uid_for('GK-00012')}"
    [tag] = rfid.inventory()
    assert tag.uid == uid_for("GK-00012")
    data = decode_tag(rfid.read_blocks(tag.uid, 0, 8), tag.dsfid)
    assert (data.primary_item_id, data.usage.value, data.parts_in_set) == ("GK-00012", "loanable", 1)
    assert rfid.read_afi(tag.uid) == 0x07


def test_on_loan_parts_cards_lift_and_afi(reader) -> None:
    rfid, path = reader
    assert send(path, "put NV-1 on_loan parts=2").startswith("ok ")
    assert send(path, "card HS-0042").startswith("ok ")
    assert len(rfid.inventory()) == 3
    assert send(path, "afi NV-1") == "ok C2 C2"
    card = decode_tag(rfid.read_blocks(uid_for("HS-0042"), 0, 8))
    assert card.is_patron_card and card.primary_item_id == "HS-0042"
    rfid.write_afi(uid_for("NV-1", 2), 0x07)
    assert send(path, "afi NV-1") == "ok C2 07"
    assert send(path, "lift NV-1") == f"ok {uid_for('NV-1', 1)} {uid_for('NV-1', 2)}"
    assert [t.uid for t in rfid.inventory()] == [uid_for("HS-0042")]
    assert send(path, "lift NV-1") == "error NV-1 is not on the pad"
    assert send(path, "clear") == "ok" and rfid.inventory() == []


def test_pass_lifts_the_book_after_the_hold_time() -> None:
    pad = SimulatedPad()
    control = PadController(pad, hold=0.05)
    assert control.handle("pass GK-1").startswith("ok ")
    assert pad.uids == [uid_for("GK-1")]
    deadline = time.monotonic() + 2
    while pad.uids and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pad.uids == []


def test_unplug_and_replug_are_seen_by_the_reader(reader) -> None:
    rfid, path = reader
    assert send(path, "unplug") == "ok"
    with pytest.raises(ReaderFault):
        rfid.inventory()
    assert rfid.state == "fault"
    assert send(path, "replug") == "ok"
    assert rfid.inventory() == []
    assert rfid.state == "ok"


@pytest.mark.parametrize("line, expected", [
    ("", "error empty command"),
    ("dance", "error unknown command 'dance'"),
    ("put", "error usage: put ITEM"),
    ("put GK-1 parts=99", "error parts must be 1..16"),
    ("put GK-1 afi=zz", "error invalid literal for int() with base 16: 'zz'"),
    ("put GK-1 sideways", "error unknown option 'sideways'"),
    ("afi GK-404", "error usage: afi ITEM|UID (on the pad)"),
])
def test_bad_commands_get_an_error_line_and_change_nothing(line: str, expected: str) -> None:
    pad = SimulatedPad()
    assert PadController(pad).handle(line) == expected
    assert pad.uids == []


def test_junk_on_the_socket_does_not_stop_the_server(reader) -> None:
    rfid, path = reader
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(b"\xff\xfe\n")
        assert sock.recv(100) == b"error not UTF-8\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(b"x" * 2000 + b"\n")
        assert sock.recv(100) == b"error line too long\n"
    assert send(path, "put GK-7").startswith("ok ")
    assert len(rfid.inventory()) == 1


def test_pads_starting_together_leave_the_process_umask_alone(tmp_path: Path) -> None:
    # The umask is the whole process's: a pad that changed it around its bind, racing
    # another, once left it at 0177, and every browser started later in that process
    # died making directories it could not enter.
    import os
    import stat
    import threading

    from drivers.rfid.padcontrol import PadControlServer

    before = os.umask(0o022)
    os.umask(before)
    servers: list[PadControlServer] = []
    lock = threading.Lock()

    def start(index: int) -> None:
        server = PadControlServer(SimulatedPad(), tmp_path / f"pad-{index}.sock")
        with lock:
            servers.append(server)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        after = os.umask(before)
        assert after == before
        for server in servers:
            assert stat.S_IMODE(server.path.stat().st_mode) == 0o600  # the owner's only
    finally:
        for server in servers:
            server.close()
