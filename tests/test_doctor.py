"""`thuvien doctor`: each configured device tested through the real drivers, faults with hints.

The hardware edge is faked only where there is no hardware: simulated devices, a pty with a
fake reader firmware on its master side, a port that does not exist, a printer that is a file.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.rfid.simulated import FeigEmulator, LineBridgeEmulator, SimulatedPad, SimulatedTag
from thuvien.cli import main
from thuvien.doctor import hint_for

ROOT = Path(__file__).resolve().parents[1]
UIDS = ["E004015000000001", "E004015000000002", "E004015000000003"]


def station(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(f'site = "truong-a"\nstation = "kiosk-1"\n{devices}', encoding="utf-8")
    return path


def doctor_json(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, dict]:
    code = main(["--log-level", "ERROR", "doctor", "--config", str(config), "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def thuvien(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "thuvien"), "--log-level", "ERROR", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


class PtyFirmware:
    """A reader's firmware on the master side of a pty: it answers what the driver writes
    to the slave tty with an emulator of the reader's protocol (None: it never answers)."""

    def __init__(self, device: FeigEmulator | LineBridgeEmulator | None) -> None:
        self.device = device
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            try:
                buffer += os.read(self.master, 4096)
            except OSError:
                return
            if self.device is None:
                buffer.clear()
                continue
            for request in self.device.take_requests(buffer):
                os.write(self.master, self.device.respond(request))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def pad() -> SimulatedPad:
    return SimulatedPad(SimulatedTag(uid=uid) for uid in UIDS)


@pytest.fixture
def firmware() -> Iterator[list[PtyFirmware]]:
    started: list[PtyFirmware] = []
    yield started
    for one in started:
        one.close()


SIMULATED = """
[devices.scanner]
type = "simulated"
[devices.rfid]
type = "simulated"
tags = [{uid = "E004015000000001"}, {uid = "E004015000000002"}]
[devices.printer]
type = "simulated"
[devices.gpio]
type = "simulated"
inputs = {counter = {pin = 17}, bin_full = {pin = 27}}
outputs = {relay = {pin = 22}}
"""


def test_a_station_of_simulated_devices_is_all_ok(tmp_path: Path, capsys) -> None:
    code, report = doctor_json(capsys, station(tmp_path, SIMULATED))
    assert code == 0 and report["ok"] is True and report["station"] == "kiosk-1"
    by_slot = {device["slot"]: device for device in report["devices"]}
    assert sorted(by_slot) == ["gpio", "printer", "rfid", "scanner"]
    assert all(device["status"] == "ok" and device["hint"] is None for device in by_slot.values())
    assert by_slot["rfid"]["info"]["tags"] == 2
    assert by_slot["gpio"]["info"]["inputs"] == {"counter": False, "bin_full": False}
    assert "nothing printed" in by_slot["printer"]["detail"]


def test_text_report_one_line_per_device_and_exit_code(tmp_path: Path) -> None:
    run = thuvien("doctor", "--config", str(station(tmp_path, SIMULATED)))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"thuvien doctor: station kiosk-1 (kiosk), {tmp_path / 'station.toml'}"
    assert [line.split()[:2] for line in lines[1:5]] == [
        ["OK", "scanner"], ["OK", "rfid"], ["OK", "gpio"], ["OK", "printer"]]
    assert lines[5] == "4 device(s): 4 OK, 0 FAULT"


def test_readers_on_a_port_that_does_not_exist_fault_with_a_hint(tmp_path: Path) -> None:
    config = station(tmp_path, '[devices.scanner]\ntype = "simulated"\n'
                               '[devices.rfid]\ntype = "feig"\n'
                               'port = "/dev/serial/by-id/usb-FEIG_nothing-if00-port0"\n')
    run = thuvien("doctor", "--config", str(config), "--wait", "0.3")
    assert run.returncode == 1
    fault = next(line for line in run.stdout.splitlines() if line.startswith("FAULT"))
    assert "rfid" in fault and "No such file or directory" in fault
    hint = run.stdout.splitlines()[run.stdout.splitlines().index(fault) + 1]
    assert hint.strip().startswith("→ Kiểm tra cáp")          # Vietnamese first...
    assert "/ check the cable" in hint and "`thuvien devices`" in hint  # ...then English
    assert run.stdout.splitlines()[-1] == "2 device(s): 1 OK, 1 FAULT"


@pytest.mark.parametrize("scanner", [
    'type = "serial"\nport = "/dev/serial/by-id/usb-Honeywell_nothing-if00"',
    'type = "evdev"\ndevice = "/dev/input/by-id/usb-Honeywell_nothing-event-kbd"',
    'type = "camera"\ndevice = "/dev/v4l/by-id/usb-nothing-video-index0"',
])
def test_scanners_that_are_not_plugged_in_fault_with_a_hint(tmp_path: Path, capsys,
                                                           scanner: str) -> None:
    code, report = doctor_json(capsys, station(tmp_path, f"[devices.scanner]\n{scanner}\n"),
                               "--wait", "0.3")
    device = report["devices"][0]
    assert code == 1 and device["status"] == "fault"
    assert "nothing" in device["detail"]  # the driver's reason names the configured device
    assert device["hint"]["vi"].startswith("Kiểm tra cáp")
    assert "thuvien devices" in device["hint"]["en"]


def test_a_serial_scanner_on_a_real_tty(tmp_path: Path, capsys,
                                        firmware: list[PtyFirmware]) -> None:
    firmware.append(PtyFirmware(None))
    code, report = doctor_json(capsys, station(tmp_path, f'[devices.scanner]\ntype = "serial"\n'
                                                         f'port = "{firmware[0].path}"\n'))
    assert code == 0
    assert report["devices"][0]["status"] == "ok" and report["devices"][0]["state"] == "ok"


def test_a_line_bridge_on_a_real_tty_answers_an_inventory(tmp_path: Path, capsys, pad: SimulatedPad,
                                                        firmware: list[PtyFirmware]) -> None:
    firmware.append(PtyFirmware(LineBridgeEmulator(pad)))
    by_id = tmp_path / "usb-thuvien_bridge-if00"
    by_id.symlink_to(firmware[0].path)
    code, report = doctor_json(capsys, station(tmp_path, f'[devices.rfid]\ntype = "line"\n'
                                                         f'port = "{by_id}"\n'))
    rfid = next(device for device in report["devices"] if device["slot"] == "rfid")
    assert code == 0, rfid
    assert rfid["where"] == str(by_id) and rfid["info"]["tags"] == 3
    assert sorted(rfid["info"]["uids"]) == UIDS
    assert rfid["info"]["firmware"] == "thuvien simulated bridge"


def test_a_feig_reader_on_a_real_tty(tmp_path: Path, capsys, pad: SimulatedPad,
                                     firmware: list[PtyFirmware]) -> None:
    firmware.append(PtyFirmware(FeigEmulator(pad)))
    code, report = doctor_json(capsys, station(tmp_path, f'[devices.rfid]\ntype = "feig"\n'
                                                         f'port = "{firmware[0].path}"\n'))
    rfid = report["devices"][1]
    assert (code, rfid["status"], rfid["info"]["tags"]) == (0, "ok", 3)


def test_a_silent_reader_does_not_hang_the_doctor(tmp_path: Path,
                                                  firmware: list[PtyFirmware]) -> None:
    # A bridge that never answers: the driver waits its boot timeout (10 s) per attempt.
    firmware.append(PtyFirmware(None))
    config = station(tmp_path, f'[devices.rfid]\ntype = "line"\nport = "{firmware[0].path}"\n'
                               f'boot_timeout = 10\n')
    started = time.monotonic()
    run = thuvien("doctor", "--config", str(config), "--timeout", "1", "--json")
    assert time.monotonic() - started < 8  # well under the driver's 30 s of attempts
    assert run.returncode == 1
    rfid = json.loads(run.stdout)["devices"][1]
    assert rfid["status"] == "fault" and "no result within 1 s" in rfid["detail"]
    assert rfid["hint"]["vi"].startswith("Thiết bị bị treo") and "unplug" in rfid["hint"]["en"]


def test_simulated_faults_are_faults(tmp_path: Path, capsys) -> None:
    config = station(tmp_path, '[devices.scanner]\ntype = "simulated"\nstate = "fault"\n'
                               '[devices.rfid]\ntype = "simulated"\nplugged = false\n')
    code, report = doctor_json(capsys, config, "--wait", "0.2")
    assert code == 1 and report["ok"] is False
    assert [device["status"] for device in report["devices"]] == ["fault", "fault"]
    assert all("simulated" in device["hint"]["en"] for device in report["devices"])


def test_a_printer_file_gets_a_test_receipt_only_when_asked(tmp_path: Path, capsys) -> None:
    paper = tmp_path / "lp0"
    paper.write_bytes(b"")
    config = station(tmp_path, f'[devices.printer]\ntype = "file"\npath = "{paper}"\n'
                               f'paper_width_mm = 58\n')
    code, report = doctor_json(capsys, config)
    assert code == 0 and paper.read_bytes() == b""
    code, report = doctor_json(capsys, config, "--print-test")
    printed = paper.read_bytes()
    assert code == 0 and printed.startswith(b"\x1b@")  # ESC @: init, then the raster
    assert b"\x1dv0" in printed and report["devices"][1]["info"]["bytes_sent"] == len(printed)


def test_a_printer_in_a_missing_folder_is_a_fault(tmp_path: Path, capsys) -> None:
    config = station(tmp_path, f'[devices.printer]\ntype = "file"\n'
                               f'path = "{tmp_path}/no/usb/lp0"\n')
    code, report = doctor_json(capsys, config)
    printer = report["devices"][1]
    assert code == 1 and printer["status"] == "fault" and "not_found" in printer["detail"]
    assert "thuvien devices" in printer["hint"]["en"]


def test_a_wrong_config_names_file_line_and_field(tmp_path: Path) -> None:
    config = station(tmp_path, '[devices.rfid]\ntype = "feig"\nport = "/dev/ttyUSB0"\n'
                               'baudrate = "fast"\n')
    run = thuvien("doctor", "--config", str(config))
    assert run.returncode == 1 and run.stdout == ""
    assert f"{config}:6: devices.rfid.baudrate:" in run.stderr


@pytest.mark.parametrize(("kind", "message", "where", "expected_vi", "expected_en"), [
    ("feig", "could not open port /dev/ttyUSB0: [Errno 13] Permission denied: '/dev/ttyUSB0'",
     "/dev/ttyUSB0", "nhóm dialout", "dialout group"),
    ("camera", "cannot open /dev/video0: [Errno 13] Permission denied", "/dev/video0",
     "nhóm video", "video group"),
    ("evdev", "[Errno 13] Permission denied: '/dev/input/event3'", "", "nhóm input", "input group"),
    ("usb", "[Errno 13] Access denied (insufficient permissions)", "usb 0416:5011",
     "luật udev", "udev rule"),
    ("nfc", "[Errno 16] Device or resource busy", "usb", "pn533", "blacklist"),
    ("camera", "cannot open /dev/video0: Device or resource busy", "/dev/video0",
     "đang dùng camera", "using the camera"),
    ("serial", "[Errno 11] Could not exclusively lock port /dev/ttyUSB0", "/dev/ttyUSB0",
     "chương trình khác", "another program"),
    ("nfc", "no reader found on usb", "usb", "pn533", "pn533"),
    ("line", "reader rfid: no VERSION answer from the bridge on /dev/ttyACM0", "/dev/ttyACM0",
     "không trả lời", "does not answer"),
    ("network", "Could not open socket for 10.0.0.9: [Errno 111] Connection refused",
     "10.0.0.9:9100", "địa chỉ IP", "IP address"),
    ("usb", "USB printer 0416:5011: No backend available", "", "libusb", "libusb"),
    ("nfc", "nfcpy is not installed: No module named 'nfc'", "usb", "./run", "./run"),
    ("feig", "something nobody foresaw", "", "Rút thiết bị ra", "unplug the device"),
])
def test_hints_name_the_fix_in_vietnamese_then_english(kind: str, message: str, where: str,
                                                        expected_vi: str, expected_en: str) -> None:
    hint = hint_for(kind, message, where)
    assert expected_vi in hint.vi and expected_en in hint.en
    assert str(hint) == f"{hint.vi} / {hint.en}"
