"""What is attached to this machine: serial ports, cameras, NFC readers, HID keyboards and
scanners, USB receipt printers, GPIO chips (`thuvien devices`).

Everything comes from sysfs and /dev, read as any user may, so it runs without root and
never opens, grabs or resets a device (a station in service keeps working while an
administrator looks). `root` is the file system root: tests build a fake /dev and /sys
tree in a temporary directory. On the real root, pyserial's `list_ports` is consulted too,
for ports this module's own sysfs walk does not know.

What a device *is* (an FTDI bridge with a FEIG reader behind it, a Honeywell scanner in
serial mode...) is a guess from its USB ids, and is labelled as a guess everywhere.

Drivers import nothing of ours; this module imports nothing of ours at all.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("thuvien.drivers.discovery")

Access = Literal["rw", "r", "none", "missing"]

# USB ids -> what is probably behind them. `None` as product: any product of the vendor.
USB_GUESSES: dict[tuple[int, int | None], str] = {
    (0x0403, None): "FTDI USB-serial bridge (a FEIG or 3M reader, a serial scanner or a DIY bridge)",
    (0x1A86, 0x7523): "CH340 USB-serial bridge (cheap scanners, DIY bridges, Arduino clones)",
    (0x1A86, 0x5523): "CH341 USB-serial bridge",
    (0x1A86, 0x55D4): "CH9102 USB-serial bridge (ESP32 boards: a DIY bridge?)",
    (0x067B, None): "Prolific PL2303 USB-serial bridge",
    (0x10C4, 0xEA60): "Silicon Labs CP210x USB-serial bridge",
    (0x0AB1, None): "FEIG Electronic RFID reader",
    (0x0C2E, None): "Honeywell (Metrologic) barcode scanner",
    (0x0536, None): "Honeywell (Hand Held Products) barcode scanner",
    (0x05E0, None): "Zebra (Symbol) barcode scanner",
    (0x05F9, None): "Datalogic barcode scanner",
    (0x1EAB, None): "Newland barcode scanner",
    (0x2341, None): "Arduino board (a DIY RFID bridge?)",
    (0x2E8A, None): "Raspberry Pi RP2040 board (a DIY RFID bridge?)",
    (0x303A, None): "Espressif ESP32 board (a DIY RFID bridge?)",
    (0x0483, 0x5740): "STM32 virtual COM port (a DIY bridge?)",
    (0x04B8, None): "Epson device (a TM receipt printer?)",
    (0x0FE6, 0x811E): "Xprinter receipt printer",
    (0x0416, 0x5011): "POS-58/POS-80 receipt printer (Winbond chip: Xprinter and others)",
    (0x0519, None): "Star Micronics receipt printer",
    (0x1504, None): "Bixolon receipt printer",
    (0x154F, None): "SNBC receipt printer",
    (0x0DD4, None): "Custom receipt printer",
    (0x072F, None): "ACS smart card / NFC reader",
}
PRINTER_VENDORS = {0x04B8, 0x0519, 0x1504, 0x154F, 0x0DD4}
PRINTER_IDS = {(0x0FE6, 0x811E), (0x0416, 0x5011)}
USB_CLASS_PRINTER = 0x07

# nfcpy 1.0.4's USB readers (`nfc.clf.device.usb_device_map`), for machines without nfcpy.
NFCPY_USB_READERS: dict[tuple[int, int], str] = {
    (0x054C, 0x0193): "pn531", (0x04CC, 0x0531): "pn531", (0x04CC, 0x2533): "pn533",
    (0x04E6, 0x5591): "pn533", (0x04E6, 0x5593): "pn533", (0x054C, 0x02E1): "rcs956",
    (0x054C, 0x06C1): "rcs380", (0x054C, 0x06C3): "rcs380", (0x072F, 0x2200): "acr122",
}
# Kernel drivers that claim NFC readers nfcpy wants for itself.
NFC_KERNEL_DRIVERS = {"pn533_usb", "pn533", "port100"}

GPIO_LABELS = {
    "pinctrl-rp1": "Raspberry Pi 5 header pins",
    "pinctrl-bcm2711": "Raspberry Pi 4 header pins",
    "pinctrl-bcm2835": "Raspberry Pi 1-3 header pins",
}

# Linux key codes (input-event-codes.h): a keyboard has the digits and Enter.
_KEY_DIGITS = range(2, 12)
_KEY_ENTER = 28

# pyserial's list of tty names (list_ports_linux.comports), kept in step with it.
_SERIAL_TTY = re.compile(r"^(ttyS|ttyUSB|ttyXRUSB|ttyACM|ttyAMA|rfcomm|ttyAP)\d+$")


@dataclass
class Found:
    """One device node and what sysfs says about it."""

    path: str                              # /dev/ttyUSB0
    links: list[str] = field(default_factory=list)  # stable names: /dev/serial/by-id/...
    name: str | None = None                # the kernel's name for it (camera, keyboard, chip)
    usb_id: str | None = None              # "0403:6001"
    manufacturer: str | None = None
    product: str | None = None
    serial_number: str | None = None
    driver: str | None = None              # the kernel driver bound to it
    access: Access = "missing"             # what this user may do with the node
    guess: str | None = None               # from the USB ids: a guess, said as one
    notes: list[str] = field(default_factory=list)


SECTIONS: dict[str, str] = {
    "serial": "Serial ports",
    "video": "Video devices (cameras)",
    "nfc": "NFC readers (nfcpy)",
    "hid": "HID keyboards and keyboard-mode scanners",
    "printers": "USB receipt printers",
    "gpio": "GPIO chips",
}


@dataclass
class Inventory:
    sections: dict[str, list[Found]]

    def to_dict(self) -> dict[str, Any]:
        return {key: [asdict(item) for item in items] for key, items in self.sections.items()}


# --- small sysfs readers -------------------------------------------------------------------

class _Tree:
    """Paths of the machine seen from `root`: /dev and /sys of the real one, or a fake."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def shown(self, path: Path) -> str:
        """The path as on the machine: `/dev/ttyUSB0`, whatever the root."""
        try:
            return "/" + str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def follow(self, link: Path) -> Path:
        """One symlink, resolved inside the tree (absolute targets are taken from `root`)."""
        target = os.readlink(link)
        joined = self.at(target) if os.path.isabs(target) else link.parent / target
        return Path(os.path.normpath(joined))

    def real(self, path: Path) -> Path:
        # sysfs links are relative, so resolving inside a fake tree stays inside it.
        return Path(os.path.realpath(path))

    def glob(self, folder: str, pattern: str = "*") -> list[Path]:
        base = self.at(folder)
        try:
            return sorted(base.glob(pattern))
        except OSError:
            return []

    def links_to(self, folder: str, node: Path) -> list[str]:
        """The symlinks in `folder` (by-id, by-path) that point at `node`."""
        found = []
        for link in self.glob(folder):
            try:
                if link.is_symlink() and self.follow(link) == node:
                    found.append(self.shown(link))
            except OSError:
                continue
        return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def _access(path: Path) -> Access:
    if not os.path.lexists(path):
        return "missing"
    if os.access(path, os.R_OK | os.W_OK):
        return "rw"
    return "r" if os.access(path, os.R_OK) else "none"


def _usb_device(start: Path) -> Path | None:
    """The USB device (the folder with idVendor) at or above a sysfs device folder."""
    for folder in (start, *start.parents):
        if (folder / "idVendor").is_file():
            return folder
        if folder.name in ("devices", "sys") or folder == folder.parent:
            return None
    return None


def _driver(folder: Path) -> str | None:
    link = folder / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def guess(vid: int | None, pid: int | None) -> str | None:
    if vid is None:
        return None
    return USB_GUESSES.get((vid, pid)) or USB_GUESSES.get((vid, None))


def _fill_usb(found: Found, device_folder: Path | None) -> None:
    usb = _usb_device(device_folder) if device_folder is not None else None
    if usb is None:
        return
    vid, pid = _hex(_read(usb / "idVendor")), _hex(_read(usb / "idProduct"))
    if vid is not None and pid is not None:
        found.usb_id = f"{vid:04x}:{pid:04x}"
    found.manufacturer = _read(usb / "manufacturer")
    found.product = _read(usb / "product")
    found.serial_number = _read(usb / "serial")
    found.guess = guess(vid, pid)


def _usb_devices(tree: _Tree) -> Iterator[tuple[Path, int, int]]:
    for folder in tree.glob("/sys/bus/usb/devices"):
        if ":" in folder.name:  # an interface, not a device
            continue
        vid, pid = _hex(_read(folder / "idVendor")), _hex(_read(folder / "idProduct"))
        if vid is not None and pid is not None:
            yield tree.real(folder), vid, pid


def _interfaces(usb: Path) -> list[Path]:
    try:
        return sorted(p for p in usb.iterdir() if ":" in p.name and p.is_dir())
    except OSError:
        return []


# --- sections ---------------------------------------------------------------------------

def serial_ports(tree: _Tree, comports: Callable[[], Iterable[Any]] | None = None) -> list[Found]:
    found: dict[str, Found] = {}
    for entry in tree.glob("/sys/class/tty"):
        if not _SERIAL_TTY.match(entry.name) or not (entry / "device").exists():
            continue
        device = tree.real(entry / "device")
        subsystem = os.path.basename(os.path.realpath(device / "subsystem"))
        if subsystem == "platform":  # pyserial hides these: placeholders with no port
            continue
        node = tree.at(f"/dev/{entry.name}")
        item = Found(path=f"/dev/{entry.name}", access=_access(node),
                     links=tree.links_to("/dev/serial/by-id", node),
                     driver=_driver(device) or _driver(device.parent))
        _fill_usb(item, device)
        found[item.path] = item
    for port in comports() if comports is not None else ():
        _merge_pyserial(found, port)
    return sorted(found.values(), key=lambda item: item.path)


def _merge_pyserial(found: dict[str, Found], port: Any) -> None:
    path = str(getattr(port, "device", "") or "")
    if not path:
        return
    item = found.setdefault(path, Found(path=path, access=_access(Path(path))))
    vid, pid = getattr(port, "vid", None), getattr(port, "pid", None)
    if item.usb_id is None and vid is not None and pid is not None:
        item.usb_id = f"{vid:04x}:{pid:04x}"
        item.guess = guess(vid, pid)
    item.manufacturer = item.manufacturer or getattr(port, "manufacturer", None)
    item.product = item.product or getattr(port, "product", None)
    item.serial_number = item.serial_number or getattr(port, "serial_number", None)


def _pyserial_comports() -> Callable[[], Iterable[Any]] | None:
    try:
        from serial.tools import list_ports
    except ImportError:
        return None
    return list_ports.comports


def video_devices(tree: _Tree) -> list[Found]:
    found = []
    for entry in tree.glob("/sys/class/video4linux", "video*"):
        node = tree.at(f"/dev/{entry.name}")
        item = Found(path=f"/dev/{entry.name}", name=_read(entry / "name"), access=_access(node),
                     links=tree.links_to("/dev/v4l/by-id", node))
        device = tree.real(entry / "device") if (entry / "device").exists() else None
        if device is not None:
            item.driver = _driver(device)
        _fill_usb(item, device)
        item.guess = None  # USB ids of cameras say nothing useful
        if _read(entry / "index") not in (None, "0"):
            # UVC cameras add a metadata node beside the picture: OpenCV wants index 0.
            item.notes.append("a second node of the same camera (metadata): use the other one")
        found.append(item)
    return found


def _nfc_readers() -> dict[tuple[int, int], str]:
    try:
        from nfc.clf.device import usb_device_map  # nfcpy's own list, when installed
    except Exception:  # noqa: BLE001 - nfcpy missing or broken: the built-in copy serves
        return dict(NFCPY_USB_READERS)
    return dict(usb_device_map)


def nfc_readers(tree: _Tree) -> list[Found]:
    known = _nfc_readers()
    found = []
    for usb, vid, pid in _usb_devices(tree):
        chip = known.get((vid, pid))
        if chip is None:
            continue
        bus, dev = _read(usb / "busnum"), _read(usb / "devnum")
        node = tree.at(f"/dev/bus/usb/{int(bus):03d}/{int(dev):03d}") if bus and dev else None
        item = Found(path=tree.shown(node) if node else tree.shown(usb),
                     access=_access(node) if node else "missing",
                     name=f"nfcpy driver {chip}; open it as usb:{vid:04x}:{pid:04x}")
        _fill_usb(item, usb)
        drivers = {d for i in _interfaces(usb) if (d := _driver(i))}
        item.driver = ", ".join(sorted(drivers)) or None
        if drivers & NFC_KERNEL_DRIVERS:
            item.notes.append(f"the kernel driver {', '.join(sorted(drivers & NFC_KERNEL_DRIVERS))} "
                              "holds it: nfcpy cannot use it until that module is blacklisted")
        elif "usbfs" in drivers:
            item.notes.append("a program holds it already (pcscd? another station?)")
        found.append(item)
    return found


def _is_keyboard(capabilities: str | None) -> bool:
    if not capabilities:
        return False
    # Space-separated hex words, most significant first; the keys that matter are all in
    # the lowest 32 bits, whatever the kernel's word size.
    try:
        low = int(capabilities.split()[-1], 16)
    except ValueError:
        return False
    return all(low >> key & 1 for key in (*_KEY_DIGITS, _KEY_ENTER))


def hid_keyboards(tree: _Tree) -> list[Found]:
    found = []
    for entry in tree.glob("/sys/class/input", "event*"):
        device = tree.real(entry / "device") if (entry / "device").exists() else None
        if device is None or not _is_keyboard(_read(device / "capabilities" / "key")):
            continue
        node = tree.at(f"/dev/input/{entry.name}")
        item = Found(path=f"/dev/input/{entry.name}", name=_read(device / "name"),
                     access=_access(node), links=tree.links_to("/dev/input/by-id", node))
        vid, pid = _hex(_read(device / "id" / "vendor")), _hex(_read(device / "id" / "product"))
        if vid and pid:
            item.usb_id = f"{vid:04x}:{pid:04x}"
            item.guess = guess(vid, pid)
        item.serial_number = _read(device / "uniq")
        if item.access not in ("rw", "r"):
            item.notes.append("this user cannot read it: the evdev scanner driver needs the "
                              "'input' group")
        found.append(item)
    return found


def usb_printers(tree: _Tree) -> list[Found]:
    lp_nodes: dict[Path, Path] = {}  # interface folder -> /dev/usb/lpN
    for entry in tree.glob("/sys/class/usbmisc", "lp*"):
        if (entry / "device").exists():
            lp_nodes[tree.real(entry / "device")] = tree.at(f"/dev/usb/{entry.name}")
    found = []
    for usb, vid, pid in _usb_devices(tree):
        interfaces = _interfaces(usb)
        printer_class = any(_hex(_read(i / "bInterfaceClass")) == USB_CLASS_PRINTER
                            for i in interfaces)
        if not (printer_class or vid in PRINTER_VENDORS or (vid, pid) in PRINTER_IDS):
            continue
        nodes = [lp_nodes[i] for i in interfaces if i in lp_nodes]
        item = Found(path=tree.shown(nodes[0]) if nodes else f"usb {vid:04x}:{pid:04x}",
                     access=_access(nodes[0]) if nodes else "missing")
        _fill_usb(item, usb)
        drivers = {d for i in interfaces if (d := _driver(i))}
        item.driver = ", ".join(sorted(drivers)) or None
        if not printer_class:
            item.notes.append("not a USB printer-class device: found by its ids only")
        item.notes.append(f'config: type = "usb", vendor_id = "{vid:04x}", product_id = "{pid:04x}"'
                          + (f' (or type = "file", path = "{item.path}")' if nodes else ""))
        found.append(item)
    return found


def gpio_chips(tree: _Tree) -> list[Found]:
    labels: dict[str, tuple[str | None, str | None]] = {}
    # The legacy sysfs class names each chip by its number base; its `device` is the chip.
    for entry in tree.glob("/sys/class/gpio", "gpiochip*"):
        chip = tree.real(entry / "device").name if (entry / "device").exists() else None
        if chip and chip.startswith("gpiochip"):
            labels[chip] = (_read(entry / "label"), _read(entry / "ngpio"))
    for entry in tree.glob("/sys/bus/gpio/devices", "gpiochip*"):
        labels.setdefault(entry.name, (_read(entry / "label"), _read(entry / "ngpio")))
    found = []
    for node in tree.glob("/dev", "gpiochip*"):
        label, lines = labels.get(node.name, (None, None))
        item = Found(path=tree.shown(node), name=label, access=_access(node))
        if lines:
            item.notes.append(f"{lines} lines")
        if label in GPIO_LABELS:
            item.guess = GPIO_LABELS[label]
        found.append(item)
    return found


def discover(root: Path | str = "/", *,
             comports: Callable[[], Iterable[Any]] | None = None) -> Inventory:
    """Everything attached, by section. On the real root pyserial's `list_ports` adds what
    it knows; pass `comports` to use another (tests)."""
    tree = _Tree(Path(root))
    if comports is None and Path(root) == Path("/"):
        comports = _pyserial_comports()
    steps: dict[str, Callable[[], list[Found]]] = {
        "serial": lambda: serial_ports(tree, comports),
        "video": lambda: video_devices(tree),
        "nfc": lambda: nfc_readers(tree),
        "hid": lambda: hid_keyboards(tree),
        "printers": lambda: usb_printers(tree),
        "gpio": lambda: gpio_chips(tree),
    }
    sections: dict[str, list[Found]] = {}
    for key, step in steps.items():
        try:
            sections[key] = step()
        except Exception as exc:  # noqa: BLE001 - one odd sysfs entry must not hide the rest
            log.warning("listing %s failed: %s", key, exc)
            sections[key] = [Found(path="?", notes=[f"listing failed: {type(exc).__name__}: {exc}"])]
    return Inventory(sections)


# --- text -------------------------------------------------------------------------------

_ACCESS_TEXT = {"rw": "", "r": "read-only for this user", "none": "no access for this user",
                "missing": "no device node"}


def format_inventory(inventory: Inventory) -> str:
    lines: list[str] = []
    for key, title in SECTIONS.items():
        items = inventory.sections.get(key, [])
        lines.append(f"{title}:")
        if not items:
            lines.append("  none found")
        for item in items:
            head = [item.path]
            if item.usb_id:
                head.append(item.usb_id)
            described = " ".join(part for part in (item.manufacturer, item.product) if part)
            if item.name:
                head.append(item.name)
            if described:
                head.append(described)
            if item.serial_number:
                head.append(f"serial {item.serial_number}")
            lines.append("  " + "  ".join(head))
            for link in item.links:
                lines.append(f"      link: {link}")
            if item.driver:
                lines.append(f"      kernel driver: {item.driver}")
            if _ACCESS_TEXT[item.access]:
                lines.append(f"      {_ACCESS_TEXT[item.access]}")
            if item.guess:
                lines.append(f"      guess (from the USB ids): {item.guess}")
            for note in item.notes:
                lines.append(f"      {note}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
