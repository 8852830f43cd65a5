"""`thuvien doctor`: test each device a station's config names, and say what to do.

Each configured device is created from its config by the drivers' registries, started or
opened, given a short time to report "ok" (drivers that reconnect by themselves do it in
`check()`), put through one harmless operation where there is one, and stopped:

- a scanner or card reader: started, its state read (reads that arrive are counted);
- an RFID reader: opened, one inventory, the number of tags in the field;
- a receipt printer: the transport opened and closed; a test receipt only with `--print-test`;
- GPIO: the inputs read.

Every device runs in its own thread with a deadline, so a hung device (a USB stack that
never returns) is a FAULT line, not a hung doctor. A fault comes with a hint for the
person at the station, in Vietnamese first, then English.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from kiosk.config import StationConfig

log = logging.getLogger("thuvien.doctor")

Status = Literal["ok", "fault", "skipped"]


@dataclass(frozen=True)
class Hint:
    vi: str
    en: str

    def __str__(self) -> str:
        return f"{self.vi} / {self.en}"


@dataclass
class DeviceReport:
    slot: str            # the config table: "scanner", "card", "rfid", "printer", "gpio"
    name: str            # the device's key in the station's status
    type: str            # the driver
    where: str           # port, device, path or host, as configured
    status: Status
    state: str           # the driver's last state: "ok", "fault", "absent", or "?"
    detail: str          # what happened, in English
    hint: Hint | None = None
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hint"] = asdict(self.hint) if self.hint else None
        return data


@dataclass(frozen=True)
class Options:
    wait_s: float = 2.0         # how long a device may take to report "ok"
    timeout_s: float = 15.0     # the whole test of one device, then it counts as hung
    print_test: bool = False


class ProbeFault(Exception):
    """The device is not working; the message says why."""


# --- hints ----------------------------------------------------------------------------------

_DENIED = re.compile(r"permission denied|errno 13|access denied|eacces|insufficient permissions",
                     re.IGNORECASE)
_BUSY = re.compile(r"errno 16|resource busy|device busy|exclusively lock|claimed by|"
                   r"in use|held by", re.IGNORECASE)
_MISSING = re.compile(r"no such file|errno 2\b|could not open port|no such device|not found|"
                      r"errno 19|enodev|unplugged|no reader|not connected|cannot open",
                      re.IGNORECASE)
_NOT_INSTALLED = re.compile(r"no module named|not installed|no backend available", re.IGNORECASE)
_SILENT = re.compile(r"did not answer|not respond|no reply|no (\w+ )?answer|timed? ?out",
                     re.IGNORECASE)
_GARBLED = re.compile(r"junk|corrupt|garbl|not a version|protocol error|speaks line protocol",
                      re.IGNORECASE)
_NETWORK = re.compile(r"connection refused|unreachable|name or service not known|"
                      r"temporary failure in name resolution", re.IGNORECASE)

_GROUPS = (  # a device node's folder -> the group that may open it
    (re.compile(r"/dev/(tty|serial/)"), "dialout"),
    (re.compile(r"/dev/(video|v4l/)"), "video"),
    (re.compile(r"/dev/input/"), "input"),
    (re.compile(r"/dev/gpiochip"), "gpio"),
)

SEE_DEVICES = Hint("Kiểm tra cáp và nguồn, rồi chạy `thuvien devices` để xem thiết bị nào đang cắm",
                   "check the cable and the power, then run `thuvien devices` to see what is attached")
PN533 = Hint("Mô-đun pn533 của nhân Linux đang giữ đầu đọc NFC: chặn nó (echo 'blacklist pn533_usb' "
             "| sudo tee /etc/modprobe.d/thuvien-nfc.conf), rồi rút ra cắm lại đầu đọc",
             "the kernel's pn533 module holds the NFC reader: blacklist it (echo 'blacklist "
             "pn533_usb' | sudo tee /etc/modprobe.d/thuvien-nfc.conf) and plug the reader in again")
HUNG = Hint("Thiết bị bị treo: rút ra cắm lại, kiểm tra nguồn, rồi chạy lại `thuvien doctor`",
            "the device hangs: unplug it and plug it back, check its power, then run "
            "`thuvien doctor` again")


def hint_for(kind: str, message: str, where: str = "") -> Hint:
    """What to do about a fault: `kind` is the driver type ("nfc", "camera", "feig"...),
    `message` the driver's words, `where` the configured port or path."""
    text = f"{message} {where}"
    if re.search(r"pin factory", text, re.IGNORECASE):
        return Hint("Không mở được chân GPIO: máy này không phải Raspberry Pi, hoặc thiếu "
                    "thư viện lgpio (sudo apt-get install python3-lgpio)",
                    "the GPIO pins cannot be opened: this is not a Raspberry Pi, or the lgpio "
                    "library is missing (sudo apt-get install python3-lgpio)")
    if _NOT_INSTALLED.search(text):
        if re.search(r"no backend available", text, re.IGNORECASE):
            return Hint("Cài libusb: sudo apt-get install libusb-1.0-0",
                        "install libusb: sudo apt-get install libusb-1.0-0")
        return Hint("Thiếu thư viện Python cho thiết bị này: chạy lại ./run để cài đặt",
                    "a Python library for this device is missing: run ./run again to install it")
    if _DENIED.search(text):
        for pattern, group in _GROUPS:
            if pattern.search(text):
                return Hint(f"Thêm người dùng vào nhóm {group} (sudo usermod -aG {group} $USER), "
                            "rồi đăng nhập lại",
                            f"add the user to the {group} group (sudo usermod -aG {group} $USER) "
                            "and log in again")
        return Hint("Người dùng này không được mở thiết bị USB: thêm luật udev cho nó "
                    "(GROUP=\"plugdev\", MODE=\"0660\") và thêm người dùng vào nhóm plugdev",
                    "this user may not open the USB device: add a udev rule for it "
                    "(GROUP=\"plugdev\", MODE=\"0660\") and add the user to the plugdev group")
    if _BUSY.search(text):
        if kind == "nfc" or "pn533" in text or "port100" in text:
            return PN533
        if kind == "camera" or "/dev/video" in text:
            return Hint("Một chương trình khác đang dùng camera: đóng nó lại (hoặc dừng dịch vụ "
                        "thuvien đang chạy)",
                        "another program is using the camera: close it (or stop the running "
                        "thuvien service)")
        return Hint("Một chương trình khác đang dùng thiết bị (dịch vụ thuvien đang chạy? "
                    "ModemManager?): dừng nó rồi thử lại",
                    "another program is using the device (the running thuvien service? "
                    "ModemManager?): stop it and try again")
    if _NETWORK.search(text):
        return Hint("Kiểm tra địa chỉ IP của máy in và máy in đã bật, đã cắm mạng",
                    "check the printer's IP address, and that it is switched on and connected")
    if kind == "simulated":
        return Hint("Thiết bị mô phỏng được cấu hình để báo lỗi (state / plugged trong cấu hình)",
                    "a simulated device set to fail by its config (state / plugged)")
    if _MISSING.search(text):
        if kind == "nfc":
            return Hint(SEE_DEVICES.vi + "; nếu đầu đọc đã cắm, có thể mô-đun pn533 của nhân đang "
                        "giữ nó", SEE_DEVICES.en + "; if the reader is plugged in, the kernel's "
                        "pn533 module may hold it")
        return SEE_DEVICES
    if re.search(r"paper", text, re.IGNORECASE):
        return Hint("Lắp cuộn giấy mới vào máy in", "load a new paper roll")
    if _GARBLED.search(text):
        return Hint("Thiết bị trả lời không đúng: kiểm tra tốc độ baud và loại thiết bị (type) "
                    "trong cấu hình",
                    "the device answers gibberish: check the baud rate and the device type "
                    "in the config")
    if _SILENT.search(text):
        return Hint("Thiết bị không trả lời: kiểm tra nguồn, tốc độ baud và loại thiết bị trong "
                    "cấu hình", "the device does not answer: check its power, the baud rate and "
                    "the device type in the config")
    return Hint("Rút thiết bị ra cắm lại, rồi chạy lại `thuvien doctor`",
                "unplug the device and plug it back, then run `thuvien doctor` again")


# --- what the drivers said ---------------------------------------------------------------

class _Recorder(logging.Handler):
    """Warnings and errors the drivers log while one device is tested: some drivers say why
    they faulted only in the log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a malformed log call must not break the doctor
            pass


@contextlib.contextmanager
def _recording() -> Iterator[_Recorder]:
    recorder = _Recorder()
    logger = logging.getLogger("thuvien.drivers")
    logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)


def _why(device: Any, recorder: _Recorder) -> str:
    said = str(getattr(device, "last_error", "") or "")
    if said:
        return said
    name = str(getattr(device, "name", ""))
    # Prefer what the driver said about this device over other drivers' log lines.
    about = [message for message in recorder.messages if name and name in message]
    said_anywhere = about or recorder.messages
    return said_anywhere[-1] if said_anywhere else "no reason given by the driver"


def _settle(device: Any, options: Options) -> str:
    """Poll the device (reconnecting where the driver does) until "ok" or the wait ends."""
    deadline = time.monotonic() + options.wait_s
    while True:
        check = getattr(device, "check", None)
        state = str(check() if callable(check) else device.state)
        if state == "ok" or time.monotonic() >= deadline:
            return state
        time.sleep(0.05)


# --- probes, one per kind of device -----------------------------------------------------

@dataclass
class _Outcome:
    state: str
    detail: str
    info: dict[str, Any] = field(default_factory=dict)


def _probe_scanner(config: Any, options: Options, recorder: _Recorder) -> _Outcome:
    if config.type == "stdin":
        # Starting it would swallow what the administrator types into this terminal.
        return _Outcome("ok", "reads this terminal (a keyboard-wedge scanner or typing): "
                              "nothing to test")
    from drivers.base import create_scanner

    scanner = create_scanner(config)
    reads: list[str] = []
    try:
        scanner.start(lambda read: reads.append(read.code))
        state = _settle(scanner, options)
        if state != "ok":
            raise ProbeFault(_why(scanner, recorder))
        return _Outcome(state, "started; state ok" + (f"; {len(reads)} read(s)" if reads else ""),
                        {"reads": len(reads)})
    finally:
        scanner.stop()


def _probe_rfid(config: Any, options: Options, recorder: _Recorder) -> _Outcome:
    from drivers.rfid.reader import RfidError, create_reader

    reader = create_reader(config)
    try:
        reader.open()
        state = _settle(reader, options)
        if state != "ok":
            raise ProbeFault(_why(reader, recorder))
        try:
            tags = reader.inventory()
        except RfidError as exc:
            raise ProbeFault(f"inventory failed: {exc}") from exc
        info: dict[str, Any] = {"tags": len(tags), "uids": [tag.uid for tag in tags]}
        if firmware := getattr(reader, "firmware", None):
            info["firmware"] = firmware
        return _Outcome("ok", f"inventory: {len(tags)} tag(s) in the field", info)
    finally:
        reader.close()


def _test_receipt(width: int) -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("1", (width, 80), 1)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, 79), outline=0, width=3)
    draw.text((12, 14), "thuvien doctor", fill=0)
    draw.text((12, 44), time.strftime("printer test %Y-%m-%d %H:%M"), fill=0)
    return image


def _probe_printer(config: Any, options: Options, recorder: _Recorder) -> _Outcome:
    from drivers.printer import create_printer

    printer = create_printer(config)
    if printer.probe() != "ok":
        raise ProbeFault(_why(printer, recorder))
    if not options.print_test:
        return _Outcome("ok", "connection opened and closed; nothing printed (--print-test prints)")
    result = printer.print_image(_test_receipt(printer.width_dots))
    if not result.ok:
        raise ProbeFault(f"{result.error}: {result.detail}")
    return _Outcome("ok", f"test receipt printed ({result.bytes_sent} bytes)",
                    {"bytes_sent": result.bytes_sent, "paper_low": result.paper_low})


def _probe_gpio(config: Any, options: Options, recorder: _Recorder) -> _Outcome:
    from drivers.gpio import create_gpio

    gpio = create_gpio(config)  # opened: a board that cannot open is "fault"
    try:
        state = _settle(gpio, options)
        if state != "ok":
            raise ProbeFault(_why(gpio, recorder))
        inputs = getattr(config, "inputs", None) or {}
        values = {name: bool(gpio.is_active(name)) for name in inputs}
        shown = ", ".join(f"{name}={'on' if value else 'off'}" for name, value in values.items())
        return _Outcome("ok", f"inputs: {shown}" if values else "no inputs configured",
                        {"inputs": values})
    finally:
        gpio.close()


Probe = Callable[[Any, Options, _Recorder], _Outcome]
PROBES: dict[str, Probe] = {
    "scanner": _probe_scanner,
    "card": _probe_scanner,
    "rfid": _probe_rfid,
    "printer": _probe_printer,
    "gpio": _probe_gpio,
}


# --- running them --------------------------------------------------------------------------

def where(config: Any) -> str:
    """The configured place of a device, for the report: a port, a path, a host."""
    port = getattr(config, "port", None)
    if isinstance(port, str):  # a serial port; a network printer's port is a number
        return port
    for attr in ("device", "path"):
        value = getattr(config, attr, None)
        if value is not None and not isinstance(value, bool):
            return str(value)
    if (host := getattr(config, "host", None)) is not None:
        port = getattr(config, "port", None)
        return f"{host}:{port}" if port is not None else str(host)
    vendor, product = getattr(config, "vendor_id", None), getattr(config, "product_id", None)
    if isinstance(vendor, int) and isinstance(product, int):
        return f"usb {vendor:04x}:{product:04x}"
    return ""


def check_device(slot: str, config: Any, options: Options) -> DeviceReport:
    kind = str(getattr(config, "type", "?"))
    place = where(config)
    report = DeviceReport(slot=slot, name=str(getattr(config, "name", slot)), type=kind,
                          where=place, status="fault", state="?", detail="")
    probe = PROBES.get(slot)
    if probe is None:
        report.status, report.detail = "skipped", f"the doctor cannot test [devices.{slot}] yet"
        return report
    outcome: list[_Outcome] = []
    failure: list[BaseException] = []
    started = time.monotonic()

    def run() -> None:
        with _recording() as recorder:
            try:
                outcome.append(probe(config, options, recorder))
            except ProbeFault as exc:
                failure.append(exc)
            except Exception as exc:  # noqa: BLE001 - a driver bug is a fault line, not a crash
                log.debug("testing %s", slot, exc_info=True)
                failure.append(ProbeFault(f"{type(exc).__name__}: {exc}"))

    # A daemon thread: a device stuck in a system call must not keep the doctor alive.
    worker = threading.Thread(target=run, name=f"doctor-{slot}", daemon=True)
    worker.start()
    worker.join(options.timeout_s)
    report.seconds = round(time.monotonic() - started, 3)
    if worker.is_alive():
        report.detail = f"no result within {options.timeout_s:g} s: the device or its driver hangs"
        report.hint = HUNG
    elif outcome:
        report.status, report.state = "ok", outcome[0].state
        report.detail, report.info = outcome[0].detail, outcome[0].info
    else:
        report.state = "fault"
        report.detail = str(failure[0]) if failure else "the test ended without a result"
        report.hint = hint_for(kind, report.detail, place)
    return report


def configured_devices(config: StationConfig) -> list[tuple[str, Any]]:
    """Each `[devices.*]` table the config has, in the order the model declares them."""
    devices = config.devices
    return [(slot, value) for slot in type(devices).model_fields
            if (value := getattr(devices, slot)) is not None]


def run_doctor(config: StationConfig, options: Options = Options()) -> list[DeviceReport]:
    return [check_device(slot, device, options) for slot, device in configured_devices(config)]


def all_ok(reports: list[DeviceReport]) -> bool:
    return all(report.status != "fault" for report in reports)


_LABEL = {"ok": "OK", "fault": "FAULT", "skipped": "SKIP"}


def format_report(reports: list[DeviceReport]) -> str:
    lines = []
    for report in reports:
        what = f"{report.type} {report.where}".strip()
        lines.append(f"{_LABEL[report.status]:<6} {report.slot:<8} {what}: {report.detail}")
        if report.hint is not None:
            lines.append(f"       → {report.hint}")
    faults = sum(report.status == "fault" for report in reports)
    lines.append(f"{len(reports)} device(s): {len(reports) - faults} OK, {faults} FAULT")
    return "\n".join(lines) + "\n"
