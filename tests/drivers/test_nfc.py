"""The NFC card driver against a second nfcpy process: a card emulated over nfcpy's `udp:` link.

`nfc_emulator.py` (run as its own process) is the card; the driver under test opens the
reader at `udp:localhost:<port>` with the real nfcpy, exactly as it opens a USB reader.
Over UDP, a card that leaves the field and an emulator that dies look the same to the
reader (silence: Linux reports nothing to nfcpy's unconnected socket); an unplugged
reader is played by `UnpluggableReader`, the real udp frontend behind a cable that can
be pulled, which fails as nfcpy fails on a vanished USB reader (OSError ENODEV).
"""

from __future__ import annotations

import binascii
import errno
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nfc
import pytest
from pydantic import ValidationError

from drivers.base import SCANNERS, Read, create_scanner
from drivers.nfc import NfcScanner, NfcScannerConfig, clean_text

EMULATOR = Path(__file__).with_name("nfc_emulator.py")
IDM = "02FE000000000001"
UID_A = "04A1B2C3D4E5F6"
PUPI = "1A2B3C4D"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: Callable[[], Any], timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := what():
            return value
        time.sleep(0.02)
    return what()


class EmulatedCard:
    """The card process: `away()` takes it off the reader, `present()` puts it back."""

    def __init__(self, port: int, *args: str) -> None:
        self.port, self.args = port, args
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> EmulatedCard:
        self.process = subprocess.Popen(
            [sys.executable, str(EMULATOR), "--port", str(self.port), *self.args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._expect("ready")
        return self

    def _expect(self, word: str) -> None:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == word, f"emulator said {line!r}, expected {word!r}"

    def _say(self, word: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()
        self._expect(word)

    def away(self) -> None:
        self._say("away")

    def present(self) -> None:
        self._say("present")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


class Reads:
    def __init__(self) -> None:
        self.items: list[Read] = []
        self.started = time.monotonic()
        self.first_at: float | None = None

    def __call__(self, read: Read) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic() - self.started
        self.items.append(read)

    @property
    def codes(self) -> list[str]:
        return [read.code for read in self.items]


@pytest.fixture
def port() -> int:
    return free_udp_port()


@pytest.fixture
def cards() -> Iterator[list[EmulatedCard]]:
    started: list[EmulatedCard] = []
    yield started
    for card in started:
        card.kill()


@pytest.fixture
def scanners() -> Iterator[list[NfcScanner]]:
    started: list[NfcScanner] = []
    yield started
    for scanner in started:
        scanner.stop()


def card(cards: list[EmulatedCard], port: int, *args: str) -> EmulatedCard:
    emulated = EmulatedCard(port, *args)
    cards.append(emulated)
    return emulated.start()


def reader(scanners: list[NfcScanner], port: int, factory: Callable[[str], Any] | None = None,
           **config: Any) -> tuple[NfcScanner, Reads]:
    config.setdefault("targets", ("212F",))
    config.setdefault("reconnect_initial", 0.1)
    config.setdefault("reconnect_max", 0.4)
    scanner = NfcScanner(NfcScannerConfig(device=f"udp:localhost:{port}", **config),
                         frontend_factory=factory)
    scanners.append(scanner)
    reads = Reads()
    scanner.start(reads)
    return scanner, reads


# --- config ---------------------------------------------------------------------------------

def test_config_round_trip_through_the_registry() -> None:
    table = {"type": "nfc", "name": "card-reader", "device": "usb:072f:2200",
             "targets": ["106A", "212F"], "read": "ndef_text", "poll_interval": 0.2,
             "removal_checks": 4, "repeat_window": 2.5, "reconnect_initial": 1.0,
             "reconnect_max": 8.0}
    config = SCANNERS.parse(table)
    assert isinstance(config, NfcScannerConfig)
    assert config.targets == ("106A", "212F")
    assert SCANNERS.parse(config.model_dump(mode="json")) == config
    scanner = create_scanner(config)
    assert isinstance(scanner, NfcScanner) and scanner.name == "card-reader"
    assert scanner.state == "absent"  # nothing opened before start
    defaults = SCANNERS.parse({"type": "nfc"})
    assert (defaults.name, defaults.device, defaults.targets, defaults.read) == \
        ("nfc", "usb", ("106A",), "ndef_text_or_uid")


@pytest.mark.parametrize("device", ["usb", "usb:054c:06c3", "usb:001:023", "tty:USB0:pn532",
                                    "tty:AMA0", "com:COM3:pn532", "udp", "udp:localhost:54321",
                                    "udp::54321"])
def test_config_accepts_nfcpy_paths(device: str) -> None:
    assert NfcScannerConfig(device=device).device == device


@pytest.mark.parametrize(("table", "fragment"), [
    ({"device": "/dev/ttyUSB0"}, "not an nfcpy device path"),
    ({"device": "usb:zz"}, "not an nfcpy device path"),
    ({"device": "udp:localhost:port"}, "not an nfcpy device path"),
    ({"targets": []}, "at least one target"),
    ({"targets": ["106A", "106A"]}, "targets repeat"),
    ({"targets": ["106C"]}, "106A"),
    ({"read": "serial"}, "ndef_text_or_uid"),
    ({"removal_checks": 0}, "greater than or equal to 1"),
    ({"baud": 9600}, "Extra inputs are not permitted"),
])
def test_config_rejects_with_a_clear_error(table: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SCANNERS.parse({"type": "nfc", **table})
    assert fragment in str(caught.value)


def test_clean_text_keeps_the_card_number_only() -> None:
    assert clean_text(" HS-0123\r\n\x00") == "HS-0123"
    assert clean_text("\x02\x03") == ""
    assert len(clean_text("9" * 500)) == 64


# --- reading cards over udp ------------------------------------------------------------------

def test_felica_ndef_text_is_the_code(cards: list[EmulatedCard], scanners: list[NfcScanner],
                                      port: int) -> None:
    card(cards, port, "--card", "tt3", "--id", IDM, "--text", "HS-0123")
    scanner, reads = reader(scanners, port)
    assert wait_for(lambda: reads.items)
    assert reads.items[0] == Read(code="HS-0123", source="nfc", at=reads.items[0].at)
    assert scanner.state == "ok" and scanner.last_error == ""
    print(f"212F NDEF text: first read after {reads.first_at:.3f} s")


@pytest.mark.parametrize(("mode", "text", "expected"), [
    ("uid", "HS-0123", IDM),
    ("ndef_text_or_uid", None, IDM),
    ("ndef_text", "HS-0123", "HS-0123"),
])
def test_read_mode_picks_text_or_uid(cards: list[EmulatedCard], scanners: list[NfcScanner],
                                     port: int, mode: str, text: str | None, expected: str) -> None:
    card(cards, port, "--card", "tt3", "--id", IDM, *(["--text", text] if text else []))
    _, reads = reader(scanners, port, read=mode)
    assert wait_for(lambda: reads.codes) == [expected]


def test_ndef_text_mode_ignores_a_card_without_text(
        cards: list[EmulatedCard], scanners: list[NfcScanner], port: int,
        caplog: pytest.LogCaptureFixture) -> None:
    card(cards, port, "--card", "tt3", "--id", IDM)
    scanner, reads = reader(scanners, port, read="ndef_text")
    assert wait_for(lambda: "carries no NDEF text record" in caplog.text)
    assert IDM in caplog.text
    time.sleep(0.5)
    assert reads.items == [] and scanner.state == "ok"


def test_felica_at_424_kbps(cards: list[EmulatedCard], scanners: list[NfcScanner], port: int) -> None:
    card(cards, port, "--card", "tt3", "--brty", "424F", "--text", "GV-0001")
    _, reads = reader(scanners, port, targets=("424F",))
    assert wait_for(lambda: reads.codes) == ["GV-0001"]


def test_iso14443a_type2_uid_and_text(cards: list[EmulatedCard], scanners: list[NfcScanner],
                                      port: int) -> None:
    card(cards, port, "--card", "tt2", "--id", UID_A, "--text", "HS-0456")
    _, reads = reader(scanners, port, targets=("106A",))
    assert wait_for(lambda: reads.codes, timeout=10) == ["HS-0456"]
    print(f"106A Type 2 NDEF text: first read after {reads.first_at:.3f} s")


def test_iso14443a_uid(cards: list[EmulatedCard], scanners: list[NfcScanner], port: int) -> None:
    card(cards, port, "--card", "tt2", "--id", "A1B2C3D4")  # a 4-byte UID, as MIFARE Classic 1K
    _, reads = reader(scanners, port, targets=("106A",), read="uid")
    assert wait_for(lambda: reads.codes) == ["A1B2C3D4"]


def test_iso14443b_pupi_without_activation(cards: list[EmulatedCard], scanners: list[NfcScanner],
                                           port: int) -> None:
    # nfcpy cannot emulate Type 4, so the B card never opens: its PUPI is still the UID.
    card(cards, port, "--card", "b", "--id", PUPI)
    scanner, reads = reader(scanners, port, targets=("106B",))
    assert wait_for(lambda: reads.codes) == [PUPI]
    time.sleep(1.5)  # left on the reader: presence is checked by polling it again
    assert reads.codes == [PUPI] and scanner.state == "ok"


def test_polls_only_the_configured_targets(scanners: list[NfcScanner], port: int) -> None:
    heard: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as air:
        air.bind(("127.0.0.1", port))
        air.settimeout(0.2)
        _, reads = reader(scanners, port, targets=("106B", "424F"))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                heard.append(air.recvfrom(1024)[0])
            except TimeoutError:
                continue
    probes = {datagram.split()[0] for datagram in heard if datagram != b"RFOFF"}
    assert probes == {b"106B", b"424F"}
    assert reads.items == []


def test_a_card_of_an_unpolled_type_is_not_read(cards: list[EmulatedCard],
                                                scanners: list[NfcScanner], port: int) -> None:
    card(cards, port, "--card", "tt3", "--text", "HS-0123")
    scanner, reads = reader(scanners, port, targets=("106A",))
    time.sleep(2.5)
    assert reads.items == [] and scanner.state == "ok"


# --- debounce ---------------------------------------------------------------------------------

def test_a_card_left_on_the_reader_is_one_read_until_taken_away(
        cards: list[EmulatedCard], scanners: list[NfcScanner], port: int) -> None:
    emulated = card(cards, port, "--text", "HS-0123")
    _, reads = reader(scanners, port)
    assert wait_for(lambda: reads.codes) == ["HS-0123"]
    time.sleep(2.0)
    assert reads.codes == ["HS-0123"]
    emulated.away()
    time.sleep(1.5)
    assert reads.codes == ["HS-0123"]
    emulated.present()
    assert wait_for(lambda: len(reads.codes) == 2)
    assert reads.codes == ["HS-0123", "HS-0123"]


def test_repeat_window_holds_back_the_same_card(cards: list[EmulatedCard],
                                                scanners: list[NfcScanner], port: int) -> None:
    emulated = card(cards, port, "--text", "HS-0123")
    _, reads = reader(scanners, port, repeat_window=30.0)
    assert wait_for(lambda: reads.codes) == ["HS-0123"]
    emulated.away()
    time.sleep(1.5)
    emulated.present()
    time.sleep(2.5)
    assert reads.codes == ["HS-0123"]


# --- faults and recovery ----------------------------------------------------------------------

def test_emulator_killed_and_restarted_reads_again(cards: list[EmulatedCard],
                                                   scanners: list[NfcScanner], port: int) -> None:
    card(cards, port, "--text", "HS-0123")
    scanner, reads = reader(scanners, port)
    assert wait_for(lambda: reads.codes) == ["HS-0123"]
    cards[0].kill()
    # Over UDP a dead card process is silence, as a card taken away: the reader is fine.
    time.sleep(2.0)
    assert scanner.state == "ok" and reads.codes == ["HS-0123"]
    card(cards, port, "--text", "HS-0789")
    assert wait_for(lambda: len(reads.codes) == 2)
    assert reads.codes == ["HS-0123", "HS-0789"] and scanner.state == "ok"


class UnpluggableReader:
    """The real nfcpy udp frontend behind a cable that can be pulled: while unplugged,
    opening fails and every call fails with OSError ENODEV, as nfcpy does for a USB
    reader that has gone."""

    def __init__(self) -> None:
        self.plugged = True
        self.opened = 0

    def _check(self) -> None:
        if not self.plugged:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    def open(self, path: str) -> Any:
        self._check()
        self.opened += 1
        cable = self

        class Frontend:
            def __init__(self) -> None:
                self.clf = nfc.ContactlessFrontend(path)

            def sense(self, *targets: Any, **options: Any) -> Any:
                cable._check()
                return self.clf.sense(*targets, **options)

            def exchange(self, data: Any, timeout: float) -> Any:
                cable._check()
                return self.clf.exchange(data, timeout)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.clf, name)

        return Frontend()


def test_unplugged_reader_faults_and_recovers_without_restart(
        cards: list[EmulatedCard], scanners: list[NfcScanner], port: int) -> None:
    emulated = card(cards, port, "--text", "HS-0123")
    cable = UnpluggableReader()
    scanner, reads = reader(scanners, port, factory=cable.open)
    assert wait_for(lambda: reads.codes) == ["HS-0123"]
    emulated.away()
    cable.plugged = False
    assert wait_for(lambda: scanner.state == "fault")
    assert "No such device" in scanner.last_error and f"udp:localhost:{port}" in scanner.last_error
    time.sleep(1.0)  # reopening fails meanwhile, with backoff
    assert scanner.state == "fault" and cable.opened == 1
    cable.plugged = True
    emulated.present()
    assert wait_for(lambda: scanner.state == "ok")
    assert scanner.last_error == "" and cable.opened == 2
    assert wait_for(lambda: len(reads.codes) == 2)
    assert reads.codes == ["HS-0123", "HS-0123"]


class JunkAir:
    """A UDP peer on the card's port that answers every probe with the next junk datagram."""

    def __init__(self, port: int, replies: list[bytes]) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", port))
        self.socket.settimeout(0.1)
        self.replies = replies
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                _, sender = self.socket.recvfrom(1024)
            except TimeoutError:
                continue
            self.socket.sendto(self.replies[self.sent % len(self.replies)], sender)
            self.sent += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.socket.close()


IDM_PMM = bytes.fromhex("02FE0000000000EE" "03014B024F4993FF")  # not the real card
JUNK = [
    b"",                                   # no brty, no data
    b"212F zz",                            # not hex
    b"\xff\xfe\x00 0102",                  # not ASCII
    b"212F 0102",                          # a SENSF_RES cut short
    b"212F " + binascii.hexlify(os.urandom(300)),  # longer than nfcpy's 1024-byte read
    b"RFOFF",
    os.urandom(40),
    b"212F " + binascii.hexlify(bytes([18, 1]) + IDM_PMM),  # a FeliCa that answers a poll...
    b"212F 0a07" + b"ff" * 8,              # ...then junk to its commands
    b"106A 4400",                          # another technology than asked
]


def test_junk_datagrams_do_not_crash_the_driver(cards: list[EmulatedCard],
                                                scanners: list[NfcScanner], port: int) -> None:
    air = JunkAir(port, JUNK)
    try:
        scanner, reads = reader(scanners, port, read="ndef_text")
        assert wait_for(lambda: air.sent >= 3 * len(JUNK), timeout=30)
        assert reads.items == []
        assert scanner._thread is not None and scanner._thread.is_alive()
    finally:
        air.close()
    card(cards, port, "--text", "HS-0123")
    assert wait_for(lambda: reads.codes, timeout=10) == ["HS-0123"]
    assert scanner.state == "ok"


def test_a_reader_that_only_sends_junk_faults_then_recovers(
        cards: list[EmulatedCard], scanners: list[NfcScanner], port: int) -> None:
    air = JunkAir(port, [b"212F zz"])
    try:
        scanner, reads = reader(scanners, port)
        assert wait_for(lambda: scanner.state == "fault")
        assert "cannot parse" in scanner.last_error
    finally:
        air.close()
    card(cards, port, "--text", "HS-0123")
    assert wait_for(lambda: scanner.state == "ok", timeout=10)
    assert wait_for(lambda: reads.codes) == ["HS-0123"]


def test_no_reader_on_the_path_is_a_fault(scanners: list[NfcScanner]) -> None:
    # No ACR122U on a test machine: nfcpy finds nothing at this USB id.
    scanner = NfcScanner(NfcScannerConfig(device="usb:072f:2200", reconnect_initial=5.0))
    scanners.append(scanner)
    scanner.start(Reads())
    assert scanner.state == "fault"
    assert "usb:072f:2200" in scanner.last_error
    scanner.stop()
    assert scanner.state == "absent"


def test_without_nfcpy_the_state_is_fault_with_the_reason(
        scanners: list[NfcScanner], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nfc", None)  # `import nfc` now raises ImportError
    scanner = NfcScanner(NfcScannerConfig(device="udp:localhost:9", reconnect_initial=5.0))
    scanners.append(scanner)
    scanner.start(Reads())
    assert scanner.state == "fault"
    assert "nfcpy is not installed" in scanner.last_error


def test_stop_is_prompt_and_safe_twice(scanners: list[NfcScanner], port: int) -> None:
    scanner, _ = reader(scanners, port, targets=("106A", "106B", "212F"))
    time.sleep(0.3)
    started = time.monotonic()
    scanner.stop()
    scanner.stop()
    # One udp probe finds nothing after 1 s: stop waits for that one, not a 3 s cycle.
    assert time.monotonic() - started < 2.0
    assert scanner.state == "absent"
