"""`thuvien devices` on a fake machine: a /dev and /sys tree built in a temporary directory,
shaped as the kernel lays them out (relative sysfs links, udev's by-id links)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from drivers.discovery import Inventory, discover, format_inventory, guess
from thuvien.cli import main

ROOT = Path(__file__).resolve().parents[2]
KEYBOARD_KEYS = "1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe"
MOUSE_KEYS = "1f0000 0 0 0 0"


class FakeMachine:
    """Writes sysfs folders, attribute files, device nodes and links under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pci = "sys/devices/pci0000:00/0000:00:14.0"

    def write(self, path: str, text: str) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n", encoding="utf-8")
        return target

    def link(self, path: str, to: str) -> None:
        # Relative, as sysfs and udev make them.
        source = self.root / path
        source.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(self.root / to, source.parent), source)

    def node(self, path: str) -> None:
        # A FIFO: a test that opened it for reading would hang, not pass.
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(target)

    def usb(self, port: str, vid: int, pid: int, *, product: str = "", manufacturer: str = "",
            serial: str = "", bus: int = 1, dev: int = 2) -> str:
        folder = f"{self.pci}/usb{bus}/{port}"
        self.write(f"{folder}/idVendor", f"{vid:04x}")
        self.write(f"{folder}/idProduct", f"{pid:04x}")
        self.write(f"{folder}/busnum", str(bus))
        self.write(f"{folder}/devnum", str(dev))
        for name, value in (("product", product), ("manufacturer", manufacturer), ("serial", serial)):
            if value:
                self.write(f"{folder}/{name}", value)
        self.link(f"sys/bus/usb/devices/{port}", folder)
        return folder

    def interface(self, usb: str, number: int, cls: int, driver: str | None = None) -> str:
        port = usb.rsplit("/", 1)[1]
        folder = f"{usb}/{port}:1.{number}"
        self.write(f"{folder}/bInterfaceClass", f"{cls:02x}")
        if driver:
            self.link(f"{folder}/driver", f"sys/bus/usb/drivers/{driver}")
        self.link(f"sys/bus/usb/devices/{port}:1.{number}", folder)
        return folder


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    m = FakeMachine(tmp_path)
    (tmp_path / "sys/bus/usb/drivers").mkdir(parents=True)
    for bus in ("usb-serial", "usb", "platform"):
        (tmp_path / f"sys/bus/{bus}").mkdir(parents=True, exist_ok=True)

    # An FTDI bridge (a FEIG reader behind it?) as ttyUSB0, with its by-id link.
    ftdi = m.usb("1-1", 0x0403, 0x6001, product="FT232R USB UART", manufacturer="FTDI",
                 serial="A10K3XYZ")
    iface = m.interface(ftdi, 0, 0xFF, "ftdi_sio")
    m.write(f"{iface}/ttyUSB0/port_number", "0")
    m.link(f"{iface}/ttyUSB0/subsystem", "sys/bus/usb-serial")
    m.link("sys/class/tty/ttyUSB0/device", f"{iface}/ttyUSB0")
    m.node("dev/ttyUSB0")
    m.link("dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3XYZ-if00-port0", "dev/ttyUSB0")
    # A Honeywell scanner in USB serial (CDC ACM) mode.
    honeywell = m.usb("1-2", 0x0C2E, 0x0B61, product="Honeywell Scanner", dev=3)
    acm = m.interface(honeywell, 0, 0x02, "cdc_acm")
    m.link(f"{acm}/subsystem", "sys/bus/usb")
    m.link("sys/class/tty/ttyACM0/device", acm)
    m.node("dev/ttyACM0")
    # A legacy 8250 placeholder pyserial hides, and a virtual console that is no port at all.
    m.write("sys/devices/platform/serial8250/uevent", "")
    m.link("sys/devices/platform/serial8250/subsystem", "sys/bus/platform")
    m.link("sys/class/tty/ttyS3/device", "sys/devices/platform/serial8250")
    m.write("sys/class/tty/tty1/dev", "4:1")

    # A UVC camera: the picture node and its metadata node.
    cam = m.usb("2-1", 0x046D, 0x0825, product="Webcam C270", bus=2, dev=2)
    video = m.interface(cam, 0, 0x0E, "uvcvideo")
    for index in (0, 1):
        m.write(f"sys/class/video4linux/video{index}/name", "UVC Camera (046d:0825)")
        m.write(f"sys/class/video4linux/video{index}/index", str(index))
        m.link(f"sys/class/video4linux/video{index}/device", video)
        m.node(f"dev/video{index}")
    m.link("dev/v4l/by-id/usb-046d_0825_7E2B-video-index0", "dev/video0")

    # NFC: a Sony RC-S380 held by the kernel's port100, and an ACR122U nobody holds.
    sony = m.usb("2-2", 0x054C, 0x06C3, product="RC-S380/P", manufacturer="SONY", bus=2, dev=5)
    m.interface(sony, 0, 0xFF, "port100")
    m.node("dev/bus/usb/002/005")
    acs = m.usb("2-3", 0x072F, 0x2200, product="ACR122U PICC Interface", bus=2, dev=6)
    m.interface(acs, 0, 0x0B)
    m.node("dev/bus/usb/002/006")

    # A keyboard-mode barcode scanner and a mouse.
    m.write(f"{honeywell}/1-2:1.1/0003:0C2E:0B61.0001/input/input5/name", "Honeywell Imaging Scanner")
    inp = f"{honeywell}/1-2:1.1/0003:0C2E:0B61.0001/input/input5"
    m.write(f"{inp}/id/vendor", "0c2e")
    m.write(f"{inp}/id/product", "0b61")
    m.write(f"{inp}/capabilities/key", KEYBOARD_KEYS)
    m.write(f"{inp}/uniq", "21084B3F")
    m.link("sys/class/input/event3/device", inp)
    m.node("dev/input/event3")
    m.link("dev/input/by-id/usb-Honeywell_Imaging_Scanner-event-kbd", "dev/input/event3")
    mouse = f"{m.pci}/usb1/1-3/1-3:1.0/input/input6"
    m.write(f"{mouse}/name", "Logitech USB Optical Mouse")
    m.write(f"{mouse}/capabilities/key", MOUSE_KEYS)
    m.link("sys/class/input/event4/device", mouse)
    m.node("dev/input/event4")

    # Receipt printers: a printer-class POS-58 on usblp, and an Epson in vendor mode.
    pos = m.usb("1-4", 0x0416, 0x5011, product="POS58 Printer USB", bus=1, dev=7)
    lp = m.interface(pos, 0, 0x07, "usblp")
    m.link("sys/class/usbmisc/lp0/device", lp)
    m.node("dev/usb/lp0")
    epson = m.usb("1-5", 0x04B8, 0x0E27, product="TM-T20III", manufacturer="EPSON", bus=1, dev=8)
    m.interface(epson, 0, 0xFF)

    # The GPIO of a Raspberry Pi 4.
    chip = "sys/devices/platform/soc/fe200000.gpio/gpiochip0"
    m.write(f"{chip}/dev", "254:0")
    m.write("sys/class/gpio/gpiochip512/label", "pinctrl-bcm2711")
    m.write("sys/class/gpio/gpiochip512/ngpio", "58")
    m.link("sys/class/gpio/gpiochip512/device", chip)
    m.node("dev/gpiochip0")
    return m


def by_path(inventory: Inventory, section: str) -> dict[str, dict]:
    return {item["path"]: item for item in inventory.to_dict()[section]}


def test_serial_ports_with_their_by_id_links_usb_ids_and_a_labelled_guess(machine: FakeMachine) -> None:
    ports = by_path(discover(machine.root), "serial")
    assert sorted(ports) == ["/dev/ttyACM0", "/dev/ttyUSB0"]  # no placeholder, no console
    ftdi = ports["/dev/ttyUSB0"]
    assert ftdi["links"] == ["/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3XYZ-if00-port0"]
    assert (ftdi["usb_id"], ftdi["product"], ftdi["serial_number"]) == \
        ("0403:6001", "FT232R USB UART", "A10K3XYZ")
    assert ftdi["driver"] == "ftdi_sio" and ftdi["access"] == "rw"
    assert "FTDI" in ftdi["guess"] and "FEIG" in ftdi["guess"]
    assert ports["/dev/ttyACM0"]["guess"].startswith("Honeywell")


def test_video_nodes_named_from_sysfs_with_by_id_links(machine: FakeMachine) -> None:
    video = by_path(discover(machine.root), "video")
    assert video["/dev/video0"]["name"] == "UVC Camera (046d:0825)"
    assert video["/dev/video0"]["links"] == ["/dev/v4l/by-id/usb-046d_0825_7E2B-video-index0"]
    assert video["/dev/video0"]["usb_id"] == "046d:0825" and video["/dev/video0"]["notes"] == []
    assert "metadata" in video["/dev/video1"]["notes"][0]


def test_nfc_readers_nfcpy_knows_and_a_kernel_driver_that_holds_one(machine: FakeMachine) -> None:
    readers = by_path(discover(machine.root), "nfc")
    assert sorted(readers) == ["/dev/bus/usb/002/005", "/dev/bus/usb/002/006"]
    sony = readers["/dev/bus/usb/002/005"]
    assert sony["usb_id"] == "054c:06c3" and "rcs380" in sony["name"]
    assert "usb:054c:06c3" in sony["name"]
    assert sony["driver"] == "port100" and "blacklisted" in sony["notes"][0]
    assert readers["/dev/bus/usb/002/006"]["notes"] == []


def test_keyboards_are_listed_and_mice_are_not(machine: FakeMachine) -> None:
    hid = by_path(discover(machine.root), "hid")
    assert list(hid) == ["/dev/input/event3"]
    scanner = hid["/dev/input/event3"]
    assert scanner["name"] == "Honeywell Imaging Scanner" and scanner["usb_id"] == "0c2e:0b61"
    assert scanner["links"] == ["/dev/input/by-id/usb-Honeywell_Imaging_Scanner-event-kbd"]


def test_printers_by_usb_class_and_by_known_ids(machine: FakeMachine) -> None:
    printers = by_path(discover(machine.root), "printers")
    assert sorted(printers) == ["/dev/usb/lp0", "usb 04b8:0e27"]
    pos = printers["/dev/usb/lp0"]
    assert pos["driver"] == "usblp" and "POS-58" in pos["guess"]
    assert any('vendor_id = "0416", product_id = "5011"' in note for note in pos["notes"])
    assert any("ids only" in note for note in printers["usb 04b8:0e27"]["notes"])


def test_gpio_chips_with_the_label_of_the_legacy_sysfs_class(machine: FakeMachine) -> None:
    chips = by_path(discover(machine.root), "gpio")
    assert chips["/dev/gpiochip0"]["name"] == "pinctrl-bcm2711"
    assert chips["/dev/gpiochip0"]["guess"] == "Raspberry Pi 4 header pins"
    assert "58 lines" in chips["/dev/gpiochip0"]["notes"]


def test_an_empty_machine_says_none_found_in_every_section(tmp_path: Path, capsys) -> None:
    assert main(["devices", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("none found") == 6
    for title in ("Serial ports:", "Video devices", "NFC readers", "HID keyboards",
                  "USB receipt printers:", "GPIO chips:"):
        assert title in out


def test_text_output_marks_guesses_as_guesses(machine: FakeMachine) -> None:
    text = format_inventory(discover(machine.root))
    assert "guess (from the USB ids): FTDI USB-serial bridge" in text
    assert "link: /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3XYZ-if00-port0" in text
    assert "none found" not in text


def test_pyserial_ports_fill_in_what_sysfs_did_not_say(machine: FakeMachine) -> None:
    ports = [SimpleNamespace(device="/dev/ttyAMA0", vid=None, pid=None, product=None,
                             manufacturer=None, serial_number=None),
             SimpleNamespace(device="/dev/ttyUSB0", vid=0x0403, pid=0x6001, product="other",
                             manufacturer="FTDI", serial_number="A10K3XYZ")]
    found = by_path(discover(machine.root, comports=lambda: ports), "serial")
    assert found["/dev/ttyAMA0"]["usb_id"] is None
    assert found["/dev/ttyUSB0"]["product"] == "FT232R USB UART"  # sysfs first


def test_junk_in_sysfs_is_skipped_not_fatal(machine: FakeMachine) -> None:
    machine.write("sys/bus/usb/devices/3-1/idVendor", "zzzz")
    machine.write("sys/bus/usb/devices/3-1/idProduct", "\x00\xff")
    machine.write(f"{machine.pci}/usb1/1-3/1-3:1.0/input/input6/capabilities/key", "not hex")
    os.symlink("/nowhere/at/all", machine.root / "dev/serial/by-id/dangling")
    inventory = discover(machine.root)
    assert len(inventory.sections["serial"]) == 2 and len(inventory.sections["hid"]) == 1


def test_guesses_by_vendor_and_by_vendor_and_product() -> None:
    assert guess(0x1A86, 0x7523).startswith("CH340")
    assert guess(0x0AB1, 0x1234) == "FEIG Electronic RFID reader"
    assert guess(0x1234, 0x5678) is None and guess(None, None) is None


def test_the_command_never_opens_a_device_and_prints_json(machine: FakeMachine) -> None:
    # Every /dev node of the fake machine is a FIFO: opening one would block forever.
    run = subprocess.run([sys.executable, "-m", "thuvien.cli", "devices", "--json",
                          "--root", str(machine.root)], capture_output=True, text=True,
                         timeout=30, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert set(data) == {"serial", "video", "nfc", "hid", "printers", "gpio"}
    assert [item["path"] for item in data["hid"]] == ["/dev/input/event3"]
